use std::collections::HashMap;

use cachette::cache_many;

trait Scores {
    fn scores(&self, ids: &[u64]) -> HashMap<u64, u64>;
}

struct Board;

impl Scores for Board {
    #[cache_many(key = "score:<ids>", ttl = 60)]
    fn scores(&self, ids: &[u64]) -> HashMap<u64, u64> {
        ids.iter().map(|&id| (id, id)).collect()
    }
}

fn main() {}
