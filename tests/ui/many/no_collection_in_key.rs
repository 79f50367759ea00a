use std::collections::HashMap;

use cachette::cache_many;

// The key names no collection: `id` is one value.
#[cache_many(key = "user:<id>", ttl = 60)]
fn get_users(id: u64) -> HashMap<u64, String> {
    HashMap::from([(id, id.to_string())])
}

// The collection is there but the key leaves it out.
#[cache_many(key = "users", ttl = 60, skip(ids))]
fn get_all(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|id| (*id, id.to_string())).collect()
}

fn main() {}
