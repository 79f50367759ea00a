//! `#[cache_many]`: one call for many keys. Every element is looked up in
//! L1, the rest in the shared tier in one round trip, and the body runs
//! once with only what is still missing; what it returns is stored per
//! element, in one write round trip. With `lock`, elements another caller
//! is loading, in this process or another, are waited for instead.
//!
//! A batch is driven by generated code in a loop: [`Batch::step_async`]
//! answers [`Step::Load`] with the elements to run the body for, the code
//! runs it and hands the map back with [`Batch::fill_async`] (or tells of
//! its failure with [`Batch::fail`]), and the next step answers
//! [`Step::Done`] with the whole map, or more elements to load: those whose
//! other loader failed (G4).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::l2::{read_batch, write_batch, Fill, L2Load, Read};
use super::{jittered, render_key, skips_l1, with_fresh};
use crate::clock::Stopwatch;
use crate::error::Error;
use crate::flight::{Flight, LeaderGuard, Outcome, Role};
use crate::handle::{Cache, Inner};
use crate::invalidate::Fence;
use crate::key::{Escape, KeyWriter};
use crate::l1::Entry;
use crate::l2::{Held, L2};
use crate::refresh::{self, Age};
use crate::shape::Element;
use crate::spec::Site;
use crate::stats::Counters;
use crate::value::ValueCodec;
use crate::wait::{block_now, Awaiting, Blocking, Wait};

/// How many times an element whose other loader failed is waited for
/// again before this batch loads it without a flight.
const TRIES: u8 = 2;

/// One tag template of a `#[cache_many]` function, rendered per element.
#[derive(Clone, Copy)]
pub struct ManyTag<'a, K> {
    /// What values escape inside this tag.
    pub escape: Escape,
    /// Writes the tag from one element and the call's other arguments.
    pub render: &'a dyn Fn(&mut KeyWriter<'_>, &K),
}

impl<K> std::fmt::Debug for ManyTag<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManyTag").finish_non_exhaustive()
    }
}

/// What a batch needs next.
#[derive(Debug)]
pub enum Step<K, M> {
    /// Run the body with these elements (no duplicates, none found in
    /// either tier), then hand its map to the batch.
    Load(Vec<K>),
    /// Every element is settled: the call's map.
    Done(M),
}

/// Where one element stands.
enum State<'c, S> {
    /// Not found yet, and nobody asked to load it.
    Open,
    /// Settled: the stored value, or `None` for an element without one.
    Done(Option<S>),
    /// This batch loads it (leading the element's flight with `lock`).
    Lead(Option<LeaderGuard<'c>>),
    /// Another caller in this process loads it.
    Flight(Arc<Flight>),
    /// Another process holds its lock; this batch leads its flight here.
    Remote(Option<LeaderGuard<'c>>),
}

struct Item<'c, K, S> {
    element: K,
    key: String,
    tags: Vec<String>,
    fence: Fence,
    state: State<'c, S>,
    /// A stored value past its TTL, served if the body fails
    /// (`stale_if_error`).
    fallback: Option<S>,
    /// The shared-tier side, once read.
    l2: Option<L2Load>,
    /// The element's cross-process lock, while this batch holds it.
    held: Option<Held>,
    /// How many times it was elected.
    tries: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// A write-through (`{fn}_refresh`, `{fn}_put`) that has not begun:
    /// its keys are to be invalidated first.
    Invalidate,
    Start,
    Loading,
    Waiting,
    Done,
}

/// One `#[cache_many]` call in progress.
pub struct Batch<'c, Sh: Element<V>, K, V> {
    cache: &'c Cache,
    site: &'static Site,
    /// The shared-tier side every element's is made from; `None` without a
    /// shared tier or for `tier = "l1"`.
    l2: Option<L2Load>,
    items: Vec<Item<'c, K, Sh::Stored>>,
    phase: Phase,
    /// The token of every lock this batch takes.
    token: String,
    /// Locks taken for elements found in the shared tier after all: released
    /// with the next write.
    unlocks: Vec<String>,
    started: Option<Stopwatch>,
    /// Whether a value found in the shared tier settles an element (not
    /// for a write-through, which stores what it was given).
    reads: bool,
    _value: PhantomData<fn() -> V>,
}

