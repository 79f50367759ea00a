//! G16, conditional responses: `cachette::http::Conditional` answers `304
//! Not Modified` only when the request's validator matches the current
//! entry, a `200` with the new ETag after an invalidation or a refill with
//! new content, and a `304` again after a refill with equal content. The
//! router is called in-process through `tower::ServiceExt::oneshot`.

#![cfg(feature = "axum")]

mod common;
mod support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cachette::cache;
use cachette::http::Conditional;
use http_body_util::BodyExt;
use tower::ServiceExt;

mod conditional {
    use super::*;
    manual_cache!();

    static VERSION: AtomicU64 = AtomicU64::new(1);
    static FAIL: AtomicU64 = AtomicU64::new(0);

    #[cache(key = "article:<id>", ttl = 60, stale = 30, stale_if_error = 600, cache = CACHE)]
    async fn article(id: u64) -> Result<String, String> {
        match FAIL.load(SeqCst) {
            0 => Ok(format!("article {id} v{}", VERSION.load(SeqCst))),
            _ => Err("database down".to_owned()),
        }
    }

    async fn handler(Path(id): Path<u64>, headers: HeaderMap) -> axum::response::Response {
        use axum::response::IntoResponse;
        match article_entry(id).await.transpose() {
            Ok(entry) => Conditional::new(&headers, entry.map(Json))
                .public()
                .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        }
    }

    fn app() -> Router {
        Router::new().route("/articles/{id}", get(handler))
    }

