//! `cache = EXPR` with a `LazyLock<Cache>` static; the function's stats are
//! kept on that cache.

use std::sync::LazyLock;

use cachette::{cache, Cache};

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::local);

#[cache(key = "item:<id>", ttl = 60, cache = CACHE, name = "items.get")]
async fn item(id: u32) -> u32 {
    id * 10
}

#[cache(key = "sync-item:<id>", ttl = 60, cache = &*CACHE)]
fn sync_item(id: u32) -> u32 {
    id * 10
}

#[tokio::main]
async fn main() {
    assert_eq!(item(1).await, 10);
    assert_eq!(item(1).await, 10);
    let stats = CACHE.stats();
    let stats = stats
        .function("items.get")
        .expect("stats on the given cache");
    assert_eq!(stats.body_runs, 1);
    assert_eq!(stats.l1_hits, 1, "the second call is a hit");

    item_put(2, 5).await.unwrap();
    assert_eq!(item(2).await, 5);
    item_invalidate(2).await.unwrap();
    assert_eq!(item(2).await, 20);
    assert_eq!(item_refresh(2).await, 20);
    assert_eq!(item_uncached(2).await, 20);

    assert_eq!(sync_item(1), 10);
    assert_eq!(sync_item(1), 10);
    let stats = CACHE.stats();
    let stats = stats
        .function(concat!(module_path!(), "::sync_item"))
        .expect("named after the module path by default");
    assert_eq!(
        (stats.body_runs, stats.l1_hits),
        (1, 1),
        "the second call is a hit"
    );
}