impl<Sh: Element<V>, K, V> std::fmt::Debug for Batch<'_, Sh, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("elements", &self.items.len())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<'c, Sh, K, V> Batch<'c, Sh, K, V>
where
    Sh: Element<V>,
    K: Clone + Eq + Hash,
{
    /// Looks every element up in L1 (`reads`), or, for a write-through
    /// (`{fn}_refresh`, `{fn}_put`), leaves them all to be invalidated and
    /// loaded or stored.
    pub(crate) fn build<'k>(
        site: &'static Site,
        cache: &'c Cache,
        codec: Option<ValueCodec>,
        elements: impl IntoIterator<Item = &'k K>,
        key: impl Fn(&mut KeyWriter<'_>, &K),
        tags: &[ManyTag<'_, K>],
        reads: bool,
    ) -> Self
    where
        K: 'k,
    {
        let inner = &*cache.inner;
        let spec = &site.spec;
        let counters = site.counters(cache);
        let elements = elements.into_iter();
        let mut seen = HashSet::with_capacity(elements.size_hint().0);
        let mut items = Vec::with_capacity(elements.size_hint().0);
        for element in elements {
            if !seen.insert(element) {
                continue;
            }
            let mut rendered = String::new();
            render_key(spec, &mut rendered, |w| key(w, element));
            let (state, fallback) = match !reads || skips_l1(inner, spec) {
                true => (State::Open, None),
                false => read_l1::<Sh, V>(inner, site, &rendered),
            };
            if let State::Done(_) = state {
                counters.l1_hits.bump();
                let fence = inner
                    .generations
                    .fence(&rendered, spec.namespace, Vec::new());
                items.push(Item {
                    element: element.clone(),
                    key: rendered,
                    tags: Vec::new(),
                    fence,
                    state,
                    fallback: None,
                    l2: None,
                    held: None,
                    tries: 0,
                });
                continue;
            }
            let tags: Vec<String> = tags
                .iter()
                .map(|tag| {
                    let mut out = String::new();
                    (tag.render)(&mut KeyWriter::new(&mut out, tag.escape), element);
                    out
                })
                .collect();
            let fence = inner
                .generations
                .fence(&rendered, spec.namespace, tags.clone());
            items.push(Item {
                element: element.clone(),
                key: rendered,
                tags,
                fence,
                state,
                fallback,
                l2: None,
                held: None,
                tries: 0,
            });
        }
        let l2 = match (codec, &inner.l2) {
            (Some(codec), Some(tier)) => Some(L2Load {
                l2: Arc::clone(tier),
                generations: Arc::clone(&inner.generations),
                clock: inner.clock.clone(),
                counters: site.counters(cache).into_arc(),
                spec,
                codec,
                l1_max_ttl: inner.l1_max_ttl,
                key: String::new(),
                tags: Vec::new(),
                redis_key: String::new(),
                fence: None,
                confirmed: false,
                era: 0,
                ids: Vec::new(),
                newer_than: 0,
                wait_for_holder: true,
            }),
            _ => None,
        };
        Batch {
            cache,
            site,
            l2,
            items,
            phase: match reads {
                true => Phase::Start,
                false => Phase::Invalidate,
            },
            token: String::new(),
            unlocks: Vec::new(),
            started: None,
            reads,
            _value: PhantomData,
        }
    }

    /// The next step of an async function's batch.
    pub async fn step_async<M: FromIterator<(K, V)>>(&mut self) -> Step<K, M> {
        self.step(Awaiting).await
    }

    /// The next step of a sync function's batch: waits block the thread.
    pub fn step_blocking<M: FromIterator<(K, V)>>(&mut self) -> Step<K, M> {
        block_now(self.step(Blocking))
    }

    /// Stores what the body returned for the elements of the last
    /// [`Step::Load`]; an element missing from `map` is absent (cached only
    /// with `negative_ttl`).
    pub async fn fill_async(&mut self, map: impl IntoIterator<Item = (K, V)>) {
        // A value the shared tier did not take stays in L1.
        let _ = self.fill(Awaiting, map).await;
    }

    /// [`fill_async`](Self::fill_async) for a sync function.
    pub fn fill_blocking(&mut self, map: impl IntoIterator<Item = (K, V)>) {
        let _ = block_now(self.fill(Blocking, map));
    }

    /// Runs an async function's body for the elements of the last
    /// [`Step::Load`], inside the `cachette.load` span (feature `tracing`),
    /// whose `key` is the first element's key and how many more there are;
    /// `failed` says whether what it returned is an error.
    pub async fn body_async<R>(&self, body: impl Future<Output = R>, failed: fn(&R) -> bool) -> R {
        #[cfg(feature = "tracing")]
        {
            let keys = self.loading_keys();
            let (name, tier) = (self.site.name(), self.site.spec.tier);
            crate::trace::load(name, &keys, tier, body, failed).await
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = failed;
            body.await
        }
    }

    /// [`body_async`](Self::body_async) for a sync function.
    pub fn body_blocking<R>(&self, body: impl FnOnce() -> R, failed: fn(&R) -> bool) -> R {
        #[cfg(feature = "tracing")]
        {
            let keys = self.loading_keys();
            let (name, tier) = (self.site.name(), self.site.spec.tier);
            crate::trace::load_blocking(name, &keys, tier, body, failed)
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = failed;
            body()
        }
    }

    /// `user:7 (+9 more)`: the span's key for a body run.
    #[cfg(feature = "tracing")]
    fn loading_keys(&self) -> String {
        let mut loading = self
            .items
            .iter()
            .filter(|item| matches!(item.state, State::Lead(_)));
        let Some(first) = loading.next() else {
            return String::new();
        };
        match loading.count() {
            0 => first.key.clone(),
            more => format!("{} (+{more} more)", first.key),
        }
    }

    /// The body failed for the elements of the last [`Step::Load`]: their
    /// waiters load them themselves. Whether every one of them had a stored
    /// value to answer with instead (`stale_if_error`), so that the call
    /// goes on; otherwise it returns the body's error.
    pub fn fail(&mut self) -> bool {
        let counters = self.site.counters(self.cache);
        Counters::bump(&counters.body_runs);
        Counters::bump(&counters.errors);
        let mut covered = true;
        let mut helds = Vec::new();
        for item in &mut self.items {
            let State::Lead(guard) = &mut item.state else {
                continue;
            };
            if let Some(guard) = guard.take() {
                guard.finish(Outcome::Failed(None));
            }
            helds.extend(item.held.take());
            match item.fallback.take() {
                Some(stored) => {
                    Counters::bump(&counters.errors_served_stale);
                    crate::trace::served_stale_on_error(self.site.name(), &item.key);
                    item.state = State::Done(Some(stored));
                }
                None => {
                    covered = false;
                    item.state = State::Done(None);
                }
            }
        }
        self.phase = match covered {
            true => Phase::Waiting,
            false => Phase::Done,
        };
        self.release(helds);
        covered
    }

    /// Releases `helds` and the locks of elements found after all, at once
    /// (on the cache's runtime), so that other processes need not wait out
    /// their lease.
    fn release(&mut self, helds: Vec<Held>) {
        let unlocks: Vec<String> = helds
            .iter()
            .map(|held| held.lock_key.clone())
            .chain(self.unlocks.drain(..))
            .collect();
        if let (Some(tier), false) = (&self.l2, unlocks.is_empty()) {
            let l2 = Arc::clone(&tier.l2);
            let token = self.token.clone();
            let releasing = Arc::clone(&l2);
            l2.spawn(async move {
                let _ = releasing
                    .write_many(Vec::new(), unlocks, token, &[], false)
                    .await;
                drop(helds);
            });
        }
    }

    async fn step<W: Wait, M: FromIterator<(K, V)>>(&mut self, wait: W) -> Step<K, M> {
        loop {
            match self.phase {
                Phase::Invalidate => {
                    // A failed invalidation was counted; the refresh goes on
                    // like any load.
                    let _ = self.begin_write_through(wait).await;
                    self.phase = Phase::Waiting;
                }
                Phase::Start => {
                    self.phase = Phase::Waiting;
                    self.elect();
                    self.read_shared(wait).await;
                    let counters = self.site.counters(self.cache);
                    for item in &self.items {
                        if !matches!(item.state, State::Done(_)) {
                            Counters::bump(&counters.misses);
                        }
                    }
                }
                // The last load's result never came back: its elements'
                // guards go (waiters take over), and they are elected anew.
                Phase::Loading => {
                    for item in &mut self.items {
                        if let State::Lead(_) = item.state {
                            item.state = State::Open;
                        }
                    }
                    self.phase = Phase::Waiting;
                }
                Phase::Waiting => {
                    self.elect();
                    if let Some(load) = self.leads() {
                        return load;
                    }
                    if !self.await_others(wait).await {
                        self.phase = Phase::Done;
                        self.release(Vec::new());
                    }
                }
                Phase::Done => return Step::Done(self.collect()),
            }
        }
    }

    /// `{fn}_put` of a map, for async functions: stores every value as its
    /// element's entry, in every tier.
    ///
    /// # Errors
    ///
    /// As [`Cache::invalidate_key`], or the shared tier's refusal of a
    /// value; L1 takes every value whatever the shared tier said.
    pub fn put_async(
        self,
        values: Vec<(K, V)>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'c
    where
        Sh: 'c,
        K: Send + Sync + 'c,
        V: Send + 'c,
    {
        self.put(Awaiting, values)
    }

    /// [`put_async`](Self::put_async) for sync functions.
    ///
    /// # Errors
    ///
    /// As [`put_async`](Self::put_async).
    pub fn put_blocking(self, values: Vec<(K, V)>) -> Result<(), Error> {
        block_now(self.put(Blocking, values))
    }

    /// Stores known values (`{fn}_put` of a map) in every tier, after
    /// invalidating their keys everywhere; the first failure is the error,
    /// and L1 takes every value whatever the shared tier said.
    pub(crate) async fn put<W: Wait>(
        mut self,
        wait: W,
        values: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), Error> {
        let announced = self.begin_write_through(wait).await;
        self.phase = Phase::Loading;
        self.started = None;
        let written = self.fill(wait, values).await;
        announced.and(written)
    }

    /// Begins a write-through: invalidates every element's key here and in
    /// other processes (so that no load begun before can store an older
    /// value over the new one), then takes the new generations and names
    /// the entries in the shared tier. All invalidations come before any
    /// write, so that elements sharing a generation slot keep their new
    /// entries.
    async fn begin_write_through<W: Wait>(&mut self, wait: W) -> Result<(), Error> {
        let mut announced = Ok(());
        for item in &self.items {
            let invalidated = self.cache.invalidate_key_with(wait, &item.key).await;
            if announced.is_ok() {
                announced = invalidated;
            }
        }
        let inner = &*self.cache.inner;
        for item in &mut self.items {
            item.fence =
                inner
                    .generations
                    .fence(&item.key, self.site.spec.namespace, item.tags.clone());
            item.state = State::Lead(None);
        }
        self.read_shared(wait).await;
        announced
    }

    /// The elements this batch is to load, if any, as a [`Step::Load`].
    fn leads<M>(&mut self) -> Option<Step<K, M>> {
        let leads: Vec<K> = self
            .items
            .iter()
            .filter(|item| matches!(item.state, State::Lead(_)))
            .map(|item| item.element.clone())
            .collect();
        if leads.is_empty() {
            return None;
        }
        self.phase = Phase::Loading;
        let clock = &self.cache.inner.clock;
        self.started = Some(clock.stopwatch());
        Some(Step::Load(leads))
    }

    /// Decides who loads each open element: with `lock`, the first caller
    /// of its key in this process (others wait for it), else this batch.
    fn elect(&mut self) {
        let inner: &'c Inner = &self.cache.inner;
        let lock = self.site.spec.lock;
        for item in &mut self.items {
            if !matches!(item.state, State::Open) {
                continue;
            }
            if item.tries > 0 {
                // Another caller may have stored it meanwhile.
                if let Some(stored) = with_fresh(inner, &item.key, |entry| {
                    entry.value.downcast_ref::<Sh::Stored>().cloned()
                }) {
                    item.state = State::Done(Some(stored));
                    continue;
                }
            }
            item.tries += 1;
            if !lock || item.tries > TRIES {
                item.state = State::Lead(None);
                continue;
            }
            item.state =
                match inner
                    .flights
                    .join_or_lead(&item.key, &item.fence, &inner.generations)
                {
                    Role::Leader(guard) => {
                        // A leader that finished after this batch's lookup has
                        // stored its value already.
                        let stored = with_fresh(inner, &item.key, |entry| {
                            entry
                                .value
                                .downcast_ref::<Sh::Stored>()
                                .map(|s| (s.clone(), Arc::clone(&entry.value)))
                        });
                        match stored {
                            Some((stored, value)) => {
                                guard.finish(Outcome::Done(value));
                                State::Done(Some(stored))
                            }
                            None => State::Lead(Some(guard)),
                        }
                    }
                    Role::Waiter(flight) => State::Flight(flight),
                };
        }
    }

    /// Reads the shared tier for every element this batch leads, taking
    /// their cross-process locks with `lock`, in one round trip.
    async fn read_shared<W: Wait>(&mut self, wait: W) {
        let Some(template) = &self.l2 else {
            return;
        };
        let l2 = Arc::clone(&template.l2);
        if l2.breaker.refusing() {
            return;
        }
        let leads: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches!(self.items[i].state, State::Lead(_)))
            .collect();
        if leads.is_empty() {
            return;
        }
        let loads: Vec<L2Load> = leads
            .iter()
            .map(|&i| {
                let item = &self.items[i];
                template.sibling(item.key.clone(), item.tags.clone())
            })
            .collect();
        let read = wait.l2(&l2, l2.budget(4), read_batch(loads, None)).await;
        let Some(Ok(reads)) = read else {
            // The tier did not answer: the body runs, and fills L1 only.
            return;
        };
        for (index, mut read) in leads.iter().copied().zip(reads) {
            if !self.reads {
                read.found = None;
            }
            let guard = self.take_lead(index);
            let state = self.settle(index, read, guard, false, &l2);
            self.items[index].state = state;
        }
        // With `lock`, the elements still to load take their cross-process
        // locks and are read again under them, in one more round trip: one
        // another process filled meanwhile is served, one whose lock another
        // process holds is waited for.
        if !(self.site.spec.lock && self.reads) {
            return;
        }
        let still: Vec<usize> = leads
            .into_iter()
            .filter(|&i| matches!(self.items[i].state, State::Lead(_)))
            .collect();
        let loads: Vec<L2Load> = still
            .iter()
            .filter_map(|&i| self.items[i].l2.clone())
            .collect();
        if loads.is_empty() || loads.len() != still.len() {
            return;
        }
        self.token = format!("{:032x}", fastrand::u128(..));
        let locking = read_batch(loads, Some(self.token.clone()));
        let Some(Ok(reads)) = wait.l2(&l2, l2.budget(3), locking).await else {
            return;
        };
        for (index, read) in still.into_iter().zip(reads) {
            let guard = self.take_lead(index);
            let state = self.settle(index, read, guard, true, &l2);
            self.items[index].state = state;
        }
    }

    /// The guard of an element this batch leads, leaving it open.
    fn take_lead(&mut self, index: usize) -> Option<LeaderGuard<'c>> {
        match std::mem::replace(&mut self.items[index].state, State::Open) {
            State::Lead(guard) => guard,
            other => {
                self.items[index].state = other;
                None
            }
        }
    }

    /// What one element's shared-tier read decides: found, to load (with
    /// the lock when taken), or to wait for the process holding its lock.
    fn settle(
        &mut self,
        index: usize,
        read: Read,
        guard: Option<LeaderGuard<'c>>,
        wants_lock: bool,
        l2: &Arc<L2>,
    ) -> State<'c, Sh::Stored> {
        let Read {
            load,
            found,
            locked,
        } = read;
        let lock_key = || l2.lock_key(&load.redis_key);
        let now = self.cache.inner.clock.now_millis();
        let freshness = &self.site.spec.freshness;
        let item = &mut self.items[index];
        if let Some(fence) = &load.fence {
            item.fence = fence.clone();
        }
        if let Some(found) = found.filter(|found| found.value.is::<Sh::Stored>()) {
            let age = refresh::age(freshness, now, found.fresh_until_ms, 0, || 1.0);
            match age {
                Age::Fresh | Age::Early => {
                    Counters::bump(&self.site.counters(self.cache).l2_hits);
                    if let Some(entry) = found.entry {
                        keep(self.cache, &item.key, entry, &load);
                    }
                    if locked {
                        self.unlocks.push(lock_key());
                    }
                    let stored = match guard {
                        Some(guard) => {
                            let stored = found.value.downcast_ref::<Sh::Stored>().cloned();
                            guard.finish(Outcome::Done(found.value));
                            stored
                        }
                        // Nothing else holds the value (it skips L1): moved,
                        // not cloned.
                        None => take_stored::<Sh::Stored>(found.value),
                    };
                    return State::Done(stored);
                }
                // Past its TTL: loaded again, and served if that fails.
                Age::Stale | Age::Fallback => {
                    item.fallback = found.value.downcast_ref::<Sh::Stored>().cloned();
                }
                Age::Gone => {}
            }
        }
        if locked {
            item.held = Some(l2.hold(lock_key(), self.token.clone()));
            item.l2 = Some(load);
            return State::Lead(guard);
        }
        item.l2 = Some(load);
        match wants_lock {
            true => State::Remote(guard),
            false => State::Lead(guard),
        }
    }

    /// Waits for the elements others load: first other processes' lock
    /// holders (woken by their fills, polling in case a message is lost,
    /// giving up after `lock_timeout`), then this process's leaders. Whether
    /// any element is left to settle.
    ///
    /// This batch leads the flights of the elements it waits for in other
    /// processes, and another batch here may be waiting on one of them
    /// while leading a flight this batch waits on. So those elements are
    /// settled first, and any left to load are loaded (the caller's next
    /// step) before this batch waits on any flight: a batch waits on
    /// flights only when it leads none, and no two batches wait on each
    /// other.
    async fn await_others<W: Wait>(&mut self, wait: W) -> bool {
        if self.await_remote(wait).await {
            return true;
        }
        let counters = self.site.counters(self.cache);
        let mut open = false;
        for item in &mut self.items {
            let State::Flight(flight) = &item.state else {
                continue;
            };
            let flight = Arc::clone(flight);
            if item.tries == 1 {
                Counters::bump(&counters.lock_waits);
            }
            item.state = match wait.flight(&flight).await {
                Outcome::Done(value) => match value.downcast_ref::<Sh::Stored>() {
                    Some(stored) => State::Done(Some(stored.clone())),
                    // Another function's value under the same key.
                    None => {
                        item.tries = TRIES;
                        State::Open
                    }
                },
                Outcome::Absent => State::Done(None),
                Outcome::Failed(_) | Outcome::Abandoned | Outcome::Running => State::Open,
            };
            open |= matches!(item.state, State::Open);
        }
        open
    }

    /// Settles the elements whose lock another process holds: found once
    /// it fills them, or this batch's to load (it leads their flights here
    /// already). Whether there were any.
    async fn await_remote<W: Wait>(&mut self, wait: W) -> bool {
        let remote: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches!(self.items[i].state, State::Remote(_)))
            .collect();
        if remote.is_empty() {
            return false;
        }
        let loads: Vec<L2Load> = remote
            .iter()
            .filter_map(|&i| self.items[i].l2.clone())
            .collect();
        let l2 = self.l2.as_ref().map(|template| Arc::clone(&template.l2));
        let Some(l2) = l2.filter(|_| loads.len() == remote.len()) else {
            for &index in &remote {
                if let State::Remote(guard) = &mut self.items[index].state {
                    self.items[index].state = State::Lead(guard.take());
                }
            }
            return true;
        };
        Counters::bump(&self.site.counters(self.cache).lock_waits);
        let budget = l2.lock_timeout + l2.budget(4);
        let polled = wait
            .l2(
                &l2,
                budget,
                poll_holders(Arc::clone(&l2), loads, self.token.clone()),
            )
            .await
            .unwrap_or_default();
        let mut polled = polled.into_iter();
        for &index in &remote {
            let guard = match &mut self.items[index].state {
                State::Remote(guard) => guard.take(),
                _ => None,
            };
            let state = match polled.next() {
                Some(read) => self.settle(index, read, guard, false, &l2),
                None => State::Lead(guard),
            };
            self.items[index].state = state;
        }
        true
    }

    /// Stores the body's map: each loaded element in L1 (waking this
    /// process's waiters), then all of them in the shared tier in one round
    /// trip, which also releases their locks.
    async fn fill<W: Wait>(
        &mut self,
        wait: W,
        map: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), Error> {
        if self.phase != Phase::Loading {
            return Ok(());
        }
        self.phase = Phase::Waiting;
        let clock = &self.cache.inner.clock;
        // A put ran no body.
        let compute = match self.started.take() {
            Some(watch) => {
                let compute = clock.elapsed(&watch);
                let counters = self.site.counters(self.cache);
                Counters::bump(&counters.body_runs);
                counters.body_took(compute);
                compute
            }
            None => Duration::ZERO,
        };
        let mut map: HashMap<K, V> = map.into_iter().collect();
        let mut fills = Vec::new();
        let mut helds = Vec::new();
        let mut unlocks = std::mem::take(&mut self.unlocks);
        for index in 0..self.items.len() {
            let State::Lead(guard) = &mut self.items[index].state else {
                continue;
            };
            let guard = guard.take();
            let value = map.remove(&self.items[index].element);
            let absent = value.is_none();
            let stored = match value {
                Some(value) => Sh::present(value),
                None => Sh::absent(),
            };
            let item = &mut self.items[index];
            if let Some(held) = item.held.take() {
                unlocks.push(held.lock_key.clone());
                helds.push(held);
            }
            let Some(stored) = stored else {
                if let Some(guard) = guard {
                    guard.finish(Outcome::Absent);
                }
                item.state = State::Done(None);
                continue;
            };
            let value: Arc<dyn Any + Send + Sync> = Arc::new(stored.clone());
            if let Some(ttl) = store_l1(
                self.cache,
                self.site,
                item,
                Arc::clone(&value),
                absent,
                compute,
            ) {
                if let Some(load) = item.l2.take() {
                    let fill = Fill {
                        value: Arc::clone(&value),
                        absent,
                        ttl,
                        compute,
                    };
                    fills.push((load, fill));
                }
            }
            if let Some(guard) = guard {
                guard.finish(Outcome::Done(value));
            }
            item.state = State::Done(Some(stored));
        }
        let Some(template) = &self.l2 else {
            return Ok(());
        };
        if fills.is_empty() && unlocks.is_empty() {
            return Ok(());
        }
        let l2 = Arc::clone(&template.l2);
        let token = self.token.clone();
        let writing = write_batch(Arc::clone(&l2), fills, unlocks, token);
        let work = async move {
            let written = writing.await;
            // Renewed until released.
            drop(helds);
            written
        };
        wait.l2(&l2, l2.budget(2), work)
            .await
            .unwrap_or(Err(Error::L2Timeout))
    }

    /// The call's map: every settled element that has a value. The batch
    /// is spent: values are moved out, not cloned.
    fn collect<M: FromIterator<(K, V)>>(&mut self) -> M {
        std::mem::take(&mut self.items)
            .into_iter()
            .filter_map(|item| match item.state {
                State::Done(Some(stored)) => Sh::into_value(stored).map(|v| (item.element, v)),
                _ => None,
            })
            .collect()
    }
}

