//! P2 and P4 (DESIGN §8): the shared tier against hand-written redis-rs
//! code, measured in one run against a private `redis-server`.
//!
//! - P2: an L2 hit through `#[cache(tier = "l2")]` (L1 skipped, so every call
//!   reads Redis) against a redis-rs `GET` on a `ConnectionManager` plus a
//!   hand-written decode of the same stored entry (its envelope header, then
//!   bincode 2 through serde, as the cache does). The `#[cache]` functions
//!   and the peers read the same keys and get the same `User` values. Two
//!   settings: async callers on a current-thread runtime (the peer's
//!   connection lives in the same runtime), and sync callers outside any
//!   runtime (the peer enters that runtime with `block_on` per call; a
//!   blocking redis-rs connection is shown for reference).
//! - Throughput: 64 tasks on a 2-worker runtime doing L2 hits through
//!   `#[cache]`, 64 tasks doing the peer's read over one `ConnectionManager`,
//!   and `redis-benchmark -c 64 -n 100000 -t get` on the same server (its
//!   key holding an entry of the same size), in interleaved rounds.
//! - P4: the server is killed and a few calls open the breaker of a cache
//!   built with `.redis(url)`; then the cost a call adds to its body, for
//!   the default tier (fresh ids, so every call misses L1, runs the body
//!   and fills L1) and, for reference, `tier = "l2"` (no L1 at all) and the
//!   default tier on a cache without a shared tier (what any miss costs).
//!
//! After criterion's report come the tables, each figure both from
//! criterion's samples and from paired rounds run afterwards: each round
//! times a batch of the baseline and a batch of the contender back to back,
//! in alternating order, and the figure is the median over the rounds, so
//! load from other processes slows both sides of a round alike. The paired
//! figure is the one to trust on a busy machine.
//!
//! Needs `redis-server` (and `redis-benchmark` for its row).
//! `cargo bench --features redis --bench l2_hit` takes about 1.5 minutes.

mod common;
#[path = "common/entry.rs"]
mod entry;
#[path = "../tests/support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::future::Future;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use cachette::{cache, Cache, FunctionStats};
use common::{
    benchmarking, compare, load_user, measure, median, nanos_per_call, on_one_thread, paired,
    round_robin_async, verdict, Paired, Row, Setting, Timed, User, KEYS, SAMPLES,
};
use criterion::Criterion;
use entry::decode_entry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use support::redis::RedisServer;
use tokio::runtime::Runtime;

// The ids read round-robin (`KEYS`) are stored in Redis.
/// Paired rounds over Redis, and how long each batch of a round runs.
const L2_ROUNDS: usize = 200;
const L2_BATCH: Duration = Duration::from_millis(5);
/// Paired rounds with Redis down.
const DOWN_ROUNDS: usize = 100;
const DOWN_BATCH: Duration = Duration::from_millis(5);
/// Concurrent tasks and requests per throughput run.
const TASKS: u64 = 64;
const REQUESTS: u64 = 100_000;
const THROUGHPUT_ROUNDS: usize = 3;
/// The P2 target: an L2 hit through `#[cache]` over the peer's read.
const P2_TARGET: f64 = 1.2;
/// The P4 target: what a call adds to its body with Redis down.
const P4_TARGET_NANOS: f64 = 2_000.0;

/// The cache the P2 functions read through: Redis up.
static L2_CACHE: OnceLock<Cache> = OnceLock::new();
/// The cache of the P4 functions: its Redis is killed.
static DOWN_CACHE: OnceLock<Cache> = OnceLock::new();
/// The cache whose keys are invalidated: apart, so its generations never
/// touch the P2 entries.
static INV_CACHE: OnceLock<Cache> = OnceLock::new();
/// A cache without a shared tier: what a miss costs with no Redis at all.
static LOCAL_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);

fn l2_cache() -> &'static Cache {
    L2_CACHE.get().expect("built before any call")
}

fn down_cache() -> &'static Cache {
    DOWN_CACHE.get().expect("built before any call")
}

/// Body runs of the P2 functions: after warming, the measurement must not
/// add any, or it measured misses.
static L2_BODY_RUNS: AtomicU64 = AtomicU64::new(0);

