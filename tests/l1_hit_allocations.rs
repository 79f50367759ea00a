//! P1 (DESIGN §8): an L1 hit through `#[cache]` allocates nothing but the
//! clone of the value it returns. In particular the key is rendered without
//! allocating.
//!
//! A counting global allocator counts the allocations of the current thread
//! while a test asks it to, so tests running in parallel do not see each
//! other's allocations. Each hit is counted on its own.
//!
//! Both L1 stores are covered: quick_cache (the default) by a plain run,
//! moka by `CACHETTE_TEST_L1_STORE=moka` (scripts/test runs both). On
//! quick_cache every hit must allocate exactly the value's clone. moka does
//! its housekeeping on the threads that read it: at most once per 64 reads
//! of a cache (or every few hundred milliseconds), a read also applies
//! pending inserts and reads, and hands garbage to crossbeam-epoch, which
//! now and then allocates a queue node for it. A plain moka `get` pays the
//! same (`a_raw_moka_get_needs_the_same_housekeeping_allowance`). So on moka
//! at most [`HOUSEKEEPING_TURNS`] hits may allocate more. A hit path that
//! allocated even once per 64 hits would fail. Each function has a cache of
//! its own, so other tests' reads do not add turns.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};

use cachette::{cache, Cache};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counting touches only const-initialised thread-locals without destructors,
// which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The allocations (and reallocations) this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Hits counted per test.
const HITS: u64 = 1_000;
/// Distinct keys the hits cycle over, all warmed before counting.
const KEYS: u64 = 100;
/// Hits that may run a turn of moka's housekeeping: one per 64 reads, and
/// two more for turns that come due by time.
const HOUSEKEEPING_TURNS: usize = (HITS / 64) as usize + 2;

/// The hits allowed to allocate more than the value's clone on the store
/// under test.
fn allowance() -> usize {
    match common::l1_store() {
        cachette::L1Store::QuickCache => 0,
        _ => HOUSEKEEPING_TURNS,
    }
}

/// Fills every key with `call`, then reads them all a few more times so that
/// moka has admitted every insert (which allocates its queue nodes) before
/// anything is counted.
fn warm(mut call: impl FnMut(u64)) {
    for _ in 0..10 {
        for id in 0..KEYS {
            call(id);
        }
    }
}

/// Makes `HITS` calls of `hit`, cycling over the keys, and asserts that each
/// allocated exactly `expected` times, but for moka's housekeeping turns.
fn assert_each_hit_allocates(expected: u64, hit: impl FnMut(u64)) {
    assert_hits_allocate(expected, allowance(), hit);
}

/// As [`assert_each_hit_allocates`], with `allowance` hits allowed more.
fn assert_hits_allocate(expected: u64, allowance: usize, mut hit: impl FnMut(u64)) {
    let per_hit: Vec<u64> = (0..HITS)
        .map(|i| allocations_in(|| hit(i % KEYS)))
        .collect();
    let mut histogram = BTreeMap::new();
    for &n in &per_hit {
        *histogram.entry(n).or_insert(0_usize) += 1;
    }
    let fewer = per_hit.iter().filter(|&&n| n < expected).count();
    let more = per_hit.iter().filter(|&&n| n > expected).count();
    assert!(
        fewer == 0 && more <= allowance,
        "expected {expected} allocation(s) per hit, with at most {allowance} \
         hits allowed more for the store's housekeeping; hits by allocations made: {histogram:?}"
    );
}

/// A cache on the store under test.
fn on_store() -> Cache {
    Cache::builder()
        .l1_store(common::l1_store())
        .build_local()
        .expect("a valid configuration")
}

/// One cache per function; see the module docs.
static GREETINGS: LazyLock<Cache> = LazyLock::new(on_store);
static SQUARES: LazyLock<Cache> = LazyLock::new(on_store);
static ASYNC_GREETINGS: LazyLock<Cache> = LazyLock::new(on_store);
static ASYNC_SQUARES: LazyLock<Cache> = LazyLock::new(on_store);
static LENGTHS: LazyLock<Cache> = LazyLock::new(on_store);

#[cache(key = "greeting:<id>", ttl = 300, tier = "l1", cache = &GREETINGS)]
fn greeting(id: u64) -> String {
    format!("hello, visitor number {id}")
}

