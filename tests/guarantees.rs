//! One test per guarantee of DESIGN section 7 that holds within a process:
//! G1, G2, G3, G4, G5, G6, G7 and G10. Time is moved with a manual clock;
//! no test sleeps to wait for an expiry. They run on the default L1 store,
//! and on moka with `CACHETTE_TEST_L1_STORE=moka` (scripts/test runs both).

mod common;
mod support;

use std::time::Duration;

use common::Runs;
use support::wait::eventually;

/// How long a test waits for other tasks to reach a state it observes.
const WAIT: Duration = Duration::from_secs(10);

mod g1 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static RUNS: Runs = Runs::new();

    #[cache(key = "square:<n>", ttl = 300, cache = CACHE, tier = "l1")]
    fn square(n: u64) -> u64 {
        RUNS.bump();
        n * n
    }

    static ASYNC_RUNS: Runs = Runs::new();

    #[cache(key = "cube:<n>", ttl = 300, cache = CACHE, tier = "l1")]
    async fn cube(n: u64) -> u64 {
        ASYNC_RUNS.bump();
        n * n * n
    }

    #[test]
    fn g1_repeated_call_inside_ttl_returns_stored_value_without_running_the_body() {
        assert_eq!(square(7), 49);
        assert_eq!(square(7), 49);
        CLOCK.advance(Duration::from_secs(299));
        assert_eq!(square(7), 49);
        assert_eq!(RUNS.get(), 1);
        assert_eq!(square(8), 64, "other arguments are another entry");
        assert_eq!(RUNS.get(), 2);

        let stats = CACHE.stats();
        let s = stats.function("guarantees::g1::square").expect("stats");
        assert_eq!((s.l1_hits, s.misses, s.body_runs), (2, 2, 2));
    }

    #[tokio::test]
    async fn g1_holds_for_async_functions() {
        assert_eq!(cube(3).await, 27);
        assert_eq!(cube(3).await, 27);
        assert_eq!(ASYNC_RUNS.get(), 1);
    }
}

mod g2 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static RUNS: Runs = Runs::new();

    #[cache(key = "item:<id>", ttl = 100, jitter = 0.2, cache = CACHE, tier = "l1")]
    fn item(id: u32) -> u32 {
        RUNS.bump();
        id
    }

    #[test]
    fn g2_entries_expire_inside_the_jitter_window_and_spread_over_it() {
        const KEYS: u32 = 1000;
        for id in 0..KEYS {
            item(id);
        }
        assert_eq!(RUNS.get(), KEYS as usize);

        // Step through time one second at a time; the first second at which
        // a key's body runs again is its expiry.
        let mut expired_at = vec![None; KEYS as usize];
        for second in 1..=125u64 {
            CLOCK.advance(Duration::from_secs(1));
            for id in 0..KEYS {
                if expired_at[id as usize].is_none() {
                    let before = RUNS.get();
                    item(id);
                    if RUNS.get() > before {
                        expired_at[id as usize] = Some(second);
                    }
                }
            }
        }
        let expiries: Vec<u64> = expired_at
            .iter()
            .map(|e| e.expect("every entry expires by ttl * (1 + jitter)"))
            .collect();
        assert!(
            expiries.iter().all(|&s| (80..=121).contains(&s)),
            "expiries outside [80 s, 120 s]: {:?}",
            expiries
                .iter()
                .filter(|&&s| !(80..=121).contains(&s))
                .collect::<Vec<_>>()
        );
        // Uniform over the window: each quarter holds about a quarter.
        for (lo, hi) in [(80, 90), (90, 100), (100, 110), (110, 122)] {
            let n = expiries.iter().filter(|&&s| s > lo && s <= hi).count();
            assert!(n > 150, "only {n} of {KEYS} expiries in ({lo} s, {hi} s]");
        }
    }
}

mod g2_exact {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static PLAIN_RUNS: Runs = Runs::new();

    #[cache(key = "plain:<id>", ttl = 100, cache = CACHE, tier = "l1")]
    fn plain(id: u32) -> u32 {
        PLAIN_RUNS.bump();
        id
    }

    #[test]
    fn g2_without_jitter_an_entry_lives_exactly_its_ttl() {
        plain(1);
        CLOCK.advance(Duration::from_millis(99_999));
        plain(1);
        assert_eq!(PLAIN_RUNS.get(), 1);
        CLOCK.advance(Duration::from_millis(1));
        plain(1);
        assert_eq!(PLAIN_RUNS.get(), 2);
    }
}