/// The value behind `value`: moved out when nothing else holds it,
/// cloned otherwise.
fn take_stored<S: Clone + Send + Sync + 'static>(value: Arc<dyn Any + Send + Sync>) -> Option<S> {
    let value = value.downcast::<S>().ok()?;
    Some(Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone()))
}

/// An element's L1 entry: its fresh value (settled), or a value past its
/// TTL kept to answer with should the body fail.
fn read_l1<Sh: Element<V>, V>(
    inner: &Inner,
    site: &Site,
    key: &str,
) -> (State<'static, Sh::Stored>, Option<Sh::Stored>) {
    let found = inner.l1.read(key, |entry| {
        let now = inner.clock.now_millis();
        if now >= entry.until_ms || !inner.generations.entry_is_current(&entry.fence) {
            return None;
        }
        let stored = entry.value.downcast_ref::<Sh::Stored>()?.clone();
        let age = refresh::age(&site.spec.freshness, now, entry.fresh_until_ms, 0, || 1.0);
        Some((stored, age))
    });
    match found {
        Some((stored, Age::Fresh | Age::Early)) => (State::Done(Some(stored)), None),
        Some((stored, Age::Stale | Age::Fallback)) => (State::Open, Some(stored)),
        Some((_, Age::Gone)) | None => (State::Open, None),
    }
}

