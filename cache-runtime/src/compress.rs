//! Compression of large values in the shared tier (feature `compression`).
//!
//! A payload longer than `compress_above` is stored as its length (`u32`,
//! little-endian) and an LZ4 block, with a flag in the envelope, when that
//! is shorter. Reading undoes it; a build without the feature reads a
//! compressed entry as a miss, and so does one whose bytes do not
//! decompress to the length they declare.

/// The envelope flag of a compressed payload.
pub(crate) const FLAG: u8 = 2;

/// LZ4 expands at most about 255 times: a declared length beyond that is
/// corrupt, and is refused before anything is allocated for it.
const MAX_RATIO: usize = 255;

/// `payload` compressed, when that makes it shorter.
#[cfg(feature = "compression")]
pub(crate) fn compress(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(4 + lz4_flex::block::get_maximum_output_size(payload.len()));
    out.extend_from_slice(&len.to_le_bytes());
    out.resize(
        4 + lz4_flex::block::get_maximum_output_size(payload.len()),
        0,
    );
    let written = lz4_flex::block::compress_into(payload, &mut out[4..]).ok()?;
    out.truncate(4 + written);
    (out.len() < payload.len()).then_some(out)
}

/// The payload `stored` was compressed from; `None` when it is corrupt, or
/// when this build cannot decompress.
pub(crate) fn decompress(stored: &[u8]) -> Option<Vec<u8>> {
    #[cfg(feature = "compression")]
    {
        let (len, block) = stored.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > block.len().saturating_mul(MAX_RATIO).saturating_add(16) {
            return None;
        }
        let out = lz4_flex::block::decompress(block, len).ok()?;
        (out.len() == len).then_some(out)
    }
    #[cfg(not(feature = "compression"))]
    {
        let _ = (stored, MAX_RATIO);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"name\":\"user {i}\",\"active\":{}}},",
                    i.is_multiple_of(3)
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[cfg(feature = "compression")]
    #[test]
    fn a_compressed_payload_comes_back_as_it_was() {
        let payload = json_like(64 * 1024);
        let stored = compress(&payload).expect("JSON compresses");
        assert!(stored.len() < payload.len() / 2, "{} bytes", stored.len());
        assert_eq!(decompress(&stored).as_deref(), Some(&payload[..]));
    }

    #[cfg(feature = "compression")]
    #[test]
    fn a_payload_that_does_not_shrink_is_kept_as_it_is() {
        let noise: Vec<u8> = (0..4096).map(|_| fastrand::u8(..)).collect();
        assert!(compress(&noise).is_none());
    }

    #[cfg(feature = "compression")]
    #[test]
    fn corrupt_or_lying_bytes_are_refused_without_a_panic() {
        let payload = json_like(8 * 1024);
        let stored = compress(&payload).unwrap();
        for cut in [0, 3, 4, 10, stored.len() - 1] {
            assert_eq!(decompress(&stored[..cut]), None, "cut at {cut}");
        }
        let mut huge = stored.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decompress(&huge), None, "a length no block can reach");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let mut bytes = stored.clone();
            let at = rng.usize(4..bytes.len());
            bytes[at] ^= rng.u8(1..);
            // Either refused, or some bytes of the declared length: never a panic.
            if let Some(out) = decompress(&bytes) {
                assert_eq!(out.len(), payload.len());
            }
        }
    }

    #[cfg(not(feature = "compression"))]
    #[test]
    fn a_build_without_the_feature_reads_a_compressed_payload_as_nothing() {
        let mut stored = (64u32 * 1024).to_le_bytes().to_vec();
        stored.extend_from_slice(&json_like(100));
        assert_eq!(decompress(&stored), None);
    }
}
