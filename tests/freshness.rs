//! The freshness guarantees within a process (DESIGN §2a): G11 (`stale`),
//! G12 (`early`, XFetch), G13 (`stale_if_error`) and G15 (refreshes never
//! stampede), for async and sync functions, methods, and both refresh
//! modes. Time is moved with a manual clock; bodies that must stay running
//! while callers arrive wait on a gate the test opens. They run on the
//! default L1 store, and on moka with `CACHETTE_TEST_L1_STORE=moka`.

mod common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::Runs;
use support::wait::eventually;

/// How long a test waits for other tasks to reach a state it observes.
const WAIT: Duration = Duration::from_secs(10);

/// A gate a refresh's body waits at until the test opens it. Bounded: a
/// body never waits longer than [`WAIT`].
struct Gate(AtomicBool);

impl Gate {
    const fn closed() -> Self {
        Gate(AtomicBool::new(false))
    }
    fn open(&self) {
        self.0.store(true, SeqCst);
    }
    async fn pass(&self) {
        let start = Instant::now();
        while !self.0.load(SeqCst) && start.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    fn pass_blocking(&self) {
        let start = Instant::now();
        while !self.0.load(SeqCst) && start.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

mod g11 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static VERSION: AtomicU64 = AtomicU64::new(1);
    static RUNS: Runs = Runs::new();
    static GATE: Gate = Gate::closed();

    /// Owned arguments: refreshes run in the background by default.
    #[cache(key = "price:<id>", ttl = 10, stale = 60, cache = CACHE, tier = "l1")]
    async fn price(id: u64) -> u64 {
        if RUNS.bump() > 1 {
            GATE.pass().await;
        }
        id * 1000 + VERSION.load(SeqCst)
    }

    fn stats(name: &str) -> cachette::FunctionStats {
        CACHE
            .stats()
            .function(&format!("freshness::g11::{name}"))
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g11_inside_the_stale_window_callers_get_the_old_value_at_once_and_one_refresh_runs() {
        assert_eq!(price(1).await, 1001);
        VERSION.store(2, SeqCst);
        CLOCK.advance(Duration::from_secs(11));
        // 100 callers inside the window, while the refresh is held.
        let callers: Vec<_> = (0..100).map(|_| tokio::spawn(price(1))).collect();
        for caller in callers {
            let got = tokio::time::timeout(Duration::from_secs(1), caller)
                .await
                .expect("a stale hit never waits for the refresh")
                .unwrap();
            assert_eq!(got, 1001);
        }
        assert!(eventually(WAIT, || async { RUNS.get() == 2 }).await);
        let s = stats("price");
        assert_eq!(
            (s.stale_served, s.refreshes, s.misses),
            (100, 1, 1),
            "{s:?}"
        );
        GATE.open();
        assert!(
            eventually(WAIT, || async { price(1).await == 1002 }).await,
            "the refresh's value is served once it is stored"
        );
        assert_eq!(RUNS.get(), 2, "one refresh for 100 stale hits");
        // Past the window, the entry is gone: a miss runs the body and waits.
        VERSION.store(3, SeqCst);
        CLOCK.advance(Duration::from_secs(10 + 61));
        assert_eq!(price(1).await, 1003);
        assert_eq!(stats("price").misses, 2);
    }
}

mod g11_sync {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static SYNC_RUNS: Runs = Runs::new();
    static SYNC_GATE: Gate = Gate::closed();

    /// A sync function: its background refreshes run on the cache's thread.
    #[cache(key = "rate:<id>", ttl = 10, stale = 60, cache = CACHE, tier = "l1")]
    fn rate(id: u64) -> u64 {
        if SYNC_RUNS.bump() > 1 {
            SYNC_GATE.pass_blocking();
        }
        id + SYNC_RUNS.get() as u64 * 100
    }

    #[test]
    fn g11_sync_functions_refresh_on_the_caches_thread_while_callers_get_the_old_value() {
        assert_eq!(rate(1), 101);
        CLOCK.advance(Duration::from_secs(11));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let start = Instant::now();
                        assert_eq!(rate(1), 101);
                        assert!(start.elapsed() < Duration::from_secs(1));
                    }
                });
            }
        });
        // The refresh thread picks the refresh up in its own time.
        let start = Instant::now();
        while SYNC_RUNS.get() < 2 && start.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(SYNC_RUNS.get(), 2, "one refresh for 160 stale hits");
        SYNC_GATE.open();
        let start = Instant::now();
        while rate(1) != 201 && start.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rate(1), 201);
        assert_eq!(SYNC_RUNS.get(), 2);
    }
}

mod g11_caller {
    use super::*;
    use cachette::cache;
    manual_cache!();

    /// A method borrows `self`: refreshes run in the caller by default.
    struct Repo {
        runs: Runs,
        gate: Gate,
    }

