//! How a caller waits: the one difference between an async function's load
//! and a sync function's.
//!
//! The load, `{fn}_put` and the invalidations are each written once, as an
//! `async fn` generic over [`Wait`]. An async caller awaits it with
//! [`Awaiting`]: shared-tier steps and other callers' runs are awaited in
//! place. A sync caller runs it with [`Blocking`] through [`block_now`]:
//! every wait blocks the thread inside the step (shared-tier steps on the
//! cache's runtime or the thread's own, bounded by `l2_timeout`), so the
//! future finishes in one poll and no runtime is needed.

use std::future::{ready, Future};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use crate::flight::{Flight, Outcome};
use crate::l2::L2;

/// The waits of a load.
pub(crate) trait Wait: Copy {
    /// Runs shared-tier `work` to completion; `None` when a sync caller's
    /// `budget` ran out first.
    fn l2<T: Send + 'static>(
        self,
        l2: &L2,
        budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Option<T>>;

    /// Waits for the leader of `flight` to finish.
    fn flight(self, flight: &Flight) -> impl Future<Output = Outcome> + '_;
}

/// An async caller: every wait is an `.await`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Awaiting;

impl Wait for Awaiting {
    async fn l2<T: Send + 'static>(
        self,
        _l2: &L2,
        // Each of the work's operations is bounded by `l2_timeout` already.
        _budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        Some(work.await)
    }

    fn flight(self, flight: &Flight) -> impl Future<Output = Outcome> + '_ {
        flight.wait()
    }
}

/// A sync caller: every wait blocks the thread, and is ready when polled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking;

impl Wait for Blocking {
    fn l2<T: Send + 'static>(
        self,
        l2: &L2,
        budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Option<T>> {
        ready(l2.block_on(budget, work))
    }

    fn flight(self, flight: &Flight) -> impl Future<Output = Outcome> + '_ {
        ready(flight.wait_blocking())
    }
}

/// Runs a future whose waits are all [`Blocking`] on the calling thread.
/// It finishes in its first poll; should anything inside return pending,
/// the thread parks until woken.
pub(crate) fn block_now<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    thread_local! {
        /// One waker per thread, made on its first blocking miss.
        static WAKER: Waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    }
    let mut future = std::pin::pin!(future);
    let mut run = |waker: &Waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    };
    // Borrowed, not cloned: a clone and its drop would move the waker's
    // reference count on every blocking miss. A thread whose locals are
    // being torn down makes a waker of its own.
    match WAKER.try_with(|waker| run(waker)) {
        Ok(out) => out,
        Err(_) => run(&Waker::from(Arc::new(Unpark(std::thread::current())))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_now_runs_a_ready_future_and_waits_for_a_pending_one() {
        assert_eq!(block_now(async { 7 }), 7);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(9).expect("the receiver waits");
        });
        assert_eq!(block_now(rx), Ok(9));
        sender.join().expect("the sender ends");
    }
}
