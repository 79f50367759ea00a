//! P1 (DESIGN §8): an L1 hit through `#[cache]` against hand-written peers
//! on the same key and value types, measured in one run.
//!
//! Every implementation caches the same `User` values under the same `u64`
//! ids, is warmed with all of them first, and is then read round-robin, so
//! every measured call is a hit that clones a `User`. Three settings: one
//! thread; async callers on a current-thread runtime (against a moka `get`
//! inside the same runtime's `block_on`); two threads reading at once.
//!
//! After criterion's report a table gives, for each implementation, its time
//! per call and two ratios to raw moka in the same setting:
//!
//! - from criterion's samples in this run (the mean time per iteration over
//!   the measurement samples, as criterion's `mean` estimate), and
//! - from paired rounds run afterwards: each round times a batch of raw moka
//!   calls and a batch of the other implementation back to back, in
//!   alternating order, and the ratio is the median over the rounds. Load
//!   from other processes then slows both sides of a round alike, so this
//!   ratio is the one to trust on a busy machine.
//!
//! `cargo bench --bench l1_hit` takes about a minute.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use cached::macros::cached;
use cachette::{cache, Cache};
use common::{
    benchmarking, compare, load_user, measure, nanos_per_call, on_one_thread, paired, round_robin,
    round_robin_async, verdict, Paired, Row, Setting, Timed, User, KEYS, SAMPLES,
};
use criterion::Criterion;

// The ids cached and read round-robin (`KEYS`) are few enough to stay in
// every cache, and enough that reads do not keep hitting one slot.
const CAPACITY: u64 = 10 * KEYS;
const TTL: Duration = Duration::from_secs(300);
/// Paired rounds per comparison, and how long each batch of a round runs.
const ROUNDS: usize = 100;
const BATCH: Duration = Duration::from_millis(2);
/// The P1 target: an L1 hit through `#[cache]` over a raw moka `get`.
const TARGET_RATIO: f64 = 1.3;

/// The caches of the `#[cache]` functions: one each, as the peers have, and
/// apart from the global one so that nothing else shares them.
static SYNC_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);
static ASYNC_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);

/// Body runs of the memoized functions: after warming, the measurement must
/// not add any, or it measured misses.
static SYNC_BODY_RUNS: AtomicU64 = AtomicU64::new(0);
static ASYNC_BODY_RUNS: AtomicU64 = AtomicU64::new(0);
static CACHED_BODY_RUNS: AtomicU64 = AtomicU64::new(0);

fn body_runs() -> [u64; 3] {
    [&SYNC_BODY_RUNS, &ASYNC_BODY_RUNS, &CACHED_BODY_RUNS].map(|runs| runs.load(Relaxed))
}

#[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = &SYNC_CACHE)]
fn cachette_get_user(id: u64) -> User {
    SYNC_BODY_RUNS.fetch_add(1, Relaxed);
    load_user(id)
}

#[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = &ASYNC_CACHE)]
async fn cachette_get_user_async(id: u64) -> User {
    ASYNC_BODY_RUNS.fetch_add(1, Relaxed);
    load_user(id)
}

#[cached(max_size = 10_000, ttl_secs = 300)]
fn cached_get_user(id: u64) -> User {
    CACHED_BODY_RUNS.fetch_add(1, Relaxed);
    load_user(id)
}

/// The hand-written peers, warmed with every id.
struct Peers {
    moka: moka::sync::Cache<u64, User>,
    quick: quick_cache::sync::Cache<u64, User>,
}

impl Peers {
    fn warmed(runtime: &tokio::runtime::Runtime) -> Peers {
        let moka = moka::sync::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_live(TTL)
            .build();
        let quick = quick_cache::sync::Cache::new(CAPACITY as usize);
        for id in 0..KEYS {
            moka.insert(id, load_user(id));
            quick.insert(id, load_user(id));
            cached_get_user(id);
            cachette_get_user(id);
            runtime.block_on(cachette_get_user_async(id));
        }
        let peers = Peers { moka, quick };
        for id in 0..KEYS {
            let user = load_user(id);
            assert_eq!(peers.moka.get(&id).as_ref(), Some(&user));
            assert_eq!(peers.quick.get(&id).as_ref(), Some(&user));
            assert_eq!(cached_get_user(id), user);
            assert_eq!(cachette_get_user(id), user);
            assert_eq!(runtime.block_on(cachette_get_user_async(id)), user);
        }
        peers
    }
}

/// Times two threads each making `iters` round-robin calls of `get`, from
/// opposite ends of the id range.
fn on_two_threads<T>(iters: u64, get: impl Fn(u64) -> T + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| round_robin(iters, KEYS / 2, &get));
        round_robin(iters, 0, &get);
    });
    start.elapsed()
}

