//! Warming at start-up: one query for the hottest rows, then one
//! `{fn}_put` of the whole map through a `#[cache_many]` twin of the
//! function, so the first requests after a deploy are hits instead of a
//! burst of single-row queries.
//!
//! ```text
//! cargo run --example warm_up
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cachette::{cache, cache_many};

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

/// The batch twin of `get_user`: same key template, and with `negative_ttl`
/// the same stored value (`Option<User>`), so it shares `get_user`'s entries.
#[cache_many(key = "user:<ids>", ttl = "10m", negative_ttl = "1m")]
fn get_users(ids: &[u64]) -> HashMap<u64, User> {
    ids.iter()
        .filter_map(|&id| query_user(id).map(|user| (id, user)))
        .collect()
}

/// Fills the cache with the `limit` hottest users: one database query, then
/// one `_put` of them all (in Redis too, when the cache has a shared tier, so
/// other processes start warm as well).
fn warm_up(limit: u64) -> Result<usize, cachette::Error> {
    let users = query_hottest_users(limit);
    let count = users.len();
    get_users_put(users.into_iter().map(|user| (user.id, user)).collect())?;
    Ok(count)
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
    // Every key is invalidated before any is stored, so no warmed user is
    // lost: only the cold one ran a query.
    assert_eq!(single, 1, "{single} single-row queries");
    Ok(())
}
