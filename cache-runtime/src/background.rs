//! Where a `refresh = "background"` refresh runs, picked at compile time.
//!
//! Generated code wraps the body (the future of an async function, a
//! closure for a sync one) in a [`Job`] and calls
//! `(&job).background_async(pick, load)` or `background_blocking`. With
//! autoref specialization this resolves to [`SpawnAsync`] or
//! [`SpawnBlocking`] when the body can move to another task or thread
//! (`Send + 'static`), and to [`CallerAsync`] or [`CallerBlocking`]
//! otherwise, which hand the load back for the caller to run: no bound is
//! added to the user's function.

use std::cell::Cell;
use std::future::Future;

use crate::pick::Pick;
use crate::shape::Shape;
use crate::tier::Load;

/// A refresh's body, taken once: by the spawned refresh, or by the caller.
pub struct Job<F>(Cell<Option<F>>);

impl<F> std::fmt::Debug for Job<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl<F> Job<F> {
    /// Wraps `body`.
    pub fn new(body: F) -> Self {
        Job(Cell::new(Some(body)))
    }

    /// The body, for the caller to run itself.
    ///
    /// # Panics
    ///
    /// If the body was already taken: generated code takes it once.
    pub fn take(&self) -> F {
        self.0
            .take()
            .expect("a refresh's body is taken once, by the refresh or by its caller")
    }
}

/// Chosen for async bodies that can run on another task.
pub trait SpawnAsync {
    /// The body's output.
    type Output;
    /// Spawns the refresh; `None`, since the caller has nothing left to do.
    fn background_async<'c, Sh: Shape<Self::Output> + 'static>(
        &self,
        pick: Pick<Sh>,
        load: Load<'c>,
    ) -> Option<Load<'c>>;
}

impl<F> SpawnAsync for Job<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;
    fn background_async<'c, Sh: Shape<F::Output> + 'static>(
        &self,
        _: Pick<Sh>,
        load: Load<'c>,
    ) -> Option<Load<'c>> {
        load.spawn_async::<Sh, F::Output, F>(self.take());
        None
    }
}

/// Chosen for async bodies that cannot leave the caller's task.
pub trait CallerAsync {
    /// The load back: the caller runs the refresh.
    fn background_async<'c, Sh>(&self, pick: Pick<Sh>, load: Load<'c>) -> Option<Load<'c>>;
}

impl<F> CallerAsync for &Job<F> {
    fn background_async<'c, Sh>(&self, _: Pick<Sh>, load: Load<'c>) -> Option<Load<'c>> {
        Some(load)
    }
}

/// Chosen for sync bodies that can run on another thread.
pub trait SpawnBlocking {
    /// The body's output.
    type Output;
    /// Queues the refresh on the cache's refresh thread; `None`.
    fn background_blocking<'c, Sh: Shape<Self::Output> + 'static>(
        &self,
        pick: Pick<Sh>,
        load: Load<'c>,
    ) -> Option<Load<'c>>;
}

impl<F, R> SpawnBlocking for Job<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: 'static,
{
    type Output = R;
    fn background_blocking<'c, Sh: Shape<R> + 'static>(
        &self,
        _: Pick<Sh>,
        load: Load<'c>,
    ) -> Option<Load<'c>> {
        load.spawn_blocking::<Sh, R, F>(self.take());
        None
    }
}

/// Chosen for sync bodies that cannot leave the caller's thread.
pub trait CallerBlocking {
    /// The load back: the caller runs the refresh.
    fn background_blocking<'c, Sh>(&self, pick: Pick<Sh>, load: Load<'c>) -> Option<Load<'c>>;
}

impl<F> CallerBlocking for &Job<F> {
    fn background_blocking<'c, Sh>(&self, _: Pick<Sh>, load: Load<'c>) -> Option<Load<'c>> {
        Some(load)
    }
}
