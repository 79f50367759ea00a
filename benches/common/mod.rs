//! What the benches share: round-robin callers, criterion's samples kept by
//! benchmark id, and the paired rounds that compare each contender with its
//! setting's baseline.
//!
//! Include it from a bench with `mod common;`.

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

/// Ids read round-robin.
pub const KEYS: u64 = 1_000;
/// Criterion's samples per benchmark.
pub const SAMPLES: usize = 10;

/// The cached value: small, `Clone`, with two heap fields as real rows have
/// (serde for the shared tier's codec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// The value the bodies compute for `id`.
pub fn load_user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
    }
}

/// Calls `get` with `iters` ids in round-robin order starting at `first`.
#[inline(always)]
pub fn round_robin<T>(iters: u64, first: u64, mut get: impl FnMut(u64) -> T) {
    let mut id = first;
    for _ in 0..iters {
        black_box(get(black_box(id)));
        id += 1;
        if id == KEYS {
            id = 0;
        }
    }
}

/// Times `iters` round-robin calls of `get` on this thread.
pub fn on_one_thread<T>(iters: u64, get: impl FnMut(u64) -> T) -> Duration {
    let start = Instant::now();
    round_robin(iters, 0, get);
    start.elapsed()
}

/// Awaits `get` with `iters` ids in round-robin order inside `runtime`.
pub fn round_robin_async<F: Future>(
    runtime: &Runtime,
    iters: u64,
    mut get: impl FnMut(u64) -> F,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let mut id = 0;
        for _ in 0..iters {
            black_box(get(black_box(id)).await);
            id = if id + 1 == KEYS { 0 } else { id + 1 };
        }
        start.elapsed()
    })
}

/// Makes `iters` calls (per thread) and returns how long they took.
pub type Timed<'a> = Box<dyn Fn(u64) -> Duration + 'a>;

/// One setting: contenders measured the same way, the baseline first.
pub struct Setting<'a> {
    pub group: &'static str,
    pub title: &'static str,
    pub contenders: Vec<(&'static str, Timed<'a>)>,
}

/// How a contender compares with its setting's baseline.
#[derive(Clone, Copy)]
pub struct Paired {
    /// Its time over the baseline's.
    pub ratio: f64,
    /// The time per call it adds to the baseline's.
    #[allow(dead_code, reason = "l1_hit reports ratios only")]
    pub added_nanos: f64,
}

impl Paired {
    /// The baseline against itself.
    const SAME: Paired = Paired {
        ratio: 1.0,
        added_nanos: 0.0,
    };
}

/// One contender's figures.
pub struct Row {
    pub group: &'static str,
    pub name: &'static str,
    pub mean_nanos: f64,
    /// From criterion's samples.
    pub sampled: Paired,
    /// From the paired rounds.
    pub paired: Paired,
}

/// The time per iteration of every sample criterion took, by benchmark id.
static SAMPLES_TAKEN: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(id: &str, iters: u64, elapsed: Duration) -> Duration {
    SAMPLES_TAKEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id.to_owned())
        .or_default()
        .push(nanos_per_call(elapsed, iters));
    elapsed
}

pub fn nanos_per_call(elapsed: Duration, calls: u64) -> f64 {
    elapsed.as_nanos() as f64 / calls.max(1) as f64
}

/// The mean time per iteration over the last `SAMPLES` samples of `id`
/// (criterion's measurement comes after its warm-up), if criterion measured
/// it fully.
fn criterion_mean(id: &str) -> Option<f64> {
    let samples = SAMPLES_TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    let all = samples.get(id).filter(|all| all.len() >= SAMPLES)?;
    let last = &all[all.len() - SAMPLES..];
    Some(last.iter().sum::<f64>() / last.len() as f64)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Medians over `rounds` rounds of candidate time over baseline time and of
/// the time per call the candidate adds, each round timing one batch of
/// `calls` calls of each, back to back, first one then the other first.
pub fn paired(baseline: &Timed<'_>, candidate: &Timed<'_>, rounds: usize, calls: u64) -> Paired {
    let (ratios, added) = (0..rounds)
        .map(|round| {
            let (base, cand) = if round % 2 == 0 {
                let base = baseline(calls);
                (base, candidate(calls))
            } else {
                let cand = candidate(calls);
                (baseline(calls), cand)
            };
            (
                cand.as_secs_f64() / base.as_secs_f64(),
                nanos_per_call(cand, calls) - nanos_per_call(base, calls),
            )
        })
        .unzip();
    Paired {
        ratio: median(ratios),
        added_nanos: median(added),
    }
}

/// Criterion measures every contender of `settings`.
pub fn measure(c: &mut Criterion, settings: &[Setting<'_>]) {
    for setting in settings {
        let mut group = c.benchmark_group(setting.group);
        for (name, timed) in &setting.contenders {
            let id = format!("{}/{name}", setting.group);
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| record(&id, iters, timed(iters)))
            });
        }
        group.finish();
    }
}

/// Figures for every contender criterion measured fully, its setting's
/// baseline included: `paired` runs the paired rounds of a contender against
/// the baseline.
pub fn compare(
    settings: &[Setting<'_>],
    paired: impl Fn(&Timed<'_>, &Timed<'_>) -> Paired,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for setting in settings {
        let (baseline_name, baseline) = &setting.contenders[0];
        let Some(baseline_mean) = criterion_mean(&format!("{}/{baseline_name}", setting.group))
        else {
            continue;
        };
        for (name, timed) in &setting.contenders {
            let Some(mean) = criterion_mean(&format!("{}/{name}", setting.group)) else {
                continue;
            };
            let paired = if name == baseline_name {
                Paired::SAME
            } else {
                paired(baseline, timed)
            };
            rows.push(Row {
                group: setting.group,
                name,
                mean_nanos: mean,
                sampled: Paired {
                    ratio: mean / baseline_mean,
                    added_nanos: mean - baseline_mean,
                },
                paired,
            });
        }
    }
    rows
}

pub fn verdict(meets: bool) -> &'static str {
    if meets {
        "meets"
    } else {
        "MISSES"
    }
}

/// Whether cargo runs this as a benchmark (`cargo bench` passes `--bench`)
/// rather than as a test.
pub fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}
