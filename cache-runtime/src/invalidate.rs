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
//!
//! With a shared tier, these generations mirror counters kept in Redis: a
//! value not yet read from Redis (or forgotten when the invalidation channel
//! reconnects) is *unknown*, and a load first learns it. Learning and
//! invalidation messages only ever raise a generation. An invalidation made
//! here makes its generation unknown too until Redis answers with the new
//! value: Redis may hand the same number to another process's invalidation,
//! so a load must never fill under a value Redis has not confirmed (see
//! [`Generations::fence_confirmed`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{PoisonError, RwLock};

/// Key invalidations are tracked in this many slots; two keys sharing a slot
/// only cost an extra miss, never a stale read.
pub(crate) const KEY_SLOTS: usize = 4096;

/// How many tags (and, apart, namespaces) a process keeps generations for.
/// A new one beyond it empties the table and starts a new *reset*, which
/// voids every fence taken before: forgotten generations cost misses, never
/// a stale read. With a shared tier, forgotten generations are read from
/// Redis again when next needed.
const NAMED_LIMIT: usize = 65_536;

/// One generation counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GenId {
    Clear,
    KeySlot(usize),
    Namespace(String),
    Tag(String),
}

#[derive(Debug, Clone, Copy, Default)]
struct Named {
    value: u64,
    known: bool,
}

/// How a generation moves.
#[derive(Debug, Clone, Copy)]
enum Raise {
    /// By one, by an invalidation of this process: unknown until the shared
    /// tier answers.
    Local,
    /// To a value the shared tier holds (read, or announced): known, unless
    /// this process is already past it.
    Learn(u64),
    /// To a value an entry was filled under, known or not as before.
    Keep(u64),
}

impl Raise {
    /// The value and known flag after this raise of `value`, `known`.
    fn apply(self, value: u64, known: bool) -> (u64, bool) {
        match self {
            Raise::Local => (value + 1, false),
            Raise::Learn(to) if to >= value => (to, true),
            Raise::Learn(_) => (value, known),
            Raise::Keep(to) => (to.max(value), known),
        }
    }
}

/// The clear generation or a key slot's: the value and, in the same word,
/// whether the shared tier is known to hold it (the low bit). One word, so
/// that a raise by this process and the confirmation of the value before it
/// never interleave into a raised value taken as known.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    /// The value, and whether it is known.
    fn load(&self) -> (u64, bool) {
        let word = self.0.load(SeqCst);
        (word >> 1, word & 1 == 1)
    }

    fn value(&self) -> u64 {
        self.load().0
    }

    fn known(&self) -> bool {
        self.load().1
    }

    /// Applies `raise`; whether the value moved.
    fn raise(&self, raise: Raise) -> bool {
        let apply = |word: u64| {
            let (value, known) = raise.apply(word >> 1, word & 1 == 1);
            value << 1 | u64::from(known)
        };
        let update = |word| Some(apply(word)).filter(|&next| next != word);
        match self.0.fetch_update(SeqCst, SeqCst, update) {
            Ok(before) => apply(before) >> 1 != before >> 1,
            Err(_) => false,
        }
    }

    fn forget(&self) {
        self.0.fetch_and(!1, SeqCst);
    }
}

type NamedMap = RwLock<HashMap<Box<str>, Named>>;

#[derive(Debug)]
pub(crate) struct Generations {
    epoch: AtomicU64,
    /// How many times a table of named generations was emptied.
    resets: AtomicU64,
    named_limit: usize,
    clear: Counter,
    key_slots: Box<[Counter]>,
    namespaces: NamedMap,
    tags: NamedMap,
}

/// The generations a load saw before its body ran.
///
/// Every L1 entry holds one, so it is kept small: 40 bytes, the namespace
/// and tags behind one box that functions without them never allocate.
#[derive(Debug)]
pub(crate) struct Fence {
    /// The epoch at which the generations were read; in an L1 entry's
    /// fence, the last epoch at which they were found current
    /// ([`Generations::entry_is_current`] moves it on).
    epoch: AtomicU64,
    clear: u64,
    key_generation: u64,
    /// The low bits of the reset count: 2^32 resets (each a reconnection
    /// or a full table of names) would have to pass for one to be mistaken
    /// for another.
    resets: u32,
    key_slot: u16,
    named: Option<Box<NamedFence>>,
}