mod g3 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static OPTION_RUNS: Runs = Runs::new();

    #[cache(key = "find:<id>", ttl = 300, negative_ttl = 60, cache = CACHE, tier = "l1")]
    fn find(id: u32) -> Option<String> {
        OPTION_RUNS.bump();
        id.is_multiple_of(2).then(|| format!("even {id}"))
    }

    static UNCACHED_NONE_RUNS: Runs = Runs::new();

    #[cache(key = "lookup:<id>", ttl = 300, cache = CACHE, tier = "l1")]
    fn lookup(id: u32) -> Option<u32> {
        UNCACHED_NONE_RUNS.bump();
        (id > 10).then_some(id)
    }

    static RESULT_RUNS: Runs = Runs::new();

    #[cache(key = "load:<id>", ttl = 300, negative_ttl = 30, cache = CACHE, tier = "l1")]
    async fn load(id: u32) -> Result<Option<u32>, std::io::Error> {
        RESULT_RUNS.bump();
        Ok((id > 10).then_some(id))
    }

    #[test]
    fn g3_absent_values_are_cached_for_negative_ttl_only() {
        assert_eq!(find(1), None);
        assert_eq!(find(1), None);
        assert_eq!(OPTION_RUNS.get(), 1, "None is cached with negative_ttl");
        CLOCK.advance(Duration::from_secs(60));
        assert_eq!(find(1), None);
        assert_eq!(OPTION_RUNS.get(), 2, "for negative_ttl, not ttl");

        assert_eq!(find(2).as_deref(), Some("even 2"));
        CLOCK.advance(Duration::from_secs(120));
        assert_eq!(find(2).as_deref(), Some("even 2"));
        assert_eq!(OPTION_RUNS.get(), 3, "Some lives for ttl");
    }

    #[test]
    fn g3_absent_values_are_not_cached_without_negative_ttl() {
        assert_eq!(lookup(1), None);
        assert_eq!(lookup(1), None);
        assert_eq!(UNCACHED_NONE_RUNS.get(), 2);
        assert_eq!(lookup(11), Some(11));
        assert_eq!(lookup(11), Some(11));
        assert_eq!(UNCACHED_NONE_RUNS.get(), 3);
    }

    #[tokio::test]
    async fn g3_ok_none_is_cached_like_none() {
        assert_eq!(load(1).await.unwrap(), None);
        assert_eq!(load(1).await.unwrap(), None);
        assert_eq!(RESULT_RUNS.get(), 1);
    }
}

mod g4 {
    use super::*;
    use cachette::cache;
    use std::sync::atomic::{AtomicBool, Ordering};
    manual_cache!();

    static RUNS: Runs = Runs::new();
    static FAIL: AtomicBool = AtomicBool::new(true);

    #[cache(key = "fetch:<id>", ttl = 300, cache = CACHE, tier = "l1")]
    fn fetch(id: u32) -> Result<u32, String> {
        RUNS.bump();
        if FAIL.load(Ordering::SeqCst) {
            Err(format!("backend down for {id}"))
        } else {
            Ok(id)
        }
    }

    static LOCKED_RUNS: Runs = Runs::new();

