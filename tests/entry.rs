//! `{fn}_entry` (DESIGN §4): the value with its entry's facts, for HTTP
//! validators. Where it came from (body, L1, L2, stale), when it was made
//! and until when it is fresh, and an ETag that is the same for equal
//! content, in every process and across refills, and different otherwise.
//! L1 tests run on a manual clock; the shared-tier tests on a real Redis.

mod common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, UNIX_EPOCH};

use cachette::{cache, Source};
use common::Runs;

mod l1 {
    use super::*;
    manual_cache!();

    static CONTENT: AtomicU64 = AtomicU64::new(1);
    static RUNS: Runs = Runs::new();

    #[cache(key = "doc:<id>", ttl = 60, cache = CACHE)]
    async fn doc(id: u64) -> String {
        RUNS.bump();
        format!("doc {id} v{}", CONTENT.load(SeqCst))
    }

    #[cache(key = "page:<id>", ttl = 60, tags = ["pages", "page:<id>"], lock, cache = CACHE)]
    async fn tagged(id: u64) -> Result<Option<u64>, String> {
        Ok(Some(id))
    }

    #[test]
    fn the_future_of_an_async_entry_call_is_send_with_tags_and_lock() {
        fn send<T: Send>(_: &T) {}
        let future = tagged_entry(1);
        send(&future);
        drop(future);
    }

    #[tokio::test]
    async fn the_first_call_runs_the_body_and_the_next_reads_l1_with_the_same_facts() {
        CLOCK.advance(Duration::from_secs(1_000));
        let first = doc_entry(1).await;
        assert_eq!(first.source, Source::Body);
        assert_eq!(first.value, "doc 1 v1");
        assert!(!first.etag.is_weak(), "serde values get a strong tag");
        assert_eq!(first.max_age(), Duration::from_secs(60));
        assert_eq!(first.age(), Duration::ZERO);

        CLOCK.advance(Duration::from_secs(10));
        let again = doc_entry(1).await;
        assert_eq!(again.source, Source::L1);
        assert_eq!(again.value, first.value);
        assert_eq!(again.etag, first.etag);
        assert_eq!(again.fresh_until, first.fresh_until);
        // L1 keeps `created` to the second, which is what Last-Modified has.
        let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(again.created), secs(first.created));
        assert_eq!(again.max_age(), Duration::from_secs(50));
        assert_eq!(again.age().as_secs(), 10, "L1 keeps whole seconds");
        assert!(again.is_fresh());
        // The plain function shares the entry.
        assert_eq!(doc(1).await, "doc 1 v1");
        assert_eq!(RUNS.get(), 1);

        // A refill with equal content keeps the tag; new content changes it.
        doc_invalidate(1).await.unwrap();
        let refilled = doc_entry(1).await;
        assert_eq!(refilled.source, Source::Body);
        assert_eq!(refilled.etag, first.etag);
        CONTENT.store(2, SeqCst);
        doc_invalidate(1).await.unwrap();
        let changed = doc_entry(1).await;
        assert_eq!(changed.value, "doc 1 v2");
        assert_ne!(changed.etag, first.etag);
        assert!(!changed.etag.matches(&first.etag.to_string()));
        assert_eq!(RUNS.get(), 3);
        // Another key with other content has another tag.
        assert_ne!(doc_entry(2).await.etag, changed.etag);
    }
}

mod stale {
    use super::*;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);
    static RUNS: Runs = Runs::new();

    #[cache(key = "quote:<id>", ttl = 10, stale_if_error = 60, cache = CACHE)]
    fn quote(id: u64) -> Result<u64, String> {
        RUNS.bump();
        match FAIL.load(SeqCst) {
            true => Err("upstream down".to_owned()),
            false => Ok(id * 100),
        }
    }

    #[test]
    fn an_error_answered_with_the_stored_value_is_stale_and_an_unanswered_one_is_an_error() {
        CLOCK.advance(Duration::from_secs(1_000));
        let first = quote_entry(1).transpose().unwrap();
        assert_eq!((first.value, first.source), (100, Source::Body));
        assert_eq!(first.stale_if_error, Duration::from_secs(60));
        assert_eq!(
            first.stale_until.duration_since(first.fresh_until).unwrap(),
            Duration::from_secs(60)
        );

        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(20));
        let served = quote_entry(1).transpose().unwrap();
        assert_eq!((served.value, served.source), (100, Source::Stale));
        assert_eq!(served.etag, first.etag);
        assert!(!served.is_fresh());
        assert_eq!(served.max_age(), Duration::ZERO);
        assert_eq!(served.age().as_secs(), 20);

        // Nothing stored for this key: the error comes through.
        assert_eq!(quote_entry(2).transpose().unwrap_err(), "upstream down");
        assert_eq!(RUNS.get(), 3);
    }
}

