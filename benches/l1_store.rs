//! The two L1 stores compared: what an entry costs in memory, how many calls
//! each store answers on skewed traces, what invalidating costs on a full
//! cache, and how one cold key fares under a stampede.
//!
//! ```sh
//! cargo bench --features moka --bench l1_store   # both stores (about a minute)
//! cargo bench --bench l1_store                   # the quick_cache store only
//! cargo test --all-features --bench l1_store     # a small, quick check run
//! ```
//!
//! 1. **Memory per entry.** A counting global allocator keeps the bytes
//!    currently allocated (as requested from the allocator, without its own
//!    bookkeeping). Each contender is built, filled with 1,000,000 entries
//!    (a 64-byte `Vec<u8>` under the key `item:<i>`) with room for a tenth
//!    more so that nothing is evicted, and the growth of the live bytes from
//!    before it was built is divided by the entries it holds. The contenders
//!    are a plain `HashMap` made with room for the entries (a reference
//!    point rather than a strict floor: at 1,000,000 entries its table
//!    rounds up to 2^21 slots), raw quick_cache and moka caches of the same
//!    `String` keys and `Vec<u8>` values, and a `#[cache]` method
//!    on a cachette `Cache` with each L1 store, filled by calling it once
//!    per key. Each one is dropped before the next is built. The target is
//!    a cachette entry of at most 1.3× the raw store's.
//! 2. **Hit ratio.** Seeded traces over 100,000 keys (Zipf with s = 0.9 and
//!    1.1, the ranks shuffled over the keys), at capacities of 1 % and 10 %
//!    of the keys, and a Zipf 0.9 trace in which every four fifths of
//!    accesses are followed by a scan of keys never read before or after
//!    (a fifth of all accesses, in runs of 5 % of the key space). Each store
//!    replays the same 2,000,000 accesses; raw quick_cache and moka as a
//!    cache-aside map (get, and insert on a miss), cachette through the
//!    `#[cache]` method, its hit ratio taken from its stats. Compulsory
//!    misses (first reads, scans) count, so no store reaches 100 %.
//! 3. **Invalidation.** A `#[cache]` method tagged `group:<group>` (group =
//!    id % 100, in the key too, since every parameter must be) on a cachette
//!    `Cache` with each L1 store (capacity 200,000), filled with 100,000
//!    entries, and again with 1,000. Timed, as medians of 9: one key's
//!    `invalidate_key_blocking`, `invalidate_tag_blocking("group:7")` and
//!    `clear_blocking()`, each with cold CPU caches (every line of a 64 MiB
//!    buffer is written first: the refill before each timing would
//!    otherwise leave a large cache's state cold and a small one's warm)
//!    and then repeated at once (warm). After each, exactly the invalidated entries run their
//!    bodies again (counted, and checked against the stats), which refills
//!    them. The peers, raw stores of the same keys and values timed cold:
//!    quick_cache's `remove`, `remove` of each of the tag's keys (as a
//!    caller that keeps them would) and `clear`; moka's `invalidate`,
//!    `invalidate` of each of the tag's keys and `invalidate_all`, each
//!    with `run_pending_tasks` until the entries are gone. cachette's clear
//!    and tag invalidation bump a generation, O(1): the verdict is that
//!    their cold time at 100,000 entries is within 3× of that at 1,000 (an
//!    O(n) operation takes about 100×).
//! 4. **Stampede (P3).** 1,000 tokio tasks on a multi-thread runtime with
//!    2 workers, parked on a `Notify` and released at once, call one cold
//!    key of an async `#[cache(lock)]` method whose body sleeps 20 ms and
//!    counts its runs. Each task's latency runs from the release to its
//!    return. The target: one body run, and a p99 at most 5 ms over the
//!    body's 20 ms. Five rounds on each store, a fresh key each, and their
//!    range.
//!
//! Under `cargo test` (check mode) everything is smaller: 20,000 entries,
//! 10,000 keys and traces of 50,000 accesses; invalidation at 5,000
//! entries, medians of 3 and no O(1) verdict; a stampede of 100 tasks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachette::{cache, Cache, L1Store};

/// The value's length in bytes.
const VALUE_LEN: usize = 64;
/// The target: a cachette entry over the raw store's entry.
const TARGET_RATIO: f64 = 1.3;

/// The sizes of one run: full under `cargo bench`, small in check mode.
struct Sizes {
    /// Entries for the memory table.
    entries: u64,
    /// Keys of the hit-ratio traces.
    keys: u64,
    /// Accesses per trace.
    accesses: usize,
    /// Entries of the invalidation table's large cache.
    invalidation_entries: u64,
    /// Timed repetitions of each invalidation (their median is shown).
    invalidation_repetitions: usize,
    /// Concurrent callers of the stampede.
    stampede_tasks: usize,
}

