//! Time as the cache sees it.
//!
//! Every freshness decision reads a [`Clock`], so tests can move time forward
//! with a [`ManualClock`] instead of sleeping until an entry expires.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
#[cfg(any(test, not(target_os = "linux")))]
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
///
/// Wall-clock (not monotonic) time is used because entry timestamps are meant
/// to be compared across processes once entries are shared through L2.
///
/// # Example
///
/// ```
/// use cachette::{Clock, SystemClock};
/// assert!(SystemClock.now_millis() > 1_600_000_000_000);
/// ```
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// On Linux, the coarse real-time clock (`CLOCK_REALTIME_COARSE`): about
    /// 10 ns instead of 40 ns for a precise read, at the kernel tick's
    /// resolution (a few milliseconds), which is plenty for TTLs. Elsewhere
    /// [`std::time::SystemTime`].
    #[inline]
    fn now_millis(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
            (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
        }
        #[cfg(not(target_os = "linux"))]
        {
            // u64 arithmetic: `as_millis` goes through u128 on every hit.
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() * 1000 + u64::from(d.subsec_millis()))
        }
    }
}

/// The clock a cache reads: the system's, called directly on the hit path,
/// or one given to the builder.
#[derive(Clone)]
pub(crate) enum CacheClock {
    System,
    Given(std::sync::Arc<dyn Clock>),
}

impl CacheClock {
    #[inline]
    pub(crate) fn now_millis(&self) -> u64 {
        match self {
            CacheClock::System => SystemClock.now_millis(),
            CacheClock::Given(clock) => clock.now_millis(),
        }
    }

    /// Starts timing a body run: with the system clock to the microsecond,
    /// with a given clock by its own time (so tests control it).
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        match self {
            CacheClock::System => Stopwatch::Instant(std::time::Instant::now()),
            CacheClock::Given(clock) => Stopwatch::Given(clock.now_millis()),
        }
    }

    /// The time since `watch` started.
    pub(crate) fn elapsed(&self, watch: &Stopwatch) -> Duration {
        match watch {
            Stopwatch::Instant(start) => start.elapsed(),
            Stopwatch::Given(start) => {
                Duration::from_millis(self.now_millis().saturating_sub(*start))
            }
        }
    }
}

/// When a body run began ([`CacheClock::stopwatch`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stopwatch {
    Instant(std::time::Instant),
    Given(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_agrees_with_system_time() {
        let precise = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ours = SystemClock.now_millis();
        // The coarse clock lags by at most a tick (a few ms).
        assert!(precise.abs_diff(ours) < 50, "{precise} vs {ours}");
    }
}

/// A clock that moves only when told to; cheap to clone, clones share time.
///
/// # Example
///
/// ```
/// use cachette::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let before = clock.now_millis();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now_millis() - before, 5_000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock starting at the current system time.
    pub fn new() -> Self {
        Self::starting_at(SystemClock.now_millis())
    }

    /// A clock starting at `millis` since the Unix epoch.
    pub fn starting_at(millis: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(millis)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_millis(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
