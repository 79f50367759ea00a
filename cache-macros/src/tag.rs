//! `tag!("org:<org>", org = value)`: renders a tag template outside any
//! cached function, escaped exactly as `#[cache(tags = [...])]` renders
//! the same template, for tags that several functions share.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token};

use crate::ctxt::Ctxt;
use crate::template::{Role, Segment, Template};

/// The template, then `name = value` arguments; a placeholder without one
/// names a variable in scope, as `format!` does.
struct Input {
    template: LitStr,
    args: Vec<(Ident, Expr)>,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let template: LitStr = input.parse()?;
        let mut args = Vec::new();
        if input.parse::<Option<Token![,]>>()?.is_some() {
            let pairs = Punctuated::<NamedArg, Token![,]>::parse_terminated(input)?;
            args = pairs.into_iter().map(|arg| (arg.name, arg.value)).collect();
        }
        Ok(Input { template, args })
    }
}

struct NamedArg {
    name: Ident,
    value: Expr,
}

impl Parse for NamedArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = input.parse()?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(NamedArg { name, value })
    }
}

pub(crate) fn expand(tokens: TokenStream, root: TokenStream) -> TokenStream {
    let input: Input = match syn::parse2(tokens) {
        Ok(input) => input,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!({ #error ::std::string::String::new() });
        }
    };
    let cx = Ctxt::new();
    let Some(template) = Template::parse(&cx, &input.template, Role::Tag) else {
        return cx
            .check()
            .err()
            .map(|e| e.to_compile_error())
            .unwrap_or_default();
    };
    let mut named: HashMap<String, (usize, &Expr)> = HashMap::new();
    let mut used = vec![false; input.args.len()];
    for (index, (name, value)) in input.args.iter().enumerate() {
        if named.contains_key(&name.to_string()) {
            cx.error_at(name.span(), format!("`{name}` is given twice; keep one"));
            used[index] = true;
            continue;
        }
        named.insert(name.to_string(), (index, value));
    }
    let w = format_ident!("__cachette_w");
    let mut bindings = Vec::new();
    let mut steps = Vec::new();
    for segment in &template.segments {
        match segment {
            Segment::Text(text) => steps.push(quote!(#w.lit(#text);)),
            Segment::Hole(hole) => {
                let fields: Vec<syn::Member> = hole
                    .fields
                    .iter()
                    .map(|field| match field.parse::<u32>() {
                        Ok(index) => syn::Member::Unnamed(syn::Index {
                            index,
                            span: hole.span,
                        }),
                        Err(_) => syn::Member::Named(format_ident!("{}", field, span = hole.span)),
                    })
                    .collect();
                let root_ident = format_ident!("{}", hole.root, span = hole.span);
                let value = match named.get(&hole.root) {
                    Some(&(index, expr)) => {
                        used[index] = true;
                        let bound = format_ident!("__cachette_arg{index}");
                        if !bindings.iter().any(|(i, _)| *i == index) {
                            bindings.push((index, quote!(let #bound = &(#expr);)));
                        }
                        quote_spanned!(hole.span=> #bound)
                    }
                    None => quote_spanned!(hole.span=> &#root_ident),
                };
                steps.push(quote_spanned!(hole.span=> #w.part(&(#value) #(.#fields)*);));
            }
        }
    }
    for ((name, _), used) in input.args.iter().zip(used) {
        if !used {
            cx.error_at(
                name.span(),
                format!(
                    "`{name}` is not in the template {:?}; add `<{name}>` to it, or remove `{name} = ..`",
                    template.source
                ),
            );
        }
    }
    if cx.has_errors() {
        return errors(cx);
    }
    let _ = cx.check();
    let bindings = bindings.into_iter().map(|(_, binding)| binding);
    let escape = template.literal_text();
    quote! {{
        #(#bindings)*
        let mut __cachette_text = ::std::string::String::new();
        {
            let mut #w = #root::__private::KeyWriter::new(
                &mut __cachette_text,
                const { #root::__private::Escape::of(#escape) },
            );
            #(#steps)*
        }
        __cachette_text
    }}
}

/// The errors, as an expression of the macro's type, so that the caller's
/// code reports nothing more.
fn errors(cx: Ctxt) -> TokenStream {
    let errors = cx.check().err().map(|e| e.to_compile_error());
    quote! {{
        #errors
        ::std::string::String::new()
    }}
}
