//! How a function's return type maps to what is cached (DESIGN section 3).
//!
//! The macro picks a marker from the return type's syntax; the marker's
//! [`Shape`] impl says which part of the return value is stored, whether it is
//! an absent value (cached only with `negative_ttl`) and how to rebuild the
//! return value from a stored one.

/// The mapping between a return type `R` and the value stored for it.
pub trait Shape<R> {
    /// What is stored: the success type (`T`, or `Option<T>` for shapes with
    /// an absent value).
    type Value: Clone + Send + Sync + 'static;

    /// The value to store for `ret`, or `None` when `ret` is an error.
    fn value_of(ret: &R) -> Option<Self::Value>;

    /// [`value_of`](Self::value_of) without the clone.
    fn value_ref(ret: &R) -> Option<&Self::Value>;

    /// Whether a stored value is the absent value (`None`).
    fn is_absent(value: &Self::Value) -> bool;

    /// Whether `ret` is an error, which is never stored.
    #[inline]
    fn is_error(ret: &R) -> bool {
        let _ = ret;
        false
    }

    /// The return value for a stored value.
    fn join(value: Self::Value) -> R;
}

/// `T`: always cached.
#[derive(Debug)]
pub enum Plain {}
/// `Option<T>`: `Some` always, `None` with `negative_ttl`.
#[derive(Debug)]
pub enum Opt {}
/// `Result<T, E>`: `Ok` only.
#[derive(Debug)]
pub enum Res {}
/// `Result<Option<T>, E>`: `Ok(Some)` always, `Ok(None)` with `negative_ttl`.
#[derive(Debug)]
pub enum ResOpt {}

impl<T: Clone + Send + Sync + 'static> Shape<T> for Plain {
    type Value = T;
    #[inline]
    fn value_of(ret: &T) -> Option<T> {
        Some(ret.clone())
    }
    #[inline]
    fn value_ref(ret: &T) -> Option<&T> {
        Some(ret)
    }
    #[inline]
    fn is_absent(_: &T) -> bool {
        false
    }
    #[inline]
    fn join(value: T) -> T {
        value
    }
}

impl<T: Clone + Send + Sync + 'static> Shape<Option<T>> for Opt {
    type Value = Option<T>;
    #[inline]
    fn value_of(ret: &Option<T>) -> Option<Option<T>> {
        Some(ret.clone())
    }
    #[inline]
    fn value_ref(ret: &Option<T>) -> Option<&Option<T>> {
        Some(ret)
    }
    #[inline]
    fn is_absent(value: &Option<T>) -> bool {
        value.is_none()
    }
    #[inline]
    fn join(value: Option<T>) -> Option<T> {
        value
    }
}

impl<T: Clone + Send + Sync + 'static, E> Shape<Result<T, E>> for Res {
    type Value = T;
    #[inline]
    fn value_of(ret: &Result<T, E>) -> Option<T> {
        ret.as_ref().ok().cloned()
    }
    #[inline]
    fn value_ref(ret: &Result<T, E>) -> Option<&T> {
        ret.as_ref().ok()
    }
    #[inline]
    fn is_absent(_: &T) -> bool {
        false
    }
    #[inline]
    fn is_error(ret: &Result<T, E>) -> bool {
        ret.is_err()
    }
    #[inline]
    fn join(value: T) -> Result<T, E> {
        Ok(value)
    }
}

impl<T: Clone + Send + Sync + 'static, E> Shape<Result<Option<T>, E>> for ResOpt {
    type Value = Option<T>;
    #[inline]
    fn value_of(ret: &Result<Option<T>, E>) -> Option<Option<T>> {
        ret.as_ref().ok().cloned()
    }
    #[inline]
    fn value_ref(ret: &Result<Option<T>, E>) -> Option<&Option<T>> {
        ret.as_ref().ok()
    }
    #[inline]
    fn is_absent(value: &Option<T>) -> bool {
        value.is_none()
    }
    #[inline]
    fn is_error(ret: &Result<Option<T>, E>) -> bool {
        ret.is_err()
    }
    #[inline]
    fn join(value: Option<T>) -> Result<Option<T>, E> {
        Ok(value)
    }
}

/// The marker generated code gets from a probe (`LocalProbe`, `SharedProbe`) when the function's
/// value type cannot be cached (not `Clone + Send + Sync + 'static`, or
/// without serde on the shared tier). Such a build fails at the one check
/// at the return type; this marker lets every other generated call
/// type-check, so that check is the only error. Nothing is ever stored
/// under it.
#[derive(Debug)]
pub enum Unusable {}

/// The value type of [`Unusable`]: there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl serde::Serialize for Never {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<'de> serde::Deserialize<'de> for Never {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("no value has this type"))
    }
}

