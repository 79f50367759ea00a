//! `#[cache_many]`: reads which parameter is the collection of keys and
//! which map the function returns, and turns the function into its
//! per-element twin (the collection replaced by one element, the map by one
//! element's value) for the `#[cache]` checks and templates. The generated
//! code then loops over the elements through the runtime's batch.
//!
//! The twin's return type is what a `#[cache]` function sharing the
//! entries returns: `V` (or `Result<V, E>`) without `negative_ttl`, and
//! `Option<V>` (or `Result<Option<V>, E>`) with it, where `None` is an
//! element the body's map left out.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::Args;
use crate::ctxt::{type_text, Ctxt};

/// How the body takes the collection.
pub(crate) enum Collection {
    /// `&[K]`: given a `&Vec<K>`.
    Slice,
    /// `&C` (`&Vec<K>`, `&HashSet<K>`, `&BTreeSet<K>`): given a `&C`.
    Borrowed(Type),
    /// `C`: given a `C`.
    Owned(Type),
}

/// What `#[cache_many]` found in the signature.
pub(crate) struct Many {
    /// Index of the collection among the parameters.
    pub(crate) param: usize,
    pub(crate) collection: Collection,
    /// The element type `K`.
    pub(crate) element: Type,
    /// The value type `V`.
    pub(crate) value: Type,
    /// The map type, `HashMap<K, V>` or `BTreeMap<K, V>`.
    pub(crate) map: Type,
    /// The map's key type as written: `K`, or another name of it.
    pub(crate) map_key: Type,
    /// Whether the function returns a `Result` of the map.
    pub(crate) fallible: bool,
    /// The function as written.
    pub(crate) original: ItemFn,
}

const COLLECTIONS: [&str; 3] = ["Vec", "HashSet", "BTreeSet"];
const FORMS: &str =
    "`&[K]`, `Vec<K>`, `&Vec<K>`, `HashSet<K>`, `BTreeSet<K>` or a reference to one";

/// Reads the collection and the map, and returns the per-element twin of
/// `item` with what was found; `None` after reporting why not.
pub(crate) fn analyze(cx: &Ctxt, args: &Args, item: &ItemFn) -> Option<(ItemFn, Many)> {
    let keyed = key_roots(args);
    let skipped: Vec<String> = args.skip.iter().map(ToString::to_string).collect();
    let mut found: Vec<(usize, String, Collection, Type)> = Vec::new();
    for (index, input) in item.sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else {
            continue;
        };
        let Pat::Ident(pat) = &*typed.pat else {
            continue;
        };
        let name = syn::ext::IdentExt::unraw(&pat.ident).to_string();
        let in_key = match &keyed {
            Some(roots) => roots.contains(&name),
            None => !skipped.contains(&name),
        };
        if !in_key {
            continue;
        }
        if let Some((collection, element)) = collection_of(&typed.ty) {
            found.push((index, name, collection, element));
        }
    }
    let span = args
        .key
        .as_ref()
        .map_or(Span::call_site(), |lit| lit.span());
    if found.is_empty() {
        let example = match &args.key {
            Some(lit) => format!("the key {:?} names none", lit.value()),
            None => "the function has none".to_owned(),
        };
        cx.error_at(
            span,
            format!(
                "`#[cache_many]` needs one collection of keys in the key: a parameter of type {FORMS}, \
                 named in the key as each element, like `key = \"user:<ids>\"` for `ids: &[u64]`; {example}"
            ),
        );
        return None;
    }
    if found.len() > 1 {
        let names: Vec<String> = found
            .iter()
            .map(|(_, name, ..)| format!("`{name}`"))
            .collect();
        let (index, ..) = &found[1];
        cx.error_spanned_by(
            &item.sig.inputs[*index],
            format!(
                "`#[cache_many]` takes one collection of keys, and the key names {}: keep one \
                 collection in the key, and `skip(..)` the others or pass them as one element each",
                names.join(" and ")
            ),
        );
        return None;
    }
    let (param, name, collection, element) = found.remove(0);
    let (map, map_key, value, fallible) = map_of(cx, item, &element, &name)?;
    let mut twin = item.clone();
    if let Some(FnArg::Typed(typed)) = twin.sig.inputs.iter_mut().nth(param) {
        *typed.ty = element.clone();
    }
    let stored: Type = match args.negative_ttl.is_some() {
        true => syn::parse_quote_spanned!(value.span()=> ::core::option::Option<#value>),
        false => value.clone(),
    };
    let output: Type = match fallible {
        true => {
            let mut ty = return_type(item).cloned()?;
            replace_first_arg(&mut ty, stored);
            ty
        }
        false => stored,
    };
    twin.sig.output = ReturnType::Type(Default::default(), Box::new(output));
    Some((
        twin,
        Many {
            param,
            collection,
            element,
            value,
            map,
            map_key,
            fallible,
            original: item.clone(),
        },
    ))
}

