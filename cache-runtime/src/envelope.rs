//! The form of an entry in the shared tier.
//!
//! ```text
//! format   u8    0xCA: this layout, version 1
//! codec    u8    the payload's codec id
//! flags    u8    bit 0: the value is absent (negative caching);
//!                bit 1: the payload is compressed (its length u32, then LZ4)
//! created        u64 ms since the Unix epoch, when the body finished
//! fresh_until    u64 ms, served as fresh before this
//! stale_until    u64 ms, kept (for stale serving) until this
//! compute        u32 µs the body took (for probabilistic early refresh)
//! clear_gen      u64 the cache-wide generation when the load began
//! key_gen        u64 the key's invalidation generation when the load began
//! tag count      u16, then per tag: name length u16, name (UTF-8), generation u64
//! payload length u32, then exactly that many payload bytes
//! ```
//!
//! All integers are little-endian. Decoding checks every length against what
//! is there; anything else (another format, a truncated or padded value, a
//! value larger than the configured maximum) is an error that the read path
//! treats as a miss, never a panic (G9).

use std::fmt;

/// The first byte of every envelope.
pub(crate) const FORMAT_V1: u8 = 0xCA;

const FLAG_ABSENT: u8 = 1;

/// An entry's facts, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) codec: u8,
    pub(crate) absent: bool,
    /// The payload is compressed ([`crate::compress`]). Set by `encode`
    /// itself, from `compress_above`.
    pub(crate) compressed: bool,
    pub(crate) created_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) stale_until_ms: u64,
    pub(crate) compute_us: u32,
    pub(crate) clear_generation: u64,
    pub(crate) key_generation: u64,
    pub(crate) tags: Vec<(String, u64)>,
}

/// Why bytes read from the shared tier are not a usable envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeError {
    TooLarge { len: usize, max: usize },
    UnknownFormat(u8),
    Truncated,
    TrailingBytes(usize),
    BadTagName,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::TooLarge { len, max } => {
                write!(f, "value of {len} bytes is over the {max}-byte maximum")
            }
            EnvelopeError::UnknownFormat(b) => write!(f, "unknown envelope format {b:#04x}"),
            EnvelopeError::Truncated => f.write_str("envelope is truncated"),
            EnvelopeError::TrailingBytes(n) => write!(f, "{n} bytes after the payload"),
            EnvelopeError::BadTagName => f.write_str("tag name is not UTF-8"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Writes `header`, then lets `payload` append the payload bytes, which are
/// compressed when they are longer than `compress_above` and compression
/// makes them shorter.
pub(crate) fn encode<E>(
    header: &Header,
    compress_above: Option<usize>,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_V1);
    out.push(header.codec);
    out.push(if header.absent { FLAG_ABSENT } else { 0 });
    out.extend_from_slice(&header.created_ms.to_le_bytes());
    out.extend_from_slice(&header.fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&header.stale_until_ms.to_le_bytes());
    out.extend_from_slice(&header.compute_us.to_le_bytes());
    out.extend_from_slice(&header.clear_generation.to_le_bytes());
    out.extend_from_slice(&header.key_generation.to_le_bytes());
    let tags = &header.tags[..header.tags.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for (name, generation) in tags {
        let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&generation.to_le_bytes());
    }
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let payload_start = out.len();
    payload(&mut out)?;
    if compress_above.is_some_and(|above| out.len() - payload_start > above) {
        if let Some(compressed) = compress_payload(&out[payload_start..]) {
            out.truncate(payload_start);
            out.extend_from_slice(&compressed);
            out[2] |= crate::compress::FLAG;
        }
    }
    let payload_len = (out.len() - payload_start) as u32;
    out[length_at..payload_start].copy_from_slice(&payload_len.to_le_bytes());
    Ok(out)
}

