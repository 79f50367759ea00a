#![cfg(feature = "redis")]
//! The cross-process single-flight lock against a real `redis-server`, with
//! the faults that used to orphan it: a `SET NX` whose reply comes back
//! after `l2_timeout` (the lock is taken, but its taker never heard), and an
//! unlock lost with its connection. Neither may leave a lock that stalls
//! the key in another process for `lock_timeout` (5 s here): an unanswered
//! lock is released by its token after the body, a release cut once with
//! its connection is sent again, and a lock whose release was lost ends
//! within its lease (1 s: `max(min(lock_timeout, 1 s), 4 ×
//! l2_timeout)`), because nobody renews it any more.
//!
//! Process A reaches Redis through a [`FaultProxy`]; process B (another
//! `Cache`) connects directly, invalidates the key A loaded, so that it must
//! load it too, and times its load. Every wait is bounded.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cachette::{cache, Cache, FunctionStats};
use support::proxy::FaultProxy;
use support::redis::{RedisServer, RespValue};
use support::wait::eventually;

const L2_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a waiter waits at most for another process's lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// A lock's lease: `max(min(lock_timeout, 1 s), 4 × l2_timeout)`.
const LEASE: Duration = Duration::from_secs(1);
/// How late the reply to a held `SET NX` arrives: well past `l2_timeout`.
const LATE: Duration = Duration::from_millis(150);
/// How long A's body runs.
const BODY: Duration = Duration::from_millis(300);
/// The longest B may wait for a lock orphaned by A: one lease, one poll of
/// the waiter (at most 250 ms), and a margin; far below `lock_timeout`.
const WAIT_BOUND: Duration = Duration::from_millis(1_500);

/// Every body run, across the functions here: each run returns a new value.
static RUNS: AtomicU64 = AtomicU64::new(0);

#[cache(key = "item:<id>", ttl = 300, lock, tier = "both", skip(body), cache = cache)]
async fn item(cache: &Cache, id: u64, body: Duration) -> u64 {
    tokio::time::sleep(body).await;
    RUNS.fetch_add(1, SeqCst) + 1
}

#[cache(key = "shared:<id>", ttl = 300, lock, tier = "l2", skip(body), cache = cache)]
async fn shared(cache: &Cache, id: u64, body: Duration) -> u64 {
    tokio::time::sleep(body).await;
    RUNS.fetch_add(1, SeqCst) + 1
}

async fn connect(url: &str, prefix: &str) -> Cache {
    Cache::builder()
        .prefix(prefix)
        .redis(url)
        .l2_timeout(L2_TIMEOUT)
        .lock_timeout(LOCK_TIMEOUT)
        .build()
        .await
        .expect("connects to the test's Redis")
}

