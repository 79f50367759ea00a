//! The cross-process guarantees (G5, G6, G7, and the `CacheLayer`'s fill
//! lock) against a real `redis-server`, with real processes: a test
//! re-executes this test binary to run
//! [`child_process`] in child processes, each with a `Cache` of its own on
//! the same Redis. Body runs are counted in Redis itself, so every process
//! adds to one count; children report what they saw through Redis too.
//!
//! A child is told what to do by environment variables ([`ROLE`],
//! [`PORT`]); without them `child_process` does nothing, so it passes when
//! the whole binary runs. Every wait is bounded and a child that outlives its
//! test is killed when the test's handle on it drops.

#![cfg(feature = "redis")]

mod support;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachette::{cache, Cache};
use support::cache::redis_cache;
use support::child::ChildProcess;
use support::redis::{redis_cmd, RedisConn, RedisServer, RespValue};
use support::wait::eventually_blocking_every;

/// What a child process does.
const ROLE: &str = "CACHETTE_TEST_CHILD_ROLE";
/// The port of the Redis the child shares with its parent.
const PORT: &str = "CACHETTE_TEST_CHILD_REDIS_PORT";
/// The test a child process runs.
const CHILD_TEST: &str = "child_process";
/// The prefix every cache of these tests uses.
const PREFIX: &str = "procs";

// ---------------------------------------------------------------------------
// Talking to Redis behind the caches' back.

fn cmd<A: AsRef<[u8]>>(port: u16, args: &[A]) -> RespValue {
    redis_cmd(port, args).unwrap_or_else(|e| panic!("redis on port {port}: {e}"))
}

fn get_string(port: u16, key: &str) -> Option<String> {
    cmd(port, &["GET", key]).as_str().map(str::to_owned)
}

fn get_int(port: u16, key: &str) -> i64 {
    get_string(port, key).map_or(0, |text| text.parse().expect("an integer"))
}

fn list(port: u16, key: &str) -> Vec<String> {
    match cmd(port, &["LRANGE", key, "0", "-1"]) {
        RespValue::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        other => panic!("LRANGE {key} replied {other:?}"),
    }
}

/// How many clients listen on the caches' invalidation channel.
fn subscribers(port: u16) -> i64 {
    let channel = format!("{PREFIX}:#events");
    match cmd(port, &["PUBSUB", "NUMSUB", &channel]) {
        RespValue::Array(items) => items.get(1).and_then(RespValue::as_int).unwrap_or(0),
        other => panic!("PUBSUB NUMSUB replied {other:?}"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Polls `check` every 5 ms until it holds; panics after `limit`.
fn wait_until(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    let held = eventually_blocking_every(Duration::from_millis(5), limit, check);
    assert!(held, "waited {limit:?} for {what}");
}

/// A value standing for the database: what a body reads.
fn source(port: u16, name: &str) -> String {
    get_string(port, &format!("db:{name}")).unwrap_or_else(|| format!("no db:{name}"))
}

async fn process_cache(port: u16, lock_timeout: Duration) -> Cache {
    let url = format!("redis://127.0.0.1:{port}/");
    redis_cache(&url, PREFIX, Duration::from_secs(1), Some(lock_timeout)).await
}

// ---------------------------------------------------------------------------
// Child processes.

/// A child process running [`child_process`] in `role`, on the Redis at
/// `port`; killed (SIGKILL) when dropped while it runs.
fn spawn_child(role: &str, port: u16) -> ChildProcess {
    ChildProcess::spawn(
        role,
        CHILD_TEST,
        &[(ROLE, role.to_owned()), (PORT, port.to_string())],
    )
}

/// The entry point of child processes: does nothing unless a parent test
/// set [`ROLE`].
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let port: u16 = std::env::var(PORT)
        .expect("the parent passes the Redis port")
        .parse()
        .expect("a port");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        match role.as_str() {
            "g5_caller" => g5_caller(port).await,
            "g5_holder" | "g5_waiter" => g5_lock_timeout_child(port, &role).await,
            "g6_reader" => g6_reader(port).await,
            "g7_loader" => g7_loader(port).await,
            "g11_caller" => g11_caller(port).await,
            "tag_reader" => tag_reader(port).await,
            #[cfg(feature = "axum")]
            "layer_caller" => layer::caller(port).await,
            other => panic!("unknown role {other}"),
        }
    });
}

// ---------------------------------------------------------------------------
// G5: one body run across processes.

