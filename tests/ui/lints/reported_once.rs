//! Lints about the body fire once, in `{fn}_uncached` where the body lives:
//! a needless `mut` and a skipped parameter the body never reads are each
//! one error here, not one per copy of the body.

#![deny(unused_variables, unused_mut)]

use cachette::cache;

struct Database;

#[cache(key = "user:<id>", ttl = 60, skip(db))]
fn user(db: &Database, mut id: u64) -> u64 {
    id
}

#[cache(key = "order:<id>", ttl = 60, skip(db))]
async fn order(db: &Database, id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(&Database, 1);
    let _ = order(&Database, 1);
}
