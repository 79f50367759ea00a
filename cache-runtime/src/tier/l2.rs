//! The shared-tier steps of a load: learn generations, read, lock, write.
//!
//! Each step is a `'static` future over owned data, so an async caller
//! awaits it where it is and a sync caller hands it to
//! [`L2::block_on`]. Every failure makes the step answer "nothing"
//! (and counts an L2 error): a call never fails because of the shared tier.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::CacheClock;
use crate::envelope::{self, Header};
use crate::error::Error;
use crate::invalidate::{Fence, GenId, Generations};
use crate::l1::Entry;
use crate::l2::channel::Event;
use crate::l2::{Held, L2Error, L2};
use crate::spec::Spec;
use crate::stats::Counters;
use crate::value::ValueCodec;

/// How many times [`L2Load::prepare`] learns generations at most before it
/// gives up on a confirmed fence.
const PREPARE_TRIES: u32 = 3;

/// What a load needs to use the shared tier.
#[derive(Clone)]
pub(super) struct L2Load {
    pub(super) l2: Arc<L2>,
    pub(super) generations: Arc<Generations>,
    pub(super) clock: CacheClock,
    pub(super) counters: Arc<Counters>,
    pub(super) spec: &'static Spec,
    pub(super) codec: ValueCodec,
    pub(super) l1_max_ttl: Option<Duration>,
    /// The `{fn}_key` form.
    pub(super) key: String,
    /// The rendered tags, read by [`prepare`](Self::prepare).
    pub(super) tags: Vec<String>,
    /// Set by [`prepare`](Self::prepare).
    pub(super) redis_key: String,
    pub(super) fence: Option<Fence>,
    /// Whether every generation in [`fence`](Self::fence) was confirmed by
    /// the shared tier when it was taken: only then may the load fill the
    /// tier (see [`Generations::fence_confirmed`]).
    pub(super) confirmed: bool,
    /// The invalidation channel's era when [`prepare`](Self::prepare)
    /// began.
    pub(super) era: u64,
    /// The generations this key depends on, named by
    /// [`prepare`](Self::prepare).
    pub(super) ids: Vec<GenId>,
    /// While waiting for the cross-process lock, only a fill whose TTL ends
    /// after this (ms) ends the wait: a refresh waits for a newer value.
    pub(super) newer_than: u64,
    /// Whether to wait for another process that holds the lock; if not,
    /// [`lead`](Self::lead) answers [`Led::Busy`] at once.
    pub(super) wait_for_holder: bool,
}

impl std::fmt::Debug for L2Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Load")
            .field("redis_key", &self.redis_key)
            .finish_non_exhaustive()
    }
}

/// A value found in the shared tier.
pub(super) struct Found {
    pub(super) value: Arc<dyn Any + Send + Sync>,
    /// What L1 keeps of it; `None` for a function that skips L1.
    pub(super) entry: Option<Entry>,
    /// When its TTL ends (ms); it may be stale (§2a).
    pub(super) fresh_until_ms: u64,
    /// When its body finished (ms).
    pub(super) created_ms: u64,
}

impl Found {
    /// Its facts, for `{fn}_entry`.
    pub(super) fn meta(&self, source: crate::entry::Source) -> crate::entry::Meta {
        crate::entry::Meta {
            source,
            created_ms: self.created_ms,
            fresh_until_ms: self.fresh_until_ms,
        }
    }
}

/// What the cross-process lock said.
pub(super) enum Led {
    /// Another process stored the value meanwhile.
    Found(Found),
    /// This process holds the lock (or may: its answer was lost): run the
    /// body, then release it.
    Locked(Held),
    /// No lock (the tier is down, or the wait timed out): run the body.
    Unlocked,
    /// Another process holds the lock, and this load does not wait for it.
    Busy,
}

/// What a load stores once its body returned.
pub(super) struct Fill {
    pub(super) value: Arc<dyn Any + Send + Sync>,
    pub(super) absent: bool,
    pub(super) ttl: Duration,
    pub(super) compute: Duration,
}

