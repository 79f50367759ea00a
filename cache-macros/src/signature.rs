//! Reads the annotated function: its parameters, receiver, return shape and
//! generic parameters. Nothing here decides what is allowed; `validate` does.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{
    FnArg, GenericArgument, GenericParam, Generics, Ident, ItemFn, Pat, PathArguments, ReturnType,
    TraitItemFn, Type, TypeImplTrait,
};

use crate::ctxt::Ctxt;

/// The annotated function.
pub(crate) struct Function {
    pub(crate) item: ItemFn,
    pub(crate) params: Vec<Param>,
    /// `None` when the function returns nothing.
    pub(crate) output: Option<Output>,
}

pub(crate) struct Param {
    pub(crate) kind: ParamKind,
    pub(crate) arg: FnArg,
}

pub(crate) enum ParamKind {
    /// `self`, `&self`, `&mut self`, `self: Box<Self>`.
    Receiver,
    /// `id: u64`, `mut id: u64`.
    Named { ident: Ident },
    /// A destructuring pattern or `_`, with the names it binds.
    Pattern { bindings: Vec<Ident> },
}

impl Param {
    /// The name a template or `skip(...)` uses for this parameter.
    pub(crate) fn name(&self) -> Option<String> {
        match &self.kind {
            ParamKind::Receiver => Some("self".to_owned()),
            ParamKind::Named { ident } => Some(ident.unraw().to_string()),
            ParamKind::Pattern { .. } => None,
        }
    }

    /// The parameter's identifier (`self` for the receiver), at `span`.
    pub(crate) fn ident_at(&self, span: Span) -> Ident {
        match &self.kind {
            ParamKind::Named { ident } => {
                let mut ident = ident.clone();
                ident.set_span(span);
                ident
            }
            _ => Ident::new("self", span),
        }
    }

    /// Where errors about this parameter point: its name or pattern.
    pub(crate) fn name_tokens(&self) -> TokenStream {
        match &self.arg {
            FnArg::Receiver(receiver) => receiver.self_token.to_token_stream(),
            FnArg::Typed(typed) => match &self.kind {
                ParamKind::Named { ident } => ident.to_token_stream(),
                _ => typed.pat.to_token_stream(),
            },
        }
    }

    pub(crate) fn span(&self) -> Span {
        match &self.kind {
            ParamKind::Named { ident } => ident.span(),
            _ => match &self.arg {
                FnArg::Receiver(receiver) => receiver.self_token.span,
                FnArg::Typed(typed) => typed.colon_token.span,
            },
        }
    }

    /// Whether the parameter is a shared reference (`&self`, `x: &T`), which
    /// stays usable after the body has taken its own copy.
    pub(crate) fn is_shared_reference(&self) -> bool {
        let ty = match &self.arg {
            FnArg::Receiver(receiver) => &*receiver.ty,
            FnArg::Typed(typed) => &*typed.ty,
        };
        matches!(ungroup(ty), Type::Reference(reference) if reference.mutability.is_none())
    }
}

/// What the function returns, and how the runtime treats it.
#[derive(Clone)]
pub(crate) struct Output {
    pub(crate) ty: Type,
    pub(crate) shape: Shape,
    /// The success type: what `{fn}_put` takes.
    pub(crate) value: Type,
}

/// The runtime's shape markers, chosen by the return type's last path
/// segment so that aliases such as `io::Result<T>` count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    /// `T`
    Plain,
    /// `Option<T>`
    Opt,
    /// `Result<T, E>`
    Res,
    /// `Result<Option<T>, E>`
    ResOpt,
}

impl Shape {
    /// Whether the shape has an absent value (`None`, `Ok(None)`) that
    /// `negative_ttl` can cache.
    pub(crate) fn has_absent_value(self) -> bool {
        matches!(self, Shape::Opt | Shape::ResOpt)
    }

    pub(crate) fn marker(self) -> &'static str {
        match self {
            Shape::Plain => "Plain",
            Shape::Opt => "Opt",
            Shape::Res => "Res",
            Shape::ResOpt => "ResOpt",
        }
    }
}

