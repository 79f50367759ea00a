//! The load path over a shared tier that misbehaves, without a server: an
//! in-memory store that fails, answers late, hangs, holds garbage or loses
//! invalidation messages (G7, G8, G9). Each test checks the call's result
//! and what L1 holds afterwards.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::__private::{
    lookup, put_blocking, refresh, shared, Escape, KeyWriter, Lookup, Opt, Plain, Site, Spec, Tier,
};
use crate::clock::ManualClock;
use crate::envelope;
use crate::error::Error;
use crate::handle::Cache;
use crate::l2::memory::{MemoryStore, Mode};

const L2_TIMEOUT: Duration = Duration::from_millis(50);
/// Far more than a call may take when the tier times out: a few
/// `l2_timeout`s.
const CALL_BOUND: Duration = Duration::from_secs(2);
const NAME: &str = "faults.value";

/// Absent values are cached too: `look_maybe` returns `None` for odd ids.
static MAYBE: Site = Site::new(Spec {
    name: "faults.maybe",
    ttl: Duration::from_secs(300),
    jitter: 0.0,
    negative_ttl: Some(Duration::from_secs(60)),
    lock: false,
    namespace: None,
    version: 1,
    l1_ttl: None,
    tier: Tier::Both,
    key_escape: Escape::of("m:"),
    freshness: crate::spec::Freshness::NONE,
});

/// With `lock`: one load per key at a time, across processes too.
static LOCKED: Site = Site::new(Spec {
    name: "faults.locked",
    ttl: Duration::from_secs(300),
    jitter: 0.0,
    negative_ttl: None,
    lock: true,
    namespace: None,
    version: 1,
    l1_ttl: None,
    tier: Tier::Both,
    key_escape: Escape::of("l:"),
    freshness: crate::spec::Freshness::NONE,
});

static SITE: Site = Site::new(Spec {
    name: NAME,
    ttl: Duration::from_secs(300),
    jitter: 0.0,
    negative_ttl: None,
    lock: false,
    namespace: None,
    version: 1,
    l1_ttl: None,
    tier: Tier::Both,
    key_escape: Escape::of("v:"),
    freshness: crate::spec::Freshness::NONE,
});

/// Writes the key `<prefix><id>`.
fn keyed(prefix: &'static str, id: u64) -> impl FnOnce(&mut KeyWriter<'_>) {
    move |w| {
        w.lit(prefix);
        w.part(&id);
    }
}

/// Looks up `v:<id>` for the function of [`SITE`].
fn look(cache: &Cache, id: u64) -> Lookup<'_, u64> {
    lookup::<Plain, u64>(&SITE, cache, shared::<Plain, u64>(), keyed("v:", id), &[])
}

/// Starts a load of `id` on `p` in a thread whose body waits: the returned
/// barriers let the test act once the body has begun, then let it finish
/// (returning 10).
fn held_load(
    p: &Arc<Process>,
    id: u64,
) -> (std::thread::JoinHandle<u64>, Arc<Barrier>, Arc<Barrier>) {
    let started = Arc::new(Barrier::new(2));
    let finish = Arc::new(Barrier::new(2));
    let (p, body_started, body_finish) = (Arc::clone(p), Arc::clone(&started), Arc::clone(&finish));
    let loader = std::thread::spawn(move || match look(&p.cache, id) {
        Lookup::Hit(_) | Lookup::Refresh(..) => panic!("nothing was stored yet"),
        Lookup::Miss(load) => load.run_blocking::<Plain, u64, _>(
            || {
                body_started.wait();
                body_finish.wait();
                10
            },
            None,
        ),
    });
    (loader, started, finish)
}

/// A process's view of one cached function: `call(id)` returns what the
/// body returned when it ran, `value`.
struct Process {
    cache: Cache,
    runs: AtomicU64,
}

