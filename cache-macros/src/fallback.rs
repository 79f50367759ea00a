//! What `#[cache]` emits when it finds a problem: the user's item exactly as
//! written, next to the errors, so that the rest of the crate still
//! type-checks and the errors are not buried under follow-on ones.

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn expand(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    quote! {
        #item
        #errors
    }
}