/// Reads the item the attribute is on. Reports an item that is not a
/// function with a body.
/// The function under the attribute `#[{attribute}]`, or the error for
/// what else it stands on.
pub(crate) fn parse_item(cx: &Ctxt, attribute: &str, tokens: TokenStream) -> Option<ItemFn> {
    match syn::parse2::<ItemFn>(tokens.clone()) {
        Ok(item) => Some(item),
        Err(error) => {
            match syn::parse2::<TraitItemFn>(tokens) {
                Ok(method) if method.default.is_none() => cx.error_spanned_by(
                    &method.sig,
                    format!(
                        "`#[{attribute}]` needs a function body to wrap; put it on a method of an inherent `impl` of each implementing type, and have `{}` call it",
                        method.sig.ident
                    ),
                ),
                _ if error.to_string().starts_with("expected `fn`") => cx.error_at(
                    Span::call_site(),
                    format!(
                        "`#[{attribute}]` goes on a function, like `#[{attribute}(ttl = 60)] fn {}`",
                        match attribute {
                            "cache_many" => "get(ids: &[u64]) -> HashMap<u64, User> { .. }",
                            _ => "get(id: u64) -> User { .. }",
                        }
                    ),
                ),
                _ => cx.syn_error(error),
            }
            None
        }
    }
}

impl Function {
    pub(crate) fn new(item: ItemFn) -> Function {
        let params = item.sig.inputs.iter().map(Param::new).collect();
        let output = match &item.sig.output {
            ReturnType::Type(_, ty) if !is_unit(ty) => Some(Output::new(ty)),
            _ => None,
        };
        Function {
            item,
            params,
            output,
        }
    }

    pub(crate) fn name(&self) -> &Ident {
        &self.item.sig.ident
    }

    pub(crate) fn is_async(&self) -> bool {
        self.item.sig.asyncness.is_some()
    }

    pub(crate) fn generics(&self) -> &Generics {
        &self.item.sig.generics
    }

    /// The first `impl Trait` in the return type, if any.
    pub(crate) fn impl_trait_output(&self) -> Option<&TypeImplTrait> {
        struct Find<'a>(Option<&'a TypeImplTrait>);
        impl<'a> Visit<'a> for Find<'a> {
            fn visit_type_impl_trait(&mut self, found: &'a TypeImplTrait) {
                self.0.get_or_insert(found);
            }
        }
        let ReturnType::Type(_, ty) = &self.item.sig.output else {
            return None;
        };
        let mut find = Find(None);
        find.visit_type(ty);
        find.0
    }

    /// Whether the function has a receiver or names `Self` in its signature
    /// or body (nested items aside), which only a function in an `impl` or
    /// trait can do.
    pub(crate) fn is_associated(&self) -> bool {
        struct FindSelf(bool);
        impl Visit<'_> for FindSelf {
            fn visit_ident(&mut self, ident: &Ident) {
                self.0 |= ident == "Self";
            }
            fn visit_receiver(&mut self, _: &syn::Receiver) {
                self.0 = true;
            }
            fn visit_macro(&mut self, mac: &syn::Macro) {
                self.0 |= mentioned_names(mac.tokens.clone()).contains("Self");
            }
            // An item inside the body has a `Self` of its own.
            fn visit_item(&mut self, _: &syn::Item) {}
        }
        let mut find = FindSelf(false);
        find.visit_signature(&self.item.sig);
        find.visit_block(&self.item.block);
        find.0
    }

    /// Names of the function's type and const parameters.
    pub(crate) fn type_and_const_params(&self) -> Vec<&Ident> {
        self.generics()
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(param) => Some(&param.ident),
                GenericParam::Const(param) => Some(&param.ident),
                GenericParam::Lifetime(_) => None,
            })
            .collect()
    }

    pub(crate) fn is_type_param(&self, name: &str) -> bool {
        self.generics()
            .type_params()
            .any(|param| param.ident == name)
    }

    pub(crate) fn is_const_param(&self, name: &str) -> bool {
        self.generics()
            .const_params()
            .any(|param| param.ident == name)
    }
}

impl Param {
    fn new(arg: &FnArg) -> Param {
        let kind = match arg {
            FnArg::Receiver(_) => ParamKind::Receiver,
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => ParamKind::Named {
                    ident: pat.ident.clone(),
                },
                pat => {
                    struct Bindings(Vec<Ident>);
                    impl Visit<'_> for Bindings {
                        fn visit_pat_ident(&mut self, pat: &syn::PatIdent) {
                            self.0.push(pat.ident.clone());
                            syn::visit::visit_pat_ident(self, pat);
                        }
                    }
                    let mut bindings = Bindings(Vec::new());
                    bindings.visit_pat(pat);
                    ParamKind::Pattern {
                        bindings: bindings.0,
                    }
                }
            },
        };
        Param {
            kind,
            arg: arg.clone(),
        }
    }
}

