//! The `#[cache]` attribute of cachette. Use it through the `cachette`
//! crate, which re-exports it together with the runtime it calls.
//!
//! The macro holds no caching logic. It reads the attribute (`args`) and the
//! function (`signature`), splits the templates (`template`), checks them
//! against each other (`validate`) into a `plan`, and writes calls into the
//! runtime (`expand`). Any problem makes it emit the function unchanged, with
//! stubs of its companions, next to the errors instead (`fallback`). What
//! both write alike lives in `companions`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod args;
mod companions;
mod ctxt;
mod derive;
mod enclosing;
mod expand;
mod fallback;
mod many;
mod plan;
mod signature;
mod tag;
mod template;
mod validate;

use proc_macro::TokenStream;
use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::signature::Function;

/// Renders a tag template, escaped exactly as `#[cache(tags = [...])]`
/// renders the same template: for tags that several functions share, to
/// hand to `invalidate_tag`. Placeholders take `name = value` arguments, or
/// name variables in scope as `format!` does; `<name.field>` works too.
///
/// ```rust
/// let org = "acme:eu";
/// assert_eq!(cachette::tag!("org:<org>"), "org:acme%3Aeu");
/// assert_eq!(cachette::tag!("org:<o>:team:<t>", o = 7, t = "core"), "org:7:team:core");
/// ```
///
/// A function's own tags also have typed companions:
/// `{fn}_tag_{name}(args)` renders one, and `{fn}_invalidate_{name}(args)`
/// invalidates it on the cache the function uses.
#[proc_macro]
pub fn tag(input: TokenStream) -> TokenStream {
    tag::expand(input.into(), quote::quote!(::cachette)).into()
}

/// Implements `cachette::KeyPart` for a struct or a fieldless enum, so its
/// values can go into keys and tags.
///
/// A struct writes its fields in order, separated by `,`, each escaped like
/// any value (a `,` inside a field is escaped too, so two values whose
/// fields differ only in where a `,` falls get different keys). Fields
/// marked `#[key_part(skip)]` are left out. A fieldless enum writes its
/// variant's name. Every field's type must implement `KeyPart`; type
/// parameters get a `KeyPart` bound.
///
/// ```rust
/// use cachette::{cache, KeyPart};
///
/// #[derive(KeyPart)]
/// struct Query {
///     city: String,
///     page: u32,
///     #[key_part(skip)]
///     trace_id: u64,
/// }
///
/// #[derive(KeyPart)]
/// enum Sort {
///     Name,
///     Newest,
/// }
///
/// #[cache(key = "search:<query>:<sort>", ttl = 60, tier = "l1")]
/// fn search(query: Query, sort: Sort) -> Vec<String> {
///     vec![format!("{} p{}", query.city, query.page)]
/// }
///
/// let query = Query { city: "Lyon".into(), page: 2, trace_id: 7 };
/// assert_eq!(search_key(query, Sort::Newest), "search:Lyon,2:Newest");
/// ```
///
/// A re-exported facade is named with `#[key_part(crate = "path")]` on the
/// type.
#[proc_macro_derive(KeyPart, attributes(key_part))]
pub fn derive_key_part(item: TokenStream) -> TokenStream {
    derive::expand(item.into()).into()
}