impl L2Load {
    pub(super) fn error(&self, e: &L2Error) {
        if !matches!(e, L2Error::Open) {
            Counters::bump(&self.counters.l2_errors);
            crate::stats::l2_error_metric(match e {
                L2Error::Timeout => "timeout",
                L2Error::Down(_) => "down",
                _ => "refused",
            });
            let now = self.clock.now_millis();
            crate::trace::l2_error(&self.l2.warnings, now, self.spec.name, e);
        }
    }

    /// The logical key: the `{fn}_key` form without namespace and version.
    fn rendered(&self) -> &str {
        let mut prefix = 0;
        if let Some(ns) = self.spec.namespace {
            prefix += ns.len() + 1;
        }
        if self.spec.namespace.is_some() || self.spec.version != 1 {
            prefix += 1 + itoa::Buffer::new().format(self.spec.version).len() + 1;
        }
        self.key.get(prefix..).unwrap_or(&self.key)
    }

    /// Learns the generations this key depends on that this process does
    /// not know yet, then takes the load's fence and names the Redis key.
    /// The error when the tier could not be reached.
    ///
    /// An invalidation by this process that is still on its way to the tier
    /// leaves its generation unknown; learning it raises the tier to this
    /// process's value first. Should another one come between the learning
    /// and the fence, the load learns again, a few times at most, and then
    /// goes on without filling the tier.
    pub(super) async fn prepare(mut self: Box<Self>) -> Result<Box<L2Load>, L2Error> {
        self.era = self.l2.era();
        self.ids = self.generation_ids();
        let mut tries = 0;
        let fence = loop {
            for id in self.generations.unknown(self.ids.iter().cloned()) {
                let floor = self.generations.get(&id);
                match self.l2.fetch_generation_at_least(&id, floor).await {
                    Ok(value) => self.generations.learn(&id, value),
                    Err(e) => {
                        self.error(&e);
                        return Err(e);
                    }
                }
            }
            let (fence, confirmed) =
                self.generations
                    .fence_confirmed(&self.key, self.spec.namespace, self.tags.clone());
            tries += 1;
            if confirmed || tries == PREPARE_TRIES {
                self.confirmed = confirmed;
                break fence;
            }
        };
        let namespace = self.spec.namespace.zip(fence.namespace_generation());
        self.redis_key = self
            .l2
            .entry_key(namespace, self.spec.version, self.rendered());
        self.fence = Some(fence);
        Ok(self)
    }

    /// Whether the invalidation channel connected or dropped since this
    /// load began: messages may have been lost meanwhile (and L1 was
    /// flushed), so the load must not fill (G6, G7).
    pub(super) fn missed_messages(&self) -> bool {
        self.l2.era() != self.era
    }

