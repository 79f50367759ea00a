//! The in-process tier: entries behind a narrow store trait, moka by default.

use std::any::Any;
use std::fmt::Debug;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How long the store should keep the entry in memory.
    pub(crate) l1_lifetime: Duration,
}

/// An in-process store of entries by key.
///
/// Freshness is decided by the caller with its own clock; a store only has to
/// keep entries for about their `l1_lifetime` and may drop them earlier.
pub(crate) trait L1Store: Send + Sync + Debug {
    fn get(&self, key: &str) -> Option<Arc<Entry>>;
    fn insert(&self, key: &str, entry: Arc<Entry>);
    fn remove(&self, key: &str);
    fn clear(&self);
}

/// moka, with each entry living for its own `l1_lifetime`.
pub(crate) struct MokaStore {
    cache: moka::sync::Cache<Box<str>, Arc<Entry>>,
}

impl Debug for MokaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaStore")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

struct EntryLifetime;

impl moka::Expiry<Box<str>, Arc<Entry>> for EntryLifetime {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.l1_lifetime)
    }

    fn expire_after_update(
        &self,
        _key: &Box<str>,
        value: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.l1_lifetime)
    }
}

impl MokaStore {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryLifetime)
                .build(),
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
