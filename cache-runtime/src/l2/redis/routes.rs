//! Which connection an operation goes over: one driven by the runtime that
//! calls, or the one on the cache's own runtime.
//!
//! A redis-rs connection is driven by a task of the runtime that opened it.
//! A caller in another runtime reaches it only by waking that runtime's
//! thread and being woken back, two thread switches that cost more than the
//! round trip to a local Redis. So each tokio runtime that keeps calling gets
//! a connection of its own, opened in the background by a task spawned on
//! it; until then (and for callers outside any runtime, and runtimes that
//! cannot open one), operations go over the cache's own connection.
//!
//! A runtime earns its connection after [`CALLS_BEFORE_OPENING`] calls over
//! at least [`AGE_BEFORE_OPENING`], so that short-lived runtimes (one per
//! request, say) do not open and close a connection each.
//!
//! The first call from a runtime spawns a watcher task on it: it opens the
//! connection when asked, and when the runtime shuts down it is dropped and
//! takes the runtime's slot (and connection) out of the table. A runtime
//! whose opening panicked (tokio without I/O or timers enabled) is
//! remembered and never tried again.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Id};
use tokio::sync::Notify;

use super::{open, Conn, RedisConfig};

/// Calls a runtime makes before it gets a connection of its own.
const CALLS_BEFORE_OPENING: u32 = 32;
/// How long after its first call a runtime gets a connection of its own at
/// the earliest.
const AGE_BEFORE_OPENING: Duration = Duration::from_millis(100);
/// How long a runtime whose connection could not be opened waits before
/// trying again (its calls meanwhile go over the cache's own connection).
const RETRY_AFTER: Duration = Duration::from_secs(1);

type Slots = RwLock<Vec<Slot>>;

/// The connections of the runtimes that call one cache.
pub(super) struct Routes {
    config: RedisConfig,
    timeout: Duration,
    /// Whether runtimes other than the cache's get connections of their own
    /// (see `Builder::l2_connection_per_runtime`); a thread outside any
    /// runtime always drives its own.
    per_runtime: bool,
    /// The cache's own runtime, whose connection is the fallback.
    background: Id,
    fallback: Conn,
    /// One slot per runtime that called; few, so a vector.
    slots: Arc<Slots>,
}

struct Slot {
    runtime: Id,
    /// Wakes the runtime's watcher: to open, or to end when the slot is gone.
    wake: Arc<Notify>,
    calls: AtomicU32,
    first_call: Instant,
    state: State,
}

enum State {
    /// Counting calls until the runtime earns a connection.
    Watching,
    /// The watcher is opening the connection.
    Opening,
    Ready(Conn),
    /// Opening failed; try again after this instant.
    Failed(Instant),
    /// Opening panicked: this runtime cannot drive a connection.
    Unsuitable,
}

/// How an operation reaches Redis.
pub(super) enum Route {
    /// A connection the calling task's runtime drives: await it in place.
    InPlace(Conn),
    /// The cache's own connection, from outside its runtime: hand the
    /// operation to that runtime.
    Background(Conn),
}

