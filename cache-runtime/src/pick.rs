//! The shape marker generated code works with, picked at compile time.
//!
//! Generated code gets a [`Pick`] from
//! `(&LocalProbe::<T, Sh>::new()).pick()` (or [`SharedProbe`] for values
//! that may live in the shared tier), where `T` is the stored type and `Sh`
//! the marker the return type's syntax chose. With autoref specialization
//! this is `Pick<Sh>` when `T` can be cached, and `Pick<Unusable>`
//! otherwise. Every generated runtime call goes through the pick, so a type
//! that cannot be cached makes none of them fail: the build fails once, at
//! the explicit check at the return type (`<T as CacheValue>::check()`),
//! which says what the type lacks.

use std::future::Future;
use std::marker::PhantomData;

use crate::error::Error;
use crate::handle::Cache;
use crate::key::KeyWriter;
use crate::shape::{Shape, Stores, Unusable};
use crate::share::Sharing;
use crate::spec::Site;
use crate::tier::{self, Load, Lookup, ManyTag, Tag};
use crate::tier::{KeyStore, Keys};
use crate::value::{SharedValue, ValueCodec};

/// A shape marker, as a value.
pub struct Pick<Sh>(PhantomData<fn() -> Sh>);

impl<Sh> Clone for Pick<Sh> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Sh> Copy for Pick<Sh> {}

impl<Sh> std::fmt::Debug for Pick<Sh> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<Sh>())
    }
}

impl<Sh> Pick<Sh> {
    /// The pick of `Sh` itself.
    pub const fn of() -> Self {
        Pick(PhantomData)
    }
}

/// Asks whether `T` can be cached in process memory.
#[derive(Debug)]
pub struct LocalProbe<T, Sh>(PhantomData<fn() -> (T, Sh)>);

/// Asks whether `T` can be cached in the shared tier too.
#[derive(Debug)]
pub struct SharedProbe<T, Sh>(PhantomData<fn() -> (T, Sh)>);

impl<T, Sh> LocalProbe<T, Sh> {
    /// A probe.
    pub const fn new() -> Self {
        LocalProbe(PhantomData)
    }
}

impl<T, Sh> SharedProbe<T, Sh> {
    /// A probe.
    pub const fn new() -> Self {
        SharedProbe(PhantomData)
    }
}

impl<T, Sh> Default for LocalProbe<T, Sh> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, Sh> Default for SharedProbe<T, Sh> {
    fn default() -> Self {
        Self::new()
    }
}

/// Chosen when `T` is `Clone + Send + Sync + 'static`.
pub trait PickLocal<Sh> {
    /// `Pick<Sh>`.
    fn pick(&self) -> Pick<Sh>;
}

impl<T: Clone + Send + Sync + 'static, Sh> PickLocal<Sh> for LocalProbe<T, Sh> {
    #[inline]
    fn pick(&self) -> Pick<Sh> {
        Pick::of()
    }
}

/// Chosen when `T` is also `Serialize + DeserializeOwned`.
pub trait PickShared<Sh> {
    /// `Pick<Sh>`.
    fn pick(&self) -> Pick<Sh>;
}

impl<T: Clone + Send + Sync + 'static + SharedValue, Sh> PickShared<Sh> for SharedProbe<T, Sh> {
    #[inline]
    fn pick(&self) -> Pick<Sh> {
        Pick::of()
    }
}

/// Chosen otherwise: the build fails at the check at the return type.
pub trait PickUnusable {
    /// `Pick<Unusable>`.
    fn pick(&self) -> Pick<Unusable>;
}

impl<T, Sh> PickUnusable for &LocalProbe<T, Sh> {
    fn pick(&self) -> Pick<Unusable> {
        Pick::of()
    }
}

impl<T, Sh> PickUnusable for &SharedProbe<T, Sh> {
    fn pick(&self) -> Pick<Unusable> {
        Pick::of()
    }
}

