#![cfg(feature = "redis")]
//! Coherence under faults, against real `redis-server` processes: a read
//! racing this process's own invalidation over a slow link, write-throughs
//! reaching other processes, an invalidation made while Redis is paused,
//! a load filling Redis while this process's invalidation is still on its
//! way there, the breaker closing after every one of many restarts under
//! load, and at the first probe after an outage that dropped its
//! connections.
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whether a client's chunk holds an invalidation: the script that moves a
/// generation on and announces it on the channel.
fn is_bump(sent: &[u8]) -> bool {
    (contains(sent, b"\r\nEVALSHA\r\n") || contains(sent, b"\r\nEVAL\r\n"))
        && contains(sent, b":#events\r\n")
}

/// Whether `key` exists; panics when Redis does not answer.
fn exists(server: &RedisServer, key: &str) -> bool {
    let reply = server.cmd(&["EXISTS", key]).expect("EXISTS answered");
    reply
        .as_int()
        .unwrap_or_else(|| panic!("EXISTS replied {reply:?}"))
        == 1
}

/// A's invalidation moves the key's generation on in A at once and in
/// Redis only when its command arrives. A load in A meanwhile must not
/// fill Redis under A's new value as if Redis had it: Redis would give
/// that same value to B's invalidation, made after A's load read the
/// database, and B would take A's fill for one made after its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_during_this_process_invalidation_never_fills_under_a_generation_redis_has_not_given(
) {
    /// How long A's invalidation takes to reach Redis, and A's timeout:
    /// A's load and B's write and read fit in between.
    const HELD: Duration = Duration::from_secs(2);
    const A_TIMEOUT: Duration = Duration::from_secs(1);
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let a = redis_cache(&proxy.url(), "unconfirmed", A_TIMEOUT, None).await;
    let b = connect(&server.url(), "unconfirmed").await;
    let id = 40;
    write(id, Some("1"));
    user_invalidate(&a, id).await.expect("A reaches Redis");
    // This runtime earns A a connection of its own (32 calls over 100 ms):
    // A's invalidations from here on go over it, while a load from a new
    // runtime goes over A's own runtime's connection.
    let before = proxy.connections();
    for _ in 0..40 {
        a.invalidate_tag("warm-up").await.expect("A reaches Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        eventually(RECOVERY, async || {
            let _ = a.invalidate_tag("warm-up").await;
            proxy.connections() > before
        })
        .await,
        "this runtime never got a connection of its own"
    );

    // A writes the key; its invalidation is held on its way to Redis.
    write(id, Some("2"));
    proxy.hold_requests_at(is_bump, HELD);
    let invalidating = {
        let a = a.clone();
        tokio::spawn(async move { user_invalidate(&a, id).await })
    };
    assert!(
        eventually(A_TIMEOUT / 2, async || proxy.fired() == 1).await,
        "A's invalidation never left"
    );
    // Meanwhile A loads the key from a runtime of its own, over its other
    // connection, and fills Redis.
    let loaded = {
        let a = a.clone();
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(user(&a, id))
        })
        .await
        .expect("the load returns")
    };
    assert_eq!(loaded.as_deref(), Some("2"));
    assert!(
        exists(&server, &format!("unconfirmed:v1:user:{id}")),
        "A's load did not fill Redis (it went over the held connection)"
    );
    assert_eq!(proxy.fired(), 1);

    // B writes the key and invalidates it before A's invalidation arrives;
    // its read after that must not return A's older value.
    write(id, Some("3"));
    user_invalidate(&b, id).await.expect("B reaches Redis");
    assert_eq!(
        user(&b, id).await.as_deref(),
        Some("3"),
        "B read a value loaded before its own write, after its invalidation returned Ok"
    );
    let held = invalidating.await.expect("A's invalidation returns");
    assert!(
        held.is_err(),
        "A's invalidation did not reach Redis in time"
    );
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
