//! Per-function counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// A counter that threads bump on lines of their own, summed when read: the
/// L1 hit counter, which every hit on every thread moves.
#[derive(Default)]
pub(crate) struct Striped {
    stripes: Box<[Stripe; STRIPES]>,
    metric: Metric,
}

/// Stripes per counter: threads beyond it share lines, which costs speed,
/// never counts.
const STRIPES: usize = 16;

/// One counter on a cache line of its own (128 bytes: adjacent lines are
/// fetched in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Striped").field(&self.get()).finish()
    }
}

impl Striped {
    fn with(metric: Metric) -> Self {
        Striped {
            stripes: Box::default(),
            metric,
        }
    }

    #[inline]
    pub(crate) fn bump(&self) {
        self.stripes[this_threads_stripe()].0.fetch_add(1, Relaxed);
        self.metric.increment();
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// The stripe of the calling thread: threads take stripes in turn as they
/// first bump a counter.
#[inline]
fn this_threads_stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE
        .try_with(|stripe| {
            let mut index = stripe.get();
            if index == usize::MAX {
                index = NEXT.fetch_add(1, Relaxed) % STRIPES;
                stripe.set(index);
            }
            index
        })
        // A thread-local being torn down: any stripe counts.
        .unwrap_or(0)
}

/// The `metrics` counter a stats counter also moves (feature `metrics`);
/// nothing without the feature, or for counters `metrics` does not show.
#[derive(Default)]
pub(crate) struct Metric(#[cfg(feature = "metrics")] Option<metrics::Counter>);

impl Metric {
    /// `cachette_{name}{function, extra labels}`, from the recorder
    /// installed now.
    #[cfg(feature = "metrics")]
    fn new(
        name: &'static str,
        function: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Self {
        let mut all = vec![metrics::Label::new("function", function)];
        all.extend(labels.iter().map(|&(k, v)| metrics::Label::new(k, v)));
        Metric(Some(metrics::counter!(name, all)))
    }

    #[cfg(not(feature = "metrics"))]
    fn new(_: &'static str, _: &'static str, _: &[(&'static str, &'static str)]) -> Self {
        Metric()
    }

    #[inline]
    fn increment(&self) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = &self.0 {
            counter.increment(1);
        }
    }
}

/// `cachette_l2_errors_total{kind}` (feature `metrics`).
#[inline]
pub(crate) fn l2_error_metric(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("cachette_l2_errors_total", "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// `cachette_invalidations_total{kind}` (feature `metrics`).
#[inline]
pub(crate) fn invalidation_metric(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("cachette_invalidations_total", "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// When a shared-tier operation began, for [`l2_seconds`] (feature
/// `metrics`; nothing without it).
#[inline]
pub(crate) fn l2_timer() -> Option<std::time::Instant> {
    cfg!(feature = "metrics").then(std::time::Instant::now)
}

/// `cachette_l2_seconds{op}` (feature `metrics`): one shared-tier
/// operation's round trip, including a timeout.
#[inline]
pub(crate) fn l2_seconds(op: &'static str, started: Option<std::time::Instant>) {
    #[cfg(feature = "metrics")]
    if let Some(started) = started {
        metrics::histogram!("cachette_l2_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (op, started);
}

/// `cachette_l1_entries{cache}` (feature `metrics`): the entries a cache's
/// L1 holds, live or void (cleared and invalidated entries stay until they
/// are replaced or evicted), labelled with the cache's prefix.
#[cfg(feature = "metrics")]
pub(crate) fn l1_entries_metric(prefix: &str, entries: u64) {
    metrics::gauge!("cachette_l1_entries", "cache" => prefix.to_owned()).set(entries as f64);
}

/// `cachette_breaker_open` (feature `metrics`): 1 while the breaker is open.
#[inline]
pub(crate) fn breaker_metric(open: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("cachette_breaker_open").set(if open { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = open;
}

/// One counter of [`Counters`].
#[derive(Default)]
pub(crate) struct Count {
    value: AtomicU64,
    metric: Metric,
}

impl std::fmt::Debug for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Count {
    fn with(metric: Metric) -> Self {
        Count {
            value: AtomicU64::new(0),
            metric,
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// Live counters of one cached function on one cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: Striped,
    pub(crate) l2_hits: Count,
    pub(crate) misses: Count,
    pub(crate) body_runs: Count,
    pub(crate) errors: Count,
    pub(crate) stale_served: Count,
    pub(crate) lock_waits: Count,
    pub(crate) l2_errors: Count,
    pub(crate) refreshes: Count,
    pub(crate) early_refreshes: Count,
    pub(crate) refresh_errors: Count,
    pub(crate) errors_served_stale: Count,
    /// `cachette_body_seconds{function}` (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) body_seconds: Option<metrics::Histogram>,
}

impl Counters {
    /// The counters of `function`, with their `metrics` handles taken from
    /// the recorder installed now (feature `metrics`).
    fn named(function: &'static str) -> Self {
        let requests =
            |outcome| Metric::new("cachette_requests_total", function, &[("outcome", outcome)]);
        let total = |name| Metric::new(name, function, &[]);
        Counters {
            l1_hits: Striped::with(requests("hit_l1")),
            l2_hits: Count::with(requests("hit_l2")),
            misses: Count::with(requests("miss")),
            stale_served: Count::with(requests("stale")),
            errors: Count::with(requests("error")),
            body_runs: Count::with(total("cachette_body_runs_total")),
            lock_waits: Count::with(total("cachette_lock_waits_total")),
            refreshes: Count::with(total("cachette_refreshes_total")),
            #[cfg(feature = "metrics")]
            body_seconds: Some(
                metrics::histogram!("cachette_body_seconds", "function" => function),
            ),
            ..Counters::default()
        }
    }

    #[inline]
    pub(crate) fn bump(counter: &Count) {
        counter.value.fetch_add(1, Relaxed);
        counter.metric.increment();
    }

    /// A body's run time, for `cachette_body_seconds` (feature `metrics`).
    #[inline]
    pub(crate) fn body_took(&self, took: std::time::Duration) {
        #[cfg(feature = "metrics")]
        if let Some(histogram) = &self.body_seconds {
            histogram.record(took.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = took;
    }

    fn snapshot(&self, name: &str) -> FunctionStats {
        FunctionStats {
            name: name.to_owned(),
            l1_hits: self.l1_hits.get(),
            l2_hits: self.l2_hits.get(),
            misses: self.misses.get(),
            body_runs: self.body_runs.get(),
            errors: self.errors.get(),
            stale_served: self.stale_served.get(),
            lock_waits: self.lock_waits.get(),
            l2_errors: self.l2_errors.get(),
            refreshes: self.refreshes.get(),
            early_refreshes: self.early_refreshes.get(),
            refresh_errors: self.refresh_errors.get(),
            errors_served_stale: self.errors_served_stale.get(),
        }
    }
}

/// The counters of every function a cache has served, by function name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_name: Mutex<HashMap<&'static str, Arc<Counters>>>,
}

impl Registry {
    pub(crate) fn counters(&self, name: &'static str) -> Arc<Counters> {
        let mut map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry(name)
                .or_insert_with(|| Arc::new(Counters::named(name))),
        )
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let mut functions: Vec<FunctionStats> =
            map.iter().map(|(name, c)| c.snapshot(name)).collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Stats { functions }
    }
}

/// A point-in-time copy of a cache's counters, one entry per function.
///
/// # Example
///
/// ```
/// let cache = cachette::Cache::local();
/// let stats = cache.stats();
/// assert!(stats.function("app::get_user").is_none());
/// assert_eq!(stats.total().l1_hits, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// One entry per function, sorted by name.
    pub functions: Vec<FunctionStats>,
}

impl Stats {
    /// The counters of the function named `name` (its `name = ".."` argument,
    /// or `module_path::fn_name`, or `module_path::Type::method` for a method).
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// All functions' counters added up, under the name `"total"`.
    pub fn total(&self) -> FunctionStats {
        let mut t = FunctionStats {
            name: "total".to_owned(),
            ..FunctionStats::default()
        };
        for f in &self.functions {
            t.l1_hits += f.l1_hits;
            t.l2_hits += f.l2_hits;
            t.misses += f.misses;
            t.body_runs += f.body_runs;
            t.errors += f.errors;
            t.stale_served += f.stale_served;
            t.lock_waits += f.lock_waits;
            t.l2_errors += f.l2_errors;
            t.refreshes += f.refreshes;
            t.early_refreshes += f.early_refreshes;
            t.refresh_errors += f.refresh_errors;
            t.errors_served_stale += f.errors_served_stale;
        }
        t
    }
}

/// Counters of one cached function.
///
/// Every call is exactly one of an L1 hit, an L2 hit or a miss. A miss runs
/// the body unless it waited for another caller's run (`lock_waits`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's name.
    pub name: String,
    /// Calls answered from the in-process tier.
    pub l1_hits: u64,
    /// Calls answered from the shared tier.
    pub l2_hits: u64,
    /// Calls that found no fresh entry.
    pub misses: u64,
    /// Times the function's body ran (misses, refreshes).
    pub body_runs: u64,
    /// Body runs that returned an error (never cached).
    pub errors: u64,
    /// Calls answered with an expired value inside its stale window.
    pub stale_served: u64,
    /// Calls that waited for another caller's body run (`lock`).
    pub lock_waits: u64,
    /// Shared-tier operations that failed or timed out.
    pub l2_errors: u64,
    /// Refreshes started: by a stale hit, an early one, or `refresh_ahead`.
    pub refreshes: u64,
    /// Of `refreshes`, those a fresh hit started (`early`, `refresh_ahead`).
    pub early_refreshes: u64,
    /// Refreshes whose body failed; the stored value was kept.
    pub refresh_errors: u64,
    /// Calls whose body failed and that got the stored value instead
    /// (`stale_if_error`, or a caller-run refresh inside the `stale` window).
    pub errors_served_stale: u64,
}

impl FunctionStats {
    /// The counters that moved since `earlier`, a snapshot of the same
    /// function taken before this one (counters never go down).
    ///
    /// ```
    /// let cache = cachette::Cache::local();
    /// let before = cache.stats().total();
    /// let after = cache.stats().total();
    /// assert_eq!(after.since(&before).misses, 0);
    /// ```
    pub fn since(&self, earlier: &FunctionStats) -> FunctionStats {
        FunctionStats {
            name: self.name.clone(),
            l1_hits: self.l1_hits.saturating_sub(earlier.l1_hits),
            l2_hits: self.l2_hits.saturating_sub(earlier.l2_hits),
            misses: self.misses.saturating_sub(earlier.misses),
            body_runs: self.body_runs.saturating_sub(earlier.body_runs),
            errors: self.errors.saturating_sub(earlier.errors),
            stale_served: self.stale_served.saturating_sub(earlier.stale_served),
            lock_waits: self.lock_waits.saturating_sub(earlier.lock_waits),
            l2_errors: self.l2_errors.saturating_sub(earlier.l2_errors),
            refreshes: self.refreshes.saturating_sub(earlier.refreshes),
            early_refreshes: self.early_refreshes.saturating_sub(earlier.early_refreshes),
            refresh_errors: self.refresh_errors.saturating_sub(earlier.refresh_errors),
            errors_served_stale: self
                .errors_served_stale
                .saturating_sub(earlier.errors_served_stale),
        }
    }

    /// Hits (both tiers) over all calls; 0 when there were no calls.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.l1_hits + self.l2_hits;
        let calls = hits + self.misses;
        if calls == 0 {
            0.0
        } else {
            hits as f64 / calls as f64
        }
    }
}

/// Serialized as a struct of its counters (with `name`), so a stats
/// endpoint is one `serde_json::to_string(&cache.stats())`.
impl serde::Serialize for FunctionStats {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("FunctionStats", 14)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("l1_hits", &self.l1_hits)?;
        s.serialize_field("l2_hits", &self.l2_hits)?;
        s.serialize_field("misses", &self.misses)?;
        s.serialize_field("body_runs", &self.body_runs)?;
        s.serialize_field("errors", &self.errors)?;
        s.serialize_field("stale_served", &self.stale_served)?;
        s.serialize_field("lock_waits", &self.lock_waits)?;
        s.serialize_field("l2_errors", &self.l2_errors)?;
        s.serialize_field("refreshes", &self.refreshes)?;
        s.serialize_field("early_refreshes", &self.early_refreshes)?;
        s.serialize_field("refresh_errors", &self.refresh_errors)?;
        s.serialize_field("errors_served_stale", &self.errors_served_stale)?;
        s.serialize_field("hit_ratio", &self.hit_ratio())?;
        s.end()
    }
}

/// Serialized as `{"functions": [...], "total": {...}}`.
impl serde::Serialize for Stats {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Stats", 2)?;
        s.serialize_field("functions", &self.functions)?;
        s.serialize_field("total", &self.total())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_serialize_every_counter_and_the_total() {
        let f = FunctionStats {
            name: "app::get".into(),
            l1_hits: 3,
            misses: 1,
            refreshes: 2,
            ..FunctionStats::default()
        };
        let stats = Stats { functions: vec![f] };
        let text = serde_json::to_string(&stats).unwrap();
        assert!(
            text.starts_with(
                r#"{"functions":[{"name":"app::get","l1_hits":3,"l2_hits":0,"misses":1,"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#""refreshes":2,"#) && text.contains(r#""hit_ratio":0.75"#),
            "{text}"
        );
        assert!(
            text.contains(r#""total":{"name":"total","l1_hits":3,"#),
            "{text}"
        );
    }

    #[test]
    fn striped_counts_from_many_threads_add_up_exactly() {
        let counter = Striped::default();
        std::thread::scope(|s| {
            for _ in 0..(STRIPES + 3) {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        counter.bump();
                    }
                });
            }
        });
        assert_eq!(counter.get(), (STRIPES as u64 + 3) * 10_000);
    }
}