    async fn call(
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn etag(headers: &HeaderMap) -> String {
        headers[header::ETAG].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn g16_a_304_only_while_the_validator_matches_the_current_entry() {
        CLOCK.advance(Duration::from_secs(5_000));
        let (status, headers, body) = call("/articles/1", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "\"article 1 v1\"");
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "max-age=60, stale-while-revalidate=30, stale-if-error=600, public"
        );
        assert_eq!(headers[header::AGE], "0");
        assert!(headers.contains_key(header::LAST_MODIFIED));
        let first = etag(&headers);
        assert!(first.starts_with('"'), "a strong tag: {first}");

        // The same validator: 304, no body, the validators again.
        let (status, headers, body) = call("/articles/1", &[(header::IF_NONE_MATCH, &first)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(body, "");
        assert_eq!(etag(&headers), first);
        // A list holding it, or a weak form of it: 304 too.
        let list = format!("\"nope\", W/{first}");
        assert_eq!(
            call("/articles/1", &[(header::IF_NONE_MATCH, &list)])
                .await
                .0,
            StatusCode::NOT_MODIFIED
        );
        // Another tag: 200.
        assert_eq!(
            call("/articles/1", &[(header::IF_NONE_MATCH, "\"nope\"")])
                .await
                .0,
            StatusCode::OK
        );

        // Ten seconds on: max-age counts down, Age counts up.
        CLOCK.advance(Duration::from_secs(10));
        let (_, headers, _) = call("/articles/1", &[]).await;
        assert_eq!(headers[header::AGE], "10");
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("max-age=50,"));

        // A refill with equal content keeps the validator: still 304.
        article_invalidate(1).await.unwrap();
        let (status, _, _) = call("/articles/1", &[(header::IF_NONE_MATCH, &first)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);

        // New content after an invalidation: 200 with a new validator.
        VERSION.store(2, SeqCst);
        article_invalidate(1).await.unwrap();
        let (status, headers, body) = call("/articles/1", &[(header::IF_NONE_MATCH, &first)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "\"article 1 v2\"");
        let second = etag(&headers);
        assert_ne!(second, first);
        assert_eq!(
            call("/articles/1", &[(header::IF_NONE_MATCH, &second)])
                .await
                .0,
            StatusCode::NOT_MODIFIED
        );

        // If-Modified-Since: a date after the second the entry was made in
        // is 304. Its own second is 200: another value may have been made
        // in that second (Last-Modified has whole seconds).
        let modified = headers[header::LAST_MODIFIED].to_str().unwrap().to_owned();
        let created = httpdate::parse_http_date(&modified).unwrap();
        let later = httpdate::fmt_http_date(created + Duration::from_secs(1));
        assert_eq!(
            call("/articles/1", &[(header::IF_MODIFIED_SINCE, &later)])
                .await
                .0,
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            call("/articles/1", &[(header::IF_MODIFIED_SINCE, &modified)])
                .await
                .0,
            StatusCode::OK
        );
        let earlier = "Sat, 01 Jan 2000 00:00:00 GMT";
        assert_eq!(
            call("/articles/1", &[(header::IF_MODIFIED_SINCE, earlier)])
                .await
                .0,
            StatusCode::OK
        );
        // If-None-Match wins over If-Modified-Since.
        let both = [
            (header::IF_NONE_MATCH, "\"nope\""),
            (header::IF_MODIFIED_SINCE, later.as_str()),
        ];
        assert_eq!(call("/articles/1", &both).await.0, StatusCode::OK);
        // A garbled date is ignored.
        assert_eq!(
            call("/articles/1", &[(header::IF_MODIFIED_SINCE, "yesterday")])
                .await
                .0,
            StatusCode::OK
        );

        // Past the TTL with the body failing: the stored value stands in,
        // with max-age 0, and its validator still matches.
        FAIL.store(1, SeqCst);
        CLOCK.advance(Duration::from_secs(120));
        let (status, headers, _) = call("/articles/1", &[(header::IF_NONE_MATCH, &second)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("max-age=0,"));
        // Nothing stored: the error passes through without validators.
        let (status, headers, _) = call("/articles/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!headers.contains_key(header::ETAG));
        FAIL.store(0, SeqCst);

        // Over a real connection (hyper, through `axum::serve`): the 304 has
        // no body and does not declare its 200 empty (RFC 9110 §8.6).
        let (_, headers, _) = call("/articles/3", &[]).await;
        let tag = etag(&headers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app()).await });
        let raw = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(
                stream,
                "GET /articles/3 HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {tag}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            stream.read_to_string(&mut raw).unwrap();
            raw
        })
        .await
        .unwrap();
        server.abort();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response");
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length: 0"),
            "a 304 says its 200 is empty: {head}"
        );
        assert_eq!(body, "");
    }
}

mod layer {
    use super::*;
    use axum::response::IntoResponse;
    use cachette::http::CacheLayer;
    use cachette::Cache;
    use common::Runs;

    static CALLS: Runs = Runs::new();
    static CONTENT: AtomicU64 = AtomicU64::new(1);

    /// Answers `/r/{kind}` with the headers that kind names, counting calls.
    async fn resource(Path(kind): Path<String>, headers: HeaderMap) -> axum::response::Response {
        CALLS.bump();
        let version = CONTENT.load(SeqCst);
        let lang = headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let body = format!("{kind} v{version} lang={lang}");
        let cc = |v: &'static str| [(header::CACHE_CONTROL, v)];
        match kind.as_str() {
            "plain" => (cc("max-age=60"), body).into_response(),
            "swr" => (cc("max-age=10, stale-while-revalidate=60"), body).into_response(),
            "no-store" => (cc("no-store, max-age=60"), body).into_response(),
            "private" => (cc("private, max-age=60"), body).into_response(),
            "no-lifetime" => body.into_response(),
            "cookie" => (
                [
                    (header::CACHE_CONTROL, "max-age=60"),
                    (header::SET_COOKIE, "session=1"),
                ],
                body,
            )
                .into_response(),
            "vary" => (
                [
                    (header::CACHE_CONTROL, "max-age=60"),
                    (header::VARY, "Accept-Language"),
                ],
                body,
            )
                .into_response(),
            "tagged" => (
                [(header::CACHE_CONTROL, "max-age=60")],
                [("cache-tag", "catalogue, page")],
                body,
            )
                .into_response(),
            "big" => (cc("max-age=60"), "x".repeat(10_000)).into_response(),
            "etag" => {
                let etag = format!("\"v{version}\"");
                (
                    [
                        (header::CACHE_CONTROL, "max-age=60".to_owned()),
                        (header::ETAG, etag),
                    ],
                    body,
                )
                    .into_response()
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (cc("max-age=60"), body).into_response()
            }
            "error" => (StatusCode::INTERNAL_SERVER_ERROR, cc("max-age=60"), body).into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    fn app(cache: &Cache) -> Router {
        Router::new()
            .route("/r/{kind}", get(resource).post(resource))
            .layer(CacheLayer::new(cache.clone()).max_body(4096))
    }

    async fn send(
        app: &Router,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn get_(app: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
        send(app, "GET", path, &[]).await
    }

    fn x_cache(headers: &HeaderMap) -> &str {
        headers["x-cache"].to_str().unwrap()
    }

    /// The tests share the call counter: each takes this lock.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn g16_a_response_is_stored_once_and_served_with_its_age() {
        let _serial = SERIAL.lock().await;
        let clock = cachette::ManualClock::new();
        let cache = Cache::builder().clock(clock.clone()).build_local().unwrap();
        let app = app(&cache);
        let before = CALLS.get();
        let (status, headers, body) = get_(&app, "/r/plain").await;
        assert_eq!((status, x_cache(&headers)), (StatusCode::OK, "MISS"));
        clock.advance(Duration::from_secs(7));
        let (status, headers, again) = get_(&app, "/r/plain").await;
        assert_eq!((status, x_cache(&headers)), (StatusCode::OK, "HIT"));
        assert_eq!(again, body);
        assert_eq!(headers[header::AGE], "7");
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert_eq!(CALLS.get() - before, 1);
        // HEAD is its own entry, with the length of the body it leaves out;
        // POST always reaches the service.
        assert_eq!(
            x_cache(&send(&app, "HEAD", "/r/plain", &[]).await.1),
            "MISS"
        );
        let (_, headers, empty) = send(&app, "HEAD", "/r/plain", &[]).await;
        assert_eq!((x_cache(&headers), empty.as_str()), ("HIT", ""));
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert_eq!(
            x_cache(&send(&app, "POST", "/r/plain", &[]).await.1),
            "MISS"
        );
        assert_eq!(
            x_cache(&send(&app, "POST", "/r/plain", &[]).await.1),
            "MISS"
        );
        // With Authorization: passed through.
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            x_cache(&send(&app, "GET", "/r/plain", &auth).await.1),
            "MISS"
        );
        assert_eq!(CALLS.get() - before, 5);
        // Past max-age without a stale window: fetched again.
        clock.advance(Duration::from_secs(60));
        assert_eq!(x_cache(&get_(&app, "/r/plain").await.1), "MISS");
        assert_eq!(CALLS.get() - before, 6);
        // A stored response with an ETag answers a matching If-None-Match
        // with a 304 of its own; another tag gets the whole response.
        let v = CONTENT.load(SeqCst);
        let (_, headers, _) = get_(&app, "/r/etag").await;
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"v{v}\""));
        let (status, headers, body) =
            send(&app, "GET", "/r/etag", &[("if-none-match", &etag)]).await;
        assert_eq!(
            (status, x_cache(&headers), body.as_str()),
            (StatusCode::NOT_MODIFIED, "HIT", "")
        );
        assert_eq!(headers[header::ETAG], etag.as_str());
        let (status, whole, body) =
            send(&app, "GET", "/r/etag", &[("if-none-match", "W/\"other\"")]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, format!("etag v{v} lang=none"))
        );
        // The 304 declares the length of the 200 it stands for, not 0.
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            whole[header::CONTENT_LENGTH]
        );
        // `invalidate_namespace("http")` drops every stored response.
        assert_eq!(x_cache(&get_(&app, "/r/plain").await.1), "HIT");
        cache.invalidate_namespace("http").await.unwrap();
        assert_eq!(x_cache(&get_(&app, "/r/plain").await.1), "MISS");
    }

    #[tokio::test]
    async fn g16_no_store_private_set_cookie_and_unlimited_responses_are_never_stored() {
        let _serial = SERIAL.lock().await;
        let cache = Cache::local();
        let app = app(&cache);
        for kind in ["no-store", "private", "cookie", "no-lifetime", "error"] {
            let before = CALLS.get();
            for _ in 0..3 {
                let (_, headers, _) = get_(&app, &format!("/r/{kind}")).await;
                assert_eq!(x_cache(&headers), "MISS", "{kind}");
            }
            assert_eq!(
                CALLS.get() - before,
                3,
                "{kind} reached the service every time"
            );
        }
        // Over the body limit: passed through whole, never stored.
        let before = CALLS.get();
        for _ in 0..2 {
            let (status, headers, body) = get_(&app, "/r/big").await;
            assert_eq!(
                (status, x_cache(&headers), body.len()),
                (StatusCode::OK, "MISS", 10_000)
            );
        }
        assert_eq!(CALLS.get() - before, 2);
    }

    #[tokio::test]
    async fn g16_vary_splits_entries_by_the_named_request_headers() {
        let _serial = SERIAL.lock().await;
        let cache = Cache::local();
        let app = app(&cache);
        let en = [("accept-language", "en")];
        let fr = [("accept-language", "fr")];
        let v = CONTENT.load(SeqCst);
        // The first response teaches the layer the Vary names.
        assert_eq!(x_cache(&send(&app, "GET", "/r/vary", &en).await.1), "MISS");
        let (_, headers, body) = send(&app, "GET", "/r/vary", &en).await;
        assert_eq!(
            (x_cache(&headers), body),
            ("MISS", format!("vary v{v} lang=en"))
        );
        let (_, headers, body) = send(&app, "GET", "/r/vary", &fr).await;
        assert_eq!(
            (x_cache(&headers), body),
            ("MISS", format!("vary v{v} lang=fr"))
        );
        let (_, headers, body) = send(&app, "GET", "/r/vary", &en).await;
        assert_eq!(
            (x_cache(&headers), body),
            ("HIT", format!("vary v{v} lang=en"))
        );
        let (_, headers, body) = send(&app, "GET", "/r/vary", &fr).await;
        assert_eq!(
            (x_cache(&headers), body),
            ("HIT", format!("vary v{v} lang=fr"))
        );
        let (_, headers, body) = get_(&app, "/r/vary").await;
        assert_eq!(
            (x_cache(&headers), body),
            ("MISS", format!("vary v{v} lang=none"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_of_one_url_reach_the_service_once() {
        let _serial = SERIAL.lock().await;
        let cache = Cache::local();
        let app = app(&cache);
        let before = CALLS.get();
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { get_(&app, "/r/slow").await })
            })
            .collect();
        let mut labels = Vec::new();
        for call in calls {
            let (status, headers, _) = call.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            labels.push(x_cache(&headers).to_owned());
        }
        assert_eq!(CALLS.get() - before, 1);
        assert_eq!(labels.iter().filter(|l| *l == "MISS").count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_response_is_served_while_one_background_refresh_replaces_it() {
        let _serial = SERIAL.lock().await;
        let clock = cachette::ManualClock::new();
        let cache = Cache::builder().clock(clock.clone()).build_local().unwrap();
        let app = app(&cache);
        let before = CALLS.get();
        assert_eq!(
            get_(&app, "/r/swr").await.2,
            format!("swr v{} lang=none", CONTENT.load(SeqCst))
        );
        let old = CONTENT.fetch_add(1, SeqCst);
        clock.advance(Duration::from_secs(20));
        let (_, headers, body) = get_(&app, "/r/swr").await;
        assert_eq!(
            (x_cache(&headers), body),
            ("STALE", format!("swr v{old} lang=none"))
        );
        // The stale response is one hit, served stale, with one refresh.
        let stats = cache.stats();
        let s = stats.function("cachette::http::CacheLayer").unwrap();
        assert_eq!(
            (s.l1_hits, s.stale_served, s.refreshes, s.errors),
            (1, 1, 1, 0)
        );
        // The refresh runs on a task; wait for it, bounded.
        let start = std::time::Instant::now();
        loop {
            let (_, headers, body) = get_(&app, "/r/swr").await;
            if x_cache(&headers) == "HIT" {
                assert_eq!(body, format!("swr v{} lang=none", old + 1));
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no refresh within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(CALLS.get() - before, 2, "one refresh");
        // Past the stale window too: a plain miss.
        clock.advance(Duration::from_secs(100));
        assert_eq!(x_cache(&get_(&app, "/r/swr").await.1), "MISS");
    }

    #[tokio::test]
    async fn a_cache_tag_purge_drops_the_tagged_responses() {
        let _serial = SERIAL.lock().await;
        let cache = Cache::local();
        let app = app(&cache);
        // The first response teaches the tags; the second is stored.
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "MISS");
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "MISS");
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "HIT");
        // The teaching response is not stored, and no error either.
        let stats = cache.stats();
        let s = stats.function("cachette::http::CacheLayer").unwrap();
        assert_eq!((s.misses, s.l1_hits, s.errors), (2, 1, 0));
        cache.invalidate_tag("page").await.unwrap();
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "MISS");
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "HIT");
        cache.invalidate_tag("unrelated").await.unwrap();
        assert_eq!(x_cache(&get_(&app, "/r/tagged").await.1), "HIT");
    }

    /// Two caches on one Redis stand for two processes.
    #[cfg(feature = "redis")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn g16_a_cache_tag_purge_reaches_a_second_process_sharing_redis() {
        let _serial = SERIAL.lock().await;
        let server = support::redis::RedisServer::start();
        let url = server.url();
        let connect = || support::cache::redis_cache(&url, "layer", Duration::from_secs(2), None);
        let (a, b) = (connect().await, connect().await);
        let (app_a, app_b) = (app(&a), app(&b));
        let version = CONTENT.load(SeqCst);
        assert_eq!(x_cache(&get_(&app_a, "/r/tagged").await.1), "MISS");
        assert_eq!(x_cache(&get_(&app_a, "/r/tagged").await.1), "MISS");
        assert_eq!(x_cache(&get_(&app_a, "/r/tagged").await.1), "HIT");
        // B finds A's response in Redis, and learns its tags from it.
        let (_, headers, body) = get_(&app_b, "/r/tagged").await;
        assert_eq!(
            (x_cache(&headers), body),
            ("HIT", format!("tagged v{version} lang=none"))
        );
        assert_eq!(x_cache(&get_(&app_b, "/r/tagged").await.1), "HIT");

        CONTENT.fetch_add(1, SeqCst);
        b.invalidate_tag("catalogue").await.unwrap();
        // A drops its L1 copy when B's message arrives (within ms).
        let fresh = format!("tagged v{} lang=none", version + 1);
        let seen = support::wait::eventually(Duration::from_secs(5), async || {
            get_(&app_a, "/r/tagged").await.2 == fresh
        })
        .await;
        assert!(seen, "the purge on B never reached A");
        let (_, headers, body) = get_(&app_b, "/r/tagged").await;
        assert_eq!(
            (x_cache(&headers), body),
            ("HIT", format!("tagged v{} lang=none", version + 1))
        );
    }
}
