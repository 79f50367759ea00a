#![cfg(feature = "redis")]
//! Coherence under faults, against real `redis-server` processes: a read
//! racing this process's own invalidation over a slow link, write-throughs
//! reaching other processes, an invalidation made while Redis is paused,
//! the breaker closing after every one of many restarts under load, and at
//! the first probe after an outage that dropped its connections.
//!
//! Two `Cache`s on one server stand for two processes. Every wait is
//! bounded.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachette::{cache, Cache, Error};
use support::cache::redis_cache;
use support::proxy::{FaultProxy, LatencyProxy};
use support::redis::RedisServer;
use support::wait::eventually_every;

const L2_TIMEOUT: Duration = Duration::from_millis(100);
/// How long an invalidation message may take to reach another process.
const MESSAGE: Duration = Duration::from_secs(3);
/// How long the cache may take to use Redis again once it is back.
const RECOVERY: Duration = Duration::from_secs(12);

/// The "database": what a body reads.
static TRUTH: LazyLock<Mutex<HashMap<u64, Option<String>>>> = LazyLock::new(Mutex::default);

fn truth(id: u64) -> Option<String> {
    let truth = TRUTH.lock().unwrap_or_else(PoisonError::into_inner);
    truth.get(&id).cloned().flatten()
}

fn write(id: u64, value: Option<&str>) {
    let mut truth = TRUTH.lock().unwrap_or_else(PoisonError::into_inner);
    truth.insert(id, value.map(str::to_owned));
}

#[cache(key = "user:<id>", ttl = 300, negative_ttl = 300, cache = cache)]
async fn user(cache: &Cache, id: u64) -> Option<String> {
    truth(id)
}

async fn connect(url: &str, prefix: &str) -> Cache {
    redis_cache(url, prefix, L2_TIMEOUT, None).await
}

