//! In-process single-flight: one body run per key at a time (G5).
//!
//! The first caller of a cold key leads: it runs the body and publishes the
//! value. Callers arriving meanwhile wait on the flight, from threads
//! (condition variable) or tasks (`Notify`) alike. A leader that returns an
//! error hands it to its waiters when it can be shared (see `share`), and
//! they elect one of them to try once more; a leader that panics or is
//! dropped abandons the flight and one of the waiters takes over.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::invalidate::{Fence, Generations};

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Running,
    /// The leader's value, stored or not.
    Done(Arc<dyn Any + Send + Sync>),
    /// The leader's body returned an error: the whole return value, when
    /// it can be shared.
    Failed(Option<Arc<dyn Any + Send + Sync>>),
    /// The leader panicked or was cancelled before finishing.
    Abandoned,
    /// A batch found the key absent, with nothing to store for it
    /// (`#[cache_many]` without `negative_ttl`): a waiter of another
    /// function loads it itself.
    Absent,
}

#[derive(Debug)]
pub(crate) struct Flight {
    outcome: Mutex<Outcome>,
    finished: Condvar,
    notify: tokio::sync::Notify,
    fence: Fence,
}

#[derive(Debug, Default)]
pub(crate) struct Flights {
    by_key: Mutex<HashMap<Box<str>, Arc<Flight>>>,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Waiter(Arc<Flight>),
}

/// Held by the leader; finishing or dropping it wakes the waiters.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: Box<str>,
    flight: Arc<Flight>,
    finished: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Flights {
    /// Joins the flight for `key` if one runs under generations still
    /// current, or starts one led by the caller. A flight that began before
    /// an invalidation of its key is not joined (G7).
    pub(crate) fn join_or_lead<'a>(
        &'a self,
        key: &str,
        fence: &Fence,
        generations: &Generations,
    ) -> Role<'a> {
        let mut map = lock(&self.by_key);
        if let Some(flight) = map.get(key) {
            if generations.is_current(&flight.fence) {
                return Role::Waiter(Arc::clone(flight));
            }
        }
        let flight = Arc::new(Flight {
            outcome: Mutex::new(Outcome::Running),
            finished: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            fence: fence.clone(),
        });
        map.insert(key.into(), Arc::clone(&flight));
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.into(),
            flight,
            finished: false,
        })
    }
}

impl LeaderGuard<'_> {
    /// Publishes the leader's outcome and wakes every waiter.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.publish(outcome);
    }

    fn publish(&self, outcome: Outcome) {
        {
            let mut map = lock(&self.flights.by_key);
            if map
                .get(&*self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&*self.key);
            }
        }
        *lock(&self.flight.outcome) = outcome;
        self.flight.finished.notify_all();
        self.flight.notify.notify_waiters();
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(Outcome::Abandoned);
        }
    }
}

impl Flight {
    /// Blocks the thread until the leader finishes.
    pub(crate) fn wait_blocking(&self) -> Outcome {
        let mut outcome = lock(&self.outcome);
        while matches!(*outcome, Outcome::Running) {
            outcome = self
                .finished
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
        outcome.clone()
    }

    /// Waits, without blocking the thread, until the leader finishes.
    pub(crate) async fn wait(&self) -> Outcome {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a finish in between still wakes us.
            notified.as_mut().enable();
            {
                let outcome = lock(&self.outcome);
                if !matches!(*outcome, Outcome::Running) {
                    return outcome.clone();
                }
            }
            notified.await;
        }
    }
}