/// Caches a function's results: a repeated call with the same key arguments
/// inside the TTL returns the stored value without running the body.
///
/// ```rust
/// use cachette::cache;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// # struct User { name: String }
/// # #[derive(Debug)]
/// # struct DbError;
/// # impl std::fmt::Display for DbError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("db") }
/// # }
/// # impl std::error::Error for DbError {}
/// # struct Db;
/// # impl Db {
/// #     async fn fetch_user(&self, id: u64) -> Result<Option<User>, DbError> {
/// #         Ok(Some(User { name: format!("user {id}") }))
/// #     }
/// # }
///
/// #[cache(key = "user:<id>", ttl = 300, jitter = 0.1, negative_ttl = 60, lock, skip(db))]
/// async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError> {
///     db.fetch_user(id).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = Db;
/// let user = get_user(&db, 42).await?; // runs the body and stores the result
/// let again = get_user(&db, 42).await?; // served from the cache
/// # assert_eq!(user.unwrap().name, again.unwrap().name);
/// assert_eq!(get_user_key(42), "user:42");
///
/// // after a write:
/// get_user_invalidate(42).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Arguments
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `key = "user:<id>"` | key template: literal text and `<param>` or `<param.field.path>` placeholders (`<self.tenant>` too); `<T>` (a type parameter) and `<Self>` render the type's name; `<<` is a literal `<` | `"<fn_name>:<p1>:<p2>..."` over all parameters that are not skipped, then `<T>` for each type parameter the return type mentions |
/// | `ttl = 300` / `ttl = "5m"` | time to live: integer seconds or a duration string with units `ms`, `s`, `m`, `h`, `d` (`"1h30m"`) | required |
/// | `jitter = 0.1` | the TTL is drawn from `[ttl*(1-j), ttl*(1+j)]`; `0 <= j < 1` | 0 |
/// | `negative_ttl = 60` | cache an absent result (`None`, `Ok(None)`) for this long | absent results are not cached |
/// | `lock` | single-flight: one body run per key at a time (see Concurrency) | off |
/// | `tags = ["org:<org_id>"]` | templates, checked like `key`, for `invalidate_tag` | none |
/// | `namespace = "users"` | versioned namespace (letters, digits, `_`, `.`, `-`) for `invalidate_namespace` | none |
/// | `version = 2` | schema version baked into the key | 1 |
/// | `l1_ttl = 30` | cap on how long entries live in L1 | the cache's `l1_max_ttl` |
/// | `tier = "both"` | `"l1"`, `"l2"` or `"both"` | `"both"` |
/// | `skip(db, self)` | parameters that do not shape the result | none |
/// | `cache = EXPR` | the cache to use, a `Cache` or `&Cache` expression; may use parameters, which then pick the cache instead of going into the key | the global cache |
/// | `name = "users.get"` | name in stats, traces and metrics | `module_path::fn_name` (`module_path::Type::method` for a method) |
/// | `crate = "path"` | path of the `cachette` crate in generated code | `::cachette` |
/// | `stale = 60` | after the TTL, serve the stored value for up to this long while one refresh runs | 0 |
/// | `stale_if_error = 600` | if the body fails, return the stored value when its TTL ended less than this ago (`Result` return types) | 0 |
/// | `early = 1.0` | probabilistic early refresh before the TTL ends (XFetch; beta > 0, 1.0 is the usual choice) | off |
/// | `refresh_ahead = "1m"` | refresh once when less than this is left of the TTL | off |
/// | `refresh = "caller"` | where refreshes run: `"background"` (a task or thread; the call returns at once) or `"caller"` (the call that starts it runs the body) | `"background"` when every parameter is owned, `"caller"` otherwise |
///
/// The freshness arguments (`stale`, `stale_if_error`, `early`,
/// `refresh_ahead`, `refresh`) are described under Freshness below.
///
/// Every parameter must be in the key, be used by `cache = ...`, or be
/// skipped; otherwise calls that differ in it would share one entry. Two
/// placeholders need literal text between them for the same reason. A
/// generic function whose return type mentions `T` must have `<T>` in the
/// key. All of this is checked at compile time, and each mistake is
/// reported once, where it is. A function with a mistake still compiles
/// next to the error, and so do its companions, so the rest of the crate
/// reports nothing more.
///
/// # Return types
///
/// | returns | cached | `{fn}_put` takes |
/// |---|---|---|
/// | `T` | always | `T` |
/// | `Option<T>` | `Some` always; `None` with `negative_ttl` | `Option<T>` |
/// | `Result<T, E>` | `Ok` only | `T` |
/// | `Result<Option<T>, E>` | `Ok(Some)` always; `Ok(None)` with `negative_ttl` | `Option<T>` |
///
/// The shape is read from the last path segment, so aliases such as
/// `anyhow::Result<T>` and `io::Result<T>` count.
///
/// # Concurrency
///
/// Without `lock`, concurrent misses of one key each run the body. With
/// `lock`, one body run per key is in flight at a time in a process, and,
/// when the cache has a shared tier, across the processes that share it
/// (through a lock in that tier). Callers that find a run in flight wait for
/// it (an async caller without blocking its thread) and get the leader's
/// value, without running the body. If the leader's body fails (returns
/// `Err`), its waiters elect one of them to try once more; if that fails
/// too, the others get its error (when the error type is `Clone + Send +
/// Sync`) or run their own body. The shared-tier lock is for efficiency:
/// after its timeout a waiter in another process runs the body itself.
///
/// # Freshness
///
/// `stale = D` serves a value for `D` past its TTL, at once, while one
/// refresh runs; `stale_if_error = D` (a `Result` return type) answers with
/// the stored value when the body fails less than `D` after the TTL ended;
/// `early = beta` (XFetch) and `refresh_ahead = D` start a refresh of a
/// fresh value before its TTL ends. A key has one refresh at a time in a
/// process (and, with `lock` and a shared tier, across processes); a failed
/// one is retried no sooner than a second later. Refreshes run in the
/// background when every parameter is owned, and in the call that finds
/// the entry due otherwise (`refresh = "caller"`).
///
/// ```rust
/// use cachette::cache;
///
/// #[cache(key = "rate:<currency>", ttl = 60, stale = 300, stale_if_error = 3600, early = 1.0)]
/// async fn rate(currency: String) -> Result<f64, std::io::Error> {
///     Ok(if currency == "EUR" { 1.08 } else { 1.0 })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(rate("EUR".to_owned()).await.unwrap(), 1.08);
/// # }
/// ```
///
/// # Panics
///
/// A body that panics propagates the panic to its caller, as an uncached
/// call would; nothing is stored. Its waiters are never stranded: one of them
/// takes over and runs the body, and the rest wait for that run. The same
/// holds when the caller's future is dropped mid-run.
///
/// # Companions
///
/// Beside `get_user` the attribute generates, with the same visibility and
/// `#[cfg]`s. "Key args" are the parameters that are not skipped; a method
/// takes `&self` only when the key, a tag or `cache = ...` uses it.
///
/// - `get_user_key(key args) -> String`: the entry's key.
/// - `get_user_invalidate(key args) -> Result<(), Error>`: drop the entry.
/// - `get_user_put(key args, value) -> Result<(), Error>`: store a value.
/// - `get_user_refresh(all args)`: run the body now and store its result.
/// - `get_user_uncached(all args)`: run the body, bypassing the cache.
/// - `get_user_entry(all args) -> cachette::Entry<R>`: the same call as
///   `get_user`, returning the value with its entry's facts (`created`,
///   `fresh_until`, `stale_until`, an `etag`, and the `source`: L1, L2, the
///   body or a stale value), for HTTP validators.
/// - Per tag template, named from the words of its literal text
///   (`"org:<org_id>"` → `org`, `"org:<o>:team:<t>"` → `org_team`,
///   `"users"` → `users`, a template without words → `tag0`, `tag1`, ...):
///   `get_user_tag_org(tag args) -> String`, the rendered tag, and
///   `get_user_invalidate_org(tag args) -> Result<(), Error>`, which
///   invalidates it on the cache the function uses. "Tag args" are the
///   parameters the tag and `cache = ...` use.
///
/// `_invalidate`, `_put`, `_refresh`, `_uncached`, `_entry` and the tag
/// invalidations are `async` when the function is. Each keeps only the generic parameters its own signature
/// needs. The body lives in `get_user_uncached`, so warnings about it (an
/// unused variable, a needless `mut`) are reported there, once; `get_user`
/// and `get_user_refresh` call it. Hidden helpers beside them hold the
/// function's one site, spec and key templates.
///
/// # Limitations
///
/// - In an `impl Trait for Type` block the companions would be items the
///   trait does not have. Cache an inherent method and call it from the
///   trait method instead.
/// - The attribute sees the function, not the `impl` around it. It takes a
///   function for an associated one (whose companions call each other
///   through `Self::`) when it has a receiver or names `Self` in its
///   signature, body or key; a function in an `impl` that does neither is
///   taken for a free function and does not compile. Name the type as
///   `Self` in it, for example in the return type (`-> Option<Self>`).
/// - When the return type depends on the `impl`'s generic parameters, put
///   `<Self>` into the key.
/// - The default key starts with the function's name alone, so two
///   functions of the same name (in different modules or `impl`s) with
///   default keys share entries; give one of them a `key`.
#[proc_macro_attribute]
pub fn cache(args: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(header) = trait_impl_header() {
        return in_trait_impl("cache", &header, item.into()).into();
    }
    expand_attribute(args.into(), item.into()).into()
}