/// Counts its runs in Redis (`runs` and `runs:<role>`) and takes 300 ms. The
/// holder of the lock-timeout test marks that it is inside and then hangs
/// until it is killed.
#[cache(key = "report:<id>", ttl = 300, lock, skip(port, role), cache = cache)]
async fn report(cache: &Cache, port: u16, role: &str, id: u64) -> String {
    let run = cmd(port, &["INCR", "runs"]).as_int().expect("INCR");
    cmd(port, &["INCR", &format!("runs:{role}")]);
    if role == "g5_holder" {
        cmd(port, &["SET", "holder_in_body", &now_ms().to_string()]);
        tokio::time::sleep(Duration::from_secs(20)).await;
        cmd(port, &["SET", "holder_finished", "1"]);
    } else {
        cmd(port, &["RPUSH", "waiter_bodies", &now_ms().to_string()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    format!(
        "report {id} from run {run} in {role} {}",
        std::process::id()
    )
}

const G5_PROCESSES: usize = 4;
const G5_TASKS: usize = 8;

/// Gets ready, waits for the parent's `go`, then calls the cold key from
/// several tasks at once; reports what they got.
async fn g5_caller(port: u16) {
    let cache = process_cache(port, Duration::from_secs(3)).await;
    let mut conn = RedisConn::connect(port).expect("connects");
    conn.cmd(&["INCR", "ready"]).expect("INCR");
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.cmd(&["GET", "go"]).expect("GET").as_str().is_none() {
        assert!(Instant::now() < deadline, "no go from the parent");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let tasks: Vec<_> = (0..G5_TASKS)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { report(&cache, port, "g5_caller", 7).await })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.expect("a task"));
    }
    for value in &values {
        conn.cmd(&["RPUSH", "values", value]).expect("RPUSH");
    }
    let stats = cache.stats();
    let s = stats.function("l2_processes::report").expect("stats");
    conn.cmd(&["INCRBY", "stat_body_runs", &s.body_runs.to_string()])
        .expect("INCRBY");
}

#[test]
fn g5_processes_sharing_redis_run_a_cold_keys_body_once() {
    let server = RedisServer::start();
    let port = server.port();
    let children: Vec<ChildProcess> = (0..G5_PROCESSES)
        .map(|_| spawn_child("g5_caller", port))
        .collect();
    wait_until(Duration::from_secs(15), "every child to be ready", || {
        get_int(port, "ready") == G5_PROCESSES as i64
    });
    cmd(port, &["SET", "go", "1"]);
    for child in children {
        child.succeeds(Duration::from_secs(15));
    }

    assert_eq!(
        get_int(port, "runs"),
        1,
        "{G5_PROCESSES} processes x {G5_TASKS} tasks ran the body once in total"
    );
    assert_eq!(get_int(port, "stat_body_runs"), 1, "and their stats agree");
    let values = list(port, "values");
    assert_eq!(values.len(), G5_PROCESSES * G5_TASKS);
    assert!(
        values.iter().all(|v| *v == values[0]),
        "every caller got the one run's value: {values:?}"
    );
}

/// The holder calls the key as soon as the parent says `go` and hangs in
/// the body; waiters call it once the holder is inside, and count
/// themselves in `waiters_at_lock` once their call has missed both tiers
/// (their stats say so) and so goes on to the cross-process lock.
async fn g5_lock_timeout_child(port: u16, role: &str) {
    let cache = process_cache(port, Duration::from_millis(500)).await;
    let mut conn = RedisConn::connect(port).expect("connects");
    conn.cmd(&["INCR", "ready"]).expect("INCR");
    let signal = if role == "g5_holder" {
        "go"
    } else {
        "holder_in_body"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.cmd(&["GET", signal]).expect("GET").as_str().is_none() {
        assert!(Instant::now() < deadline, "no {signal}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let call = {
        let (cache, role) = (cache.clone(), role.to_owned());
        tokio::spawn(async move { report(&cache, port, &role, 9).await })
    };
    if role == "g5_waiter" {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache
            .stats()
            .function("l2_processes::report")
            .is_none_or(|s| s.misses == 0)
        {
            assert!(Instant::now() < deadline, "the call never missed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.cmd(&["INCR", "waiters_at_lock"]).expect("INCR");
    }
    let value = call.await.expect("the call");
    let elapsed = started.elapsed().as_millis().to_string();
    conn.cmd(&["RPUSH", "waiter_values", &value])
        .expect("RPUSH");
    conn.cmd(&["RPUSH", "waiter_elapsed", &elapsed])
        .expect("RPUSH");
}

#[test]
fn g5_a_waiter_runs_the_body_itself_after_the_lock_timeout_when_the_holder_is_killed() {
    const WAITERS: usize = 3;
    let server = RedisServer::start();
    let port = server.port();
    let mut holder = spawn_child("g5_holder", port);
    let waiters: Vec<ChildProcess> = (0..WAITERS)
        .map(|_| spawn_child("g5_waiter", port))
        .collect();
    wait_until(Duration::from_secs(15), "every child to be ready", || {
        get_int(port, "ready") == 1 + WAITERS as i64
    });
    cmd(port, &["SET", "go", "1"]);
    wait_until(
        Duration::from_secs(10),
        "the holder to enter the body",
        || get_string(port, "holder_in_body").is_some(),
    );
    let holder_started: u64 = get_int(port, "holder_in_body") as u64;
    // Once every waiter's call has gone on to the lock, the holder dies
    // mid-body, still holding it.
    wait_until(
        Duration::from_secs(10),
        "every waiter to reach the lock",
        || get_int(port, "waiters_at_lock") == WAITERS as i64,
    );
    holder.kill();
    let killed = Instant::now();

    for waiter in waiters {
        waiter.succeeds(Duration::from_secs(10));
    }
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "the waiters went on within a bounded time"
    );
    assert!(holder
        .wait(Duration::from_secs(1))
        .is_some_and(|s| !s.success()));
    assert_eq!(get_string(port, "holder_finished"), None, "killed mid-body");
    assert_eq!(get_int(port, "runs:g5_holder"), 1);
    let waiter_runs = get_int(port, "runs:g5_waiter");
    assert!(
        (1..=WAITERS as i64).contains(&waiter_runs),
        "a waiter ran the body itself: {waiter_runs}"
    );
    // No waiter got the lock before the dead holder's lock timed out.
    let first_waiter_body = list(port, "waiter_bodies")
        .iter()
        .map(|t| t.parse::<u64>().expect("a time"))
        .min()
        .expect("a waiter's body ran");
    assert!(
        first_waiter_body >= holder_started + 450,
        "a waiter ran the body {} ms after the holder, before the 500 ms lock timeout",
        first_waiter_body.saturating_sub(holder_started)
    );
    let values = list(port, "waiter_values");
    assert_eq!(values.len(), WAITERS);
    assert!(
        values.iter().all(|v| v.contains("in g5_waiter")),
        "every waiter got a waiter's value: {values:?}"
    );
}

// ---------------------------------------------------------------------------
// CacheLayer: one service call across processes for a cold URL.

#[cfg(feature = "axum")]
mod layer {
    use super::*;

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use cachette::http::CacheLayer;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    pub(super) const PROCESSES: usize = 3;
    pub(super) const TASKS: usize = 8;

    /// A service whose one route counts its calls in Redis and takes
    /// 300 ms, behind a `CacheLayer` on this process's cache.
    fn app(cache: &Cache, port: u16) -> Router {
        let page = move || async move {
            let run = cmd(port, &["INCR", "layer_runs"]).as_int().expect("INCR");
            tokio::time::sleep(Duration::from_millis(300)).await;
            (
                [(header::CACHE_CONTROL, "max-age=60")],
                format!("page from run {run} in {}", std::process::id()),
            )
        };
        Router::new()
            .route("/page", get(page))
            .layer(CacheLayer::new(cache.clone()))
            .with_state(())
    }

    /// Gets ready, waits for the parent's `go`, then requests the cold URL
    /// from several tasks at once; reports the bodies and `X-Cache`s.
    pub(super) async fn caller(port: u16) {
        let cache = process_cache(port, Duration::from_secs(3)).await;
        let app = app(&cache, port);
        let mut conn = RedisConn::connect(port).expect("connects");
        conn.cmd(&["INCR", "ready"]).expect("INCR");
        let deadline = Instant::now() + Duration::from_secs(10);
        while conn.cmd(&["GET", "go"]).expect("GET").as_str().is_none() {
            assert!(Instant::now() < deadline, "no go from the parent");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    let request = Request::get("/page")
                        .body(Body::empty())
                        .expect("a request");
                    let response = app.oneshot(request).await.expect("infallible");
                    assert_eq!(response.status(), StatusCode::OK);
                    let label = response.headers()["x-cache"]
                        .to_str()
                        .expect("ASCII")
                        .to_owned();
                    let body = response.into_body().collect().await.expect("a body");
                    (
                        String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8"),
                        label,
                    )
                })
            })
            .collect();
        for task in tasks {
            let (body, label) = task.await.expect("a task");
            conn.cmd(&["RPUSH", "layer_bodies", &body]).expect("RPUSH");
            conn.cmd(&["RPUSH", "layer_labels", &label]).expect("RPUSH");
        }
    }
}

#[cfg(feature = "axum")]
#[test]
fn cache_layer_processes_sharing_redis_call_the_service_once_for_a_cold_url() {
    let server = RedisServer::start();
    let port = server.port();
    let children: Vec<ChildProcess> = (0..layer::PROCESSES)
        .map(|_| spawn_child("layer_caller", port))
        .collect();
    wait_until(Duration::from_secs(15), "every child to be ready", || {
        get_int(port, "ready") == layer::PROCESSES as i64
    });
    cmd(port, &["SET", "go", "1"]);
    for child in children {
        child.succeeds(Duration::from_secs(15));
    }
    assert_eq!(
        get_int(port, "layer_runs"),
        1,
        "{} processes x {} tasks reached the service once in total",
        layer::PROCESSES,
        layer::TASKS
    );
    let bodies = list(port, "layer_bodies");
    assert_eq!(bodies.len(), layer::PROCESSES * layer::TASKS);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "every caller got the one call's response: {bodies:?}"
    );
    let labels = list(port, "layer_labels");
    assert_eq!(
        labels.iter().filter(|l| *l == "MISS").count(),
        1,
        "one MISS, the rest served from the cache: {labels:?}"
    );
}

