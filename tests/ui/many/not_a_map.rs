use std::collections::HashMap;

use cachette::cache_many;

// A `Vec` is not keyed by the element.
#[cache_many(key = "user:<ids>", ttl = 60)]
fn get_users(ids: &[u64]) -> Vec<String> {
    ids.iter().map(u64::to_string).collect()
}

// A map keyed by something else.
#[cache_many(key = "name:<ids>", ttl = 60)]
fn get_names(ids: &[u64]) -> Result<HashMap<String, u64>, std::io::Error> {
    Ok(ids.iter().map(|id| (id.to_string(), *id)).collect())
}

// No return type at all.
#[cache_many(key = "touch:<ids>", ttl = 60)]
fn touch(ids: &[u64]) {
    let _ = ids;
}

/// Keyed by a type that is not the element's, behind a name.
struct Code(u64);

#[cache_many(key = "code:<ids>", ttl = 60, tier = "l1")]
fn get_codes(ids: &[u64]) -> HashMap<Code, u64> {
    let _ = ids;
    HashMap::new()
}

fn main() {}