impl<Sh> Pick<Sh> {
    /// [`tier::lookup`] under this marker.
    #[inline]
    pub fn lookup<'c, R>(
        self,
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        key: impl FnOnce(&mut KeyWriter<'_>),
        tags: &[Tag<'_>],
    ) -> Lookup<'c, R>
    where
        Sh: Shape<R>,
    {
        tier::lookup::<Sh, R>(site, cache, value, key, tags)
    }

    /// [`tier::lookup_entry`] under this marker.
    #[inline]
    pub fn lookup_entry<'c, R>(
        self,
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        key: impl FnOnce(&mut KeyWriter<'_>),
        tags: &[Tag<'_>],
        record: &'c crate::entry::Record,
    ) -> Lookup<'c, R>
    where
        Sh: Shape<R>,
    {
        tier::lookup_entry::<Sh, R>(site, cache, value, key, tags, record)
    }

    /// [`Record::into_entry`](crate::entry::Record::into_entry) under this
    /// marker: the `{fn}_entry` call's result.
    #[inline]
    pub fn entry<R>(
        self,
        record: crate::entry::Record,
        site: &'static Site,
        cache: &Cache,
        value: Option<ValueCodec>,
        ret: R,
    ) -> crate::entry::Entry<R>
    where
        Sh: Shape<R>,
    {
        record.into_entry::<Sh, R>(site, cache, value, ret)
    }

    /// [`crate::value::shared`] under this marker.
    #[inline]
    pub fn shared<R>(self) -> Option<ValueCodec>
    where
        Sh: Shape<R>,
        Sh::Value: SharedValue,
    {
        crate::value::shared::<Sh, R>()
    }

    /// [`Load::run_async`] under this marker.
    #[inline]
    pub fn run_async<'c, R, F: Future<Output = R>>(
        self,
        load: Load<'c>,
        body: F,
        sharing: Option<Sharing<R>>,
    ) -> impl Future<Output = R> + use<'c, Sh, R, F>
    where
        Sh: Shape<R>,
    {
        load.run_async::<Sh, R, F>(body, sharing)
    }

    /// [`Load::run_blocking`] under this marker.
    #[inline]
    pub fn run_blocking<R, F: FnOnce() -> R>(
        self,
        load: Load<'_>,
        body: F,
        sharing: Option<Sharing<R>>,
    ) -> R
    where
        Sh: Shape<R>,
    {
        load.run_blocking::<Sh, R, F>(body, sharing)
    }

    /// A `#[cache_many]` call under this marker: looks every element up in
    /// L1 ([`Batch`]). `keys` says whether the element type can key a
    /// batch; when it cannot, the batch is one under which nothing fails,
    /// so that the check at the element type is the only error.
    #[inline]
    #[allow(clippy::too_many_arguments, reason = "what one generated call passes")]
    pub fn many<'c, 'k, V, K: 'k, E: KeyStore<'c, Sh, K, V>>(
        self,
        keys: Keys<E>,
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        elements: impl IntoIterator<Item = &'k K>,
        key: impl Fn(&mut KeyWriter<'_>, &K),
        tags: &[ManyTag<'_, K>],
    ) -> E::Batch {
        let _ = keys;
        E::batch(site, cache, value, elements, key, tags, true)
    }

    /// `{fn}_refresh` and `{fn}_put` of a `#[cache_many]` function under
    /// this marker: a batch that invalidates every element first, then
    /// loads them all or stores given values.
    #[inline]
    #[allow(clippy::too_many_arguments, reason = "what one generated call passes")]
    pub fn write_many<'c, 'k, V, K: 'k, E: KeyStore<'c, Sh, K, V>>(
        self,
        keys: Keys<E>,
        site: &'static Site,
        cache: &'c Cache,
        value: Option<ValueCodec>,
        elements: impl IntoIterator<Item = &'k K>,
        key: impl Fn(&mut KeyWriter<'_>, &K),
        tags: &[ManyTag<'_, K>],
    ) -> E::Batch {
        let _ = keys;
        E::batch(site, cache, value, elements, key, tags, false)
    }

    /// [`tier::put_async`] under this marker.
    pub fn put_async<'c, R, V>(
        self,
        site: &'static Site,
        cache: &'c Cache,
        value_codec: Option<ValueCodec>,
        key: impl FnOnce(&mut KeyWriter<'_>),
        tags: &[Tag<'_>],
        value: V,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'c
    where
        Sh: Stores<R, V>,
    {
        let put = Sh::stored(value)
            .map(|value| tier::put_async::<Sh, R>(site, cache, value_codec, key, tags, value));
        async move {
            match put {
                Some(put) => put.await,
                None => Err(unusable()),
            }
        }
    }

    /// [`tier::put_blocking`] under this marker.
    pub fn put_blocking<R, V>(
        self,
        site: &'static Site,
        cache: &Cache,
        value_codec: Option<ValueCodec>,
        key: impl FnOnce(&mut KeyWriter<'_>),
        tags: &[Tag<'_>],
        value: V,
    ) -> Result<(), Error>
    where
        Sh: Stores<R, V>,
    {
        match Sh::stored(value) {
            Some(value) => tier::put_blocking::<Sh, R>(site, cache, value_codec, key, tags, value),
            None => Err(unusable()),
        }
    }
}

/// What a put under [`Unusable`] would answer, in a build that cannot
/// succeed.
fn unusable() -> Error {
    Error::BadData("the function's value type cannot be cached".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Plain;

    struct NotClone;

    #[test]
    #[allow(clippy::needless_borrow, reason = "the borrow is what picks the impl")]
    fn the_probe_picks_the_functions_marker_only_for_a_type_that_can_be_cached() {
        #[allow(unused_imports)]
        use super::{PickLocal as _, PickShared as _, PickUnusable as _};
        let name = |pick: &dyn std::fmt::Debug| format!("{pick:?}");
        assert!(name(&(&LocalProbe::<u64, Plain>::new()).pick()).ends_with("Plain"));
        assert!(name(&(&SharedProbe::<String, Plain>::new()).pick()).ends_with("Plain"));
        assert!(name(&(&LocalProbe::<NotClone, Plain>::new()).pick()).ends_with("Unusable"));
        assert!(
            name(&(&SharedProbe::<std::cell::Cell<u8>, Plain>::new()).pick()).ends_with("Unusable")
        );
        #[derive(Clone)]
        struct NoSerde;
        assert!(name(&(&LocalProbe::<NoSerde, Plain>::new()).pick()).ends_with("Plain"));
        assert!(name(&(&SharedProbe::<NoSerde, Plain>::new()).pick()).ends_with("Unusable"));
    }
}
