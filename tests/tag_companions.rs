//! Typed tag companions: `{fn}_tag_{name}` renders a tag from typed
//! arguments (escaped as the function's own tags are), and
//! `{fn}_invalidate_{name}` invalidates it on the cache the function uses,
//! for a free function on the global cache, a method with
//! `cache = self.cache`, a sync function and a tag naming a field of
//! `self`.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::{cache, Cache};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "user:<org>:<id>", ttl = 60, tags = ["org:<org>", "users"], tier = "l1")]
async fn user(id: u64, org: String) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("user {id} of {org}")
}

#[cache(key = "team:<org>:<id>", ttl = 60, tags = ["org:<org>:team:<id>"], tier = "l1")]
fn team(id: u32, org: &str) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("team {id} of {org}")
}

struct Repo {
    cache: Cache,
    tenant: String,
}

impl Repo {
    #[cache(
        key = "<self.tenant>/doc:<author>:<id>",
        ttl = 60,
        tags = ["tenant:<self.tenant>", "author:<author>"],
        cache = self.cache,
        tier = "l1"
    )]
    async fn doc(&self, id: u64, author: u64) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("doc {id} by {author} in {}", self.tenant)
    }
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[tokio::test]
async fn tag_companions_render_and_invalidate_on_the_functions_cache() {
    // Rendered like the function's own tags: `:` inside a value is escaped.
    assert_eq!(user_tag_org("acme:eu".to_owned()), "org:acme%3Aeu");
    assert_eq!(user_tag_users(), "users");
    assert_eq!(team_tag_org_team(7, "acme"), "org:acme:team:7");

    user(1, "acme:eu".to_owned()).await;
    user(1, "acme:eu".to_owned()).await;
    assert_eq!(runs(), 1);
    user_invalidate_org("acme:eu".to_owned()).await.unwrap();
    user(1, "acme:eu".to_owned()).await;
    assert_eq!(runs(), 2, "the typed companion reached the entry");
    user_invalidate_users().await.unwrap();
    user(1, "acme:eu".to_owned()).await;
    assert_eq!(runs(), 3);

    team(7, "acme");
    team_invalidate_org_team(7, "acme").unwrap();
    team(7, "acme");
    assert_eq!(runs(), 5);

    // The method's own cache, not the global one.
    let repo = Repo {
        cache: Cache::local(),
        tenant: "t1".to_owned(),
    };
    repo.doc(1, 9).await;
    cachette::invalidate_tag("author:9").await.unwrap();
    repo.doc(1, 9).await;
    assert_eq!(runs(), 6, "the free function acts on the global cache only");
    repo.doc_invalidate_author(9).await.unwrap();
    repo.doc(1, 9).await;
    assert_eq!(runs(), 7, "the companion acts on `self.cache`");
    assert_eq!(repo.doc_tag_tenant(), "tenant:t1");
    repo.doc_invalidate_tenant().await.unwrap();
    repo.doc(1, 9).await;
    assert_eq!(runs(), 8);
}

#[derive(cachette::KeyPart)]
struct Org {
    name: String,
}

#[test]
fn the_tag_macro_renders_like_a_functions_tags() {
    let org = "acme:eu".to_owned();
    assert_eq!(cachette::tag!("org:<org>"), user_tag_org(org.clone()));
    assert_eq!(cachette::tag!("org:<o>", o = "acme:eu"), "org:acme%3Aeu");
    assert_eq!(
        cachette::tag!("org:<o>:team:<t>", o = "acme", t = 7),
        team_tag_org_team(7, "acme")
    );
    let named = Org { name: "a/b".into() };
    assert_eq!(cachette::tag!("org/<named.name>"), "org/a%2Fb");
    let pair = (1u8, "x");
    assert_eq!(cachette::tag!("p:<pair.0>:<pair.1>"), "p:1:x");
    assert_eq!(cachette::tag!("users"), "users");
}

#[cache(key = "gen:<id>", ttl = 60, tags = ["gen:<id>"], tier = "l1")]
fn generic_arg<T: cachette::KeyPart>(id: T) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    7
}

#[cache(key = "def:<T>:<id>", ttl = 60, tags = ["def:<id>"], tier = "l1")]
fn generic_return<T: Default + Clone + Send + Sync + 'static>(id: u32) -> T {
    let _ = id;
    T::default()
}

#[test]
fn tag_companions_of_generic_functions() {
    assert_eq!(generic_arg_tag_gen("a:b"), "gen:a%3Ab");
    generic_arg_invalidate_gen(5u8).unwrap();
    assert_eq!(generic_return_tag_def::<String>(3), "def:3");
    assert_eq!(generic_return::<String>(3), "");
    generic_return_invalidate_def::<String>(3).unwrap();
}
