//! `cache = &self.cache`: the receiver picks the cache, so it needs no place
//! in the key and the companions take `&self`. Works for `&self`, `&mut self`
//! and a parameter that picks the cache.

use cachette::{cache, Cache};

struct Service {
    cache: Cache,
    runs: u32,
}

impl Service {
    #[cache(key = "get:<id>", ttl = 60, cache = &self.cache)]
    async fn get(&self, id: u32) -> u32 {
        id + 1
    }

    #[cache(key = "bump:<id>", ttl = 60, cache = &self.cache)]
    fn bump(&mut self, id: u32) -> u32 {
        self.runs += 1;
        id + self.runs
    }

    #[cache(key = "bump-async:<id>", ttl = 60, cache = &self.cache)]
    async fn bump_async(&mut self, id: u32) -> u32 {
        self.runs += 1;
        id + self.runs
    }
}

#[cache(key = "with:<id>", ttl = 60, cache = cache)]
fn with(cache: &Cache, id: u32) -> u32 {
    id
}

fn hits(cache: &Cache, name: &str) -> u64 {
    cache
        .stats()
        .function(name)
        .map_or(0, |stats| stats.l1_hits)
}

#[tokio::main]
async fn main() {
    let mut service = Service {
        cache: Cache::local(),
        runs: 0,
    };
    let other = Service {
        cache: Cache::local(),
        runs: 0,
    };
    let get = concat!(module_path!(), "::Service::get");

    assert_eq!(service.get(1).await, 2);
    assert_eq!(service.get(1).await, 2);
    assert_eq!(hits(&service.cache, get), 1, "the second call is a hit");
    assert_eq!(other.get(1).await, 2);
    assert_eq!(
        hits(&other.cache, get),
        0,
        "another service has its own cache"
    );

    assert_eq!(service.get_key(1), "get:1");
    service.get_put(3, 30).await.unwrap();
    assert_eq!(service.get(3).await, 30);
    service.get_invalidate(3).await.unwrap();
    assert_eq!(service.get_refresh(3).await, 4);
    assert_eq!(service.get_uncached(3).await, 4);

    assert_eq!(service.bump(10), 11);
    assert_eq!(service.bump(10), 11);
    assert_eq!(service.runs, 1, "the second call is a hit");
    assert_eq!(service.bump_refresh(10), 12);
    service.bump_put(10, 0).unwrap();
    assert_eq!(service.bump(10), 0);
    service.bump_invalidate(10).unwrap();
    assert_eq!(service.bump_uncached(10), 13);

    assert_eq!(service.bump_async(20).await, 24);
    assert_eq!(service.bump_async(20).await, 24);
    assert_eq!(service.runs, 4, "the second call is a hit");
    assert_eq!(service.bump_async_refresh(20).await, 25);
    service.bump_async_invalidate(20).await.unwrap();
    service.bump_async_put(20, 1).await.unwrap();
    assert_eq!(service.bump_async(20).await, 1);
    assert_eq!(service.bump_async_key(20), "bump-async:20");

    let local = Cache::local();
    assert_eq!(with(&local, 5), 5);
    assert_eq!(with(&local, 5), 5);
    assert_eq!(
        hits(&local, concat!(module_path!(), "::with")),
        1,
        "the second call is a hit"
    );
    assert_eq!(with_key(&local, 5), "with:5");
}