const BENCH: Sizes = Sizes {
    entries: 1_000_000,
    keys: 100_000,
    accesses: 2_000_000,
    invalidation_entries: 100_000,
    invalidation_repetitions: 9,
    stampede_tasks: 1_000,
};
const CHECK: Sizes = Sizes {
    entries: 20_000,
    keys: 10_000,
    accesses: 50_000,
    invalidation_entries: 5_000,
    invalidation_repetitions: 3,
    stampede_tasks: 100,
};

// ---------------------------------------------------------------------------
// Counting allocator

/// Bytes currently allocated by the whole process.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes it holds in `LIVE_BYTES`.
struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which
// implements `GlobalAlloc` correctly, and returns what `System` returned;
// the counter is only bookkeeping and never affects the pointers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size),
        // which is `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator, hence `System`,
        // returned for `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block `System` returned for `layout`
        // and a valid `new_size`, as `System.realloc` requires.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Relaxed)
}

// ---------------------------------------------------------------------------
// The contenders

fn item_key(id: u64) -> String {
    format!("item:{id}")
}

fn item_value(id: u64) -> Vec<u8> {
    vec![id as u8; VALUE_LEN]
}

/// A `#[cache]` method on a cache of its own, as an application writes it.
struct Subject {
    cache: Cache,
}

impl Subject {
    fn new(store: L1Store, capacity: u64) -> Self {
        let cache = Cache::builder()
            .l1_store(store)
            .l1_capacity(capacity)
            .build_local()
            .expect("an L1-only cache builds");
        Self { cache }
    }

    #[cache(key = "item:<id>", ttl = 3600, tier = "l1", cache = self.cache, name = "subject")]
    fn get(&self, id: u64) -> Vec<u8> {
        item_value(id)
    }

    /// L1 hits and misses of `get` so far.
    fn hits_and_misses(&self) -> (u64, u64) {
        self.cache
            .stats()
            .function("subject")
            .map_or((0, 0), |f| (f.l1_hits, f.misses))
    }

    /// How many of the ids `0..n` are held: the hits of reading each once.
    fn held(&self, n: u64) -> u64 {
        let (before, _) = self.hits_and_misses();
        for id in 0..n {
            black_box(self.get(id));
        }
        self.hits_and_misses().0 - before
    }
}

/// The cachette stores this build has.
fn cachette_stores() -> Vec<(&'static str, L1Store)> {
    #[allow(unused_mut, reason = "moka is only there with the feature")]
    let mut stores = vec![("cachette quick_cache", L1Store::QuickCache)];
    #[cfg(feature = "moka")]
    stores.push(("cachette moka", L1Store::Moka));
    stores
}

// ---------------------------------------------------------------------------
// 1. Memory per entry

struct Footprint {
    name: &'static str,
    /// Entries the filled store holds.
    held: u64,
    /// Growth of the live bytes from before the store was built.
    bytes: isize,
}

impl Footprint {
    fn per_entry(&self) -> f64 {
        self.bytes as f64 / self.held.max(1) as f64
    }
}

/// Builds a store, fills it, counts what it holds (which also lets it
/// settle) and measures the bytes it took; then drops it.
fn footprint<S>(
    name: &'static str,
    build: impl FnOnce() -> S,
    fill: impl FnOnce(&S),
    held: impl FnOnce(&S) -> u64,
) -> Footprint {
    let before = live_bytes();
    let store = build();
    fill(&store);
    let held = held(&store);
    let bytes = live_bytes() - before;
    drop(store);
    Footprint { name, held, bytes }
}

fn memory_table(n: u64) {
    let capacity = n + n / 10;
    let mut rows = vec![
        hash_map_footprint(n),
        footprint(
            "quick_cache",
            || quick_cache::sync::Cache::<String, Vec<u8>>::new(capacity as usize),
            |cache| (0..n).for_each(|i| cache.insert(item_key(i), item_value(i))),
            |cache| cache.len() as u64,
        ),
        footprint(
            "moka",
            || moka::sync::Cache::<String, Vec<u8>>::new(capacity),
            |cache| (0..n).for_each(|i| cache.insert(item_key(i), item_value(i))),
            |cache| {
                cache.run_pending_tasks();
                cache.entry_count()
            },
        ),
    ];
    for (name, store) in cachette_stores() {
        rows.push(footprint(
            name,
            || Subject::new(store, capacity),
            |subject| (0..n).for_each(|i| drop(black_box(subject.get(i)))),
            |subject| subject.held(n),
        ));
    }

    println!();
    println!(
        "L1 memory per entry: {n} entries of a {VALUE_LEN}-byte Vec<u8> under \"item:<i>\", \
         capacity {capacity}"
    );
    println!(
        "{:<22} {:>12} {:>14}",
        "store", "entries held", "bytes/entry"
    );
    for row in &rows {
        println!(
            "{:<22} {:>12} {:>14.1}",
            row.name,
            row.held,
            row.per_entry()
        );
    }
    let per_entry = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(Footprint::per_entry)
    };
    for (cachette, raw) in [
        ("cachette quick_cache", "quick_cache"),
        ("cachette moka", "moka"),
    ] {
        let (Some(ours), Some(theirs)) = (per_entry(cachette), per_entry(raw)) else {
            continue;
        };
        let ratio = ours / theirs;
        println!(
            "{cachette} / {raw}: {ratio:.2}x (target at most {TARGET_RATIO}x): {}",
            verdict(ratio <= TARGET_RATIO)
        );
    }
}