impl<R> Shape<R> for Unusable {
    type Value = Never;
    fn value_of(_: &R) -> Option<Never> {
        None
    }
    fn value_ref(_: &R) -> Option<&Never> {
        None
    }
    fn is_absent(value: &Never) -> bool {
        match *value {}
    }
    fn join(value: Never) -> R {
        match value {}
    }
}

/// How a `{fn}_put` value of type `V` becomes the stored value: as it is
/// for the four shapes; never for [`Unusable`].
pub trait Stores<R, V>: Shape<R> {
    /// The value to store.
    fn stored(value: V) -> Option<Self::Value>;
}

impl<T: Clone + Send + Sync + 'static> Stores<T, T> for Plain {
    #[inline]
    fn stored(value: T) -> Option<T> {
        Some(value)
    }
}

impl<T: Clone + Send + Sync + 'static> Stores<Option<T>, Option<T>> for Opt {
    #[inline]
    fn stored(value: Option<T>) -> Option<Option<T>> {
        Some(value)
    }
}

impl<T: Clone + Send + Sync + 'static, E> Stores<Result<T, E>, T> for Res {
    #[inline]
    fn stored(value: T) -> Option<T> {
        Some(value)
    }
}

impl<T: Clone + Send + Sync + 'static, E> Stores<Result<Option<T>, E>, Option<T>> for ResOpt {
    #[inline]
    fn stored(value: Option<T>) -> Option<Option<T>> {
        Some(value)
    }
}

impl<R, V> Stores<R, V> for Unusable {
    fn stored(_: V) -> Option<Never> {
        None
    }
}

/// How a `#[cache_many]` function stores one element's value: the marker
/// of the `#[cache]` function whose entries it shares. Without
/// `negative_ttl` the entry holds the value itself (`Plain`, `Res`), with
/// it an `Option` of it (`Opt`, `ResOpt`), where `None` is an element the
/// body's map left out.
pub trait Element<V> {
    /// What an entry holds.
    type Stored: Clone + Send + Sync + 'static;

    /// The entry for a value the body returned.
    fn present(value: V) -> Option<Self::Stored>;

    /// The entry for an element the body left out of its map, if it may
    /// have one.
    fn absent() -> Option<Self::Stored>;

    /// The value an entry holds; `None` for an absent element.
    fn value(stored: &Self::Stored) -> Option<V>;

    /// [`value`](Self::value), taking the entry.
    fn into_value(stored: Self::Stored) -> Option<V>;
}

impl<V: Clone + Send + Sync + 'static> Element<V> for Plain {
    type Stored = V;
    #[inline]
    fn present(value: V) -> Option<V> {
        Some(value)
    }
    #[inline]
    fn absent() -> Option<V> {
        None
    }
    #[inline]
    fn value(stored: &V) -> Option<V> {
        Some(stored.clone())
    }
    #[inline]
    fn into_value(stored: V) -> Option<V> {
        Some(stored)
    }
}

impl<V: Clone + Send + Sync + 'static> Element<V> for Res {
    type Stored = V;
    #[inline]
    fn present(value: V) -> Option<V> {
        Some(value)
    }
    #[inline]
    fn absent() -> Option<V> {
        None
    }
    #[inline]
    fn value(stored: &V) -> Option<V> {
        Some(stored.clone())
    }
    #[inline]
    fn into_value(stored: V) -> Option<V> {
        Some(stored)
    }
}

impl<V: Clone + Send + Sync + 'static> Element<V> for Opt {
    type Stored = Option<V>;
    #[inline]
    fn present(value: V) -> Option<Option<V>> {
        Some(Some(value))
    }
    #[inline]
    fn absent() -> Option<Option<V>> {
        Some(None)
    }
    #[inline]
    fn value(stored: &Option<V>) -> Option<V> {
        stored.clone()
    }
    #[inline]
    fn into_value(stored: Option<V>) -> Option<V> {
        stored
    }
}

impl<V: Clone + Send + Sync + 'static> Element<V> for ResOpt {
    type Stored = Option<V>;
    #[inline]
    fn present(value: V) -> Option<Option<V>> {
        Some(Some(value))
    }
    #[inline]
    fn absent() -> Option<Option<V>> {
        Some(None)
    }
    #[inline]
    fn value(stored: &Option<V>) -> Option<V> {
        stored.clone()
    }
    #[inline]
    fn into_value(stored: Option<V>) -> Option<V> {
        stored
    }
}

impl<V> Element<V> for Unusable {
    type Stored = Never;
    fn present(_: V) -> Option<Never> {
        None
    }
    fn absent() -> Option<Never> {
        None
    }
    fn value(stored: &Never) -> Option<V> {
        match *stored {}
    }
    fn into_value(stored: Never) -> Option<V> {
        match stored {}
    }
}
