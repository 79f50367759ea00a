use std::collections::HashMap;

use cachette::cache_many;

struct Report {
    id: u64,
}

// `Report` is not `Clone`, nor serde: it cannot be a cached value.
#[cache_many(key = "report:<ids>", ttl = 60)]
fn reports(ids: &[u64]) -> HashMap<u64, Report> {
    ids.iter().map(|&id| (id, Report { id })).collect()
}

fn main() {
    let _ = reports(&[1]).get(&1).map(|report| report.id);
}
