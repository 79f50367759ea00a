//! What the expansion and the fallback share: the companions' names, docs
//! and parameters, and the calls from one generated item into another.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::ext::IdentExt;
use syn::{FnArg, GenericParam, Generics, Ident, Pat, PatIdent, Signature};

use crate::plan::{Outline, Scope};
use crate::signature::{generics_needed, mentioned_names, ParamKind};

/// An identifier no user code can name.
pub(crate) fn internal(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `::<T, N>` over the type and const parameters of `generics`, or nothing
/// when it has none. Lifetimes are left to inference (late-bound ones
/// cannot be written), and so are `impl Trait` parameters.
pub(crate) fn turbofish(generics: &Generics) -> TokenStream {
    let args: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => Some(&param.ident),
            GenericParam::Const(param) => Some(&param.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    if args.is_empty() {
        TokenStream::new()
    } else {
        quote!(::<#(#args),*>)
    }
}

/// The companions of one function, as far as their signatures go.
pub(crate) struct Companions<'a> {
    pub(crate) outline: &'a Outline,
}

impl<'a> Companions<'a> {
    pub(crate) fn new(outline: &'a Outline) -> Self {
        Companions { outline }
    }

    /// The function's name as written, without `r#`.
    pub(crate) fn fn_name(&self) -> String {
        self.outline.function.name().unraw().to_string()
    }

    /// `{fn}_{suffix}`, at the function's name.
    pub(crate) fn name(&self, suffix: &str) -> Ident {
        let name = self.outline.function.name();
        format_ident!("{}_{}", name, suffix, span = name.span())
    }

    /// `__cachette_{fn}_{what}`: a hidden item beside the function.
    pub(crate) fn helper(&self, what: &str) -> Ident {
        internal(&format!("__cachette_{}_{what}", self.fn_name()))
    }

    /// How one generated item names another: `Self::` inside an `impl`,
    /// nothing beside a free function.
    pub(crate) fn path(&self) -> TokenStream {
        match self.outline.scope {
            Scope::Free => TokenStream::new(),
            Scope::Associated => quote!(Self::),
        }
    }

    /// The rustdoc line of a companion.
    pub(crate) fn doc(&self, kind: &str) -> String {
        let name = self.fn_name();
        match kind {
            "key" => format!(" Returns the cache key that `{name}` uses for these arguments."),
            "invalidate" => format!(
                " Drops the cached result of `{name}` for these arguments from every tier, and tells other processes to drop it."
            ),
            "put" => format!(
                " Stores `value` as the cached result of `{name}` for these arguments, in every tier."
            ),
            "refresh" => format!(
                " Runs the body of `{name}` now, bypassing the cache for the lookup, and stores the result as it would on a miss."
            ),
            "uncached" => format!(
                " Runs the body of `{name}`, bypassing the cache: nothing is read or stored."
            ),
            "entry" => format!(
                " Calls `{name}` as it is, and returns its value with the entry's facts: when it was computed, until when it is fresh, its ETag and where it was found."
            ),
            _ => unreachable!("no companion `{kind}`"),
        }
    }

    /// The function's `#[cfg]`s, for every item generated beside it.
    pub(crate) fn cfgs(&self) -> TokenStream {
        let cfgs = self
            .outline
            .function
            .item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"));
        quote!(#(#cfgs)*)
    }

    /// The rustdoc line, the function's `#[cfg]`s, and the lints that a
    /// companion the caller does not use would trip.
    pub(crate) fn head(&self, kind: &str) -> TokenStream {
        self.head_with(&self.doc(kind))
    }

    /// [`head`](Self::head) with its rustdoc line given.
    pub(crate) fn head_with(&self, doc: &str) -> TokenStream {
        let cfgs = self.cfgs();
        quote! {
            #[doc = #doc]
            #cfgs
            #[allow(dead_code, clippy::too_many_arguments)]
        }
    }

    /// The key args as companion parameters (the receiver as `&self`), and
    /// the names their types, the templates and `cache = ...` mention, for
    /// choosing generics.
    pub(crate) fn key_params(&self) -> (Vec<TokenStream>, HashSet<String>) {
        self.params_of(&self.outline.key_params, self.outline.mentioned.clone())
    }

    /// `{fn}_tag_{suffix}` and `{fn}_invalidate_{suffix}` of one tag: name,
    /// rustdoc lines, and the same as [`key_params`](Self::key_params) for
    /// the parameters the tag and `cache = ...` use.
    pub(crate) fn tag_heads(
        &self,
        tag: &crate::plan::TagCompanion,
    ) -> ([(Ident, TokenStream); 2], Vec<TokenStream>, HashSet<String>) {
        let name = self.fn_name();
        let template = &tag.template;
        let render = (
            self.name(&format!("tag_{}", tag.suffix)),
            self.head_with(&format!(
                " Returns the tag {template:?} of `{name}` for these arguments, as `invalidate_tag` takes it."
            )),
        );
        let invalidate = (
            self.name(&format!("invalidate_{}", tag.suffix)),
            self.head_with(&format!(
                " Drops every cached result tagged {template:?} with these arguments from the cache `{name}` uses, in every tier, and tells other processes to drop them."
            )),
        );
        let (params, uses) = self.params_of(&tag.params, HashSet::new());
        ([render, invalidate], params, uses)
    }

    /// The parameters at `indices` as companion parameters (the receiver
    /// as `&self`), and `uses` with the names their types mention.
    fn params_of(
        &self,
        indices: &[usize],
        mut uses: HashSet<String>,
    ) -> (Vec<TokenStream>, HashSet<String>) {
        let function = &self.outline.function;
        let mut params = Vec::new();
        for &index in indices {
            let param = &function.params[index];
            match (&param.kind, &param.arg) {
                (ParamKind::Named { ident }, FnArg::Typed(typed)) => {
                    let attrs = &typed.attrs;
                    let ty = &typed.ty;
                    uses.extend(mentioned_names(ty.to_token_stream()));
                    params.push(quote!(#(#attrs)* #ident: #ty));
                }
                (_, FnArg::Receiver(receiver)) => {
                    let self_token = &receiver.self_token;
                    params.push(quote!(&#self_token));
                }
                _ => {}
            }
        }
        (params, uses)
    }

    /// The generic parameters a key-args companion keeps: those `uses`
    /// names, and those their bounds need.
    pub(crate) fn generics_for(&self, uses: &HashSet<String>) -> Generics {
        generics_needed(&self.outline.function.item.sig.generics, uses)
    }

    /// `_put`'s value parameter: `value`, unless a parameter is called that.
    pub(crate) fn value_param(&self) -> Ident {
        let taken: HashSet<String> = self
            .outline
            .function
            .params
            .iter()
            .filter_map(|param| param.name())
            .collect();
        let name = ["value", "cached_value"]
            .into_iter()
            .find(|name| !taken.contains(*name))
            .unwrap_or("__cachette_value");
        internal(name)
    }

    /// The function's signature under another name, with every parameter
    /// bound to a plain name so that it can be passed on (`mut` and `ref`
    /// dropped, patterns and `_` bound to hidden names), and the arguments
    /// that pass them on, in order.
    pub(crate) fn forwarding(&self, name: Ident) -> (Signature, Vec<TokenStream>) {
        let mut sig = self.outline.function.item.sig.clone();
        sig.ident = name;
        sig.constness = None;
        let mut args = Vec::new();
        for (index, input) in sig.inputs.iter_mut().enumerate() {
            match input {
                FnArg::Receiver(receiver) => {
                    if receiver.reference.is_none() {
                        receiver.mutability = None;
                    }
                    args.push(receiver.self_token.to_token_stream());
                }
                FnArg::Typed(typed) => match &mut *typed.pat {
                    Pat::Ident(pat) if pat.subpat.is_none() => {
                        pat.by_ref = None;
                        pat.mutability = None;
                        args.push(pat.ident.to_token_stream());
                    }
                    pat => {
                        let ident = internal(&format!("__cachette_arg{index}"));
                        args.push(ident.to_token_stream());
                        *pat = Pat::Ident(PatIdent {
                            attrs: Vec::new(),
                            by_ref: None,
                            mutability: None,
                            ident,
                            subpat: None,
                        });
                    }
                },
            }
        }
        (sig, args)
    }

    /// `{fn}_entry`'s signature: the function's, returning
    /// `ROOT::Entry<R>`; and the arguments that pass its parameters on.
    pub(crate) fn entry_signature(&self) -> (Signature, Vec<TokenStream>) {
        let (mut sig, args) = self.forwarding(self.name("entry"));
        let root = &self.outline.root;
        let ret = match &self.outline.function.item.sig.output {
            syn::ReturnType::Default => quote!(()),
            syn::ReturnType::Type(_, ty) => ty.to_token_stream(),
        };
        sig.output = syn::parse_quote!(-> #root::Entry<#ret>);
        (sig, args)
    }

    /// A call of the sibling `target`, which has the function's own
    /// signature, passing `args` on. For an async function it is a future.
    pub(crate) fn call_sibling(&self, target: &Ident, args: &[TokenStream]) -> TokenStream {
        let path = self.path();
        let turbofish = turbofish(&self.outline.function.item.sig.generics);
        quote!(#path #target #turbofish(#(#args),*))
    }
}