impl Process {
    fn on(store: &MemoryStore, clock: &ManualClock) -> Process {
        let builder = Cache::builder()
            .prefix("faults")
            .l2_timeout(L2_TIMEOUT)
            .clock(clock.clone())
            .backend(store.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to build the cache on");
        let cache = runtime
            .block_on(builder.build())
            .expect("the memory store connects");
        Process {
            cache,
            runs: AtomicU64::new(0),
        }
    }

    /// A sync call of the cached function.
    fn call(&self, id: u64, value: u64) -> u64 {
        match look(&self.cache, id) {
            Lookup::Hit(v) => v,
            // These sites have no freshness arguments.
            Lookup::Refresh(..) => unreachable!("no stale window"),
            Lookup::Miss(load) => load.run_blocking::<Plain, u64, _>(
                || {
                    self.runs.fetch_add(1, SeqCst);
                    value
                },
                None,
            ),
        }
    }

    /// A call that must not run the body (an L1 or L2 hit).
    fn cached(&self, id: u64) -> u64 {
        let before = self.runs();
        let v = self.call(id, u64::MAX);
        assert_eq!(
            self.runs(),
            before,
            "the body ran for a key that should be cached"
        );
        v
    }

    /// Whether L1 holds `id` (it is served without touching the tier).
    fn l1_holds(&self, id: u64) -> bool {
        let before = self.cache.stats().function(NAME).map_or(0, |f| f.l1_hits);
        let hit = matches!(look(&self.cache, id), Lookup::Hit(_));
        let after = self.cache.stats().function(NAME).map_or(0, |f| f.l1_hits);
        assert_eq!(hit, after == before + 1);
        hit
    }

    fn runs(&self) -> u64 {
        self.runs.load(SeqCst)
    }

    fn l2_errors(&self) -> u64 {
        self.cache.stats().function(NAME).map_or(0, |f| f.l2_errors)
    }

    fn era(&self) -> u64 {
        self.cache.inner.l2.as_ref().expect("a shared tier").era()
    }
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < CALL_BOUND, "{what} took {took:?}");
    out
}

#[test]
fn a_failing_shared_tier_makes_calls_slower_not_failed_and_l1_still_serves() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let p = Process::on(&store, &clock);
    store.set_mode(Mode::Failing);

    assert_eq!(timed("a miss", || p.call(1, 10)), 10);
    assert_eq!(p.runs(), 1);
    assert!(p.l2_errors() >= 1, "the failure is counted");
    assert!(p.l1_holds(1), "the value is kept in L1");
    assert_eq!(p.cached(1), 10);

    let e = p
        .cache
        .invalidate_key_blocking("v:1")
        .expect_err("the tier is down");
    assert!(
        matches!(e, Error::L2Connection(_) | Error::L2Unavailable),
        "{e:?}"
    );
    assert!(!p.l1_holds(1), "L1 is updated first");
    assert_eq!(p.call(1, 11), 11);
    assert_eq!(p.runs(), 2);

    // Three failures in a row open the breaker: the next operations are
    // not tried, and say so.
    for _ in 0..3 {
        let _ = p.cache.invalidate_tag_blocking("t");
    }
    assert_eq!(
        p.cache.invalidate_tag_blocking("t"),
        Err(Error::L2Unavailable)
    );
}

#[test]
fn a_slow_shared_tier_times_out_and_the_call_goes_on_with_the_body() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let p = Process::on(&store, &clock);
    store.set_mode(Mode::Slow(L2_TIMEOUT * 4));

    assert_eq!(timed("a miss over a slow tier", || p.call(1, 10)), 10);
    assert_eq!(p.runs(), 1);
    assert!(p.l2_errors() >= 1);
    assert!(p.l1_holds(1));
    assert_eq!(
        p.cache.invalidate_key_blocking("v:1"),
        Err(Error::L2Timeout)
    );
    assert!(!p.l1_holds(1));
}

#[test]
fn a_hanging_shared_tier_never_hangs_a_call() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let p = Process::on(&store, &clock);
    store.set_mode(Mode::Hanging);

    for id in 0..5 {
        assert_eq!(
            timed("a miss over a hanging tier", || p.call(id, id + 100)),
            id + 100
        );
        assert!(p.l1_holds(id));
    }
    assert_eq!(p.runs(), 5);
    let e =
        timed("an invalidation", || p.cache.invalidate_key_blocking("v:0")).expect_err("no answer");
    assert!(
        matches!(e, Error::L2Timeout | Error::L2Unavailable),
        "{e:?}"
    );

    // Async callers are bounded the same way.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let e = runtime
        .block_on(async { tokio::time::timeout(CALL_BOUND, p.cache.invalidate_key("v:1")).await })
        .expect("bounded by l2_timeout")
        .expect_err("no answer");
    assert!(e.is_l2(), "{e:?}");
}

