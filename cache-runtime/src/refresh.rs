//! Refreshes of stored values (§2a): which hits start one, one per key at a
//! time in a process, a pause of at least a second after one fails, and
//! the thread that runs sync functions' background refreshes.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::spec::Freshness;

/// The shortest pause after a failed refresh before that key is tried again
/// (G15).
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a stored value's age asks of a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    /// Fresh: serve it.
    Fresh,
    /// Fresh, and due for an early refresh (`early`, `refresh_ahead`).
    Early,
    /// Past its TTL, inside the `stale` window: serve it and refresh.
    Stale,
    /// Past its TTL and the `stale` window, inside `stale_if_error`: load
    /// anew, and serve it only if the body fails.
    Fallback,
    /// Past every window.
    Gone,
}

/// The age of a value whose TTL ends at `fresh_until` (ms), at `now`, for a
/// function with `freshness`; `compute_us` is the body's time (XFetch).
/// `draw` gives XFetch's uniform number in `(0, 1]` and is called only on
/// a fresh hit of a function with `early`.
#[inline]
pub(crate) fn age(
    freshness: &Freshness,
    now: u64,
    fresh_until: u64,
    compute_us: u32,
    draw: impl FnOnce() -> f64,
) -> Age {
    if now < fresh_until {
        let left = fresh_until - now;
        let ahead = !freshness.refresh_ahead.is_zero()
            && u128::from(left) < freshness.refresh_ahead.as_millis();
        return match ahead || xfetch(freshness.early, left, compute_us, draw) {
            true => Age::Early,
            false => Age::Fresh,
        };
    }
    let past = u128::from(now - fresh_until);
    if past < freshness.stale.as_millis() {
        Age::Stale
    } else if past < freshness.stale_if_error.as_millis() {
        Age::Fallback
    } else {
        Age::Gone
    }
}

/// XFetch (Vattani et al., VLDB 2015): refresh when
/// `now - compute * beta * ln(rand) >= fresh_until`, which happens with
/// probability `exp(-left / (beta * compute))`.
fn xfetch(beta: f64, left_ms: u64, compute_us: u32, draw: impl FnOnce() -> f64) -> bool {
    if beta <= 0.0 || compute_us == 0 {
        return false;
    }
    let scale_ms = beta * f64::from(compute_us) / 1000.0;
    // `-ln(rand)` is exponential with mean 1; `draw` is in (0, 1].
    -draw().ln() * scale_ms >= left_ms as f64
}

/// A uniform number in `(0, 1]`, from the thread's generator (seeded by
/// `fastrand::seed` in tests).
pub(crate) fn draw() -> f64 {
    1.0 - fastrand::f64()
}

/// The keys of this process being refreshed, and the keys whose last
/// refresh failed, with when they may be tried again.
#[derive(Debug, Default)]
pub(crate) struct Refreshes {
    by_key: Mutex<HashMap<Box<str>, State>>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Running,
    /// Failed; not tried again before this instant (ms since the epoch).
    RetryAt(u64),
}

impl Refreshes {
    /// Claims the refresh of `key` at `now` (ms): `None` while another one
    /// runs, or less than [`RETRY_AFTER`] after one failed.
    pub(crate) fn claim(self: &Arc<Self>, key: &str, now: u64) -> Option<Claim> {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(key) {
            Some(State::Running) => return None,
            Some(State::RetryAt(at)) if now < *at => return None,
            Some(state) => *state = State::Running,
            None => {
                map.insert(key.into(), State::Running);
            }
        }
        Some(Claim {
            refreshes: Arc::clone(self),
            key: key.into(),
            failed_at: None,
        })
    }

