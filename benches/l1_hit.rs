//! P1 (DESIGN §8): an L1 hit (and a miss) through `#[cache]` against
//! hand-written peers on the same key and value types, measured in one run.
//!
//! Every implementation caches the same `User` values under the same `u64`
//! ids, is warmed with all of them first, and is then read round-robin, so
//! every measured call is a hit that clones a `User`. Settings: one thread
//! over 1,000 keys and over 1,000,000 keys; async callers on a
//! current-thread runtime (against a moka `get` inside the same runtime's
//! `block_on`); two threads reading at once; and misses, where every call
//! asks for an id never asked before (against a quick_cache `get` plus
//! `insert` of the same value).
//!
//! After criterion's report a table gives, for each implementation, its time
//! per call and two ratios to the first contender of its setting:
//!
//! - from criterion's samples in this run (the mean time per iteration over
//!   the measurement samples, as criterion's `mean` estimate), and
//! - from paired rounds run afterwards: each round times a batch of the
//!   baseline's calls and a batch of the other implementation back to back,
//!   in alternating order, and the ratio is the median over the rounds. Load
//!   from other processes then slows both sides of a round alike, so this
//!   ratio is the one to trust on a busy machine.
//!
//! A stale setting times P7: a stale hit, served while its background
//! refresh runs, against a fresh hit of the same function shape.
//!
//! With `--features tracing,metrics`, an observed setting times P6: a hit of
//! a function whose `metrics` handles come from a recorder, called under a
//! `tracing` subscriber enabled at `info`, against the same hit with neither.
//!
//! The 1-thread setting also reads a quick_cache and a moka keyed by the
//! rendered `user:<id>` string (rendered with itoa into a reused buffer and
//! hashed with foldhash, as cachette's keys are; moka without expiry of its
//! own, as cachette builds it), which no target names: they tell how much
//! of the gap to each raw store is the string key. A sketch of a typed L1
//! index (entries found by function and argument, shaped and read as
//! cachette's) tells what finding entries without the string would cost.
//!
//! Then each P1 target is checked with paired rounds against the peer it
//! names: the default store against quick_cache and `cached`, the moka store
//! (with `--features moka`) against raw moka, async against sync, and a
//! miss against quick_cache's get and insert.
//!
//! `cargo bench --features moka --bench l1_hit` takes about two minutes.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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
/// Keys of the large setting, and in test mode (a debug build) fewer.
const MANY_KEYS: u64 = 1_000_000;
const MANY_KEYS_IN_TEST: u64 = 10_000;

/// The caches of the `#[cache]` functions: one each, as the peers have, and
/// apart from the global one so that nothing else shares them.
static SYNC_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);
static ASYNC_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);
static MISS_CACHE: LazyLock<Cache> =
    LazyLock::new(|| on_store(cachette::L1Store::QuickCache, CAPACITY));
/// Its entries are made stale by moving its clock past their TTL.
static STALE_CLOCK: LazyLock<cachette::ManualClock> = LazyLock::new(cachette::ManualClock::new);
static STALE_CACHE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .clock(STALE_CLOCK.clone())
        .build_local()
        .expect("a valid configuration")
});
/// Opened when the measurement is over: until then every refresh of the
/// stale setting is running (held on the cache's refresh thread), so
/// every measured call is a stale hit served while its refresh runs.
static REFRESHES_MAY_FINISH: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
#[cfg(feature = "moka")]
static MOKA_CACHE: LazyLock<Cache> = LazyLock::new(|| on_store(cachette::L1Store::Moka, CAPACITY));

/// An L1-only cache of `capacity` entries on `store`.
fn on_store(store: cachette::L1Store, capacity: u64) -> Cache {
    Cache::builder()
        .l1_store(store)
        .l1_capacity(capacity)
        .build_local()
        .expect("a valid configuration")
}

/// The next id no miss contender has asked for.
static FRESH_IDS: AtomicU64 = AtomicU64::new(1 << 40);

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

#[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = &MISS_CACHE)]
fn cachette_get_user_miss(id: u64) -> User {
    load_user(id)
}

