//! How callers in any runtime, or none, reach the shared tier: the cache's
//! own small runtime, and a runtime per thread for sync callers outside
//! tokio.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// The name of the thread of the cache's own runtime.
const BACKGROUND_THREAD: &str = "cachette-l2";

thread_local! {
    /// The runtime a thread outside tokio drives its sync callers'
    /// shared-tier steps on (see [`Bridge::block_on`]).
    static THREAD_RUNTIME: Option<tokio::runtime::Runtime> = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
        THREAD_RUNTIME_ID.set(runtime.as_ref().map(|r| r.handle().id()));
        runtime
    };
    /// Its id, once made.
    static THREAD_RUNTIME_ID: std::cell::Cell<Option<tokio::runtime::Id>> =
        const { std::cell::Cell::new(None) };
}

/// Whether `runtime` is the calling thread's own (see [`Bridge::block_on`]).
pub(crate) fn on_thread_runtime(runtime: tokio::runtime::Id) -> bool {
    THREAD_RUNTIME_ID
        .try_with(|id| id.get() == Some(runtime))
        .unwrap_or(false)
}

/// The runtime shared-tier work runs on; its thread ends when the cache's
/// last clone is dropped (even from inside another runtime).
pub(crate) struct Bridge {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Bridge {
    pub(crate) fn start() -> Result<Bridge, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(BACKGROUND_THREAD)
            .enable_all()
            .build()
            .map_err(|e| {
                Error::L2Connection(format!("could not start the shared tier's runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("cachette-l2-owner".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })
            .map_err(|e| {
                Error::L2Connection(format!("could not start the shared tier's thread: {e}"))
            })?;
        Ok(Bridge {
            handle,
            _stop: stop,
        })
    }

    /// The cache's own runtime.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `work` (shared-tier steps only, never a function body) to
    /// completion for a sync caller; blocks the calling thread for at most
    /// `budget`. Outside any tokio runtime the thread drives the work itself,
    /// on a small runtime of its own (with its own connection, for backends
    /// that keep one per runtime); inside one (where blocking on another
    /// runtime would panic), the work goes to the cache's runtime.
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let own_runtime = tokio::runtime::Handle::try_current().is_err()
            && THREAD_RUNTIME
                .try_with(|runtime| runtime.is_some())
                .unwrap_or(false);
        if own_runtime {
            let done = THREAD_RUNTIME.with(|runtime| {
                runtime.as_ref().map(|runtime| {
                    runtime.block_on(async { tokio::time::timeout(budget, work).await })
                })
            });
            return done.and_then(Result::ok);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv_timeout(budget).ok()
    }

    /// [`tokio::time::timeout`] on the timers of the cache's own runtime,
    /// so that a caller in a runtime without timers can wait too.
    pub(crate) fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> tokio::time::Timeout<F> {
        // A timer belongs to the runtime current when it is made.
        let _timers = self.handle.enter();
        tokio::time::timeout(duration, future)
    }
}