#[cache(key = "square:<id>", ttl = 300, tier = "l1", cache = &SQUARES)]
fn square(id: u64) -> u64 {
    id * id
}

#[cache(key = "greeting:<id>", ttl = 300, tier = "l1", cache = &ASYNC_GREETINGS)]
async fn greeting_async(id: u64) -> String {
    format!("hello, visitor number {id}")
}

#[cache(key = "square:<id>", ttl = 300, tier = "l1", cache = &ASYNC_SQUARES)]
async fn square_async(id: u64) -> u64 {
    id * id
}

/// Escaping, a namespace, a version, tags, `lock` and a fallible return all
/// stay off the heap on a hit too.
#[cache(
    key = "len:<name>:<id>",
    ttl = "5m",
    tier = "l1",
    namespace = "words",
    version = 3,
    tags = ["word:<name>", "lengths"],
    lock,
    cache = &LENGTHS
)]
fn name_length(name: &str, id: u64) -> Result<Option<u64>, std::io::Error> {
    Ok(Some(name.len() as u64 + id))
}

/// Polls `future` once with a waker that does nothing: a hit completes
/// without suspending, and polling it needs no runtime that could allocate.
fn poll_once<F: Future>(future: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(future).poll(cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an L1 hit completes on its first poll"),
    }
}

struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}

fn expected_greeting(id: u64) -> String {
    format!("hello, visitor number {id}")
}

#[test]
fn an_l1_hit_allocates_only_the_value_clone() {
    warm(|id| assert_eq!(greeting(id), expected_greeting(id)));
    assert_each_hit_allocates(1, |id| {
        let value = black_box(greeting(black_box(id)));
        assert!(value.ends_with(char::is_numeric));
    });
}

#[test]
fn an_l1_hit_on_a_value_without_heap_data_allocates_nothing() {
    warm(|id| assert_eq!(square(id), id * id));
    assert_each_hit_allocates(0, |id| {
        assert_eq!(black_box(square(black_box(id))), id * id);
    });
}

#[test]
fn an_async_l1_hit_allocates_only_the_value_clone() {
    let runtime = current_thread_runtime();
    warm(|id| assert_eq!(runtime.block_on(greeting_async(id)), expected_greeting(id)));
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    assert_each_hit_allocates(1, |id| {
        let value = black_box(poll_once(greeting_async(black_box(id)), &mut cx));
        assert!(value.ends_with(char::is_numeric));
    });
}

#[test]
fn an_async_l1_hit_on_a_value_without_heap_data_allocates_nothing() {
    let runtime = current_thread_runtime();
    warm(|id| assert_eq!(runtime.block_on(square_async(id)), id * id));
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    assert_each_hit_allocates(0, |id| {
        let value = black_box(poll_once(square_async(black_box(id)), &mut cx));
        assert_eq!(value, id * id);
    });
}

#[test]
fn an_l1_hit_with_escaping_namespace_version_tags_and_lock_allocates_nothing() {
    // `:` and `%` are escaped inside values, and so is every non-ASCII
    // character when the template has any; these names need each case.
    let names = ["plain", "with:colon", "100%", "naïve"];
    warm(|id| {
        for name in names {
            let expected = name.len() as u64 + id;
            assert_eq!(name_length(name, id).unwrap(), Some(expected));
        }
    });
    let mut call = 0;
    assert_each_hit_allocates(0, |id| {
        let name = names[call % names.len()];
        call += 1;
        let value = name_length(black_box(name), black_box(id));
        assert_eq!(value.unwrap(), Some(name.len() as u64 + id));
    });
}

static STALE_CLOCK: LazyLock<cachette::ManualClock> = LazyLock::new(cachette::ManualClock::new);
static STALE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .l1_store(common::l1_store())
        .clock(STALE_CLOCK.clone())
        .build_local()
        .expect("a valid configuration")
});
/// While set, refreshes of `stale_square` stay running (bounded).
static HOLD_REFRESHES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cache(key = "stale:<id>", ttl = 300, stale = 3600, tier = "l1", cache = &STALE)]
fn stale_square(id: u64) -> u64 {
    let start = std::time::Instant::now();
    while HOLD_REFRESHES.load(std::sync::atomic::Ordering::SeqCst)
        && start.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    id * id
}

