//! An async free function returning `Result<Option<T>, E>`, with every
//! companion used.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct DbError;

struct Db;

impl Db {
    async fn fetch_user(&self, id: u64) -> Result<Option<User>, DbError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok((id != 0).then(|| User {
            id,
            name: format!("user {id}"),
        }))
    }
}

#[cache(
    key = "user:<id>",
    ttl = 300,
    jitter = 0.1,
    negative_ttl = 60,
    lock,
    skip(db)
)]
pub async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError> {
    db.fetch_user(id).await
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[tokio::main]
async fn main() {
    let db = Db;
    let first = get_user(&db, 42).await.unwrap();
    let second = get_user(&db, 42).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(runs(), 1, "the second call is a hit");

    // `None` is cached for `negative_ttl`.
    assert_eq!(get_user(&db, 0).await.unwrap(), None);
    assert_eq!(get_user(&db, 0).await.unwrap(), None);
    assert_eq!(runs(), 2);

    assert_eq!(get_user_key(42), "user:42");

    get_user_invalidate(42).await.unwrap();
    get_user(&db, 42).await.unwrap();
    assert_eq!(runs(), 3, "invalidated entries miss");

    let stored = Some(User {
        id: 7,
        name: "put".to_owned(),
    });
    get_user_put(7, stored.clone()).await.unwrap();
    assert_eq!(get_user(&db, 7).await.unwrap(), stored);
    assert_eq!(runs(), 3, "a put value is a hit");

    let refreshed = get_user_refresh(&db, 7).await.unwrap();
    assert_eq!(refreshed.unwrap().name, "user 7");
    assert_eq!(runs(), 4);
    assert_eq!(get_user(&db, 7).await.unwrap().unwrap().name, "user 7");
    assert_eq!(runs(), 4, "refresh stored its result");

    get_user_uncached(&db, 7).await.unwrap();
    get_user_uncached(&db, 7).await.unwrap();
    assert_eq!(runs(), 6, "uncached always runs the body");

    // The wrapper's future can move to another thread, and so can the
    // companions' futures.
    let handle = tokio::spawn(async { get_user(&Db, 42).await.unwrap() });
    assert_eq!(handle.await.unwrap().unwrap().id, 42);
    fn assert_send<F: std::future::Future + Send>(_: &F) {}
    assert_send(&get_user_invalidate(1));
    assert_send(&get_user_put(1, None));
    assert_send(&get_user_refresh(&db, 1));
    assert_send(&get_user_uncached(&db, 1));
}