#[cfg(feature = "moka")]
#[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = &MOKA_CACHE)]
fn cachette_get_user_moka(id: u64) -> User {
    load_user(id)
}

/// `cachette_get_user` with a stale window, refreshed in the background.
#[cache(key = "user:<id>", ttl = 300, stale = 3600, tier = "l1", cache = &STALE_CACHE)]
fn cachette_get_user_stale(id: u64) -> User {
    let started = Instant::now();
    while STALE_CLOCK_MOVED.load(Relaxed)
        && !REFRESHES_MAY_FINISH.load(Relaxed)
        && started.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    load_user(id)
}

/// Set once the stale setting's entries were filled and made stale.
static STALE_CLOCK_MOVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The same function on a cache of its own, for the large setting.
struct ManyKeys {
    cache: Cache,
}

impl ManyKeys {
    #[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = self.cache)]
    fn get_user(&self, id: u64) -> User {
        load_user(id)
    }
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
    /// quick_cache and moka keyed as cachette keys its entries: by the
    /// rendered `user:<id>`, hashed with foldhash.
    quick_str: StrKeyed,
    typed: TypedIndex,
    /// Misses fill this one; it never holds the ids asked.
    quick_miss: quick_cache::sync::Cache<u64, User>,
    /// The large setting: quick_cache and cachette over `keys` ids.
    many: Arc<ManyPeers>,
}

/// quick_cache and moka under string keys, each read with its key rendered
/// (with itoa) into a buffer that is reused, so a hit allocates only the
/// value's clone. moka is built as cachette builds its moka store: bounded
/// by entry count, foldhash, no expiry of its own.
struct StrKeyed {
    quick: quick_cache::sync::Cache<
        String,
        User,
        quick_cache::UnitWeighter,
        foldhash::fast::RandomState,
    >,
    moka: moka::sync::Cache<String, User, foldhash::fast::RandomState>,
}

impl StrKeyed {
    fn new(capacity: u64) -> Self {
        StrKeyed {
            quick: quick_cache::sync::Cache::with(
                capacity as usize,
                capacity,
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            moka: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    fn insert(&self, id: u64, user: User) {
        self.quick.insert(format!("user:{id}"), user.clone());
        self.moka.insert(format!("user:{id}"), user);
    }

    /// Calls `get` with the rendered key of `id`.
    fn keyed<T>(id: u64, get: impl FnOnce(&str) -> T) -> T {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            key.push_str("user:");
            key.push_str(itoa::Buffer::new().format(id));
            get(key)
        })
    }

    fn quick_get(&self, id: u64) -> Option<User> {
        Self::keyed(id, |key| self.quick.get(key))
    }

    fn moka_get(&self, id: u64) -> Option<User> {
        Self::keyed(id, |key| self.moka.get(key))
    }
}

/// What a typed L1 index would cost, for planning (no target names it):
/// entries found by (function id, argument) instead of by the rendered
/// key, each shaped as cachette's are (a type-erased value in an `Arc`, its
/// two lifetimes, a checked epoch and the rest of its 88 bytes), read as
/// cachette reads its store: under a shard's read lock, judged against a
/// clock and an epoch, the value downcast and cloned.
struct TypedIndex {
    shard: std::sync::RwLock<
        quick_cache::unsync::Cache<
            (u32, u64),
            TypedEntry,
            quick_cache::UnitWeighter,
            foldhash::fast::RandomState,
        >,
    >,
    now_ms: AtomicU64,
    epoch: AtomicU64,
}

struct TypedEntry {
    value: Arc<dyn std::any::Any + Send + Sync>,
    until_ms: u64,
    fresh_until_ms: u64,
    checked_epoch: AtomicU64,
    /// The rest of a cachette entry: its generations and timings.
    _rest: [u64; 6],
}

/// The function id the typed index files every entry under.
const TYPED_FUNCTION: u32 = 7;

impl TypedIndex {
    fn new(capacity: u64) -> Self {
        TypedIndex {
            shard: std::sync::RwLock::new(quick_cache::unsync::Cache::with(
                capacity as usize,
                capacity,
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            )),
            now_ms: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
        }
    }