    #[cache(key = "always_fails:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    async fn always_fails(id: u32) -> Result<u32, String> {
        LOCKED_RUNS.bump();
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(format!("no {id}"))
    }

    #[test]
    fn g4_errors_are_never_cached() {
        assert!(fetch(1).is_err());
        assert!(fetch(1).is_err());
        assert_eq!(RUNS.get(), 2);
        FAIL.store(false, Ordering::SeqCst);
        assert_eq!(fetch(1), Ok(1));
        assert_eq!(fetch(1), Ok(1));
        assert_eq!(RUNS.get(), 3);
        let stats = CACHE.stats();
        let s = stats.function("guarantees::g4::fetch").expect("stats");
        assert_eq!(s.errors, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn g4_a_failing_body_never_leaves_a_waiter_hanging() {
        let callers: Vec<_> = (0..50).map(|_| tokio::spawn(always_fails(7))).collect();
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            for c in callers {
                assert!(c.await.expect("no panic").is_err());
            }
        });
        all.await.expect("every caller returns");
        assert!(LOCKED_RUNS.get() >= 1);
    }

    static SHARED_RUNS: Runs = Runs::new();

    #[cache(key = "fails_for_all:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    async fn fails_for_all(id: u32) -> Result<u32, String> {
        SHARED_RUNS.bump();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(format!("no {id}"))
    }

    static SYNC_SHARED_RUNS: Runs = Runs::new();

    #[cache(key = "fails_for_all_sync:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    fn fails_for_all_sync(id: u32) -> Result<u32, String> {
        SYNC_SHARED_RUNS.bump();
        std::thread::sleep(Duration::from_millis(200));
        Err(format!("no {id}"))
    }

    fn lock_waits(function: &str) -> u64 {
        CACHE.stats().function(function).map_or(0, |f| f.lock_waits)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn g4_waiters_of_a_failing_leader_share_one_retry_and_its_error() {
        const WAITERS: u64 = 49;
        let leader = tokio::spawn(fails_for_all(8));
        assert!(eventually(WAIT, async || SHARED_RUNS.get() == 1).await);
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| tokio::spawn(fails_for_all(8)))
            .collect();
        assert!(
            eventually(WAIT, async || lock_waits("guarantees::g4::fails_for_all")
                >= WAITERS)
            .await,
            "every waiter joins the leader's flight"
        );
        assert_eq!(leader.await.expect("no panic"), Err("no 8".to_owned()));
        for w in waiters {
            assert_eq!(w.await.expect("no panic"), Err("no 8".to_owned()));
        }
        assert_eq!(
            SHARED_RUNS.get(),
            2,
            "the leader's run and one shared retry"
        );
    }

    #[test]
    fn g4_sync_waiters_of_a_failing_leader_share_one_retry_and_its_error() {
        const WAITERS: u64 = 19;
        let leader = std::thread::spawn(|| fails_for_all_sync(9));
        let polled = |f: &dyn Fn() -> bool| {
            support::wait::eventually_blocking_every(Duration::from_millis(1), WAIT, f)
        };
        assert!(
            polled(&|| SYNC_SHARED_RUNS.get() == 1),
            "the leader runs its body"
        );
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| std::thread::spawn(|| fails_for_all_sync(9)))
            .collect();
        assert!(
            polled(&|| lock_waits("guarantees::g4::fails_for_all_sync") >= WAITERS),
            "every waiter joins the leader's flight"
        );
        assert_eq!(leader.join().expect("no panic"), Err("no 9".to_owned()));
        for w in waiters {
            assert_eq!(w.join().expect("no panic"), Err("no 9".to_owned()));
        }
        assert_eq!(
            SYNC_SHARED_RUNS.get(),
            2,
            "the leader's run and one shared retry"
        );
    }
}

mod g5 {
    use super::*;
    use cachette::cache;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Barrier;
    manual_cache!();

    static ASYNC_RUNS: Runs = Runs::new();

