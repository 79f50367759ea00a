//! Generations: O(1) invalidation of keys, tags, namespaces and everything,
//! and the fences that keep a load from outliving an invalidation (G7).
//!
//! Every entry and every in-flight load carries a [`Fence`]: the generations
//! of its key slot, namespace, tags and the whole cache, read *before* its
//! body started. An invalidation bumps the matching generation and then the
//! global epoch. An entry whose fence no longer matches is a miss, so a load
//! that began before an invalidation never becomes visible after it, however
//! late it finishes. Checking costs one atomic load while the epoch has not
//! moved since the entry was last checked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{PoisonError, RwLock};

/// Key invalidations are tracked in this many slots; two keys sharing a slot
/// only cost an extra miss, never a stale read.
const KEY_SLOTS: usize = 4096;

#[derive(Debug)]
pub(crate) struct Generations {
    epoch: AtomicU64,
    clear: AtomicU64,
    key_slots: Box<[AtomicU64]>,
    namespaces: RwLock<HashMap<Box<str>, u64>>,
    tags: RwLock<HashMap<Box<str>, u64>>,
}

/// The generations a load saw before its body ran.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub(crate) epoch: u64,
    clear: u64,
    key_slot: usize,
    key_generation: u64,
    namespace: Option<(&'static str, u64)>,
    tags: Box<[(Box<str>, u64)]>,
}

impl Generations {
    pub(crate) fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            clear: AtomicU64::new(0),
            key_slots: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            namespaces: RwLock::default(),
            tags: RwLock::default(),
        }
    }

    /// The key's slot: FNV-1a, fixed so that every process (and, through
    /// the shared tier, every host) agrees on it.
    fn slot(&self, key: &str) -> usize {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % KEY_SLOTS as u64) as usize
    }

    fn named(map: &RwLock<HashMap<Box<str>, u64>>, name: &str) -> u64 {
        let map = map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(name).copied().unwrap_or(0)
    }

    fn bump_named(map: &RwLock<HashMap<Box<str>, u64>>, name: &str) {
        let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(name) {
            Some(g) => *g += 1,
            None => {
                map.insert(name.into(), 1);
            }
        }
    }

    /// Reads the current generations for a load of `key`. The epoch is read
    /// first, so an invalidation racing with the snapshot moves the epoch
    /// past the fence's and forces a full check later.
    pub(crate) fn fence(
        &self,
        key: &str,
        namespace: Option<&'static str>,
        tags: Vec<String>,
    ) -> Fence {
        let epoch = self.epoch.load(SeqCst);
        let key_slot = self.slot(key);
        Fence {
            epoch,
            clear: self.clear.load(SeqCst),
            key_slot,
            key_generation: self.key_slots[key_slot].load(SeqCst),
            namespace: namespace.map(|ns| (ns, Self::named(&self.namespaces, ns))),
            tags: tags
                .into_iter()
                .map(|t| {
                    let g = Self::named(&self.tags, &t);
                    (t.into_boxed_str(), g)
                })
                .collect(),
        }
    }

    /// Whether nothing the fence covers was invalidated since it was taken.
    pub(crate) fn is_current(&self, fence: &Fence) -> bool {
        if self.epoch.load(SeqCst) == fence.epoch {
            return true;
        }
        self.matches(fence)
    }

    fn matches(&self, fence: &Fence) -> bool {
        self.clear.load(SeqCst) == fence.clear
            && self.key_slots[fence.key_slot].load(SeqCst) == fence.key_generation
            && fence
                .namespace
                .is_none_or(|(ns, g)| Self::named(&self.namespaces, ns) == g)
            && fence
                .tags
                .iter()
                .all(|(t, g)| Self::named(&self.tags, t) == *g)
    }

    /// [`is_current`](Self::is_current) for a stored entry, remembering in
    /// `checked_epoch` the epoch at which it was last found current.
    #[inline]
    pub(crate) fn entry_is_current(&self, fence: &Fence, checked_epoch: &AtomicU64) -> bool {
        let epoch = self.epoch.load(SeqCst);
        if checked_epoch.load(SeqCst) == epoch {
            return true;
        }
        if self.matches(fence) {
            checked_epoch.fetch_max(epoch, SeqCst);
            true
        } else {
            false
        }
    }

    pub(crate) fn invalidate_key(&self, key: &str) {
        self.key_slots[self.slot(key)].fetch_add(1, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) {
        Self::bump_named(&self.tags, tag);
        self.epoch.fetch_add(1, SeqCst);
    }

    pub(crate) fn invalidate_namespace(&self, namespace: &str) {
        Self::bump_named(&self.namespaces, namespace);
        self.epoch.fetch_add(1, SeqCst);
    }

    pub(crate) fn clear(&self) {
        self.clear.fetch_add(1, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_outlives_only_unrelated_invalidations() {
        let g = Generations::new();
        let f = g.fence("user:1", Some("users"), vec!["org:7".into()]);
        assert!(g.is_current(&f));
        g.invalidate_tag("org:8");
        g.invalidate_namespace("orders");
        assert!(g.is_current(&f));
        g.invalidate_tag("org:7");
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", Some("users"), vec![]);
        g.invalidate_namespace("users");
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", None, vec![]);
        g.invalidate_key("user:1");
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", None, vec![]);
        g.clear();
        assert!(!g.is_current(&f));
    }

    #[test]
    fn checked_epoch_skips_the_full_check_until_something_changes() {
        let g = Generations::new();
        let f = g.fence("k", None, vec!["t".into()]);
        let checked = AtomicU64::new(f.epoch);
        assert!(g.entry_is_current(&f, &checked));
        g.invalidate_tag("other");
        assert!(g.entry_is_current(&f, &checked));
        assert_eq!(checked.load(SeqCst), 1);
        g.invalidate_tag("t");
        assert!(!g.entry_is_current(&f, &checked));
    }
}
