//! Doc comments and other attributes stay on the function; the companions
//! carry docs of their own (checked by `deny(missing_docs)`), the `#[cfg]`s
//! and the lint attributes their copied body needs.

#![deny(missing_docs, unused_must_use, unfulfilled_lint_expectations)]

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A documented, public, cached function.
#[cache(key = "doc:<n>", ttl = 60)]
#[must_use]
#[inline]
#[allow(clippy::needless_return)]
#[cfg(not(any()))]
pub fn documented(n: u32) -> u32 {
    #![allow(unused_variables)]
    let unused = 1;
    RUNS.fetch_add(1, Ordering::SeqCst);
    return n + 1;
}

/// An expectation about the body is met once, where the body is.
#[cache(key = "expected:<n>", ttl = 60)]
#[expect(unused_variables)]
pub fn expected(n: u32) -> u32 {
    let unused = n;
    n
}

/// Excluded by `#[cfg]`: neither it nor its companions exist.
#[cache(key = "gone:<n>", ttl = 60)]
#[cfg(any())]
pub fn gone(n: u32) -> u32 {
    n
}

/// Used only through some companions; the rest must not warn as unused.
#[cache(key = "private:<n>", ttl = 60)]
#[deprecated = "still callable"]
fn private(n: u32) -> u32 {
    n
}

/// Would clash with the companion if `gone`'s `#[cfg]` did not also remove
/// its companions.
fn gone_key() -> &'static str {
    "not a companion"
}

#[allow(deprecated)]
fn main() {
    let _ = documented(1);
    let _ = documented(1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(documented_key(1), "doc:1");
    documented_invalidate(1).unwrap();
    documented_put(1, 5).unwrap();
    assert_eq!(documented(1), 5);
    assert_eq!(documented_refresh(1), 2);
    assert_eq!(documented_uncached(1), 2);
    assert_eq!(gone_key(), "not a companion");

    assert_eq!(expected(4), 4);
    assert_eq!(private(3), 3);
    assert_eq!(private_key(3), "private:3");
}
