//! Freshness with the shared tier against a real Redis (DESIGN §2a): the
//! Redis TTL ends at the stale window's end, a stale value found in Redis
//! is served while one caller refreshes it, and `stale_if_error` answers
//! with a value another process stored. Two caches stand for two
//! processes; time is real and short.

#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cachette::{cache, Cache};
use support::cache::redis_cache;
use support::redis::RedisServer;

async fn process(server: &RedisServer, prefix: &str) -> Cache {
    redis_cache(&server.url(), prefix, Duration::from_millis(500), None).await
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Only in Redis, so every call reads it there; the body takes 200 ms.
#[cache(key = "page:<id>", ttl = "300ms", stale = "30s", tier = "l2", cache = cache)]
async fn page(cache: &Cache, id: u64) -> String {
    let run = RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("page {id} v{run}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_value_in_redis_is_served_while_one_caller_refreshes_it() {
    let server = RedisServer::start();
    let (a, b) = (
        process(&server, "pages").await,
        process(&server, "pages").await,
    );
    assert_eq!(page(&a, 1).await, "page 1 v1");
    let pttl = server
        .cmd(&["PTTL", "pages:v1:page:1"])
        .unwrap()
        .as_int()
        .unwrap();
    assert!(
        (29_000..=30_300).contains(&pttl),
        "the Redis TTL ends with the stale window: {pttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // 20 callers in the other process: one refreshes, the others get the
    // stale value at once.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                (page(&b, 1).await, start.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let refreshed: Vec<_> = results.iter().filter(|(v, _)| v == "page 1 v2").collect();
    let stale: Vec<_> = results.iter().filter(|(v, _)| v == "page 1 v1").collect();
    assert_eq!((refreshed.len(), stale.len()), (1, 19), "{results:?}");
    assert!(
        stale
            .iter()
            .all(|(_, took)| *took < Duration::from_millis(150)),
        "stale values are served without waiting: {results:?}"
    );
    assert_eq!(RUNS.load(SeqCst), 2);
    assert_eq!(page(&a, 1).await, "page 1 v2", "the refresh reached Redis");
    let s = b.stats().function("l2_freshness::page").cloned().unwrap();
    assert_eq!((s.stale_served, s.refreshes), (19, 1), "{s:?}");
}

static FAILING: AtomicBool = AtomicBool::new(false);

#[cache(key = "rate:<id>", ttl = "300ms", stale_if_error = "30s", cache = cache)]
async fn rate(cache: &Cache, id: u64) -> Result<u64, String> {
    match FAILING.load(SeqCst) {
        true => Err("the rates service is down".to_owned()),
        false => Ok(id * 3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_answers_with_the_value_another_process_stored() {
    let server = RedisServer::start();
    let (a, b) = (
        process(&server, "rates").await,
        process(&server, "rates").await,
    );
    assert_eq!(rate(&a, 7).await, Ok(21));
    tokio::time::sleep(Duration::from_millis(400)).await;
    FAILING.store(true, SeqCst);
    assert_eq!(
        rate(&b, 7).await,
        Ok(21),
        "b never held it: it came from Redis"
    );
    let s = b.stats().function("l2_freshness::rate").cloned().unwrap();
    assert_eq!((s.errors, s.errors_served_stale), (1, 1), "{s:?}");
    // Without the stored value, the error is returned.
    assert_eq!(
        rate(&b, 8).await,
        Err("the rates service is down".to_owned())
    );
}

/// A cache whose L1 copies live 100 ms, far less than the TTL, as
/// `l1_max_ttl` makes them with a shared tier: stale values are then found
/// in Redis, not in L1.
static SHORT_L1: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
static FEED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Owned arguments: refreshed in the background.
#[cache(key = "feed:<id>", ttl = "400ms", stale = "30s", cache = SHORT_L1.get().expect("set by the test"))]
async fn feed(id: u64) -> String {
    let run = FEED_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("feed {id} v{run}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_value_found_in_redis_is_refreshed_in_the_background_without_a_caller_waiting() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .prefix("feeds")
        .redis(server.url())
        .l1_max_ttl(Duration::from_millis(100))
        .build()
        .await
        .expect("connects");
    SHORT_L1.set(cache.clone()).expect("set once");
    assert_eq!(feed(1).await, "feed 1 v1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(3)
        && seen.last().map(String::as_str) != Some("feed 1 v2")
    {
        let call = Instant::now();
        let value = feed(1).await;
        assert!(
            call.elapsed() < Duration::from_millis(150),
            "a stale call waited {:?} for the refresh",
            call.elapsed()
        );
        if seen.last() != Some(&value) {
            seen.push(value);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, ["feed 1 v1", "feed 1 v2"]);
    assert_eq!(FEED_RUNS.load(SeqCst), 2);
    let s = cache
        .stats()
        .function("l2_freshness::feed")
        .cloned()
        .unwrap();
    assert_eq!(s.refreshes, 1, "{s:?}");
}

static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `cache = cache` borrows: refreshed by the caller; `lock` makes that one
/// refresh for both processes.
#[cache(key = "price:<id>", ttl = "300ms", stale = "30s", lock, cache = cache)]
async fn price(cache: &Cache, id: u64) -> String {
    let run = PRICE_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("price {id} v{run}")
}

async fn timed(cache: &Cache) -> (String, Duration) {
    let start = Instant::now();
    (price(cache, 1).await, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_run_refresh_does_not_wait_for_another_process_refreshing_the_same_key() {
    let server = RedisServer::start();
    let (a, b) = (
        process(&server, "prices").await,
        process(&server, "prices").await,
    );
    assert_eq!(price(&a, 1).await, "price 1 v1");
    assert_eq!(price(&b, 1).await, "price 1 v1", "b holds it in L1 too");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ((from_a, took_a), (from_b, took_b)) = tokio::join!(timed(&a), timed(&b));
    assert_eq!(PRICE_RUNS.load(SeqCst), 2, "one refresh for both processes");
    let mut calls = [(from_a, took_a), (from_b, took_b)];
    calls.sort_by_key(|(_, took)| *took);
    let [(quick, quick_took), (refreshed, _)] = calls;
    assert_eq!(
        refreshed, "price 1 v2",
        "the refreshing caller got the new value"
    );
    assert_eq!(quick, "price 1 v1", "the other kept the stale value");
    assert!(
        quick_took < Duration::from_millis(150),
        "and did not wait: {quick_took:?}"
    );
}
