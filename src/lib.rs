//! Declarative caching for Rust functions.
//!
//! One attribute turns a function into a cache-aside wrapper over an
//! in-process L1 ([quick_cache](https://docs.rs/quick_cache) by default, or
//! [moka](https://docs.rs/moka) with the `moka` feature), with jittered TTLs,
//! negative caching, single-flight loading, tags, versioned namespaces and
//! generated companion functions.
//!
//! ```
//! use cachette::cache;
//! # #[derive(Clone)] struct User { name: String }
//! # #[derive(Debug)] struct DbError;
//! # async fn fetch_user(id: u64) -> Result<Option<User>, DbError> { Ok(Some(User { name: format!("user {id}") })) }
//!
//! #[cache(key = "user:<id>", ttl = 300, jitter = 0.1, negative_ttl = 60, lock, tier = "l1")]
//! async fn get_user(id: u64) -> Result<Option<User>, DbError> {
//!     fetch_user(id).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let user = get_user(42).await.unwrap();        // runs the body, stores the result
//! let again = get_user(42).await.unwrap();       // served from the cache
//! assert_eq!(get_user_key(42), "user:42");
//! get_user_invalidate(42).await?;                // after a write
//! # assert_eq!(user.unwrap().name, again.unwrap().name);
//! # Ok(())
//! # }
//! ```
//!
//! Without set-up, cached functions use an embedded L1-only cache; give them
//! another with [`set_global`] or per function with `cache = EXPR`. See the
//! README for every argument of [`cache`].

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub use cache_macros::{cache, cache_many, tag, KeyPart};
pub use cache_runtime::{
    clear, clear_blocking, invalidate_key, invalidate_key_blocking, invalidate_namespace,
    invalidate_namespace_blocking, invalidate_tag, invalidate_tag_blocking, set_global, stats,
    Bincode, Builder, Cache, CacheValue, Clock, Codec, CodecError, ETag, Entry, Error,
    FunctionStats, KeyPart, KeyWriter, KeyedBy, L1Store, ManualClock, ManyElement, SharedValue,
    Source, Stats, SystemClock, ThreadShareable, Tier, DEFAULT_COMPRESS_ABOVE, DEFAULT_L1_CAPACITY,
    DEFAULT_L2_TIMEOUT, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_VALUE_SIZE, DEFAULT_SHARED_L1_MAX_TTL,
};

#[cfg(feature = "postcard")]
pub use cache_runtime::Postcard;

/// HTTP validators and response caching for axum and tower (feature
/// `axum`): [`http::Conditional`] answers conditional GETs from a
/// `{fn}_entry`, and [`http::CacheLayer`] caches whole responses.
#[cfg(feature = "axum")]
pub use cache_runtime::http;

/// What generated code calls. Not public API: it changes without notice.
#[doc(hidden)]
pub use cache_runtime::__private;