/// Keeps an entry read from the shared tier in L1, unless an invalidation
/// came after it (as a single load does).
fn keep(cache: &Cache, key: &str, entry: Entry, load: &L2Load) {
    let inner = &*cache.inner;
    if !inner.generations.matches(&entry.fence) || load.missed_messages() {
        return;
    }
    inner.fill_l1(key, entry);
    if load.missed_messages() {
        inner.l1.remove(key);
    }
}

/// Writes one loaded element into L1 unless an invalidation covers it, and
/// returns its time to live; `None` when it is not to be cached.
fn store_l1<K, S>(
    cache: &Cache,
    site: &Site,
    item: &mut Item<'_, K, S>,
    value: Arc<dyn Any + Send + Sync>,
    absent: bool,
    compute: Duration,
) -> Option<Duration> {
    let spec = &site.spec;
    let inner = &*cache.inner;
    let ttl = match absent {
        true => spec.negative_ttl?,
        false => jittered(spec.ttl, spec.jitter),
    };
    let missed = |item: &Item<'_, K, S>| item.l2.as_ref().is_some_and(L2Load::missed_messages);
    if !inner.generations.is_current(&item.fence) || missed(item) {
        return None;
    }
    if skips_l1(inner, spec) {
        return Some(ttl);
    }
    let l1_lifetime = [spec.l1_ttl, inner.l1_max_ttl]
        .into_iter()
        .flatten()
        .fold(ttl + spec.freshness.window(), Duration::min);
    let now = inner.clock.now_millis();
    let entry = Entry {
        value,
        until_ms: now.saturating_add(l1_lifetime.as_millis() as u64),
        fresh_until_ms: now.saturating_add(ttl.as_millis() as u64),
        compute_us: compute.as_micros().min(u128::from(u32::MAX)) as u32,
        created_s: crate::l1::seconds(now),
        fence: item.fence.clone(),
    };
    inner.fill_l1(&item.key, entry);
    if missed(item) {
        inner.l1.remove(&item.key);
        return None;
    }
    Some(ttl)
}

