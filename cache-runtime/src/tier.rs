//! The read and fill path that generated code calls: look up, and on a miss
//! run the body (once per key with `lock`) and store what it returned.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::entry::{Meta, Record, Source};
use crate::error::Error;
use crate::flight::{Flight, LeaderGuard, Outcome, Role};
use crate::handle::{Cache, Inner};
use crate::invalidate::Fence;
use crate::key::{Escape, KeyPart, KeyWriter};
use crate::l1::Entry;
use crate::l2::L2Error;
use crate::refresh::{self, Age, Claim};
use crate::shape::Shape;
use crate::share::Sharing;
use crate::spec::{Site, Spec};
use crate::stats::Counters;
use crate::value::ValueCodec;
use crate::wait::{block_now, Awaiting, Blocking, Wait};

#[cfg(test)]
mod faults;
mod l2;
mod many;

pub use many::{
    Batch, ElementProbe, Hashed, KeyStore, Keys, ManyTag, PickKeys, PickUnkeyed, Step, Unbatched,
};

use l2::Fill;

/// One tag template of a function, rendered only when an entry is filled.
#[derive(Clone, Copy)]
pub struct Tag<'a> {
    /// What values escape inside this tag.
    pub escape: Escape,
    /// Writes the tag from the call's arguments.
    pub render: &'a dyn Fn(&mut KeyWriter<'_>),
}

impl std::fmt::Debug for Tag<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tag").finish_non_exhaustive()
    }
}

/// What a lookup found: the value, or what is needed to load it.
#[derive(Debug)]
pub enum Lookup<'c, R> {
    /// A fresh entry, already turned into the function's return value.
    Hit(R),
    /// No fresh entry; run the body through [`Load`].
    Miss(Load<'c>),
    /// A stored value to return at once, and a refresh of it to run: in the
    /// background ([`Load::spawn_async`], [`Load::spawn_blocking`]), or by
    /// this caller like a miss (`refresh = "caller"`).
    Refresh(R, Load<'c>),
}

/// A pending fill of one key, carrying the generations seen before the body.
#[derive(Debug)]
pub struct Load<'c> {
    cache: &'c Cache,
    site: &'static Site,
    key: LoadKey,
    fence: Fence,
    /// A refresh neither reads nor joins a flight: it always runs the body.
    refresh: bool,
    /// A refresh of a stored value (§2a): it reads the shared tier for a
    /// newer fill, joins no flight, and holds the key's [`Claim`].
    renew: Option<Renew>,
    /// The stored value this call returns if its body fails
    /// (`stale_if_error`, or a caller-run refresh inside `stale`).
    fallback: Option<Arc<dyn Any + Send + Sync>>,
    /// The shared-tier side of this load, when the function and the cache
    /// both use one.
    l2: Option<Box<l2::L2Load>>,
    /// Where a `{fn}_entry` call learns the facts of what it served.
    record: Option<&'c Record>,
    /// For values that carry their own lifetime (the HTTP layer's
    /// responses): how long to keep one, `None` to not store it. The
    /// function's TTL and jitter otherwise.
    lifetime: Option<Lifetime>,
}

/// How long a value that carries its own lifetime is kept.
pub(crate) type Lifetime = fn(&(dyn Any + Send + Sync)) -> Option<Duration>;

thread_local! {
    /// Keys are rendered here on the read path, so a hit allocates nothing.
    static KEY_BUF: Cell<String> = const { Cell::new(String::new()) };
}

/// Writes the key of `spec` into `out`: the documented `_key` form.
fn render_key(spec: &Spec, out: &mut String, key: impl FnOnce(&mut KeyWriter<'_>)) {
    out.clear();
    if let Some(namespace) = spec.namespace {
        out.push_str(namespace);
        out.push(':');
    }
    if spec.namespace.is_some() || spec.version != 1 {
        out.push('v');
        spec.version
            .write_key(&mut KeyWriter::new(out, Escape::default()));
        out.push(':');
    }
    key(&mut KeyWriter::new(out, spec.key_escape));
}

/// A load's key: the buffer its lookup rendered into, given back to the
/// lookups of the thread where the load ends, so that a hit after a miss
/// renders into it rather than into a new allocation.
#[derive(Debug)]
struct LoadKey(String);

impl std::ops::Deref for LoadKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for LoadKey {
    fn drop(&mut self) {
        recycle_key(std::mem::take(&mut self.0));
    }
}

/// Gives a key's buffer back to this thread's lookups, unless the one they
/// have now is at least as large.
fn recycle_key(key: String) {
    let _ = KEY_BUF.try_with(|cell| {
        let held = cell.take();
        cell.set(match held.capacity() >= key.capacity() {
            true => held,
            false => key,
        });
    });
}

fn render_tags(tags: &[Tag<'_>]) -> Vec<String> {
    tags.iter()
        .map(|tag| {
            let mut out = String::new();
            (tag.render)(&mut KeyWriter::new(&mut out, tag.escape));
            out
        })
        .collect()
}

/// Calls `read` with the entry for `key` if it is fresh and no invalidation
/// covers it.
#[inline]
fn with_fresh<T>(inner: &Inner, key: &str, read: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
    inner.l1.read(key, |entry| {
        let now = inner.clock.now_millis();
        if now >= entry.until_ms
            || now >= entry.fresh_until_ms
            || !inner.generations.entry_is_current(&entry.fence)
        {
            return None;
        }
        read(entry)
    })
}

/// The return value for a stored value of the right type. Another function
/// with the same key template may store another type: that is a miss, not a
/// panic.
#[inline]
fn join_value<Sh: Shape<R>, R>(value: &(dyn Any + Send + Sync)) -> Option<R> {
    value
        .downcast_ref::<Sh::Value>()
        .map(|v| Sh::join(v.clone()))
}

/// The stored value for `key` if it is fresh, no invalidation covers it
/// and no hit on it may start a refresh.
#[inline]
fn read_l1<Sh: Shape<R>, R>(
    inner: &Inner,
    spec: &Spec,
    key: &str,
    record: Option<&Record>,
) -> Option<R> {
    if spec.freshness.refreshes_early() {
        return None;
    }
    with_fresh(inner, key, |entry| {
        let ret = join_value::<Sh, R>(&*entry.value)?;
        if let Some(record) = record {
            record.served(meta_of(entry, Source::L1));
        }
        Some(ret)
    })
}

/// The facts of an L1 entry, for `{fn}_entry`.
fn meta_of(entry: &Entry, source: Source) -> Meta {
    Meta {
        source,
        created_ms: u64::from(entry.created_s) * 1000,
        fresh_until_ms: entry.fresh_until_ms,
    }
}

/// The entry for `key` judged by its age, for a function with freshness
/// arguments; `None` when there is none to use.
fn read_aged<Sh: Shape<R>, R>(
    inner: &Inner,
    spec: &Spec,
    key: &str,
    record: Option<&Record>,
) -> Option<Aged<R>> {
    inner.l1.read(key, |entry| {
        let now = inner.clock.now_millis();
        if now >= entry.until_ms || !inner.generations.entry_is_current(&entry.fence) {
            return None;
        }
        let age = refresh::age(
            &spec.freshness,
            now,
            entry.fresh_until_ms,
            entry.compute_us,
            refresh::draw,
        );
        if let Some(record) = record {
            match age {
                Age::Gone => {}
                Age::Fallback => record.fallback(meta_of(entry, Source::Stale)),
                Age::Stale => {
                    record.served(meta_of(entry, Source::Stale));
                    record.fallback(meta_of(entry, Source::Stale));
                }
                Age::Fresh | Age::Early => {
                    record.served(meta_of(entry, Source::L1));
                    record.fallback(meta_of(entry, Source::Stale));
                }
            }
        }
        match age {
            Age::Gone => None,
            Age::Fallback => Some(Aged::Fallback(Arc::clone(&entry.value))),
            Age::Fresh => join_value::<Sh, R>(&*entry.value).map(|ret| Aged::Serve(ret, age)),
            Age::Early | Age::Stale => {
                let ret = join_value::<Sh, R>(&*entry.value)?;
                Some(match inner.refreshes.claim(key, now) {
                    Some(claim) => Aged::Refresh(
                        ret,
                        age,
                        claim,
                        entry.fresh_until_ms,
                        Arc::clone(&entry.value),
                    ),
                    None => Aged::Serve(ret, age),
                })
            }
        }
    })
}

/// Whether this function's entries bypass L1: `tier = "l2"` with a shared
/// tier configured.
#[inline]
fn skips_l1(inner: &Inner, spec: &Spec) -> bool {
    spec.tier == crate::spec::Tier::L2 && inner.l2.is_some()
}

/// Looks `key` up for the function of `site`; generated code calls this
/// first.
#[inline]
pub fn lookup<'c, Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
) -> Lookup<'c, R> {
    lookup_in::<Sh, R, true>(site, cache, value, key, tags, None)
}