fn settings<'a>(peers: &'a Peers, runtime: &'a tokio::runtime::Runtime) -> Vec<Setting<'a>> {
    vec![
        Setting {
            group: "l1_hit",
            title: "1 thread, ns per call",
            contenders: vec![
                (
                    "moka_get",
                    Box::new(|n| on_one_thread(n, |id| peers.moka.get(&id))),
                ),
                ("cached_fn", Box::new(|n| on_one_thread(n, cached_get_user))),
                (
                    "quick_cache_get",
                    Box::new(|n| on_one_thread(n, |id| peers.quick.get(&id))),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| on_one_thread(n, cachette_get_user)),
                ),
            ],
        },
        Setting {
            group: "l1_hit_async",
            title: "async on a current-thread runtime, ns per call",
            contenders: vec![
                (
                    "moka_get_in_block_on",
                    Box::new(|n| {
                        // The same loop as `round_robin_async`, with no future
                        // around the sync `get`.
                        runtime.block_on(async {
                            let start = Instant::now();
                            let mut id = 0;
                            for _ in 0..n {
                                black_box(peers.moka.get(&black_box(id)));
                                id = if id + 1 == KEYS { 0 } else { id + 1 };
                            }
                            start.elapsed()
                        })
                    }),
                ),
                (
                    "cachette_async",
                    Box::new(|n| round_robin_async(runtime, n, cachette_get_user_async)),
                ),
            ],
        },
        Setting {
            group: "l1_hit_2_threads",
            title: "2 threads, ns per pair of parallel calls",
            contenders: vec![
                (
                    "moka_get",
                    Box::new(|n| on_two_threads(n, |id| peers.moka.get(&id))),
                ),
                (
                    "cached_fn",
                    Box::new(|n| on_two_threads(n, cached_get_user)),
                ),
                (
                    "quick_cache_get",
                    Box::new(|n| on_two_threads(n, |id| peers.quick.get(&id))),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| on_two_threads(n, cachette_get_user)),
                ),
            ],
        },
    ]
}

/// The median over `ROUNDS` rounds of candidate time over baseline time,
/// each round timing one batch of each, back to back, first one then the
/// other first. Batches are sized so that the baseline's takes about `BATCH`.
fn paired_ratio(baseline: &Timed<'_>, candidate: &Timed<'_>) -> Paired {
    let per_call = nanos_per_call(baseline(10_000), 10_000);
    let calls = ((BATCH.as_nanos() as f64 / per_call) as u64).max(1_000);
    paired(baseline, candidate, ROUNDS, calls)
}

/// The table of `rows`, the figures of `settings`, then the verdicts.
fn report(settings: &[Setting<'_>], rows: &[Row]) {
    println!();
    println!("P1: L1 hit, key u64 id, value User (clone = 2 small Strings), {KEYS} warm keys");
    println!(
        "ratios are to raw moka in the same setting; target for cachette <= {TARGET_RATIO:.1}x"
    );
    println!(
        "{:<22} {:>10} {:>16} {:>16}",
        "implementation", "mean ns", "ratio (samples)", "ratio (paired)"
    );
    for setting in settings {
        println!("-- {}", setting.title);
        if !rows.iter().any(|row| row.group == setting.group) {
            println!("   (not measured)");
            continue;
        }
        for (name, _) in &setting.contenders {
            let Some(row) = rows
                .iter()
                .find(|row| row.group == setting.group && row.name == *name)
            else {
                println!("{name:<22} {:>10}", "(not measured)");
                continue;
            };
            let (mean, sampled, paired) = (row.mean_nanos, row.sampled.ratio, row.paired.ratio);
            println!("{name:<22} {mean:>10.1} {sampled:>15.2}x {paired:>15.2}x");
        }
    }
    println!();
    for row in rows.iter().filter(|row| row.name.starts_with("cachette")) {
        println!(
            "{}/{}: {:.2}x raw moka paired ({}), {:.2}x from samples ({})",
            row.group,
            row.name,
            row.paired.ratio,
            verdict(row.paired.ratio <= TARGET_RATIO),
            row.sampled.ratio,
            verdict(row.sampled.ratio <= TARGET_RATIO)
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let peers = Peers::warmed(&runtime);
    let warmed = body_runs();
    assert_eq!(warmed, [KEYS; 3], "warming runs each body once per id");
    if !benchmarking() {
        // `cargo test --benches`: warming checked every contender; measuring
        // is for `cargo bench`.
        println!("l1_hit: contenders checked; run `cargo bench --bench l1_hit` to measure");
        return;
    }

    let settings = settings(&peers, &runtime);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(SAMPLES)
        .configure_from_args();
    measure(&mut c, &settings);
    c.final_summary();

    let rows = compare(&settings, paired_ratio);
    report(&settings, &rows);
    assert_eq!(body_runs(), warmed, "every measured call was a hit");
}