    /// The entry for this key, if it is present, readable, not past its
    /// stale window and not covered by a later invalidation. Anything else
    /// is a miss (G9).
    ///
    /// The generations the entry depends on are read from Redis in the same
    /// round trip as the entry, so an invalidation by any process is seen
    /// here at once, before its message arrives.
    pub(super) async fn read(&self) -> Option<Found> {
        // Read before the round trip: an invalidation by this process while
        // it is in flight moves the epoch past the entry's, so the entry
        // gets a full check before it is served from L1 (G7).
        let epoch = self.generations.epoch();
        let (bytes, current) = match self
            .l2
            .get_with_generations(&self.redis_key, &self.ids)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.error(&e);
                return None;
            }
        };
        for (id, generation) in self.ids.iter().zip(&current) {
            self.generations.learn_announced(id, *generation);
        }
        self.check(&bytes?, &current, epoch)
    }

    /// Judges a stored entry against the generations Redis holds now.
    /// `current` holds the values of `self.ids`, in order; `epoch` is the
    /// generations' epoch from before they were read.
    pub(super) fn check(&self, bytes: &[u8], current: &[u64], epoch: (u64, u64)) -> Option<Found> {
        let (header, payload) = envelope::decode(bytes, self.l2.max_value_size).ok()?;
        // Compressed by a process with `compression`: decompressed here, or
        // a miss for a build without it or bytes that do not decompress.
        let decompressed;
        let payload = if header.compressed {
            decompressed = crate::compress::decompress(payload)?;
            &decompressed[..]
        } else {
            payload
        };
        if header.codec != self.l2.codec.id() {
            return None;
        }
        let now = self.clock.now_millis();
        if now >= header.stale_until_ms {
            return None;
        }
        let fence = self.fence.as_ref()?;
        let slot = self.generations.slot(&self.key);
        let now_at = |id: &GenId| {
            self.ids
                .iter()
                .zip(current)
                .find(|(i, _)| *i == id)
                .map_or_else(|| self.generations.get(id), |(_, g)| *g)
        };
        // The key was named with the namespace generation this process knew;
        // a newer one means the whole namespace was dropped since.
        if let (Some(ns), Some(used)) = (self.spec.namespace, fence.namespace_generation()) {
            if now_at(&GenId::Namespace(ns.to_owned())) > used {
                return None;
            }
        }
        let seen = [
            (GenId::Clear, header.clear_generation),
            (GenId::KeySlot(slot), header.key_generation),
        ]
        .into_iter()
        .chain(
            header
                .tags
                .iter()
                .map(|(tag, g)| (GenId::Tag(tag.clone()), *g)),
        );
        for (id, generation) in seen {
            if generation < now_at(&id) {
                // Invalidated after its load began.
                return None;
            }
            // Filled after an invalidation this process has not heard of.
            self.generations.raise_to(&id, generation);
        }
        let value = (self.codec.decode)(payload, self.l2.codec).ok()?;
        let fresh_until_ms = header.fresh_until_ms;
        let created_ms = header.created_ms;
        if self.spec.tier == crate::spec::Tier::L2 {
            return Some(Found {
                value,
                entry: None,
                fresh_until_ms,
                created_ms,
            });
        }
        let l1_until = [self.spec.l1_ttl, self.l1_max_ttl]
            .into_iter()
            .flatten()
            .map(|cap| now.saturating_add(cap.as_millis() as u64))
            .fold(header.stale_until_ms, u64::min);
        let entry_fence = Fence::of_l2_entry(
            epoch,
            header.clear_generation,
            slot,
            header.key_generation,
            self.spec.namespace.zip(fence.namespace_generation()),
            header.tags,
        );
        let entry = Some(Entry {
            value: Arc::clone(&value),
            until_ms: l1_until,
            fresh_until_ms,
            compute_us: header.compute_us,
            created_s: crate::l1::seconds(created_ms),
            fence: entry_fence,
        });
        Some(Found {
            value,
            entry,
            fresh_until_ms,
            created_ms,
        })
    }

    /// [`read`](Self::read), taking only a fresh entry whose TTL ends after
    /// [`newer_than`](Self::newer_than): what ends a wait for the lock.
    async fn read_newer(&self) -> Option<Found> {
        let found = self.read().await?;
        let now = self.clock.now_millis();
        (found.fresh_until_ms > now && found.fresh_until_ms > self.newer_than).then_some(found)
    }

    /// Takes the cross-process lock for this key, or waits for the process
    /// that holds it to store the value, woken by its fill message (and
    /// polling in case the message is lost). After `lock_timeout` the
    /// waiter gives up and runs the body itself (G5).
    pub(super) async fn lead(self) -> Led {
        let lock_key = self.l2.lock_key(&self.redis_key);
        let token = format!("{:032x}", fastrand::u128(..));
        let deadline = Instant::now() + self.l2.lock_timeout;
        let mut poll = Duration::from_millis(5);
        loop {
            let fills = Arc::clone(&self.l2.fills);
            let notified = fills.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.l2.try_lock(lock_key.clone(), token.clone()).await {
                Ok(true) => {
                    let held = self.l2.hold(lock_key, token);
                    // Someone may have filled between our read and the lock.
                    return match self.read_newer().await {
                        Some(found) => {
                            let _ = self
                                .l2
                                .unlock(held.lock_key.clone(), held.token.clone())
                                .await;
                            Led::Found(found)
                        }
                        None => Led::Locked(held),
                    };
                }
                Ok(false) if !self.wait_for_holder => return Led::Busy,
                Ok(false) => {}
                Err(e @ (L2Error::Timeout | L2Error::Down(_))) => {
                    // The `SET` may have been done without its answer
                    // reaching us: hold the lock as ours, so that it is
                    // renewed while the body runs and released by its
                    // token after, instead of stalling every process.
                    self.error(&e);
                    return Led::Locked(self.l2.hold(lock_key, token));
                }
                Err(e) => {
                    self.error(&e);
                    return Led::Unlocked;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Led::Unlocked;
            }
            let wait = poll.min(deadline - now);
            let _ = self.l2.timeout(wait, notified).await;
            poll = (poll * 2).min(Duration::from_millis(250));
            if let Some(found) = self.read_newer().await {
                return Led::Found(found);
            }
        }
    }

    /// Stores the body's result in the shared tier unless an invalidation
    /// already covers it, tells waiting processes, and releases the lock.
    pub(super) async fn write(self, fill: Option<Fill>, lock: Option<Held>) {
        let this = lock.as_ref().map(|_| self.clone());
        let _ = self.write_checked(fill).await;
        if let (Some(this), Some(held)) = (this, lock) {
            let unlocked = this.l2.unlock(held.lock_key.clone(), held.token.clone());
            if let Err(e) = unlocked.await {
                // Not renewed any more once `held` is dropped: the lock
                // ends within its lease.
                this.error(&e);
            }
        }
    }

    /// The generations this key depends on.
    pub(super) fn generation_ids(&self) -> Vec<GenId> {
        let mut ids = vec![
            GenId::Clear,
            GenId::KeySlot(self.generations.slot(&self.key)),
        ];
        ids.extend(
            self.spec
                .namespace
                .map(|ns| GenId::Namespace(ns.to_owned())),
        );
        ids.extend(self.tags.iter().cloned().map(GenId::Tag));
        ids
    }

    /// After a fill, reads the key's generations again: one that moved while
    /// the body ran means another process invalidated the key, and its
    /// message may not have arrived yet. Learning it now voids this
    /// process's fresh L1 entry at once (readers elsewhere already reject
    /// the stored one, since they read the generations with it) (G7).
    async fn recheck_generations(&self) {
        let ids = self.generation_ids();
        match self.l2.fetch_generations(&ids).await {
            Ok(current) => {
                for (id, generation) in ids.iter().zip(current) {
                    self.generations.learn_announced(id, generation);
                }
            }
            Err(e) => self.error(&e),
        }
    }

    /// The stored key, bytes and Redis TTL of `fill` under `fence`; an
    /// error when it is too large or cannot be encoded (it stays in L1).
    #[allow(clippy::type_complexity, reason = "a key, its bytes and a TTL")]
    pub(super) fn encode(
        &self,
        fill: &Fill,
        fence: &Fence,
    ) -> Result<(String, Vec<u8>, Duration), Error> {
        let created = self.clock.now_millis();
        let fresh_until = created.saturating_add(fill.ttl.as_millis() as u64);
        // Kept through its stale window; the Redis TTL ends it there.
        let window = self.spec.freshness.window();
        let stale_until = fresh_until.saturating_add(window.as_millis() as u64);
        let header = Header {
            codec: self.l2.codec.id(),
            absent: fill.absent,
            compressed: false,
            created_ms: created,
            fresh_until_ms: fresh_until,
            stale_until_ms: stale_until,
            compute_us: fill.compute.as_micros().min(u128::from(u32::MAX)) as u32,
            clear_generation: fence.clear_generation(),
            key_generation: fence.key_generation(),
            tags: fence.tags().map(|(t, g)| (t.to_owned(), g)).collect(),
        };
        let encoded = envelope::encode(&header, self.l2.compress_above, |out| {
            (self.codec.encode)(&*fill.value, self.l2.codec, out)
        });
        // Too large, or not encodable: the value stays in L1.
        let bytes = match encoded {
            Ok(bytes) if bytes.len() <= self.l2.max_value_size => bytes,
            Ok(bytes) => {
                return Err(Error::BadData(format!(
                    "the encoded value takes {} bytes, more than `max_value_size` ({}); it is stored in L1 only",
                    bytes.len(),
                    self.l2.max_value_size
                )))
            }
            Err(e) => {
                return Err(Error::BadData(format!(
                    "{e}; the value is stored in L1 only"
                )))
            }
        };
        Ok((self.redis_key.clone(), bytes, fill.ttl + window))
    }

    /// [`write`](Self::write) without a lock, reporting whether the shared
    /// tier took the value (`{fn}_put`).
    pub(super) async fn write_checked(self, fill: Option<Fill>) -> Result<(), Error> {
        let (Some(fill), Some(fence)) = (fill, self.fence.as_ref()) else {
            return Ok(());
        };
        // A fence with a generation the tier has not confirmed: the tier
        // may give that value to another process's invalidation, whose
        // readers would take this value for a newer one.
        if !self.confirmed {
            return Ok(());
        }
        if !self.generations.is_current(fence) || self.missed_messages() {
            // An invalidation came first: the value must not be stored.
            return Ok(());
        }
        let (key, bytes, ttl) = self.encode(&fill, fence)?;
        if let Err(e) = self.l2.set(key, bytes, ttl).await {
            self.error(&e);
            return Err(e.into());
        }
        self.recheck_generations().await;
        if self.spec.lock {
            if let Err(e) = self.l2.publish(&Event::Filled).await {
                self.error(&e);
            }
        }
        Ok(())
    }
}

