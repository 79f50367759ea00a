use std::collections::HashMap;

use cachette::cache_many;

#[derive(Clone, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

// `Point` is neither `Eq` nor `Hash`, nor a `KeyPart`.
#[cache_many(key = "point:<points>", ttl = 60, tier = "l1")]
fn distances(points: &[Point]) -> HashMap<Point, f64> {
    let _ = points;
    HashMap::new()
}

fn main() {}