/// The namespace and tag generations of a fence.
#[derive(Debug, Clone)]
struct NamedFence {
    namespace: Option<(&'static str, u64)>,
    tags: Box<[(Box<str>, u64)]>,
}

impl NamedFence {
    fn boxed(
        namespace: Option<(&'static str, u64)>,
        tags: Box<[(Box<str>, u64)]>,
    ) -> Option<Box<NamedFence>> {
        (namespace.is_some() || !tags.is_empty()).then(|| Box::new(NamedFence { namespace, tags }))
    }
}

const _: () = assert!(KEY_SLOTS <= u16::MAX as usize + 1);

impl Generations {
    pub(crate) fn new() -> Self {
        Self::with_named_limit(NAMED_LIMIT)
    }

    fn with_named_limit(named_limit: usize) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            named_limit,
            clear: Counter::default(),
            key_slots: (0..KEY_SLOTS).map(|_| Counter::default()).collect(),
            namespaces: RwLock::default(),
            tags: RwLock::default(),
        }
    }

    /// The key's slot: FNV-1a, fixed so that every process (and, through
    /// the shared tier, every host) agrees on it.
    pub(crate) fn slot(&self, key: &str) -> usize {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % KEY_SLOTS as u64) as usize
    }

    fn named(map: &NamedMap, name: &str) -> u64 {
        Self::named_state(map, name).value
    }

    fn named_state(map: &NamedMap, name: &str) -> Named {
        let map = map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(name).copied().unwrap_or_default()
    }

    /// Applies `raise` to a named generation; whether it moved. A name
    /// beyond the table's limit empties the table first (see
    /// [`NAMED_LIMIT`]).
    fn raise_named(&self, map: &NamedMap, name: &str, raise: Raise) -> bool {
        let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
        let entry = match map.get_mut(name) {
            Some(entry) => entry,
            None => {
                if map.len() >= self.named_limit {
                    // The reset moves before the values vanish: a fence
                    // taken meanwhile has the old reset and fails.
                    self.resets.fetch_add(1, SeqCst);
                    self.epoch.fetch_add(1, SeqCst);
                    map.clear();
                }
                map.entry(name.into()).or_default()
            }
        };
        let (value, known) = raise.apply(entry.value, entry.known);
        let moved = value != entry.value;
        *entry = Named { value, known };
        moved
    }

    /// Applies `raise` to one generation; whether it moved.
    fn raise(&self, id: &GenId, raise: Raise) -> bool {
        match id {
            GenId::Clear => self.clear.raise(raise),
            GenId::KeySlot(slot) => self.key_slots[*slot].raise(raise),
            GenId::Namespace(ns) => self.raise_named(&self.namespaces, ns, raise),
            GenId::Tag(tag) => self.raise_named(&self.tags, tag, raise),
        }
    }

    /// The generations among `ids` not yet read from the shared tier.
    pub(crate) fn unknown(&self, ids: impl IntoIterator<Item = GenId>) -> Vec<GenId> {
        ids.into_iter()
            .filter(|id| match id {
                GenId::Clear => !self.clear.known(),
                GenId::KeySlot(slot) => !self.key_slots[*slot].known(),
                GenId::Namespace(ns) => !Self::named_state(&self.namespaces, ns).known,
                GenId::Tag(tag) => !Self::named_state(&self.tags, tag).known,
            })
            .collect()
    }

    /// Records a value read from the shared tier or announced on the
    /// invalidation channel: raises the generation to it and marks it known.
    /// A value below this process's own changes nothing: this process is
    /// past it, and whether the shared tier has caught up is still to be
    /// learned (an invalidation of its own on its way there, say).
    pub(crate) fn learn(&self, id: &GenId, value: u64) {
        if self.raise(id, Raise::Learn(value)) {
            self.epoch.fetch_add(1, SeqCst);
        }
    }

    /// Raises a generation to one an entry was filled under, without
    /// taking it as confirmed: after a failed invalidation this process is
    /// ahead of the shared tier, and only a read of the tier itself (which
    /// raises the tier to this process's value) may confirm it.
    pub(crate) fn raise_to(&self, id: &GenId, value: u64) {
        if self.raise(id, Raise::Keep(value)) {
            self.epoch.fetch_add(1, SeqCst);
        }
    }

    /// Learns a generation another process announced (or the shared tier
    /// reported), as [`learn`](Self::learn): one below this process's own
    /// value changes nothing, so a value this process has not had confirmed
    /// (after a reconnection, the store lost it; or an invalidation on its
    /// way) stays unknown, and the next load reads it and raises it there
    /// (`L2::fetch_generation_at_least`) rather than take it as known.
    pub(crate) fn learn_announced(&self, id: &GenId, generation: u64) {
        self.learn(id, generation);
    }

    /// Voids every entry and every fence taken so far, in O(1): a store
    /// keeps void entries until it evicts or overwrites them, and never
    /// serves them.
    pub(crate) fn void_entries(&self) {
        self.resets.fetch_add(1, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
    }

    /// Marks every generation unknown, so loads read them again, and voids
    /// every entry. Called when the invalidation channel (re)connects:
    /// messages sent meanwhile are lost.
    pub(crate) fn forget_all(&self) {
        self.void_entries();
        self.clear.forget();
        for slot in self.key_slots.iter() {
            slot.forget();
        }
        for map in [&self.namespaces, &self.tags] {
            let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
            for named in map.values_mut() {
                named.known = false;
            }
        }
        self.epoch.fetch_add(1, SeqCst);
    }

    /// The current value of one generation.
    pub(crate) fn get(&self, id: &GenId) -> u64 {
        match id {
            GenId::Clear => self.clear.value(),
            GenId::KeySlot(slot) => self.key_slots[*slot].value(),
            GenId::Namespace(ns) => Self::named(&self.namespaces, ns),
            GenId::Tag(tag) => Self::named(&self.tags, tag),
        }
    }

    /// The current epoch and reset; read them before checking a shared-tier
    /// entry and build that entry's [`Fence`] with them.
    pub(crate) fn epoch(&self) -> (u64, u64) {
        let epoch = self.epoch.load(SeqCst);
        (epoch, self.resets.load(SeqCst))
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
        self.fence_confirmed(key, namespace, tags).0
    }

    /// [`fence`](Self::fence), and whether every generation in it was
    /// known (confirmed by the shared tier) as it was read. Only such a
    /// fence may go with a fill of the shared tier: a value this process
    /// raised itself may not be in the tier yet, and the tier may then hand
    /// the same value to another process's invalidation, which would take
    /// this fill, loaded before it, for one loaded after.
    pub(crate) fn fence_confirmed(
        &self,
        key: &str,
        namespace: Option<&'static str>,
        tags: Vec<String>,
    ) -> (Fence, bool) {
        let epoch = self.epoch.load(SeqCst);
        let key_slot = self.slot(key);
        let resets = self.resets.load(SeqCst) as u32;
        let (clear, clear_known) = self.clear.load();
        let (key_generation, key_known) = self.key_slots[key_slot].load();
        let mut known = clear_known && key_known;
        let namespace = namespace.map(|ns| {
            let named = Self::named_state(&self.namespaces, ns);
            known &= named.known;
            (ns, named.value)
        });
        // Most functions have no tags: no collecting for them.
        let tags = match tags.is_empty() {
            true => Box::default(),
            false => tags
                .into_iter()
                .map(|t| {
                    let named = Self::named_state(&self.tags, &t);
                    known &= named.known;
                    (t.into_boxed_str(), named.value)
                })
                .collect(),
        };
        let fence = Fence {
            epoch: AtomicU64::new(epoch),
            clear,
            key_generation,
            resets,
            key_slot: key_slot as u16,
            named: NamedFence::boxed(namespace, tags),
        };
        (fence, known)
    }

    /// Whether nothing the fence covers was invalidated since it was taken.
    pub(crate) fn is_current(&self, fence: &Fence) -> bool {
        if self.epoch.load(SeqCst) == fence.epoch() {
            return true;
        }
        self.matches(fence)
    }

    /// Whether every generation the fence holds is this process's current
    /// one, whatever the epoch says: for a fence built from generations read
    /// elsewhere (a shared-tier entry's), which the epoch never vouched for.
    pub(crate) fn matches(&self, fence: &Fence) -> bool {
        self.resets.load(SeqCst) as u32 == fence.resets
            && self.clear.value() == fence.clear
            && self.key_slots[usize::from(fence.key_slot)].value() == fence.key_generation
            && fence.named.as_deref().is_none_or(|named| {
                named
                    .namespace
                    .is_none_or(|(ns, g)| Self::named(&self.namespaces, ns) == g)
                    && named
                        .tags
                        .iter()
                        .all(|(t, g)| Self::named(&self.tags, t) == *g)
            })
    }

    /// [`is_current`](Self::is_current) for a stored entry's fence,
    /// remembering in it the epoch at which it was last found current.
    #[inline]
    pub(crate) fn entry_is_current(&self, fence: &Fence) -> bool {
        let epoch = self.epoch.load(SeqCst);
        if fence.epoch.load(SeqCst) == epoch {
            return true;
        }
        if self.matches(fence) {
            fence.epoch.fetch_max(epoch, SeqCst);
            true
        } else {
            false
        }
    }

    /// Invalidates one key in this process. `to` is the slot's new
    /// generation when the shared tier assigned one.
    pub(crate) fn invalidate_key(&self, key: &str, to: Option<u64>) {
        self.invalidate(&GenId::KeySlot(self.slot(key)), to);
    }

    /// Raises one generation and moves the epoch, so every entry it covers
    /// stops matching: to `to` when the shared tier assigned it (known), or
    /// by one, this process's own raise, which leaves it unknown until the
    /// shared tier answers (see [`fence_confirmed`](Self::fence_confirmed)).
    pub(crate) fn invalidate(&self, id: &GenId, to: Option<u64>) {
        self.raise(id, to.map_or(Raise::Local, Raise::Learn));
        self.epoch.fetch_add(1, SeqCst);
    }
}

