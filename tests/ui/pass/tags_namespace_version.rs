//! Tags, a namespace, a version, a tier, `l1_ttl` and a name; the key shows
//! the namespace and version, and the tag and namespace invalidate.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct Org {
    id: u32,
}

#[cache(
    key = "member:<org.id>:<user>",
    tags = ["org:<org.id>", "members"],
    namespace = "members",
    version = 2,
    tier = "l1",
    l1_ttl = "30s",
    name = "members.get",
    ttl = "1h"
)]
async fn member(org: &Org, user: u32) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{}/{user}", org.id)
}

#[cache(key = "plain:<n>", tags = ["plain"], version = 3, ttl = 60)]
fn plain(n: u32) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[tokio::main]
async fn main() {
    let org = Org { id: 7 };
    assert_eq!(member(&org, 1).await, "7/1");
    assert_eq!(member(&org, 1).await, "7/1");
    assert_eq!(runs(), 1, "the second call is a hit");

    let key = member_key(&org, 1);
    assert!(key.starts_with("members"), "{key}");
    assert!(key.contains("v2"), "{key}");
    assert!(key.ends_with("member:7:1"), "{key}");

    cachette::invalidate_tag("org:7").await.unwrap();
    assert_eq!(member(&org, 1).await, "7/1");
    assert_eq!(runs(), 2, "the tag invalidated the entry");

    cachette::invalidate_namespace("members").await.unwrap();
    assert_eq!(member(&org, 1).await, "7/1");
    assert_eq!(runs(), 3, "the namespace invalidated the entry");

    member_put(&org, 2, "put".to_owned()).await.unwrap();
    assert_eq!(member(&org, 2).await, "put");
    cachette::invalidate_tag("members").await.unwrap();
    assert_eq!(member(&org, 2).await, "7/2", "a put entry carries the tags");

    assert_eq!(plain(1), 1);
    assert_eq!(plain(1), 1);
    assert_eq!(runs(), 5);
    assert!(plain_key(1).contains("v3"));
    cachette::invalidate_tag_blocking("plain").unwrap();
    assert_eq!(plain(1), 1);
    assert_eq!(runs(), 6);
}
