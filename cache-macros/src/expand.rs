//! Writes the code for a checked [`Plan`]: the wrapper that replaces the
//! function's body, and the companions beside it.
//!
//! The signature is left as written and only the body is replaced. Internal
//! names are `__cachette_*` at `Span::mixed_site()`, so they cannot meet the
//! user's names; every path is absolute.

use std::collections::HashSet;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{AttrStyle, Attribute, FnArg, Ident};

use crate::args::Tier;
use crate::signature::{generics_needed, mentioned_names, ParamKind};
use crate::validate::{CacheSource, Piece, Plan, Rendering};

/// The wrapper followed by the five companions.
pub(crate) fn expand(plan: &Plan) -> TokenStream {
    let generator = Generator::new(plan);
    let wrapper = generator.wrapper();
    let key = generator.key_companion();
    let invalidate = generator.invalidate_companion();
    let put = generator.put_companion();
    let refresh = generator.refresh_companion();
    let uncached = generator.uncached_companion();
    quote! {
        #wrapper
        #key
        #invalidate
        #put
        #refresh
        #uncached
    }
}

struct Generator<'a> {
    plan: &'a Plan,
    /// `::cachette::__private`.
    private: TokenStream,
    site: Ident,
    writer: Ident,
    cache: Ident,
}

/// An identifier no user code can name.
fn internal(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

impl<'a> Generator<'a> {
    fn new(plan: &'a Plan) -> Self {
        let root = &plan.root;
        Generator {
            plan,
            private: quote!(#root::__private),
            site: internal("__CACHETTE_SITE"),
            writer: internal("__cachette_w"),
            cache: internal("__cachette_cache"),
        }
    }

    fn fn_name(&self) -> String {
        self.plan.function.name().unraw().to_string()
    }

    /// The original function with its body replaced by a lookup.
    fn wrapper(&self) -> TokenStream {
        let item = &self.plan.function.item;
        let (outer, inner) = split_attrs(&item.attrs);
        let vis = &item.vis;
        let sig = &item.sig;
        let private = &self.private;
        let site = self.site_static();
        let cache = self.cache_binding(true);
        let cache_ident = &self.cache;
        let site_ident = &self.site;
        let shape = self.shape();
        let ret = &self.plan.output.ty;
        let key = self.key_closure(&self.plan.key);
        let tags = self.tags();
        let lookup = internal("__cachette_lookup");
        let value_codec = self.value_codec();
        let value = internal("__cachette_v");
        let load = internal("__cachette_load");
        let run = self.run_body(&load);
        quote! {
            #(#outer)*
            #vis #sig {
                #(#inner)*
                #site
                #cache
                let #lookup = #private::lookup::<#shape, #ret>(
                    &#site_ident,
                    #cache_ident,
                    #value_codec,
                    #key,
                    #tags,
                );
                match #lookup {
                    #private::Lookup::Hit(#value) => #value,
                    #private::Lookup::Miss(#load) => #run,
                }
            }
        }
    }

    /// What the companions taking key args (`_key`, `_invalidate`, `_put`)
    /// share: their name, parameters (plus `extra`, a parameter and the
    /// types it needs), the generic parameters those use, rustdoc and
    /// visibility.
    fn key_args_head(
        &self,
        kind: &str,
        doc: &str,
        extra: Option<(TokenStream, TokenStream)>,
    ) -> KeyArgsHead<'_> {
        let (mut params, mut uses) = self.key_params();
        if let Some((param, types)) = extra {
            uses.extend(mentioned_names(types));
            params.push(param);
        }
        KeyArgsHead {
            name: self.companion_name(kind),
            params,
            generics: generics_needed(&self.plan.function.item.sig.generics, &uses),
            head: self.companion_head(doc),
            vis: &self.plan.function.item.vis,
        }
    }

    /// `{fn}_key(key args) -> String`, always sync.
    fn key_companion(&self) -> TokenStream {
        let doc = format!(
            " Returns the cache key that `{}` uses for these arguments.",
            self.fn_name()
        );
        let KeyArgsHead {
            name,
            params,
            generics,
            head,
            vis,
        } = self.key_args_head("key", &doc, None);
        let where_clause = &generics.where_clause;
        let private = &self.private;
        let site = self.site_static();
        let site_ident = &self.site;
        let key = self.key_closure(&self.plan.key);
        // A key arg that only picks the cache is not needed for the key.
        quote! {
            #head
            #[allow(unused_variables)]
            #vis fn #name #generics(#(#params),*) -> ::std::string::String #where_clause {
                #site
                #private::key_string(&#site_ident, #key)
            }
        }
    }

    /// `{fn}_invalidate(key args) -> Result<(), Error>`.
    fn invalidate_companion(&self) -> TokenStream {
        let doc = format!(
            " Drops the cached result of `{}` for these arguments from every tier, and tells other processes to drop it.",
            self.fn_name()
        );
        let KeyArgsHead {
            name,
            params,
            generics,
            head,
            vis,
        } = self.key_args_head("invalidate", &doc, None);
        let where_clause = &generics.where_clause;
        let root = &self.plan.root;
        let private = &self.private;
        let site = self.site_static();
        let site_ident = &self.site;
        let cache = self.cache_binding(false);
        let cache_ident = &self.cache;
        let key = self.key_closure(&self.plan.key);
        let (asyncness, call) = if self.plan.function.is_async() {
            (
                quote!(async),
                quote!(#private::invalidate_async(&#site_ident, #cache_ident, #key).await),
            )
        } else {
            (
                TokenStream::new(),
                quote!(#private::invalidate_blocking(&#site_ident, #cache_ident, #key)),
            )
        };
        quote! {
            #head
            #vis #asyncness fn #name #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            {
                #site
                #cache
                #call
            }
        }
    }

    /// `{fn}_put(key args, value) -> Result<(), Error>`.
    fn put_companion(&self) -> TokenStream {
        let doc = format!(
            " Stores `value` as the cached result of `{}` for these arguments, in every tier.",
            self.fn_name()
        );
        let value_ty = &self.plan.output.value;
        let ret = &self.plan.output.ty;
        let value = self.value_param();
        let KeyArgsHead {
            name,
            params,
            generics,
            head,
            vis,
        } = self.key_args_head(
            "put",
            &doc,
            Some((quote!(#value: #value_ty), quote!(#value_ty #ret))),
        );
        let where_clause = &generics.where_clause;
        let root = &self.plan.root;
        let private = &self.private;
        let site = self.site_static();
        let site_ident = &self.site;
        let cache = self.cache_binding(false);
        let cache_ident = &self.cache;
        let shape = self.shape();
        let key = self.key_closure(&self.plan.key);
        let tags = self.tags();
        let value_codec = self.value_codec();
        let (asyncness, function, await_) = if self.plan.function.is_async() {
            (quote!(async), quote!(put_async), quote!(.await))
        } else {
            (TokenStream::new(), quote!(put_blocking), TokenStream::new())
        };
        quote! {
            #head
            #vis #asyncness fn #name #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            {
                #site
                #cache
                #private::#function::<#shape, #ret>(&#site_ident, #cache_ident, #value_codec, #key, #tags, #value)#await_
            }
        }
    }

    /// What a companion that repeats the body (`_refresh`, `_uncached`)
    /// takes from the function: its signature renamed, visibility, inner
    /// attributes and lint attributes, under a doc line of its own.
    fn body_copy(&self, doc: &str, kind: &str) -> BodyCopy<'_> {
        let item = &self.plan.function.item;
        let (_, inner) = split_attrs(&item.attrs);
        let mut sig = item.sig.clone();
        sig.ident = self.companion_name(kind);
        BodyCopy {
            head: self.companion_head(doc),
            lints: body_copy_lints(&item.attrs),
            vis: &item.vis,
            sig,
            inner,
        }
    }

    /// `{fn}_refresh(all args) -> R`: runs the body and stores the result.
    fn refresh_companion(&self) -> TokenStream {
        let doc = format!(
            " Runs the body of `{}` now, bypassing the cache for the lookup, and stores the result as it would on a miss.",
            self.fn_name()
        );
        let BodyCopy {
            head,
            lints,
            vis,
            sig,
            inner,
        } = self.body_copy(&doc, "refresh");
        let private = &self.private;
        let site = self.site_static();
        let site_ident = &self.site;
        let cache = self.cache_binding(true);
        let cache_ident = &self.cache;
        let key = self.key_closure(&self.plan.key);
        let tags = self.tags();
        let load = internal("__cachette_load");
        let run = self.run_body(&load);
        let value_codec = self.value_codec();
        quote! {
            #head
            #lints
            #vis #sig {
                #(#inner)*
                #site
                #cache
                let #load = #private::refresh(&#site_ident, #cache_ident, #value_codec, #key, #tags);
                #run
            }
        }
    }

    /// `{fn}_uncached(all args) -> R`: the original body.
    fn uncached_companion(&self) -> TokenStream {
        let doc = format!(
            " Runs the body of `{}`, bypassing the cache: nothing is read or stored.",
            self.fn_name()
        );
        let BodyCopy {
            head,
            lints,
            vis,
            sig,
            inner,
        } = self.body_copy(&doc, "uncached");
        let stmts = &self.plan.function.item.block.stmts;
        quote! {
            #head
            #lints
            #vis #sig {
                #(#inner)*
                #(#stmts)*
            }
        }
    }

    fn companion_name(&self, suffix: &str) -> Ident {
        let name = self.plan.function.name();
        format_ident!("{}_{}", name, suffix, span = name.span())
    }

    /// The rustdoc line, the function's `#[cfg]`s, and the lints that a
    /// companion the caller does not use would trip.
    fn companion_head(&self, doc: &str) -> TokenStream {
        let cfgs = self
            .plan
            .function
            .item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"));
        quote! {
            #[doc = #doc]
            #(#cfgs)*
            #[allow(dead_code, clippy::too_many_arguments)]
        }
    }

    /// The key args as companion parameters, and the names their types (and
    /// the templates and `cache = ...`) mention, for choosing generics.
    fn key_params(&self) -> (Vec<TokenStream>, HashSet<String>) {
        let function = &self.plan.function;
        let mut uses = self.template_generics();
        if let CacheSource::Borrowed(expr) | CacheSource::Cloned(expr) = &self.plan.cache {
            uses.extend(mentioned_names(expr.to_token_stream()));
        }
        let mut params = Vec::new();
        for &index in &self.plan.key_params {
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

    /// Type and const parameters named by `<T>` and `<N>` placeholders in the
    /// key and tags. Plain `<param>` roots come along; `generics_needed`
    /// ignores names that are not generic parameters.
    fn template_generics(&self) -> HashSet<String> {
        std::iter::once(&self.plan.key)
            .chain(&self.plan.tags)
            .flat_map(|rendering| &rendering.pieces)
            .filter_map(|piece| match piece {
                Piece::TypeName { ident, .. } => Some(ident.to_string()),
                Piece::Value { root, fields, .. } if fields.is_empty() => Some(root.to_string()),
                _ => None,
            })
            .collect()
    }

    /// `_put`'s value parameter: `value`, unless a key arg is called that.
    fn value_param(&self) -> Ident {
        let taken: HashSet<String> = self
            .plan
            .function
            .params
            .iter()
            .filter_map(|param| param.name())
            .collect();
        let name = ["value", "cached_value", "__cachette_value"]
            .into_iter()
            .find(|name| !taken.contains(*name))
            .unwrap_or("__cachette_value");
        internal(name)
    }

    /// `static __CACHETTE_SITE: Site = Site::new(Spec { .. });`
    fn site_static(&self) -> TokenStream {
        let private = &self.private;
        let site = &self.site;
        let spec = &self.plan.spec;
        let name = match &spec.name {
            Some(name) => quote!(#name),
            None => {
                let fn_name = self.fn_name();
                quote!(::core::concat!(::core::module_path!(), "::", #fn_name))
            }
        };
        let duration = |ms: u64| {
            let ms = Literal::u64_suffixed(ms);
            quote!(::core::time::Duration::from_millis(#ms))
        };
        let optional = |value: Option<TokenStream>| match value {
            Some(value) => quote!(::core::option::Option::Some(#value)),
            None => quote!(::core::option::Option::None),
        };
        let ttl = duration(spec.ttl_ms);
        let jitter = Literal::f64_suffixed(spec.jitter);
        let negative_ttl = optional(spec.negative_ttl_ms.map(duration));
        let lock = spec.lock;
        let namespace = optional(spec.namespace.as_ref().map(|ns| quote!(#ns)));
        let version = Literal::u32_suffixed(spec.version);
        let l1_ttl = optional(spec.l1_ttl_ms.map(duration));
        let tier = match spec.tier {
            Tier::L1 => quote!(L1),
            Tier::L2 => quote!(L2),
            Tier::Both => quote!(Both),
        };
        let escape = &self.plan.key.escape;
        quote! {
            static #site: #private::Site = #private::Site::new(#private::Spec {
                name: #name,
                ttl: #ttl,
                jitter: #jitter,
                negative_ttl: #negative_ttl,
                lock: #lock,
                namespace: #namespace,
                version: #version,
                l1_ttl: #l1_ttl,
                tier: #private::Tier::#tier,
                key_escape: #private::Escape::of(#escape),
            });
        }
    }

    /// `let __cachette_cache: &Cache = ...;`. Where the body runs after it
    /// (`runs_body`), a cache expression that borrows a parameter the body
    /// takes by value is cloned first, so the borrow ends before the move.
    fn cache_binding(&self, runs_body: bool) -> TokenStream {
        let root = &self.plan.root;
        let private = &self.private;
        let cache = &self.cache;
        match &self.plan.cache {
            CacheSource::Global => quote! {
                let #cache: &#root::Cache = #private::global();
            },
            CacheSource::Cloned(expr) if runs_body => {
                let owned = internal("__cachette_cache_owned");
                quote! {
                    let #owned: #root::Cache = <#root::Cache as ::core::clone::Clone>::clone(&(#expr));
                    let #cache: &#root::Cache = &#owned;
                }
            }
            CacheSource::Borrowed(expr) | CacheSource::Cloned(expr) => quote! {
                let #cache: &#root::Cache = &(#expr);
            },
        }
    }

    /// `ROOT::__private::Plain` etc.
    fn shape(&self) -> TokenStream {
        let private = &self.private;
        let marker = Ident::new(self.plan.output.shape.marker(), Span::call_site());
        quote!(#private::#marker)
    }

    /// `ROOT::__private::shared::<Sh, R>()` for functions whose values may
    /// live in the shared tier, `ROOT::__private::local()` for `tier = "l1"`.
    /// Spanned at the return type, where a value without serde is reported.
    fn value_codec(&self) -> TokenStream {
        let private = &self.private;
        if matches!(self.plan.spec.tier, Tier::L1) {
            return quote!(#private::local());
        }
        let shape = self.shape();
        let ret = &self.plan.output.ty;
        let span = syn::spanned::Spanned::span(ret);
        quote_spanned!(span=> #private::shared::<#shape, #ret>())
    }

    /// `load.run_async::<Sh, R, _>(async move BODY).await` or the blocking twin.
    fn run_body(&self, load: &Ident) -> TokenStream {
        let shape = self.shape();
        let ret = &self.plan.output.ty;
        let block = &self.plan.function.item.block;
        if self.plan.function.is_async() {
            quote!(#load.run_async::<#shape, #ret, _>(async move #block).await)
        } else {
            quote!(#load.run_blocking::<#shape, #ret, _>(move || #block))
        }
    }

    /// `|w: &mut KeyWriter| { w.lit(".."); w.part(&id); .. }`. Each `part`
    /// call is spanned at its placeholder, so a type without `KeyPart` is
    /// reported on the key.
    fn key_closure(&self, rendering: &Rendering) -> TokenStream {
        let private = &self.private;
        let w = &self.writer;
        let steps = rendering.pieces.iter().map(|piece| match piece {
            Piece::Text(text) => quote!(#w.lit(#text);),
            Piece::Value { root, fields, span } => {
                quote_spanned!(*span=> #w.part(&#root #(.#fields)*);)
            }
            Piece::TypeName { ident, span } => {
                quote_spanned!(*span=> #w.type_name::<#ident>();)
            }
        });
        quote! {
            |#w: &mut #private::KeyWriter<'_>| {
                #(#steps)*
            }
        }
    }

    /// `&[Tag { escape, render }, ..]`.
    fn tags(&self) -> TokenStream {
        let private = &self.private;
        let tags = self.plan.tags.iter().map(|tag| {
            let escape = &tag.escape;
            let render = self.key_closure(tag);
            quote! {
                #private::Tag {
                    escape: #private::Escape::of(#escape),
                    render: &#render,
                }
            }
        });
        quote!(&[#(#tags),*])
    }
}

/// Outer attributes (kept on the wrapper) and inner ones (`#![..]`, kept
/// at the top of each body).
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    attrs
        .iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

/// For the companions that copy the body: the function's own lint
/// attributes (`#[allow]` and kin), and silence for the lints about unused
/// parameters, which the wrapper already reports for the same body (and
/// which a parameter used only by `cache = ...` would trip).
fn body_copy_lints(attrs: &[Attribute]) -> TokenStream {
    let own = attrs
        .iter()
        .filter(|attr| matches!(attr.style, AttrStyle::Outer))
        .filter(|attr| {
            ["allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|lint| attr.path().is_ident(lint))
        });
    quote! {
        #(#own)*
        #[allow(unused_variables, unused_mut)]
    }
}

/// The parts of a key-args companion; see `Generator::key_args_head`.
struct KeyArgsHead<'a> {
    name: Ident,
    params: Vec<TokenStream>,
    generics: syn::Generics,
    head: TokenStream,
    vis: &'a syn::Visibility,
}

/// The parts of a body-repeating companion; see `Generator::body_copy`.
struct BodyCopy<'a> {
    head: TokenStream,
    lints: TokenStream,
    vis: &'a syn::Visibility,
    sig: syn::Signature,
    inner: Vec<&'a syn::Attribute>,
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    /// The expansion without whitespace, so that token spacing does not
    /// matter when comparing.
    fn expand(args: TokenStream, item: TokenStream) -> String {
        squash(&crate::expand_attribute(args, item).to_string())
    }

    fn squash(text: &str) -> String {
        text.split_whitespace().collect()
    }

    fn assert_has(out: &str, parts: &[&str]) {
        for part in parts {
            assert!(out.contains(&squash(part)), "missing `{part}` in {out}");
        }
    }

    #[test]
    fn the_wrapper_keeps_the_signature_and_looks_up_before_the_body() {
        let out = expand(
            quote!(key = "user:<id>", ttl = 300, skip(db)),
            quote! {
                /// Docs.
                #[inline]
                pub async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError> {
                    db.fetch_user(id).await
                }
            },
        );
        let head = squash(
            r#"#[doc = r" Docs."] #[inline]
            pub async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError> {"#,
        );
        assert!(out.starts_with(&head), "{out}");
        assert_has(
            &out,
            &[
                "::cachette::__private::lookup::<::cachette::__private::ResOpt, Result<Option<User>, DbError> >",
                r#"__cachette_w.lit("user:");"#,
                "__cachette_w.part(&id);",
                "ttl: ::core::time::Duration::from_millis(300000u64)",
                r#"key_escape: ::cachette::__private::Escape::of("user:")"#,
                "run_async::<::cachette::__private::ResOpt, Result<Option<User>, DbError>, _>(async move { db.fetch_user(id).await }).await",
            ],
        );
    }

    #[test]
    fn every_companion_is_generated_with_the_functions_visibility() {
        let out = expand(
            quote!(key = "user:<id>", ttl = 300, skip(db)),
            quote!(
                pub(crate) fn get_user(db: &Db, id: u64) -> Option<User> {
                    db.get(id)
                }
            ),
        );
        assert_has(
            &out,
            &[
                "pub(crate) fn get_user_key(id: u64) -> ::std::string::String",
                "pub(crate) fn get_user_invalidate(id: u64) -> ::core::result::Result<(), ::cachette::Error>",
                "pub(crate) fn get_user_put(id: u64, value: Option<User>) -> ::core::result::Result<(), ::cachette::Error>",
                "pub(crate) fn get_user_refresh(db: &Db, id: u64) -> Option<User>",
                "pub(crate) fn get_user_uncached(db: &Db, id: u64) -> Option<User> { db.get(id) }",
                "::cachette::__private::invalidate_blocking",
                "::cachette::__private::put_blocking::<::cachette::__private::Opt, Option<User> >",
                "run_blocking::<::cachette::__private::Opt, Option<User>, _>(move || { db.get(id) })",
            ],
        );
    }

    #[test]
    fn companions_of_an_async_function_are_async_except_key() {
        let out = expand(
            quote!(ttl = 1),
            quote!(
                async fn f(id: u64) -> u64 {
                    id
                }
            ),
        );
        assert_has(
            &out,
            &[
                "fn f_key(id: u64)",
                "invalidate_async(&__CACHETTE_SITE, __cachette_cache,",
            ],
        );
        assert!(!out.contains("asyncfnf_key"), "{out}");
        for name in ["f_invalidate", "f_put", "f_refresh", "f_uncached"] {
            assert!(out.contains(&format!("asyncfn{name}")), "{name}: {out}");
        }
    }

    #[test]
    fn the_default_key_names_the_function_and_every_key_arg() {
        let out = expand(
            quote!(ttl = 1, skip(db)),
            quote!(
                fn find<T: Clone>(db: &Db, name: &str, id: u64) -> Vec<T> {
                    db.find(name, id)
                }
            ),
        );
        assert_has(
            &out,
            &[
                r#"__cachette_w.lit("find:");
                __cachette_w.part(&name);
                __cachette_w.lit(":");
                __cachette_w.part(&id);
                __cachette_w.lit(":");
                __cachette_w.type_name::<T>();"#,
                r#"Escape::of("find:::")"#,
            ],
        );
    }

    #[test]
    fn companions_drop_generics_they_do_not_use() {
        let out = expand(
            quote!(key = "len:<id>", ttl = 1, skip(source)),
            quote!(
                fn len<S: AsRef<str>>(source: S, id: u32) -> usize
                where
                    S: Clone,
                {
                    0
                }
            ),
        );
        assert_has(
            &out,
            &[
                "fn len_key(id: u32) -> ::std::string::String {",
                "fn len_uncached<S: AsRef<str> >(source: S, id: u32) -> usize where S: Clone",
            ],
        );
    }

    #[test]
    fn companions_take_self_only_when_the_key_uses_it() {
        let keyed = expand(
            quote!(key = "<self.tenant>:<id>", ttl = 1),
            quote!(
                fn get(&mut self, id: u32) -> u32 {
                    id
                }
            ),
        );
        assert_has(
            &keyed,
            &[
                "fn get_key(&self, id: u32)",
                "fn get_uncached(&mut self, id: u32)",
            ],
        );
        let skipped = expand(
            quote!(key = "<id>", ttl = 1, skip(self)),
            quote!(
                fn get(&self, id: u32) -> u32 {
                    id
                }
            ),
        );
        assert_has(&skipped, &["fn get_key(id: u32)"]);
    }

    #[test]
    fn a_cache_borrowed_from_a_moved_parameter_is_cloned_before_the_body() {
        let out = expand(
            quote!(key = "<id>", ttl = 1, cache = &self.cache),
            quote!(
                fn get(&mut self, id: u32) -> u32 {
                    id
                }
            ),
        );
        assert_has(
            &out,
            &["let __cachette_cache_owned: ::cachette::Cache =
                <::cachette::Cache as ::core::clone::Clone>::clone(&(&self.cache));"],
        );
        let shared = expand(
            quote!(key = "<id>", ttl = 1, cache = &self.cache),
            quote!(
                fn get(&self, id: u32) -> u32 {
                    id
                }
            ),
        );
        assert!(!shared.contains("__cachette_cache_owned"), "{shared}");
    }

    #[test]
    fn an_error_emits_the_function_unchanged_beside_it() {
        let item = quote!(
            fn get(id: u32) -> u32 {
                id
            }
        );
        let out = expand(quote!(key = "<idd>"), item.clone());
        assert!(out.starts_with(&squash(&item.to_string())), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("get_key"), "{out}");
    }

    #[test]
    fn the_crate_path_replaces_the_root() {
        let out = expand(
            quote!(ttl = 1, crate = "::app::cachette"),
            quote!(
                fn f() -> u8 {
                    1
                }
            ),
        );
        assert_has(&out, &["::app::cachette::__private::global()"]);
        assert!(
            !out.replace("::app::cachette", "").contains("::cachette"),
            "{out}"
        );
    }
}
