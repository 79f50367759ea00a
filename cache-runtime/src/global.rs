//! The global cache, and the free functions that act on it.

use std::sync::OnceLock;

use crate::error::Error;
use crate::handle::Cache;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Makes `cache` the one cached functions use when they name no `cache = ..`.
///
/// Call it once at start-up, before any cached function runs; without it,
/// functions use an embedded L1-only cache.
///
/// # Errors
///
/// [`Error::GlobalAlreadySet`] if it was set before, or a cached function
/// already ran on the embedded default.
///
/// ```
/// let cache = cachette::Cache::local();
/// cachette::set_global(cache.clone()).unwrap();
/// assert!(cachette::set_global(cache).is_err());
/// ```
pub fn set_global(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::GlobalAlreadySet)
}

/// The global cache: the one given to [`set_global`], or the embedded
/// L1-only default.
#[inline]
pub fn global() -> &'static Cache {
    GLOBAL.get_or_init(Cache::local)
}

/// [`Cache::stats`] of the global cache: the counters of every function
/// that names no `cache = ..`.
///
/// ```
/// let stats = cachette::stats();
/// assert!(stats.function("app::nothing_ran").is_none());
/// ```
pub fn stats() -> crate::Stats {
    global().stats()
}

/// [`Cache::invalidate_key`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_key(key: &str) -> Result<(), Error> {
    global().invalidate_key(key).await
}

/// [`Cache::invalidate_tag`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_tag(tag: &str) -> Result<(), Error> {
    global().invalidate_tag(tag).await
}

/// [`Cache::invalidate_namespace`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_namespace(namespace: &str) -> Result<(), Error> {
    global().invalidate_namespace(namespace).await
}

/// [`Cache::clear`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn clear() -> Result<(), Error> {
    global().clear().await
}

/// [`Cache::invalidate_key_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_key_blocking(key: &str) -> Result<(), Error> {
    global().invalidate_key_blocking(key)
}

/// [`Cache::invalidate_tag_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_tag_blocking(tag: &str) -> Result<(), Error> {
    global().invalidate_tag_blocking(tag)
}

/// [`Cache::invalidate_namespace_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_namespace_blocking(namespace: &str) -> Result<(), Error> {
    global().invalidate_namespace_blocking(namespace)
}

/// [`Cache::clear_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn clear_blocking() -> Result<(), Error> {
    global().clear_blocking()
}
