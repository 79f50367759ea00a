use std::collections::HashMap;

use cachette::cache_many;

#[cache_many(key = "user:<orgs>:<ids>", ttl = 60)]
fn get_users(orgs: &[u64], ids: Vec<u64>) -> HashMap<u64, String> {
    let _ = orgs;
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

fn main() {}