/// The roots of the key's placeholders (`ids` of `<ids.id>`); `None` when
/// the key is not written (the default key names every keyed parameter).
fn key_roots(args: &Args) -> Option<Vec<String>> {
    let text = args.key.as_ref()?.value();
    let mut roots = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if let Some(escaped) = rest.strip_prefix('<') {
            rest = escaped;
            continue;
        }
        let end = rest.find('>').unwrap_or(rest.len());
        let hole = &rest[..end];
        let root = hole.split('.').next().unwrap_or(hole).trim();
        roots.push(root.strip_prefix("r#").unwrap_or(root).to_owned());
        rest = &rest[end.min(rest.len())..];
    }
    Some(roots)
}

/// `&[K]`, `&C<K>` or `C<K>` for the collections `#[cache_many]` takes.
fn collection_of(ty: &Type) -> Option<(Collection, Type)> {
    match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_none() => {
            match ungroup(&reference.elem) {
                Type::Slice(slice) => Some((Collection::Slice, (*slice.elem).clone())),
                inner => {
                    let element = collection_element(inner)?;
                    Some((Collection::Borrowed(inner.clone()), element))
                }
            }
        }
        owned => {
            let element = collection_element(owned)?;
            Some((Collection::Owned(owned.clone()), element))
        }
    }
}

/// `K` of `Vec<K>`, `HashSet<K>` or `BTreeSet<K>` (by the last segment).
fn collection_element(ty: &Type) -> Option<Type> {
    let (name, args) = last_segment(ty)?;
    if !COLLECTIONS.contains(&name.as_str()) {
        return None;
    }
    args.into_iter().next()
}

/// The map the function returns, its value type and whether it is in a
/// `Result`; reports a return type that is not a map keyed by the element.
#[allow(
    clippy::type_complexity,
    reason = "the map, its key and value types, and whether in a Result"
)]
fn map_of(
    cx: &Ctxt,
    item: &ItemFn,
    element: &Type,
    name: &str,
) -> Option<(Type, Type, Type, bool)> {
    let element_text = type_text(element);
    let wrong = |ty: &dyn ToTokens| {
        cx.error_spanned_by(
            ty,
            format!(
                "`#[cache_many]` returns a map keyed by the elements of `{name}`: \
                 `HashMap<{element_text}, V>` or `BTreeMap<{element_text}, V>`, or a `Result` of one"
            ),
        );
    };
    let Some(ty) = return_type(item) else {
        wrong(&item.sig);
        return None;
    };
    let (map, fallible) = match last_segment(ty) {
        Some((segment, args)) if segment == "Result" => match args.into_iter().next() {
            Some(ok) => (ok, true),
            None => {
                wrong(ty);
                return None;
            }
        },
        _ => (ty.clone(), false),
    };
    let Some((segment, args)) = last_segment(&map) else {
        wrong(&map);
        return None;
    };
    if !matches!(segment.as_str(), "HashMap" | "BTreeMap") || args.len() < 2 {
        wrong(&map);
        return None;
    }
    let key = &args[0];
    // Two names of one type (an alias) are the compiler's to tell apart:
    // the generated check reports a real difference. Only types that no
    // alias can stand for are compared here, for a clearer message.
    if squash(key) != squash(element) && plainly_named(key) && plainly_named(element) {
        cx.error_spanned_by(
            key,
            format!(
                "the map is keyed by `{}`, but the elements of `{name}` are `{element_text}`: \
                 `#[cache_many]` returns each element's value under the element itself",
                type_text(key)
            ),
        );
        return None;
    }
    Some((map.clone(), key.clone(), args[1].clone(), fallible))
}

/// Whether `ty` is named so that no alias can be behind it: a primitive,
/// `String`, or a reference or tuple of those.
fn plainly_named(ty: &Type) -> bool {
    const PLAIN: [&str; 18] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "bool", "char", "str", "String", "f32", "f64",
    ];
    match ungroup(ty) {
        Type::Reference(reference) => plainly_named(&reference.elem),
        Type::Tuple(tuple) => tuple.elems.iter().all(plainly_named),
        Type::Path(path) if path.qself.is_none() && path.path.segments.len() == 1 => {
            let segment = &path.path.segments[0];
            segment.arguments.is_empty() && PLAIN.contains(&segment.ident.to_string().as_str())
        }
        _ => false,
    }
}

fn squash(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .split_whitespace()
        .collect()
}

fn return_type(item: &ItemFn) -> Option<&Type> {
    match &item.sig.output {
        ReturnType::Type(_, ty) => Some(ty),
        ReturnType::Default => None,
    }
}

/// The last path segment's name and type arguments.
fn last_segment(ty: &Type) -> Option<(String, Vec<Type>)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((segment.ident.to_string(), args))
}

/// Replaces the first type argument of the last segment of `ty`.
fn replace_first_arg(ty: &mut Type, with: Type) {
    let Type::Path(path) = ty else {
        return;
    };
    let Some(segment) = path.path.segments.last_mut() else {
        return;
    };
    if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
        if let Some(first) = args.args.iter_mut().find_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        }) {
            *first = with;
        }
    }
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

/// The owned collection the body's argument is made from, and how it is
/// passed (`&owned` or `owned`).
pub(crate) fn owned_collection(many: &Many) -> (TokenStream, bool) {
    let element = &many.element;
    match &many.collection {
        Collection::Slice => (quote!(::std::vec::Vec<#element>), true),
        Collection::Borrowed(ty) => (ty.to_token_stream(), true),
        Collection::Owned(ty) => (ty.to_token_stream(), false),
    }
}
