#![cfg(feature = "redis")]
//! Faults of the shared tier against real `redis-server` processes (G8, G9):
//! Redis killed mid-workload and restarted, paused (a hung server), refusing
//! writes; values written behind the cache's back; credentials; companions
//! with Redis down; the cost of a call while the breaker is open.
//!
//! Two `Cache`s on one server stand for two processes. Every wait is bounded
//! and every time bound is generous: a bound catches a call that pays a
//! timeout it should not (or hangs), not a slow machine.

mod support;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachette::{cache, Cache, FunctionStats};
use support::cache::redis_cache;
use support::redis::{RedisConn, RedisServer, RespValue};
use support::wait::{eventually_blocking_every, eventually_every};

/// The shared tier's timeout in every cache here.
const L2_TIMEOUT: Duration = Duration::from_millis(50);
/// No single call may take this long: paying the timeout a few times stays
/// far below it.
const CALL_BOUND: Duration = Duration::from_secs(1);
/// How long the cache may take to use Redis again once it is back: the
/// breaker's cool-down (at most 5 s) plus reconnection.
const RECOVERY: Duration = Duration::from_secs(12);
/// How long an invalidation message may take to reach another process.
const MESSAGE: Duration = Duration::from_secs(3);
/// The first byte of every stored entry (DESIGN §6, `envelope.rs`).
const FORMAT_V1: u8 = 0xCA;

// ---------------------------------------------------------------------------
// Helpers

async fn connect(server: &RedisServer, prefix: &str) -> Cache {
    connect_url(&server.url(), prefix).await
}

async fn connect_url(url: &str, prefix: &str) -> Cache {
    redis_cache(url, prefix, L2_TIMEOUT, Some(Duration::from_secs(1))).await
}

/// Builds a cache for sync code, on a runtime dropped right after.
fn connect_blocking(server: &RedisServer, prefix: &str) -> Cache {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(connect(server, prefix))
}

/// One function's counters on one cache (all zero before its first call).
fn stats(cache: &Cache, function: &str) -> FunctionStats {
    cache
        .stats()
        .function(&format!("l2_faults::{function}"))
        .cloned()
        .unwrap_or_default()
}

/// The Redis key of an entry of a function without namespace, version 1.
fn redis_key(prefix: &str, key: &str) -> String {
    format!("{prefix}:v1:{key}")
}