/// The reference: a `HashMap` filled in place (it needs `&mut`, which
/// `footprint` does not lend).
fn hash_map_footprint(n: u64) -> Footprint {
    let before = live_bytes();
    let mut map = HashMap::<String, Vec<u8>>::with_capacity(n as usize);
    for i in 0..n {
        map.insert(item_key(i), item_value(i));
    }
    let held = map.len() as u64;
    let bytes = live_bytes() - before;
    drop(map);
    Footprint {
        name: "HashMap",
        held,
        bytes,
    }
}

// ---------------------------------------------------------------------------
// 2. Hit ratio

/// Zipf-distributed ranks `0..n`: rank `r` has weight `1 / (r + 1)^s`.
struct Zipf {
    /// Cumulative weights, the last one 1.
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|rank| {
                total += (rank as f64).powf(-s);
                total
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// One synthetic trace.
struct Trace {
    name: String,
    /// Capacity in percent of the key space.
    capacity_percent: u64,
    ids: Vec<u64>,
}

/// `accesses` ids: Zipf(`s`) over `keys` keys, the ranks shuffled over the
/// keys; with `scans`, after every run of four fifths Zipf accesses comes a
/// scan of `keys / 20` ids above the key space, each read only then.
fn zipf_ids(keys: u64, s: f64, accesses: usize, scans: bool, seed: u64) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let zipf = Zipf::new(keys, s);
    let mut key_of_rank: Vec<u64> = (0..keys).collect();
    rng.shuffle(&mut key_of_rank);
    let scan_run = (keys / 20).max(1) as usize;
    let mut next_scan_id = keys;
    let mut ids = Vec::with_capacity(accesses);
    while ids.len() < accesses {
        if scans && ids.len() % (5 * scan_run) >= 4 * scan_run {
            ids.push(next_scan_id);
            next_scan_id += 1;
        } else {
            ids.push(key_of_rank[zipf.sample(&mut rng)]);
        }
    }
    ids
}

fn traces(sizes: &Sizes) -> Vec<Trace> {
    let (keys, accesses) = (sizes.keys, sizes.accesses);
    let mut traces = Vec::new();
    for (seed, s) in [(1, 0.9), (2, 1.1)] {
        let ids = zipf_ids(keys, s, accesses, false, seed);
        for capacity_percent in [1, 10] {
            traces.push(Trace {
                name: format!("zipf {s} @ {capacity_percent}%"),
                capacity_percent,
                ids: ids.clone(),
            });
        }
    }
    traces.push(Trace {
        name: "zipf 0.9 + scans @ 10%".to_owned(),
        capacity_percent: 10,
        ids: zipf_ids(keys, 0.9, accesses, true, 3),
    });
    traces
}

/// Percent of `ids` answered by a raw store used cache-aside: `get`, and
/// `insert` on a miss.
fn cache_aside_hit_ratio(
    ids: &[u64],
    get: impl Fn(&String) -> bool,
    insert: impl Fn(String, Vec<u8>),
) -> f64 {
    let mut hits = 0;
    for &id in ids {
        let key = item_key(id);
        if get(&key) {
            hits += 1;
        } else {
            insert(key, item_value(id));
        }
    }
    percent(hits, ids.len() as u64)
}

/// Percent of `ids` that a quick_cache of `capacity` answered.
fn quick_cache_hit_ratio(ids: &[u64], capacity: u64) -> f64 {
    let cache = quick_cache::sync::Cache::<String, Vec<u8>>::new(capacity as usize);
    cache_aside_hit_ratio(ids, |k| cache.get(k).is_some(), |k, v| cache.insert(k, v))
}

/// Percent of `ids` that a moka cache of `capacity` answered.
fn moka_hit_ratio(ids: &[u64], capacity: u64) -> f64 {
    let cache = moka::sync::Cache::<String, Vec<u8>>::new(capacity);
    cache_aside_hit_ratio(ids, |k| cache.get(k).is_some(), |k, v| cache.insert(k, v))
}

/// Percent of calls of the `#[cache]` method answered from L1, over `ids`.
fn cachette_hit_ratio(ids: &[u64], store: L1Store, capacity: u64) -> f64 {
    let subject = Subject::new(store, capacity);
    for &id in ids {
        black_box(subject.get(id));
    }
    let (hits, misses) = subject.hits_and_misses();
    assert_eq!(hits + misses, ids.len() as u64, "every call is counted");
    percent(hits, hits + misses)
}

fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn hit_ratio_table(sizes: &Sizes) {
    let cachette = cachette_stores();
    println!();
    println!(
        "L1 hit ratio (%): {} keys, {} accesses per trace, the same trace for every store",
        sizes.keys, sizes.accesses
    );
    let mut header = format!("{:<24} {:>9} {:>11}", "trace", "capacity", "quick_cache");
    header += &format!(" {:>7}", "moka");
    for (name, _) in &cachette {
        header += &format!(" {name:>20}");
    }
    header += &format!(" {:>17}", "cachette q-m (pp)");
    println!("{header}");
    for trace in traces(sizes) {
        let capacity = sizes.keys * trace.capacity_percent / 100;
        let mut row = format!("{:<24} {capacity:>9}", trace.name);
        row += &format!(" {:>11.2}", quick_cache_hit_ratio(&trace.ids, capacity));
        row += &format!(" {:>7.2}", moka_hit_ratio(&trace.ids, capacity));
        let ours: Vec<f64> = cachette
            .iter()
            .map(|&(_, store)| cachette_hit_ratio(&trace.ids, store, capacity))
            .collect();
        for ratio in &ours {
            row += &format!(" {ratio:>20.2}");
        }
        match ours.as_slice() {
            [on_quick, on_moka] => row += &format!(" {:>+17.2}", on_quick - on_moka),
            _ => row += &format!(" {:>17}", "-"),
        }
        println!("{row}");
    }
}

// ---------------------------------------------------------------------------
// 3. Invalidation

/// L1 capacity of the invalidation caches: room for every entry.
const INVALIDATION_CAPACITY: u64 = 200_000;
/// Entries of the small cache, whose times are set against the large one's.
const SMALL_ENTRIES: u64 = 1_000;
/// Ids fall into this many groups, `id % GROUPS`, each a tag.
const GROUPS: u64 = 100;
/// The group whose tag is invalidated.
const TAG_GROUP: u64 = 7;
/// At most this much slower on the large cache than on the small one
/// counts as independent of the entry count; an O(n) operation is about
/// `invalidation_entries / SMALL_ENTRIES` times slower (100×, or 5× in
/// check mode).
const FLAT_RATIO: f64 = 3.0;
/// Bytes written before each cold timing: twice the last-level cache of
/// the machine this was written on (32 MiB). In check mode a token 4 MiB,
/// since a debug build's times mean nothing and its loop is slow.
const COLD_BUFFER: usize = 64 << 20;
const CHECK_COLD_BUFFER: usize = 4 << 20;

fn group(id: u64) -> u64 {
    id % GROUPS
}

/// The key of a raw store's entry: the rendered key of [`Tagged::get`].
fn grouped_key(id: u64) -> String {
    format!("item:{}:{id}", group(id))
}

/// The ids of `0..n` carrying the invalidated tag.
fn tagged_ids(n: u64) -> Vec<u64> {
    (0..n).filter(|&id| group(id) == TAG_GROUP).collect()
}

/// A `#[cache]` method with a tag per group, counting its body runs.
struct Tagged {
    cache: Cache,
    runs: AtomicU64,
}

impl Tagged {
    fn new(store: L1Store) -> Self {
        let cache = Cache::builder()
            .l1_store(store)
            .l1_capacity(INVALIDATION_CAPACITY)
            .build_local()
            .expect("an L1-only cache builds");
        Self {
            cache,
            runs: AtomicU64::new(0),
        }
    }

