//! How a leader's failure reaches its waiters: a result type that can be
//! cloned and sent between threads is shared with them; others are not.
//!
//! Generated code picks one at compile time, with autoref specialization:
//! `(&Probe::<R>::new()).sharing()` resolves to [`ShareResults`] when `R` is
//! `Clone + Send + Sync + 'static` and to [`KeepResults`] otherwise, so no
//! bound is added to the user's function.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// How to hand a result to other callers: type-erased, and back.
#[derive(Debug)]
pub struct Sharing<R> {
    pub(crate) share: fn(&R) -> Arc<dyn Any + Send + Sync>,
    pub(crate) take: fn(&(dyn Any + Send + Sync)) -> Option<R>,
}

impl<R> Clone for Sharing<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Sharing<R> {}

/// The probe generated code calls `sharing()` on.
#[derive(Debug)]
pub struct Probe<R>(PhantomData<fn() -> R>);

impl<R> Probe<R> {
    /// A probe for the result type `R`.
    #[allow(clippy::new_without_default, reason = "built by generated code only")]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// Chosen for results that can be shared.
pub trait ShareResults<R> {
    /// How to share `R`.
    fn sharing(&self) -> Option<Sharing<R>>;
}

impl<R: Clone + Send + Sync + 'static> ShareResults<R> for Probe<R> {
    fn sharing(&self) -> Option<Sharing<R>> {
        Some(Sharing {
            share: |r| Arc::new(r.clone()),
            take: |any| any.downcast_ref::<R>().cloned(),
        })
    }
}

/// Chosen for every other result.
pub trait KeepResults<R> {
    /// Nothing: `R` stays with the caller that made it.
    fn sharing(&self) -> Option<Sharing<R>>;
}

impl<R> KeepResults<R> for &Probe<R> {
    fn sharing(&self) -> Option<Sharing<R>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_borrow, reason = "the borrow is the specialization")]
    fn cloneable_results_are_shared_and_others_are_not() {
        let shared = (&Probe::<Result<u8, String>>::new())
            .sharing()
            .expect("shared");
        let any = (shared.share)(&Err("down".to_owned()));
        assert_eq!((shared.take)(&*any), Some(Err("down".to_owned())));
        assert_eq!((shared.take)(&7u32), None, "another type is not taken");

        struct NotClone;
        let kept = (&Probe::<Result<u8, NotClone>>::new()).sharing();
        assert!(kept.is_none());
    }
}
