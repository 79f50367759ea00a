//! The code for a `#[cache_many]` function: the per-element twin's site
//! and render helpers, `{fn}_key` and tag companions (from [`Generator`]),
//! and, from the function as written, the wrapper, `{fn}_invalidate`,
//! `{fn}_put` (a map), `{fn}_refresh` and `{fn}_uncached`, which drive the
//! runtime's batch.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{AttrStyle, FnArg, Generics, Ident, Type};

use super::{expectation_met_elsewhere, generic_name, uncached_of, Generator};
use crate::companions::{internal, turbofish, Companions};
use crate::many::{owned_collection, Many};
use crate::plan::{Outline, Plan};
use crate::signature::{mentioned_names, Function, ParamKind};

/// Everything a `#[cache_many]` function adds.
pub(crate) fn expand_many(plan: &Plan, many: &Many) -> TokenStream {
    let outline = Outline {
        function: Function::new(many.original.clone()),
        root: plan.outline.root.clone(),
        key_params: plan.outline.key_params.clone(),
        mentioned: plan.outline.mentioned.clone(),
        scope: plan.outline.scope,
        tags: Vec::new(),
    };
    let many_gen = ManyGenerator {
        generator: Generator::new(plan),
        original: Companions::new(&outline),
        many,
    };
    let generator = &many_gen.generator;
    let site = generator.site_helper();
    let render = generator.render_helper();
    let key = generator.key_companion();
    let tags = generator.tag_companions();
    let wrapper = many_gen.wrapper();
    let invalidate = many_gen.invalidate_companion();
    let put = many_gen.put_companion();
    let refresh = many_gen.refresh_companion();
    let uncached = many_gen.uncached_companion();
    quote! {
        #wrapper
        #site
        #render
        #key
        #invalidate
        #put
        #refresh
        #uncached
        #tags
    }
}

struct ManyGenerator<'a> {
    generator: Generator<'a>,
    /// The companions of the function as written.
    original: Companions<'a>,
    many: &'a Many,
}

