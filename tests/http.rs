//! G16, conditional responses: `cachette::http::Conditional` answers `304
//! Not Modified` only when the request's validator matches the current
//! entry, a `200` with the new ETag after an invalidation or a refill with
//! new content, and a `304` again after a refill with equal content. The
//! router is called in-process through `tower::ServiceExt::oneshot`.

#![cfg(feature = "axum")]

mod common;

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

        // If-Modified-Since: at or after creation is 304; before is 200.
        let modified = headers[header::LAST_MODIFIED].to_str().unwrap().to_owned();
        assert_eq!(
            call("/articles/1", &[(header::IF_MODIFIED_SINCE, &modified)])
                .await
                .0,
            StatusCode::NOT_MODIFIED
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
            (header::IF_MODIFIED_SINCE, modified.as_str()),
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
    }
}