    fn insert(&self, id: u64, user: User) {
        let entry = TypedEntry {
            value: Arc::new(user),
            until_ms: u64::MAX,
            fresh_until_ms: u64::MAX,
            checked_epoch: AtomicU64::new(0),
            _rest: [0; 6],
        };
        let mut shard = self.shard.write().expect("never poisoned");
        shard.insert((TYPED_FUNCTION, id), entry);
    }

    fn get(&self, id: u64) -> Option<User> {
        let shard = self.shard.read().expect("never poisoned");
        let entry = shard.get(&(TYPED_FUNCTION, id))?;
        let now = self.now_ms.load(Relaxed);
        if now >= entry.until_ms
            || now >= entry.fresh_until_ms
            || entry.checked_epoch.load(Relaxed) != self.epoch.load(Relaxed)
        {
            return None;
        }
        entry.value.downcast_ref::<User>().cloned()
    }
}

struct ManyPeers {
    keys: u64,
    quick: quick_cache::sync::Cache<u64, User>,
    cachette: ManyKeys,
}

impl Peers {
    fn warmed(runtime: &tokio::runtime::Runtime) -> Peers {
        let moka = moka::sync::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_live(TTL)
            .build();
        let quick = quick_cache::sync::Cache::new(CAPACITY as usize);
        let quick_str = StrKeyed::new(CAPACITY);
        let typed = TypedIndex::new(CAPACITY);
        for id in 0..KEYS {
            moka.insert(id, load_user(id));
            quick.insert(id, load_user(id));
            quick_str.insert(id, load_user(id));
            typed.insert(id, load_user(id));
            cached_get_user(id);
            cachette_get_user(id);
            #[cfg(feature = "moka")]
            cachette_get_user_moka(id);
            runtime.block_on(cachette_get_user_async(id));
        }
        let keys = if benchmarking() {
            MANY_KEYS
        } else {
            MANY_KEYS_IN_TEST
        };
        let many = ManyPeers {
            keys,
            quick: quick_cache::sync::Cache::new(2 * keys as usize),
            cachette: ManyKeys {
                cache: on_store(cachette::L1Store::QuickCache, 2 * keys),
            },
        };
        for id in 0..keys {
            many.quick.insert(id, load_user(id));
            many.cachette.get_user(id);
        }
        let peers = Peers {
            moka,
            quick,
            quick_str,
            typed,
            quick_miss: quick_cache::sync::Cache::new(CAPACITY as usize),
            many: Arc::new(many),
        };
        for id in 0..KEYS {
            let user = load_user(id);
            assert_eq!(peers.moka.get(&id).as_ref(), Some(&user));
            assert_eq!(peers.quick.get(&id).as_ref(), Some(&user));
            assert_eq!(peers.quick_str.quick_get(id).as_ref(), Some(&user));
            assert_eq!(peers.quick_str.moka_get(id).as_ref(), Some(&user));
            assert_eq!(peers.typed.get(id).as_ref(), Some(&user));
            assert_eq!(cached_get_user(id), user);
            assert_eq!(cachette_get_user(id), user);
            #[cfg(feature = "moka")]
            assert_eq!(cachette_get_user_moka(id), user);
            assert_eq!(runtime.block_on(cachette_get_user_async(id)), user);
            assert_eq!(peers.many.quick.get(&id).as_ref(), Some(&user));
            assert_eq!(peers.many.cachette.get_user(id), user);
        }
        // Stale: fill, move past the TTL, and start every key's refresh.
        for id in 0..KEYS {
            cachette_get_user_stale(id);
        }
        STALE_CLOCK.advance(TTL + Duration::from_secs(1));
        STALE_CLOCK_MOVED.store(true, Relaxed);
        for id in 0..KEYS {
            assert_eq!(cachette_get_user_stale(id), load_user(id));
        }
        let stale = STALE_CACHE.stats().total();
        assert_eq!((stale.refreshes, stale.stale_served), (KEYS, KEYS));
        let before = peers.many.cachette.cache.stats().total();
        for id in (0..keys).step_by(97) {
            peers.many.cachette.get_user(id);
        }
        let read = peers.many.cachette.cache.stats().total().since(&before);
        assert_eq!(read.misses, 0, "the large setting's cache holds every id");
        peers
    }
}

/// Times `iters` calls of `get` on ids spread over `0..keys` (a stride
/// that is prime to `keys`, so reads do not follow insertion order).
fn spread<T>(iters: u64, keys: u64, get: impl Fn(u64) -> T) -> Duration {
    const STRIDE: u64 = 7_919;
    let start = Instant::now();
    let mut id = 0;
    for _ in 0..iters {
        black_box(get(black_box(id)));
        id += STRIDE;
        if id >= keys {
            id -= keys;
        }
    }
    start.elapsed()
}

/// Times `iters` calls of `get` on ids never asked before.
fn fresh<T>(iters: u64, get: impl Fn(u64) -> T) -> Duration {
    let first = FRESH_IDS.fetch_add(iters, Relaxed);
    let start = Instant::now();
    for id in first..first + iters {
        black_box(get(black_box(id)));
    }
    start.elapsed()
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

/// P6: the hit path with a `metrics` recorder and a `tracing` subscriber.
#[cfg(all(feature = "metrics", feature = "tracing"))]
mod observed {
    use super::*;
    use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
    use metrics::{Metadata, Recorder, SharedString, Unit};

    static OBSERVED_CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);

    #[cache(key = "user:<id>", ttl = 300, tier = "l1", cache = &OBSERVED_CACHE)]
    pub(super) fn cachette_get_user_observed(id: u64) -> User {
        load_user(id)
    }

    /// A recorder as exporters are: an atomic per metric.
    #[derive(Default)]
    struct Atomic(AtomicU64);

    impl CounterFn for Atomic {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Relaxed);
        }
    }
    impl GaugeFn for Atomic {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.0.store(value.to_bits(), Relaxed);
        }
    }
    impl HistogramFn for Atomic {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    struct Exporter;

    impl Recorder for Exporter {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Atomic::default()))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Atomic::default()))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Atomic::default()))
        }
    }

    /// A subscriber enabled at `info` and above, as a service runs.
    struct AtInfo;

    impl tracing::Subscriber for AtInfo {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::INFO
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            black_box(event);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Fills the observed function's entries, its first calls taking their
    /// handles from the recorder.
    pub(super) fn warm() {
        metrics::with_local_recorder(&Exporter, || {
            for id in 0..KEYS {
                cachette_get_user_observed(id);
            }
        });
        let stats = OBSERVED_CACHE.stats().total();
        assert_eq!(stats.misses, KEYS);
    }

    /// `calls` hits under the subscriber.
    pub(super) fn hits(calls: u64) -> Duration {
        let dispatch = tracing::Dispatch::new(AtInfo);
        tracing::dispatcher::with_default(&dispatch, || {
            on_one_thread(calls, cachette_get_user_observed)
        })
    }
}