    impl Repo {
        #[cache(key = "stock:<id>", ttl = 10, stale = 60, cache = CACHE, tier = "l1", skip(self))]
        async fn stock(&self, id: u64) -> u64 {
            let run = self.runs.bump() as u64;
            if run > 1 {
                self.gate.pass().await;
            }
            id * 10 + run
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g11_a_caller_run_refresh_returns_the_new_value_while_others_get_the_old_one() {
        static REPO: Repo = Repo {
            runs: Runs::new(),
            gate: Gate::closed(),
        };
        assert_eq!(REPO.stock(1).await, 11);
        CLOCK.advance(Duration::from_secs(11));
        let refresher = tokio::spawn(REPO.stock(1));
        assert!(eventually(WAIT, || async { REPO.runs.get() == 2 }).await);
        for _ in 0..50 {
            let got = tokio::time::timeout(Duration::from_secs(1), REPO.stock(1))
                .await
                .expect("concurrent callers do not wait for the refresh");
            assert_eq!(got, 11);
        }
        REPO.gate.open();
        assert_eq!(
            refresher.await.unwrap(),
            12,
            "the refreshing caller gets the new value"
        );
        assert_eq!(REPO.stock(1).await, 12);
        assert_eq!(REPO.runs.get(), 2);
    }
}

mod g12 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    /// The body's compute time, as the cache's clock sees it.
    const COMPUTE_MS: u64 = 10;
    const TTL_MS: u64 = 100_000;

    #[cache(key = "hot:<id>", ttl = 100, early = 1.0, refresh = "caller", cache = CACHE, tier = "l1")]
    fn hot(id: u64) -> u64 {
        CLOCK.advance(Duration::from_millis(COMPUTE_MS));
        id
    }

    fn early_refreshes() -> u64 {
        CACHE
            .stats()
            .function("freshness::g12::hot")
            .map_or(0, |s| s.early_refreshes)
    }

    /// The fraction of hits `left` ms before the TTL ends that start a
    /// refresh, over `trials` fresh entries.
    fn refresh_fraction(left: u64, trials: u32) -> f64 {
        let before = early_refreshes();
        for _ in 0..trials {
            hot_invalidate(7).unwrap();
            hot(7);
            // The entry was stored when the body returned: its TTL ends
            // TTL_MS from now.
            CLOCK.advance(Duration::from_millis(TTL_MS - left));
            hot(7);
        }
        (early_refreshes() - before) as f64 / f64::from(trials)
    }

    #[test]
    fn g12_the_share_of_hits_that_refresh_follows_xfetch() {
        fastrand::seed(12);
        const TRIALS: u32 = 4000;
        // Binomial standard deviation is at most 0.008 at 4000 trials; the
        // tolerance is five of them.
        const TOLERANCE: f64 = 0.04;
        for left in [2, 5, 10, 20, 30, 60] {
            let expected = (-(left as f64) / (1.0 * COMPUTE_MS as f64)).exp();
            let seen = refresh_fraction(left, TRIALS);
            assert!(
                (seen - expected).abs() <= TOLERANCE,
                "{left} ms before the TTL ends: {seen:.3} of hits refreshed, XFetch says {expected:.3}"
            );
        }
        // Past a few multiples of the compute time, practically none.
        assert!(refresh_fraction(1_000, 500) == 0.0);
    }
}

mod ahead {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static AHEAD_RUNS: Runs = Runs::new();

    #[cache(key = "ahead:<id>", ttl = 100, refresh_ahead = 10, refresh = "caller", cache = CACHE, tier = "l1")]
    fn ahead(id: u64) -> u64 {
        AHEAD_RUNS.bump() as u64 + id
    }

    #[test]
    fn refresh_ahead_refreshes_once_when_less_than_its_threshold_is_left() {
        assert_eq!(ahead(0), 1);
        CLOCK.advance(Duration::from_secs(89));
        assert_eq!(ahead(0), 1, "11 s left: no refresh");
        CLOCK.advance(Duration::from_secs(2));
        assert_eq!(ahead(0), 2, "9 s left: this caller refreshed");
        assert_eq!(ahead(0), 2, "the new entry is fresh for a full TTL");
        assert_eq!(AHEAD_RUNS.get(), 2);
    }
}

mod g13 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);
    static RUNS: Runs = Runs::new();

    #[cache(key = "quote:<id>", ttl = 10, stale_if_error = 60, lock, cache = CACHE, tier = "l1")]
    async fn quote(id: u64) -> Result<u64, String> {
        let run = RUNS.bump() as u64;
        // Slow enough for waiters to join the leader's flight.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match FAIL.load(SeqCst) {
            true => Err(format!("source down for {id}")),
            false => Ok(id * 100 + run),
        }
    }

    fn stats() -> cachette::FunctionStats {
        CACHE
            .stats()
            .function("freshness::g13::quote")
            .cloned()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g13_a_failing_body_returns_the_stored_value_while_the_window_lasts_then_the_error() {
        assert_eq!(quote(1).await, Ok(101));
        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(11));
        // A leader and its waiters: the leader's body fails, and every one
        // of them gets the stored value.
        let callers: Vec<_> = (0..20).map(|_| tokio::spawn(quote(1))).collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(101));
        }
        assert_eq!(RUNS.get(), 2, "the waiters did not run the body again");
        let s = stats();
        assert_eq!((s.errors, s.errors_served_stale), (1, 20), "{s:?}");
        // The old value was not stored again as fresh: the next call tries
        // the body again.
        assert_eq!(quote(1).await, Ok(101));
        assert_eq!(RUNS.get(), 3);
        // Past the window, the error is returned.
        CLOCK.advance(Duration::from_secs(60));
        assert_eq!(quote(1).await, Err("source down for 1".to_owned()));
        // A success stores anew.
        FAIL.store(false, SeqCst);
        assert_eq!(quote(1).await, Ok(105));
    }
}

