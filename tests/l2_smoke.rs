//! The shared tier end to end against a real Redis: two caches stand for two
//! processes sharing one server.

#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::{cache, Cache};
use support::cache::redis_cache;
use support::redis::RedisServer;
use support::wait::eventually;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "user:<id>", ttl = 300, tags = ["users"], cache = cache)]
async fn user(cache: &Cache, id: u64) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("user {id}")
}

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "item:<id>", ttl = 300, namespace = "items", cache = cache)]
fn item(cache: &Cache, id: u64) -> Option<u64> {
    SYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    Some(id * 10)
}

async fn process(server: &RedisServer) -> Cache {
    redis_cache(&server.url(), "smoke", Duration::from_millis(500), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_filled_by_one_process_is_served_to_another_and_invalidated_for_both() {
    let server = RedisServer::start();
    let a = process(&server).await;
    let b = process(&server).await;

    assert_eq!(user(&a, 1).await, "user 1");
    assert_eq!(user(&b, 1).await, "user 1");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "b read a's fill from Redis");
    let stats = b.stats();
    let s = stats.function("l2_smoke::user").expect("stats");
    assert_eq!((s.l2_hits, s.misses), (1, 0));
    let exists = server.cmd(&["EXISTS", "smoke:v1:user:1"]).unwrap();
    assert_eq!(exists.as_int(), Some(1), "the documented key form");

    // b now holds it in L1 too; a's invalidation reaches it.
    user_invalidate(&a, 1).await.unwrap();
    let before = RUNS.load(Ordering::SeqCst);
    let b2 = b.clone();
    assert!(
        eventually(Duration::from_secs(3), async || {
            user(&b2, 1).await;
            RUNS.load(Ordering::SeqCst) > before
        })
        .await,
        "b misses once the invalidation message arrives"
    );

    // A tag invalidated by b reaches a.
    user(&a, 2).await;
    b.invalidate_tag("users").await.unwrap();
    let before = RUNS.load(Ordering::SeqCst);
    let a2 = a.clone();
    assert!(
        eventually(Duration::from_secs(3), async || {
            user(&a2, 2).await;
            RUNS.load(Ordering::SeqCst) > before
        })
        .await
    );
}

#[test]
fn a_sync_function_uses_the_shared_tier_outside_any_runtime() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(process(&server));
    let b = rt.block_on(process(&server));
    drop(rt);
    assert_eq!(item(&a, 4), Some(40));
    assert_eq!(item(&b, 4), Some(40));
    assert_eq!(SYNC_RUNS.load(Ordering::SeqCst), 1);
    let keys = server.cmd(&["KEYS", "smoke:items@*"]).unwrap();
    let keys: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["smoke:items@0:v1:item:4"]);
    a.invalidate_namespace_blocking("items").unwrap();
    assert_eq!(item(&a, 4), Some(40));
    assert_eq!(SYNC_RUNS.load(Ordering::SeqCst), 2);
}

static HELD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "doc:<id>", ttl = 300, tags = ["docs"], cache = cache, skip(gate))]
async fn held_doc(cache: &Cache, id: u64, gate: std::sync::Arc<tokio::sync::Notify>) -> String {
    let run = HELD_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if run == 1 {
        gate.notified().await;
    }
    format!("doc {id} run {run}")
}

/// Another process's invalidation whose message has not arrived yet: the
/// generation moved in Redis, nobody told this process. A load that was in
/// flight meanwhile must not leave its value servable in this process's L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_a_fill_racing_an_unannounced_invalidation_is_not_served_from_l1() {
    let server = RedisServer::start();
    let b = process(&server).await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let load = {
        let (b, gate) = (b.clone(), gate.clone());
        tokio::spawn(async move { held_doc(&b, 1, gate).await })
    };
    assert!(
        eventually(Duration::from_secs(10), async || {
            HELD_RUNS.load(Ordering::SeqCst) == 1
        })
        .await,
        "the load enters its body"
    );
    // The invalidation, minus its message.
    let bumped = server.cmd(&["INCR", "smoke:#gen:tag:docs"]).unwrap();
    assert!(bumped.as_int().is_some());
    gate.notify_one();
    assert_eq!(
        load.await.unwrap(),
        "doc 1 run 1",
        "the old caller gets its read"
    );
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    assert_eq!(
        held_doc(&b, 1, gate).await,
        "doc 1 run 2",
        "not served again"
    );
}

static HOT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "hot:<id>", ttl = 300, lock, cache = cache)]
async fn hot(cache: &Cache, id: u64) -> u64 {
    HOT_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id
}

/// `GET` calls the server has answered so far.
fn gets(server: &RedisServer) -> u64 {
    let info = server.info("commandstats").unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// With `lock`, only the leader of a process's flight reads Redis: a
/// stampede costs the shared tier one load's reads, not three per caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_a_cold_locked_key_reads_redis_once_per_process() {
    let server = RedisServer::start();
    let a = process(&server).await;
    let before = gets(&server);
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { hot(&a, 9).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 9);
    }
    assert_eq!(HOT_RUNS.load(Ordering::SeqCst), 1);
    // One load's steps (learn, read, re-read under the lock, re-check
    // after the fill) take a few GETs; one read per caller would be 600.
    let reads = gets(&server) - before;
    assert!(reads < 20, "{reads} GETs for 200 callers");
}