/// Waits for the processes holding the locks of `loads` to fill them:
/// reads (and tries the locks) again when any process fills, or after a
/// growing pause, until each element is found fresh or its lock is taken,
/// or `lock_timeout` passes. One [`Read`] per element, in order.
async fn poll_holders(l2: Arc<L2>, loads: Vec<L2Load>, token: String) -> Vec<Read> {
    let deadline = Instant::now() + l2.lock_timeout;
    let mut pause = Duration::from_millis(5);
    let mut settled: Vec<Option<Read>> = (0..loads.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..loads.len()).collect();
    while !pending.is_empty() {
        let fills = Arc::clone(&l2.fills);
        let notified = fills.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let _ = l2.timeout(pause.min(deadline - now), notified).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        let batch: Vec<L2Load> = pending.iter().map(|&i| loads[i].clone()).collect();
        let Ok(reads) = read_batch(batch, Some(token.clone())).await else {
            break;
        };
        let clock_now = loads[0].clock.now_millis();
        let mut still = Vec::new();
        for (index, read) in pending.into_iter().zip(reads) {
            let fresh = read
                .found
                .as_ref()
                .is_some_and(|found| found.fresh_until_ms > clock_now);
            if fresh || read.locked {
                settled[index] = Some(read);
            } else {
                still.push(index);
            }
        }
        pending = still;
    }
    // Those still held elsewhere are loaded without the lock (G5).
    settled
        .into_iter()
        .zip(loads)
        .map(|(read, load)| {
            read.unwrap_or(Read {
                load,
                found: None,
                locked: false,
            })
        })
        .collect()
}