#[test]
fn a_garbage_value_is_a_miss_is_overwritten_and_never_panics() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let writer = Process::on(&store, &clock);
    assert_eq!(writer.call(1, 10), 10);
    assert_eq!(store.entry_keys(), ["faults:v1:v:1"]);

    let mut valid = Vec::new();
    let stored = store.get("faults:v1:v:1").expect("stored");
    assert!(envelope::decode(&stored, usize::MAX).is_ok());
    valid.extend_from_slice(&stored);
    let truncated = &valid[..valid.len() - 1];
    let mut longer = valid.clone();
    longer.push(0);
    let mut other_codec = valid.clone();
    other_codec[1] ^= 0xFF;
    let garbage: [&[u8]; 6] = [
        b"",
        b"\xCA",
        b"not an envelope",
        truncated,
        &longer,
        &other_codec,
    ];
    for (round, bytes) in garbage.into_iter().enumerate() {
        assert_eq!(store.overwrite("v:1", bytes), 1);
        let reader = Process::on(&store, &clock);
        let value = 20 + round as u64;
        assert_eq!(
            reader.call(1, value),
            value,
            "round {round}: a miss runs the body"
        );
        assert_eq!(reader.runs(), 1);
        assert!(reader.l1_holds(1));
        // The body's value replaced the garbage: another process reads it.
        let next = Process::on(&store, &clock);
        assert_eq!(
            next.cached(1),
            value,
            "round {round}: the replacement decodes"
        );
    }
}

#[test]
fn a_lost_invalidation_message_is_bounded_by_l1_max_ttl() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);
    assert_eq!(b.cached(1), 10, "B reads A's fill");
    assert!(a.l1_holds(1) && b.l1_holds(1));

    store.lose_messages(true);
    b.cache
        .invalidate_key_blocking("v:1")
        .expect("the tier is up");
    assert!(!b.l1_holds(1));
    assert_eq!(b.call(1, 11), 11);
    // A never heard: its L1 copy is served until `l1_max_ttl` (60 s with a
    // shared tier) ends it.
    assert!(a.l1_holds(1));
    assert_eq!(a.cached(1), 10);
    clock.advance(Duration::from_secs(61));
    assert!(!a.l1_holds(1));
    assert_eq!(a.cached(1), 11, "A reads B's fill from the shared tier");
    assert!(a.l1_holds(1));
}

#[test]
fn a_dropped_subscription_flushes_l1_when_it_comes_back() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);
    assert!(a.l1_holds(1));

    store.lose_messages(true);
    b.cache
        .invalidate_key_blocking("v:1")
        .expect("the tier is up");
    assert!(a.l1_holds(1), "the message was lost");
    store.lose_messages(false);

    let era = a.era();
    store.drop_subscriptions();
    // Wait (bounded) for A's listener to notice and subscribe again.
    let deadline = Instant::now() + CALL_BOUND;
    while a.era() < era + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(a.era() >= era + 2, "the listener subscribed again");
    assert!(!a.l1_holds(1), "resubscribing flushed L1");
    assert_eq!(a.call(1, 12), 12, "B's invalidation is seen in the tier");
}

#[test]
fn a_load_that_began_before_another_process_invalidated_never_becomes_visible() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Arc::new(Process::on(&store, &clock));
    let b = Process::on(&store, &clock);
    // The message is lost, so A learns of the invalidation only from the
    // tier itself.
    store.lose_messages(true);

    let (loader, started, finish) = held_load(&a, 1);
    started.wait();
    b.cache
        .invalidate_key_blocking("v:1")
        .expect("the tier is up");
    finish.wait();
    assert_eq!(
        loader.join().expect("the loader returns"),
        10,
        "its own caller gets it"
    );

    // Neither A's L1 nor the shared tier serves the old load.
    assert!(
        !a.l1_holds(1),
        "A learned the new generation after its fill"
    );
    let c = Process::on(&store, &clock);
    assert_eq!(c.call(1, 20), 20);
    assert_eq!(c.runs(), 1, "the old load's entry is rejected");
}

