//! What the cache tells the `metrics` facade (feature `metrics`), seen by a
//! recorder of the test's own: `cachette_requests_total{function, outcome}`
//! for hits, misses and errors, `cachette_body_runs_total`,
//! `cachette_body_seconds`, `cachette_invalidations_total{kind}`, the
//! `cachette_l1_entries{cache}` gauge, and, against a real Redis that is
//! killed, `cachette_l2_seconds{op}`, `cachette_l2_errors_total{kind}` and
//! the `cachette_breaker_open` gauge.

#![cfg(feature = "metrics")]

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// One metric's value: a counter's total, a gauge's value, or how many
/// samples a histogram got.
#[derive(Default)]
struct Value(AtomicU64);

impl CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, SeqCst);
    }
}

impl GaugeFn for Value {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, SeqCst);
    }
    fn decrement(&self, value: f64) {
        self.0.fetch_sub(value as u64, SeqCst);
    }
    fn set(&self, value: f64) {
        self.0.store(value as u64, SeqCst);
    }
}

impl HistogramFn for Value {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Metrics by `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct Recording(Mutex<BTreeMap<String, Arc<Value>>>);

impl Recording {
    fn value(&self, key: &Key) -> Arc<Value> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.0.lock().unwrap().entry(name).or_default())
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.0.load(SeqCst))
    }
}

impl Recorder for &'static Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.value(key))
    }
}

/// The recorder, installed for the whole test binary before any cached
/// call (handles are taken when a function is first called).
fn recording() -> &'static Recording {
    static RECORDING: OnceLock<&'static Recording> = OnceLock::new();
    RECORDING.get_or_init(|| {
        let recording: &'static Recording = Box::leak(Box::default());
        metrics::set_global_recorder(recording).expect("the only recorder");
        recording
    })
}

mod local {
    use super::*;
    use cachette::cache;
    manual_cache!();

    #[cache(key = "price:<id>", ttl = 60, tags = ["prices"], cache = CACHE, tier = "l1")]
    fn price(id: u64) -> Result<u64, String> {
        match id {
            0 => Err("no price for 0".to_owned()),
            id => Ok(id * 10),
        }
    }

    #[test]
    fn requests_body_runs_body_time_and_invalidations_are_counted() {
        let m = recording();
        let function = "function=metrics::local::price";
        assert_eq!(price(1), Ok(10));
        assert_eq!(price(1), Ok(10));
        assert_eq!(price(1), Ok(10));
        assert_eq!(price(0), Err("no price for 0".to_owned()));
        let requests = |outcome: &str| {
            m.get(&format!(
                "cachette_requests_total{{{function},outcome={outcome}}}"
            ))
        };
        assert_eq!(requests("miss"), 2);
        assert_eq!(requests("hit_l1"), 2);
        assert_eq!(requests("error"), 1);
        assert_eq!(m.get(&format!("cachette_body_runs_total{{{function}}}")), 2);
        assert_eq!(
            m.get(&format!("cachette_body_seconds{{{function}}}")),
            2,
            "one sample per run"
        );
        let stats = CACHE.stats();
        let s = stats.function("metrics::local::price").unwrap();
        assert_eq!(
            (s.l1_hits, s.misses, s.body_runs, s.errors),
            (2, 2, 2, 1),
            "stats agree"
        );

        let (tags, clears) = (
            m.get("cachette_invalidations_total{kind=tag}"),
            m.get("cachette_invalidations_total{kind=clear}"),
        );
        CACHE.invalidate_tag_blocking("prices").unwrap();
        price_invalidate(1).unwrap();
        CACHE.clear_blocking().unwrap();
        assert!(m.get("cachette_invalidations_total{kind=tag}") > tags);
        assert!(m.get("cachette_invalidations_total{kind=key}") >= 1);
        assert!(m.get("cachette_invalidations_total{kind=clear}") > clears);
    }
}

mod gauge {
    use super::*;
    use cachette::{cache, Cache};

    #[cache(key = "square:<n>", ttl = 60, cache = cache, tier = "l1")]
    fn square(cache: &Cache, n: u64) -> u64 {
        n * n
    }

    #[test]
    fn the_l1_entries_gauge_is_set_every_256_fills_per_cache() {
        let m = recording();
        let cache = Cache::builder().prefix("gauged").build_local().unwrap();
        let other = Cache::builder().prefix("other").build_local().unwrap();
        for n in 0..300 {
            assert_eq!(square(&cache, n), n * n);
        }
        square(&other, 1);
        // Set after the first fill and after the 257th.
        assert_eq!(m.get("cachette_l1_entries{cache=gauged}"), 257);
        assert_eq!(m.get("cachette_l1_entries{cache=other}"), 1);
    }
}

#[cfg(feature = "redis")]
mod shared {
    use super::*;
    use cachette::{cache, Cache};
    use std::time::Duration;
    use support::cache::redis_cache;
    use support::redis::RedisServer;

    #[cache(key = "item:<id>", ttl = 300, cache = cache)]
    async fn item(cache: &Cache, id: u64) -> u64 {
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_tier_errors_by_kind_and_the_breaker_gauge() {
        let m = recording();
        let server = RedisServer::start();
        let cache = redis_cache(&server.url(), "me", Duration::from_millis(50), None).await;
        assert_eq!(item(&cache, 1).await, 1);
        assert_eq!(m.get("cachette_breaker_open{}"), 0);
        assert!(
            m.get("cachette_l2_seconds{op=get}") >= 1,
            "the read's round trip is timed"
        );
        assert!(m.get("cachette_l2_seconds{op=set}") >= 1, "and the fill's");
        let function = "function=metrics::shared::item";
        assert_eq!(
            m.get(&format!(
                "cachette_requests_total{{{function},outcome=miss}}"
            )),
            1
        );

        server.kill();
        for id in 0..50 {
            assert_eq!(item(&cache, 100 + id).await, 100 + id);
        }
        let errors: u64 = ["timeout", "down", "refused"]
            .iter()
            .map(|kind| m.get(&format!("cachette_l2_errors_total{{kind={kind}}}")))
            .sum();
        assert!(errors >= 1, "shared-tier errors are counted by kind");
        assert_eq!(m.get("cachette_breaker_open{}"), 1, "the breaker is open");
    }
}