mod g13_sync {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);

    #[cache(key = "plain:<id>", ttl = 10, stale_if_error = 60, negative_ttl = 10, cache = CACHE, tier = "l1")]
    fn plain(id: u64) -> Result<Option<u64>, String> {
        match FAIL.load(SeqCst) {
            true => Err("down".into()),
            false => Ok((id > 0).then_some(id)),
        }
    }

    #[test]
    fn g13_holds_for_sync_functions_and_absent_values() {
        assert_eq!(plain(5), Ok(Some(5)));
        assert_eq!(plain(0), Ok(None));
        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(30));
        assert_eq!(plain(5), Ok(Some(5)));
        assert_eq!(plain(0), Ok(None), "an absent value stands in too");
        CLOCK.advance(Duration::from_secs(41));
        assert_eq!(plain(5), Err("down".to_owned()));
    }
}

mod g15 {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);
    static RUNS: Runs = Runs::new();

    #[cache(key = "feed:<id>", ttl = 10, stale = 600, stale_if_error = 600, cache = CACHE, tier = "l1")]
    async fn feed(id: u64) -> Result<u64, String> {
        RUNS.bump();
        match FAIL.load(SeqCst) {
            true => Err("source down".into()),
            false => Ok(id),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g15_a_failing_source_is_called_at_most_once_per_key_per_second_while_stale_values_are_served(
    ) {
        assert_eq!(feed(1).await, Ok(1));
        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(11));
        const SECONDS: u64 = 5;
        // 100 callers; time moves 100 ms between rounds of calls.
        for _ in 0..SECONDS * 10 {
            let callers: Vec<_> = (0..100).map(|_| tokio::spawn(feed(1))).collect();
            for caller in callers {
                assert_eq!(
                    caller.await.unwrap(),
                    Ok(1),
                    "every caller gets the stale value"
                );
            }
            // Let background refreshes of this round finish.
            tokio::time::sleep(Duration::from_millis(2)).await;
            CLOCK.advance(Duration::from_millis(100));
        }
        // A refresh spawned in the last round may still be finishing.
        let stats = || {
            CACHE
                .stats()
                .function("freshness::g15::feed")
                .cloned()
                .unwrap()
        };
        assert!(
            eventually(WAIT, || async {
                stats().refresh_errors as usize == RUNS.get() - 1
            })
            .await
        );
        let refreshes = RUNS.get() - 1;
        assert!(
            (1..=SECONDS as usize + 1).contains(&refreshes),
            "{refreshes} body runs in {SECONDS} s of 5,000 stale hits"
        );
        let s = stats();
        assert_eq!(s.refresh_errors as usize, refreshes);
        assert_eq!(s.stale_served, SECONDS * 10 * 100);
    }
}

mod caller_fallback {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);

    /// `refresh = "caller"` and only `stale`: a refresh whose body fails
    /// inside the window answers with the stored value; after it, the error.
    #[cache(key = "stock:<id>", ttl = 10, stale = 60, refresh = "caller", cache = CACHE, tier = "l1")]
    fn stock(id: u64) -> Result<u64, String> {
        match FAIL.load(SeqCst) {
            true => Err("warehouse down".into()),
            false => Ok(id),
        }
    }

    #[test]
    fn a_caller_run_refresh_that_fails_inside_the_stale_window_returns_the_stored_value() {
        assert_eq!(stock(4), Ok(4));
        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(11));
        assert_eq!(
            stock(4),
            Ok(4),
            "the refreshing caller falls back on the stale value"
        );
        let s = CACHE
            .stats()
            .function("freshness::caller_fallback::stock")
            .cloned()
            .unwrap();
        assert_eq!(
            (s.refreshes, s.refresh_errors, s.errors_served_stale),
            (1, 1, 1),
            "{s:?}"
        );
        assert_eq!(
            stock(4),
            Ok(4),
            "inside the pause after the failure, served stale"
        );
        CLOCK.advance(Duration::from_secs(60));
        assert_eq!(stock(4), Err("warehouse down".to_owned()));
    }
}