/// One element of a batch after the batch's shared-tier read.
pub(super) struct Read {
    /// Its shared-tier side, with the fence to fill it under.
    pub(super) load: L2Load,
    pub(super) found: Option<Found>,
    /// Whether this batch took the element's lock.
    pub(super) locked: bool,
}

impl L2Load {
    /// The shared-tier side of another key of the same function and cache.
    pub(super) fn sibling(&self, key: String, tags: Vec<String>) -> L2Load {
        let mut load = self.clone();
        load.key = key;
        load.tags = tags;
        load.redis_key = String::new();
        load.fence = None;
        load.confirmed = false;
        load.ids = Vec::new();
        load
    }
}

/// A batch's read (`#[cache_many]`): names each element's entry, then, in
/// one round trip, takes the elements' locks when `token` is given and
/// reads every entry with the generations they depend on. Each element's
/// fence is taken after the generations were learned, for the fill that
/// follows. Learning a namespace generation this process does not know
/// yet costs one round trip before, once.
pub(super) async fn read_batch(
    mut loads: Vec<L2Load>,
    token: Option<String>,
) -> Result<Vec<Read>, L2Error> {
    let Some(first) = loads.first() else {
        return Ok(Vec::new());
    };
    let (l2, generations, spec) = (
        Arc::clone(&first.l2),
        Arc::clone(&first.generations),
        first.spec,
    );
    if let Some(ns) = spec.namespace {
        let id = GenId::Namespace(ns.to_owned());
        if !generations.unknown([id.clone()]).is_empty() {
            let floor = generations.get(&id);
            match l2.fetch_generation_at_least(&id, floor).await {
                Ok(value) => generations.learn(&id, value),
                Err(e) => {
                    first.error(&e);
                    return Err(e);
                }
            }
        }
    }
    let era = l2.era();
    // The namespace generation the entries are named with.
    let named_in = spec
        .namespace
        .map(|ns| generations.get(&GenId::Namespace(ns.to_owned())));
    let namespace = spec.namespace.zip(named_in);
    // Each generation once, with where it is in the read.
    let mut ids: Vec<GenId> = Vec::new();
    let mut at: HashMap<GenId, usize, BuildHasherDefault<Fnv>> = HashMap::default();
    let mut entries = Vec::with_capacity(loads.len());
    for load in &mut loads {
        load.era = era;
        load.ids = load.generation_ids();
        for id in &load.ids {
            at.entry(id.clone()).or_insert_with(|| {
                ids.push(id.clone());
                ids.len() - 1
            });
        }
        load.redis_key = l2.entry_key(namespace, spec.version, load.rendered());
        entries.push(load.redis_key.clone());
    }
    let locks = match &token {
        Some(_) => entries.iter().map(|key| l2.lock_key(key)).collect(),
        None => Vec::new(),
    };
    let epoch = generations.epoch();
    let read = l2
        .lock_and_read(locks, token.unwrap_or_default(), entries, &ids)
        .await;
    let (taken, values, current) = match read {
        Ok(read) => read,
        Err(e) => {
            loads[0].error(&e);
            return Err(e);
        }
    };
    for (id, generation) in ids.iter().zip(&current) {
        generations.learn_announced(id, *generation);
    }
    let mut reads = Vec::with_capacity(loads.len());
    let mut now: Vec<u64> = Vec::new();
    for (index, mut load) in loads.into_iter().enumerate() {
        now.clear();
        now.extend(load.ids.iter().map(|id| {
            at.get(id)
                .and_then(|&index| current.get(index).copied())
                .unwrap_or_else(|| generations.get(id))
        }));
        // The fence for the fill, taken once the generations are learned.
        let (fence, confirmed) =
            generations.fence_confirmed(&load.key, spec.namespace, load.tags.clone());
        // The namespace moved on since the entry was named: the name is
        // void, and so is a fill under it.
        let renamed = fence.namespace_generation() != named_in;
        let taken_at = fence.epoch();
        load.fence = Some(fence);
        load.confirmed = confirmed && !renamed;
        let found = match renamed {
            true => None,
            false => values
                .get(index)
                .and_then(Option::as_deref)
                .and_then(|bytes| load.check(bytes, &now, epoch)),
        };
        // Reading the entry raised a generation: the fence is taken again.
        if generations.epoch().0 != taken_at {
            let (fence, confirmed) =
                generations.fence_confirmed(&load.key, spec.namespace, load.tags.clone());
            load.fence = Some(fence);
            load.confirmed = confirmed && !renamed;
        }
        reads.push(Read {
            load,
            found,
            locked: taken.get(index).copied().unwrap_or(false),
        });
    }
    Ok(reads)
}