/// [`lookup`] for `{fn}_entry`: the load path writes the facts of what it
/// serves into `record`.
pub fn lookup_entry<'c, Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
    record: &'c Record,
) -> Lookup<'c, R> {
    lookup_in::<Sh, R, true>(site, cache, value, key, tags, Some(record))
}

/// [`lookup`] that counts no L1 hit: for a caller that judges the entry
/// itself and counts only what it serves.
#[cfg(feature = "axum")]
#[inline]
pub(crate) fn lookup_uncounted<'c, Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
    record: Option<&'c Record>,
) -> Lookup<'c, R> {
    lookup_in::<Sh, R, false>(site, cache, value, key, tags, record)
}

#[inline(always)]
fn lookup_in<'c, Sh: Shape<R>, R, const COUNT: bool>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
    record: Option<&'c Record>,
) -> Lookup<'c, R> {
    let inner = &*cache.inner;
    if skips_l1(inner, &site.spec) {
        let mut rendered = String::new();
        render_key(&site.spec, &mut rendered, key);
        let mut load = Load::new(site, cache, value, rendered, tags, false);
        load.record = record;
        return Lookup::Miss(load);
    }
    // The buffer is taken, not borrowed: a KeyPart that calls a cached
    // function re-enters and finds an empty one of its own.
    let mut buf = KEY_BUF.try_with(Cell::take).unwrap_or_default();
    render_key(&site.spec, &mut buf, key);
    match read_l1::<Sh, R>(inner, &site.spec, &buf, record) {
        Some(ret) => {
            let _ = KEY_BUF.try_with(|cell| cell.set(buf));
            if COUNT {
                site.counters(cache).l1_hits.bump();
            }
            Lookup::Hit(ret)
        }
        None => lookup_cold::<Sh, R>(site, cache, value, buf, tags, record),
    }
}

/// The rest of [`lookup`]: a miss, or an entry that is stale, due for an
/// early refresh, or kept for `stale_if_error`.
#[cold]
#[inline(never)]
fn lookup_cold<'c, Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    buf: String,
    tags: &[Tag<'_>],
    record: Option<&'c Record>,
) -> Lookup<'c, R> {
    let inner = &*cache.inner;
    let spec = &site.spec;
    let aged = match spec.freshness == crate::spec::Freshness::NONE {
        true => None,
        false => read_aged::<Sh, R>(inner, spec, &buf, record),
    };
    let counters = || site.counters(cache);
    // A load run by this caller takes the buffer as its key and gives it
    // back when it ends ([`LoadKey`]); a stale hit allocates nothing but
    // the value's clone.
    let new_load = |key: String| {
        let mut load = Load::new(site, cache, value, key, tags, false);
        load.record = record;
        load
    };
    match aged {
        None => Lookup::Miss(new_load(buf)),
        Some(Aged::Serve(ret, age)) => {
            let _ = KEY_BUF.try_with(|cell| cell.set(buf));
            let counters = counters();
            counters.l1_hits.bump();
            if age == Age::Stale {
                Counters::bump(&counters.stale_served);
            }
            Lookup::Hit(ret)
        }
        Some(Aged::Refresh(ret, age, claim, fresh_until_ms, stored)) => {
            let counters = counters();
            counters.l1_hits.bump();
            Counters::bump(&counters.refreshes);
            if age == Age::Early {
                Counters::bump(&counters.early_refreshes);
            }
            // Counted as served stale where the stale value is returned:
            // by a background refresh's caller, or a caller-run refresh
            // that falls back on it. A background refresh ends on another
            // thread: it takes a copy of the key, and this thread's next
            // lookup the buffer.
            let mut load = new_load(buf.clone());
            let _ = KEY_BUF.try_with(|cell| cell.set(buf));
            load.renew = Some(Renew {
                claim,
                fresh_until_ms,
                stale: age == Age::Stale,
            });
            // A caller-run refresh that fails still answers with the stale
            // value; an early one has a fresh value to fall back on too.
            load.fallback = Some(stored);
            Lookup::Refresh(ret, load)
        }
        Some(Aged::Fallback(stored)) => {
            let mut load = new_load(buf);
            load.fallback = Some(stored);
            Lookup::Miss(load)
        }
    }
}

