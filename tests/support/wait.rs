//! Bounded waits: poll a condition until it holds or a time limit passes.

use std::time::{Duration, Instant};

/// How often [`eventually`] polls.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `f` every [`POLL`] until it holds, for at most `limit`.
pub async fn eventually(limit: Duration, f: impl AsyncFnMut() -> bool) -> bool {
    eventually_every(POLL, limit, f).await
}

/// Polls `f` every `every` until it holds, for at most `limit`: `f` runs at
/// least once, and once more when `limit` has passed.
pub async fn eventually_every(
    every: Duration,
    limit: Duration,
    mut f: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`eventually_every`] for sync code: sleeps the thread between polls.
pub fn eventually_blocking_every(
    every: Duration,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
