//! What the shared tier needs to know about a function's value type.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shape::Shape;

/// A value type that can live in the shared tier.
///
/// Implemented for every `Serialize + DeserializeOwned` type. Functions with
/// `tier = "both"` (the default) or `"l2"` need it, whether or not a shared
/// tier is configured, so that configuring one later never stops code from
/// compiling.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in the shared cache tier",
    label = "the cached value must implement `serde::Serialize` and `serde::Deserialize`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or keep the function's entries in process memory with `tier = \"l1\"`"
)]
pub trait SharedValue: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> SharedValue for T {}

/// What every cached value is: `Clone + Send + Sync + 'static`, since a
/// hit returns a clone of the stored value, which another thread may have
/// stored.
///
/// Implemented for every such type. `#[cache]` checks the stored type of
/// its function's return type against it, so that a type that is not
/// reports one error, at the return type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cached value",
    label = "a cached value must be `Clone + Send + Sync + 'static`",
    note = "every hit returns a clone of the stored value, and other threads may hold it too: derive `Clone` (or return an `Arc` of it), and use `Arc` rather than `Rc` and a `Mutex` or an atomic rather than a `Cell`"
)]
pub trait CacheValue {
    /// Nothing: generated code calls it as `<T as CacheValue>::check()`,
    /// where a type that cannot be cached is reported.
    #[doc(hidden)]
    #[inline]
    fn check() {}

    /// Nothing: [`check`](Self::check) for a value that may live in the
    /// shared tier, which also needs [`SharedValue`].
    #[doc(hidden)]
    #[inline]
    fn check_shared()
    where
        Self: SharedValue,
    {
    }
}

impl<T: Clone + ThreadShareable + 'static> CacheValue for T {}

/// `Send + Sync`, as one requirement of [`CacheValue`], so that a type that
/// is neither (an `Rc`, a `Cell`) is reported once.
pub trait ThreadShareable {}

#[diagnostic::do_not_recommend]
impl<T: Send + Sync> ThreadShareable for T {}

/// How to move one function's values in and out of the shared tier; `None`
/// for `tier = "l1"` functions.
#[derive(Debug, Clone, Copy)]
pub struct ValueCodec {
    pub(crate) encode: fn(
        &(dyn std::any::Any + Send + Sync),
        crate::codec::CodecKind,
        &mut Vec<u8>,
    ) -> Result<(), crate::codec::CodecError>,
    #[allow(clippy::type_complexity, reason = "a plain function pointer")]
    pub(crate) decode:
        fn(
            &[u8],
            crate::codec::CodecKind,
        )
            -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::codec::CodecError>,
}

fn encode_value<T: SharedValue + 'static>(
    value: &(dyn std::any::Any + Send + Sync),
    codec: crate::codec::CodecKind,
    out: &mut Vec<u8>,
) -> Result<(), crate::codec::CodecError> {
    match value.downcast_ref::<T>() {
        Some(value) => codec.encode(value, out),
        None => Err(crate::codec::CodecError(
            "the value is not of the function's type".to_owned(),
        )),
    }
}

fn decode_value<T: SharedValue + Send + Sync + 'static>(
    bytes: &[u8],
    codec: crate::codec::CodecKind,
) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::codec::CodecError> {
    codec
        .decode::<T>(bytes)
        .map(|v| std::sync::Arc::new(v) as std::sync::Arc<dyn std::any::Any + Send + Sync>)
}

/// The codec of a function whose entries may live in the shared tier.
/// Used by generated code.
pub fn shared<Sh: Shape<R>, R>() -> Option<ValueCodec>
where
    Sh::Value: SharedValue,
{
    Some(ValueCodec {
        encode: encode_value::<Sh::Value>,
        decode: decode_value::<Sh::Value>,
    })
}

/// No codec: the function's entries stay in process memory
/// (`tier = "l1"`). Used by generated code.
pub fn local() -> Option<ValueCodec> {
    None
}

/// What the elements of a `#[cache_many]` collection need: generated code
/// calls `<K as ManyElement>::check()` at the element type, where a type
/// that lacks them is reported once.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an element of a `#[cache_many]` collection",
    label = "the elements of the collection must be `Clone + Eq + Hash`",
    note = "each element is looked up, loaded and returned as a key of the map on its own: derive `Clone`, `PartialEq`, `Eq` and `Hash` for it"
)]
pub trait ManyElement {
    /// Nothing.
    #[inline]
    fn check() {}
}

#[diagnostic::do_not_recommend]
impl<T: Clone + Eq + std::hash::Hash> ManyElement for T {}

/// That a `#[cache_many]` function's map is keyed by its collection's
/// element type: generated code calls `<MapKey as KeyedBy<K>>::check()` at
/// the map's key type. Any name of the element type will do (an alias).
#[diagnostic::on_unimplemented(
    message = "the map is keyed by `{Self}`, but the collection's elements are `{K}`",
    label = "a `#[cache_many]` function returns each element's value under the element itself",
    note = "key the map by the collection's element type"
)]
pub trait KeyedBy<K> {
    /// Nothing.
    #[inline]
    fn check() {}
}

impl<K> KeyedBy<K> for K {}