impl Output {
    fn new(ty: &Type) -> Output {
        let (shape, value) = match last_segment_arg(ty, "Result") {
            Some(ok) if last_segment_arg(ok, "Option").is_some() => (Shape::ResOpt, ok.clone()),
            Some(ok) => (Shape::Res, ok.clone()),
            None if last_segment_arg(ty, "Option").is_some() => (Shape::Opt, ty.clone()),
            None => (Shape::Plain, ty.clone()),
        };
        Output {
            ty: ty.clone(),
            shape,
            value,
        }
    }
}

impl Output {
    /// The stored type `T`: the `T` of `T`, `Option<T>`, `Result<T, E>` or
    /// `Result<Option<T>, E>`, which must be `Clone + Send + Sync + 'static`
    /// (and have serde on the shared tier).
    pub(crate) fn stored(&self) -> &Type {
        let inner = match self.shape {
            Shape::Plain => None,
            Shape::Opt => last_segment_arg(&self.ty, "Option"),
            Shape::Res => last_segment_arg(&self.ty, "Result"),
            Shape::ResOpt => {
                last_segment_arg(&self.ty, "Result").and_then(|ok| last_segment_arg(ok, "Option"))
            }
        };
        inner.unwrap_or(&self.ty)
    }
}

/// For `a::b::Name<X, ..>`, the first type argument `X`.
fn last_segment_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// The identifiers and lifetimes (as `'a`) that occur in `tokens`, macro
/// bodies included. Used to tell which generic parameters a type, bound or
/// expression mentions; a false match only keeps a parameter that is not
/// needed.
pub(crate) fn mentioned_names(tokens: TokenStream) -> HashSet<String> {
    fn walk(tokens: TokenStream, names: &mut HashSet<String>) {
        let mut after_quote = false;
        for token in tokens {
            match token {
                TokenTree::Group(group) => walk(group.stream(), names),
                TokenTree::Ident(ident) if after_quote => {
                    names.insert(format!("'{ident}"));
                }
                TokenTree::Ident(ident) => {
                    names.insert(ident.to_string());
                }
                TokenTree::Punct(ref punct) if punct.as_char() == '\'' => {
                    after_quote = true;
                    continue;
                }
                _ => {}
            }
            after_quote = false;
        }
    }
    let mut names = HashSet::new();
    walk(tokens, &mut names);
    names
}