// Both P2 functions read and write `v1:user:<id>`: the sync one fills it,
// the async one then reads the same entries.
#[cache(key = "user:<id>", ttl = 300, tier = "l2", cache = l2_cache())]
fn cachette_get_user(id: u64) -> User {
    L2_BODY_RUNS.fetch_add(1, Relaxed);
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, tier = "l2", cache = l2_cache())]
async fn cachette_get_user_async(id: u64) -> User {
    L2_BODY_RUNS.fetch_add(1, Relaxed);
    load_user(id)
}

async fn load_user_async(id: u64) -> User {
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, cache = down_cache())]
fn down_get_user(id: u64) -> User {
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, cache = down_cache())]
async fn down_get_user_async(id: u64) -> User {
    load_user_async(id).await
}

#[cache(key = "user:<id>", ttl = 300, tier = "l2", cache = down_cache())]
fn down_get_user_l2(id: u64) -> User {
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, tier = "l2", cache = down_cache())]
async fn down_get_user_l2_async(id: u64) -> User {
    load_user_async(id).await
}

#[cache(key = "user:<id>", ttl = 300, cache = &LOCAL_CACHE)]
fn local_get_user(id: u64) -> User {
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, cache = &LOCAL_CACHE)]
async fn local_get_user_async(id: u64) -> User {
    load_user_async(id).await
}

/// Ids never used before, so that P4 calls always miss L1.
static NEXT_ID: AtomicU64 = AtomicU64::new(1_000_000);

fn redis_key(id: u64) -> String {
    format!("v1:user:{id}")
}

/// The peer: one `GET` on a `ConnectionManager`, then the decode.
async fn peer_get(mut conn: ConnectionManager, id: u64) -> User {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(redis_key(id))
        .query_async(&mut conn)
        .await
        .expect("Redis answers GET");
    decode_entry(&bytes.expect("the entry is stored")).expect("the entry is fresh and decodes")
}

/// An invalidation through cachette: the key's generation moves on in Redis
/// and other processes are told.
async fn cachette_invalidate(id: u64) {
    let cache = INV_CACHE.get().expect("built before any call");
    cache
        .invalidate_key(&format!("inv:{id}"))
        .await
        .expect("Redis answers the invalidation");
}

/// Its peer: a `DEL` of the key over the same kind of connection.
async fn peer_del(mut conn: ConnectionManager, id: u64) {
    let _: i64 = redis::cmd("DEL")
        .arg(format!("inv:{id}"))
        .query_async(&mut conn)
        .await
        .expect("Redis answers DEL");
}

/// The blocking peer, for reference: a sync redis-rs connection.
fn blocking_get(conn: &RefCell<redis::Connection>, id: u64) -> User {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(redis_key(id))
        .query(&mut *conn.borrow_mut())
        .expect("Redis answers GET");
    decode_entry(&bytes.expect("the entry is stored")).expect("the entry is fresh and decodes")
}

/// A `ConnectionManager` on the runtime this is awaited in.
async fn connect_peer(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a valid URL");
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config)
        .await
        .expect("connects to Redis")
}

/// Calls `call` with `iters` ids never used before.
#[inline(always)]
fn fresh_ids<T>(iters: u64, mut call: impl FnMut(u64) -> T) -> Duration {
    let first = NEXT_ID.fetch_add(iters, Relaxed);
    let start = Instant::now();
    for id in first..first + iters {
        black_box(call(black_box(id)));
    }
    start.elapsed()
}

/// Awaits `call` with `iters` ids never used before, inside `runtime`.
fn fresh_ids_async<F: Future>(
    runtime: &Runtime,
    iters: u64,
    mut call: impl FnMut(u64) -> F,
) -> Duration {
    let first = NEXT_ID.fetch_add(iters, Relaxed);
    runtime.block_on(async {
        let start = Instant::now();
        for id in first..first + iters {
            black_box(call(black_box(id)).await);
        }
        start.elapsed()
    })
}

/// How a contender compares with its setting's baseline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Time over the baseline's (P2).
    Ratio,
    /// Time added to the baseline's (P4).
    Added,
}

