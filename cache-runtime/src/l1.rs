//! The in-process tier: entries in one of two stores, quick_cache by default
//! and moka as a choice (feature `moka`).

use std::any::Any;
use std::fmt::Debug;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::invalidate::Fence;

/// One cached value with the facts needed to judge it.
///
/// The same fields go into the shared tier's envelope, so an entry read from
/// there becomes an L1 entry without translation.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The stored value, a `Shape::Value`.
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    /// When the body finished, ms since the epoch.
    #[allow(dead_code, reason = "written into the shared tier's envelope")]
    pub(crate) created_ms: u64,
    /// Until when the value may be served, ms since the epoch.
    pub(crate) fresh_until_ms: u64,
    /// Whether this caches an absent value (`negative_ttl`).
    #[allow(dead_code, reason = "written into the shared tier's envelope")]
    pub(crate) absent: bool,
    /// Generations seen before the body ran.
    pub(crate) fence: Fence,
    /// The last epoch at which `fence` was found current.
    pub(crate) checked_epoch: AtomicU64,
}

/// Which in-process store holds a cache's L1 entries
/// ([`Builder::l1_store`](crate::Builder::l1_store)).
///
/// Both are bounded by entry count ([`Builder::l1_capacity`](crate::Builder::l1_capacity)),
/// and both judge freshness the same way: the cache compares each entry's
/// lifetime with its clock, so the choice changes speed, memory and which
/// entries are evicted when L1 is full, never what a call returns.
///
/// # Example
///
/// ```
/// use cache_runtime::{Cache, L1Store};
///
/// let cache = Cache::builder()
///     .l1_store(L1Store::QuickCache)
///     .l1_capacity(100_000)
///     .build_local()
///     .unwrap();
/// # drop(cache);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum L1Store {
    /// [quick_cache](https://docs.rs/quick_cache) (the default): sharded
    /// maps with CLOCK-Pro eviction. The faster store on every hit and miss
    /// benchmark here, with the smaller entries.
    #[default]
    QuickCache,
    /// [moka](https://docs.rs/moka) (feature `moka`): TinyLFU admission,
    /// which keeps out keys read only once, with housekeeping done by the
    /// threads that read it.
    #[cfg(feature = "moka")]
    Moka,
}

/// Where entries are kept, by key.
///
/// Freshness is decided by the read path with the cache's clock, so a store
/// may keep an expired or invalidated entry (it is never served, and the
/// next fill replaces it) and may drop entries at any time. Clearing the
/// cache voids entries through their fences rather than sweeping the store.
pub(crate) enum Store {
    Quick(QuickStore),
    #[cfg(feature = "moka")]
    Moka(MokaStore),
}

impl Store {
    pub(crate) fn new(kind: L1Store, capacity: u64) -> Store {
        match kind {
            L1Store::QuickCache => Store::Quick(QuickStore::new(capacity)),
            #[cfg(feature = "moka")]
            L1Store::Moka => Store::Moka(MokaStore::new(capacity)),
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        match self {
            Store::Quick(store) => store.cache.get(key),
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.get(key),
        }
    }

    pub(crate) fn insert(&self, key: &str, entry: Arc<Entry>) {
        match self {
            Store::Quick(store) => store.cache.insert(key.into(), entry),
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.insert(key.into(), entry),
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        match self {
            Store::Quick(store) => {
                store.cache.remove(key);
            }
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.invalidate(key),
        }
    }

    /// Entries held, live or void.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        match self {
            Store::Quick(store) => store.cache.len() as u64,
            #[cfg(feature = "moka")]
            Store::Moka(store) => {
                store.cache.run_pending_tasks();
                store.cache.entry_count()
            }
        }
    }
}

impl Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Quick(store) => f
                .debug_struct("QuickCache")
                .field("entries", &store.cache.len())
                .finish(),
            #[cfg(feature = "moka")]
            Store::Moka(store) => f
                .debug_struct("Moka")
                .field("entries", &store.cache.entry_count())
                .finish(),
        }
    }
}

/// quick_cache, bounded by entry count, hashing with its default foldhash.
pub(crate) struct QuickStore {
    cache: quick_cache::sync::Cache<Box<str>, Arc<Entry>>,
}

impl QuickStore {
    fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self {
            cache: quick_cache::sync::Cache::new(capacity),
        }
    }
}

/// moka, bounded by entry count.
///
/// moka's own per-entry expiry is not used: it reads the time again and
/// costs a fifth of a hit, while the read path already compares the entry's
/// `fresh_until` with the cache's clock. Expired entries leave by capacity
/// eviction or are overwritten by the next fill.
///
/// Keys are hashed with foldhash (seeded per process) rather than SipHash:
/// the hash is a large part of a hit's cost.
#[cfg(feature = "moka")]
pub(crate) struct MokaStore {
    cache: moka::sync::Cache<Box<str>, Arc<Entry>, foldhash::fast::RandomState>,
}

#[cfg(feature = "moka")]
impl MokaStore {
    fn new(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}
