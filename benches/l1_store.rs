//! The two L1 stores compared: what an entry costs in memory, and how many
//! calls each store answers on skewed traces.
//!
//! ```sh
//! cargo bench --features moka --bench l1_store   # both stores (under a minute)
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
//!
//! Under `cargo test` (check mode) everything is smaller: 20,000 entries,
//! 10,000 keys and traces of 50,000 accesses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant;

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
}

const BENCH: Sizes = Sizes {
    entries: 1_000_000,
    keys: 100_000,
    accesses: 2_000_000,
};
const CHECK: Sizes = Sizes {
    entries: 20_000,
    keys: 10_000,
    accesses: 50_000,
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

/// Percent of `ids` that a quick_cache of `capacity` answered.
fn quick_cache_hit_ratio(ids: &[u64], capacity: u64) -> f64 {
    let cache = quick_cache::sync::Cache::<String, Vec<u8>>::new(capacity as usize);
    let mut hits = 0;
    for &id in ids {
        let key = item_key(id);
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, item_value(id));
        }
    }
    percent(hits, ids.len() as u64)
}

/// Percent of `ids` that a moka cache of `capacity` answered.
fn moka_hit_ratio(ids: &[u64], capacity: u64) -> f64 {
    let cache = moka::sync::Cache::<String, Vec<u8>>::new(capacity);
    let mut hits = 0;
    for &id in ids {
        let key = item_key(id);
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, item_value(id));
        }
    }
    percent(hits, ids.len() as u64)
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
    println!();
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}