/// The subset of `generics` a companion needs: the parameters whose names
/// occur in `uses`, the parameters their bounds need in turn, and the where
/// predicates over exactly those. Keeping an unused type parameter would
/// make callers write a turbofish.
pub(crate) fn generics_needed(generics: &Generics, uses: &HashSet<String>) -> Generics {
    let name_of = |param: &GenericParam| match param {
        GenericParam::Type(param) => param.ident.to_string(),
        GenericParam::Const(param) => param.ident.to_string(),
        GenericParam::Lifetime(param) => format!("'{}", param.lifetime.ident),
    };
    let all: HashSet<String> = generics.params.iter().map(name_of).collect();
    let predicates: Vec<_> = generics
        .where_clause
        .iter()
        .flat_map(|clause| clause.predicates.iter())
        .collect();
    let mut kept: HashSet<String> = uses.intersection(&all).cloned().collect();
    loop {
        let mut grown = kept.clone();
        for param in &generics.params {
            if kept.contains(&name_of(param)) {
                grown.extend(mentioned_names(param.to_token_stream()));
            }
        }
        for predicate in &predicates {
            let bounded = match predicate {
                syn::WherePredicate::Type(predicate) => predicate.bounded_ty.to_token_stream(),
                syn::WherePredicate::Lifetime(predicate) => predicate.lifetime.to_token_stream(),
                _ => predicate.to_token_stream(),
            };
            if mentioned_names(bounded)
                .iter()
                .any(|name| kept.contains(name))
            {
                grown.extend(mentioned_names(predicate.to_token_stream()));
            }
        }
        grown.retain(|name| all.contains(name));
        if grown.len() == kept.len() {
            break;
        }
        kept = grown;
    }
    let mut needed = generics.clone();
    needed.params = generics
        .params
        .iter()
        .filter(|param| kept.contains(&name_of(param)))
        .cloned()
        .collect();
    if needed.params.is_empty() {
        needed.lt_token = None;
        needed.gt_token = None;
    }
    if let Some(clause) = &mut needed.where_clause {
        clause.predicates = predicates
            .into_iter()
            .filter(|predicate| {
                mentioned_names(predicate.to_token_stream())
                    .iter()
                    .all(|name| !all.contains(name) || kept.contains(name))
            })
            .cloned()
            .collect();
        if clause.predicates.is_empty() {
            needed.where_clause = None;
        }
    }
    needed
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    fn shape_of(item: ItemFn) -> (Shape, String) {
        let output = Function::new(item).output.expect("returns something");
        let value = &output.value;
        (output.shape, quote!(#value).to_string())
    }

    #[test]
    fn shapes_follow_the_last_path_segment() {
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> u32 {
                    1
                }
            )),
            (Shape::Plain, "u32".into())
        );
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> Option<User> {
                    None
                }
            )),
            (Shape::Opt, "Option < User >".into())
        );
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> std::result::Result<User, E> {
                    x
                }
            )),
            (Shape::Res, "User".into())
        );
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> anyhow::Result<Option<User>> {
                    x
                }
            )),
            (Shape::ResOpt, "Option < User >".into())
        );
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> io::Result<core::option::Option<u8>> {
                    x
                }
            )),
            (Shape::ResOpt, "core :: option :: Option < u8 >".into())
        );
        assert_eq!(
            shape_of(parse_quote!(
                fn f() -> Vec<Option<u8>> {
                    x
                }
            )),
            (Shape::Plain, "Vec < Option < u8 > >".into())
        );
    }

    #[test]
    fn unit_and_missing_returns_have_no_output() {
        assert!(Function::new(parse_quote!(
            fn f() {}
        ))
        .output
        .is_none());
        assert!(Function::new(parse_quote!(
            fn f() -> () {}
        ))
        .output
        .is_none());
    }

    #[test]
    fn parameters_are_classified() {
        let function = Function::new(parse_quote! {
            fn f(&mut self, mut id: u64, (a, b): (u8, u8), _: &Db) -> u8 { 1 }
        });
        let names: Vec<_> = function.params.iter().map(Param::name).collect();
        assert_eq!(names, [Some("self".into()), Some("id".into()), None, None]);
        let ParamKind::Pattern { bindings } = &function.params[2].kind else {
            panic!("a tuple pattern");
        };
        assert_eq!(bindings.len(), 2);
        assert!(!function.params[0].is_shared_reference());
        let shared = Function::new(parse_quote!(
            fn f(&self, db: &Db) -> u8 {
                1
            }
        ));
        assert!(shared.params.iter().all(Param::is_shared_reference));
    }

    #[test]
    fn mentioned_names_sees_lifetimes_and_macro_bodies() {
        let names = mentioned_names(quote!(&'a Vec<T::Item>, m!(U)));
        for name in ["'a", "Vec", "T", "Item", "m", "U"] {
            assert!(names.contains(name), "{name}");
        }
        assert!(!names.contains("a"));
    }

    #[test]
    fn companions_keep_only_the_generics_they_use() {
        let item: ItemFn = parse_quote! {
            fn f<'a, T: Into<U>, U, V: Clone, const N: usize>(x: &'a T, v: V) -> [U; N]
            where U: Clone + 'a, V: Send, String: Clone
            { x }
        };
        let uses = mentioned_names(quote!(&'a T));
        let needed = generics_needed(&item.sig.generics, &uses);
        let where_clause = &needed.where_clause;
        assert_eq!(
            quote!(#needed #where_clause).to_string(),
            quote!(<'a, T: Into<U>, U> where U: Clone + 'a, String: Clone).to_string()
        );
        let none = generics_needed(&item.sig.generics, &HashSet::new());
        let where_clause = &none.where_clause;
        assert_eq!(
            quote!(#none #where_clause).to_string(),
            quote!(where String: Clone).to_string()
        );
    }
}