/// The `{fn}_invalidate` companion of a `#[cache_many]` function: drops
/// every key, here and in other processes. The first failure is the error;
/// every key is tried.
pub(crate) async fn invalidate_many<W: Wait>(
    cache: &Cache,
    wait: W,
    keys: Vec<String>,
) -> Result<(), Error> {
    let mut result = Ok(());
    for key in keys {
        let invalidated = cache.invalidate_key_with(wait, &key).await;
        if result.is_ok() {
            result = invalidated;
        }
    }
    result
}

/// Whether a `#[cache_many]` element type can key a batch, as a probe of
/// it found ([`ElementProbe`]).
pub struct Keys<E>(PhantomData<fn() -> E>);

impl<E> std::fmt::Debug for Keys<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<E>())
    }
}

/// The marker of an element type that is `Clone + Eq + Hash`.
#[derive(Debug)]
pub enum Hashed {}

/// Probes a `#[cache_many]` element type `K` by autoref: [`PickKeys`]
/// applies when it is `Clone + Eq + Hash`, [`PickUnkeyed`] otherwise.
pub struct ElementProbe<K>(PhantomData<fn() -> K>);

impl<K> std::fmt::Debug for ElementProbe<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementProbe").finish()
    }
}

impl<K> ElementProbe<K> {
    /// The probe.
    pub const fn new() -> Self {
        ElementProbe(PhantomData)
    }
}

