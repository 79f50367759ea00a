//! The in-process tier: entries in one of two stores, quick_cache by default
//! and moka as a choice (feature `moka`).

use std::any::Any;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use quick_cache::UnitWeighter;

use crate::invalidate::Fence;

/// One cached value with the facts needed to judge it: 64 bytes besides
/// the value, which every L1 entry carries, so nothing the read path does
/// not look at is kept here (the shared tier's envelope has the rest).
#[derive(Debug)]
pub(crate) struct Entry {
    /// The stored value, a `Shape::Value`.
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    /// Until when this process may serve the value from L1, ms since the
    /// epoch: the entry's `stale_until`, or earlier when L1 lifetimes are
    /// capped.
    pub(crate) until_ms: u64,
    /// When the value's TTL ends, ms since the epoch; past it (and before
    /// `until_ms`) the value is stale. At or after `until_ms` for functions
    /// without a stale window.
    pub(crate) fresh_until_ms: u64,
    /// How long the body took to compute the value, µs (XFetch's `early`).
    pub(crate) compute_us: u32,
    /// When the body finished, seconds since the epoch (`{fn}_entry`'s
    /// `created`; `Last-Modified` has no finer grain). It fills what would
    /// be padding.
    pub(crate) created_s: u32,
    /// Generations seen before the body ran, and the last epoch at which
    /// they were found current.
    pub(crate) fence: Fence,
}

/// `ms` since the epoch in whole seconds, saturated at `u32::MAX` (2106).
pub(crate) fn seconds(ms: u64) -> u32 {
    (ms / 1000).min(u64::from(u32::MAX)) as u32
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
/// use cachette::{Cache, L1Store};
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

    /// Calls `read` with the entry stored for `key`, if any, without
    /// copying it: on the quick_cache store, under the shard's read lock.
    #[inline]
    pub(crate) fn read<T>(&self, key: &str, read: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        match self {
            Store::Quick(store) => store.read(key, read),
            #[cfg(feature = "moka")]
            Store::Moka(store) => read(&*store.cache.get(key)?),
        }
    }

    /// Stores `entry` under a copy of `key`: inline in the entry when it is
    /// short, in an allocation of its exact size otherwise.
    pub(crate) fn insert(&self, key: &str, entry: Entry) {
        match self {
            Store::Quick(store) => store.insert(key, entry),
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.insert(Box::from(key), Arc::new(entry)),
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        match self {
            Store::Quick(store) => store.remove(key),
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.invalidate(key),
        }
    }

    /// Entries held, live or void, as far as the store counts them now
    /// (moka's count lags its pending work).
    #[cfg(feature = "metrics")]
    pub(crate) fn entries(&self) -> u64 {
        match self {
            Store::Quick(store) => store.len(),
            #[cfg(feature = "moka")]
            Store::Moka(store) => store.cache.entry_count(),
        }
    }

    /// Entries held, live or void.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        match self {
            Store::Quick(store) => store.len(),
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
                .field("shards", &store.shards.len())
                .finish_non_exhaustive(),
            #[cfg(feature = "moka")]
            Store::Moka(store) => f
                .debug_struct("Moka")
                .field("entries", &store.cache.entry_count())
                .finish(),
        }
    }
}

type Shard = RwLock<quick_cache::unsync::Cache<StoredKey, Entry, UnitWeighter, PassThrough>>;

/// quick_cache's CLOCK-Pro store, bounded by entry count, in shards of its
/// single-threaded cache behind read-write locks.
///
/// quick_cache's own concurrent cache returns a clone of the value: an
/// `Arc` of the entry, whose reference count every hit would move twice.
/// Its single-threaded cache lends the value instead (marking it used with
/// a relaxed atomic, as the concurrent one does under the same read lock),
/// so a hit here clones only the function's value, under the read lock.
///
/// A key is hashed once per call: the hash picks the shard and is handed
/// to the shard's table as is.
pub(crate) struct QuickStore {
    shards: Box<[Shard]>,
}

/// A stored key: inside the entry when it fits (`user:1099511627776`
/// does), so that a lookup compares it without following a pointer and a
/// fill allocates nothing for it; boxed when longer. Its hash is the one
/// [`key_hash`] gives its text, so that the table finds it again when it
/// rehashes.
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Boxed(Box<str>),
}

/// The longest key kept inline: what fits beside the length and the
/// variant's tag in the 24 bytes of a boxed key's place.
const INLINE_KEY: usize = 22;

impl StoredKey {
    fn new(key: &str) -> StoredKey {
        match key.len() <= INLINE_KEY {
            true => {
                let mut bytes = [0; INLINE_KEY];
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                StoredKey::Inline {
                    len: key.len() as u8,
                    bytes,
                }
            }
            false => StoredKey::Boxed(Box::from(key)),
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredKey::Boxed(key) => key.as_bytes(),
        }
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for StoredKey {}

impl Hash for StoredKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(key_hash(self.as_bytes()));
    }
}

/// A key being looked up, with its hash already taken.
struct Probe<'a> {
    hash: u64,
    key: &'a str,
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl quick_cache::Equivalent<StoredKey> for Probe<'_> {
    fn equivalent(&self, stored: &StoredKey) -> bool {
        self.key.as_bytes() == stored.as_bytes()
    }
}