fn settings<'a>(peers: &'a Peers, runtime: &'a tokio::runtime::Runtime) -> Vec<Setting<'a>> {
    #[cfg(all(feature = "metrics", feature = "tracing"))]
    observed::warm();
    vec![
        #[cfg(all(feature = "metrics", feature = "tracing"))]
        Setting {
            group: "l1_observed",
            title: "hit with a metrics recorder and a tracing subscriber at info, ns per call",
            contenders: vec![
                (
                    "cachette_sync",
                    Box::new(|n| on_one_thread(n, cachette_get_user)),
                ),
                ("cachette_observed", Box::new(observed::hits)),
            ],
        },
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
                    "quick_cache_str_key",
                    Box::new(|n| on_one_thread(n, |id| peers.quick_str.quick_get(id))),
                ),
                (
                    "typed_index_sketch",
                    Box::new(|n| on_one_thread(n, |id| peers.typed.get(id))),
                ),
                (
                    "moka_str_key",
                    Box::new(|n| on_one_thread(n, |id| peers.quick_str.moka_get(id))),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| on_one_thread(n, cachette_get_user)),
                ),
                #[cfg(feature = "moka")]
                (
                    "cachette_sync_moka",
                    Box::new(|n| on_one_thread(n, cachette_get_user_moka)),
                ),
            ],
        },
        Setting {
            group: "l1_hit_many_keys",
            title: "1 thread, 1,000,000 keys, ns per call",
            contenders: vec![
                (
                    "quick_cache_get",
                    Box::new(|n| spread(n, peers.many.keys, |id| peers.many.quick.get(&id))),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| spread(n, peers.many.keys, |id| peers.many.cachette.get_user(id))),
                ),
            ],
        },
        Setting {
            group: "l1_miss",
            title: "miss and fill, 1 thread, ns per call",
            contenders: vec![
                (
                    "quick_cache_get_insert",
                    Box::new(|n| {
                        fresh(n, |id| match peers.quick_miss.get(&id) {
                            Some(user) => user,
                            None => {
                                let user = load_user(id);
                                peers.quick_miss.insert(id, user.clone());
                                user
                            }
                        })
                    }),
                ),
                (
                    "cachette_sync",
                    Box::new(|n| fresh(n, cachette_get_user_miss)),
                ),
            ],
        },
        Setting {
            group: "l1_stale",
            title: "stale hit while its background refresh runs, ns per call",
            contenders: vec![
                (
                    "cachette_sync",
                    Box::new(|n| on_one_thread(n, cachette_get_user)),
                ),
                (
                    "cachette_stale",
                    Box::new(|n| on_one_thread(n, cachette_get_user_stale)),
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

/// One P1 target: `candidate` at most `at_most` times `baseline`, each a
/// (setting group, contender name).
struct Target {
    what: &'static str,
    candidate: (&'static str, &'static str),
    baseline: (&'static str, &'static str),
    at_most: f64,
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            what: "hit, default store, vs quick_cache get",
            candidate: ("l1_hit", "cachette_sync"),
            baseline: ("l1_hit", "quick_cache_get"),
            at_most: 1.5,
        },
        Target {
            what: "hit, default store, vs cached #[cached]",
            candidate: ("l1_hit", "cachette_sync"),
            baseline: ("l1_hit", "cached_fn"),
            at_most: 1.0,
        },
        Target {
            what: "hit, 1,000,000 keys, vs quick_cache get",
            candidate: ("l1_hit_many_keys", "cachette_sync"),
            baseline: ("l1_hit_many_keys", "quick_cache_get"),
            at_most: 1.5,
        },
        #[cfg(feature = "moka")]
        Target {
            what: "hit, moka store, vs moka get",
            candidate: ("l1_hit", "cachette_sync_moka"),
            baseline: ("l1_hit", "moka_get"),
            at_most: 1.15,
        },
        Target {
            what: "async hit vs sync hit",
            candidate: ("l1_hit_async", "cachette_async"),
            baseline: ("l1_hit", "cachette_sync"),
            at_most: 1.2,
        },
        Target {
            what: "P7: stale hit with a background refresh vs fresh hit",
            candidate: ("l1_stale", "cachette_stale"),
            baseline: ("l1_stale", "cachette_sync"),
            at_most: 2.0,
        },
        #[cfg(all(feature = "metrics", feature = "tracing"))]
        Target {
            what: "P6: hit with metrics and tracing vs without",
            candidate: ("l1_observed", "cachette_observed"),
            baseline: ("l1_observed", "cachette_sync"),
            at_most: 1.1,
        },
        Target {
            what: "miss and fill vs quick_cache get+insert",
            candidate: ("l1_miss", "cachette_sync"),
            baseline: ("l1_miss", "quick_cache_get_insert"),
            at_most: 1.5,
        },
    ]
}

fn timed<'s, 'a>(settings: &'s [Setting<'a>], (group, name): (&str, &str)) -> &'s Timed<'a> {
    settings
        .iter()
        .filter(|setting| setting.group == group)
        .flat_map(|setting| &setting.contenders)
        .find(|(contender, _)| *contender == name)
        .map(|(_, timed)| timed)
        .unwrap_or_else(|| panic!("no contender {group}/{name}"))
}