    #[cache(key = "slow:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    async fn slow(id: u32) -> u32 {
        ASYNC_RUNS.bump();
        tokio::time::sleep(Duration::from_millis(50)).await;
        id * 2
    }

    static SYNC_RUNS: Runs = Runs::new();

    #[cache(key = "slow_sync:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    fn slow_sync(id: u32) -> u32 {
        SYNC_RUNS.bump();
        std::thread::sleep(Duration::from_millis(50));
        id * 2
    }

    static PANIC_RUNS: Runs = Runs::new();
    static PANIC_NEXT: AtomicBool = AtomicBool::new(true);

    #[cache(key = "panics_once:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    fn panics_once(id: u32) -> u32 {
        PANIC_RUNS.bump();
        std::thread::sleep(Duration::from_millis(30));
        if PANIC_NEXT.swap(false, Ordering::SeqCst) {
            panic!("the leader fails hard");
        }
        id
    }

    static CANCEL_RUNS: Runs = Runs::new();

    #[cache(key = "cancelled:<id>", ttl = 300, lock, cache = CACHE, tier = "l1")]
    async fn cancelled(id: u32) -> u32 {
        let run = CANCEL_RUNS.bump();
        // The first run hangs until it is dropped; later ones finish.
        if run == 1 {
            std::future::pending::<()>().await;
        }
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn g5_one_thousand_concurrent_tasks_on_a_cold_key_run_the_body_once() {
        let callers: Vec<_> = (0..1000).map(|_| tokio::spawn(slow(21))).collect();
        for c in callers {
            assert_eq!(c.await.unwrap(), 42);
        }
        assert_eq!(ASYNC_RUNS.get(), 1);
        let stats = CACHE.stats();
        let s = stats.function("guarantees::g5::slow").expect("stats");
        assert_eq!(s.body_runs, 1);
        assert_eq!(s.l1_hits + s.misses, 1000);
        assert_eq!(s.misses - 1, s.lock_waits, "every other miss waited");
    }

    #[test]
    fn g5_concurrent_threads_on_a_cold_key_run_a_sync_body_once() {
        let start = Barrier::new(32);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    start.wait();
                    assert_eq!(slow_sync(5), 10);
                });
            }
        });
        assert_eq!(SYNC_RUNS.get(), 1);
    }

    #[test]
    fn g5_a_leader_that_panics_does_not_strand_its_waiters() {
        let start = Barrier::new(8);
        let results: Vec<std::thread::Result<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        panics_once(9)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        let panicked = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(panicked, 1, "only the leader panics");
        assert!(results.iter().flatten().all(|&v| v == 9));
        assert_eq!(PANIC_RUNS.get(), 2, "one waiter took over");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g5_a_cancelled_leader_does_not_strand_its_waiters() {
        const WAITERS: u64 = 20;
        let lock_waits = || {
            CACHE
                .stats()
                .function("guarantees::g5::cancelled")
                .map_or(0, |s| s.lock_waits)
        };
        let leader = tokio::spawn(cancelled(3));
        assert!(
            eventually(WAIT, async || CANCEL_RUNS.get() == 1).await,
            "the leader enters the body within {WAIT:?}"
        );
        let waiters: Vec<_> = (0..WAITERS).map(|_| tokio::spawn(cancelled(3))).collect();
        // Once every waiter has joined the flight, drop the leader's future.
        assert!(
            eventually(WAIT, async || lock_waits() >= WAITERS).await,
            "{WAITERS} waiters join the leader's flight within {WAIT:?}; {} did",
            lock_waits()
        );
        leader.abort();
        let all = tokio::time::timeout(Duration::from_secs(10), async {
            for w in waiters {
                assert_eq!(w.await.unwrap(), 3);
            }
        });
        all.await
            .expect("waiters finish after the leader is dropped");
        assert_eq!(CANCEL_RUNS.get(), 2);
    }
}

mod g6 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static RUNS: Runs = Runs::new();

    #[cache(
        key = "member:<org>:<id>",
        ttl = 300,
        tags = ["org:<org>", "members"],
        namespace = "people",
        cache = CACHE,
        tier = "l1"
    )]
    fn member(org: u32, id: u32) -> String {
        RUNS.bump();
        format!("{org}/{id}")
    }

    fn runs_of(f: impl FnOnce()) -> usize {
        let before = RUNS.get();
        f();
        RUNS.get() - before
    }

    #[test]
    fn g6_after_each_kind_of_invalidation_this_process_misses_at_once() {
        member(1, 1);
        member(1, 2);
        member(2, 1);
        assert_eq!(runs_of(|| drop(member(1, 1))), 0);

        member_invalidate(1, 1).unwrap();
        assert_eq!(runs_of(|| drop(member(1, 1))), 1, "key");
        assert_eq!(runs_of(|| drop(member(1, 2))), 0, "other keys stay");

        CACHE.invalidate_key_blocking(&member_key(1, 2)).unwrap();
        assert_eq!(runs_of(|| drop(member(1, 2))), 1, "invalidate_key(_key)");

        CACHE.invalidate_tag_blocking("org:1").unwrap();
        assert_eq!(runs_of(|| drop(member(1, 1))), 1, "tag");
        assert_eq!(runs_of(|| drop(member(1, 2))), 1, "tag");
        assert_eq!(runs_of(|| drop(member(2, 1))), 0, "other tag values stay");

        CACHE.invalidate_tag_blocking("members").unwrap();
        assert_eq!(runs_of(|| drop(member(2, 1))), 1, "constant tag");

        CACHE.invalidate_namespace_blocking("people").unwrap();
        assert_eq!(runs_of(|| drop(member(2, 1))), 1, "namespace");

        CACHE.clear_blocking().unwrap();
        assert_eq!(runs_of(|| drop(member(2, 1))), 1, "clear");
        assert_eq!(runs_of(|| drop(member(2, 1))), 0);
    }

    #[test]
    fn g6_namespace_keys_name_the_namespace_and_version() {
        assert_eq!(member_key(1, 2), "people:v1:member:1:2");
    }
}