mod swr {
    use super::*;
    manual_cache!();

    #[cache(key = "feed:<id>", ttl = 10, stale = 30, refresh = "caller", cache = CACHE, tier = "l1")]
    fn feed(id: u64) -> Option<u64> {
        Some(id)
    }

    #[derive(Clone)]
    struct NoSerde(u64);

    #[cache(key = "plain:<id>", ttl = 10, cache = CACHE, tier = "l1")]
    fn plain(id: u64) -> NoSerde {
        NoSerde(id)
    }

    #[test]
    fn l1_only_values_get_a_weak_tag_that_names_the_fill() {
        CLOCK.advance(Duration::from_secs(1_000));
        let first = plain_entry(1);
        assert!(first.etag.is_weak());
        assert!(first.etag.to_string().starts_with("W/\""));
        assert_eq!(plain_entry(1).etag, first.etag);
        assert_eq!(plain_entry(1).value.0, 1);
        plain_invalidate(1).unwrap();
        CLOCK.advance(Duration::from_secs(1));
        assert_ne!(plain_entry(1).etag, first.etag, "a refill is a new fill");
    }

    #[test]
    fn an_absent_value_transposes_to_none_and_windows_are_reported() {
        let entry = feed_entry(7);
        assert_eq!(entry.stale_while_revalidate, Duration::from_secs(30));
        assert_eq!(entry.stale_if_error, Duration::ZERO);
        assert_eq!(entry.transpose().map(|e| e.value), Some(7));
    }
}

mod flights {
    use super::*;
    manual_cache!();

    static RUNS: Runs = Runs::new();

    #[cache(key = "slow:<id>", ttl = 60, lock, cache = CACHE)]
    async fn slow(id: u64) -> u64 {
        RUNS.bump();
        tokio::time::sleep(Duration::from_millis(50)).await;
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_entry_calls_run_the_body_once_and_agree_on_the_facts() {
        let calls: Vec<_> = (0..64)
            .map(|_| tokio::spawn(async { slow_entry(5).await }))
            .collect();
        let mut entries = Vec::new();
        for call in calls {
            entries.push(call.await.unwrap());
        }
        assert_eq!(RUNS.get(), 1);
        let bodies = entries.iter().filter(|e| e.source == Source::Body).count();
        assert_eq!(bodies, 1, "one caller ran the body, the others waited");
        assert!(entries.iter().all(|e| e.etag == entries[0].etag));
        assert!(entries
            .iter()
            .all(|e| e.fresh_until == entries[0].fresh_until));
    }
}

#[cfg(feature = "redis")]
mod shared {
    use super::*;
    use cachette::Cache;
    use support::cache::redis_cache;
    use support::redis::RedisServer;

    static RUNS: Runs = Runs::new();

    #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct User {
        id: u64,
        name: String,
    }

    #[cache(key = "user:<id>", ttl = 300, cache = cache)]
    async fn user(cache: &Cache, id: u64) -> User {
        RUNS.bump();
        User {
            id,
            name: format!("user {id}"),
        }
    }

    #[cache(key = "row:<id>", ttl = 300, tier = "l2", cache = cache)]
    async fn row(cache: &Cache, id: u64) -> u64 {
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_reads_the_entry_from_redis_with_the_same_tag_and_times() {
        let server = RedisServer::start();
        let a = redis_cache(&server.url(), "entries", Duration::from_secs(2), None).await;
        let b = redis_cache(&server.url(), "entries", Duration::from_secs(2), None).await;
        let filled = user_entry(&a, 1).await;
        assert_eq!(filled.source, Source::Body);
        let read = user_entry(&b, 1).await;
        assert_eq!(read.source, Source::L2);
        assert_eq!(read.value, filled.value);
        assert_eq!(read.etag, filled.etag);
        assert_eq!(read.created, filled.created);
        assert_eq!(read.fresh_until, filled.fresh_until);
        assert_eq!(user_entry(&b, 1).await.source, Source::L1);
        assert_eq!(RUNS.get(), 1);

        // A process that fills the same content itself gets the same tag.
        let c = Cache::builder().build_local().unwrap();
        assert_eq!(user_entry(&c, 1).await.etag, filled.etag);

        // A function that skips L1 reads Redis every time.
        assert_eq!(row_entry(&a, 3).await.source, Source::Body);
        assert_eq!(row_entry(&a, 3).await.source, Source::L2);
        assert_eq!(row_entry(&b, 3).await.source, Source::L2);
    }
}