/// How often the waits here poll.
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` every [`POLL`] until it holds, for at most `limit`.
async fn eventually(limit: Duration, f: impl AsyncFnMut() -> bool) -> bool {
    eventually_every(POLL, limit, f).await
}

/// [`eventually`] for sync code.
fn eventually_blocking(limit: Duration, f: impl FnMut() -> bool) -> bool {
    eventually_blocking_every(POLL, limit, f)
}

/// The value under `key`; `None` when there is none or Redis does not
/// answer; panics on a key of another type.
fn get_bytes(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    match server.cmd(&["GET", key]) {
        Ok(RespValue::Bulk(bytes)) => Some(bytes),
        Ok(RespValue::Nil) | Err(_) => None,
        Ok(other) => panic!("GET {key} replied {other:?}"),
    }
}

fn set_bytes(server: &RedisServer, key: &str, bytes: &[u8]) {
    let reply = server
        .cmd(&[b"SET".as_slice(), key.as_bytes(), bytes])
        .expect("SET behind the cache's back");
    assert!(reply.is_ok(), "SET {key} replied {reply:?}");
}

/// Whether `key` exists; false when Redis does not answer.
fn exists(server: &RedisServer, key: &str) -> bool {
    server
        .cmd(&["EXISTS", key])
        .is_ok_and(|reply| reply.as_int() == Some(1))
}

/// How many clients listen on `channel` (0 when Redis does not answer).
fn subscribers(server: &RedisServer, channel: &str) -> i64 {
    server
        .cmd(&["PUBSUB", "NUMSUB", channel])
        .ok()
        .and_then(|reply| reply.as_array()?.get(1)?.as_int())
        .unwrap_or(0)
}

/// Waits until `count` caches listen on the invalidation channel of
/// `prefix`, so that an invalidation from one reaches the others.
async fn subscribed(server: &RedisServer, prefix: &str, count: i64) -> bool {
    let channel = format!("{prefix}:#events");
    eventually(RECOVERY, async || subscribers(server, &channel) == count).await
}

/// Asserts that `error`, shown either way, contains none of `secrets`.
fn assert_hides(error: &cachette::Error, secrets: &[&str]) {
    let shown = format!("{error} / {error:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} shown in: {shown}");
    }
}

// ---------------------------------------------------------------------------
// G8: Redis killed mid-workload, then restarted

#[cache(key = "v:<id>", ttl = 300, tags = ["g8"], cache = cache)]
async fn g8_value(cache: &Cache, id: u64) -> String {
    format!("value {id}")
}

#[cache(key = "locked:<id>", ttl = 300, lock, cache = cache)]
async fn g8_locked(cache: &Cache, id: u64) -> String {
    tokio::task::yield_now().await;
    format!("locked {id}")
}

/// The "database" behind `g8_document`: its revision moves on before each
/// invalidation, so a stale read shows.
static G8_REVISION: AtomicU64 = AtomicU64::new(0);

#[cache(key = "doc:<id>", ttl = 300, cache = cache)]
async fn g8_document(cache: &Cache, id: u64) -> String {
    document(id)
}

fn document(id: u64) -> String {
    format!("doc {id} rev {}", G8_REVISION.load(SeqCst))
}

/// Changes the document in the "database", invalidates it through `writer`
/// and waits until `reader` (another process) sees the change.
async fn change_and_expect_coherence(writer: &Cache, reader: &Cache, id: u64) -> bool {
    G8_REVISION.fetch_add(1, SeqCst);
    g8_document_invalidate(writer, id)
        .await
        .expect("the invalidation reaches Redis");
    let want = document(id);
    eventually(MESSAGE, async || g8_document(reader, id).await == want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn g8_redis_killed_mid_workload_fails_no_call_and_the_cache_is_coherent_after_restart() {
    const PREFIX: &str = "g8k";
    const TASKS: u64 = 8;
    const CALLS: u64 = 250;
    let server = Arc::new(RedisServer::start());
    let a = connect(&server, PREFIX).await;
    let b = connect(&server, PREFIX).await;
    assert!(subscribed(&server, PREFIX, 2).await);

    // History before the fault: the document is invalidated twice, so both
    // processes hold generations above those of a restarted, empty Redis.
    assert_eq!(g8_document(&a, 7).await, document(7));
    for _ in 0..2 {
        assert!(
            change_and_expect_coherence(&b, &a, 7).await,
            "coherent before the fault"
        );
    }

    let done = Arc::new(AtomicU64::new(0));
    let faults = {
        let server = Arc::clone(&server);
        let done = Arc::clone(&done);
        tokio::task::spawn_blocking(move || {
            let reached = |count: u64| {
                eventually_blocking(Duration::from_secs(20), || done.load(SeqCst) >= count)
            };
            reached(TASKS * CALLS / 4);
            server.kill();
            reached(TASKS * CALLS / 2);
            server.restart();
        })
    };
    let workers: Vec<_> = (0..TASKS)
        .map(|task| {
            let (a, b, done) = (a.clone(), b.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                let mut slowest = Duration::ZERO;
                for i in 0..CALLS {
                    let cache = if (task + i).is_multiple_of(2) { &a } else { &b };
                    let id = (task * 7 + i) % 40;
                    let started = Instant::now();
                    let (got, want) = if i.is_multiple_of(3) {
                        (g8_locked(cache, id).await, format!("locked {id}"))
                    } else {
                        (g8_value(cache, id).await, format!("value {id}"))
                    };
                    slowest = slowest.max(started.elapsed());
                    if got != want {
                        wrong.push((got, want));
                    }
                    done.fetch_add(1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (wrong, slowest)
            })
        })
        .collect();
    for worker in workers {
        let (wrong, slowest) = worker.await.expect("no call panics");
        assert!(wrong.is_empty(), "wrong values: {wrong:?}");
        // A lock wait may last up to lock_timeout (1 s); nothing hangs.
        assert!(slowest < Duration::from_secs(3), "a call took {slowest:?}");
    }
    faults.await.expect("the server was killed and restarted");
    assert_eq!(done.load(SeqCst), TASKS * CALLS);
    assert!(server.is_running());

    // Stats count the L2 errors the outage caused.
    let l2_errors: u64 = [&a, &b]
        .iter()
        .flat_map(|c| [stats(c, "g8_value"), stats(c, "g8_locked")])
        .map(|s| s.l2_errors)
        .sum();
    assert!(l2_errors > 0, "the outage shows in the stats");

    // Recovery: both processes listen again, and their fills reach Redis.
    assert!(
        subscribed(&server, PREFIX, 2).await,
        "both subscribers are back"
    );
    for (n, cache) in [&a, &b].into_iter().enumerate() {
        let mut id = 1_000 * (n as u64 + 1);
        let recovered = eventually(RECOVERY, async || {
            id += 1;
            assert_eq!(g8_value(cache, id).await, format!("value {id}"));
            exists(&server, &redis_key(PREFIX, &g8_value_key(cache, id)))
        })
        .await;
        assert!(recovered, "fills of cache {n} reach Redis again");
    }

    // Coherence, although Redis lost every generation it had: first b
    // invalidates the document before anyone loads it again, then each
    // process in turn invalidates what the other holds (in L1 and Redis).
    G8_REVISION.fetch_add(1, SeqCst);
    g8_document_invalidate(&b, 7)
        .await
        .expect("the invalidation reaches Redis");
    let want = document(7);
    for reader in [&a, &b] {
        let seen = eventually(MESSAGE, async || g8_document(reader, 7).await == want).await;
        assert!(seen, "{:?}, want {want:?}", g8_document(reader, 7).await);
    }
    for round in 0..2 {
        for (writer, reader, name) in [(&b, &a, "b -> a"), (&a, &b, "a -> b")] {
            assert_eq!(g8_document(reader, 7).await, document(7), "{name}");
            assert!(
                change_and_expect_coherence(writer, reader, 7).await,
                "round {round}, {name}: the reader still serves {:?} after the writer \
                 invalidated it; want {:?}",
                g8_document(reader, 7).await,
                document(7)
            );
        }
    }
    // And the whole workload's keys are coherent too.
    a.invalidate_tag("g8").await.expect("reaches Redis");
    let runs = stats(&b, "g8_value").body_runs;
    let b2 = b.clone();
    assert!(
        eventually(MESSAGE, async || {
            g8_value(&b2, 3).await;
            stats(&b2, "g8_value").body_runs > runs
        })
        .await,
        "a tag invalidated by a reaches b"
    );
}

// ---------------------------------------------------------------------------
// G8: a paused (hung) Redis, the breaker

#[cache(key = "p:<id>", ttl = 300, cache = cache)]
async fn g8_paused(cache: &Cache, id: u64) -> u64 {
    id * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g8_a_paused_redis_costs_about_l2_timeout_then_the_breaker_opens_and_closes_after_resume() {
    const PREFIX: &str = "g8p";
    let server = RedisServer::start();
    let cache = connect(&server, PREFIX).await;
    assert_eq!(g8_paused(&cache, 0).await, 0);
    assert!(
        exists(&server, &redis_key(PREFIX, "p:0")),
        "Redis is in use"
    );

    server.pause();
    // The first calls wait for the hung server, each for about l2_timeout;
    // none comes near the bound.
    let mut id = 1;
    let mut waited = 0;
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(g8_paused(&cache, id).await, id * 2);
        let took = started.elapsed();
        assert!(took < CALL_BOUND, "a call took {took:?} with Redis hung");
        if took >= L2_TIMEOUT {
            waited += 1;
        }
        id += 1;
    }
    assert!(waited >= 1, "the hung server was tried");
    assert_eq!(g8_paused(&cache, 0).await, 0, "L1 still answers");
    let errors = stats(&cache, "g8_paused").l2_errors;
    assert!(errors >= 3, "timeouts count as L2 errors: {errors}");

    // The breaker is open: calls no longer pay the timeout. Only a probe
    // after each cool-down (250 ms, doubling) may try Redis.
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(g8_paused(&cache, id).await, id * 2);
        id += 1;
    }
    let took = started.elapsed();
    assert!(
        took < L2_TIMEOUT * 100 / 2,
        "100 calls with the breaker open took {took:?}"
    );
    let tried = stats(&cache, "g8_paused").l2_errors - errors;
    assert!(tried <= 4, "{tried} calls went to the hung server");

    // Resumed: the breaker closes by itself and fills reach Redis again.
    server.resume();
    let mut id = 10_000;
    let recovered = eventually(RECOVERY, async || {
        id += 1;
        assert_eq!(g8_paused(&cache, id).await, id * 2);
        exists(&server, &redis_key(PREFIX, &format!("p:{id}")))
    })
    .await;
    assert!(recovered, "the breaker closed after resume");
}

// ---------------------------------------------------------------------------
// G8: sync functions, outside and inside tokio runtimes

#[cache(key = "s:<id>", ttl = 300, cache = cache)]
fn g8_sync(cache: &Cache, id: u64) -> u64 {
    id + 1
}

/// Calls `g8_sync` for `ids`: each returns the right value within the bound.
fn sync_calls(cache: &Cache, ids: Range<u64>) {
    for id in ids {
        let started = Instant::now();
        assert_eq!(g8_sync(cache, id), id + 1);
        let took = started.elapsed();
        assert!(took < CALL_BOUND, "a sync call took {took:?}");
    }
}

fn sync_fills_reach_redis(server: &RedisServer, cache: &Cache, prefix: &str, from: u64) -> bool {
    let mut id = from;
    eventually_blocking(RECOVERY, || {
        id += 1;
        assert_eq!(g8_sync(cache, id), id + 1);
        exists(server, &redis_key(prefix, &format!("s:{id}")))
    })
}

#[test]
fn g8_sync_functions_outside_a_runtime_neither_panic_nor_hang_with_redis_paused_or_down() {
    const PREFIX: &str = "g8s";
    let server = RedisServer::start();
    let cache = connect_blocking(&server, PREFIX);
    sync_calls(&cache, 0..3);
    assert!(
        exists(&server, &redis_key(PREFIX, "s:0")),
        "Redis is in use"
    );

    server.pause();
    sync_calls(&cache, 100..130);
    assert!(stats(&cache, "g8_sync").l2_errors > 0, "timeouts counted");
    server.resume();
    assert!(sync_fills_reach_redis(&server, &cache, PREFIX, 1_000));

    server.kill();
    let errors = stats(&cache, "g8_sync").l2_errors;
    sync_calls(&cache, 200..230);
    assert!(
        stats(&cache, "g8_sync").l2_errors > errors,
        "failures counted"
    );
    server.restart();
    assert!(sync_fills_reach_redis(&server, &cache, PREFIX, 2_000));
}

#[test]
fn g8_sync_functions_inside_tokio_runtimes_neither_panic_nor_hang_with_redis_paused_or_down() {
    const PREFIX: &str = "g8r";
    let server = RedisServer::start();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One cache per fault and context, built while Redis is up, so that each
    // context meets a closed breaker and goes through the timeout path.
    let mut caches = Vec::new();
    for i in 0..8u64 {
        let cache = current.block_on(connect(&server, PREFIX));
        sync_calls(&cache, i * 1_000..i * 1_000 + 2);
        caches.push(cache);
    }
    assert!(
        exists(&server, &redis_key(PREFIX, "s:0")),
        "Redis is in use"
    );
    let check = |cache: &Cache, fault: &str, context: &str| {
        assert!(
            stats(cache, "g8_sync").l2_errors > 0,
            "{fault}, {context}: L2 errors counted"
        );
    };

    let mut caches = caches.into_iter();
    for fault in ["paused", "down"] {
        if fault == "paused" {
            server.pause();
        } else {
            server.resume();
            server.kill();
        }
        let base = if fault == "paused" { 100_000 } else { 200_000 };

        let cache = caches.next().unwrap();
        let c = cache.clone();
        multi
            .block_on(multi.spawn_blocking(move || sync_calls(&c, base..base + 10)))
            .expect("no panic in spawn_blocking on a multi-thread runtime");
        check(&cache, fault, "multi-thread spawn_blocking");

        let cache = caches.next().unwrap();
        let c = cache.clone();
        multi
            .block_on(multi.spawn(async move { sync_calls(&c, base + 10..base + 20) }))
            .expect("no panic on a multi-thread runtime's worker");
        check(&cache, fault, "multi-thread worker");

        let cache = caches.next().unwrap();
        current.block_on(async { sync_calls(&cache, base + 20..base + 30) });
        check(&cache, fault, "current-thread block_on");

        let cache = caches.next().unwrap();
        let c = cache.clone();
        current
            .block_on(current.spawn_blocking(move || sync_calls(&c, base + 30..base + 40)))
            .expect("no panic in spawn_blocking on a current-thread runtime");
        check(&cache, fault, "current-thread spawn_blocking");
    }
}

// ---------------------------------------------------------------------------
// G8: a Redis that answers, but refuses writes

/// The "database" behind `g8_refused`.
static G8_REFUSED_REVISION: AtomicU64 = AtomicU64::new(0);

#[cache(key = "r:<id>", ttl = 300, cache = cache)]
async fn g8_refused(cache: &Cache, id: u64) -> String {
    refused(id)
}

fn refused(id: u64) -> String {
    format!("refused {id} rev {}", G8_REFUSED_REVISION.load(SeqCst))
}

fn refuse_writes(server: &RedisServer, refuse: bool) {
    let replicas = if refuse { "1" } else { "0" };
    let reply = server
        .cmd(&["CONFIG", "SET", "min-replicas-to-write", replicas])
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g8_a_redis_refusing_writes_fails_no_call_and_errors_never_show_values() {
    const PREFIX: &str = "g8w";
    let server = RedisServer::start();
    let cache = connect(&server, PREFIX).await;
    let other = connect(&server, PREFIX).await;
    assert!(subscribed(&server, PREFIX, 2).await);
    assert_eq!(g8_refused(&cache, 0).await, refused(0));

    // Every write is refused ("NOREPLICAS"); reads still work.
    refuse_writes(&server, true);
    for id in 1..20 {
        let started = Instant::now();
        assert_eq!(g8_refused(&cache, id).await, refused(id));
        assert!(started.elapsed() < CALL_BOUND);
    }
    let secret = "put-value-5f0e2a71";
    let err = g8_refused_put(&cache, 1, secret.to_owned())
        .await
        .expect_err("Redis refused the write");
    assert_hides(&err, &[secret]);
    assert_eq!(
        g8_refused(&cache, 1).await,
        secret,
        "L1 holds the put value"
    );
    let err = g8_refused_invalidate(&cache, 1)
        .await
        .expect_err("Redis refused the generation bump");
    assert_hides(&err, &[secret]);
    assert_eq!(g8_refused(&cache, 1).await, refused(1), "L1 dropped it");

    refuse_writes(&server, false);
    let mut id = 100;
    let recovered = eventually(RECOVERY, async || {
        id += 1;
        g8_refused(&cache, id).await;
        exists(&server, &redis_key(PREFIX, &format!("r:{id}")))
    })
    .await;
    assert!(recovered, "writes reach Redis once it takes them");
    g8_refused_put(&cache, 2, "two".to_owned())
        .await
        .expect("a put reaches Redis again");

    // The refused invalidation moved this process's generation for key 1
    // and not Redis's: later invalidations from another process must still
    // reach it.
    // `_refresh` stores the body's value in Redis too.
    for round in 0..2 {
        assert_eq!(g8_refused_refresh(&cache, 1).await, refused(1));
        G8_REFUSED_REVISION.fetch_add(1, SeqCst);
        g8_refused_invalidate(&other, 1)
            .await
            .expect("reaches Redis");
        let want = refused(1);
        let seen = eventually(MESSAGE, async || g8_refused(&cache, 1).await == want).await;
        assert!(
            seen,
            "round {round}: still {:?} after another process invalidated it; want {want:?}",
            g8_refused(&cache, 1).await
        );
    }
}

// ---------------------------------------------------------------------------
// Companions reach both tiers

#[cache(key = "c:<id>", ttl = 300, cache = cache)]
async fn companion_value(cache: &Cache, id: u64) -> String {
    format!("body {id}")
}

#[cache(key = "cs:<id>", ttl = 300, cache = cache)]
fn companion_sync(cache: &Cache, id: u64) -> String {
    format!("body {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companions_with_redis_down_return_err_after_still_updating_l1() {
    const PREFIX: &str = "cmp";
    let server = RedisServer::start();
    let cache = connect(&server, PREFIX).await;
    for id in 0..3 {
        assert_eq!(companion_value(&cache, id).await, format!("body {id}"));
        assert_eq!(companion_sync(&cache, id), format!("body {id}"));
    }

    server.kill();
    // Losing the subscription flushes L1; wait for that before relying on
    // what L1 holds (a sentinel entry is then a miss).
    let runs = stats(&cache, "companion_value").body_runs;
    let flushed = eventually(MESSAGE, async || {
        companion_value(&cache, 0).await;
        stats(&cache, "companion_value").body_runs > runs
    })
    .await;
    assert!(flushed, "L1 flushed when the subscription was lost");

    // Async: `_invalidate` fails, yet this process misses at once.
    let started = Instant::now();
    let err = companion_value_invalidate(&cache, 1)
        .await
        .expect_err("Redis is down");
    assert!(started.elapsed() < CALL_BOUND);
    companion_value(&cache, 1).await;
    let runs = stats(&cache, "companion_value").body_runs;
    companion_value_invalidate(&cache, 1).await.unwrap_err();
    assert_eq!(companion_value(&cache, 1).await, "body 1");
    assert_eq!(
        stats(&cache, "companion_value").body_runs,
        runs + 1,
        "the local call after the invalidation missed ({err})"
    );
    // `_put` fails, yet this process sees the value.
    let secret = "put-value-9c41d0";
    let started = Instant::now();
    let err = companion_value_put(&cache, 2, secret.to_owned())
        .await
        .expect_err("Redis is down");
    assert!(started.elapsed() < CALL_BOUND);
    assert_hides(&err, &[secret]);
    let runs = stats(&cache, "companion_value").body_runs;
    assert_eq!(companion_value(&cache, 2).await, secret);
    assert_eq!(stats(&cache, "companion_value").body_runs, runs);

    // Sync twins, called from a blocking thread.
    let c = cache.clone();
    tokio::task::spawn_blocking(move || {
        companion_sync(&c, 1);
        let runs = stats(&c, "companion_sync").body_runs;
        let err = companion_sync_invalidate(&c, 1).expect_err("Redis is down");
        assert_eq!(companion_sync(&c, 1), "body 1");
        assert_eq!(
            stats(&c, "companion_sync").body_runs,
            runs + 1,
            "the local call after the invalidation missed ({err})"
        );
        let secret = "put-value-3b77e5";
        let err = companion_sync_put(&c, 2, secret.to_owned()).expect_err("Redis is down");
        assert_hides(&err, &[secret]);
        let runs = stats(&c, "companion_sync").body_runs;
        assert_eq!(companion_sync(&c, 2), secret);
        assert_eq!(stats(&c, "companion_sync").body_runs, runs);
    })
    .await
    .expect("no panic");

    // Back up: the companions succeed again.
    server.restart();
    let ok = eventually(RECOVERY, async || {
        companion_value_put(&cache, 3, "three".to_owned())
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "`_put` reaches Redis again");
    companion_value_invalidate(&cache, 3)
        .await
        .expect("`_invalidate` reaches Redis again");
}

// ---------------------------------------------------------------------------
// Credentials

#[cache(key = "a:<id>", ttl = 300, cache = cache)]
async fn auth_value(cache: &Cache, id: u64) -> String {
    format!("auth {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_password_protected_redis_works_and_a_wrong_password_is_never_shown() {
    const PREFIX: &str = "auth";
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let port = server.port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}/");
    let a = connect_url(&url, PREFIX).await;
    let b = connect_url(&url, PREFIX).await;
    let mut conn = RedisConn::connect(port).unwrap();
    assert!(conn.cmd(&["AUTH", "s3cret"]).unwrap().is_ok());
    let channel = format!("{PREFIX}:#events");
    let listening = eventually(RECOVERY, async || {
        let reply = conn.cmd(&["PUBSUB", "NUMSUB", channel.as_str()]).unwrap();
        reply.as_array().and_then(|r| r.get(1)?.as_int()) == Some(2)
    })
    .await;
    assert!(listening, "subscribers log in too");

    assert_eq!(auth_value(&a, 1).await, "auth 1");
    let key = redis_key(PREFIX, "a:1");
    assert_eq!(
        conn.cmd(&["EXISTS", key.as_str()]).unwrap().as_int(),
        Some(1)
    );
    assert_eq!(auth_value(&b, 1).await, "auth 1");
    assert_eq!(stats(&b, "auth_value").l2_hits, 1, "b read a's fill");
    auth_value_invalidate(&b, 1).await.expect("reaches Redis");
    let runs = stats(&a, "auth_value").body_runs;
    let a2 = a.clone();
    assert!(
        eventually(MESSAGE, async || {
            auth_value(&a2, 1).await;
            stats(&a2, "auth_value").body_runs > runs
        })
        .await,
        "b's invalidation reaches a"
    );

    let wrong = "wr0ng-pw-7d1e";
    for url in [
        format!("redis://:{wrong}@127.0.0.1:{port}/"),
        format!("redis://default:{wrong}@127.0.0.1:{port}/"),
        format!("redis://127.0.0.1:{port}/"),
    ] {
        let started = Instant::now();
        let err = Cache::builder()
            .redis(&url)
            .l2_timeout(L2_TIMEOUT)
            .build()
            .await
            .map(drop)
            .expect_err(&format!("{url} fails build()"));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_hides(&err, &[wrong, "s3cret"]);
    }
}

// ---------------------------------------------------------------------------
// G9: values written behind the cache's back

#[cache(key = "e:<id>", ttl = 300, cache = cache)]
async fn g9_value(cache: &Cache, id: u64) -> String {
    format!("value {id}")
}

/// The same key template with another value type: its entries are another
/// schema for `g9_value`.
#[cache(key = "e:<id>", ttl = 300, cache = cache)]
async fn g9_other_schema(cache: &Cache, id: u64) -> (u64, bool) {
    (id + 7, true)
}

/// Fills `g9_value` for `ids` through one cache, lets `corrupt(id, redis
/// key, stored bytes)` rewrite each entry behind the cache's back, then
/// checks G9 with two fresh caches (other processes): each read, all at
/// once, is a miss that runs the body and never panics; its fill replaces
/// the entry, so the next cache gets L2 hits.
async fn assert_g9(
    server: &RedisServer,
    prefix: &str,
    ids: Range<u64>,
    mut corrupt: impl FnMut(u64, &str, Vec<u8>),
) {
    let count = ids.end - ids.start;
    let writer = connect(server, prefix).await;
    let mut corrupted = HashMap::new();
    for id in ids.clone() {
        assert_eq!(g9_value(&writer, id).await, format!("value {id}"));
        let key = redis_key(prefix, &g9_value_key(&writer, id));
        let stored = get_bytes(server, &key).expect("the fill reached Redis");
        assert_eq!(stored[0], FORMAT_V1);
        corrupt(id, &key, stored);
        corrupted.insert(id, server.cmd(&["DUMP", key.as_str()]).unwrap());
    }

    let reader = connect(server, prefix).await;
    let reads: Vec<_> = ids
        .clone()
        .map(|id| {
            let reader = reader.clone();
            tokio::spawn(async move { (id, g9_value(&reader, id).await) })
        })
        .collect();
    for read in reads {
        let (id, got) = read.await.expect("no panic");
        assert_eq!(got, format!("value {id}"));
    }
    let s = stats(&reader, "g9_value");
    assert_eq!(
        (s.l2_hits, s.misses, s.body_runs),
        (0, count, count),
        "each corrupt entry is a miss that runs the body"
    );
    for id in ids.clone() {
        let key = redis_key(prefix, &g9_value_key(&reader, id));
        let stored = get_bytes(server, &key).expect("the fill replaced the entry");
        assert_eq!(stored[0], FORMAT_V1, "id {id}");
        assert_ne!(
            server.cmd(&["DUMP", key.as_str()]).unwrap(),
            corrupted[&id],
            "id {id}: the entry was overwritten"
        );
    }

    let next = connect(server, prefix).await;
    for id in ids {
        assert_eq!(g9_value(&next, id).await, format!("value {id}"));
    }
    let s = stats(&next, "g9_value");
    assert_eq!(
        (s.l2_hits, s.misses, s.body_runs),
        (count, 0, 0),
        "the replacement decodes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_random_bytes_are_a_miss_and_are_overwritten() {
    let server = RedisServer::start();
    let mut rng = fastrand::Rng::with_seed(9);
    assert_g9(&server, "g9r", 0..24, |id, key, _| {
        let mut bytes: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        // Some start like an envelope, and one is empty.
        if id.is_multiple_of(3) && !bytes.is_empty() {
            bytes[0] = FORMAT_V1;
        }
        if id == 1 {
            bytes.clear();
        }
        set_bytes(&server, key, &bytes);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_a_truncated_or_padded_envelope_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    assert_g9(&server, "g9t", 0..6, |id, key, mut bytes| {
        let len = bytes.len();
        match id {
            0 => bytes.truncate(1),
            1 => bytes.truncate(10),
            2 => bytes.truncate(len / 2),
            3 => bytes.truncate(len - 1),
            4 => bytes.truncate(len - 4),
            _ => bytes.push(0),
        }
        set_bytes(&server, key, &bytes);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_another_envelope_format_or_codec_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    assert_g9(&server, "g9f", 0..4, |id, key, mut bytes| {
        match id {
            0 => bytes[0] = FORMAT_V1 + 1,
            1 => bytes[0] = 0,
            // The codec id: postcard's, and one no codec has.
            2 => bytes[1] = 2,
            _ => bytes[1] = 0xEE,
        }
        set_bytes(&server, key, &bytes);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_a_value_of_another_schema_is_a_miss_and_is_overwritten() {
    const PREFIX: &str = "g9s";
    let server = RedisServer::start();
    let other = connect(&server, PREFIX).await;
    let mut foreign = HashMap::new();
    for id in 0..4 {
        assert_eq!(g9_other_schema(&other, id).await, (id + 7, true));
        let key = redis_key(PREFIX, &g9_other_schema_key(&other, id));
        foreign.insert(id, get_bytes(&server, &key).expect("stored"));
    }
    assert_g9(&server, PREFIX, 0..4, |id, key, _| {
        set_bytes(&server, key, &foreign[&id]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_a_key_of_another_redis_type_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    assert_g9(&server, "g9k", 0..8, |id, key, _| {
        server.cmd(&["DEL", key]).unwrap();
        let reply = match id % 4 {
            0 => server.cmd(&["LPUSH", key, "x"]),
            1 => server.cmd(&["HSET", key, "field", "x"]),
            2 => server.cmd(&["SADD", key, "x"]),
            _ => server.cmd(&["ZADD", key, "1", "x"]),
        };
        assert_eq!(reply.unwrap().as_int(), Some(1));
    })
    .await;
}

#[cache(key = "big:<id>", ttl = 300, skip(len), cache = cache)]
async fn g9_sized(cache: &Cache, id: u64, len: usize) -> String {
    let _ = id;
    "x".repeat(len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_a_value_over_max_value_size_is_a_miss_and_is_overwritten() {
    const PREFIX: &str = "g9m";
    let server = RedisServer::start();
    // Sizes as encoded: the repeated text would compress below the maximum.
    let uncompressed = |builder: cachette::Builder| {
        #[cfg(feature = "compression")]
        let builder = builder.compress_above(usize::MAX);
        builder
    };
    let small = async || {
        uncompressed(Cache::builder())
            .prefix(PREFIX)
            .redis(server.url())
            .l2_timeout(L2_TIMEOUT)
            .max_value_size(1_024)
            .build()
            .await
            .expect("connects")
    };
    // Another process, allowed larger values, stores a big one.
    let big = uncompressed(Cache::builder())
        .prefix(PREFIX)
        .redis(server.url())
        .l2_timeout(L2_TIMEOUT)
        .build()
        .await
        .expect("connects");
    assert_eq!(g9_sized(&big, 1, 4_096).await.len(), 4_096);
    let key = redis_key(PREFIX, &g9_sized_key(&big, 1));
    let stored = get_bytes(&server, &key).expect("stored");
    assert!(stored.len() > 4_096 && stored[0] == FORMAT_V1);

    // Read with a 1 KiB maximum: a miss; the body's small value replaces it.
    let reader = small().await;
    assert_eq!(g9_sized(&reader, 1, 10).await, "x".repeat(10));
    let s = stats(&reader, "g9_sized");
    assert_eq!((s.l2_hits, s.misses, s.body_runs), (0, 1, 1));
    let stored = get_bytes(&server, &key).expect("replaced");
    assert!(stored.len() < 1_024 && stored[0] == FORMAT_V1);

    let next = small().await;
    assert_eq!(g9_sized(&next, 1, 10).await, "x".repeat(10));
    let s = stats(&next, "g9_sized");
    assert_eq!((s.l2_hits, s.body_runs), (1, 0), "the replacement decodes");

    // A value over the maximum is never stored: it stays in L1.
    assert_eq!(g9_sized(&next, 2, 4_096).await.len(), 4_096);
    assert!(!exists(&server, &redis_key(PREFIX, "big:2")));
    assert_eq!(g9_sized(&next, 2, 4_096).await.len(), 4_096);
    assert_eq!(stats(&next, "g9_sized").l1_hits, 1);
}

// ---------------------------------------------------------------------------
// P4 flavour: with Redis down and the breaker open, a call costs little
// more than its body. The precise figure belongs to a benchmark; this only
// catches a call that still pays for Redis.

#[cache(key = "l2only:<id>", ttl = 300, tier = "l2", cache = cache)]
async fn p4_l2_only(cache: &Cache, id: u64) -> u64 {
    id
}

#[cache(key = "both:<id>", ttl = 300, cache = cache)]
async fn p4_both(cache: &Cache, id: u64) -> u64 {
    id
}

#[cache(key = "sync:<id>", ttl = 300, tier = "l2", cache = cache)]
fn p4_sync(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test(flavor = "current_thread")]
async fn p4_with_redis_down_and_the_breaker_open_calls_cost_little_more_than_their_body() {
    const CALLS: u64 = 10_000;
    const BOUND: Duration = Duration::from_secs(2);
    let server = RedisServer::start();
    let cache = connect(&server, "p4").await;
    assert_eq!(p4_both(&cache, 0).await, 0);
    server.kill();
    // A few failures open the breaker.
    for id in 1..=5 {
        assert_eq!(p4_both(&cache, id).await, id);
    }

    let started = Instant::now();
    for _ in 0..CALLS {
        assert_eq!(p4_l2_only(&cache, 1).await, 1);
    }
    let l2_only = started.elapsed();
    assert_eq!(stats(&cache, "p4_l2_only").body_runs, CALLS, "all misses");

    let started = Instant::now();
    for id in 100..100 + CALLS {
        assert_eq!(p4_both(&cache, id).await, id);
    }
    let both = started.elapsed();

    let started = Instant::now();
    for _ in 0..CALLS {
        assert_eq!(p4_sync(&cache, 1), 1);
    }
    let sync = started.elapsed();
    assert_eq!(stats(&cache, "p4_sync").body_runs, CALLS, "all misses");
    eprintln!(
        "{CALLS} calls with the breaker open: tier=l2 {l2_only:?}, both {both:?}, sync tier=l2 {sync:?}"
    );
    assert!(l2_only < BOUND, "tier = \"l2\": {l2_only:?}");
    assert!(both < BOUND, "tier = \"both\", each a miss: {both:?}");
    assert!(sync < BOUND, "sync, tier = \"l2\": {sync:?}");
}

// ---------------------------------------------------------------------------
// A URL that is not a Redis URL

#[tokio::test]
async fn a_url_that_is_not_a_redis_url_is_a_configuration_error_that_names_the_form() {
    for url in [
        "127.0.0.1:6379",
        "http://127.0.0.1:6379/",
        "http://user:hunter2secret@127.0.0.1:6379/",
    ] {
        let err = Cache::builder()
            .redis(url)
            .build()
            .await
            .expect_err("not a Redis URL");
        assert!(
            matches!(err, cachette::Error::InvalidConfig(_)),
            "{url}: {err:?}"
        );
        let shown = err.to_string();
        assert!(shown.contains("expected redis://"), "{url}: {shown}");
        assert_hides(&err, &["hunter2secret"]);
    }
    // A `String` will do as well as a `&str`.
    let owned = String::from("127.0.0.1:6379");
    let err = Cache::builder()
        .redis(owned)
        .build()
        .await
        .expect_err("not a Redis URL");
    assert!(err.to_string().contains("expected redis://"), "{err}");
}