/// A load that skips the read and always runs the body (`{fn}_refresh`).
pub fn refresh<'c>(
    site: &'static Site,
    cache: &'c Cache,
    value: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
) -> Load<'c> {
    let mut rendered = String::new();
    render_key(&site.spec, &mut rendered, key);
    Load::new(site, cache, value, rendered, tags, true)
}

/// The `{fn}_key` companion: the entry's key as an owned string.
pub fn key_string(site: &'static Site, key: impl FnOnce(&mut KeyWriter<'_>)) -> String {
    let mut rendered = String::new();
    render_key(&site.spec, &mut rendered, key);
    rendered
}

/// The `{fn}_put` companion for async functions. Arguments are read before
/// the future is returned, so the future holds none of them.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn put_async<'c, Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &'c Cache,
    value_codec: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
    value: Sh::Value,
) -> impl Future<Output = Result<(), Error>> + Send + 'c {
    let load = refresh(site, cache, value_codec, key, tags);
    load.put(Awaiting, Known::of::<Sh, R>(value))
}

/// The `{fn}_put` companion for sync functions.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn put_blocking<Sh: Shape<R>, R>(
    site: &'static Site,
    cache: &Cache,
    value_codec: Option<ValueCodec>,
    key: impl FnOnce(&mut KeyWriter<'_>),
    tags: &[Tag<'_>],
    value: Sh::Value,
) -> Result<(), Error> {
    let load = refresh(site, cache, value_codec, key, tags);
    block_now(load.put(Blocking, Known::of::<Sh, R>(value)))
}

/// The `{fn}_invalidate` companion for async functions. The key is
/// rendered before the future is returned, so the future holds no argument.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_async<'c>(
    site: &'static Site,
    cache: &'c Cache,
    key: impl FnOnce(&mut KeyWriter<'_>),
) -> impl Future<Output = Result<(), Error>> + Send + 'c {
    let key = key_string(site, key);
    async move { cache.invalidate_key(&key).await }
}

/// The `{fn}_invalidate` companion of a `#[cache_many]` function, for
/// async functions: drops the key of every element. Keys are rendered
/// before the future is returned.
///
/// # Errors
///
/// As [`Cache::invalidate_key`], for the first key that failed.
pub fn invalidate_many_async<'c, K>(
    site: &'static Site,
    cache: &'c Cache,
    elements: impl IntoIterator<Item = K>,
    key: impl Fn(&mut KeyWriter<'_>, K),
) -> impl Future<Output = Result<(), Error>> + Send + 'c {
    let keys = elements
        .into_iter()
        .map(|element| key_string(site, |w| key(w, element)))
        .collect();
    many::invalidate_many(cache, Awaiting, keys)
}

/// The `{fn}_invalidate` companion of a `#[cache_many]` function, for sync
/// functions.
///
/// # Errors
///
/// As [`Cache::invalidate_key`], for the first key that failed.
pub fn invalidate_many_blocking<K>(
    site: &'static Site,
    cache: &Cache,
    elements: impl IntoIterator<Item = K>,
    key: impl Fn(&mut KeyWriter<'_>, K),
) -> Result<(), Error> {
    let keys = elements
        .into_iter()
        .map(|element| key_string(site, |w| key(w, element)))
        .collect();
    block_now(many::invalidate_many(cache, Blocking, keys))
}

/// The `{fn}_invalidate` companion for sync functions.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_blocking(
    site: &'static Site,
    cache: &Cache,
    key: impl FnOnce(&mut KeyWriter<'_>),
) -> Result<(), Error> {
    cache.invalidate_key_blocking(&key_string(site, key))
}

/// A value given to `{fn}_put`, type-erased.
struct Known {
    value: Arc<dyn Any + Send + Sync>,
    absent: bool,
}

impl Known {
    fn of<Sh: Shape<R>, R>(value: Sh::Value) -> Known {
        Known {
            absent: Sh::is_absent(&value),
            value: Arc::new(value),
        }
    }
}

/// What a refresh of a stored value holds.
#[derive(Debug)]
struct Renew {
    /// The right to refresh the key in this process.
    claim: Claim,
    /// The TTL end of the value being refreshed: a shared-tier entry that
    /// ends later is a newer fill, which ends the refresh.
    fresh_until_ms: u64,
    /// The value is past its TTL (not an early refresh).
    stale: bool,
}

/// An L1 entry that is not plainly fresh, judged by its age (§2a).
enum Aged<R> {
    /// Serve it.
    Serve(R, Age),
    /// Serve it, and refresh it under this claim.
    Refresh(R, Age, Claim, u64, Arc<dyn Any + Send + Sync>),
    /// Load anew; serve it only if the body fails.
    Fallback(Arc<dyn Any + Send + Sync>),
}

/// A [`Load`] without its borrow of the cache.
struct Detached {
    site: &'static Site,
    key: LoadKey,
    fence: Fence,
    refresh: bool,
    renew: Option<Renew>,
    fallback: Option<Arc<dyn Any + Send + Sync>>,
    l2: Option<Box<l2::L2Load>>,
    lifetime: Option<Lifetime>,
}

impl Detached {
    fn attach(self, cache: &Cache) -> Load<'_> {
        let Detached {
            site,
            key,
            fence,
            refresh,
            renew,
            fallback,
            l2,
            lifetime,
        } = self;
        Load {
            cache,
            site,
            key,
            fence,
            refresh,
            renew,
            fallback,
            l2,
            record: None,
            lifetime,
        }
    }
}