mod g7 {
    use super::*;
    use cachette::{cache, Cache};
    use std::sync::mpsc;
    use std::sync::Mutex;
    manual_cache!();

    /// Lets a test hold a body run open until it says so.
    static GATE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);
    static STARTED: Mutex<Option<mpsc::Sender<()>>> = Mutex::new(None);
    static RUNS: Runs = Runs::new();
    static VERSION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static SERIAL: Mutex<()> = Mutex::new(());

    #[cache(key = "doc:<id>", ttl = 300, tags = ["docs"], namespace = "library", lock, cache = CACHE, tier = "l1")]
    fn doc(id: u32) -> String {
        RUNS.bump();
        // Read the "database" before waiting: this run sees the old version.
        let seen = VERSION.load(std::sync::atomic::Ordering::SeqCst);
        // Take the gate before announcing the start, so only this run waits.
        let gate = GATE.lock().unwrap().take();
        if let Some(started) = STARTED.lock().unwrap().take() {
            started.send(()).unwrap();
        }
        if let Some(gate) = gate {
            gate.recv().unwrap();
        }
        format!("doc {id} v{seen}")
    }

    /// Starts a body run of `doc(1)` that reads version 0 and then waits;
    /// runs `invalidate` while it waits, then lets it finish.
    fn race_a_load_against(invalidate: impl FnOnce(&Cache)) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        CACHE.clear_blocking().unwrap();
        VERSION.store(0, std::sync::atomic::Ordering::SeqCst);
        let (release, gate) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        *GATE.lock().unwrap() = Some(gate);
        *STARTED.lock().unwrap() = Some(started_tx);

        let slow = std::thread::spawn(|| doc(1));
        started.recv().unwrap();
        // The write and its invalidation happen while the old read is in
        // flight.
        VERSION.store(1, std::sync::atomic::Ordering::SeqCst);
        invalidate(&CACHE);

        // A caller arriving now must not join the stale flight.
        assert_eq!(
            doc(1),
            "doc 1 v1",
            "a later caller does not get the old load"
        );

        release.send(()).unwrap();
        assert_eq!(
            slow.join().unwrap(),
            "doc 1 v0",
            "the old caller gets its own read"
        );
        assert_eq!(doc(1), "doc 1 v1", "the old load never became visible");
    }

    #[test]
    fn g7_a_load_begun_before_a_key_invalidation_never_becomes_visible() {
        race_a_load_against(|c| c.invalidate_key_blocking(&doc_key(1)).unwrap());
    }

    #[test]
    fn g7_a_load_begun_before_a_tag_invalidation_never_becomes_visible() {
        race_a_load_against(|c| c.invalidate_tag_blocking("docs").unwrap());
    }

    #[test]
    fn g7_a_load_begun_before_a_namespace_invalidation_never_becomes_visible() {
        race_a_load_against(|c| c.invalidate_namespace_blocking("library").unwrap());
    }

    #[test]
    fn g7_a_load_begun_before_clear_never_becomes_visible() {
        race_a_load_against(|c| c.clear_blocking().unwrap());
    }
}