async fn eventually(limit: Duration, f: impl AsyncFnMut() -> bool) -> bool {
    eventually_every(Duration::from_millis(10), limit, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_read_racing_this_process_invalidation_is_never_served_after_it() {
    let server = RedisServer::start();
    let proxy = LatencyProxy::start(server.port(), Duration::from_millis(10));
    let writer = connect(&server.url(), "race").await;
    let a = connect(&proxy.url(), "race").await;
    for round in 0..40u64 {
        let id = 1_000 + round;
        write(id, Some("old"));
        assert_eq!(user(&writer, id).await.as_deref(), Some("old"));
        // A reads over the slow link (a round trip to learn the key's
        // generation, then the read); its own invalidation starts 8-17 ms
        // later, mostly while the read's reply is on its way.
        let reader = {
            let a = a.clone();
            tokio::spawn(async move { user(&a, id).await })
        };
        tokio::time::sleep(Duration::from_millis(8 + round % 10)).await;
        write(id, Some("new"));
        let _ = user_invalidate(&a, id).await;
        let _ = reader.await.expect("the reader returns");
        assert_eq!(
            user(&a, id).await.as_deref(),
            Some("new"),
            "round {round}: A served a value it had invalidated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reaches_the_l1_of_another_process_for_present_and_absent_values() {
    let server = RedisServer::start();
    let a = connect(&server.url(), "put").await;
    let b = connect(&server.url(), "put").await;

    write(20, Some("old"));
    assert_eq!(user(&b, 20).await.as_deref(), Some("old"));
    write(20, Some("new"));
    user_put(&a, 20, Some("new".to_owned()))
        .await
        .expect("stored");
    assert!(
        eventually(MESSAGE, async || user(&b, 20).await.as_deref()
            == Some("new"))
        .await,
        "B still serves the value A replaced"
    );

    // B remembers that 21 does not exist; A inserts it and puts it.
    write(21, None);
    assert_eq!(user(&b, 21).await, None);
    write(21, Some("created"));
    user_put(&a, 21, Some("created".to_owned()))
        .await
        .expect("stored");
    assert!(
        eventually(MESSAGE, async || user(&b, 21).await.is_some()).await,
        "B still answers `None` for a value A put"
    );

    // A refresh reaches B the same way.
    write(20, Some("refreshed"));
    assert_eq!(user_refresh(&a, 20).await.as_deref(), Some("refreshed"));
    assert!(
        eventually(MESSAGE, async || user(&b, 20).await.as_deref()
            == Some("refreshed"))
        .await,
        "B still serves the value A refreshed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_while_redis_is_paused_reaches_another_process_soon_after() {
    let server = RedisServer::start();
    let a = connect(&server.url(), "paused").await;
    let b = connect(&server.url(), "paused").await;
    write(30, Some("old"));
    assert_eq!(user(&a, 30).await.as_deref(), Some("old"));
    assert_eq!(user(&b, 30).await.as_deref(), Some("old"));

    server.pause();
    write(30, Some("new"));
    let failed = user_invalidate(&a, 30).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.resume();
    let resumed = Instant::now();
    assert!(failed.is_err(), "the caller learns that Redis was not told");
    assert!(
        eventually(Duration::from_secs(3), async || user(&b, 30)
            .await
            .as_deref()
            == Some("new"))
        .await,
        "B never heard of the invalidation"
    );
    let took = resumed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "B caught up {took:?} after Redis answered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_closes_after_every_one_of_twenty_restarts_under_load() {
    let server = RedisServer::start();
    let cache = connect(&server.url(), "restarts").await;
    for id in 0..50 {
        write(5_000 + id, Some("v"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(240);
    let load: Vec<_> = (0..4u64)
        .map(|task| {
            let (cache, stop, calls) = (cache.clone(), Arc::clone(&stop), Arc::clone(&calls));
            tokio::spawn(async move {
                let mut i = task;
                while !stop.load(SeqCst) && Instant::now() < deadline {
                    assert_eq!(user(&cache, 5_000 + i % 50).await.as_deref(), Some("v"));
                    calls.fetch_add(1, SeqCst);
                    i += 1;
                    if i % 64 == 0 {
                        let _ = user_invalidate(&cache, 5_000 + i % 50).await;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // This runtime earns a connection of its own (32 calls over 100 ms).
    assert!(eventually(RECOVERY, async || calls.load(SeqCst) > 1_000).await);
    tokio::time::sleep(Duration::from_millis(150)).await;

    for cycle in 0..20 {
        server.kill();
        assert!(
            eventually(RECOVERY, async || cache
                .invalidate_tag("probe")
                .await
                .is_err())
            .await,
            "cycle {cycle}: Redis is down"
        );
        server.restart();
        let restarted = Instant::now();
        assert!(
            eventually(RECOVERY, async || cache
                .invalidate_tag("probe")
                .await
                .is_ok())
            .await,
            "cycle {cycle}: the breaker never closed"
        );
        eprintln!(
            "cycle {cycle}: back {:?} after the restart",
            restarted.elapsed()
        );
    }
    stop.store(true, SeqCst);
    for task in load {
        task.await.expect("no call failed");
    }
    assert!(calls.load(SeqCst) > 1_000);
}

/// A connection that dropped during an outage fails the first command sent
/// over it, and only then does redis-rs open a new one. The probe after
/// the outage finds it so; it must still close the breaker, since Redis
/// answers, rather than open it for a doubled cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_closes_at_the_first_probe_after_an_outage_that_dropped_its_connections() {
    /// The breaker's first cool-down is 250 ms.
    const PAST_COOL_DOWN: Duration = Duration::from_millis(500);
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let cache = connect(&proxy.url(), "probe").await;
    for id in 0..5 {
        write(60 + id, Some("v"));
    }
    assert_eq!(user(&cache, 60).await.as_deref(), Some("v"));
    cache.invalidate_tag("probe").await.expect("Redis answers");

    // An outage: no reply comes back. Three reads of keys this process has
    // not seen each wait for a generation in vain, which opens the breaker;
    // a fourth does not try. (Reads, so that nothing is queued for a replay
    // that could probe first.)
    proxy.hold_all_replies(true);
    for id in 1..5 {
        assert_eq!(user(&cache, 60 + id).await.as_deref(), Some("v"));
    }
    let l2_errors = cache
        .stats()
        .function("l2_coherence::user")
        .map(|f| f.l2_errors);
    assert_eq!(
        l2_errors,
        Some(3),
        "three failures in a row open the breaker"
    );
    // The link comes back, but the connections made before are gone.
    proxy.reset();
    proxy.hold_all_replies(false);
    tokio::time::sleep(PAST_COOL_DOWN).await;

    // The probe finds its connection dropped: its own command fails...
    let probe = cache.invalidate_tag("probe").await;
    assert!(
        matches!(probe, Err(Error::L2Connection(_))),
        "the probe went over the dropped connection: {probe:?}"
    );
    // ...but Redis answers, and the breaker lets the next call through.
    let next = cache.invalidate_tag("probe").await;
    assert!(
        next.is_ok(),
        "the breaker stayed open after the probe, with Redis answering: {next:?}"
    );
}
