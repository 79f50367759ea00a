//! A `&self` method whose key uses a field of `self`; the companions take
//! `&self` because the key does.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

struct Repo {
    tenant: String,
    runs: AtomicUsize,
}

impl Repo {
    #[cache(key = "<self.tenant>/order:<id>", ttl = 60)]
    async fn order(&self, id: u64) -> Result<String, std::io::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{} #{id}", self.tenant))
    }

    /// Skipping `self`: the result does not depend on the repository, and
    /// the companions are associated functions.
    #[cache(key = "label:<id>", ttl = 60, skip(self))]
    fn label(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("label {id}")
    }
}

#[tokio::main]
async fn main() {
    let acme = Repo {
        tenant: "acme".to_owned(),
        runs: AtomicUsize::new(0),
    };
    let globex = Repo {
        tenant: "globex".to_owned(),
        runs: AtomicUsize::new(0),
    };

    assert_eq!(acme.order(1).await.unwrap(), "acme #1");
    assert_eq!(acme.order(1).await.unwrap(), "acme #1");
    assert_eq!(
        acme.runs.load(Ordering::SeqCst),
        1,
        "the second call is a hit"
    );
    assert_eq!(
        globex.order(1).await.unwrap(),
        "globex #1",
        "tenants do not share entries"
    );

    assert_eq!(acme.order_key(1), "acme/order:1");
    acme.order_invalidate(1).await.unwrap();
    acme.order_put(2, "stored".to_owned()).await.unwrap();
    assert_eq!(acme.order(2).await.unwrap(), "stored");
    assert_eq!(acme.order_refresh(2).await.unwrap(), "acme #2");
    assert_eq!(acme.order_uncached(2).await.unwrap(), "acme #2");

    assert_eq!(acme.label(3), "label 3");
    assert_eq!(globex.label(3), "label 3");
    // `order` ran three times for acme and once for globex; `label` once.
    assert_eq!(
        acme.runs.load(Ordering::SeqCst) + globex.runs.load(Ordering::SeqCst),
        5
    );
    assert_eq!(Repo::label_key(3), "label:3");
    Repo::label_invalidate(3).unwrap();
    Repo::label_put(4, "four".to_owned()).unwrap();
    assert_eq!(acme.label(4), "four");
    assert_eq!(acme.label_refresh(4), "label 4");
    assert_eq!(acme.label_uncached(4), "label 4");
}
