//! An associated function (no receiver) returning `Option<Self>`.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Account {
    id: u32,
}

impl Account {
    #[cache(key = "account:<id>", ttl = 60)]
    fn find(id: u32) -> Option<Self> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        (id > 0).then_some(Account { id })
    }

    #[cache(key = "account-async:<id>", ttl = 60)]
    async fn load(id: u32) -> Option<Self> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Some(Account { id })
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(Account::find(1), Some(Account { id: 1 }));
    assert_eq!(Account::find(1), Some(Account { id: 1 }));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");

    // `None` is not cached without `negative_ttl`.
    assert_eq!(Account::find(0), None);
    assert_eq!(Account::find(0), None);
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    assert_eq!(Account::find_key(1), "account:1");
    Account::find_put(5, Some(Account { id: 50 })).unwrap();
    assert_eq!(Account::find(5), Some(Account { id: 50 }));
    Account::find_invalidate(5).unwrap();
    assert_eq!(Account::find(5), Some(Account { id: 5 }));
    assert_eq!(Account::find_refresh(5), Some(Account { id: 5 }));
    assert_eq!(Account::find_uncached(5), Some(Account { id: 5 }));

    RUNS.store(0, Ordering::SeqCst);
    assert_eq!(Account::load(2).await, Some(Account { id: 2 }));
    assert_eq!(Account::load(2).await, Some(Account { id: 2 }));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    Account::load_invalidate(2).await.unwrap();
    Account::load_put(3, Some(Account { id: 30 }))
        .await
        .unwrap();
    assert_eq!(Account::load(3).await, Some(Account { id: 30 }));
    assert_eq!(Account::load_refresh(3).await, Some(Account { id: 3 }));
    assert_eq!(Account::load_uncached(3).await, Some(Account { id: 3 }));
}
