//! A peer's hand-written decode of an entry as cachette stores it in Redis,
//! for the benches that read Redis directly. Include it with
//! `#[path = "common/entry.rs"] mod entry;`.

use std::time::{SystemTime, UNIX_EPOCH};

use cache_runtime::{Bincode, Codec};
use serde::de::DeserializeOwned;

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Checks the format byte and freshness in the envelope's header, skips
/// its tags, then decodes the payload with bincode.
pub fn decode_entry<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    const FORMAT_V1: u8 = 0xCA;
    // format, codec, flags, created, fresh until, stale until, compute,
    // clear generation, key generation.
    const FIXED: usize = 3 + 8 + 8 + 8 + 4 + 8 + 8;
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    if bytes.first() != Some(&FORMAT_V1) {
        return None;
    }
    let fresh_until = u64::from_le_bytes(bytes.get(11..19)?.try_into().ok()?);
    if now_millis() >= fresh_until {
        return None;
    }
    let mut at = FIXED;
    let tags = u16_at(at)?;
    at += 2;
    for _ in 0..tags {
        at += 2 + usize::from(u16_at(at)?) + 8;
    }
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    Bincode.decode(bytes.get(at..at + len)?).ok()
}
