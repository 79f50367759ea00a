//! Without `key`, the key is the function's name and every parameter that
//! is not skipped, in order, separated by `:`.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

struct Db;

#[cache(ttl = 60, skip(db))]
async fn lookup(db: &Db, region: &str, id: u64, active: bool) -> String {
    let _ = db;
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{region}/{id}/{active}")
}

#[cache(ttl = 60)]
fn constant() -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    42
}

#[tokio::main]
async fn main() {
    assert_eq!(lookup(&Db, "eu", 1, true).await, "eu/1/true");
    assert_eq!(lookup(&Db, "eu", 1, true).await, "eu/1/true");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(lookup_key("eu", 1, true), "lookup:eu:1:true");
    // Values are escaped, so they cannot forge another call's key.
    assert_ne!(lookup_key("eu:1", 1, true), lookup_key("eu", 1, true));

    assert_eq!(constant(), 42);
    assert_eq!(constant(), 42);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "the second call is a hit");
    assert_eq!(constant_key(), "constant");
}