impl Routes {
    pub(super) fn new(
        config: RedisConfig,
        timeout: Duration,
        per_runtime: bool,
        background: Id,
        fallback: Conn,
    ) -> Routes {
        Routes {
            config,
            timeout,
            per_runtime,
            background,
            fallback,
            slots: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// The route for an operation of the calling task. Counts the call
    /// towards the runtime's own connection.
    pub(super) fn pick(&self) -> Route {
        let Ok(handle) = Handle::try_current() else {
            return Route::Background(self.fallback.clone());
        };
        let runtime = handle.id();
        if runtime == self.background {
            return Route::InPlace(self.fallback.clone());
        }
        if !self.per_runtime && !crate::l2::bridge::on_thread_runtime(runtime) {
            return Route::Background(self.fallback.clone());
        }
        {
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots.iter().find(|slot| slot.runtime == runtime) {
                match &slot.state {
                    State::Ready(conn) => return Route::InPlace(conn.clone()),
                    State::Watching if !slot.earned() => {
                        return Route::Background(self.fallback.clone())
                    }
                    State::Watching => {}
                    State::Failed(retry) if Instant::now() >= *retry => {}
                    State::Opening | State::Failed(_) | State::Unsuitable => {
                        return Route::Background(self.fallback.clone())
                    }
                }
            }
        }
        self.advance(&handle, runtime);
        Route::Background(self.fallback.clone())
    }

    /// A runtime's first call: a slot and a watcher. A runtime that earned
    /// its connection (or may try again): ask its watcher to open it.
    fn advance(&self, handle: &Handle, runtime: Id) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        match slots.iter_mut().find(|slot| slot.runtime == runtime) {
            Some(slot) => {
                let open = match slot.state {
                    State::Watching => slot.earned(),
                    State::Failed(retry) => Instant::now() >= retry,
                    _ => false,
                };
                if open {
                    slot.state = State::Opening;
                    slot.wake.notify_one();
                }
            }
            None => {
                let wake = Arc::new(Notify::new());
                slots.push(Slot {
                    runtime,
                    wake: Arc::clone(&wake),
                    calls: AtomicU32::new(1),
                    first_call: Instant::now(),
                    state: State::Watching,
                });
                drop(slots);
                // Made outside the task, so that a runtime shutting down
                // (which drops the task unpolled) still takes the slot out.
                let guard = SlotGuard {
                    slots: Arc::downgrade(&self.slots),
                    runtime,
                };
                handle.spawn(watch(guard, wake, self.config.clone(), self.timeout));
            }
        }
    }
}

impl Slot {
    /// Counts a call; whether the runtime has earned its connection.
    fn earned(&self) -> bool {
        let calls = self.calls.fetch_add(1, Relaxed).saturating_add(1);
        calls >= CALLS_BEFORE_OPENING && self.first_call.elapsed() >= AGE_BEFORE_OPENING
    }
}

impl Drop for Routes {
    fn drop(&mut self) {
        // Every watcher wakes, finds its slot gone and ends, closing its
        // connection with it.
        let slots =
            std::mem::take(&mut *self.slots.write().unwrap_or_else(PoisonError::into_inner));
        for slot in slots {
            slot.wake.notify_one();
        }
    }
}

/// A runtime's watcher: opens its connection when asked, for as long as its
/// slot lasts. Dropped with its runtime.
async fn watch(guard: SlotGuard, wake: Arc<Notify>, config: RedisConfig, timeout: Duration) {
    loop {
        wake.notified().await;
        match guard.state() {
            None => return,
            Some(true) => {}
            Some(false) => continue,
        }
        let (urls, cluster) = (config.urls.clone(), config.cluster);
        let budget = timeout.max(Duration::from_secs(2));
        // Made and polled inside, so a runtime without timers or I/O
        // panics here, where it is caught.
        let opening = CatchUnwind(Box::pin(async move {
            tokio::time::timeout(budget, open(urls, cluster, timeout)).await
        }));
        let state = match opening.await {
            Ok(Ok(Ok(conn))) => State::Ready(conn),
            Ok(_) => State::Failed(Instant::now() + RETRY_AFTER),
            Err(()) => State::Unsuitable,
        };
        if !guard.set(state) {
            return;
        }
    }
}

/// A future that turns a panic while polling `F` into `Err(())`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Held by a runtime's watcher: when the watcher is dropped (its runtime
/// shut down), the runtime's slot is taken out.
struct SlotGuard {
    slots: Weak<Slots>,
    runtime: Id,
}

impl SlotGuard {
    /// Whether the slot waits to be opened; `None` when it is gone.
    fn state(&self) -> Option<bool> {
        let slots = self.slots.upgrade()?;
        let slots = slots.read().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.iter().find(|slot| slot.runtime == self.runtime)?;
        Some(matches!(slot.state, State::Opening))
    }

    /// Sets the slot's state; false when the slot is gone.
    fn set(&self, state: State) -> bool {
        let Some(slots) = self.slots.upgrade() else {
            return false;
        };
        let mut slots = slots.write().unwrap_or_else(PoisonError::into_inner);
        match slots.iter_mut().find(|slot| slot.runtime == self.runtime) {
            Some(slot) => {
                slot.state = state;
                true
            }
            None => false,
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.upgrade() {
            let mut slots = slots.write().unwrap_or_else(PoisonError::into_inner);
            slots.retain(|slot| slot.runtime != self.runtime);
        }
    }
}
