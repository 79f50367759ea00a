//! What the cache tells `tracing` (feature `tracing`), seen by a recording
//! subscriber of the test's own: a `debug` span `cachette.load` around each
//! body run (none on a hit), a `warn` event for a stored value served
//! because the body failed, and, against a real Redis that is killed and
//! restarted, rate-limited `warn` events for shared-tier errors, the
//! breaker opening and closing, and an `info` event when the invalidation
//! channel reconnects.

#![cfg(feature = "tracing")]

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// A span or an event, with its fields as text.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<BTreeMap<u64, Seen>>,
    events: Mutex<Vec<Seen>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, SeqCst) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let seen = Seen {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            level: *attrs.metadata().level(),
            fields,
        };
        self.spans.lock().unwrap().insert(id, seen);
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(seen) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Seen {
            name: event.metadata().name().to_owned(),
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The recorder, installed for the whole test binary on first use; tests
/// tell their records apart by function name.
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        tracing::subscriber::set_global_default(recorder).expect("the only subscriber");
        recorder
    })
}

fn load_spans(function: &str) -> Vec<Seen> {
    let spans = recorder().spans.lock().unwrap();
    spans
        .values()
        .filter(|s| s.name == "cachette.load" && s.field("function") == Some(function))
        .cloned()
        .collect()
}

fn events(containing: &str) -> Vec<Seen> {
    let events = recorder().events.lock().unwrap();
    events
        .iter()
        .filter(|e| e.field("message").is_some_and(|m| m.contains(containing)))
        .cloned()
        .collect()
}

mod local {
    use super::*;
    use cachette::cache;
    manual_cache!();

    static FAIL: AtomicBool = AtomicBool::new(false);

    #[cache(key = "price:<id>", ttl = 3600, cache = CACHE, tier = "l1")]
    fn price(id: u64) -> u64 {
        id * 10
    }

    #[cache(key = "quote:<id>", ttl = 10, stale_if_error = 60, cache = CACHE, tier = "l1")]
    fn quote(id: u64) -> Result<u64, String> {
        match FAIL.load(SeqCst) {
            true => Err(format!("source down for {id}")),
            false => Ok(id),
        }
    }

    #[cachette::cache_many(key = "stock:<ids>", ttl = 3600, cache = CACHE, tier = "l1")]
    fn stocks(ids: &[u64]) -> std::collections::HashMap<u64, u64> {
        ids.iter().map(|&id| (id, id * 2)).collect()
    }

    #[cachette::cache_many(key = "rate:<ids>", ttl = 3600, cache = CACHE, tier = "l1")]
    async fn rates(ids: &[u64]) -> Result<std::collections::HashMap<u64, u64>, String> {
        match ids.contains(&0) {
            true => Err("no rate for 0".to_owned()),
            false => Ok(ids.iter().map(|&id| (id, id)).collect()),
        }
    }