impl ManyGenerator<'_> {
    fn private(&self) -> &TokenStream {
        &self.generator.private
    }

    /// The collection parameter's name.
    fn collection(&self) -> Ident {
        match &self.generator.plan.outline.function.params[self.many.param].kind {
            ParamKind::Named { ident } => ident.clone(),
            _ => internal("__cachette_elements"),
        }
    }

    /// `let (site, codec, tags) = site_helper(); let pick = ..;`
    fn fetch(&self) -> TokenStream {
        let generator = &self.generator;
        let path = generator.companions.path();
        let site_helper = generator.companions.helper("site");
        let site_turbofish = turbofish(&generator.site_generics);
        let (site, codec, escapes) = (
            internal("__cachette_site"),
            internal("__cachette_codec"),
            internal("__cachette_tags"),
        );
        let escapes = match generator.plan.tags.is_empty() {
            true => quote!(_),
            false => escapes.to_token_stream(),
        };
        let pick = generator.pick();
        let block = generator.pick_block();
        quote! {
            let (#site, #codec, #escapes) = #path #site_helper #site_turbofish();
            let #pick = #block;
        }
    }

    /// `|w, ids: &K| render(w, template, ..)`.
    fn render_closure(&self, template: usize) -> TokenStream {
        let private = self.private();
        let w = internal("__cachette_w");
        let element = &self.many.element;
        let collection = self.collection();
        let call = self
            .generator
            .render_call(&w, Literal::usize_unsuffixed(template));
        quote!(|#w: &mut #private::KeyWriter<'_>, #collection: &#element| #call)
    }

    /// The key closure and the tags, as the batch takes them.
    fn key_and_tags(&self) -> (TokenStream, TokenStream) {
        let private = self.private();
        let escapes = internal("__cachette_tags");
        let tags = (0..self.generator.plan.tags.len()).map(|index| {
            let render = self.render_closure(index + 1);
            let index = Literal::usize_unsuffixed(index);
            quote!(#private::ManyTag { escape: #escapes[#index], render: &#render })
        });
        (self.render_closure(0), quote!(&[#(#tags),*]))
    }

    /// `let keys = (&ElementProbe::<K>::new()).keys();`: whether the element
    /// type can key a batch, so that one that cannot is reported once, at
    /// the check.
    fn keys(&self) -> TokenStream {
        let private = self.private();
        let element = &self.many.element;
        let keys = internal("__cachette_keys");
        quote! {
            let #keys = {
                #[allow(unused_imports)]
                use #private::{PickKeys as _, PickUnkeyed as _};
                #[allow(clippy::needless_borrow)]
                let k = (&#private::ElementProbe::<#element>::new()).keys();
                k
            };
        }
    }

    /// `<K as ManyElement>::check();`, spanned at the element type, and
    /// `<MapKey as KeyedBy<K>>::check();`, spanned at the map's key type.
    fn element_check(&self) -> TokenStream {
        let root = &self.generator.plan.outline.root;
        let (element, map_key) = (&self.many.element, &self.many.map_key);
        let span = element.span();
        let element_check = quote_spanned!(span=> <#element as #root::ManyElement>::check(););
        let span = map_key.span();
        let keyed = quote_spanned!(span=> <#map_key as #root::KeyedBy<#element>>::check(););
        quote!(#element_check #keyed)
    }

    /// The wrapper (`refresh` false) or `{fn}_refresh`: a batch, and the
    /// loop that runs the body for what it asks.
    fn batch_function(&self, refresh: bool) -> TokenStream {
        let item = &self.many.original;
        let private = self.private();
        let generator = &self.generator;
        let name = match refresh {
            true => self.original.name("refresh"),
            false => item.sig.ident.clone(),
        };
        let (sig, args) = self.original.forwarding(name);
        let attrs: Vec<TokenStream> = match refresh {
            true => {
                let doc = format!(
                    " Runs the body of `{}` now for every element, bypassing the cache for the lookup, and stores each result as it would on a miss.",
                    self.original.fn_name()
                );
                vec![self.original.head_with(&doc)]
            }
            false => item
                .attrs
                .iter()
                .filter(|attr| matches!(attr.style, AttrStyle::Outer))
                .map(expectation_met_elsewhere)
                .collect(),
        };
        let vis = &item.vis;
        let cache_binding = generator.cache_binding(true);
        let fetch = self.fetch();
        let (key, tags) = self.key_and_tags();
        let (pick, site, cache, codec) = (
            generator.pick(),
            internal("__cachette_site"),
            internal("__cachette_cache"),
            internal("__cachette_codec"),
        );
        let (element, value, map) = (&self.many.element, &self.many.value, &self.many.map);
        let collection = self.collection();
        let batch = internal("__cachette_batch");
        let start = match refresh {
            true => quote!(write_many),
            false => quote!(many),
        };
        let keys = self.keys();
        let keys_var = internal("__cachette_keys");
        let (step, fill, await_) = match generator.is_async() {
            true => (quote!(step_async), quote!(fill_async), quote!(.await)),
            false => (
                quote!(step_blocking),
                quote!(fill_blocking),
                TokenStream::new(),
            ),
        };
        let (found, missing, owned, ret, error) = (
            internal("__cachette_found"),
            internal("__cachette_missing"),
            internal("__cachette_owned"),
            internal("__cachette_ret"),
            internal("__cachette_error"),
        );
        let (owned_ty, by_reference) = owned_collection(self.many);
        let function = &self.original.outline.function;
        let body_args: Vec<TokenStream> = args
            .iter()
            .enumerate()
            .map(|(index, arg)| {
                if index == self.many.param {
                    return match by_reference {
                        true => quote!(&#owned),
                        false => quote!(#owned),
                    };
                }
                // The body may run twice (for elements whose other loader
                // failed): what it takes by value is cloned.
                let by_value = match &function.params[index].arg {
                    FnArg::Receiver(receiver) => receiver.reference.is_none(),
                    FnArg::Typed(typed) => !matches!(*typed.ty, Type::Reference(_)),
                };
                match by_value {
                    true => quote_spanned!(arg.span()=> ::core::clone::Clone::clone(&#arg)),
                    false => arg.clone(),
                }
            })
            .collect();
        let body = self
            .original
            .call_sibling(&self.original.name("uncached"), &body_args);
        // The body inside the batch's `cachette.load` span.
        let failed = match self.many.fallible {
            true => quote!(::core::result::Result::is_err),
            false => quote!(|_| false),
        };
        let run = match generator.is_async() {
            true => quote!(#batch.body_async(#body, #failed).await),
            false => quote!(#batch.body_blocking(|| #body, #failed)),
        };
        let (done, handle) = match self.many.fallible {
            true => (
                quote!(::core::result::Result::Ok(#found)),
                quote! {
                    match #ret {
                        ::core::result::Result::Ok(#found) => #batch.#fill(#found) #await_,
                        ::core::result::Result::Err(#error) => {
                            if !#batch.fail() {
                                break ::core::result::Result::Err(#error);
                            }
                        }
                    }
                },
            ),
            false => (quote!(#found), quote!(#batch.#fill(#ret) #await_;)),
        };
        let check = self.element_check();
        quote! {
            #(#attrs)*
            #[allow(clippy::clone_on_copy, clippy::redundant_clone)]
            #vis #sig {
                #check
                #cache_binding
                #fetch
                #keys
                let mut #batch = #pick.#start::<#value, #element, _>(
                    #keys_var, #site, #cache, #codec, (#collection).iter(), #key, #tags,
                );
                loop {
                    match #batch.#step::<#map>() #await_ {
                        #private::Step::Done(#found) => break #done,
                        #private::Step::Load(#missing) => {
                            let #owned: #owned_ty = ::core::iter::Iterator::collect(
                                ::core::iter::IntoIterator::into_iter(#missing),
                            );
                            let #ret = #run;
                            #handle
                        }
                    }
                }
            }
        }
    }

    fn wrapper(&self) -> TokenStream {
        self.batch_function(false)
    }

    fn refresh_companion(&self) -> TokenStream {
        self.batch_function(true)
    }

    /// The name, parameters and generics of a companion taking the key args
    /// as written (the collection among them), with the collection replaced
    /// by `replace` when given.
    fn key_args_head(
        &self,
        kind: &str,
        replace: Option<(TokenStream, TokenStream)>,
    ) -> (Ident, Vec<TokenStream>, Generics) {
        let (mut params, mut uses) = self.original.key_params();
        uses.extend(
            self.generator
                .site_generics
                .params
                .iter()
                .chain(&self.generator.render_generics.params)
                .filter(|param| !matches!(param, syn::GenericParam::Lifetime(_)))
                .map(generic_name),
        );
        if let Some((param, types)) = replace {
            let at = self
                .original
                .outline
                .key_params
                .iter()
                .position(|&index| index == self.many.param);
            if let Some(at) = at {
                uses.extend(mentioned_names(types));
                params[at] = param;
            }
        }
        (
            self.original.name(kind),
            params,
            self.original.generics_for(&uses),
        )
    }

    /// `{fn}_invalidate(collection, key args) -> Result<(), Error>`.
    fn invalidate_companion(&self) -> TokenStream {
        let name = self.original.fn_name();
        let head = self.original.head_with(&format!(
            " Drops the cached results of `{name}` for every element of the collection from every tier, and tells other processes to drop them."
        ));
        let vis = &self.many.original.vis;
        let (fn_name, params, generics) = self.key_args_head("invalidate", None);
        let where_clause = &generics.where_clause;
        let root = &self.generator.plan.outline.root;
        let private = self.private();
        let cache_binding = self.generator.cache_binding(false);
        let path = self.generator.companions.path();
        let site_helper = self.generator.companions.helper("site");
        let site_turbofish = turbofish(&self.generator.site_generics);
        let (site, cache) = (internal("__cachette_site"), internal("__cachette_cache"));
        let collection = self.collection();
        let key = self.render_closure(0);
        let (asyncness, function, await_) = match self.generator.is_async() {
            true => (quote!(async), quote!(invalidate_many_async), quote!(.await)),
            false => (
                TokenStream::new(),
                quote!(invalidate_many_blocking),
                TokenStream::new(),
            ),
        };
        quote! {
            #head
            #vis #asyncness fn #fn_name #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            {
                #cache_binding
                let (#site, _, _) = #path #site_helper #site_turbofish();
                #private::#function(#site, #cache, (#collection).iter(), #key) #await_
            }
        }
    }

    /// `{fn}_put(map, other key args) -> Result<(), Error>`: stores every
    /// entry of the map as the cached result of its element.
    fn put_companion(&self) -> TokenStream {
        let name = self.original.fn_name();
        let head = self.original.head_with(&format!(
            " Stores each value of `value` as the cached result of `{name}` for its element, in every tier: one call to warm many keys."
        ));
        let vis = &self.many.original.vis;
        let map = &self.many.map;
        let value = self.original.value_param();
        let (fn_name, params, generics) =
            self.key_args_head("put", Some((quote!(#value: #map), map.to_token_stream())));
        let where_clause = &generics.where_clause;
        let root = &self.generator.plan.outline.root;
        let cache_binding = self.generator.cache_binding(false);
        let fetch = self.fetch();
        let (key, tags) = self.key_and_tags();
        let (pick, site, cache, codec) = (
            self.generator.pick(),
            internal("__cachette_site"),
            internal("__cachette_cache"),
            internal("__cachette_codec"),
        );
        let (element, value_ty) = (&self.many.element, &self.many.value);
        let result = internal("__cachette_put");
        let (asyncness, function, await_) = match self.generator.is_async() {
            true => (quote!(async), quote!(put_async), quote!(.await)),
            false => (TokenStream::new(), quote!(put_blocking), TokenStream::new()),
        };
        let check = self.element_check();
        let keys = self.keys();
        let keys_var = internal("__cachette_keys");
        let values = internal("__cachette_values");
        let pair = internal("__cachette_pair");
        quote! {
            #head
            #vis #asyncness fn #fn_name #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            {
                #check
                #cache_binding
                #fetch
                #keys
                let #values: ::std::vec::Vec<(#element, #value_ty)> =
                    ::core::iter::Iterator::collect(::core::iter::IntoIterator::into_iter(#value));
                let #result = #pick.write_many::<#value_ty, #element, _>(
                    #keys_var,
                    #site,
                    #cache,
                    #codec,
                    ::core::iter::Iterator::map(#values.iter(), |#pair| &#pair.0),
                    #key,
                    #tags,
                )
                .#function(#values);
                #result #await_
            }
        }
    }

    /// `{fn}_uncached(all args)`: the function as written, renamed.
    fn uncached_companion(&self) -> TokenStream {
        uncached_of(&self.original)
    }
}