/// What a caller does next.
enum Plan<'a, R> {
    /// Run the body; with a guard when leading a flight.
    Run(Option<LeaderGuard<'a>>),
    /// Wait for another caller's run.
    Wait(Arc<Flight>),
    /// Another caller's run finished between the lookup and the election.
    Value(R),
}

/// What a waiter does once the leader finished.
enum AfterWait<R> {
    Value(R),
    RunOwn,
    Retry,
}

impl<'c> Load<'c> {
    fn new(
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        key: String,
        tags: &[Tag<'_>],
        refresh: bool,
    ) -> Self {
        let inner = &*cache.inner;
        let tags = render_tags(tags);
        let l2 = match (value, &inner.l2) {
            (Some(codec), Some(tier)) => Some(Box::new(l2::L2Load {
                l2: Arc::clone(tier),
                generations: Arc::clone(&inner.generations),
                clock: inner.clock.clone(),
                counters: site.counters(cache).into_arc(),
                spec: &site.spec,
                codec,
                l1_max_ttl: inner.l1_max_ttl,
                key: key.clone(),
                tags: tags.clone(),
                redis_key: String::new(),
                fence: None,
                confirmed: false,
                era: 0,
                ids: Vec::new(),
                newer_than: 0,
                wait_for_holder: true,
            })),
            _ => None,
        };
        let fence = inner.generations.fence(&key, site.spec.namespace, tags);
        Load {
            cache,
            site,
            key: LoadKey(key),
            fence,
            refresh,
            renew: None,
            fallback: None,
            l2,
            record: None,
            lifetime: None,
        }
    }

    /// This load with its values' lifetime given by `lifetime`.
    #[cfg(feature = "axum")]
    pub(crate) fn with_lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// This load with its facts written into `record`.
    #[cfg(feature = "axum")]
    pub(crate) fn with_record(mut self, record: &'c Record) -> Self {
        self.record = Some(record);
        self
    }

    /// A refresh of a stored value whose TTL ended (§2a), if this process
    /// can claim it at `now`: it joins no flight, ends when the shared tier
    /// has a fill newer than `fresh_until_ms`, and leaves the stored value
    /// in place until the new one replaces it.
    #[cfg(feature = "axum")]
    pub(crate) fn renewal(
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        key: impl FnOnce(&mut KeyWriter<'_>),
        tags: &[Tag<'_>],
        now: u64,
        fresh_until_ms: u64,
    ) -> Option<Self> {
        let mut rendered = String::new();
        render_key(&site.spec, &mut rendered, key);
        let claim = cache.inner.refreshes.claim(&rendered, now)?;
        Counters::bump(&site.counters(cache).refreshes);
        let mut load = Load::new(site, cache, value, rendered, tags, false);
        load.renew = Some(Renew {
            claim,
            fresh_until_ms,
            stale: true,
        });
        Some(load)
    }

    /// This load without its borrow of the cache, for a refresh that runs
    /// elsewhere.
    fn detach(self) -> (Cache, Detached) {
        let Load {
            cache,
            site,
            key,
            fence,
            refresh,
            renew,
            fallback,
            l2,
            record: _,
            lifetime,
        } = self;
        let detached = Detached {
            site,
            key,
            fence,
            refresh,
            renew,
            fallback,
            l2,
            lifetime,
        };
        (cache.clone(), detached)
    }

    /// This refresh, detached, for a task or thread of its own: its caller
    /// returns the stored value (counted as served stale when it is), so
    /// the refresh has none to fall back on.
    fn into_background(mut self) -> (Cache, Detached) {
        if self.renew.as_ref().is_some_and(|renew| renew.stale) {
            Counters::bump(&self.site.counters(self.cache).stale_served);
        }
        self.fallback = None;
        self.record = None;
        self.detach()
    }

    /// Runs this refresh of an async function on a task of the caller's
    /// tokio runtime; generated code calls it for `refresh = "background"`.
    /// Outside a tokio runtime the refresh is left for a later call.
    pub fn spawn_async<Sh, R, F>(self, body: F)
    where
        Sh: Shape<R> + 'static,
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, detached) = self.into_background();
        runtime.spawn(async move {
            let load = detached.attach(&cache);
            load.drive::<Sh, R, _>(Awaiting, body, None).await;
        });
    }

    /// Runs this refresh of a sync function on the cache's refresh thread;
    /// generated code calls it for `refresh = "background"`.
    pub fn spawn_blocking<Sh, R, F>(self, body: F)
    where
        Sh: Shape<R> + 'static,
        R: 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (cache, detached) = self.into_background();
        let worker = Arc::clone(&cache.inner);
        worker.worker.run(Box::new(move || {
            let load = detached.attach(&cache);
            block_now(load.drive::<Sh, R, _>(Blocking, async move { body() }, None));
        }));
    }

    /// Stores a known value (`{fn}_put`) in L1; the shared tier is written
    /// by the caller.
    fn put_local(&mut self, value: Known) -> Option<Fill> {
        let Known { value, absent } = value;
        self.store(Arc::clone(&value), absent, Duration::ZERO)
            .map(|ttl| Fill {
                value,
                absent,
                ttl,
                compute: Duration::ZERO,
            })
    }

    /// Counts this call as a miss, once.
    fn count_miss(&self, counted: &mut bool) {
        if !self.refresh && self.renew.is_none() && !*counted {
            *counted = true;
            Counters::bump(&self.site.counters(self.cache).misses);
        }
    }

    /// Whether callers of this key in this process share one load (`lock`).
    fn joins_flights(&self) -> bool {
        self.site.spec.lock && !self.refresh && self.renew.is_none()
    }

    /// An entry found in the shared tier: fills L1 and, when leading a
    /// flight, hands the value to this process's waiters.
    fn found<Sh: Shape<R>, R>(
        &self,
        found: l2::Found,
        guard: Option<LeaderGuard<'_>>,
        source: Source,
    ) -> Option<R> {
        let ret = join_value::<Sh, R>(&*found.value)?;
        if let Some(record) = self.record {
            record.served(found.meta(source));
        }
        self.keep(found.entry);
        if let Some(guard) = guard {
            guard.finish(Outcome::Done(found.value));
        }
        Some(ret)
    }