/// The table of `rows`, the figures of `settings`, then the verdicts.
fn report(settings: &[Setting<'_>], rows: &[Row]) {
    println!();
    println!("P1: L1 hit, key u64 id, value User (clone = 2 small Strings), {KEYS} warm keys");
    println!("ratios are to the first contender of each setting");
    println!(
        "{:<24} {:>10} {:>16} {:>16}",
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
                println!("{name:<24} {:>10}", "(not measured)");
                continue;
            };
            let (mean, sampled, paired) = (row.mean_nanos, row.sampled.ratio, row.paired.ratio);
            println!("{name:<24} {mean:>10.1} {sampled:>15.2}x {paired:>15.2}x");
        }
    }
    let measured = |(group, name): (&str, &str)| {
        rows.iter()
            .any(|row| row.group == group && row.name == name)
    };
    println!();
    println!("P1 targets, paired rounds against the peer each names:");
    for target in targets() {
        if !measured(target.candidate) || !measured(target.baseline) {
            println!("{}: not measured", target.what);
            continue;
        }
        let ratio = paired_ratio(
            timed(settings, target.baseline),
            timed(settings, target.candidate),
        )
        .ratio;
        println!(
            "{}: {ratio:.2}x (target <= {:.2}x, {})",
            target.what,
            target.at_most,
            verdict(ratio <= target.at_most)
        );
    }
    // Two threads scale at least as well as quick_cache: cachette's time
    // over quick_cache's grows no more from one thread to two.
    let one = ("l1_hit", "quick_cache_get");
    let two = ("l1_hit_2_threads", "quick_cache_get");
    if [one, two].into_iter().all(measured) {
        let alone = paired_ratio(
            timed(settings, one),
            timed(settings, ("l1_hit", "cachette_sync")),
        );
        let pair = paired_ratio(
            timed(settings, two),
            timed(settings, ("l1_hit_2_threads", "cachette_sync")),
        );
        println!(
            "2 threads scale like quick_cache: {:.2}x quick_cache on 2 threads, {:.2}x on 1 ({})",
            pair.ratio,
            alone.ratio,
            verdict(pair.ratio <= alone.ratio * 1.05)
        );
    }
    // No target: how much of the gap to quick_cache is the string key that
    // every cachette entry has (G10, `{fn}_key`), and how much is the rest.
    let keyed = ("l1_hit", "quick_cache_str_key");
    if [one, keyed].into_iter().all(measured) {
        let key = paired_ratio(timed(settings, one), timed(settings, keyed));
        let rest = paired_ratio(
            timed(settings, keyed),
            timed(settings, ("l1_hit", "cachette_sync")),
        );
        println!(
            "where the hit's time goes: quick_cache keyed by the rendered string is {:.2}x \
             quick_cache keyed by the u64; cachette is {:.2}x the string-keyed one",
            key.ratio, rest.ratio
        );
    }
    let typed = ("l1_hit", "typed_index_sketch");
    if [one, typed].into_iter().all(measured) {
        let sketch = paired_ratio(timed(settings, one), timed(settings, typed));
        let cached = paired_ratio(
            timed(settings, ("l1_hit", "cached_fn")),
            timed(settings, typed),
        );
        println!(
            "a typed L1 index (a sketch: entries found by function and argument, read as \
             cachette reads its store) would be {:.2}x quick_cache and {:.2}x cached",
            sketch.ratio, cached.ratio
        );
    }
    #[cfg(feature = "moka")]
    {
        let (moka, keyed) = (("l1_hit", "moka_get"), ("l1_hit", "moka_str_key"));
        if [moka, keyed].into_iter().all(measured) {
            let key = paired_ratio(timed(settings, moka), timed(settings, keyed));
            let rest = paired_ratio(
                timed(settings, keyed),
                timed(settings, ("l1_hit", "cachette_sync_moka")),
            );
            println!(
                "and on moka: moka keyed by the rendered string (built as cachette builds it) is \
                 {:.2}x the moka get above; cachette's moka store is {:.2}x the string-keyed one",
                key.ratio, rest.ratio
            );
        }
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
        REFRESHES_MAY_FINISH.store(true, Relaxed);
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
    let stale = STALE_CACHE.stats().total();
    assert_eq!(
        stale.refreshes, KEYS,
        "every stale hit was served while its refresh ran"
    );
    REFRESHES_MAY_FINISH.store(true, Relaxed);
}