    // Every parameter must be in the key or skipped, so the group is in the
    // key too; it is a function of the id, so there is one entry per id.
    #[cache(
        key = "item:<group>:<id>",
        ttl = 3600,
        tier = "l1",
        cache = self.cache,
        tags = ["group:<group>"],
        name = "tagged"
    )]
    fn get(&self, id: u64, group: u64) -> Vec<u8> {
        self.runs.fetch_add(1, Relaxed);
        item_value(id)
    }

    /// Calls `get` once per id and returns how many of the calls ran the
    /// body.
    fn read(&self, ids: impl IntoIterator<Item = u64>) -> u64 {
        let before = self.runs.load(Relaxed);
        for id in ids {
            black_box(self.get(id, group(id)));
        }
        self.runs.load(Relaxed) - before
    }
}

/// One operation's time: with cold CPU caches, and for cachette also
/// repeated at once (warm).
#[derive(Clone, Copy)]
struct Took {
    cold: Duration,
    warm: Option<Duration>,
}

/// The three invalidations' median times, for one store at one size.
struct Timings {
    key: Took,
    tag: Took,
    clear: Took,
}

thread_local! {
    static COLD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How long `f` took, starting with cold CPU caches. Without this, the
/// refill before each timing would leave a large cache's state out of the
/// CPU caches and a small one's in, which alone makes an O(1) operation
/// look several times slower on the large cache.
fn time_cold(f: impl FnOnce()) -> Duration {
    COLD.with_borrow_mut(|buffer| {
        if buffer.is_empty() {
            let len = if benchmarking() {
                COLD_BUFFER
            } else {
                CHECK_COLD_BUFFER
            };
            buffer.resize(len, 0);
        }
        // A read-modify-write of every cache line: each must be loaded,
        // whereas a plain fill may stream past the caches.
        for line in buffer.chunks_exact_mut(64) {
            line[0] = line[0].wrapping_add(1);
        }
        black_box(&buffer);
    });
    time(f)
}

/// How long `f` took.
fn time(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

/// The medians over `repetitions` runs of `f`, which times one run.
fn median_of(repetitions: usize, mut f: impl FnMut() -> Took) -> Took {
    fn median(mut times: Vec<Duration>) -> Duration {
        times.sort_unstable();
        times[times.len() / 2]
    }
    let runs: Vec<Took> = (0..repetitions).map(|_| f()).collect();
    let warm: Option<Vec<Duration>> = runs.iter().map(|t| t.warm).collect();
    Took {
        cold: median(runs.iter().map(|t| t.cold).collect()),
        warm: warm.map(median),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Fills a cachette cache with `n` entries, then times invalidating one
/// key, one tag and everything, each cold and then once more at once
/// (warm); after each, checks that exactly the invalidated entries run
/// their bodies again, which refills them.
fn cachette_invalidation(store: L1Store, n: u64, repetitions: usize) -> Timings {
    let subject = Tagged::new(store);
    let cache = &subject.cache;
    assert_eq!(subject.read(0..n), n, "the fill runs every body");

    let (id, neighbour) = (n / 2, n / 2 + 1);
    let key = subject.get_key(id, group(id));
    assert_eq!(key, grouped_key(id), "the key is the rendered template");
    let invalidate_key = || cache.invalidate_key_blocking(&key).expect("in-process");
    let key_time = median_of(repetitions, || {
        let cold = time_cold(invalidate_key);
        let warm = time(invalidate_key);
        assert_eq!(subject.read([id]), 1, "an invalidated key runs its body");
        assert_eq!(subject.read([neighbour]), 0, "another key is still held");
        Took {
            cold,
            warm: Some(warm),
        }
    });

    let tag = format!("group:{TAG_GROUP}");
    let tagged = tagged_ids(n);
    let invalidate_tag = || cache.invalidate_tag_blocking(&tag).expect("in-process");
    let tag_time = median_of(repetitions, || {
        let cold = time_cold(invalidate_tag);
        let warm = time(invalidate_tag);
        assert_eq!(
            subject.read(tagged.iter().copied()),
            tagged.len() as u64,
            "every entry of the tag runs its body"
        );
        assert_eq!(
            subject.read([TAG_GROUP + 1]),
            0,
            "another tag's entry is still held"
        );
        Took {
            cold,
            warm: Some(warm),
        }
    });

    let clear = || cache.clear_blocking().expect("in-process");
    let clear_time = median_of(repetitions, || {
        let cold = time_cold(clear);
        let warm = time(clear);
        assert_eq!(subject.read(0..n), n, "a cleared cache runs every body");
        Took {
            cold,
            warm: Some(warm),
        }
    });

    let stats = cache.stats();
    let f = stats.function("tagged").expect("the function has run");
    assert_eq!(
        f.body_runs,
        subject.runs.load(Relaxed),
        "stats count the runs"
    );
    assert_eq!(f.misses, f.body_runs, "every miss ran the body once");
    Timings {
        key: key_time,
        tag: tag_time,
        clear: clear_time,
    }
}

/// A raw store's time of one operation, with cold CPU caches.
fn cold_only(cold: Duration) -> Took {
    Took { cold, warm: None }
}

/// The same operations on a raw quick_cache, whose keys the caller knows:
/// `remove`, `remove` of each of the tag's keys, and `clear`.
fn quick_cache_invalidation(n: u64, repetitions: usize) -> Timings {
    let cache = quick_cache::sync::Cache::<String, Vec<u8>>::new(INVALIDATION_CAPACITY as usize);
    let fill = |ids: &mut dyn Iterator<Item = u64>| {
        ids.for_each(|id| cache.insert(grouped_key(id), item_value(id)));
    };
    fill(&mut (0..n));
    assert_eq!(cache.len() as u64, n, "nothing is evicted");

    let id = n / 2;
    let key = grouped_key(id);
    let key_time = median_of(repetitions, || {
        let cold = time_cold(|| drop(black_box(cache.remove(&key))));
        assert_eq!(cache.len() as u64, n - 1);
        fill(&mut [id].into_iter());
        cold_only(cold)
    });

    let tagged = tagged_ids(n);
    let tagged_keys: Vec<String> = tagged.iter().map(|&id| grouped_key(id)).collect();
    let tag_time = median_of(repetitions, || {
        let cold = time_cold(|| {
            for key in &tagged_keys {
                drop(black_box(cache.remove(key)));
            }
        });
        assert_eq!(cache.len() as u64, n - tagged.len() as u64);
        fill(&mut tagged.iter().copied());
        cold_only(cold)
    });

    let clear_time = median_of(repetitions, || {
        let cold = time_cold(|| cache.clear());
        assert_eq!(cache.len(), 0);
        fill(&mut (0..n));
        cold_only(cold)
    });
    Timings {
        key: key_time,
        tag: tag_time,
        clear: clear_time,
    }
}

/// The same operations on a raw moka cache: `invalidate`, `invalidate` of
/// each of the tag's keys and `invalidate_all`, each with
/// `run_pending_tasks` until the entries are gone. (Not
/// `invalidate_entries_if` for the tag: with moka 0.12.16, after the
/// group was refilled, it left two of its entries readable for good.)
#[cfg(feature = "moka")]
fn moka_invalidation(n: u64, repetitions: usize) -> Timings {
    let cache = moka::sync::Cache::<String, Vec<u8>>::new(INVALIDATION_CAPACITY);
    // Runs the maintenance until `entries` are held; a bounded number of
    // times, since moka applies writes and removals in batches.
    let settle = |entries: u64| {
        for _ in 0..1_000 {
            cache.run_pending_tasks();
            if cache.entry_count() == entries {
                return;
            }
        }
        panic!("moka holds {} entries, not {entries}", cache.entry_count());
    };
    let fill = |ids: &mut dyn Iterator<Item = u64>| {
        ids.for_each(|id| cache.insert(grouped_key(id), item_value(id)));
        settle(n);
    };
    fill(&mut (0..n));

    let id = n / 2;
    let key = grouped_key(id);
    let key_time = median_of(repetitions, || {
        let cold = time_cold(|| {
            cache.invalidate(&key);
            settle(n - 1);
        });
        fill(&mut [id].into_iter());
        cold_only(cold)
    });

    let tagged = tagged_ids(n);
    let tagged_keys: Vec<String> = tagged.iter().map(|&id| grouped_key(id)).collect();
    let tag_time = median_of(repetitions, || {
        let cold = time_cold(|| {
            tagged_keys.iter().for_each(|key| cache.invalidate(key));
            settle(n - tagged.len() as u64);
        });
        fill(&mut tagged.iter().copied());
        cold_only(cold)
    });

    let clear_time = median_of(repetitions, || {
        let cold = time_cold(|| {
            cache.invalidate_all();
            settle(0);
        });
        fill(&mut (0..n));
        cold_only(cold)
    });
    Timings {
        key: key_time,
        tag: tag_time,
        clear: clear_time,
    }
}

/// A raw store's nearest operations to cachette's three, and a run of them.
struct Peer {
    name: &'static str,
    key: &'static str,
    tag: &'static str,
    clear: &'static str,
    run: fn(u64, usize) -> Timings,
}

/// The peers of [`cachette_stores`], in its order.
fn peers() -> Vec<Peer> {
    #[allow(unused_mut, reason = "moka is only there with the feature")]
    let mut peers = vec![Peer {
        name: "quick_cache",
        key: "remove",
        tag: "remove each of its keys",
        clear: "clear",
        run: quick_cache_invalidation,
    }];
    #[cfg(feature = "moka")]
    peers.push(Peer {
        name: "moka",
        key: "invalidate + pending tasks",
        tag: "invalidate each key + pending",
        clear: "invalidate_all + pending tasks",
        run: moka_invalidation,
    });
    peers
}

fn invalidation_table(sizes: &Sizes) {
    let (large, repetitions) = (sizes.invalidation_entries, sizes.invalidation_repetitions);
    let tag_op = format!("invalidate_tag group:{TAG_GROUP}");
    println!();
    println!(
        "Invalidation (µs, medians of {repetitions}): a #[cache] method with \
         tags = [\"group:<group>\"], group = id % {GROUPS}, L1 capacity {INVALIDATION_CAPACITY}; \
         cold: CPU caches flushed first, warm: the call repeated at once; \
         the peer is the raw store (cold)"
    );
    println!(
        "{:<22} {:>7} {:<21} {:>9} {:>8}   {:<42} {:>10}",
        "operation", "entries", "store", "cold", "warm", "peer", "peer"
    );
    let mut summaries = Vec::new();
    for ((name, store), peer) in cachette_stores().into_iter().zip(peers()) {
        let mut by_size = Vec::new();
        for n in [large, SMALL_ENTRIES] {
            let ours = cachette_invalidation(store, n, repetitions);
            let theirs = (peer.run)(n, repetitions);
            for (op, ours, peer_op, theirs) in [
                ("invalidate_key", ours.key, peer.key, theirs.key),
                (tag_op.as_str(), ours.tag, peer.tag, theirs.tag),
                ("clear", ours.clear, peer.clear, theirs.clear),
            ] {
                println!(
                    "{op:<22} {n:>7} {name:<21} {:>9.3} {:>8.3}   {:<42} {:>10.3}",
                    micros(ours.cold),
                    micros(ours.warm.expect("cachette is timed warm too")),
                    format!("{} {peer_op}", peer.name),
                    micros(theirs.cold)
                );
            }
            by_size.push((ours, theirs));
        }
        summaries.push((name, peer.name, by_size));
    }
    println!(
        "cachette's clear and invalidate_tag bump a generation: O(1) whatever the entry count \
         (the same cold time at {large} and at {SMALL_ENTRIES} entries, within {FLAT_RATIO}x):"
    );
    for (name, peer_name, by_size) in summaries {
        let [(ours_large, theirs_large), (ours_small, theirs_small)] = by_size.as_slice() else {
            unreachable!("two sizes");
        };
        for (op, ours, theirs) in [
            (
                "clear",
                [ours_large.clear, ours_small.clear],
                [theirs_large.clear, theirs_small.clear],
            ),
            (
                tag_op.as_str(),
                [ours_large.tag, ours_small.tag],
                [theirs_large.tag, theirs_small.tag],
            ),
        ] {
            let ratio = |[at_large, at_small]: [Duration; 2]| {
                at_large.as_secs_f64() / at_small.as_secs_f64().max(1e-9)
            };
            let cold = ratio(ours.map(|t| t.cold));
            println!(
                "  {name} {op}: {large} vs {SMALL_ENTRIES} entries: {:.3} vs {:.3} µs cold \
                 ({cold:.2}x), {:.3} vs {:.3} µs warm ({:.2}x); {peer_name}: {:.2}x; {}",
                micros(ours[0].cold),
                micros(ours[1].cold),
                micros(ours[0].warm.unwrap_or_default()),
                micros(ours[1].warm.unwrap_or_default()),
                ratio(ours.map(|t| t.warm.unwrap_or_default())),
                ratio(theirs.map(|t| t.cold)),
                if !benchmarking() {
                    "no verdict in check mode (5x the entries is too few to tell)"
                } else if cold <= FLAT_RATIO {
                    "O(1)"
                } else {
                    "GROWS WITH THE ENTRY COUNT"
                }
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Stampede

/// How long the stampede's body takes.
const STAMPEDE_BODY: Duration = Duration::from_millis(20);
/// The target: p99 within the body's time plus this.
const STAMPEDE_SLACK: Duration = Duration::from_millis(5);
const STAMPEDE_ROUNDS: u64 = 5;

/// A slow `#[cache]` method with `lock`, counting its body runs.
struct Cold {
    cache: Cache,
    runs: AtomicUsize,
}

impl Cold {
    #[cache(key = "cold:<id>", ttl = 60, lock, tier = "l1", cache = self.cache, name = "cold")]
    async fn load(&self, id: u64) -> u64 {
        self.runs.fetch_add(1, Relaxed);
        tokio::time::sleep(STAMPEDE_BODY).await;
        id
    }
}

/// One round of the stampede.
struct Round {
    body_runs: usize,
    lock_waits: u64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Round {
    /// The p99 over the body's time.
    fn over_body(&self) -> Duration {
        self.p99.saturating_sub(STAMPEDE_BODY)
    }

    fn meets(&self) -> bool {
        self.body_runs == 1 && self.over_body() <= STAMPEDE_SLACK
    }
}

/// `tasks` tasks, parked until one release, call `cold.load(id)` for a key
/// none has read; each one's latency is from the release to its return.
async fn stampede_round(cold: &Arc<Cold>, id: u64, tasks: usize) -> Round {
    let (runs_before, waits_before) = (cold.runs.load(Relaxed), cold_lock_waits(cold));
    let release = Arc::new(tokio::sync::Notify::new());
    let released_at = Arc::new(OnceLock::<Instant>::new());
    let parked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cold, release, released_at, parked) = (
                Arc::clone(cold),
                Arc::clone(&release),
                Arc::clone(&released_at),
                Arc::clone(&parked),
            );
            tokio::spawn(async move {
                let mut released = std::pin::pin!(release.notified());
                released.as_mut().enable();
                parked.fetch_add(1, Relaxed);
                released.await;
                let value = cold.load(id).await;
                let latency = released_at.get().expect("set before the release").elapsed();
                assert_eq!(value, id, "every caller gets the body's value");
                latency
            })
        })
        .collect();
    while parked.load(Relaxed) < tasks {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    released_at.set(Instant::now()).expect("released once");
    release.notify_waiters();
    let mut latencies = Vec::with_capacity(tasks);
    for handle in handles {
        latencies.push(handle.await.expect("a caller does not panic"));
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((q * tasks as f64).ceil() as usize).clamp(1, tasks) - 1];
    Round {
        body_runs: cold.runs.load(Relaxed) - runs_before,
        lock_waits: cold_lock_waits(cold) - waits_before,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies[tasks - 1],
    }
}

fn cold_lock_waits(cold: &Cold) -> u64 {
    cold.cache
        .stats()
        .function("cold")
        .map_or(0, |f| f.lock_waits)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stampede_table(sizes: &Sizes) {
    let tasks = sizes.stampede_tasks;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime builds");
    println!();
    println!(
        "Stampede (P3): {tasks} tokio tasks (2 workers) released at once on one cold key of an \
         async #[cache(lock)] method whose body sleeps {} ms; latency from the release (ms)",
        STAMPEDE_BODY.as_millis()
    );
    println!(
        "{:<21} {:>5} {:>9} {:>10} {:>7} {:>7} {:>7} {:>10}  target p99 <= body + {} ms",
        "store",
        "round",
        "body runs",
        "lock waits",
        "p50",
        "p99",
        "max",
        "p99 - body",
        STAMPEDE_SLACK.as_millis()
    );
    for (name, store) in cachette_stores() {
        let cache = Cache::builder()
            .l1_store(store)
            .build_local()
            .expect("an L1-only cache builds");
        let cold = Arc::new(Cold {
            cache,
            runs: AtomicUsize::new(0),
        });
        let rounds: Vec<Round> = (1..=STAMPEDE_ROUNDS)
            .map(|round| {
                let r = runtime.block_on(stampede_round(&cold, round, tasks));
                println!(
                    "{name:<21} {round:>5} {:>9} {:>10} {:>7.2} {:>7.2} {:>7.2} {:>10.2}  {}",
                    r.body_runs,
                    r.lock_waits,
                    millis(r.p50),
                    millis(r.p99),
                    millis(r.max),
                    millis(r.over_body()),
                    verdict(r.meets())
                );
                r
            })
            .collect();
        let range = |f: fn(&Round) -> f64, decimals: usize| {
            let values = rounds.iter().map(f);
            let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            format!("{lo:.decimals$}–{hi:.decimals$}")
        };
        println!(
            "{name} over {STAMPEDE_ROUNDS} rounds: body runs {}, p50 {} ms, p99 {} ms, max {} ms, \
             p99 - body {} ms: {}",
            range(|r| r.body_runs as f64, 0),
            range(|r| millis(r.p50), 2),
            range(|r| millis(r.p99), 2),
            range(|r| millis(r.max), 2),
            range(|r| millis(r.over_body()), 2),
            verdict(rounds.iter().all(Round::meets))
        );
    }
}

// ---------------------------------------------------------------------------

fn verdict(meets: bool) -> &'static str {
    if meets {
        "meets"
    } else {
        "MISSES"
    }
}

/// Whether cargo runs this as a benchmark (`cargo bench` passes `--bench`)
/// rather than as a test.
fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn main() {
    let started = Instant::now();
    let sizes = if benchmarking() { BENCH } else { CHECK };
    if !benchmarking() {
        println!("check mode (cargo test): small sizes; `cargo bench` for the figures");
    }
    memory_table(sizes.entries);
    hit_ratio_table(&sizes);
    invalidation_table(&sizes);
    stampede_table(&sizes);
    println!();
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}