/// A batch's write (`#[cache_many]`, `{fn}_put` of a map): stores every
/// fill that no invalidation covers, releases `unlocks` (held with
/// `token`), reads the generations of what it stored again (G7) and, with
/// `lock`, wakes waiting processes, in one round trip. The first value
/// that could not be stored is the error; the others are stored.
pub(super) async fn write_batch(
    l2: Arc<L2>,
    fills: Vec<(L2Load, Fill)>,
    unlocks: Vec<String>,
    token: String,
) -> Result<(), Error> {
    let mut sets = Vec::with_capacity(fills.len());
    let mut ids: Vec<GenId> = Vec::new();
    let mut seen: std::collections::HashSet<GenId> = std::collections::HashSet::new();
    let mut refused = Ok(());
    let mut announce = false;
    let mut reporter = None;
    for (load, fill) in &fills {
        let Some(fence) = load.fence.as_ref() else {
            continue;
        };
        if !load.confirmed || !load.generations.is_current(fence) || load.missed_messages() {
            continue;
        }
        match load.encode(fill, fence) {
            Ok(set) => sets.push(set),
            Err(e) => {
                if refused.is_ok() {
                    refused = Err(e);
                }
                continue;
            }
        }
        announce |= load.spec.lock;
        for id in load.generation_ids() {
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        reporter.get_or_insert(load);
    }
    if sets.is_empty() && unlocks.is_empty() {
        return refused;
    }
    match l2.write_many(sets, unlocks, token, &ids, announce).await {
        Ok(current) => {
            if let Some(load) = reporter {
                for (id, generation) in ids.iter().zip(current) {
                    load.generations.learn_announced(id, generation);
                }
            }
            refused
        }
        Err(e) => {
            if let Some((load, _)) = fills.first() {
                load.error(&e);
            }
            Err(e.into())
        }
    }
}

/// FNV-1a, for the small maps of generation ids a batch keeps: no
/// randomness is needed, and SipHash costs more than the rest of an
/// element's bookkeeping.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}
