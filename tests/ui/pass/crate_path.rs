//! `crate = "..."`: generated code names the facade through a re-export, as
//! a crate that wraps cachette would.

mod wrapper {
    pub mod reexport {
        pub use ::cachette;
    }
}

use std::sync::atomic::{AtomicUsize, Ordering};

use wrapper::reexport::cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(
    key = "renamed:<id>",
    ttl = 60,
    crate = "crate::wrapper::reexport::cachette"
)]
fn renamed(id: u32) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

fn main() {
    assert_eq!(renamed(1), 1);
    assert_eq!(renamed(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(renamed_key(1), "renamed:1");
    renamed_invalidate(1).unwrap();
    renamed_put(1, 2).unwrap();
    assert_eq!(renamed(1), 2);
    assert_eq!(renamed_refresh(1), 1);
    assert_eq!(renamed_uncached(1), 1);
}