    #[tokio::test]
    async fn a_batch_body_run_is_one_span_naming_its_first_key_and_how_many_more() {
        recorder();
        assert_eq!(stocks(&[1, 2, 3]).len(), 3);
        assert_eq!(stocks(&[1, 2, 3]).len(), 3, "hits");
        assert_eq!(stocks(&[3, 4]).len(), 2, "one miss");
        let spans = load_spans("tracing::local::stocks");
        let keys: Vec<_> = spans.iter().filter_map(|s| s.field("key")).collect();
        assert_eq!(keys, ["stock:1 (+2 more)", "stock:4"]);
        assert!(spans.iter().all(|s| s.field("outcome") == Some("ok")));
        assert!(spans.iter().all(|s| s.level == Level::DEBUG));

        assert!(rates(&[5, 0]).await.is_err());
        let spans = load_spans("tracing::local::rates");
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].field("key"), Some("rate:5 (+1 more)"));
        assert_eq!(spans[0].field("outcome"), Some("error"));
    }

    #[test]
    fn a_body_run_is_one_debug_span_with_function_key_tier_and_outcome_and_a_hit_is_none() {
        recorder();
        assert_eq!(price(7), 70);
        assert_eq!(price(7), 70, "a hit");
        let spans = load_spans("tracing::local::price");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.level, Level::DEBUG);
        assert_eq!(span.target, "cachette", "filtered with `cachette=debug`");
        assert_eq!(span.field("key"), Some("price:7"));
        assert_eq!(span.field("tier"), Some("l1"));
        assert_eq!(span.field("outcome"), Some("ok"));
    }

    #[test]
    fn a_failed_body_answered_with_the_stored_value_is_a_warn_event_and_an_error_outcome() {
        recorder();
        assert_eq!(quote(3), Ok(3));
        FAIL.store(true, SeqCst);
        CLOCK.advance(Duration::from_secs(11));
        assert_eq!(
            quote(3),
            Ok(3),
            "stale_if_error answers with the stored value"
        );
        let spans = load_spans("tracing::local::quote");
        let outcomes: Vec<_> = spans.iter().filter_map(|s| s.field("outcome")).collect();
        assert_eq!(outcomes, ["ok", "error"]);
        let served = events("the body failed; the call answered with the stored value");
        let served: Vec<_> = served
            .iter()
            .filter(|e| e.field("function") == Some("tracing::local::quote"))
            .collect();
        assert_eq!(served.len(), 1, "{served:?}");
        assert_eq!(served[0].level, Level::WARN);
        assert_eq!(served[0].target, "cachette");
        assert_eq!(served[0].field("key"), Some("quote:3"));
        for seen in spans.iter().chain(served.iter().copied()) {
            assert!(
                !seen.fields.values().any(|v| v.contains("source down")),
                "no value or error text in {seen:?}"
            );
        }
    }
}

#[cfg(feature = "redis")]
mod shared {
    use super::*;
    use cachette::{cache, Cache};
    use support::cache::redis_cache;
    use support::redis::RedisServer;
    use support::wait::eventually;

    #[cache(key = "item:<id>", ttl = 300, cache = cache)]
    async fn item(cache: &Cache, id: u64) -> u64 {
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_tier_errors_breaker_changes_and_reconnections_are_events() {
        recorder();
        let server = RedisServer::start();
        let cache = redis_cache(&server.url(), "tr", Duration::from_millis(50), None).await;
        assert_eq!(item(&cache, 1).await, 1);
        let errors_before = events("a shared-tier operation failed").len();

        server.kill();
        let started = std::time::Instant::now();
        for id in 0..200 {
            assert_eq!(
                item(&cache, 100 + id).await,
                100 + id,
                "an outage is a slower call"
            );
        }
        let elapsed = started.elapsed().as_secs() + 1;
        let errors = events("a shared-tier operation failed").len() - errors_before;
        assert!(errors >= 1, "the outage is reported");
        assert!(
            errors as u64 <= elapsed + 1,
            "{errors} error events in about {elapsed} s: at most one a second"
        );
        assert!(
            !events("the shared tier keeps failing").is_empty(),
            "the breaker opened"
        );
        let warned = events("a shared-tier operation failed");
        let last = warned.last().unwrap();
        assert_eq!(last.level, Level::WARN);
        assert!(
            !last.fields.values().any(|v| v.contains(&server.url())),
            "{last:?}"
        );

        server.restart();
        // New keys, so that each call asks Redis (once the breaker lets it).
        let next = AtomicU64::new(1_000);
        let back = eventually(Duration::from_secs(15), async || {
            let id = next.fetch_add(1, SeqCst);
            assert_eq!(item(&cache, id).await, id);
            !events("the shared tier answers again").is_empty()
                && !events("the invalidation channel reconnected").is_empty()
        })
        .await;
        assert!(
            back,
            "breaker closed: {}, channel reconnected: {}",
            !events("the shared tier answers again").is_empty(),
            !events("the invalidation channel reconnected").is_empty()
        );
        let reconnected = events("the invalidation channel reconnected");
        assert_eq!(reconnected[0].level, Level::INFO);
        assert_eq!(reconnected[0].field("channel"), Some("tr:#events"));
    }
}
