//! What `#[cache]` emits when it finds a problem: the user's item exactly as
//! written, the errors, and (when the item is a function) its companions as
//! stubs with the signatures they would have, so that the rest of the crate
//! still type-checks and only the real errors are reported.
//!
//! A stub never runs: the errors stop the build. `{fn}_refresh` and
//! `{fn}_uncached` call the function itself, so they return whatever it
//! returns; the others diverge.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use crate::companions::{internal, Companions};
use crate::plan::Outline;
use crate::signature::mentioned_names;

pub(crate) fn expand(
    item: TokenStream,
    outline: Option<&Outline>,
    errors: syn::Error,
) -> TokenStream {
    let errors = errors.into_compile_error();
    let stubs = outline.map(stubs).unwrap_or_default();
    quote! {
        #item
        #errors
        #stubs
    }
}

fn stubs(outline: &Outline) -> TokenStream {
    let companions = Companions::new(outline);
    let function = &outline.function;
    let vis = &function.item.vis;
    let root = &outline.root;
    let asyncness = function.item.sig.asyncness;
    let allow = quote!(#[allow(unused_variables)]);
    let never = quote!(::core::unreachable!());

    // Name, head, parameters and generics of a companion taking key args
    // (and, for `_put`, the value).
    let key_args = |kind: &str, with_value: bool| {
        let (mut params, mut uses) = companions.key_params();
        let mut any_value = None;
        if with_value {
            let value = companions.value_param();
            match &function.output {
                Some(output) => {
                    let value_ty = &output.value;
                    uses.extend(mentioned_names(value_ty.to_token_stream()));
                    params.push(quote!(#value: #value_ty));
                }
                // Nothing to cache, so no type to take: any value will do.
                None => {
                    let ty = internal("__CachetteValue");
                    params.push(quote!(#value: #ty));
                    any_value = Some(ty);
                }
            }
        }
        let mut generics = companions.generics_for(&uses);
        if let Some(ty) = any_value {
            generics.params.push(syn::parse_quote!(#ty));
            generics.lt_token.get_or_insert_with(Default::default);
            generics.gt_token.get_or_insert_with(Default::default);
        }
        (
            companions.name(kind),
            companions.head(kind),
            params,
            generics,
        )
    };

    let (name, head, params, generics) = key_args("key", false);
    let where_clause = &generics.where_clause;
    let key = quote! {
        #head #allow
        #vis fn #name #generics(#(#params),*) -> ::std::string::String #where_clause { #never }
    };

    let mut results = Vec::new();
    for (kind, with_value) in [("invalidate", false), ("put", true)] {
        let (name, head, params, generics) = key_args(kind, with_value);
        let where_clause = &generics.where_clause;
        results.push(quote! {
            #head #allow
            #vis #asyncness fn #name #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            { #never }
        });
    }

    let mut runs = Vec::new();
    for kind in ["refresh", "uncached"] {
        let head = companions.head(kind);
        let (sig, args) = companions.forwarding(companions.name(kind));
        let call = companions.call_sibling(function.name(), &args);
        let call = match asyncness {
            Some(_) => quote!(#call.await),
            None => call,
        };
        runs.push(quote! {
            #head
            #vis #sig { #call }
        });
    }

    // An `Entry<impl Trait>` stub could not name its type: none is
    // emitted for such a function, whose error already says why.
    let hides_its_type = match &function.item.sig.output {
        syn::ReturnType::Type(_, ty) => mentions_impl(ty.to_token_stream()),
        syn::ReturnType::Default => false,
    };
    let entry = match hides_its_type {
        true => TokenStream::new(),
        false => {
            let head = companions.head("entry");
            let (sig, _) = companions.entry_signature();
            quote! {
                #head #allow
                #vis #sig { #never }
            }
        }
    };

    let tags = outline.tags.iter().map(|tag| {
        let ([(render, render_head), (invalidate, invalidate_head)], params, uses) =
            companions.tag_heads(tag);
        let generics = companions.generics_for(&uses);
        let where_clause = &generics.where_clause;
        quote! {
            #render_head #allow
            #vis fn #render #generics(#(#params),*) -> ::std::string::String #where_clause { #never }
            #invalidate_head #allow
            #vis #asyncness fn #invalidate #generics(#(#params),*)
                -> ::core::result::Result<(), #root::Error> #where_clause
            { #never }
        }
    });

    quote! {
        #key
        #(#results)*
        #(#runs)*
        #entry
        #(#tags)*
    }
}

/// Whether `tokens` hold `impl` anywhere, inside groups too.
fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == "impl",
        proc_macro2::TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}