#[test]
fn a_load_that_began_before_this_process_invalidated_is_not_stored_anywhere() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Arc::new(Process::on(&store, &clock));

    let (loader, started, finish) = held_load(&a, 2);
    started.wait();
    a.cache
        .invalidate_key_blocking("v:2")
        .expect("the tier is up");
    finish.wait();
    assert_eq!(loader.join().expect("the loader returns"), 10);
    assert!(!a.l1_holds(2));
    assert!(store.entry_keys().is_empty(), "{:?}", store.entry_keys());
}

/// Waits (bounded) until `holds` is true.
fn until(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + CALL_BOUND;
    while !holds() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_l2_read_racing_this_process_invalidation_is_never_served_from_l1() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let writer = Process::on(&store, &clock);
    // Every round: a fresh process reads the key from the shared tier over
    // a slow link, and invalidates it while the read's reply is on its way.
    for round in 0..10 {
        let id = 100 + round;
        assert_eq!(writer.call(id, 10), 10);
        let a = Arc::new(Process::on(&store, &clock));
        store.set_mode(Mode::LateReply(Duration::from_millis(20)));
        let reads = store.entry_reads.load(SeqCst);
        let reader = {
            let a = Arc::clone(&a);
            std::thread::spawn(move || a.call(id, 99))
        };
        until("the read reached the store", || {
            store.entry_reads.load(SeqCst) > reads
        });
        a.cache
            .invalidate_key_blocking(&format!("v:{id}"))
            .expect("the tier answers");
        assert_eq!(reader.join().expect("the reader returns"), 10);
        store.set_mode(Mode::Healthy);
        assert!(
            !a.l1_holds(id),
            "round {round}: L1 serves a value this process invalidated"
        );
        assert_eq!(
            a.call(id, 11),
            11,
            "round {round}: the next call loads anew"
        );
    }
}

impl Process {
    fn put(&self, id: u64, value: u64) -> Result<(), Error> {
        put_blocking::<Plain, u64>(
            &SITE,
            &self.cache,
            shared::<Plain, u64>(),
            keyed("v:", id),
            &[],
            value,
        )
    }

    fn refresh(&self, id: u64, value: u64) -> u64 {
        refresh(
            &SITE,
            &self.cache,
            shared::<Plain, u64>(),
            keyed("v:", id),
            &[],
        )
        .run_blocking::<Plain, u64, _>(
            || {
                self.runs.fetch_add(1, SeqCst);
                value
            },
            None,
        )
    }

    fn maybe(&self, id: u64, value: Option<u64>) -> Option<u64> {
        let found = lookup::<Opt, Option<u64>>(
            &MAYBE,
            &self.cache,
            shared::<Opt, Option<u64>>(),
            keyed("m:", id),
            &[],
        );
        match found {
            Lookup::Hit(v) => v,
            // These sites have no freshness arguments.
            Lookup::Refresh(..) => unreachable!("no stale window"),
            Lookup::Miss(load) => load.run_blocking::<Opt, Option<u64>, _>(
                || {
                    self.runs.fetch_add(1, SeqCst);
                    value
                },
                None,
            ),
        }
    }

    fn put_maybe(&self, id: u64, value: Option<u64>) -> Result<(), Error> {
        put_blocking::<Opt, Option<u64>>(
            &MAYBE,
            &self.cache,
            shared::<Opt, Option<u64>>(),
            keyed("m:", id),
            &[],
            value,
        )
    }
}

#[test]
fn a_put_reaches_the_l1_of_other_processes() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);
    assert_eq!(b.cached(1), 10);
    assert!(b.l1_holds(1));

    a.put(1, 20).expect("the tier answers");
    assert_eq!(a.cached(1), 20);
    until("B drops its copy", || !b.l1_holds(1));
    assert_eq!(
        b.cached(1),
        20,
        "B reads the put value from the shared tier"
    );

    // An absent value cached by B gives way to a value put by A.
    assert_eq!(b.maybe(7, None), None);
    assert_eq!(b.maybe(7, Some(1)), None, "the absent value is cached");
    a.put_maybe(7, Some(70)).expect("the tier answers");
    until("B drops its absent value", || b.maybe(7, Some(1)).is_some());
    assert_eq!(
        b.maybe(7, Some(1)),
        Some(70),
        "B reads A's value, not its body's"
    );
}

