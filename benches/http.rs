//! P8 (DESIGN §8): a `CacheLayer` hit on a 1 KiB response against axum
//! serving the same prebuilt body from a handler, both called in-process
//! through `tower::ServiceExt::oneshot` on a current-thread runtime, the
//! body read whole each time. Both routers are prepared the way
//! `axum::serve` prepares one (`Router::with_state`), so neither rebuilds
//! its routes per request. Also measured: a `Conditional` 304 (a
//! `{fn}_entry` L1 hit plus the ETag) against the handler's 200.
//!
//! The figures come from criterion's samples and from paired rounds run
//! afterwards (a batch of each contender back to back, alternating which
//! goes first, median over the rounds).
//!
//! `cargo bench --features axum --bench http` takes about half a minute.

#[allow(dead_code, reason = "this bench uses part of what the benches share")]
mod common;

use std::hint::black_box;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cachette::http::{CacheLayer, Conditional};
use cachette::{cache, Cache};
use common::{benchmarking, compare, measure, paired, Setting, Timed, SAMPLES};
use criterion::Criterion;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const ROUNDS: usize = 40;
const CALLS: u64 = 2_000;
/// The P8 target.
const P8_TARGET: f64 = 1.2;

fn body() -> Bytes {
    Bytes::from(vec![b'x'; 1024])
}

/// The peer: a handler answering the prebuilt body with the same headers.
fn plain() -> Router {
    let body = body();
    Router::new().route(
        "/page",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CACHE_CONTROL, "max-age=600"),
                        (header::CONTENT_TYPE, "text/plain"),
                    ],
                    body,
                )
            }
        }),
    )
}

#[cache(key = "page", ttl = 600)]
async fn page() -> String {
    "x".repeat(1024)
}

async fn conditional(headers: HeaderMap) -> axum::response::Response {
    Conditional::new(&headers, page_entry().await).into_response()
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, usize) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    (status, bytes.len())
}

fn get_page() -> Request<Body> {
    Request::get("/page")
        .body(Body::empty())
        .expect("a request")
}

fn calls(rt: &Runtime, n: u64, app: &Router, request: impl Fn() -> Request<Body>) -> Duration {
    rt.block_on(async {
        let started = std::time::Instant::now();
        for _ in 0..n {
            black_box(call(app, request()).await);
        }
        started.elapsed()
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Each router is made ready to serve as `axum::serve` makes it (through
    // `with_state`), so that neither rebuilds its routes, and the layer
    // around them, on every request.
    let plain = plain();
    let cached = plain
        .clone()
        .layer(CacheLayer::new(Cache::local()))
        .with_state(());
    let plain = plain.with_state(());
    let validated = Router::new()
        .route("/page", get(conditional))
        .with_state(());

    // Check the contenders: the same body; the layer's second call is a hit;
    // the conditional request is a 304.
    let (status, len) = rt.block_on(call(&plain, get_page()));
    assert_eq!((status, len), (StatusCode::OK, 1024));
    rt.block_on(call(&cached, get_page()));
    let hit = rt
        .block_on(cached.clone().oneshot(get_page()))
        .expect("infallible");
    assert_eq!(hit.headers()["x-cache"], "HIT");
    let etag = rt
        .block_on(validated.clone().oneshot(get_page()))
        .expect("infallible")
        .headers()[header::ETAG]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let revalidate = || {
        Request::get("/page")
            .header(header::IF_NONE_MATCH, etag.as_str())
            .body(Body::empty())
            .expect("a request")
    };
    assert_eq!(
        rt.block_on(call(&validated, revalidate())).0,
        StatusCode::NOT_MODIFIED
    );
    if !benchmarking() {
        println!(
            "http: contenders checked; run `cargo bench --features axum --bench http` to measure"
        );
        return;
    }

    let settings = vec![Setting {
        group: "http_1kib",
        title: "a 1 KiB GET, in-process: us per call, ratio to the handler",
        contenders: vec![
            (
                "axum_handler",
                Box::new(|n| calls(&rt, n, &plain, get_page)) as Timed<'_>,
            ),
            (
                "cache_layer_hit",
                Box::new(|n| calls(&rt, n, &cached, get_page)),
            ),
            (
                "conditional_304",
                Box::new(|n| calls(&rt, n, &validated, revalidate)),
            ),
        ],
    }];
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(SAMPLES)
        .configure_from_args();
    measure(&mut c, &settings);
    let rows = compare(&settings, |baseline, candidate| {
        paired(baseline, candidate, ROUNDS, CALLS)
    });
    c.final_summary();

    println!();
    println!("P8: a CacheLayer hit on a 1 KiB response against axum serving the prebuilt body");
    println!(
        "{:<12} {:<18} {:>10} {:>16} {:>16}",
        "setting", "implementation", "mean ns", "ratio (samples)", "ratio (paired)"
    );
    for row in &rows {
        println!(
            "{:<12} {:<18} {:>10.0} {:>15.2}x {:>15.2}x",
            row.group, row.name, row.mean_nanos, row.sampled.ratio, row.paired.ratio
        );
    }
    for row in rows.iter().filter(|row| row.name == "cache_layer_hit") {
        println!(
            "P8: {:.2}x paired [{:.2}x samples] (target <= {P8_TARGET}x): {}",
            row.paired.ratio,
            row.sampled.ratio,
            common::verdict(row.paired.ratio <= P8_TARGET)
        );
    }
}