/// Paired rounds of `candidate` against `baseline`, `rounds` of them, with
/// batches sized so that the slower side's takes about `batch`.
fn paired_rounds(
    baseline: &Timed<'_>,
    candidate: &Timed<'_>,
    rounds: usize,
    batch: Duration,
) -> Paired {
    let probe = 100;
    let per_call =
        nanos_per_call(baseline(probe), probe).max(nanos_per_call(candidate(probe), probe));
    let calls = ((batch.as_nanos() as f64 / per_call) as u64).max(20);
    paired(baseline, candidate, rounds, calls)
}

fn print_rows(settings: &[Setting<'_>], compare: Compare, rows: &[Row]) {
    for setting in settings {
        println!("-- {}", setting.title);
        let mut any = false;
        for row in rows.iter().filter(|row| row.group == setting.group) {
            any = true;
            match compare {
                Compare::Ratio => println!(
                    "{:<30} {:>10.2} {:>15.2}x {:>15.2}x",
                    row.name,
                    row.mean_nanos / 1_000.0,
                    row.sampled.ratio,
                    row.paired.ratio
                ),
                Compare::Added => println!(
                    "{:<30} {:>10.0} {:>16.0} {:>16.0}",
                    row.name, row.mean_nanos, row.sampled.added_nanos, row.paired.added_nanos
                ),
            }
        }
        if !any {
            println!("   (not measured)");
        }
    }
}

/// Requests per second of 64 tasks on `runtime` making `REQUESTS` calls in
/// all, each task reading the ids round-robin from its own start.
fn tasks_throughput<F, Fut>(runtime: &Runtime, call: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = User> + Send,
{
    let per_task = REQUESTS / TASKS;
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut id = task * (KEYS / TASKS) % KEYS;
                    for _ in 0..per_task {
                        black_box(call(id).await);
                        id = if id + 1 == KEYS { 0 } else { id + 1 };
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a throughput task finishes");
        }
        (per_task * TASKS) as f64 / start.elapsed().as_secs_f64()
    })
}

/// `redis-benchmark -c 64 -n 100000 -t get -q` on `port`: requests per
/// second, or why there is no figure.
fn redis_benchmark(port: u16) -> Result<f64, String> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &TASKS.to_string(), "-n", &REQUESTS.to_string()])
        .args(["-t", "get", "-q"])
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split(['\r', '\n'])
        .filter_map(|line| line.trim().strip_prefix("GET: "))
        .filter_map(|rest| rest.split_once(" requests per second"))
        .find_map(|(rps, _)| rps.trim().parse().ok())
        .ok_or_else(|| format!("no figure in redis-benchmark's output {text:?}"))
}

/// One throughput contender's runs, requests per second.
struct Throughput {
    name: &'static str,
    runs: Vec<f64>,
}

/// Interleaved rounds of the throughput contenders.
fn throughput(server: &RedisServer, mt: &Runtime, peer: &ConnectionManager) -> Vec<Throughput> {
    // redis-benchmark reads `key:__rand_int__`: give it an entry of the
    // same size as the others.
    let entry = server
        .cmd(&["GET".as_bytes(), redis_key(0).as_bytes()])
        .expect("Redis answers GET");
    let entry = entry
        .as_bytes()
        .unwrap_or_else(|| panic!("the entry of id 0 is stored: {entry:?}"));
    let set = server
        .cmd(&[b"SET".as_slice(), b"key:__rand_int__", entry])
        .expect("Redis answers SET");
    assert!(set.is_ok(), "SET replied {set:?}");

    let mut bench = Throughput {
        name: "redis-benchmark -c 64 (GET)",
        runs: Vec::new(),
    };
    let mut raw = Throughput {
        name: "redis_rs_get_decode x64 tasks",
        runs: Vec::new(),
    };
    let mut ours = Throughput {
        name: "cachette_async x64 tasks",
        runs: Vec::new(),
    };
    let mut bench_error = None;
    for round in 0..THROUGHPUT_ROUNDS {
        let mut run_ours = || {
            ours.runs
                .push(tasks_throughput(mt, cachette_get_user_async))
        };
        let peer = peer.clone();
        let run_raw = || {
            raw.runs
                .push(tasks_throughput(mt, move |id| peer_get(peer.clone(), id)))
        };
        if round % 2 == 0 {
            run_ours();
            run_raw();
        } else {
            run_raw();
            run_ours();
        }
        match redis_benchmark(server.port()) {
            Ok(rps) => bench.runs.push(rps),
            Err(e) => bench_error = Some(e),
        }
    }
    if let Some(e) = bench_error {
        println!("redis-benchmark: {e}");
    }
    vec![bench, raw, ours]
}

