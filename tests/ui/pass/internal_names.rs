//! Parameters named like the generated code's own variables, raw
//! identifiers, a parameter called `value` (the `_put` value is renamed),
//! and destructured or `_` parameters that stay out of the key.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(
    key = "<w>/<cache>/<load>/<site>/<lookup>/<v>/<value>/<r#type>",
    ttl = 60,
    skip(a, b)
)]
fn names(
    w: u8,
    cache: &str,
    load: u8,
    site: u8,
    lookup: u8,
    v: u8,
    value: u8,
    r#type: u8,
    (a, b): (u8, u8),
    _: &str,
) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    u32::from(w + load + site + lookup + v + value + r#type + a + b) + cache.len() as u32
}

#[cache(ttl = 60)]
async fn defaults(__cachette_w: u8, __cachette_cache: u8) -> u8 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    __cachette_w + __cachette_cache
}

#[tokio::main]
async fn main() {
    assert_eq!(names(1, "c", 1, 1, 1, 1, 1, 1, (1, 1), "x"), 10);
    assert_eq!(names(1, "c", 1, 1, 1, 1, 1, 1, (5, 5), "y"), 10);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(names_key(1, "c", 2, 3, 4, 5, 6, 7), "1/c/2/3/4/5/6/7");
    names_put(1, "c", 1, 1, 1, 1, 1, 1, 99).unwrap();
    assert_eq!(names(1, "c", 1, 1, 1, 1, 1, 1, (0, 0), ""), 99);
    names_invalidate(1, "c", 1, 1, 1, 1, 1, 1).unwrap();
    assert_eq!(names_refresh(1, "c", 1, 1, 1, 1, 1, 1, (0, 0), ""), 8);
    assert_eq!(names_uncached(1, "c", 1, 1, 1, 1, 1, 1, (0, 0), ""), 8);

    assert_eq!(defaults(1, 2).await, 3);
    assert_eq!(defaults(1, 2).await, 3);
    // `names` ran three times: the first call, `_refresh` and `_uncached`.
    assert_eq!(RUNS.load(Ordering::SeqCst), 4, "the second call is a hit");
    assert_eq!(defaults_key(1, 2), "defaults:1:2");
}
