//! The in-process tier: entries behind a narrow store trait, moka by default.

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

/// An in-process store of entries by key.
///
/// Freshness is decided by the read path with the cache's clock, so a store
/// may keep an expired entry (it is never served, and the next fill replaces
/// it) and may drop entries at any time.
pub(crate) trait L1Store: Send + Sync + Debug {
    fn get(&self, key: &str) -> Option<Arc<Entry>>;
    fn insert(&self, key: &str, entry: Arc<Entry>);
    fn remove(&self, key: &str);
    fn clear(&self);
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
pub(crate) struct MokaStore {
    cache: moka::sync::Cache<Box<str>, Arc<Entry>, foldhash::fast::RandomState>,
}

impl Debug for MokaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaStore")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MokaStore {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

impl L1Store for MokaStore {
    #[inline]
    fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    fn insert(&self, key: &str, entry: Arc<Entry>) {
        self.cache.insert(key.into(), entry);
    }

    fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    fn clear(&self) {
        self.cache.invalidate_all();
    }
}
