//! Fixtures shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The L1 store the guarantee tests run against: quick_cache, or moka when
/// `CACHETTE_TEST_L1_STORE=moka` (scripts/test runs them both ways).
pub fn l1_store() -> ::cachette::L1Store {
    match std::env::var("CACHETTE_TEST_L1_STORE").as_deref() {
        Err(_) | Ok("" | "quick_cache") => ::cachette::L1Store::QuickCache,
        #[cfg(feature = "moka")]
        Ok("moka") => ::cachette::L1Store::Moka,
        Ok(other) => panic!(
            "CACHETTE_TEST_L1_STORE={other:?}: expected `quick_cache` or `moka` (moka needs the `moka` feature)"
        ),
    }
}

/// Declares `CLOCK` (a [`cachette::ManualClock`]) and `CACHE` (an L1-only
/// cache reading it) as statics of the calling module, so every test module
/// has a cache of its own.
#[macro_export]
macro_rules! manual_cache {
    () => {
        static CLOCK: ::std::sync::LazyLock<::cachette::ManualClock> =
            ::std::sync::LazyLock::new(::cachette::ManualClock::new);
        static CACHE: ::std::sync::LazyLock<::cachette::Cache> = ::std::sync::LazyLock::new(|| {
            ::cachette::Cache::builder()
                .l1_store($crate::common::l1_store())
                .clock(CLOCK.clone())
                .build_local()
                .expect("a valid configuration")
        });
    };
}

/// Counts body runs.
#[derive(Debug, Default)]
pub struct Runs(AtomicUsize);

impl Runs {
    pub const fn new() -> Self {
        Runs(AtomicUsize::new(0))
    }

    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
