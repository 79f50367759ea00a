//! A plain (blocking) free function returning `T`, with every companion used.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "square:<n>", ttl = "5m")]
fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

fn main() {
    assert_eq!(square(12), 144);
    assert_eq!(square(12), 144);
    assert_eq!(runs(), 1, "the second call is a hit");

    assert_eq!(square_key(12), "square:12");

    square_invalidate(12).unwrap();
    assert_eq!(square(12), 144);
    assert_eq!(runs(), 2, "invalidated entries miss");

    square_put(3, 10).unwrap();
    assert_eq!(square(3), 10, "a put value is served");
    assert_eq!(runs(), 2);

    assert_eq!(square_refresh(3), 9);
    assert_eq!(square(3), 9, "refresh stored its result");
    assert_eq!(runs(), 3);

    assert_eq!(square_uncached(3), 9);
    assert_eq!(runs(), 4);
}
