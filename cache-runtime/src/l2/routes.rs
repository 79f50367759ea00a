//! Which connection an operation goes over: one driven by the runtime that
//! calls, or the one on the cache's own runtime.
//!
//! A redis-rs connection is driven by a task of the runtime that opened it.
//! A caller in another runtime reaches it only by waking that runtime's
//! thread and being woken back, two thread switches that cost more than the
//! round trip to a local Redis. So each tokio runtime that calls gets its
//! own connection, opened in the background by a task spawned on it the
//! first time it calls; until that connection is up (and for callers outside
//! any runtime, and runtimes that cannot open one), operations go over the
//! cache's own connection.
//!
//! The opening task also watches its runtime: when the runtime shuts down,
//! the task is dropped and takes the runtime's connection out of the table.
//! A runtime whose opening task panicked (tokio without I/O or timers
//! enabled) is remembered and never tried again.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Id};

use super::{open, Conn, L2Config};

/// How long a runtime whose connection could not be opened waits before
/// trying again (its calls meanwhile go over the cache's own connection).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The connections of the runtimes that call one cache.
pub(super) struct Routes {
    config: L2Config,
    timeout: Duration,
    /// Whether runtimes other than the cache's get connections of their own
    /// (see `Builder::l2_connection_per_runtime`); a thread outside any
    /// runtime always drives its own.
    per_runtime: bool,
    /// The cache's own runtime, whose connection is the fallback.
    background: Id,
    fallback: Conn,
    /// One slot per runtime that called; few, so a vector.
    slots: Arc<RwLock<Vec<Slot>>>,
}

struct Slot {
    runtime: Id,
    state: State,
}

enum State {
    /// The opening task is at work.
    Opening,
    /// Up. Dropping the sender ends the runtime's watching task.
    Ready {
        conn: Conn,
        _watch: tokio::sync::oneshot::Sender<()>,
    },
    /// Opening failed; try again after this instant.
    Failed(Instant),
    /// The opening task panicked: this runtime cannot drive a connection.
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
        config: L2Config,
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

    /// The route for an operation of the calling task; starts opening a
    /// connection for its runtime the first time it calls.
    pub(super) fn pick(&self) -> Route {
        let Ok(handle) = Handle::try_current() else {
            return Route::Background(self.fallback.clone());
        };
        let runtime = handle.id();
        if runtime == self.background {
            return Route::InPlace(self.fallback.clone());
        }
        if !self.per_runtime && !super::on_thread_runtime(runtime) {
            return Route::Background(self.fallback.clone());
        }
        {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            match slots.iter().find(|slot| slot.runtime == runtime) {
                Some(Slot {
                    state: State::Ready { conn, .. },
                    ..
                }) => return Route::InPlace(conn.clone()),
                Some(Slot {
                    state: State::Failed(retry),
                    ..
                }) if Instant::now() >= *retry => {}
                Some(_) => return Route::Background(self.fallback.clone()),
                None => {}
            }
        }
        self.start_opening(&handle, runtime);
        Route::Background(self.fallback.clone())
    }

    fn start_opening(&self, handle: &Handle, runtime: Id) {
        {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            match slots.iter_mut().find(|slot| slot.runtime == runtime) {
                Some(slot) => match slot.state {
                    State::Failed(retry) if Instant::now() >= retry => slot.state = State::Opening,
                    // Another caller got here first.
                    _ => return,
                },
                None => slots.push(Slot {
                    runtime,
                    state: State::Opening,
                }),
            }
        }
        let config = self.config.clone();
        let timeout = self.timeout;
        let slots = Arc::downgrade(&self.slots);
        handle.spawn(async move {
            let mut guard = SlotGuard {
                slots,
                runtime,
                armed: true,
            };
            let budget = timeout.max(Duration::from_secs(2));
            let opened = tokio::time::timeout(budget, open(config.urls, config.cluster, timeout))
                .await
                .ok()
                .and_then(Result::ok);
            let (watch, watched) = tokio::sync::oneshot::channel();
            let state = match opened {
                Some(conn) => State::Ready {
                    conn,
                    _watch: watch,
                },
                None => {
                    guard.armed = false;
                    State::Failed(Instant::now() + RETRY_AFTER)
                }
            };
            if !guard.set(state) || !guard.armed {
                guard.armed = false;
                return;
            }
            // Wait for the cache to drop the connection (the sender goes
            // with it); if the runtime shuts down first, this task is
            // dropped here and the guard takes the slot out.
            let _ = watched.await;
            guard.armed = false;
        });
    }
}

/// Held by a runtime's opening task: when the task is dropped (its runtime
/// shut down) or panics (the runtime cannot do I/O or timers), the slot is
/// taken out or marked.
struct SlotGuard {
    slots: Weak<RwLock<Vec<Slot>>>,
    runtime: Id,
    armed: bool,
}

impl SlotGuard {
    /// Sets the slot's state; false when the cache is gone.
    fn set(&self, state: State) -> bool {
        let Some(slots) = self.slots.upgrade() else {
            return false;
        };
        let mut slots = slots.write().unwrap_or_else(|e| e.into_inner());
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
        if !self.armed {
            return;
        }
        let Some(slots) = self.slots.upgrade() else {
            return;
        };
        let mut slots = slots.write().unwrap_or_else(|e| e.into_inner());
        if std::thread::panicking() {
            if let Some(slot) = slots.iter_mut().find(|slot| slot.runtime == self.runtime) {
                slot.state = State::Unsuitable;
            }
        } else {
            slots.retain(|slot| slot.runtime != self.runtime);
        }
    }
}