    /// Fills L1 with an entry read from the shared tier, unless an
    /// invalidation came after it.
    fn keep(&self, entry: Option<Entry>) {
        let entry = entry.filter(|_| !skips_l1(&self.cache.inner, &self.site.spec));
        // An invalidation this process made or heard of after the entry's
        // generations (say while the read was in flight) leaves L1 alone:
        // the value is this caller's only (G7).
        let entry = entry.filter(|e| self.cache.inner.generations.matches(&e.fence));
        if let Some(entry) = entry.filter(|_| !self.missed_messages()) {
            self.cache.inner.fill_l1(&self.key, entry);
            // The channel's flush may have come between the check and the
            // insert.
            if self.missed_messages() {
                self.cache.inner.l1.remove(&self.key);
            }
        }
    }

    /// Learns the generations the key depends on and reads the shared tier,
    /// in one wait (for a sync caller inside a runtime, one trip to the
    /// cache's runtime rather than two).
    async fn read_l2<W: Wait>(&mut self, wait: W) -> Option<l2::Found> {
        let tier = self.l2.take()?;
        let l2 = Arc::clone(&tier.l2);
        if l2.breaker.refusing() {
            // The tier is down: this load goes on without it, as if every
            // step had failed, without paying for the steps (P4).
            return None;
        }
        let refresh = self.refresh;
        let steps = async move {
            let prepared = tier.prepare().await.ok()?;
            let found = match refresh {
                true => None,
                false => prepared.read().await,
            };
            Some((prepared, found))
        };
        let (prepared, found) = match wait.l2(&l2, l2.budget(5), steps).await.flatten() {
            Some((prepared, found)) => (Some(prepared), found),
            None => (None, None),
        };
        self.adopt(prepared);
        found
    }