#[test]
fn a_refresh_reaches_the_l1_of_other_processes() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);
    assert_eq!(b.cached(1), 10);

    assert_eq!(a.refresh(1, 30), 30);
    assert_eq!(a.cached(1), 30);
    until("B drops its copy", || !b.l1_holds(1));
    assert_eq!(b.cached(1), 30);
}

#[test]
fn a_load_older_than_a_put_never_overwrites_it() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Arc::new(Process::on(&store, &clock));
    let b = Process::on(&store, &clock);

    // A's load begins, then B puts a newer value, then A's load finishes
    // with the old one (10).
    let (loader, started, finish) = held_load(&a, 3);
    started.wait();
    b.put(3, 20).expect("the tier answers");
    finish.wait();
    assert_eq!(loader.join().expect("the loader returns"), 10);

    until("A hears of the put", || !a.l1_holds(3) || a.cached(3) == 20);
    assert_eq!(a.call(3, 20), 20, "A never serves its older load");
    let c = Process::on(&store, &clock);
    assert_eq!(c.call(3, 20), 20, "nor does the shared tier");
    assert_eq!(b.cached(3), 20);
}

impl Process {
    /// A call of the `lock` function whose body takes `takes`.
    fn locked_call(&self, id: u64, value: u64, takes: Duration) -> u64 {
        let found = lookup::<Plain, u64>(
            &LOCKED,
            &self.cache,
            shared::<Plain, u64>(),
            keyed("l:", id),
            &[],
        );
        match found {
            Lookup::Hit(v) => v,
            // These sites have no freshness arguments.
            Lookup::Refresh(..) => unreachable!("no stale window"),
            Lookup::Miss(load) => load.run_blocking::<Plain, u64, _>(
                || {
                    self.runs.fetch_add(1, SeqCst);
                    std::thread::sleep(takes);
                    value
                },
                None,
            ),
        }
    }
}

/// A invalidates the `lock` function's `id`; B's next load of it must not
/// wait on a lock left behind for longer than `bound`.
fn b_loads_anew_within(a: &Process, b: &Process, id: u64, bound: Duration) {
    a.cache
        .invalidate_key_blocking(&format!("l:{id}"))
        .expect("the tier answers");
    let started = Instant::now();
    assert_eq!(b.locked_call(id, 11, Duration::ZERO), 11);
    let waited = started.elapsed();
    assert!(waited < bound, "B waited {waited:?}");
}

#[test]
fn a_lock_whose_answer_was_lost_is_still_released_after_the_body() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    // The lock is taken in the store, but A hears nothing in time.
    store.late_locks(Some(L2_TIMEOUT * 3));
    assert_eq!(a.locked_call(1, 10, Duration::ZERO), 10);
    store.late_locks(None);
    assert!(!store.locked(), "A released the lock it could not confirm");

    b_loads_anew_within(&a, &b, 1, Duration::from_millis(500));
}

#[test]
fn a_lock_whose_release_was_lost_ends_within_its_lease() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    store.failing_unlocks(true);
    assert_eq!(a.locked_call(2, 10, Duration::ZERO), 10);
    store.failing_unlocks(false);
    assert!(store.locked(), "the release was lost");

    // One lease (1 s) and a poll, not `lock_timeout` (5 s).
    b_loads_anew_within(&a, &b, 2, Duration::from_millis(1_600));
}

#[test]
fn a_held_lock_is_renewed_while_a_long_body_runs() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Arc::new(Process::on(&store, &clock));
    let b = Process::on(&store, &clock);
    let holder = {
        let a = Arc::clone(&a);
        // Longer than a lease (1 s): without renewal, B would take over.
        std::thread::spawn(move || a.locked_call(3, 30, Duration::from_millis(1_600)))
    };
    until("A holds the lock", || store.locked());
    assert_eq!(b.locked_call(3, 31, Duration::ZERO), 30, "B gets A's value");
    assert_eq!(b.runs(), 0, "B never ran the body");
    assert_eq!(holder.join().expect("A returns"), 30);
    assert!(!store.locked());
}

