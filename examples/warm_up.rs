//! Warming at start-up: one query for the hottest rows, then `{fn}_put`
//! for each, so the first requests after a deploy are hits instead of a
//! burst of single-row queries.
//!
//! ```text
//! cargo run --example warm_up
//! ```

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cachette::cache;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// The database: how many queries it answered, of each kind.
static SINGLE_ROW_QUERIES: AtomicUsize = AtomicUsize::new(0);
static BULK_QUERIES: AtomicUsize = AtomicUsize::new(0);

/// `SELECT .. WHERE id = ?`
fn query_user(id: u64) -> Option<User> {
    SINGLE_ROW_QUERIES.fetch_add(1, SeqCst);
    (id < 10_000).then(|| User {
        id,
        name: format!("user {id}"),
    })
}

/// `SELECT .. ORDER BY visits DESC LIMIT ?`: the hottest users, in one query.
fn query_hottest_users(limit: u64) -> Vec<User> {
    BULK_QUERIES.fetch_add(1, SeqCst);
    (0..limit)
        .map(|id| User {
            id,
            name: format!("user {id}"),
        })
        .collect()
}

#[cache(key = "user:<id>", ttl = "10m", negative_ttl = "1m")]
fn get_user(id: u64) -> Option<User> {
    query_user(id)
}

/// Fills the cache with the `limit` hottest users: one database query, then
/// one `_put` each (in Redis too, when the cache has a shared tier, so other
/// processes start warm as well).
fn warm_up(limit: u64) -> Result<usize, cachette::Error> {
    let users = query_hottest_users(limit);
    for user in &users {
        get_user_put(user.id, Some(user.clone()))?;
    }
    Ok(users.len())
}

fn main() -> Result<(), cachette::Error> {
    // `WARM=2000 cargo run --example warm_up` warms more.
    let limit = std::env::var("WARM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let warmed = warm_up(limit)?;
    // The first requests after start-up: the hot users, and one cold one.
    for id in 0..warmed as u64 {
        assert_eq!(get_user(id).map(|u| u.id), Some(id));
    }
    assert_eq!(
        get_user(9_999).map(|u| u.id),
        Some(9_999),
        "a cold user is a miss"
    );
    let single = SINGLE_ROW_QUERIES.load(SeqCst);
    println!(
        "warmed {warmed} users with {} bulk query; {} requests then ran {single} single-row queries",
        BULK_QUERIES.load(SeqCst),
        warmed + 1,
    );
    // Each `_put` invalidates its key's slot (one of 4,096) first, which
    // also drops a hot user warmed before it in the same slot: a few of 500.
    if limit == 500 {
        assert!(single <= 1 + warmed / 20, "{single} single-row queries");
    }
    Ok(())
}