    fn settle(&self, key: &str, failed_at: Option<u64>) {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        match failed_at {
            Some(now) => {
                let at = now.saturating_add(RETRY_AFTER.as_millis() as u64);
                map.insert(key.into(), State::RetryAt(at));
            }
            None => {
                map.remove(key);
            }
        }
        // Failed keys that may be tried again need no record; dropping them
        // now and then keeps the map as small as the keys in trouble.
        if map.len() > 1024 {
            let now = failed_at.unwrap_or(0);
            map.retain(|_, state| {
                matches!(state, State::Running) || {
                    matches!(state, State::RetryAt(at) if *at > now)
                }
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.lock().unwrap().len()
    }
}

/// The right to refresh one key. Dropped without [`failed`](Self::failed),
/// it frees the key at once (a refresh that stored its value, found a newer
/// one, or was cancelled).
#[derive(Debug)]
pub(crate) struct Claim {
    refreshes: Arc<Refreshes>,
    key: Box<str>,
    failed_at: Option<u64>,
}

impl Claim {
    /// Marks the refresh failed at `now` (ms): the key waits
    /// [`RETRY_AFTER`].
    pub(crate) fn failed(&mut self, now: u64) {
        self.failed_at = Some(now);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.refreshes.settle(&self.key, self.failed_at);
    }
}

/// The thread that runs sync functions' background refreshes, one at a
/// time, started with the first one and ended with the cache.
#[derive(Debug, Default)]
pub(crate) struct Worker {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Worker {
    /// Queues `job`; runs it on the caller's thread if no thread can be
    /// started (the refresh still happens, only not in the background).
    pub(crate) fn run(&self, job: Job) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The thread ended (a job's panic cannot end it, but an
                // abort of its thread could): start another.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("cachette-refresh".into())
            .spawn(move || {
                for job in rx {
                    // A panicking body must not end the worker.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        match started {
            Ok(_) => {
                let _ = tx.send(job);
                *jobs = Some(tx);
            }
            Err(_) => {
                drop(jobs);
                job();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freshness(stale: u64, stale_if_error: u64, early: f64, ahead: u64) -> Freshness {
        Freshness {
            stale: Duration::from_millis(stale),
            stale_if_error: Duration::from_millis(stale_if_error),
            early,
            refresh_ahead: Duration::from_millis(ahead),
            in_background: false,
        }
    }

    #[test]
    fn ages_follow_the_windows() {
        let f = freshness(100, 300, 0.0, 10);
        let never = || unreachable!("no draw without `early`");
        assert_eq!(age(&f, 0, 1000, 0, never), Age::Fresh);
        assert_eq!(age(&f, 990, 1000, 0, never), Age::Fresh);
        assert_eq!(age(&f, 991, 1000, 0, never), Age::Early);
        assert_eq!(age(&f, 1000, 1000, 0, never), Age::Stale);
        assert_eq!(age(&f, 1099, 1000, 0, never), Age::Stale);
        assert_eq!(age(&f, 1100, 1000, 0, never), Age::Fallback);
        assert_eq!(age(&f, 1299, 1000, 0, never), Age::Fallback);
        assert_eq!(age(&f, 1300, 1000, 0, never), Age::Gone);
        assert_eq!(age(&Freshness::NONE, 1000, 1000, 0, never), Age::Gone);
    }

    #[test]
    fn xfetch_refreshes_when_the_draw_is_below_its_probability() {
        // beta 1, compute 10 ms, 10 ms left: probability exp(-1) = 0.368.
        let f = freshness(0, 0, 1.0, 0);
        assert_eq!(age(&f, 990, 1000, 10_000, || 0.36), Age::Early);
        assert_eq!(age(&f, 990, 1000, 10_000, || 0.37), Age::Fresh);
        // Without a measured compute time there is nothing to scale by.
        assert_eq!(age(&f, 999, 1000, 0, || 0.0001), Age::Fresh);
    }

    #[test]
    fn one_claim_per_key_and_a_pause_after_a_failure() {
        let refreshes = Arc::new(Refreshes::default());
        let claim = refreshes.claim("a", 0).expect("free");
        assert!(refreshes.claim("a", 0).is_none());
        assert!(refreshes.claim("b", 0).is_some());
        drop(claim);
        let mut claim = refreshes.claim("a", 10).expect("free again");
        claim.failed(10);
        drop(claim);
        assert!(refreshes.claim("a", 1009).is_none());
        let claim = refreshes.claim("a", 1010).expect("a second later");
        drop(claim);
        assert_eq!(refreshes.len(), 0);
    }

    #[test]
    fn the_worker_runs_jobs_in_order_and_survives_a_panic() {
        let worker = Worker::default();
        let (tx, rx) = mpsc::channel();
        worker.run(Box::new(|| panic!("a failing refresh")));
        for i in 0..3 {
            let tx = tx.clone();
            worker.run(Box::new(move || tx.send(i).unwrap()));
        }
        let got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2]);
    }
}