#[test]
fn an_invalidation_that_could_not_reach_the_tier_reaches_other_processes_once_it_answers() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);
    assert_eq!(b.cached(1), 10);

    store.set_mode(Mode::Failing);
    let e = a
        .cache
        .invalidate_key_blocking("v:1")
        .expect_err("the tier is down");
    assert!(e.is_l2(), "{e:?}");
    assert!(!a.l1_holds(1), "this process misses at once");
    assert!(b.l1_holds(1), "the other cannot know yet");

    store.set_mode(Mode::Healthy);
    let back = Instant::now();
    until("B drops its copy", || !b.l1_holds(1));
    assert!(
        back.elapsed() < Duration::from_secs(1),
        "{:?}",
        back.elapsed()
    );
    assert_eq!(
        b.call(1, 12),
        12,
        "the old entry is not read back from the tier"
    );
    assert_eq!(a.call(1, 13), 12, "A reads B's new fill");
}

#[test]
fn a_failed_invalidation_and_its_replays_leave_the_other_l1_entries_serving() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let p = Process::on(&store, &clock);
    assert_eq!(p.call(1, 10), 10);
    assert_eq!(p.call(2, 20), 20);

    // During an outage L1 is what keeps the body from running: a failed
    // invalidation voids its own key, and neither it nor the replays of
    // it that fail too (every 100 ms) void anything else.
    store.set_mode(Mode::Failing);
    assert!(p.cache.invalidate_key_blocking("v:1").is_err());
    assert!(!p.l1_holds(1), "the invalidated key misses at once");
    assert!(p.l1_holds(2), "the other entries still serve");
    assert!(p.put(3, 30).is_err(), "the tier is down");
    std::thread::sleep(Duration::from_millis(350));
    assert!(p.l1_holds(2), "a failed replay voids nothing");
    assert!(p.l1_holds(3), "nor what a put stored meanwhile");
    assert_eq!(p.cached(3), 30);

    // Once the tier answers, the replay goes through and the key's
    // generation is the store's again.
    store.set_mode(Mode::Healthy);
    assert_eq!(p.call(1, 11), 11);
    assert_eq!(p.cached(1), 11);
}

#[test]
fn a_failed_invalidation_is_never_undone_by_what_a_read_learns() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let b = Process::on(&store, &clock);
    assert_eq!(a.call(1, 10), 10);

    // The tier refuses the invalidation, then answers reads again; A's
    // next reads must never take the old entry's generations as current.
    store.set_mode(Mode::Failing);
    assert!(a.cache.invalidate_key_blocking("v:1").is_err());
    store.set_mode(Mode::Healthy);
    for round in 0..5 {
        assert_ne!(
            a.call(1, 20 + round),
            10,
            "round {round}: the old value came back"
        );
    }
    let c = Process::on(&store, &clock);
    assert_ne!(
        c.call(1, 30),
        10,
        "another process never reads the old value"
    );
    assert_ne!(b.call(1, 31), 10);
}

#[test]
fn a_probe_whose_caller_gave_up_never_keeps_the_breaker_open() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let a = Process::on(&store, &clock);
    let l2 = Arc::clone(a.cache.inner.l2.as_ref().expect("a shared tier"));
    store.set_mode(Mode::Failing);
    for _ in 0..3 {
        assert!(a.cache.invalidate_tag_blocking("t").is_err());
    }
    assert!(l2.breaker.refusing(), "the breaker is open");
    until("the cool-down ends", || !l2.breaker.refusing());

    // The probe hangs, and its caller stops waiting before `l2_timeout`.
    store.set_mode(Mode::Hanging);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gave_up = runtime.block_on(async {
        tokio::time::timeout(L2_TIMEOUT / 5, a.cache.invalidate_tag("t")).await
    });
    assert!(gave_up.is_err(), "the caller gave up");

    store.set_mode(Mode::Healthy);
    until("the breaker closes", || {
        a.cache.invalidate_tag_blocking("t").is_ok()
    });
    assert!(!l2.breaker.is_open());
}
