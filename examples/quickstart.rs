//! The smallest cachette program: cache-aside, a hit, an invalidation.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

/// How many times the body of `square` really ran.
static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// An expensive computation, cached for five minutes under `square:<n>`.
#[cache(key = "square:<n>", ttl = "5m")]
fn square(n: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

fn main() -> Result<(), cachette::Error> {
    let first = square(12);
    println!(
        "square(12) = {first}  body runs: {}  (miss: the body ran)",
        runs()
    );

    let second = square(12);
    println!(
        "square(12) = {second}  body runs: {}  (hit: served from the cache)",
        runs()
    );

    square_invalidate(12)?;
    println!("square_invalidate(12) dropped the key {:?}", square_key(12));

    let third = square(12);
    println!(
        "square(12) = {third}  body runs: {}  (miss again after invalidation)",
        runs()
    );
    Ok(())
}

fn runs() -> usize {
    BODY_RUNS.load(Ordering::SeqCst)
}