/// The header of the trait `impl` the attribute stands in, if it does
/// (read from the source file the compiler names for the attribute).
fn trait_impl_header() -> Option<String> {
    let call_site = proc_macro::Span::call_site();
    call_site
        .local_file()
        .and_then(|file| enclosing::trait_impl_around(&file, call_site.line(), call_site.column()))
}

/// The one error for `#[cache]` on a method of a trait `impl`, where the
/// companions cannot go; the method is kept as written, so that nothing
/// else is reported.
/// Caches a function of many keys per element: a call runs the body only
/// for the elements that are not cached, all of them in one call, and
/// stores each element's value under its own key.
///
/// One parameter named in the key is the collection (`&[K]`, `Vec<K>`,
/// `&Vec<K>`, `HashSet<K>`, `BTreeSet<K>` or a reference to one), and its
/// placeholder stands for each element. The function returns a
/// `HashMap<K, V>` or `BTreeMap<K, V>`, or a `Result` of one; an element
/// the map leaves out is absent (cached with `negative_ttl` only). Every
/// argument of [`cache`](macro@cache) applies per element. With a shared
/// tier, the elements L1 did not have are read in one round trip and the
/// body's map is written in one more.
///
/// Entries are those of a `#[cache]` function with the same key template
/// that stores the same value: `V` without `negative_ttl`, `Option<V>` with
/// it.
///
/// ```rust
/// use std::collections::HashMap;
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
///
/// use cachette::{cache, cache_many};
///
/// static LOADED: AtomicUsize = AtomicUsize::new(0);
///
/// #[cache_many(key = "square:<ids>", ttl = 60, tier = "l1")]
/// fn squares(ids: &[u64]) -> HashMap<u64, u64> {
///     LOADED.fetch_add(ids.len(), SeqCst);
///     ids.iter().map(|id| (*id, id * id)).collect()
/// }
///
/// #[cache(key = "square:<id>", ttl = 60, tier = "l1")]
/// fn square(id: u64) -> u64 {
///     id * id
/// }
///
/// assert_eq!(squares(&[2, 3])[&3], 9);
/// assert_eq!(squares(&[3, 4, 4]).len(), 2); // the body sees [4] only
/// assert_eq!(LOADED.load(SeqCst), 3);
/// assert_eq!(square(4), 16);                // a hit: stored by `squares`
/// assert_eq!(squares_key(4), square_key(4));
/// squares_put(HashMap::from([(5, 25)])).unwrap();
/// squares_invalidate(&[2, 5]).unwrap();
/// ```
///
/// Besides `{fn}_key` (one element) it adds `{fn}_invalidate` (the
/// collection), `{fn}_put` (a map, in place of the collection),
/// `{fn}_refresh` and `{fn}_uncached` (all arguments), and the tag
/// companions. The README's "Batches" section has the rules in full.
#[proc_macro_attribute]
pub fn cache_many(args: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(header) = trait_impl_header() {
        return in_trait_impl("cache_many", &header, item.into()).into();
    }
    expand_many_attribute(args.into(), item.into()).into()
}