mod g10 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    #[cache(key = "<a>:<b>", ttl = 300, cache = CACHE, tier = "l1")]
    fn join(a: &str, b: &str) -> String {
        format!("{a}|{b}")
    }

    #[cache(key = "pair-<a>-<b>", ttl = 300, cache = CACHE, tier = "l1")]
    fn pair(a: i64, b: i64) -> (i64, i64) {
        (a, b)
    }

    #[test]
    fn g10_keys_cannot_be_forged_by_moving_separators_between_arguments() {
        assert_ne!(join_key("a:b", "c"), join_key("a", "b:c"));
        assert_eq!(join("a:b", "c"), "a:b|c");
        assert_eq!(join("a", "b:c"), "a|b:c", "no shared entry");
        assert_eq!(join_key("a:b", "c"), "a%3Ab:c");
        assert_ne!(join_key("%3A", "x"), join_key(":", "x"));

        assert_ne!(pair_key(-1, 2), pair_key(1, -2));
        assert_eq!(pair(-1, 2), (-1, 2));
        assert_eq!(pair(1, -2), (1, -2));
    }

    #[derive(cachette::KeyPart, Clone)]
    struct Name {
        first: String,
        last: String,
    }

    #[derive(cachette::KeyPart, Clone)]
    struct Nested(Name, Option<String>);

    #[cache(key = "person:<name>", ttl = 300, cache = CACHE, tier = "l1")]
    fn person(name: Name) -> String {
        format!("{} {}", name.first, name.last)
    }

    #[cache(key = "nested:<n>", ttl = 300, cache = CACHE, tier = "l1")]
    fn nested(n: Nested) -> String {
        format!("{}|{}|{:?}", n.0.first, n.0.last, n.1)
    }

    fn name(first: &str, last: &str) -> Name {
        Name {
            first: first.into(),
            last: last.into(),
        }
    }

    #[test]
    fn g10_derived_key_parts_cannot_be_forged_by_moving_separators_between_fields() {
        assert_ne!(person_key(name("a,b", "c")), person_key(name("a", "b,c")));
        assert_eq!(person_key(name("a,b", "c")), "person:a%2Cb,c");
        assert_eq!(person(name("a,b", "c")), "a,b c");
        assert_eq!(person(name("a", "b,c")), "a b,c", "no shared entry");
        // The template's own separators are escaped inside fields too.
        assert_ne!(person_key(name("a:b", "")), person_key(name("a", "b")));
        // Nesting keeps every boundary: the inner struct's comma and the
        // outer one's cannot trade places.
        let keys = [
            nested_key(Nested(name("a", "b"), Some("c".into()))),
            nested_key(Nested(name("a", "b,c"), None)),
            nested_key(Nested(name("a,b", ""), Some("c".into()))),
            nested_key(Nested(name("a", ""), Some("b,c".into()))),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            nested(Nested(name("a", "b,c"), None)),
            "a|b,c|None",
            "each value its own entry"
        );
    }
}

/// Stats tell functions apart by name: a method's default name includes its
/// type, so that two types' methods of the same name are counted apart.
mod stats_names {
    use super::*;
    use cachette::cache;
    manual_cache!();

    struct Users;
    struct Orders;
    struct Wrapper<T>(T);

    impl Users {
        #[cache(key = "user:<id>", ttl = 60, cache = CACHE, tier = "l1", skip(self))]
        fn get(&self, id: u64) -> u64 {
            id
        }
    }

    impl Orders {
        #[cache(key = "order:<id>", ttl = 60, cache = CACHE, tier = "l1", skip(self))]
        fn get(&self, id: u64) -> u64 {
            id + 1
        }

        #[cache(key = "order_count:<id>", ttl = 60, cache = CACHE, tier = "l1")]
        fn count(id: u64) -> Self {
            let _ = id;
            Orders
        }

        #[cache(key = "named:<id>", ttl = 60, cache = CACHE, tier = "l1", skip(self), name = "orders.named")]
        fn named(&self, id: u64) -> u64 {
            id
        }
    }

    impl Clone for Orders {
        fn clone(&self) -> Self {
            Orders
        }
    }

    impl<T: Sync> Wrapper<T> {
        #[cache(key = "wrapped:<id>", ttl = 60, cache = CACHE, tier = "l1", skip(self))]
        fn get(&self, id: u64) -> u64 {
            id + 2
        }
    }

    #[cache(key = "free:<id>", ttl = 60, cache = CACHE, tier = "l1")]
    fn get(id: u64) -> u64 {
        id + 3
    }

    #[test]
    fn a_methods_default_name_includes_its_type_and_an_explicit_name_is_kept() {
        for _ in 0..2 {
            assert_eq!(Users.get(1), 1);
            assert_eq!(Orders.get(1), 2);
            assert_eq!(Wrapper(String::new()).get(1), 3);
            assert_eq!(get(1), 4);
            let _ = Orders::count(1);
            assert_eq!(Orders.named(1), 1);
        }
        let stats = CACHE.stats();
        for name in [
            "guarantees::stats_names::Users::get",
            "guarantees::stats_names::Orders::get",
            "guarantees::stats_names::Orders::count",
            "guarantees::stats_names::Wrapper::get",
            "guarantees::stats_names::get",
            "orders.named",
        ] {
            let function = stats
                .function(name)
                .unwrap_or_else(|| panic!("no stats named {name}: {stats:?}"));
            assert_eq!((function.l1_hits, function.misses), (1, 1), "{name}");
        }
    }
}
