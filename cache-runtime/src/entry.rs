//! What `{fn}_entry` returns: a call's value with the facts an HTTP
//! response needs to be validated and cached downstream (§4, §5b).

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handle::Cache;
use crate::shape::Shape;
use crate::spec::Site;
use crate::value::ValueCodec;

/// Where the value of an [`Entry`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// This process's in-memory tier held it, fresh (or it was filled there
    /// by another caller's body run while this call waited).
    L1,
    /// The shared tier held it, fresh.
    L2,
    /// This call ran the body.
    Body,
    /// A value past its TTL: served while a refresh runs (`stale`), or in
    /// place of the body's error (`stale_if_error`).
    Stale,
}

/// An entity tag for an [`Entry`]: strong when it is a hash of the encoded
/// value, weak otherwise.
///
/// A strong tag is a hash of the value's bincode encoding, so every process
/// computes the same tag for equal content, and a refill with equal content
/// keeps it. Functions with `tier = "l1"` need no serde, so theirs is weak:
/// it names the fill (it changes on every refill, and differs between
/// processes).
///
/// Displayed in the `ETag` header's form: `"…"` or `W/"…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ETag {
    hash: u64,
    weak: bool,
}

impl ETag {
    /// Whether this is a weak validator (`W/"…"`).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// Whether an `If-None-Match` header value names this tag: `*`, or a
    /// comma-separated list holding it. Compared weakly, as RFC 9110 says
    /// for `If-None-Match`: `W/"x"` and `"x"` match.
    ///
    /// ```
    /// # use cachette::cache;
    /// #[cache(key = "n:<n>", ttl = 60)]
    /// fn square(n: u64) -> u64 { n * n }
    ///
    /// let entry = square_entry(12);
    /// let tag = entry.etag.to_string();
    /// assert!(entry.etag.matches(&tag));
    /// assert!(entry.etag.matches(&format!("\"other\", {tag}")));
    /// assert!(entry.etag.matches("*"));
    /// assert!(!entry.etag.matches("\"other\""));
    /// ```
    pub fn matches(&self, if_none_match: &str) -> bool {
        listed(if_none_match, &self.opaque())
    }

    /// The quoted opaque tag, without the weak prefix.
    fn opaque(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{:016x}\"", self.hash)
    }
}

/// A cached function's value with its entry's facts, as `{fn}_entry`
/// returns it: when it was computed, until when it is fresh, until when it
/// may be served stale, a validator, and where this call found it.
///
/// `cachette::http::Conditional` (feature `axum`) turns one into a
/// response with `ETag`, `Last-Modified`, `Age` and `Cache-Control`, and
/// answers a matching conditional request with `304 Not Modified`.
///
/// # Example
///
/// ```
/// use cachette::{cache, Source};
///
/// #[cache(key = "greeting:<name>", ttl = 60)]
/// fn greeting(name: &str) -> String {
///     format!("hello, {name}")
/// }
///
/// let first = greeting_entry("ada");
/// assert_eq!(first.source, Source::Body);
/// let again = greeting_entry("ada");
/// assert_eq!(again.source, Source::L1);
/// assert_eq!(again.value, "hello, ada");
/// assert_eq!(first.etag, again.etag);
/// assert_eq!(again.max_age().as_secs(), 60);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Entry<R> {
    /// What the function returned.
    pub value: R,
    /// When the body that computed the value finished.
    pub created: SystemTime,
    /// Until when the value is fresh (its TTL's end).
    pub fresh_until: SystemTime,
    /// Until when the value may still be served: `fresh_until` plus the
    /// function's `stale` or `stale_if_error` window, whichever is longer.
    pub stale_until: SystemTime,
    /// The value's validator.
    pub etag: ETag,
    /// Where this call found the value.
    pub source: Source,
    /// When this call read the entry, by the cache's clock.
    pub read_at: SystemTime,
    /// The function's `stale` window (`stale-while-revalidate`).
    pub stale_while_revalidate: Duration,
    /// The function's `stale_if_error` window (`stale-if-error`).
    pub stale_if_error: Duration,
}

