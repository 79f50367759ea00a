//! How values become bytes in the shared tier, and back.
//!
//! bincode 2 (through serde) is the default: compact and fast. bincode is
//! no longer maintained (RUSTSEC-2025-0141), so the codec is a trait and
//! [`Postcard`] is available behind the `postcard` feature. Each codec has an
//! id written into every envelope; a value written by another codec is a
//! miss, never a misread.

use std::fmt::{self, Debug};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub(crate) String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

mod sealed {
    pub trait Sealed {}
}

/// A serde format for the shared tier: [`Bincode`] (the default) or
/// [`Postcard`].
///
/// The trait is sealed: the set of codecs is part of the stored form, so a
/// new one is added here with its own id.
///
/// # Example
///
/// ```
/// use cachette::{Bincode, Codec};
///
/// let mut bytes = Vec::new();
/// Bincode.encode(&(42u64, "x"), &mut bytes).unwrap();
/// let back: (u64, String) = Bincode.decode(&bytes).unwrap();
/// assert_eq!(back, (42, "x".to_owned()));
/// ```
pub trait Codec: sealed::Sealed + Debug + Send + Sync + 'static {
    /// The id stored in each envelope.
    fn id(&self) -> u8;

    /// Appends `value`'s encoding to `out`.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented (for example a map with
    /// non-string keys in a format that needs them).
    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>)
        -> Result<(), CodecError>;

    /// Decodes a whole `bytes` as a `T`; trailing bytes are an error.
    ///
    /// # Errors
    ///
    /// When `bytes` is not exactly one valid `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The codecs a cache can be configured with, as stored in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecKind {
    Bincode,
    #[cfg(feature = "postcard")]
    Postcard,
}

impl CodecKind {
    pub(crate) fn of(id: u8) -> Option<CodecKind> {
        match id {
            BINCODE_ID => Some(CodecKind::Bincode),
            #[cfg(feature = "postcard")]
            POSTCARD_ID => Some(CodecKind::Postcard),
            _ => None,
        }
    }

    pub(crate) fn id(self) -> u8 {
        match self {
            CodecKind::Bincode => BINCODE_ID,
            #[cfg(feature = "postcard")]
            CodecKind::Postcard => POSTCARD_ID,
        }
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            CodecKind::Bincode => Bincode.encode(value, out),
            #[cfg(feature = "postcard")]
            CodecKind::Postcard => Postcard.encode(value, out),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            CodecKind::Bincode => Bincode.decode(bytes),
            #[cfg(feature = "postcard")]
            CodecKind::Postcard => Postcard.decode(bytes),
        }
    }
}

const BINCODE_ID: u8 = 1;
#[cfg(feature = "postcard")]
const POSTCARD_ID: u8 = 2;

/// Upper bound on what one decode may claim to allocate, so a corrupt length
/// prefix is an error instead of an allocation failure.
const DECODE_LIMIT: usize = 1 << 30;

/// bincode 2 with its standard configuration (varint integers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl sealed::Sealed for Bincode {}

impl Codec for Bincode {
    fn id(&self) -> u8 {
        BINCODE_ID
    }

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let config = bincode::config::standard();
        bincode::serde::encode_into_std_write(value, out, config)
            .map(drop)
            .map_err(|e| CodecError(format!("bincode could not encode the value: {e}")))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        match bincode::serde::decode_from_slice::<T, _>(bytes, config) {
            Ok((value, read)) if read == bytes.len() => Ok(value),
            Ok((_, read)) => Err(CodecError(format!(
                "bincode value ends after {read} of {} bytes",
                bytes.len()
            ))),
            Err(e) => Err(CodecError(format!(
                "bincode could not decode the value: {e}"
            ))),
        }
    }
}

/// postcard: compact, maintained, a stable wire format.
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl sealed::Sealed for Postcard {}

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    fn id(&self) -> u8 {
        POSTCARD_ID
    }

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let bytes = postcard::to_stdvec(value)
            .map_err(|e| CodecError(format!("postcard could not encode the value: {e}")))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(CodecError(format!(
                "postcard value ends {} bytes early",
                rest.len()
            ))),
            Err(e) => Err(CodecError(format!(
                "postcard could not decode the value: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn user() -> User {
        User {
            id: 7,
            name: "ada".into(),
            tags: vec!["a".into(), "b".into()],
        }
    }

    fn round_trip(kind: CodecKind) {
        let mut bytes = Vec::new();
        kind.encode(&user(), &mut bytes).unwrap();
        assert_eq!(kind.decode::<User>(&bytes).unwrap(), user());
        assert_eq!(CodecKind::of(kind.id()), Some(kind));
    }

    fn rejects_garbage_without_panicking(kind: CodecKind) {
        let mut bytes = Vec::new();
        kind.encode(&user(), &mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(kind.decode::<User>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(kind.decode::<User>(&longer).is_err(), "trailing byte");
        // A length prefix claiming far more than there is.
        assert!(kind
            .decode::<Vec<u64>>(&[0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
            .is_err());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..64);
            let noise: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = kind.decode::<User>(&noise);
            let _ = kind.decode::<Vec<String>>(&noise);
        }
    }

    #[test]
    fn bincode_round_trips_and_rejects_garbage() {
        round_trip(CodecKind::Bincode);
        rejects_garbage_without_panicking(CodecKind::Bincode);
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_round_trips_and_rejects_garbage() {
        round_trip(CodecKind::Postcard);
        rejects_garbage_without_panicking(CodecKind::Postcard);
    }
}