impl<K> Default for ElementProbe<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// Chosen when the element type can key a batch.
pub trait PickKeys {
    /// `Keys<Hashed>`.
    fn keys(&self) -> Keys<Hashed>;
}

impl<K: Clone + Eq + Hash> PickKeys for ElementProbe<K> {
    #[inline]
    fn keys(&self) -> Keys<Hashed> {
        Keys(PhantomData)
    }
}

/// Chosen otherwise: the build fails at the check at the element type.
pub trait PickUnkeyed {
    /// `Keys<Unusable>`.
    fn keys(&self) -> Keys<crate::shape::Unusable>;
}

impl<K> PickUnkeyed for &ElementProbe<K> {
    fn keys(&self) -> Keys<crate::shape::Unusable> {
        Keys(PhantomData)
    }
}

/// The batch an element marker gives.
pub trait KeyStore<'c, Sh, K, V> {
    /// [`Batch`], or [`Unbatched`] for an element type that cannot key one.
    type Batch;

    /// The batch of `elements`; `reads` false for a write-through.
    fn batch<'k>(
        site: &'static Site,
        cache: &'c Cache,
        codec: Option<ValueCodec>,
        elements: impl IntoIterator<Item = &'k K>,
        key: impl Fn(&mut KeyWriter<'_>, &K),
        tags: &[ManyTag<'_, K>],
        reads: bool,
    ) -> Self::Batch
    where
        K: 'k;
}

