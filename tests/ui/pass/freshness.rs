//! Every freshness argument on every function shape compiles and caches:
//! async and sync free functions (refreshed in the background by default),
//! methods (refreshed by the caller), a generic function, each tier, and
//! an async body that cannot move to another task, which falls back to a
//! caller-run refresh.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn run() -> usize {
    RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

#[cache(key = "a:<id>", ttl = 60, stale = 30)]
async fn stale_async(id: u64) -> u64 {
    run();
    id
}

#[cache(key = "s:<id>", ttl = 60, stale = "30s", refresh = "caller", tier = "l1")]
fn stale_sync_caller(id: u64) -> u64 {
    run();
    id
}

#[cache(key = "e:<id>", ttl = 60, stale_if_error = "10m", tier = "l2")]
async fn fail_safe(id: u64) -> Result<Option<u64>, std::io::Error> {
    run();
    Ok(Some(id))
}

#[cache(key = "x:<id>", ttl = 60, early = 1.0, refresh_ahead = 5)]
fn early_sync(id: u64) -> Result<u64, String> {
    run();
    Ok(id)
}

/// Holds an `Rc` across an await: the future is not `Send`, so the
/// background refresh falls back to the caller.
#[cache(key = "r:<id>", ttl = 60, stale = 30, refresh = "background", tier = "l1")]
async fn not_send(id: u64) -> u64 {
    let shared = Rc::new(id);
    tokio::task::yield_now().await;
    *shared
}

#[cache(key = "g:<id>", ttl = 60, stale = 30)]
fn generic<T: cachette::KeyPart>(id: T) -> u32 {
    let _ = id;
    run() as u32
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Repo {
    base: u64,
}

impl Repo {
    #[cache(key = "m:<id>", ttl = 60, stale = 30, stale_if_error = 60, skip(self))]
    async fn method(&self, id: u64) -> Result<u64, String> {
        Ok(self.base + id)
    }

    #[cache(key = "mm:<id>", ttl = 60, early = 2.5, skip(self), tier = "l1")]
    fn method_mut(&mut self, id: u64) -> u64 {
        self.base += 1;
        id
    }

    #[cache(key = "assoc:<id>", ttl = 60, refresh_ahead = "10s", refresh = "background")]
    async fn associated(id: u64) -> Option<Self> {
        Some(Repo { base: id })
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(stale_async(1).await, 1);
    assert_eq!(stale_async(1).await, 1);
    assert_eq!(stale_sync_caller(2), 2);
    assert_eq!(fail_safe(3).await.unwrap(), Some(3));
    assert_eq!(early_sync(4), Ok(4));
    assert_eq!(not_send(5).await, 5);
    assert_eq!(generic(6u8), generic(6u8));
    let mut repo = Repo { base: 100 };
    assert_eq!(repo.method(7).await, Ok(107));
    assert_eq!(repo.method_mut(8), 8);
    assert_eq!(Repo::associated(9).await.map(|r| r.base), Some(9));
    // Companions keep their meaning: `_refresh` runs the body now.
    let before = RUNS.load(Ordering::SeqCst);
    assert_eq!(stale_async_refresh(1).await, 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), before + 1);
}