/// The hash of a key's text: foldhash, seeded once per process.
#[inline]
fn key_hash(key: &[u8]) -> u64 {
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    let mut hasher = SEED.get_or_init(Default::default).build_hasher();
    hasher.write(key);
    hasher.finish()
}

/// Hands the one `u64` a key writes to the table as its hash.
#[derive(Clone, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = Taken;
    fn build_hasher(&self) -> Taken {
        Taken(0)
    }
}

/// The hash a [`StoredKey`] or [`Probe`] wrote.
struct Taken(u64);

impl Hasher for Taken {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called; folding keeps any other use a
        // working (if slower) hash rather than a constant.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The fewest entries a shard is made for: fewer shards, rather than
/// shards so small that eviction is decided among a handful of entries.
const MIN_SHARD_CAPACITY: u64 = 64;

impl QuickStore {
    fn new(capacity: u64) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(4, usize::from);
        let wanted = (parallelism * 4).next_power_of_two() as u64;
        let fit = (capacity / MIN_SHARD_CAPACITY).max(1);
        let count = wanted.min(fit.next_power_of_two()).max(1);
        let per_shard = capacity.div_ceil(count).max(1);
        let per_shard_items = usize::try_from(per_shard).unwrap_or(usize::MAX);
        Self {
            shards: (0..count)
                .map(|_| {
                    RwLock::new(quick_cache::unsync::Cache::with(
                        per_shard_items,
                        per_shard,
                        UnitWeighter,
                        PassThrough,
                        Default::default(),
                    ))
                })
                .collect(),
        }
    }

    /// The key's shard and its probe.
    #[inline]
    fn shard<'k>(&self, key: &'k str) -> (&Shard, Probe<'k>) {
        let hash = key_hash(key.as_bytes());
        // The high bits: the shard's table uses the low ones for its index.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        (&self.shards[index], Probe { hash, key })
    }

    #[inline]
    fn read<T>(&self, key: &str, read: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        let (shard, probe) = self.shard(key);
        let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
        read(shard.get(&probe)?)
    }

    fn insert(&self, key: &str, entry: Entry) {
        let (shard, _) = self.shard(key);
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        shard.insert(StoredKey::new(key), entry);
    }

    fn remove(&self, key: &str) {
        let (shard, probe) = self.shard(key);
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        shard.remove(&probe);
    }

    #[cfg(any(test, feature = "metrics"))]
    fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len() as u64)
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalidate::Generations;

    fn entry(value: u64) -> Entry {
        let fence = Generations::new().fence("k", None, vec![]);
        Entry {
            value: Arc::new(value),
            until_ms: u64::MAX,
            fresh_until_ms: u64::MAX,
            compute_us: 0,
            created_s: 0,
            fence,
        }
    }

    fn kinds() -> Vec<L1Store> {
        vec![
            L1Store::QuickCache,
            #[cfg(feature = "moka")]
            L1Store::Moka,
        ]
    }

    fn value(store: &Store, key: &str) -> Option<u64> {
        store.read(key, |e| e.value.downcast_ref::<u64>().copied())
    }

    #[test]
    fn entries_stay_small() {
        assert!(std::mem::size_of::<Fence>() <= 40);
        assert!(std::mem::size_of::<Entry>() <= 80);
        assert_eq!(std::mem::size_of::<StoredKey>(), 24);
    }

    #[test]
    fn short_and_long_keys_are_told_apart_and_found_again() {
        let store = Store::new(L1Store::QuickCache, 1_000);
        let long = "k".repeat(INLINE_KEY + 1);
        let keys = ["", "a", "a\0", &long[..INLINE_KEY], &long, "é:ü"];
        for (i, key) in keys.iter().enumerate() {
            store.insert(key, entry(i as u64));
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(value(&store, key), Some(i as u64), "{key:?}");
        }
        assert_eq!(value(&store, &long[..INLINE_KEY - 1]), None);
        // Past the first table size, so the table rehashes stored keys.
        for i in 0..500u64 {
            store.insert(&format!("{i}:{long}"), entry(i));
        }
        assert!((0..500u64).all(|i| value(&store, &format!("{i}:{long}")) == Some(i)));
        assert_eq!(value(&store, &long), Some(4));
    }

    #[test]
    fn each_store_reads_replaces_and_removes_by_key() {
        for kind in kinds() {
            let store = Store::new(kind, 100);
            assert_eq!(value(&store, "a"), None);
            store.insert("a", entry(1));
            store.insert("b", entry(2));
            store.insert("a", entry(3));
            assert_eq!((value(&store, "a"), value(&store, "b")), (Some(3), Some(2)));
            store.remove("a");
            store.remove("never stored");
            assert_eq!((value(&store, "a"), value(&store, "b")), (None, Some(2)));
            assert_eq!(store.len(), 1, "{kind:?}");
        }
    }

    #[test]
    fn each_store_stays_near_its_capacity() {
        for capacity in [1, 10, 100, 1_000] {
            for kind in kinds() {
                let store = Store::new(kind, capacity);
                for i in 0..capacity * 2 {
                    store.insert(&format!("key:{i}"), entry(i));
                }
                let held = store.len();
                // quick_cache rounds each shard up; both may hold a little
                // more than asked while an insert is being admitted.
                assert!(
                    held >= 1 && held <= capacity + capacity / 10 + 64,
                    "{kind:?} of capacity {capacity} holds {held}"
                );
            }
        }
    }
}