// ---------------------------------------------------------------------------
// G6: other processes miss once the invalidation message arrives.

#[cache(key = "profile:<id>", ttl = 300, skip(port), cache = cache)]
async fn profile(cache: &Cache, port: u16, id: u64) -> String {
    source(port, &format!("profile:{id}"))
}

#[cache(key = "member:<id>", ttl = 300, tags = ["team"], skip(port), cache = cache)]
async fn member(cache: &Cache, port: u16, id: u64) -> String {
    source(port, &format!("member:{id}"))
}

#[cache(key = "doc:<id>", ttl = 300, namespace = "docs", skip(port), cache = cache)]
async fn doc(cache: &Cache, port: u16, id: u64) -> String {
    source(port, &format!("doc:{id}"))
}

#[cache(key = "note:<id>", ttl = 300, skip(port), cache = cache)]
async fn note(cache: &Cache, port: u16, id: u64) -> String {
    source(port, &format!("note:{id}"))
}

const G6_FUNCTIONS: [&str; 4] = ["profile", "member", "doc", "note"];

async fn g6_read(cache: &Cache, port: u16, name: &str) -> String {
    match name {
        "profile" => profile(cache, port, 1).await,
        "member" => member(cache, port, 1).await,
        "doc" => doc(cache, port, 1).await,
        "note" => note(cache, port, 1).await,
        other => unreachable!("{other}"),
    }
}

