//! A circuit breaker in front of the shared tier (G8).
//!
//! After [`FAILURES_TO_OPEN`] failures in a row the breaker opens: calls skip
//! the shared tier without paying its timeout. After a cool-down one call is
//! let through as a probe; its success closes the breaker, its failure opens
//! it again for twice as long (up to [`MAX_COOL_DOWN`]). Checking an open
//! breaker is two atomic loads.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub(crate) const FAILURES_TO_OPEN: u32 = 3;
/// The first cool-down.
pub(crate) const MIN_COOL_DOWN: Duration = Duration::from_millis(250);
/// The longest cool-down.
pub(crate) const MAX_COOL_DOWN: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Breaker {
    started: Instant,
    failures: AtomicU32,
    /// Micros since `started` before which calls are refused; 0 when closed.
    open_until: AtomicU64,
    cool_down_micros: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            cool_down_micros: AtomicU64::new(MIN_COOL_DOWN.as_micros() as u64),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Whether a call may go to the shared tier now; the permit says how it
    /// went ([`Permit::success`], [`Permit::failure`]). A probe's permit
    /// dropped before either (its caller was cancelled, or gave up waiting)
    /// hands the probe to the next caller, so the breaker never stays open
    /// because a probe was lost.
    #[inline]
    pub(crate) fn permit(&self) -> Option<Permit<'_>> {
        // Closed: no clock read.
        if self.open_until.load(SeqCst) == 0 {
            return Some(Permit {
                breaker: self,
                probe: false,
            });
        }
        self.permit_at(self.now())
    }

    fn permit_at(&self, now: u64) -> Option<Permit<'_>> {
        let open_until = self.open_until.load(SeqCst);
        if open_until != 0 && now < open_until {
            return None;
        }
        // Cool-down over: one caller probes, the others keep skipping.
        let probe = open_until != 0;
        if probe
            && self
                .probing
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
        {
            return None;
        }
        Some(Permit {
            breaker: self,
            probe,
        })
    }

    /// [`permit`](Self::permit) without the guard: a probe taken here is
    /// held until `success` or `failure`.
    #[cfg(test)]
    fn allow_at(&self, now: u64) -> bool {
        self.permit_at(now).map(Permit::keep).is_some()
    }

    /// Whether calls are refused right now (open, cool-down not over).
    /// Unlike [`allow`](Self::allow) it never takes the probe, so a caller
    /// can skip the shared tier altogether, at the cost of one atomic load
    /// while the breaker is closed (P4).
    #[inline]
    pub(crate) fn refusing(&self) -> bool {
        let open_until = self.open_until.load(SeqCst);
        open_until != 0 && self.now() < open_until
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(SeqCst) != 0
    }

    fn success(&self) {
        // Reads first: while all is well (every call), nothing is written,
        // so callers on many threads do not contend for the cache line.
        if self.failures.load(SeqCst) != 0 {
            self.failures.store(0, SeqCst);
        }
        if self.open_until.load(SeqCst) != 0 && self.open_until.swap(0, SeqCst) != 0 {
            self.cool_down_micros
                .store(MIN_COOL_DOWN.as_micros() as u64, SeqCst);
            crate::trace::breaker_closed();
            crate::stats::breaker_metric(false);
        }
        if self.probing.load(SeqCst) {
            self.probing.store(false, SeqCst);
        }
    }

    fn failure(&self) {
        self.failure_at(self.now());
    }

    fn failure_at(&self, now: u64) {
        let failures = self.failures.fetch_add(1, SeqCst) + 1;
        let was_probing = self.probing.swap(false, SeqCst);
        if failures >= FAILURES_TO_OPEN || was_probing {
            let cool_down = self.cool_down_micros.load(SeqCst);
            if self.open_until.swap(now + cool_down, SeqCst) == 0 {
                crate::trace::breaker_opened(cool_down / 1_000);
                crate::stats::breaker_metric(true);
            }
            if was_probing {
                let doubled = (cool_down * 2).min(MAX_COOL_DOWN.as_micros() as u64);
                self.cool_down_micros.store(doubled, SeqCst);
            }
        }
    }
}

/// Leave to make one call to the shared tier (see [`Breaker::permit`]).
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    /// Whether this call is the probe after a cool-down.
    probe: bool,
}

impl<'a> Permit<'a> {
    /// Whether this call is the probe after a cool-down.
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call got an answer: the tier is up.
    pub(crate) fn success(self) {
        self.keep().success();
    }

    /// The call got no answer.
    pub(crate) fn failure(self) {
        self.keep().failure();
    }

    /// The breaker, with this permit's probe (if any) left to `success` or
    /// `failure` instead of being handed on when the permit drops.
    fn keep(self) -> &'a Breaker {
        let breaker = self.breaker;
        std::mem::forget(self);
        breaker
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            // The probe was abandoned: the next caller probes instead.
            self.breaker.probing.store(false, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = MIN_COOL_DOWN.as_micros() as u64;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let b = Breaker::new();
        assert!(b.allow_at(0));
        b.failure_at(0);
        b.failure_at(0);
        assert!(b.allow_at(0), "two failures keep it closed");
        b.failure_at(0);
        assert!(!b.allow_at(1), "the third opens it");
        assert!(!b.allow_at(MIN - 1));
        assert!(b.allow_at(MIN), "one probe after the cool-down");
        assert!(!b.allow_at(MIN), "only one");
        b.success();
        assert!(b.allow_at(MIN) && b.allow_at(MIN));
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_maximum() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.failure_at(0);
        }
        let mut now = MIN;
        let mut cool_down = MIN;
        for _ in 0..10 {
            assert!(b.allow_at(now));
            b.failure_at(now);
            cool_down = (cool_down * 2).min(MAX_COOL_DOWN.as_micros() as u64);
            assert!(!b.allow_at(now + MIN.min(cool_down) - 1));
            now += cool_down;
        }
        assert_eq!(cool_down, MAX_COOL_DOWN.as_micros() as u64);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.failure_at(0);
        }
        let probe = b.permit_at(MIN).expect("the probe");
        assert!(b.permit_at(MIN).is_none(), "one probe at a time");
        drop(probe);
        let next = b.permit_at(MIN).expect("the probe is handed on");
        next.success();
        assert!(!b.is_open());
        assert!(b.permit().is_some());
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let b = Breaker::new();
        b.failure_at(0);
        b.failure_at(0);
        b.success();
        b.failure_at(0);
        b.failure_at(0);
        assert!(b.allow_at(0));
    }
}