impl Clone for Fence {
    fn clone(&self) -> Self {
        Fence {
            epoch: AtomicU64::new(self.epoch()),
            clear: self.clear,
            key_generation: self.key_generation,
            resets: self.resets,
            key_slot: self.key_slot,
            named: self.named.clone(),
        }
    }
}

impl Fence {
    /// The epoch at which the generations were read (or, in an L1 entry,
    /// last found current).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    /// The fence of an entry read from the shared tier: the generations its
    /// loader saw, checked from now on against this process's.
    pub(crate) fn of_l2_entry(
        (epoch, resets): (u64, u64),
        clear: u64,
        key_slot: usize,
        key_generation: u64,
        namespace: Option<(&'static str, u64)>,
        tags: Vec<(String, u64)>,
    ) -> Fence {
        let tags = tags
            .into_iter()
            .map(|(t, g)| (t.into_boxed_str(), g))
            .collect();
        Fence {
            epoch: AtomicU64::new(epoch),
            clear,
            key_generation,
            resets: resets as u32,
            key_slot: key_slot as u16,
            named: NamedFence::boxed(namespace, tags),
        }
    }
    pub(crate) fn clear_generation(&self) -> u64 {
        self.clear
    }
    pub(crate) fn key_generation(&self) -> u64 {
        self.key_generation
    }
    pub(crate) fn namespace_generation(&self) -> Option<u64> {
        self.named.as_deref()?.namespace.map(|(_, g)| g)
    }
    pub(crate) fn tags(&self) -> impl Iterator<Item = (&str, u64)> {
        self.named
            .as_deref()
            .into_iter()
            .flat_map(|named| named.tags.iter().map(|(t, g)| (&**t, *g)))
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
        g.invalidate(&GenId::Tag("org:8".into()), None);
        g.invalidate(&GenId::Namespace("orders".into()), None);
        assert!(g.is_current(&f));
        g.invalidate(&GenId::Tag("org:7".into()), None);
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", Some("users"), vec![]);
        g.invalidate(&GenId::Namespace("users".into()), None);
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", None, vec![]);
        g.invalidate_key("user:1", None);
        assert!(!g.is_current(&f));

        let f = g.fence("user:1", None, vec![]);
        g.invalidate(&GenId::Clear, None);
        assert!(!g.is_current(&f));
    }

    #[test]
    fn checked_epoch_skips_the_full_check_until_something_changes() {
        let g = Generations::new();
        let f = g.fence("k", None, vec!["t".into()]);
        assert!(g.entry_is_current(&f));
        g.invalidate(&GenId::Tag("other".into()), None);
        assert!(g.entry_is_current(&f));
        assert_eq!(f.epoch(), 1);
        let taken = f.clone();
        assert_eq!(taken.epoch(), 1, "a clone keeps the epoch checked");
        g.invalidate(&GenId::Tag("t".into()), None);
        assert!(!g.entry_is_current(&f));
        assert!(!g.entry_is_current(&taken));
    }

    #[test]
    fn learned_generations_only_rise_and_forgetting_makes_them_unknown() {
        let g = Generations::new();
        let tag = GenId::Tag("t".into());
        assert_eq!(g.unknown([tag.clone(), GenId::Clear]).len(), 2);
        g.learn(&tag, 5);
        g.learn(&GenId::Clear, 2);
        assert!(g.unknown([tag.clone(), GenId::Clear]).is_empty());
        g.learn(&tag, 3);
        assert_eq!(g.get(&tag), 5, "a late, older value does not lower it");
        let f = g.fence("k", None, vec!["t".into()]);
        g.forget_all();
        assert_eq!(g.unknown([tag.clone()]), vec![tag.clone()]);
        assert_eq!(g.get(&tag), 5, "forgetting changes no value");
        assert!(!g.is_current(&f), "but voids the fences taken before");
        let f = g.fence("k", None, vec!["t".into()]);
        assert!(g.is_current(&f));
        g.learn(&tag, 6);
        assert!(!g.is_current(&f));
    }

    #[test]
    fn a_local_invalidation_stays_unconfirmed_until_the_shared_tier_gives_its_value() {
        let g = Generations::new();
        let slot = GenId::KeySlot(g.slot("k"));
        let tag = GenId::Tag("t".into());
        g.learn(&GenId::Clear, 0);
        g.learn(&slot, 4);
        g.learn(&tag, 2);
        assert!(g.fence_confirmed("k", None, vec!["t".into()]).1);
        for id in [&slot, &tag] {
            let before = g.get(id);
            g.invalidate(id, None);
            assert_eq!(g.unknown([id.clone()]), vec![id.clone()]);
            let (fence, confirmed) = g.fence_confirmed("k", None, vec!["t".into()]);
            assert!(!confirmed, "{id:?}: raised here only");
            // What the tier held before the invalidation arrived there
            // confirms nothing, and lowers nothing.
            g.learn(id, before);
            assert!(!g.fence_confirmed("k", None, vec!["t".into()]).1);
            assert!(g.is_current(&fence));
            // The tier's answer to the invalidation does.
            g.learn(id, before + 1);
            assert!(g.fence_confirmed("k", None, vec!["t".into()]).1);
            assert!(g.is_current(&fence));
        }
    }

    #[test]
    fn voiding_entries_fails_every_earlier_fence_and_no_later_one() {
        let g = Generations::new();
        let before = g.fence("k", Some("ns"), vec!["t".into()]);
        g.void_entries();
        assert!(!g.entry_is_current(&before));
        let after = g.fence("k", Some("ns"), vec!["t".into()]);
        assert!(g.entry_is_current(&after));
    }

    #[test]
    fn a_full_tag_table_is_emptied_without_resurrecting_anything() {
        let g = Generations::with_named_limit(4);
        let old = g.fence("k", None, vec!["a".into()]);
        let old_entry = old.clone();
        g.invalidate(&GenId::Tag("a".into()), None);
        let current = g.fence("k", None, vec!["a".into()]);
        assert!(!g.is_current(&old));
        assert!(g.is_current(&current));
        for n in 0..4 {
            g.invalidate(&GenId::Tag(format!("t{n}")), None);
        }
        assert!(g.tags.read().unwrap().len() <= 4, "the table stays bounded");
        assert_eq!(g.get(&GenId::Tag("a".into())), 0, "tag a was forgotten");
        // Its generation is back to what the old fence saw, but the reset
        // still voids the old fence (and, at the cost of a miss, every one).
        assert!(!g.is_current(&old), "no stale resurrection");
        assert!(!g.entry_is_current(&old_entry));
        assert!(!g.is_current(&current));
        let fresh = g.fence("k", None, vec!["a".into()]);
        assert!(g.is_current(&fresh));
    }
}