/// Reads an envelope, returning its header and payload.
pub(crate) fn decode(bytes: &[u8], max_len: usize) -> Result<(Header, &[u8]), EnvelopeError> {
    if bytes.len() > max_len {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let mut r = Reader(bytes);
    let format = r.u8()?;
    if format != FORMAT_V1 {
        return Err(EnvelopeError::UnknownFormat(format));
    }
    let codec = r.u8()?;
    let flags = r.u8()?;
    let created_ms = r.u64()?;
    let fresh_until_ms = r.u64()?;
    let stale_until_ms = r.u64()?;
    let compute_us = r.u32()?;
    let clear_generation = r.u64()?;
    let key_generation = r.u64()?;
    let tag_count = r.u16()?;
    let mut tags = Vec::with_capacity(usize::from(tag_count).min(64));
    for _ in 0..tag_count {
        let len = usize::from(r.u16()?);
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| EnvelopeError::BadTagName)?;
        tags.push((name.to_owned(), r.u64()?));
    }
    let payload_len = r.u32()? as usize;
    let payload = r.take(payload_len)?;
    if !r.0.is_empty() {
        return Err(EnvelopeError::TrailingBytes(r.0.len()));
    }
    let header = Header {
        codec,
        absent: flags & FLAG_ABSENT != 0,
        compressed: flags & crate::compress::FLAG != 0,
        created_ms,
        fresh_until_ms,
        stale_until_ms,
        compute_us,
        clear_generation,
        key_generation,
        tags,
    };
    Ok((header, payload))
}

#[cfg(feature = "compression")]
fn compress_payload(payload: &[u8]) -> Option<Vec<u8>> {
    crate::compress::compress(payload)
}

#[cfg(not(feature = "compression"))]
fn compress_payload(_: &[u8]) -> Option<Vec<u8>> {
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            codec: 1,
            absent: true,
            compressed: false,
            created_ms: 1_700_000_000_000,
            fresh_until_ms: 1_700_000_300_000,
            stale_until_ms: 1_700_000_360_000,
            compute_us: 12,
            clear_generation: 3,
            key_generation: 9,
            tags: vec![("org:7".into(), 2), ("users".into(), 0)],
        }
    }

    fn encoded() -> Vec<u8> {
        encode::<()>(&header(), Some(0), |out| {
            out.extend_from_slice(b"payload");
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn an_envelope_round_trips() {
        let bytes = encoded();
        let (h, payload) = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(h, header());
        assert_eq!(payload, b"payload");
    }

    #[test]
    fn truncated_padded_foreign_or_oversized_bytes_are_errors() {
        let bytes = encoded();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(
            decode(&padded, 1 << 20).unwrap_err(),
            EnvelopeError::TrailingBytes(1)
        );
        assert_eq!(
            decode(b"hello", 1 << 20).unwrap_err(),
            EnvelopeError::UnknownFormat(b'h')
        );
        assert!(matches!(
            decode(&bytes, 10).unwrap_err(),
            EnvelopeError::TooLarge { .. }
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(11);
        let good = encoded();
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            // Flip a few bytes, or make up a value from scratch.
            if rng.bool() {
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = rng.u8(..);
                }
            } else {
                bytes = (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect();
                if rng.bool() && !bytes.is_empty() {
                    bytes[0] = FORMAT_V1;
                }
            }
            let _ = decode(&bytes, 1 << 20);
        }
    }

    #[test]
    fn a_long_payload_is_compressed_only_above_the_threshold_and_only_with_the_feature() {
        let long = b"{\"name\":\"a user\",\"active\":true}".repeat(100);
        let write = |above| {
            encode::<()>(&header(), above, |out| {
                out.extend_from_slice(&long);
                Ok(())
            })
            .unwrap()
        };
        let plain = write(None);
        let (h, payload) = decode(&plain, usize::MAX).unwrap();
        assert!(!h.compressed);
        assert_eq!(payload, &long[..]);
        let (h, _) = decode(&write(Some(long.len())), usize::MAX).unwrap();
        assert!(!h.compressed, "not above the threshold");

        let stored = write(Some(1024));
        let (h, payload) = decode(&stored, usize::MAX).unwrap();
        assert_eq!(h.compressed, cfg!(feature = "compression"));
        if h.compressed {
            assert!(stored.len() < long.len() / 4, "{} bytes", stored.len());
            assert_eq!(
                crate::compress::decompress(payload).as_deref(),
                Some(&long[..])
            );
        }
        assert_eq!(h.tags, header().tags, "the header is kept as it was");
    }
}
