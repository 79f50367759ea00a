//! The read and fill path that generated code calls: look up, and on a miss
//! run the body (once per key with `lock`) and store what it returned.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Inner};
use crate::error::Error;
use crate::flight::{Flight, LeaderGuard, Outcome, Role};
use crate::invalidate::Fence;
use crate::key::{Escape, KeyPart, KeyWriter};
use crate::l1::Entry;
use crate::shape::Shape;
use crate::spec::{Site, Spec};
use crate::stats::Counters;
use crate::value::ValueCodec;

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
}

/// A pending fill of one key, carrying the generations seen before the body.
#[derive(Debug)]
pub struct Load<'c> {
    cache: &'c Cache,
    site: &'static Site,
    key: String,
    fence: Fence,
    /// A refresh neither reads nor joins a flight: it always runs the body.
    refresh: bool,
    /// How values cross into the shared tier; `None` keeps them in L1.
    #[allow(dead_code, reason = "read by the shared tier")]
    value: Option<ValueCodec>,
}

thread_local! {
    /// Keys are rendered here on the read path, so a hit allocates nothing.
    static KEY_BUF: RefCell<String> = const { RefCell::new(String::new()) };
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

fn render_tags(tags: &[Tag<'_>]) -> Vec<String> {
    tags.iter()
        .map(|tag| {
            let mut out = String::new();
            (tag.render)(&mut KeyWriter::new(&mut out, tag.escape));
            out
        })
        .collect()
}

/// The entry for `key` if it is fresh and no invalidation covers it.
#[inline]
fn fresh_entry(inner: &Inner, key: &str) -> Option<Arc<Entry>> {
    let entry = inner.l1.get(key)?;
    if inner.clock.now_millis() >= entry.fresh_until_ms
        || !inner
            .generations
            .entry_is_current(&entry.fence, &entry.checked_epoch)
    {
        return None;
    }
    Some(entry)
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

/// The stored value for `key` if it is fresh and no invalidation covers it.
#[inline]
fn read_l1<Sh: Shape<R>, R>(inner: &Inner, key: &str) -> Option<R> {
    join_value::<Sh, R>(&*fresh_entry(inner, key)?.value)
}

/// Renders the key into `buf` and reads it; on a miss, the key as an owned
/// string.
#[inline]
fn probe<Sh: Shape<R>, R>(
    inner: &Inner,
    spec: &Spec,
    buf: &mut String,
    key: impl FnOnce(&mut KeyWriter<'_>),
) -> Result<R, String> {
    render_key(spec, buf, key);
    read_l1::<Sh, R>(inner, buf).ok_or_else(|| buf.clone())
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
    let counters = site.counters(cache);
    let inner = &*cache.inner;
    // A KeyPart that calls a cached function re-enters; it gets a buffer of
    // its own.
    let found = KEY_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => probe::<Sh, R>(inner, &site.spec, &mut buf, key),
        Err(_) => probe::<Sh, R>(inner, &site.spec, &mut String::new(), key),
    });
    match found {
        Ok(ret) => {
            Counters::bump(&counters.l1_hits);
            Lookup::Hit(ret)
        }
        Err(key) => {
            Counters::bump(&counters.misses);
            Lookup::Miss(Load::new(site, cache, value, key, tags, false))
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
    async move { load.put::<Sh, R>(value) }
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
    refresh(site, cache, value_codec, key, tags).put::<Sh, R>(value)
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
        let fence = cache
            .inner
            .generations
            .fence(&key, site.spec.namespace, render_tags(tags));
        Load {
            cache,
            site,
            key,
            fence,
            refresh,
            value,
        }
    }

    /// Stores a known value (`{fn}_put`).
    fn put<Sh: Shape<R>, R>(&self, value: Sh::Value) -> Result<(), Error> {
        let absent = Sh::is_absent(&value);
        self.store(Arc::new(value), absent);
        Ok(())
    }

    /// Runs the body of an async function for this miss (or waits for
    /// another caller's run with `lock`) and stores the result.
    ///
    /// # Concurrency
    ///
    /// With `lock`, one caller per key runs `body`; the others wait without
    /// blocking their thread and get its value. If it fails they run their
    /// own `body`; if it panics or is dropped, one of them takes over.
    pub async fn run_async<Sh: Shape<R>, R, F: Future<Output = R>>(self, body: F) -> R {
        loop {
            match self.plan::<Sh, R>() {
                Plan::Value(ret) => return ret,
                Plan::Run(guard) => {
                    let ret = body.await;
                    self.finish::<Sh, R>(guard, &ret);
                    return ret;
                }
                Plan::Wait(flight) => match self.after_wait::<Sh, R>(flight.wait().await) {
                    AfterWait::Value(ret) => return ret,
                    AfterWait::RunOwn => {
                        let ret = body.await;
                        self.finish::<Sh, R>(None, &ret);
                        return ret;
                    }
                    AfterWait::Retry => continue,
                },
            }
        }
    }

    /// [`run_async`](Self::run_async) for sync functions: waiters block
    /// their thread.
    pub fn run_blocking<Sh: Shape<R>, R, F: FnOnce() -> R>(self, body: F) -> R {
        loop {
            match self.plan::<Sh, R>() {
                Plan::Value(ret) => return ret,
                Plan::Run(guard) => {
                    let ret = body();
                    self.finish::<Sh, R>(guard, &ret);
                    return ret;
                }
                Plan::Wait(flight) => match self.after_wait::<Sh, R>(flight.wait_blocking()) {
                    AfterWait::Value(ret) => return ret,
                    AfterWait::RunOwn => {
                        let ret = body();
                        self.finish::<Sh, R>(None, &ret);
                        return ret;
                    }
                    AfterWait::Retry => continue,
                },
            }
        }
    }

    fn plan<Sh: Shape<R>, R>(&self) -> Plan<'_, R> {
        if !self.site.spec.lock || self.refresh {
            return Plan::Run(None);
        }
        let inner = &*self.cache.inner;
        match inner
            .flights
            .join_or_lead(&self.key, &self.fence, &inner.generations)
        {
            Role::Leader(guard) => {
                // A leader that finished after our lookup missed has already
                // stored its value and left: serve that instead of a second
                // run.
                if let Some(entry) = fresh_entry(inner, &self.key) {
                    if let Some(ret) = join_value::<Sh, R>(&*entry.value) {
                        guard.finish(Outcome::Done(Arc::clone(&entry.value)));
                        return Plan::Value(ret);
                    }
                }
                Plan::Run(Some(guard))
            }
            Role::Waiter(flight) => {
                Counters::bump(&self.site.counters(self.cache).lock_waits);
                Plan::Wait(flight)
            }
        }
    }

    fn after_wait<Sh: Shape<R>, R>(&self, outcome: Outcome) -> AfterWait<R> {
        match outcome {
            Outcome::Done(value) => match value.downcast_ref::<Sh::Value>() {
                Some(v) => AfterWait::Value(Sh::join(v.clone())),
                None => AfterWait::RunOwn,
            },
            Outcome::Failed => AfterWait::RunOwn,
            Outcome::Abandoned | Outcome::Running => {
                match read_l1::<Sh, R>(&self.cache.inner, &self.key) {
                    Some(ret) => AfterWait::Value(ret),
                    None => AfterWait::Retry,
                }
            }
        }
    }

    /// Counts the run, stores a cacheable result and wakes any waiters.
    fn finish<Sh: Shape<R>, R>(&self, guard: Option<LeaderGuard<'_>>, ret: &R) {
        let counters = self.site.counters(self.cache);
        Counters::bump(&counters.body_runs);
        let outcome = match Sh::value_of(ret) {
            Some(value) => {
                let absent = Sh::is_absent(&value);
                let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
                self.store(Arc::clone(&value), absent);
                Outcome::Done(value)
            }
            None => {
                Counters::bump(&counters.errors);
                Outcome::Failed
            }
        };
        if let Some(guard) = guard {
            guard.finish(outcome);
        }
    }

    /// Writes the value into L1 unless an invalidation already covers it.
    fn store(&self, value: Arc<dyn Any + Send + Sync>, absent: bool) {
        let spec = &self.site.spec;
        let inner = &*self.cache.inner;
        let ttl = if absent {
            match spec.negative_ttl {
                Some(ttl) => ttl,
                None => return,
            }
        } else {
            jittered(spec.ttl, spec.jitter)
        };
        // The entry would never be served; skipping the write keeps it from
        // replacing a newer one filled after the invalidation.
        if !inner.generations.is_current(&self.fence) {
            return;
        }
        let l1_lifetime = [spec.l1_ttl, inner.l1_max_ttl]
            .into_iter()
            .flatten()
            .fold(ttl, Duration::min);
        let now = inner.clock.now_millis();
        let entry = Entry {
            value,
            created_ms: now,
            fresh_until_ms: now.saturating_add(l1_lifetime.as_millis() as u64),
            absent,
            fence: self.fence.clone(),
            checked_epoch: AtomicU64::new(self.fence.epoch),
        };
        inner.l1.insert(&self.key, Arc::new(entry));
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