impl<R> Entry<R> {
    /// How old the value was when this call read it.
    pub fn age(&self) -> Duration {
        self.read_at
            .duration_since(self.created)
            .unwrap_or(Duration::ZERO)
    }

    /// How long the value was still fresh when this call read it; zero for
    /// a stale value (or an error, which is never stored).
    pub fn max_age(&self) -> Duration {
        self.fresh_until
            .duration_since(self.read_at)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the value was fresh when this call read it.
    pub fn is_fresh(&self) -> bool {
        self.read_at < self.fresh_until
    }

    /// The value, without the facts.
    pub fn into_value(self) -> R {
        self.value
    }

    /// The same entry with its value mapped by `f` (the validator stays).
    pub fn map<U>(self, f: impl FnOnce(R) -> U) -> Entry<U> {
        let (value, facts) = self.split();
        let value = f(value);
        Entry {
            value,
            created: facts.created,
            fresh_until: facts.fresh_until,
            stale_until: facts.stale_until,
            etag: facts.etag,
            source: facts.source,
            read_at: facts.read_at,
            stale_while_revalidate: facts.stale_while_revalidate,
            stale_if_error: facts.stale_if_error,
        }
    }

    /// The value, and the facts without it.
    pub(crate) fn split(self) -> (R, Entry<()>) {
        let Entry {
            value,
            created,
            fresh_until,
            stale_until,
            etag,
            source,
            read_at,
            stale_while_revalidate,
            stale_if_error,
        } = self;
        let facts = Entry {
            value: (),
            created,
            fresh_until,
            stale_until,
            etag,
            source,
            read_at,
            stale_while_revalidate,
            stale_if_error,
        };
        (value, facts)
    }
}

impl<T, E> Entry<Result<T, E>> {
    /// `Ok` with the entry of the success value, or the error: what a
    /// handler of a fallible function returns with `?`.
    pub fn transpose(self) -> Result<Entry<T>, E> {
        let (value, facts) = self.split();
        value.map(|value| facts.map(|()| value))
    }
}

impl<T> Entry<Option<T>> {
    /// `Some` with the entry of the value, or `None` for an absent one.
    pub fn transpose(self) -> Option<Entry<T>> {
        let (value, facts) = self.split();
        value.map(|value| facts.map(|()| value))
    }
}

/// Whether an `If-None-Match` list names `etag` (either may be weak): `*`,
/// or one of its comma-separated tags.
pub(crate) fn listed(if_none_match: &str, etag: &str) -> bool {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// The facts of the entry a call served, as the load path learns them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) source: Source,
    pub(crate) created_ms: u64,
    pub(crate) fresh_until_ms: u64,
}

/// Where one `{fn}_entry` call's load path writes what it served. Used by
/// generated code.
#[derive(Debug, Default)]
pub struct Record {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// What the call returns, as far as known.
    served: Option<Meta>,
    /// The stored value the call falls back on if its body fails.
    fallback: Option<Meta>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Record::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Slots) -> T) -> T {
        f(&mut self.slots.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The call serves a value with these facts (the last one written wins).
    pub(crate) fn served(&self, meta: Meta) {
        self.with(|slots| slots.served = Some(meta));
    }

    /// The call falls back on a stored value with these facts if its body
    /// fails.
    pub(crate) fn fallback(&self, meta: Meta) {
        self.with(|slots| slots.fallback = Some(meta));
    }

    /// The call serves its fallback.
    pub(crate) fn served_fallback(&self) {
        self.with(|slots| {
            slots.served = slots.fallback.map(|meta| Meta {
                source: Source::Stale,
                ..meta
            });
        });
    }

    /// The call ran the body and the result was stored (or not: `ttl`
    /// `None`) at `now_ms`.
    pub(crate) fn ran(&self, now_ms: u64, ttl: Option<Duration>) {
        self.served(Meta {
            source: Source::Body,
            created_ms: now_ms,
            fresh_until_ms: now_ms.saturating_add(ttl.map_or(0, |ttl| ttl.as_millis() as u64)),
        });
    }

    /// What the call served, as far as known.
    #[cfg(feature = "axum")]
    pub(crate) fn meta(&self) -> Option<Meta> {
        self.with(|slots| slots.served)
    }

    /// The call's [`Entry`]. Used by generated code.
    pub fn into_entry<Sh: Shape<R>, R>(
        self,
        site: &'static Site,
        cache: &Cache,
        codec: Option<ValueCodec>,
        value: R,
    ) -> Entry<R> {
        let now_ms = cache.inner.clock.now_millis();
        let slots = self
            .slots
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let meta = slots.served.unwrap_or(Meta {
            source: Source::Body,
            created_ms: now_ms,
            fresh_until_ms: now_ms,
        });
        let freshness = &site.spec.freshness;
        let etag = strong_tag::<Sh, R>(codec, &value).unwrap_or_else(|| ETag {
            hash: digest_parts(site.name().as_bytes(), meta.fresh_until_ms),
            weak: true,
        });
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        Entry {
            value,
            created: at(meta.created_ms),
            fresh_until: at(meta.fresh_until_ms),
            stale_until: at(meta
                .fresh_until_ms
                .saturating_add(freshness.window().as_millis() as u64)),
            etag,
            source: meta.source,
            read_at: at(now_ms),
            stale_while_revalidate: freshness.stale,
            stale_if_error: freshness.stale_if_error,
        }
    }
}

/// The strong tag of a value that has a codec: a hash of its bincode
/// encoding, whatever codec the cache stores it with, so that every
/// process agrees.
fn strong_tag<Sh: Shape<R>, R>(codec: Option<ValueCodec>, ret: &R) -> Option<ETag> {
    let codec = codec?;
    let value = Sh::value_ref(ret)?;
    let mut bytes = Vec::new();
    (codec.encode)(value, crate::codec::CodecKind::Bincode, &mut bytes).ok()?;
    Some(ETag {
        hash: digest(&bytes),
        weak: false,
    })
}

fn digest_parts(name: &[u8], fresh_until_ms: u64) -> u64 {
    let mut bytes = name.to_vec();
    bytes.extend_from_slice(&fresh_until_ms.to_le_bytes());
    digest(&bytes)
}

/// A 64-bit hash that is the same on every platform and in every process
/// (unlike std's seeded hashers): eight bytes a step, then a finalizer.
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    let word = |chunk: &[u8], h: &mut u64| {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        *h = (*h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    };
    for chunk in &mut chunks {
        word(chunk, &mut h);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        word(rest, &mut h);
    }
    // splitmix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_fixed_and_spreads() {
        // Fixed values: a change here changes every ETag users have seen.
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_ne!(digest(b"abcdefgh"), digest(b"abcdefgh\0"));
        assert_ne!(digest(&[0; 8]), digest(&[0; 16]));
        assert_eq!(
            format!("{:016x}", digest(b"hello world")),
            "1ece4df01473a2d3"
        );
    }

    #[test]
    fn if_none_match_lists_compare_weakly() {
        let tag = ETag {
            hash: 0xab,
            weak: false,
        };
        assert_eq!(tag.to_string(), "\"00000000000000ab\"");
        assert!(tag.matches("\"00000000000000ab\""));
        assert!(tag.matches("W/\"00000000000000ab\""));
        assert!(tag.matches(" \"x\" ,  \"00000000000000ab\" "));
        assert!(!tag.matches("\"00000000000000ac\""));
        assert!(!tag.matches(""));
        let weak = ETag {
            hash: 0xab,
            weak: true,
        };
        assert_eq!(weak.to_string(), "W/\"00000000000000ab\"");
        assert!(weak.matches("\"00000000000000ab\""));
    }
}