#[test]
fn a_stale_hit_served_while_its_refresh_runs_allocates_nothing_either() {
    warm(|id| assert_eq!(stale_square(id), id * id));
    HOLD_REFRESHES.store(true, std::sync::atomic::Ordering::SeqCst);
    STALE_CLOCK.advance(std::time::Duration::from_secs(301));
    // The first stale hit of each key starts its refresh, which allocates.
    for id in 0..KEYS {
        assert_eq!(stale_square(id), id * id);
    }
    assert_each_hit_allocates(0, |id| {
        assert_eq!(black_box(stale_square(black_box(id))), id * id);
    });
    HOLD_REFRESHES.store(false, std::sync::atomic::Ordering::SeqCst);
    let stats = STALE.stats().total();
    assert_eq!(stats.refreshes, KEYS);
    assert_eq!(stats.stale_served, KEYS + HITS);
}

#[test]
fn a_raw_moka_get_needs_the_same_housekeeping_allowance() {
    // The allowance above is moka's own: a hand-written moka cache of plain
    // numbers, read the same way, needs it too.
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(10_000);
    for id in 0..KEYS {
        moka.insert(id, id * id);
    }
    warm(|id| assert_eq!(moka.get(&id), Some(id * id)));
    assert_hits_allocate(0, HOUSEKEEPING_TURNS, |id| {
        assert_eq!(black_box(moka.get(&black_box(id))), Some(id * id));
    });
}

#[test]
fn the_allocation_counter_sees_allocations() {
    // Guards the tests above against a counter that always reads zero.
    assert_hits_allocate(1, 0, |id| {
        black_box(id.to_string());
    });
    assert_eq!(allocations_in(|| drop(black_box(vec![1_u8; 64]))), 1);
}

static AFTER_MISS: LazyLock<Cache> = LazyLock::new(on_store);
static ASYNC_AFTER_MISS: LazyLock<Cache> = LazyLock::new(on_store);

#[cache(key = "after-miss:<id>", ttl = 300, tier = "l1", cache = &AFTER_MISS)]
fn square_after_miss(id: u64) -> u64 {
    id * id
}

#[cache(key = "after-miss:<id>", ttl = 300, tier = "l1", cache = &ASYNC_AFTER_MISS)]
async fn square_after_miss_async(id: u64) -> u64 {
    id * id
}

/// Times each of `HITS` hits from `hit` right after an uncounted miss from
/// `miss` on the same thread, and asserts that none allocates (but for
/// moka's housekeeping turns): a miss leaves this thread's key buffer as
/// it found it.
fn assert_hits_after_misses_allocate_nothing(mut miss: impl FnMut(u64), mut hit: impl FnMut(u64)) {
    let allocating = (0..HITS)
        .filter(|&i| {
            miss(KEYS + i);
            allocations_in(|| hit(i % KEYS)) > 0
        })
        .count();
    assert!(
        allocating <= allowance(),
        "{allocating} of {HITS} hits right after a miss allocated"
    );
}

#[test]
fn a_hit_right_after_a_miss_allocates_nothing_more() {
    warm(|id| assert_eq!(square_after_miss(id), id * id));
    assert_hits_after_misses_allocate_nothing(
        |id| assert_eq!(square_after_miss(id), id * id),
        |id| assert_eq!(black_box(square_after_miss(black_box(id))), id * id),
    );
    let stats = AFTER_MISS.stats().total();
    assert_eq!(stats.misses, KEYS + HITS, "every miss was one");
}

#[test]
fn an_async_hit_right_after_an_async_miss_allocates_nothing_more() {
    let runtime = current_thread_runtime();
    warm(|id| assert_eq!(runtime.block_on(square_after_miss_async(id)), id * id));
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    assert_hits_after_misses_allocate_nothing(
        |id| assert_eq!(runtime.block_on(square_after_miss_async(id)), id * id),
        |id| {
            let value = black_box(poll_once(square_after_miss_async(black_box(id)), &mut cx));
            assert_eq!(value, id * id);
        },
    );
    let stats = ASYNC_AFTER_MISS.stats().total();
    assert_eq!(stats.misses, KEYS + HITS, "every miss was one");
}