impl<'c, Sh: Element<V>, K: Clone + Eq + Hash, V> KeyStore<'c, Sh, K, V> for Hashed {
    type Batch = Batch<'c, Sh, K, V>;

    #[inline]
    fn batch<'k>(
        site: &'static Site,
        cache: &'c Cache,
        codec: Option<ValueCodec>,
        elements: impl IntoIterator<Item = &'k K>,
        key: impl Fn(&mut KeyWriter<'_>, &K),
        tags: &[ManyTag<'_, K>],
        reads: bool,
    ) -> Batch<'c, Sh, K, V>
    where
        K: 'k,
    {
        Batch::build(site, cache, codec, elements, key, tags, reads)
    }
}

impl<'c, Sh, K, V> KeyStore<'c, Sh, K, V> for crate::shape::Unusable {
    type Batch = Unbatched<K, V>;

    fn batch<'k>(
        _: &'static Site,
        _: &'c Cache,
        _: Option<ValueCodec>,
        _: impl IntoIterator<Item = &'k K>,
        _: impl Fn(&mut KeyWriter<'_>, &K),
        _: &[ManyTag<'_, K>],
        _: bool,
    ) -> Unbatched<K, V>
    where
        K: 'k,
    {
        Unbatched(PhantomData)
    }
}

/// The batch of an element type that cannot key one: it type-checks like
/// [`Batch`] and does nothing, in a build that fails at the element type.
pub struct Unbatched<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> std::fmt::Debug for Unbatched<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unbatched")
    }
}

impl<K, V> Unbatched<K, V> {
    /// As [`Batch::step_async`]; never called (the build fails), so it asks
    /// for nothing and builds no map.
    pub async fn step_async<M>(&mut self) -> Step<K, M> {
        Step::Load(Vec::new())
    }

    /// As [`Batch::step_blocking`].
    pub fn step_blocking<M>(&mut self) -> Step<K, M> {
        Step::Load(Vec::new())
    }

    /// As [`Batch::fill_async`].
    pub async fn fill_async(&mut self, map: impl IntoIterator<Item = (K, V)>) {
        drop(map);
    }

    /// As [`Batch::fill_blocking`].
    pub fn fill_blocking(&mut self, map: impl IntoIterator<Item = (K, V)>) {
        drop(map);
    }

    /// As [`Batch::body_async`].
    pub async fn body_async<R>(&self, body: impl Future<Output = R>, failed: fn(&R) -> bool) -> R {
        let _ = failed;
        body.await
    }

    /// As [`Batch::body_blocking`].
    pub fn body_blocking<R>(&self, body: impl FnOnce() -> R, failed: fn(&R) -> bool) -> R {
        let _ = failed;
        body()
    }

    /// As [`Batch::fail`].
    pub fn fail(&mut self) -> bool {
        false
    }

    /// As [`Batch::put_async`].
    pub async fn put_async(self, values: Vec<(K, V)>) -> Result<(), Error> {
        drop(values);
        Err(Error::BadData(
            "the element type cannot key a batch".to_owned(),
        ))
    }

    /// As [`Batch::put_blocking`].
    pub fn put_blocking(self, values: Vec<(K, V)>) -> Result<(), Error> {
        drop(values);
        Err(Error::BadData(
            "the element type cannot key a batch".to_owned(),
        ))
    }
}