    /// Serves a value found in the shared tier, handing it to this
    /// process's waiters when leading their flight. Gives the guard back
    /// when the body is to run: the value is of another type (another
    /// function's entry), past its TTL, or not newer than the one this
    /// refresh replaces. A stale value is served unless this caller can
    /// claim its refresh, which it then runs itself, with the stale value
    /// in L1 for everyone else and as its own fallback.
    fn serve_l2<'g, Sh: Shape<R>, R>(
        &mut self,
        found: Option<l2::Found>,
        guard: Option<LeaderGuard<'g>>,
    ) -> Result<R, Option<LeaderGuard<'g>>> {
        let Some(found) = found.filter(|found| found.value.is::<Sh::Value>()) else {
            return Err(guard);
        };
        let now = self.cache.inner.clock.now_millis();
        let freshness = &self.site.spec.freshness;
        // Early refreshes start from L1 hits only.
        let age = refresh::age(freshness, now, found.fresh_until_ms, 0, || 1.0);
        if let Some(renew) = &self.renew {
            if found.fresh_until_ms <= renew.fresh_until_ms
                || !matches!(age, Age::Fresh | Age::Early)
            {
                return Err(guard);
            }
        }
        let counters = self.site.counters(self.cache);
        match age {
            Age::Fresh | Age::Early => {
                Counters::bump(&counters.l2_hits);
                self.found::<Sh, R>(found, guard, Source::L2).ok_or(None)
            }
            // A background refresh is started by the next L1 hit on the
            // entry kept here, so this caller need not run it; a function
            // that skips L1 has no such hit, and refreshes in the caller.
            Age::Stale
                if freshness.in_background
                    && self.renew.is_none()
                    && !skips_l1(&self.cache.inner, &self.site.spec) =>
            {
                Counters::bump(&counters.l2_hits);
                Counters::bump(&counters.stale_served);
                self.found::<Sh, R>(found, guard, Source::Stale).ok_or(None)
            }
            Age::Stale => match self.cache.inner.refreshes.claim(&self.key, now) {
                None => {
                    Counters::bump(&counters.l2_hits);
                    Counters::bump(&counters.stale_served);
                    self.found::<Sh, R>(found, guard, Source::Stale).ok_or(None)
                }
                Some(claim) => {
                    Counters::bump(&counters.refreshes);
                    self.renew = Some(Renew {
                        claim,
                        fresh_until_ms: found.fresh_until_ms,
                        stale: true,
                    });
                    self.fallback = Some(Arc::clone(&found.value));
                    if let Some(record) = self.record {
                        record.fallback(found.meta(Source::Stale));
                    }
                    self.keep(found.entry);
                    Err(guard)
                }
            },
            Age::Fallback => {
                if let Some(record) = self.record {
                    record.fallback(found.meta(Source::Stale));
                }
                self.fallback = Some(found.value);
                Err(guard)
            }
            Age::Gone => Err(guard),
        }
    }

    /// The stored value this call answers with because its body failed.
    fn fall_back<Sh: Shape<R>, R>(&self) -> Option<R> {
        let ret = join_value::<Sh, R>(&**self.fallback.as_ref()?)?;
        if let Some(record) = self.record {
            record.served_fallback();
        }
        Counters::bump(&self.site.counters(self.cache).errors_served_stale);
        crate::trace::served_stale_on_error(self.site.name(), &self.key);
        Some(ret)
    }

    /// Takes a prepared shared load's fence, learned from the shared tier,
    /// as this load's own.
    fn adopt(&mut self, prepared: Option<Box<l2::L2Load>>) {
        if let Some(fence) = prepared.as_ref().and_then(|p| p.fence.clone()) {
            self.fence = fence;
        }
        self.l2 = prepared;
    }

    /// What the cross-process lock said, for a caller leading this
    /// process's flight: the value another process stored (handed to this
    /// process's waiters too), or the guard back with the lock to release
    /// after running the body (none when the tier did not answer).
    #[allow(clippy::type_complexity, reason = "a guard and an optional lock")]
    fn after_lead<'g, Sh: Shape<R>, R>(
        &self,
        led: Option<l2::Led>,
        guard: Option<LeaderGuard<'g>>,
    ) -> Result<R, (Option<LeaderGuard<'g>>, Option<crate::l2::Held>)> {
        match led {
            Some(l2::Led::Found(found)) => {
                Counters::bump(&self.site.counters(self.cache).lock_waits);
                self.found::<Sh, R>(found, guard, Source::L2)
                    .ok_or((None, None))
            }
            Some(l2::Led::Locked(held)) => Err((guard, Some(held))),
            // Another process is refreshing: this caller keeps the value it
            // has rather than wait for that refresh.
            Some(l2::Led::Busy) => match self.fallback.as_deref().and_then(join_value::<Sh, R>) {
                Some(ret) => {
                    if let Some(record) = self.record {
                        record.served_fallback();
                    }
                    if self.renew.as_ref().is_some_and(|renew| renew.stale) {
                        Counters::bump(&self.site.counters(self.cache).stale_served);
                    }
                    Ok(ret)
                }
                None => Err((guard, None)),
            },
            Some(l2::Led::Unlocked) | None => Err((guard, None)),
        }
    }

    /// Whether this load takes the cross-process lock.
    fn locks_across_processes(&self) -> Option<l2::L2Load> {
        let mut tier = self
            .l2
            .as_deref()
            .filter(|_| self.site.spec.lock && !self.refresh)
            .cloned()?;
        // A refresh waits for a fill newer than the value it replaces; one
        // that a caller runs does not wait at all when another process
        // holds the lock, since the caller has a value to return.
        tier.newer_than = self.renew.as_ref().map_or(0, |r| r.fresh_until_ms);
        tier.wait_for_holder = self.renew.is_none() || self.fallback.is_none();
        Some(tier)
    }

    /// Runs the body of an async function for this miss (or waits for
    /// another caller's run with `lock`) and stores the result.
    ///
    /// # Concurrency
    ///
    /// With `lock`, one caller per key runs `body`; the others wait without
    /// blocking their thread and get its value. If it fails they run their
    /// own `body`; if it panics or is dropped, one of them takes over.
    pub async fn run_async<Sh: Shape<R>, R, F: Future<Output = R>>(
        self,
        body: F,
        sharing: Option<Sharing<R>>,
    ) -> R {
        // Boxed, so that the caller's future holds a pointer on its hit
        // path, not the whole load (a miss allocates anyway).
        Box::pin(self.drive::<Sh, R, _>(Awaiting, body, sharing)).await
    }

    /// [`run_async`](Self::run_async) for sync functions: waiters block
    /// their thread. Shared-tier steps run through [`L2::block_on`] (on
    /// the thread's own small runtime outside tokio, on the cache's runtime
    /// inside), each bounded by `l2_timeout`, so this is safe inside or
    /// outside a tokio runtime.
    ///
    /// [`L2::block_on`]: crate::l2::L2::block_on
    #[inline(never)]
    pub fn run_blocking<Sh: Shape<R>, R, F: FnOnce() -> R>(
        self,
        body: F,
        sharing: Option<Sharing<R>>,
    ) -> R {
        if self.runs_alone() {
            return self.run_alone::<Sh, R, F>(body);
        }
        block_now(self.drive::<Sh, R, _>(Blocking, async move { body() }, sharing))
    }

    /// Whether this load has nothing to wait for: no shared tier, no
    /// flight to join or lead, no write-through to announce. Such a load
    /// is [`drive`](Self::drive)'s steps 5, 6 and 8, which a sync caller
    /// runs without a future.
    fn runs_alone(&self) -> bool {
        self.l2.is_none() && !self.refresh && !self.joins_flights()
    }

    /// A sync load that [`runs_alone`](Self::runs_alone): the body, the L1
    /// fill, and the stored value if the body failed and one may stand in.
    fn run_alone<Sh: Shape<R>, R, F: FnOnce() -> R>(mut self, body: F) -> R {
        self.count_miss(&mut false);
        let started = self.stopwatch();
        #[cfg(feature = "tracing")]
        let ret = crate::trace::load_blocking(
            self.site.name(),
            &self.key,
            self.site.spec.tier,
            body,
            Sh::is_error,
        );
        #[cfg(not(feature = "tracing"))]
        let ret = body();
        let compute = self.took(started);
        let (_, failed) = self.finish::<Sh, R>(None, &ret, compute, None);
        if failed {
            if let Some(stored) = self.fall_back::<Sh, R>() {
                return stored;
            }
        }
        ret
    }

    /// A stopwatch for the body when its time is used: by the shared
    /// tier's envelope, `early`, or the `metrics` histogram.
    fn stopwatch(&self) -> Option<crate::clock::Stopwatch> {
        let timed =
            self.l2.is_some() || self.site.spec.freshness.early > 0.0 || cfg!(feature = "metrics");
        timed.then(|| self.cache.inner.clock.stopwatch())
    }

    /// How long the body took since `started` (zero when not timed),
    /// counted for the function.
    fn took(&self, started: Option<crate::clock::Stopwatch>) -> Duration {
        let clock = &self.cache.inner.clock;
        let compute = started.map_or(Duration::ZERO, |watch| clock.elapsed(&watch));
        self.site.counters(self.cache).body_took(compute);
        compute
    }

    /// One call's load, in order: the shared tier, the election of this
    /// process's leader, the cross-process lock, the body, the L1 fill that
    /// wakes this process's waiters, and the shared-tier fill that wakes
    /// other processes'. `wait` says how the caller waits.
    async fn drive<Sh: Shape<R>, R, W: Wait>(
        mut self,
        wait: W,
        body: impl Future<Output = R>,
        sharing: Option<Sharing<R>>,
    ) -> R {
        // 0. A refresh is a write-through: the old entry goes first.
        if self.refresh {
            // A failure was counted; the refresh goes on like any load.
            let _ = self.begin_write_through(wait).await;
        }
        // 1. Without `lock`, every caller reads the shared tier.
        if !self.joins_flights() {
            let found = self.read_l2(wait).await;
            if let Ok(ret) = self.serve_l2::<Sh, R>(found, None) {
                return ret;
            }
        }
        // 2. With `lock`, one caller per key leads; the others wait for it.
        let mut counted = false;
        // Whether this call waited for a leader, and retried after one failed.
        let (mut waited, mut retried) = (false, false);
        let (guard, leads) = loop {
            match self.plan::<Sh, R>() {
                Plan::Value(ret) => return ret,
                Plan::Run(guard) => break (guard, true),
                Plan::Wait(flight) => {
                    self.count_miss(&mut counted);
                    if !waited {
                        waited = true;
                        Counters::bump(&self.site.counters(self.cache).lock_waits);
                    }
                    let outcome = wait.flight(&flight).await;
                    match self.after_wait::<Sh, R>(outcome, &mut retried, sharing) {
                        AfterWait::Value(ret) => return ret,
                        // The retry failed too, and its result cannot be
                        // shared: run this caller's own body.
                        AfterWait::RunOwn => break (None, false),
                        AfterWait::Retry => continue,
                    }
                }
            }
        };
        // 3. With `lock`, only the leader reads the shared tier.
        let guard = match leads && self.joins_flights() {
            true => {
                let found = self.read_l2(wait).await;
                match self.serve_l2::<Sh, R>(found, guard) {
                    Ok(ret) => return ret,
                    Err(guard) => guard,
                }
            }
            false => guard,
        };
        self.count_miss(&mut counted);
        // 4. With `lock`, the leader takes the cross-process lock, or gets
        //    what the process holding it stored.
        let (guard, lock) = match self.locks_across_processes().filter(|_| leads) {
            Some(tier) => {
                let l2 = Arc::clone(&tier.l2);
                let budget = l2.lock_timeout + l2.budget(3);
                let led = wait.l2(&l2, budget, tier.lead()).await;
                match self.after_lead::<Sh, R>(led, guard) {
                    Ok(ret) => return ret,
                    Err(next) => next,
                }
            }
            None => (guard, None),
        };
        // 5. The body, timed for the shared tier's envelope and `early`.
        let started = self.stopwatch();
        // Without `tracing`, the body as it is: no extra future on the miss path.
        #[cfg(feature = "tracing")]
        let ret = crate::trace::load(
            self.site.name(),
            &self.key,
            self.site.spec.tier,
            body,
            Sh::is_error,
        )
        .await;
        #[cfg(not(feature = "tracing"))]
        let ret = body.await;
        let compute = self.took(started);
        // 6. L1, and this process's waiters.
        let (fill, failed) = self.finish::<Sh, R>(guard, &ret, compute, sharing);
        // 7. The shared tier, the lock, and other processes' waiters.
        if let Some(tier) = self.l2.as_deref().cloned() {
            let l2 = Arc::clone(&tier.l2);
            wait.l2(&l2, l2.budget(3), tier.write(fill, lock)).await;
        }
        // 8. A failed body answers with the stored value when it may.
        if failed {
            if let Some(stored) = self.fall_back::<Sh, R>() {
                return stored;
            }
        }
        ret
    }

    /// Begins a write-through (`{fn}_put`, `{fn}_refresh`): invalidates the
    /// key here and in other processes, so that their L1 copies go and no
    /// load begun before it can store an older value over this one, then
    /// takes the new generations as this load's fence.
    async fn begin_write_through<W: Wait>(&mut self, wait: W) -> Result<(), Error> {
        let invalidated = self.cache.invalidate_key_with(wait, &self.key).await;
        let tags = self.fence.tags().map(|(tag, _)| tag.to_owned()).collect();
        self.fence = self
            .cache
            .inner
            .generations
            .fence(&self.key, self.site.spec.namespace, tags);
        invalidated
    }

    /// Stores a known value (`{fn}_put`) in L1, then in the shared tier.
    async fn put<W: Wait>(mut self, wait: W, value: Known) -> Result<(), Error> {
        let announced = self.begin_write_through(wait).await;
        let Some(tier) = self.l2.take() else {
            self.put_local(value);
            return announced;
        };
        let l2 = Arc::clone(&tier.l2);
        let prepared = wait
            .l2(&l2, l2.budget(4), tier.prepare())
            .await
            .unwrap_or(Err(L2Error::Timeout));
        match prepared {
            Ok(prepared) => {
                self.adopt(Some(prepared));
                let fill = self.put_local(value);
                let written = match self.l2 {
                    Some(tier) => wait
                        .l2(&l2, l2.budget(2), (*tier).write_checked(fill))
                        .await
                        .unwrap_or(Err(Error::L2Timeout)),
                    None => Ok(()),
                };
                announced.and(written)
            }
            Err(e) => {
                // L1 takes the value whatever the shared tier said.
                self.put_local(value);
                Err(e.into())
            }
        }
    }

    fn plan<Sh: Shape<R>, R>(&self) -> Plan<'c, R> {
        if !self.joins_flights() {
            return Plan::Run(None);
        }
        let inner: &'c Inner = &self.cache.inner;
        match inner
            .flights
            .join_or_lead(&self.key, &self.fence, &inner.generations)
        {
            Role::Leader(guard) => {
                // A leader that finished after our lookup missed has already
                // stored its value and left: serve that instead of a second
                // run.
                let stored = with_fresh(inner, &self.key, |entry| {
                    let ret = join_value::<Sh, R>(&*entry.value)?;
                    if let Some(record) = self.record {
                        record.served(meta_of(entry, Source::L1));
                    }
                    Some((ret, Arc::clone(&entry.value)))
                });
                if let Some((ret, value)) = stored {
                    guard.finish(Outcome::Done(value));
                    return Plan::Value(ret);
                }
                Plan::Run(Some(guard))
            }
            Role::Waiter(flight) => Plan::Wait(flight),
        }
    }

    /// What a waiter does with its leader's outcome. After a failure the
    /// waiters elect one of them to try again, once; if that fails too, the
    /// others get its result when it can be shared, and run their own body
    /// when it cannot.
    fn after_wait<Sh: Shape<R>, R>(
        &self,
        outcome: Outcome,
        retried: &mut bool,
        sharing: Option<Sharing<R>>,
    ) -> AfterWait<R> {
        match outcome {
            Outcome::Done(value) => match value.downcast_ref::<Sh::Value>() {
                Some(v) => {
                    if let Some(record) = self.record {
                        record.served(self.leader_meta(&value));
                    }
                    AfterWait::Value(Sh::join(v.clone()))
                }
                None => AfterWait::RunOwn,
            },
            // A stored value stands in for the leader's error.
            Outcome::Failed(_) if self.fallback.is_some() => match self.fall_back::<Sh, R>() {
                Some(ret) => AfterWait::Value(ret),
                None => AfterWait::RunOwn,
            },
            Outcome::Failed(_) if !*retried => {
                *retried = true;
                AfterWait::Retry
            }
            Outcome::Failed(failed) => {
                let shared = failed.zip(sharing).and_then(|(r, s)| (s.take)(&*r));
                match shared {
                    Some(ret) => {
                        if let Some(record) = self.record {
                            record.ran(self.cache.inner.clock.now_millis(), None);
                        }
                        AfterWait::Value(ret)
                    }
                    None => AfterWait::RunOwn,
                }
            }
            Outcome::Abandoned | Outcome::Absent | Outcome::Running => {
                match with_fresh(&self.cache.inner, &self.key, |e| {
                    let ret = join_value::<Sh, R>(&*e.value)?;
                    if let Some(record) = self.record {
                        record.served(meta_of(e, Source::L1));
                    }
                    Some(ret)
                }) {
                    Some(ret) => AfterWait::Value(ret),
                    None => AfterWait::Retry,
                }
            }
        }
    }

    /// The facts of the value a leader in this process handed over: those
    /// of its L1 entry, or, where it keeps none, of a fill just now.
    fn leader_meta(&self, value: &Arc<dyn Any + Send + Sync>) -> Meta {
        let inner = &*self.cache.inner;
        inner
            .l1
            .read(&self.key, |entry| {
                Arc::ptr_eq(&entry.value, value).then(|| meta_of(entry, Source::L1))
            })
            .unwrap_or_else(|| {
                let now = inner.clock.now_millis();
                Meta {
                    source: Source::L1,
                    created_ms: now,
                    fresh_until_ms: now.saturating_add(self.site.spec.ttl.as_millis() as u64),
                }
            })
    }

    /// Counts the run, stores a cacheable result in L1 and wakes any
    /// waiters; returns what the shared tier should store, and whether the
    /// body failed.
    fn finish<Sh: Shape<R>, R>(
        &mut self,
        guard: Option<LeaderGuard<'_>>,
        ret: &R,
        compute: Duration,
        sharing: Option<Sharing<R>>,
    ) -> (Option<Fill>, bool) {
        let counters = self.site.counters(self.cache);
        Counters::bump(&counters.body_runs);
        // The outcome is for waiters: none when there is no guard.
        let (outcome, fill, failed) = match Sh::value_of(ret) {
            Some(value) => {
                let absent = Sh::is_absent(&value);
                let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
                // L1 takes the value as it is when nothing else needs it:
                // no waiters to hand it to, no shared tier to write.
                let after = (guard.is_some() || self.l2.is_some()).then(|| Arc::clone(&value));
                let stored = self.store(value, absent, compute);
                if let Some(record) = self.record {
                    record.ran(self.cache.inner.clock.now_millis(), stored);
                }
                let fill = match (&after, stored) {
                    (Some(value), Some(ttl)) if self.l2.is_some() => Some(Fill {
                        value: Arc::clone(value),
                        absent,
                        ttl,
                        compute,
                    }),
                    _ => None,
                };
                (after.map(Outcome::Done), fill, false)
            }
            None => {
                // Not stored: an error, or (for the HTTP layer) a response
                // that is passed on as it is, which is no error.
                let error = Sh::is_error(ret);
                if error {
                    Counters::bump(&counters.errors);
                }
                if let Some(record) = self.record {
                    record.ran(self.cache.inner.clock.now_millis(), None);
                }
                if let (Some(renew), true) = (&mut self.renew, error) {
                    // The old entry stays; the key waits before the next try.
                    Counters::bump(&counters.refresh_errors);
                    renew.claim.failed(self.cache.inner.clock.now_millis());
                }
                // Shared only with waiters, and only when there are some.
                let shared = guard.as_ref().and(sharing).map(|s| (s.share)(ret));
                (Some(Outcome::Failed(shared)), None, true)
            }
        };
        if let (Some(guard), Some(outcome)) = (guard, outcome) {
            guard.finish(outcome);
        }
        (fill, failed)
    }

    /// Whether the invalidation channel connected or dropped since this
    /// load began (so it may have missed an invalidation message).
    fn missed_messages(&self) -> bool {
        self.l2.as_deref().is_some_and(l2::L2Load::missed_messages)
    }

    /// Writes the value into L1 unless an invalidation already covers it,
    /// and returns its time to live (for the shared tier); `None` when the
    /// value is not to be cached.
    fn store(
        &mut self,
        value: Arc<dyn Any + Send + Sync>,
        absent: bool,
        compute: Duration,
    ) -> Option<Duration> {
        let spec = &self.site.spec;
        let inner = &*self.cache.inner;
        let ttl = match self.lifetime {
            _ if absent => spec.negative_ttl?,
            Some(lifetime) => lifetime(&*value)?,
            None => jittered(spec.ttl, spec.jitter),
        };
        // The entry would never be served; skipping the write keeps it from
        // replacing a newer one filled after the invalidation.
        if !inner.generations.is_current(&self.fence) || self.missed_messages() {
            return None;
        }
        if skips_l1(inner, spec) {
            return Some(ttl);
        }
        // L1 keeps the entry through its stale window, unless capped.
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
            fence: self.fence.clone(),
        };
        inner.fill_l1(&self.key, entry);
        if self.l2.is_none() {
            return Some(ttl);
        }
        // The channel's flush may have come between the check and the insert.
        if self.missed_messages() {
            inner.l1.remove(&self.key);
            return None;
        }
        Some(ttl)
    }
}

/// A TTL drawn uniformly from `[ttl * (1 - jitter), ttl * (1 + jitter))`.
fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    let factor = 1.0 + jitter * (2.0 * fastrand::f64() - 1.0);
    Duration::from_secs_f64(ttl.as_secs_f64() * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_ttls_stay_inside_the_window_and_spread_over_it() {
        let ttl = Duration::from_secs(100);
        let draws: Vec<f64> = (0..10_000)
            .map(|_| jittered(ttl, 0.1).as_secs_f64())
            .collect();
        assert!(draws.iter().all(|&d| (90.0..=110.0).contains(&d)));
        let below = draws.iter().filter(|&&d| d < 95.0).count();
        let above = draws.iter().filter(|&&d| d > 105.0).count();
        // Each quarter of the window holds about 2500 draws.
        assert!(below > 2000 && above > 2000, "{below} {above}");
        assert_eq!(jittered(ttl, 0.0), ttl);
    }
}