/// The lock of `function`'s entry for `id` (no namespace, version 1): the
/// prefix, `#lock:`, then the entry key.
fn lock_key(prefix: &str, function: &str, id: u64) -> String {
    format!("{prefix}:#lock:{prefix}:v1:{function}:{id}")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whether a client's chunk holds a lock's `SET key token NX PX ms`.
fn is_lock_set(sent: &[u8]) -> bool {
    contains(sent, b"\r\nSET\r\n") && contains(sent, b"\r\nNX\r\n") && contains(sent, b"#lock:")
}

/// Whether a client's chunk holds a lock's release: the compare-and-delete
/// script on the lock key with its token (`EVALSHA sha 1 key token`, five
/// words; the renewal has a sixth, its lease).
fn is_unlock(sent: &[u8]) -> bool {
    (contains(sent, b"*5\r\n$7\r\nEVALSHA\r\n") || contains(sent, b"*5\r\n$4\r\nEVAL\r\n"))
        && contains(sent, b"#lock:")
}

/// Whether `key` exists; panics when Redis does not answer.
fn exists(server: &RedisServer, key: &str) -> bool {
    let reply = server.cmd(&["EXISTS", key]).expect("EXISTS answered");
    reply
        .as_int()
        .unwrap_or_else(|| panic!("EXISTS replied {reply:?}"))
        == 1
}

/// The time `key` has left, in ms (`-2` absent, `-1` no expiry).
fn pttl(server: &RedisServer, key: &str) -> i64 {
    match server.cmd(&["PTTL", key]).expect("PTTL answered") {
        RespValue::Integer(ms) => ms,
        other => panic!("PTTL replied {other:?}"),
    }
}

fn stats(cache: &Cache, function: &str) -> FunctionStats {
    cache
        .stats()
        .function(&format!("l2_locks::{function}"))
        .cloned()
        .unwrap_or_default()
}

/// B invalidates `item(id)` (so that it must load it, A's entry being
/// covered) and loads it with a body that takes no time: how long the load
/// took, which is how long it waited for a lock. Checks that B ran the body.
async fn b_loads_item(b: &Cache, id: u64) -> Duration {
    item_invalidate(b, id).await.expect("B invalidates");
    let runs = stats(b, "item").body_runs;
    let started = Instant::now();
    let _ = item(b, id, Duration::ZERO).await;
    let took = started.elapsed();
    assert_eq!(stats(b, "item").body_runs, runs + 1, "B loaded the key");
    took
}

/// [`b_loads_item`] for `shared`.
async fn b_loads_shared(b: &Cache, id: u64) -> Duration {
    shared_invalidate(b, id).await.expect("B invalidates");
    let runs = stats(b, "shared").body_runs;
    let started = Instant::now();
    let _ = shared(b, id, Duration::ZERO).await;
    let took = started.elapsed();
    assert_eq!(stats(b, "shared").body_runs, runs + 1, "B loaded the key");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_set_was_answered_late_is_released_after_the_body() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let a = connect(&proxy.url(), "late").await;
    let b = connect(&server.url(), "late").await;
    let id = 1;
    let lock = lock_key("late", "item", id);

    // The reply to A's `SET NX` comes back 150 ms late, after A gave up on
    // it at 50 ms; Redis took the lock meanwhile.
    proxy.hold_replies_after(is_lock_set, LATE);
    let errors = stats(&a, "item").l2_errors;
    let load = {
        let a = a.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let value = item(&a, id, BODY).await;
            (value, started.elapsed())
        })
    };
    assert!(
        eventually(BODY, async || exists(&server, &lock)).await,
        "A's lock {lock} never appeared in Redis"
    );
    let (first, took) = load.await.expect("A's load returns");
    eprintln!("A's load took {took:?}");
    assert_eq!(proxy.fired(), 1, "the lock's reply was held");
    assert!(
        stats(&a, "item").l2_errors > errors,
        "A heard nothing of its `SET NX` in time"
    );
    assert!(
        !exists(&server, &lock),
        "A left its unanswered lock behind (PTTL {} ms)",
        pttl(&server, &lock)
    );

    let waited = b_loads_item(&b, id).await;
    eprintln!("B loaded the key in {waited:?}");
    assert!(
        waited < WAIT_BOUND,
        "B waited {waited:?} for a lock A no longer held"
    );
    assert_ne!(
        item(&b, id, Duration::ZERO).await,
        first,
        "B has its own value"
    );
    assert!(!exists(&server, &lock), "B released its lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_release_was_lost_with_its_connection_ends_within_its_lease() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let a = connect(&proxy.url(), "lost").await;
    let b = connect(&server.url(), "lost").await;
    let id = 2;
    let lock = lock_key("lost", "item", id);

    // A's release never reaches Redis: its connection is reset under it,
    // and again under the one retry the library makes.
    proxy.cut_at(is_unlock);
    proxy.cut_at(is_unlock);
    let started = Instant::now();
    let _ = item(&a, id, BODY).await;
    eprintln!("A's load took {:?}", started.elapsed());
    assert_eq!(proxy.fired(), 2, "A's release and its retry were cut");
    let left = pttl(&server, &lock);
    eprintln!("A's lost release left the lock for {left} ms");
    assert!(
        left > 0,
        "the scenario did not happen: the lock is gone (PTTL {left})"
    );
    assert!(
        left <= LEASE.as_millis() as i64,
        "the lock outlives its holder by {left} ms, more than a lease ({LEASE:?})"
    );

    let waited = b_loads_item(&b, id).await;
    eprintln!("B loaded the key in {waited:?}");
    assert!(
        waited < WAIT_BOUND,
        "B waited {waited:?} for a lock whose holder was gone (lock_timeout {LOCK_TIMEOUT:?})"
    );
    assert!(!exists(&server, &lock), "B released its lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cut_once_with_its_connection_is_sent_again() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let a = connect(&proxy.url(), "retried").await;
    let b = connect(&server.url(), "retried").await;
    let id = 3;
    let lock = lock_key("retried", "item", id);

    proxy.cut_at(is_unlock);
    let _ = item(&a, id, BODY).await;
    assert_eq!(proxy.fired(), 1, "A's first release was cut");
    assert!(
        !exists(&server, &lock),
        "A's retried release did not free the lock (PTTL {} ms)",
        pttl(&server, &lock)
    );
    let waited = b_loads_item(&b, id).await;
    eprintln!("B loaded the key in {waited:?}");
    assert!(
        waited < Duration::from_millis(200),
        "B waited {waited:?} although A released its lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_many_resets_no_load_waits_longer_than_a_lease_for_a_lost_lock() {
    const ROUNDS: u64 = 10;
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let a = connect(&proxy.url(), "resets").await;
    let b = connect(&server.url(), "resets").await;
    let body = Duration::from_millis(200);
    let (mut worst, mut orphans) = (Duration::ZERO, 0);
    for round in 0..ROUNDS {
        let id = 100 + round;
        let lock = lock_key("resets", "shared", id);
        // Even rounds: A's release (and its one retry) is cut, with its
        // connection. Odd rounds:
        // every connection of A resets while its body runs, at a different
        // moment each round, and whatever comes of its release is left to
        // the library.
        let reset_at = match round % 2 {
            0 => {
                proxy.cut_at(is_unlock);
                proxy.cut_at(is_unlock);
                None
            }
            _ => Some(Duration::from_millis(20 + 35 * (round / 2))),
        };
        let load = {
            let a = a.clone();
            tokio::spawn(async move { shared(&a, id, body).await })
        };
        let reset = match reset_at {
            Some(at) => {
                tokio::time::sleep(at).await;
                proxy.reset()
            }
            None => 0,
        };
        let _ = load.await.expect("A's load returns");
        proxy.disarm();
        let left = pttl(&server, &lock);
        assert!(
            left <= LEASE.as_millis() as i64,
            "round {round}: the lock outlives A by {left} ms, more than a lease"
        );
        if reset_at.is_none() {
            assert!(
                left > 0,
                "round {round}: the release was not lost (PTTL {left})"
            );
        }
        orphans += u32::from(left > 0);

        let waited = b_loads_shared(&b, id).await;
        eprintln!(
            "round {round}: {}; lock left {left} ms; B waited {waited:?}",
            match reset_at {
                Some(at) => format!("{reset} connections reset {at:?} into the body"),
                None => "release cut".to_owned(),
            }
        );
        worst = worst.max(waited);
        assert!(
            waited < WAIT_BOUND,
            "round {round}: B waited {waited:?} for a lock whose holder was gone"
        );
        assert!(
            !exists(&server, &lock),
            "round {round}: B released its lock"
        );
    }
    eprintln!("worst wait {worst:?}; {orphans} of {ROUNDS} rounds left a lock behind");
    assert!(worst < WAIT_BOUND, "worst wait {worst:?}");
    assert_eq!(
        proxy.fired(),
        ROUNDS as usize,
        "every even round's release and its retry were cut"
    );
}
