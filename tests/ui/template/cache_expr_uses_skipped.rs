use cachette::{cache, Cache};

struct Service {
    cache: Cache,
}

impl Service {
    #[cache(key = "get:<id>", ttl = 60, cache = &self.cache, skip(self))]
    fn get(&self, id: u32) -> u32 {
        id
    }
}

#[cache(key = "with:<id>", ttl = 60, cache = pick(store), skip(store))]
fn with(store: &Cache, id: u32) -> u32 {
    let _ = store;
    id
}

fn pick(cache: &Cache) -> &Cache {
    cache
}

fn main() {}