/// `#[cache_many]`: the per-element twin goes through the `#[cache]`
/// checks; any problem leaves the function as written, next to the errors.
fn expand_many_attribute(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let cx = Ctxt::new();
    let args = args::parse(&cx, args);
    let checked = signature::parse_item(&cx, "cache_many", item.clone())
        .and_then(|original| many::analyze(&cx, &args, &original))
        .map(|(twin, many)| (validate::check(&cx, args, Function::new(twin)), many));
    match (cx.check(), checked) {
        (Ok(()), Some((Ok(plan), many))) => expand::expand_many(&plan, &many),
        // A parameter only the attribute uses (`cache = store`) is not
        // reported unused as well.
        (Err(errors), _) => {
            let errors = errors.into_compile_error();
            quote::quote!(#[allow(unused_variables)] #item #errors)
        }
        (Ok(()), _) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[cache_many]` could not read this function",
            )
            .into_compile_error();
            quote::quote!(#item #error)
        }
    }
}

fn in_trait_impl(
    attribute: &str,
    header: &str,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let name = syn::parse2::<syn::ImplItemFn>(item.clone())
        .map(|function| function.sig.ident.to_string())
        .unwrap_or_else(|_| "fn".to_owned());
    let message = format!(
        "`#[{attribute}]` goes on an inherent method, not on one in `{header}`: the functions it adds \
         beside `{name}` (`{name}_invalidate`, `{name}_put`, ..) cannot be members of the trait; \
         put the cached method in an inherent `impl` of the type, under another name such as \
         `{name}_cached`, and call it from the trait method"
    );
    let error = syn::Error::new(Span::call_site(), message).to_compile_error();
    quote::quote!(#error #item)
}

/// The whole attribute on `proc_macro2` tokens, so unit tests can run it.
fn expand_attribute(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let cx = Ctxt::new();
    let args = args::parse(&cx, args);
    let checked = signature::parse_item(&cx, "cache", item.clone())
        .map(|function| validate::check(&cx, args, Function::new(function)));
    match (cx.check(), checked) {
        (Ok(()), Some(Ok(plan))) => expand::expand(&plan),
        (Err(errors), checked) => {
            let outline = checked.and_then(Result::err);
            fallback::expand(item, outline.as_deref(), errors)
        }
        (Ok(()), checked) => {
            let error =
                syn::Error::new(Span::call_site(), "`#[cache]` could not read this function");
            let outline = checked.and_then(Result::err);
            fallback::expand(item, outline.as_deref(), error)
        }
    }
}