/// Reads every G6 function every few milliseconds until told to stop, and
/// appends each value it sees change to `trace:<function>`; reports its L1
/// hits in `l1_hits:<function>`, and in `reader_round` each round whose
/// reads it has finished.
async fn g6_reader(port: u16) {
    let cache = process_cache(port, Duration::from_secs(3)).await;
    let mut conn = RedisConn::connect(port).expect("connects");
    let mut last: HashMap<&str, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    for round in 0.. {
        assert!(Instant::now() < deadline, "the parent never said stop");
        for name in G6_FUNCTIONS {
            let value = g6_read(&cache, port, name).await;
            if last.get(name) != Some(&value) {
                conn.cmd(&["RPUSH", &format!("trace:{name}"), &value])
                    .expect("RPUSH");
                last.insert(name, value);
            }
        }
        conn.cmd(&["SET", "reader_round", &round.to_string()])
            .expect("SET");
        if round % 10 == 0 {
            let stats = cache.stats();
            for name in G6_FUNCTIONS {
                let hits = stats
                    .function(&format!("l2_processes::{name}"))
                    .map_or(0, |s| s.l1_hits);
                conn.cmd(&["SET", &format!("l1_hits:{name}"), &hits.to_string()])
                    .expect("SET");
            }
            if conn.cmd(&["GET", "stop"]).expect("GET").as_str().is_some() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sets every G6 function's source to `value` and waits until the reader
/// child serves it from its L1.
fn g6_settle(port: u16, value: &str) {
    for name in G6_FUNCTIONS {
        cmd(port, &["SET", &format!("db:{name}:1"), value]);
    }
}

fn last_seen(port: u16, name: &str) -> Option<String> {
    list(port, &format!("trace:{name}")).pop()
}

/// Waits until the reader child has finished `rounds` rounds of reads that
/// all began after this call: whatever it would see by then is in its
/// traces. The round it reports after this call's first look may have
/// begun before it, so it does not count.
fn reader_rounds(port: u16, rounds: i64) {
    let seen = get_int(port, "reader_round");
    wait_until(
        Duration::from_secs(10),
        &format!("the reader to read {rounds} more rounds"),
        || get_int(port, "reader_round") > seen + rounds,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g6_an_invalidation_by_one_process_reaches_another_processes_l1() {
    let server = RedisServer::start();
    let port = server.port();
    g6_settle(port, "v1");
    let reader = spawn_child("g6_reader", port);
    let a = process_cache(port, Duration::from_secs(3)).await;
    wait_until(
        Duration::from_secs(15),
        "the reader to hold v1 in L1",
        || {
            G6_FUNCTIONS.iter().all(|name| {
                last_seen(port, name).as_deref() == Some("v1")
                    && get_int(port, &format!("l1_hits:{name}")) > 0
            })
        },
    );
    for name in G6_FUNCTIONS {
        assert_eq!(g6_read(&a, port, name).await, "v1", "{name}");
    }

    for (step, name) in G6_FUNCTIONS.into_iter().enumerate() {
        let new = format!("v2-{step}");
        cmd(port, &["SET", &format!("db:{name}:1"), &new]);
        // The write alone changes nothing: both processes serve the cached
        // value, the reader in reads made after the write.
        reader_rounds(port, 3);
        assert_eq!(last_seen(port, name).as_deref(), Some("v1"), "{name}");
        assert_eq!(g6_read(&a, port, name).await, "v1", "{name}");

        match name {
            "profile" => profile_invalidate(&a, 1).await.unwrap(),
            "member" => a.invalidate_tag("team").await.unwrap(),
            "doc" => a.invalidate_namespace("docs").await.unwrap(),
            "note" => a.clear().await.unwrap(),
            other => unreachable!("{other}"),
        }
        // This process misses at once ...
        assert_eq!(g6_read(&a, port, name).await, new, "{name}: A at once");
        // ... the other once the message arrives.
        wait_until(
            Duration::from_secs(3),
            &format!("the reader to miss {name} after the invalidation"),
            || last_seen(port, name).as_deref() == Some(new.as_str()),
        );
        assert_eq!(
            list(port, &format!("trace:{name}")),
            ["v1", new.as_str()],
            "{name}"
        );
    }
    cmd(port, &["SET", "stop", "1"]);
    reader.succeeds(Duration::from_secs(5));
}

/// Sets every source to `value`, starts the reader child and waits until it
/// serves `profile`'s `value` from its L1; returns it and this process's
/// cache.
async fn reader_holding_profile(port: u16, value: &str) -> (ChildProcess, Cache) {
    g6_settle(port, value);
    let reader = spawn_child("g6_reader", port);
    let a = process_cache(port, Duration::from_secs(3)).await;
    wait_until(
        Duration::from_secs(15),
        &format!("the reader to hold {value} in L1"),
        || {
            last_seen(port, "profile").as_deref() == Some(value)
                && get_int(port, "l1_hits:profile") > 0
        },
    );
    (reader, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g6_a_put_or_refresh_by_one_process_reaches_another_processes_l1() {
    let server = RedisServer::start();
    let port = server.port();
    let (reader, a) = reader_holding_profile(port, "v1").await;

    // A writes the row, then stores the new value itself.
    cmd(port, &["SET", "db:profile:1", "v2"]);
    profile_put(&a, 1, "v2".to_owned()).await.expect("stored");
    wait_until(
        Duration::from_secs(3),
        "the reader to drop v1 after the put",
        || last_seen(port, "profile").as_deref() == Some("v2"),
    );

    // A writes the row, then re-reads and stores it.
    cmd(port, &["SET", "db:profile:1", "v3"]);
    assert_eq!(profile_refresh(&a, port, 1).await, "v3");
    wait_until(
        Duration::from_secs(3),
        "the reader to drop v2 after the refresh",
        || last_seen(port, "profile").as_deref() == Some("v3"),
    );
    assert_eq!(list(port, "trace:profile"), ["v1", "v2", "v3"]);
    cmd(port, &["SET", "stop", "1"]);
    reader.succeeds(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g6_l1_is_flushed_when_the_subscription_reconnects_after_a_lost_message() {
    let server = RedisServer::start();
    let port = server.port();
    let (reader, a) = reader_holding_profile(port, "v0").await;
    wait_until(Duration::from_secs(5), "both subscriptions", || {
        subscribers(port) >= 2
    });

    // Kill every subscriber connection and invalidate before they are back:
    // nobody hears the message. When a subscriber came back in between
    // (the message may have arrived), try again with a newer value.
    let mut lost = None;
    for attempt in 1..=5 {
        let old = format!("v{}", attempt - 1);
        let new = format!("v{attempt}");
        wait_until(
            Duration::from_secs(5),
            "the reader to serve the old value",
            || last_seen(port, "profile").as_deref() == Some(old.as_str()),
        );
        cmd(port, &["SET", "db:profile:1", &new]);
        let killed = cmd(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.as_int().is_some_and(|n| n >= 2), "{killed:?}");
        profile_invalidate(&a, 1).await.unwrap();
        if subscribers(port) == 0 {
            lost = Some((old, new));
            break;
        }
        wait_until(Duration::from_secs(5), "both subscriptions", || {
            subscribers(port) >= 2
        });
    }
    let (old, new) = lost.expect("an invalidation published while nobody listened");

    wait_until(
        Duration::from_secs(5),
        "the subscriptions to reconnect",
        || subscribers(port) >= 2,
    );
    // Reconnected: the reader's L1 was flushed, so the stale value is gone
    // although its invalidation message never arrived.
    wait_until(
        Duration::from_secs(3),
        "the reader to drop the stale value",
        || last_seen(port, "profile").as_deref() == Some(new.as_str()),
    );
    // It stays gone over the reader's next reads.
    reader_rounds(port, 50);
    let trace = list(port, "trace:profile");
    let first_new = trace.iter().position(|v| *v == new).expect("seen");
    assert!(
        trace[first_new..].iter().all(|v| *v == new),
        "the stale {old} came back: {trace:?}"
    );
    cmd(port, &["SET", "stop", "1"]);
    reader.succeeds(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// G7: a load that began before an invalidation never becomes visible after it.

/// The first run for an id reads the source, says it is inside, and waits
/// for the parent's `release:<id>` before returning what it read.
#[cache(
    key = "record:<id>",
    ttl = 300,
    tags = ["records"],
    namespace = "recs",
    skip(port),
    cache = cache
)]
async fn record(cache: &Cache, port: u16, id: u64) -> String {
    let value = source(port, &format!("record:{id}"));
    if cmd(port, &["INCR", &format!("record_runs:{id}")]).as_int() == Some(1) {
        cmd(port, &["SET", &format!("in_body:{id}"), "1"]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while get_string(port, &format!("release:{id}")).is_none() {
            assert!(Instant::now() < deadline, "never released");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    value
}

/// An entry the loader holds in L1 and watches: the parent changes and
/// invalidates it after the invalidation under test. Messages are applied in
/// order, so once the loader sees the probe change, its cache has heard of
/// the invalidation under test (or, after a lost message, reconnected).
#[cache(key = "probe:<id>", ttl = 300, skip(port), cache = cache)]
async fn probe(cache: &Cache, port: u16, id: u64) -> String {
    source(port, &format!("probe:{id}"))
}

/// Loads each id the parent names in `g7_ids` (a list, popped in order).
/// The load blocks in its body until released; meanwhile the loader
/// watches `probe:<id>` and sets `heard:<id>` when it changes. Once the load
/// returned, the loader reads the id again and reports both values in
/// `g7_result:<id>`.
async fn g7_loader(port: u16) {
    let cache = process_cache(port, Duration::from_secs(3)).await;
    let mut conn = RedisConn::connect(port).expect("connects");
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        assert!(Instant::now() < deadline, "the parent never said stop");
        let next = conn.cmd(&["LPOP", "g7_ids"]).expect("LPOP");
        let Some(id) = next.as_str().map(str::to_owned) else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        if id == "stop" {
            return;
        }
        let id: u64 = id.parse().expect("an id");
        let before = probe(&cache, port, id).await;
        let load = {
            let cache = cache.clone();
            tokio::spawn(async move { record(&cache, port, id).await })
        };
        while probe(&cache, port, id).await == before {
            assert!(Instant::now() < deadline, "the probe never changed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        conn.cmd(&["SET", &format!("heard:{id}"), "1"])
            .expect("SET");
        let loaded = load.await.expect("the load");
        let after = record(&cache, port, id).await;
        let key = format!("g7_result:{id}");
        conn.cmd(&["RPUSH", &key, &loaded, &after]).expect("RPUSH");
    }
}

/// Starts the loader's load of `id` and waits until it is inside the body.
fn g7_start(port: u16, id: u64, old: &str) {
    cmd(port, &["SET", &format!("db:record:{id}"), old]);
    cmd(port, &["SET", &format!("db:probe:{id}"), "before"]);
    cmd(port, &["RPUSH", "g7_ids", &id.to_string()]);
    wait_until(
        Duration::from_secs(15),
        "the loader's body to start",
        || get_string(port, &format!("in_body:{id}")).is_some(),
    );
}

/// Changes and invalidates the probe, waits until the loader has seen it,
/// and releases the load.
async fn g7_release(a: &Cache, port: u16, id: u64) {
    cmd(port, &["SET", &format!("db:probe:{id}"), "after"]);
    probe_invalidate(a, id).await.unwrap();
    wait_until(
        Duration::from_secs(5),
        "the loader to hear of the invalidation",
        || get_string(port, &format!("heard:{id}")).is_some(),
    );
    cmd(port, &["SET", &format!("release:{id}"), "1"]);
}

/// Every entry of `record:<id>` in Redis, whatever its namespace
/// generation, with its raw bytes.
fn stored_records(port: u16, id: u64) -> Vec<(String, Vec<u8>)> {
    let pattern = format!("{PREFIX}:recs@*:v1:record:{id}");
    let keys = cmd(port, &["KEYS", &pattern]);
    keys.as_array()
        .expect("KEYS")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .map(|key| {
            let bytes = cmd(port, &["GET", &key])
                .as_bytes()
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            (key, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Checks one G7 round: the load returned its own (old) result to its
/// caller, but its process then served the new value; Redis holds no entry
/// with the old value under any generation; a third cache gets the new one.
async fn g7_check(port: u16, id: u64, old: &str, new: &str) {
    let key = format!("g7_result:{id}");
    wait_until(Duration::from_secs(5), "the loader's result", || {
        list(port, &key).len() == 2
    });
    let result = list(port, &key);
    assert_eq!(result[0], old, "the load returns what its body returned");
    assert_eq!(
        result[1], new,
        "round {id}: the load that began before the invalidation became visible in its L1"
    );
    for (key, bytes) in stored_records(port, id) {
        assert!(
            !contains(&bytes, old),
            "round {id}: the late load was stored in Redis under {key}"
        );
    }
    let c = process_cache(port, Duration::from_secs(3)).await;
    assert_eq!(record(&c, port, id).await, new, "round {id}: a third cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_a_load_that_began_before_another_processes_invalidation_never_becomes_visible() {
    let server = RedisServer::start();
    let port = server.port();
    let loader = spawn_child("g7_loader", port);
    let a = process_cache(port, Duration::from_secs(3)).await;
    for (id, how) in [(1, "key"), (2, "tag"), (3, "namespace"), (4, "clear")] {
        let old = format!("old-{id}-stale");
        let new = format!("new-{id}-fresh");
        g7_start(port, id, &old);
        // The database changes and process A invalidates while the load
        // runs.
        cmd(port, &["SET", &format!("db:record:{id}"), &new]);
        match how {
            "key" => record_invalidate(&a, id).await.unwrap(),
            "tag" => a.invalidate_tag("records").await.unwrap(),
            "namespace" => a.invalidate_namespace("recs").await.unwrap(),
            "clear" => a.clear().await.unwrap(),
            other => unreachable!("{other}"),
        }
        g7_release(&a, port, id).await;
        g7_check(port, id, &old, &new).await;
    }
    cmd(port, &["RPUSH", "g7_ids", "stop"]);
    loader.succeeds(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_a_load_in_flight_while_its_invalidation_message_is_lost_is_not_served_after_reconnecting(
) {
    let server = RedisServer::start();
    let port = server.port();
    let loader = spawn_child("g7_loader", port);
    let a = process_cache(port, Duration::from_secs(3)).await;
    // Kill every subscriber connection and invalidate before they are back:
    // nobody hears the message. When a subscriber came back in between,
    // check the round all the same and try again.
    let mut lost = None;
    for id in 1..=5u64 {
        let old = format!("old-{id}-stale");
        let new = format!("new-{id}-fresh");
        wait_until(Duration::from_secs(5), "both subscriptions", || {
            subscribers(port) >= 2
        });
        g7_start(port, id, &old);
        cmd(port, &["SET", &format!("db:record:{id}"), &new]);
        cmd(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        record_invalidate(&a, id).await.unwrap();
        let nobody_heard = subscribers(port) == 0;
        // Release the load only once the loader listens again: its L1 was
        // flushed on reconnecting, and the load must not fill it again.
        wait_until(
            Duration::from_secs(5),
            "the subscriptions to reconnect",
            || subscribers(port) >= 2,
        );
        g7_release(&a, port, id).await;
        g7_check(port, id, &old, &new).await;
        if nobody_heard {
            lost = Some(id);
            break;
        }
    }
    assert!(
        lost.is_some(),
        "no invalidation was published while nobody listened"
    );
    cmd(port, &["RPUSH", "g7_ids", "stop"]);
    loader.succeeds(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// G11 and G15 across processes: one background refresh of a stale key, in
// all processes together (`lock`), while every caller gets the old value
// at once.

/// The Redis port of this process's G11 source, for the cached function,
/// whose arguments must be owned for a background refresh.
static G11_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

const G11_PROCESSES: usize = 3;
const G11_TASKS: usize = 8;
/// A call slower than this waited for something: a stale hit must not.
const G11_SLOW: Duration = Duration::from_millis(150);

/// Reads `db:g11` and takes 200 ms; counts its runs in Redis.
#[cache(key = "g11:<id>", ttl = "1s", stale = "30s", lock)]
async fn g11_value(id: u64) -> String {
    let port = *G11_PORT.get().expect("set by the child");
    cmd(port, &["INCR", "g11_runs"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("{id}:{}", source(port, "g11"))
}

/// Fills (or reads) the key, waits for the parent to change the source and
/// let the entry go stale, then calls it from several tasks for a while,
/// counting slow calls and the values seen.
async fn g11_caller(port: u16) {
    G11_PORT.set(port).expect("set once");
    let cache = Cache::builder()
        .prefix(PREFIX)
        .redis(format!("redis://127.0.0.1:{port}/"))
        .l1_max_ttl(Duration::from_secs(60))
        .build()
        .await
        .expect("connects");
    cachette::set_global(cache.clone()).expect("the child's global cache");
    let mut conn = RedisConn::connect(port).expect("connects");
    assert_eq!(g11_value(1).await, "1:v1");
    conn.cmd(&["INCR", "ready"]).expect("INCR");
    let deadline = Instant::now() + Duration::from_secs(15);
    while conn.cmd(&["GET", "go"]).expect("GET").as_str().is_none() {
        assert!(Instant::now() < deadline, "no go from the parent");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let tasks: Vec<_> = (0..G11_TASKS)
        .map(|_| {
            tokio::spawn(async move {
                let (mut slow, mut seen) = (0u64, Vec::new());
                let until = Instant::now() + Duration::from_millis(800);
                while Instant::now() < until {
                    let start = Instant::now();
                    let value = g11_value(1).await;
                    slow += u64::from(start.elapsed() > G11_SLOW);
                    if seen.last() != Some(&value) {
                        seen.push(value);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (slow, seen)
            })
        })
        .collect();
    for task in tasks {
        let (slow, seen) = task.await.expect("a task");
        conn.cmd(&["INCRBY", "slow", &slow.to_string()])
            .expect("INCRBY");
        conn.cmd(&["RPUSH", "seen", &seen.join(",")])
            .expect("RPUSH");
    }
    let stats = cache.stats();
    let s = stats.function("l2_processes::g11_value").expect("stats");
    conn.cmd(&["INCRBY", "stale_served", &s.stale_served.to_string()])
        .expect("INCRBY");
}

#[test]
fn g11_processes_sharing_redis_refresh_a_stale_key_once_while_callers_get_the_old_value() {
    let server = RedisServer::start();
    let port = server.port();
    cmd(port, &["SET", "db:g11", "v1"]);
    let children: Vec<ChildProcess> = (0..G11_PROCESSES)
        .map(|_| spawn_child("g11_caller", port))
        .collect();
    wait_until(Duration::from_secs(20), "every child to be ready", || {
        get_int(port, "ready") == G11_PROCESSES as i64
    });
    let filled = get_int(port, "g11_runs");
    cmd(port, &["SET", "db:g11", "v2"]);
    // Past the TTL (the last fill was at most 1 s ago), inside the stale
    // window; the calls then last 0.8 s, less than the refreshed entry's TTL.
    thread::sleep(Duration::from_millis(1200));
    cmd(port, &["SET", "go", "1"]);
    for child in children {
        child.succeeds(Duration::from_secs(20));
    }
    assert_eq!(
        get_int(port, "g11_runs") - filled,
        1,
        "{G11_PROCESSES} processes refreshed the stale key once in total"
    );
    assert_eq!(get_int(port, "slow"), 0, "no call waited for the refresh");
    let seen = list(port, "seen");
    assert_eq!(seen.len(), G11_PROCESSES * G11_TASKS);
    for tasks_view in &seen {
        assert_eq!(
            tasks_view, "1:v1,1:v2",
            "every task saw the old value, then the refreshed one: {seen:?}"
        );
    }
    assert!(get_int(port, "stale_served") >= G11_PROCESSES as i64);
}

// ---------------------------------------------------------------------------
// A method with `cache = self.cache`: its typed tag companion invalidates
// the tag on that cache, and the other process misses too.

struct Docs {
    cache: Cache,
    port: u16,
}

impl Docs {
    /// Counts its runs in Redis (`doc_runs`).
    #[cache(
        key = "doc:<author>:<id>",
        ttl = 300,
        tags = ["author:<author>"],
        cache = self.cache,
        skip(self)
    )]
    async fn doc(&self, author: u64, id: u64) -> String {
        cmd(self.port, &["INCR", "doc_runs"]);
        format!("doc {id} by {author}")
    }
}

/// Fills its L1, then reads the doc until a call misses L1 after the
/// parent's invalidation, reporting each stage through Redis.
async fn tag_reader(port: u16) {
    let docs = Docs {
        cache: process_cache(port, Duration::from_secs(3)).await,
        port,
    };
    let mut conn = RedisConn::connect(port).expect("connects");
    docs.doc(9, 1).await;
    docs.doc(9, 1).await;
    // Any L1 miss from now on is the parent's invalidation: the TTL is long.
    let before = docs.cache.stats().total();
    conn.cmd(&["SET", "reader_filled", "1"]).expect("SET");
    let deadline = Instant::now() + Duration::from_secs(15);
    while conn
        .cmd(&["GET", "invalidated"])
        .expect("GET")
        .as_str()
        .is_none()
    {
        assert!(Instant::now() < deadline, "no invalidation from the parent");
        docs.doc(9, 1).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        docs.doc(9, 1).await;
        let now = docs.cache.stats().total().since(&before);
        // Its L1 copy is gone: the call went on to Redis (where the
        // parent's new fill may be) or to the body.
        if now.l2_hits + now.misses > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tag's invalidation never reached this process"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    conn.cmd(&["SET", "reader_missed", "1"]).expect("SET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_tag_companion_on_a_methods_own_cache_reaches_another_process() {
    let server = RedisServer::start();
    let port = server.port();
    let reader = spawn_child("tag_reader", port);
    let docs = Docs {
        cache: process_cache(port, Duration::from_secs(3)).await,
        port,
    };
    wait_until(Duration::from_secs(15), "the reader to fill its L1", || {
        get_string(port, "reader_filled").is_some()
    });
    assert_eq!(docs.doc(9, 1).await, "doc 1 by 9");
    let filled = get_int(port, "doc_runs");
    assert_eq!(filled, 1, "this process read the reader's fill from Redis");
    // The free function acts on the global cache, not on `docs.cache`.
    cachette::invalidate_tag(&docs.doc_tag_author(9))
        .await
        .unwrap();
    docs.doc(9, 1).await;
    assert_eq!(get_int(port, "doc_runs"), 1, "nothing was invalidated");
    docs.doc_invalidate_author(9).await.unwrap();
    cmd(port, &["SET", "invalidated", "1"]);
    docs.doc(9, 1).await;
    assert!(
        get_int(port, "doc_runs") >= 2,
        "this process missed at once"
    );
    reader.succeeds(Duration::from_secs(20));
    assert_eq!(get_string(port, "reader_missed").as_deref(), Some("1"));
}
