//! `#[derive(KeyPart)]`: a struct writes its fields in order, separated by
//! `,` (escaped inside them, so field boundaries cannot be forged), and a
//! fieldless enum writes its variant's name.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericParam, Path};

use crate::ctxt::Ctxt;

/// The derive on `proc_macro2` tokens.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let cx = Ctxt::new();
    let root = root(&cx, &input);
    let body = match &input.data {
        Data::Struct(data) => struct_body(&cx, &data.fields),
        Data::Enum(data) => {
            let arms = data.variants.iter().map(|variant| {
                if !matches!(variant.fields, Fields::Unit) {
                    cx.error_spanned_by(
                        &variant.fields,
                        format!(
                            "`#[derive(KeyPart)]` writes an enum as its variant's name, so the variants cannot hold data, but `{}` does; implement `KeyPart` by hand for `{}`",
                            variant.ident, input.ident
                        ),
                    );
                }
                let ident = &variant.ident;
                let name = ident.to_string();
                quote!(Self::#ident { .. } => __cachette_out.write_str(#name),)
            });
            quote! {
                match self {
                    #(#arms)*
                }
            }
        }
        Data::Union(data) => {
            cx.error_at(
                data.union_token.span,
                "`#[derive(KeyPart)]` cannot tell which field of a union is set; implement `KeyPart` by hand",
            );
            TokenStream::new()
        }
    };
    if let Err(errors) = cx.check() {
        return errors.to_compile_error();
    }
    let ident = &input.ident;
    let mut generics = input.generics.clone();
    for param in &mut generics.params {
        if let GenericParam::Type(ty) = param {
            ty.bounds.push(syn::parse_quote!(#root::KeyPart));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #root::KeyPart for #ident #ty_generics #where_clause {
            fn write_key(&self, __cachette_out: &mut #root::KeyWriter<'_>) {
                #body
            }
        }
    }
}

/// `#[key_part(crate = "path")]` on the type, or `::cachette`.
fn root(cx: &Ctxt, input: &DeriveInput) -> Path {
    let mut root: Path = syn::parse_quote!(::cachette);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("key_part")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                root = lit.parse()?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `key_part` argument; on the type, write `#[key_part(crate = \"path\")]`",
                ))
            }
        });
        if let Err(error) = parsed {
            cx.syn_error(error);
        }
    }
    root
}

/// The fields in the key, in order: all but those marked
/// `#[key_part(skip)]`.
fn struct_body(cx: &Ctxt, fields: &Fields) -> TokenStream {
    let mut parts = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let mut skip = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("key_part")) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    skip = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown `key_part` argument; on a field, write `#[key_part(skip)]` to leave it out of the key",
                    ))
                }
            });
            if let Err(error) = parsed {
                cx.syn_error(error);
            }
        }
        if skip {
            continue;
        }
        let member = match &field.ident {
            Some(ident) => quote!(#ident),
            None => {
                let index = syn::Index::from(index);
                quote!(#index)
            }
        };
        // Spanned at the field, where a type without `KeyPart` is reported.
        parts.push(quote_spanned!(field.ty.span()=> &self.#member));
    }
    quote! {
        __cachette_out.write_fields(&[#(#parts),*]);
    }
}
