//! A parameter that picks the cache (`cache = &self.cache`, `cache =
//! pick(store)`) may also be in `skip(...)`: it is not in the key either
//! way, and the companions take it, since they need the cache.

use cachette::{cache, Cache};
use std::sync::atomic::{AtomicU32, Ordering};

static RUNS: AtomicU32 = AtomicU32::new(0);

struct Service {
    cache: Cache,
}

impl Service {
    #[cache(key = "get:<id>", ttl = 60, cache = &self.cache, skip(self), tier = "l1")]
    fn get(&self, id: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        id
    }
}

#[cache(key = "with:<id>", ttl = 60, cache = pick(store), skip(store), tier = "l1")]
fn with(store: &Cache, id: u32) -> u32 {
    let _ = store;
    RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

fn pick(cache: &Cache) -> &Cache {
    cache
}

fn main() {
    let service = Service {
        cache: Cache::local(),
    };
    assert_eq!(service.get(1), 1);
    assert_eq!(service.get(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert_eq!(service.get_key(1), "get:1");
    service.get_invalidate(1).unwrap();
    assert_eq!(service.get(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "the invalidation reached the service's cache");

    let store = Cache::local();
    assert_eq!(with(&store, 2), 2);
    assert_eq!(with(&store, 2), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    with_invalidate(&store, 2).unwrap();
    with_put(&store, 2, 20).unwrap();
    assert_eq!(with(&store, 2), 20);
}