/// Kills the server, then calls the P4 functions until a run of calls adds
/// no shared-tier error: the breaker is open (calls it refuses are not
/// counted as errors).
fn open_breaker(server: &RedisServer, runtime: &Runtime) {
    server.kill();
    let errors = || down_cache().stats().total().l2_errors;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = errors();
        fresh_ids(10, down_get_user);
        fresh_ids_async(runtime, 10, down_get_user_async);
        fresh_ids(10, down_get_user_l2);
        fresh_ids_async(runtime, 10, down_get_user_l2_async);
        if before > 0 && errors() == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker did not open within 10 s ({} errors)",
            errors()
        );
    }
}

fn stats_of<'s>(stats: &'s cachette::Stats, name: &str) -> Option<&'s FunctionStats> {
    stats.functions.iter().find(|f| f.name.ends_with(name))
}

fn main() {
    let started = Instant::now();
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread runtime builds");
    let build = || {
        rt.block_on(Cache::builder().redis(&url).build())
            .expect("the cache connects to Redis")
    };
    L2_CACHE.set(build()).expect("set once");
    DOWN_CACHE.set(build()).expect("set once");
    let inv = rt
        .block_on(Cache::builder().prefix("inv").redis(&url).build())
        .expect("the cache connects to Redis");
    INV_CACHE.set(inv).expect("set once");

    // Warm: the sync function fills every entry, the async one reads them.
    for id in 0..KEYS {
        assert_eq!(cachette_get_user(id), load_user(id));
    }
    for id in 0..KEYS {
        assert_eq!(rt.block_on(cachette_get_user_async(id)), load_user(id));
    }
    assert_eq!(
        L2_BODY_RUNS.load(Relaxed),
        KEYS,
        "warming filled each id once"
    );

    let peer = rt.block_on(connect_peer(&url));
    let peer_mt = mt.block_on(connect_peer(&url));
    let blocking = RefCell::new(
        redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection())
            .expect("a blocking connection"),
    );
    for id in 0..KEYS {
        assert_eq!(rt.block_on(peer_get(peer.clone(), id)), load_user(id));
        assert_eq!(blocking_get(&blocking, id), load_user(id));
    }
    rt.block_on(cachette_invalidate(0));
    rt.block_on(peer_del(peer.clone(), 0));
    if !benchmarking() {
        // `cargo test --benches`: the set-up above checked that every
        // contender works; measuring is for `cargo bench`.
        println!("l2_hit: contenders checked; run `cargo bench --features redis --bench l2_hit` to measure");
        return;
    }

    let up = vec![
        Setting {
            group: "l2_hit_async",
            title: "P2 async, current-thread runtime: us per call, ratio to the peer",
            contenders: vec![
                (
                    "redis_rs_get_decode",
                    Box::new(|n| round_robin_async(&rt, n, |id| peer_get(peer.clone(), id))),
                ),
                (
                    "cachette_async",
                    Box::new(|n| round_robin_async(&rt, n, cachette_get_user_async)),
                ),
            ],
        },
        Setting {
            group: "l2_hit_sync",
            title: "P2 sync, no runtime: us per call, ratio to the peer",
            contenders: vec![
                (
                    "redis_rs_block_on_get_decode",
                    Box::new(|n| on_one_thread(n, |id| rt.block_on(peer_get(peer.clone(), id)))),
                ),
                (
                    "redis_rs_blocking_conn",
                    Box::new(|n| on_one_thread(n, |id| blocking_get(&blocking, id))),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| on_one_thread(n, cachette_get_user)),
                ),
            ],
        },
        Setting {
            group: "invalidate_async",
            title: "invalidate_key with Redis, current-thread runtime: us per call, ratio to a DEL",
            contenders: vec![
                (
                    "redis_rs_del",
                    Box::new(|n| round_robin_async(&rt, n, |id| peer_del(peer.clone(), id))),
                ),
                (
                    "cachette_invalidate_key",
                    Box::new(|n| round_robin_async(&rt, n, cachette_invalidate)),
                ),
            ],
        },
    ];
    let down = vec![
        Setting {
            group: "l2_down_sync",
            title: "P4 sync, Redis down, breaker open: ns per call, ns added to the body",
            contenders: vec![
                ("body", Box::new(|n| fresh_ids(n, load_user))),
                ("cachette_sync", Box::new(|n| fresh_ids(n, down_get_user))),
                (
                    "cachette_sync_tier_l2",
                    Box::new(|n| fresh_ids(n, down_get_user_l2)),
                ),
                (
                    "cachette_sync_no_redis",
                    Box::new(|n| fresh_ids(n, local_get_user)),
                ),
            ],
        },
        Setting {
            group: "l2_down_async",
            title: "P4 async, Redis down, breaker open: ns per call, ns added to the body",
            contenders: vec![
                (
                    "body",
                    Box::new(|n| fresh_ids_async(&rt, n, load_user_async)),
                ),
                (
                    "cachette_async",
                    Box::new(|n| fresh_ids_async(&rt, n, down_get_user_async)),
                ),
                (
                    "cachette_async_tier_l2",
                    Box::new(|n| fresh_ids_async(&rt, n, down_get_user_l2_async)),
                ),
                (
                    "cachette_async_no_redis",
                    Box::new(|n| fresh_ids_async(&rt, n, local_get_user_async)),
                ),
            ],
        },
    ];

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(SAMPLES)
        .configure_from_args();

    // Redis up: P2, then throughput.
    let p2_started = Instant::now();
    measure(&mut c, &up);
    let up_rows = compare(&up, |baseline, candidate| {
        paired_rounds(baseline, candidate, L2_ROUNDS, L2_BATCH)
    });
    let p2_time = p2_started.elapsed();
    let l2_stats = l2_cache().stats();
    let hits_before_throughput: u64 = l2_stats.functions.iter().map(|f| f.l2_hits).sum();
    let throughput_started = Instant::now();
    let throughput = if up_rows.is_empty() {
        Vec::new()
    } else {
        throughput(&server, &mt, &peer_mt)
    };
    let throughput_time = throughput_started.elapsed();
    let l2_stats = l2_cache().stats();
    let body_runs_measured = L2_BODY_RUNS.load(Relaxed) - KEYS;

    // Redis down: P4.
    let p4_started = Instant::now();
    open_breaker(&server, &rt);
    measure(&mut c, &down);
    let down_rows = compare(&down, |baseline, candidate| {
        paired_rounds(baseline, candidate, DOWN_ROUNDS, DOWN_BATCH)
    });
    let p4_time = p4_started.elapsed();
    c.final_summary();
    drop(server);

    println!();
    println!("P2: L2 hit, key u64 id, value User (2 small Strings), {KEYS} keys in a private redis-server");
    println!("peer: redis-rs GET on a ConnectionManager + envelope header check + bincode decode");
    println!(
        "{:<30} {:>10} {:>16} {:>16}",
        "implementation", "mean us", "ratio (samples)", "ratio (paired)"
    );
    print_rows(&up, Compare::Ratio, &up_rows);
    for name in ["cachette_get_user", "cachette_get_user_async"] {
        if let Some(s) = stats_of(&l2_stats, name).filter(|_| !up_rows.is_empty()) {
            println!(
                "   {name}: {} L2 hits, {} misses, {} L2 errors",
                s.l2_hits, s.misses, s.l2_errors
            );
        }
    }
    if body_runs_measured > 0 {
        println!("   WARNING: {body_runs_measured} measured calls ran the body (an L2 timeout or error made them misses)");
    }

    if !throughput.is_empty() {
        println!();
        println!("Throughput: {TASKS} concurrent clients, {REQUESTS} requests per run, median of {THROUGHPUT_ROUNDS} interleaved runs");
        println!("{:<30} {:>12} {:>10}  runs", "client", "req/s", "ratio");
        let reference = throughput
            .iter()
            .find(|t| !t.runs.is_empty())
            .map(|t| median(t.runs.clone()));
        for t in &throughput {
            if t.runs.is_empty() {
                println!("{:<30} {:>12}", t.name, "(none)");
                continue;
            }
            let rps = median(t.runs.clone());
            let runs: Vec<String> = t.runs.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "{:<30} {rps:>12.0} {:>9.2}x  {}",
                t.name,
                reference.map_or(1.0, |r| rps / r),
                runs.join(" ")
            );
        }
        let after: u64 = l2_stats.functions.iter().map(|f| f.l2_hits).sum();
        println!(
            "   ({} L2 hits through #[cache] during the throughput runs)",
            after - hits_before_throughput
        );
    }

    println!();
    println!(
        "P4: Redis killed, breaker open; body = build a User (2 format! calls), fresh id per call"
    );
    println!("default tier: every call misses L1, runs the body and fills L1; tier_l2: no L1;");
    println!(
        "no_redis: the default tier on a cache without a shared tier (the cost of a miss itself)"
    );
    println!(
        "{:<30} {:>10} {:>16} {:>16}",
        "implementation", "mean ns", "added (samples)", "added (paired)"
    );
    print_rows(&down, Compare::Added, &down_rows);

    println!();
    println!("Summary (paired figures; from criterion's samples in brackets)");
    for row in up_rows
        .iter()
        .filter(|row| row.name.starts_with("cachette") && row.group == "invalidate_async")
    {
        println!(
            "{}/{}: {:.2}x a DEL [{:.2}x] (one round trip each)",
            row.group, row.name, row.paired.ratio, row.sampled.ratio,
        );
    }
    for row in up_rows
        .iter()
        .filter(|row| row.name.starts_with("cachette") && row.group.starts_with("l2_hit"))
    {
        println!(
            "P2 {}/{}: {:.2}x the peer [{:.2}x], target <= {P2_TARGET:.1}x: {}",
            row.group,
            row.name,
            row.paired.ratio,
            row.sampled.ratio,
            verdict(row.paired.ratio <= P2_TARGET)
        );
    }
    for row in down_rows
        .iter()
        .filter(|row| row.name.starts_with("cachette"))
    {
        let info = if row.name.ends_with("tier_l2") || row.name.ends_with("no_redis") {
            " (reference)"
        } else {
            ""
        };
        println!(
            "P4 {}/{}: {:+.0} ns over the body [{:+.0} ns], target <= {P4_TARGET_NANOS:.0} ns: {}{info}",
            row.group,
            row.name,
            row.paired.added_nanos,
            row.sampled.added_nanos,
            verdict(row.paired.added_nanos <= P4_TARGET_NANOS)
        );
    }
    // What Redis being down adds, apart from what any miss costs: the
    // default tier against the same call on a cache without a shared tier.
    for setting in &down {
        let added = |suffix: &str| {
            down_rows
                .iter()
                .find(|row| row.group == setting.group && row.name.ends_with(suffix))
                .map(|row| (row.paired.added_nanos, row.sampled.added_nanos))
        };
        let default = setting.contenders.get(1).and_then(|(name, _)| added(name));
        if let (Some(default), Some(local)) = (default, added("no_redis")) {
            println!(
                "P4 {}: Redis down adds {:+.0} ns [{:+.0} ns] to a miss on a cache without Redis",
                setting.group,
                default.0 - local.0,
                default.1 - local.1
            );
        }
    }
    println!(
        "bench time: {:.0} s (P2 {:.0} s, throughput {:.0} s, P4 {:.0} s)",
        started.elapsed().as_secs_f64(),
        p2_time.as_secs_f64(),
        throughput_time.as_secs_f64(),
        p4_time.as_secs_f64()
    );
}
