//! [`CacheLayer`]: whole GET/HEAD responses cached as a reverse proxy
//! caches them, in a [`Cache`], through the same load path as a cached
//! function (single-flight, both tiers, invalidation by tag).

use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use tower_layer::Layer;
use tower_service::Service;

use crate::entry::{Record, Source};
use crate::handle::Cache;
use crate::key::{Escape, KeyWriter};
use crate::shape::Shape;
use crate::spec::{Freshness, Site, Spec, Tier};
use crate::tier::{self, Load, Lookup, Tag};
use crate::value::ValueCodec;

/// `Age` values without an allocation.
const SMALL: [&str; 64] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48",
    "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63",
];

/// The header naming where a response came from, parsed once.
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

thread_local! {
    /// Keys of fresh hits are written here.
    static KEY: Cell<String> = const { Cell::new(String::new()) };
}

/// What is known of a URL nothing was learned of.
static NOTHING: Known = Known {
    vary: Vec::new(),
    tags: Vec::new(),
};

/// The largest response body [`CacheLayer`] stores by default: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// How many URLs' `Vary` and `Cache-Tag` names are remembered per shard.
const LEARNED_PER_SHARD: usize = 4096;
const SHARDS: usize = 16;

/// The layer's one call site: every cached response counts under this name
/// in [`Cache::stats`], and lives in the namespace `http`, so that
/// `invalidate_namespace("http")` drops them all. Lifetimes come from each
/// response, not from this TTL.
static SITE: Site = Site::new(Spec {
    name: "cachette::http::CacheLayer",
    ttl: Duration::from_secs(60),
    jitter: 0.0,
    negative_ttl: None,
    lock: true,
    namespace: Some("http"),
    version: 1,
    l1_ttl: None,
    tier: Tier::Both,
    key_escape: Escape::of(""),
    freshness: Freshness::NONE,
});

/// A tower layer that caches whole GET and HEAD responses in a [`Cache`],
/// as a reverse proxy does (§5b).
///
/// - **Key**: method, URI, and the values of the request headers the
///   response's `Vary` names.
/// - **Lifetime**: the response's `s-maxage`, else `max-age` (less its
///   `Age`), plus its `stale-while-revalidate` window, within which the
///   stored response is served (`X-Cache: STALE`) while one refresh runs in
///   the background.
/// - **Never stored**: responses with `no-store`, `no-cache` or `private`,
///   without `s-maxage`/`max-age`, with `Set-Cookie`, with `Vary: *`, with a
///   status a cache may not store by default, or with a body over
///   [`max_body`](Self::max_body) (those pass through as they stream).
///   Requests with `Authorization`, and methods other than GET and HEAD,
///   pass through too.
/// - **Tags**: a comma-separated `Cache-Tag` response header; each tag can
///   be purged with [`Cache::invalidate_tag`] in every process sharing the
///   cache's Redis.
/// - **Single-flight** per key: concurrent misses run the inner service
///   once in a process; with Redis they take the shared tier's fill lock,
///   as a function with `lock` does.
/// - **Revalidation**: a request whose `If-None-Match` names the stored
///   response's `ETag` gets `304 Not Modified` from the cache.
/// - **`X-Cache: HIT|MISS|STALE`** on every response (`MISS` for those
///   passed through).
///
/// A URL whose responses carry `Vary` or `Cache-Tag` is stored from its
/// second response on: the first teaches the layer which request headers
/// key it and which tags to fence it with before the inner service runs,
/// so that a purge during a load is never lost. Responses count in
/// [`Cache::stats`] under `cachette::http::CacheLayer`. `Cache-Tag` tags
/// and functions' `tags` share one name space per cache:
/// `invalidate_tag("users")` drops both.
///
/// Mount it with `route_layer` on the routes whose responses it should
/// store: on a whole router it would also store the responses of routes
/// that have a cache of their own (say through
/// [`Conditional`](super::Conditional)), which that cache's invalidations
/// do not reach.
///
/// # Example
///
/// ```
/// use axum::routing::get;
/// use axum::Router;
/// use cachette::http::CacheLayer;
/// use cachette::Cache;
///
/// async fn catalogue() -> ([(&'static str, &'static str); 2], &'static str) {
///     (
///         [("cache-control", "max-age=60, stale-while-revalidate=30"), ("cache-tag", "catalogue")],
///         "the catalogue",
///     )
/// }
///
/// let cache = Cache::local();
/// let app: Router = Router::new()
///     .route("/catalogue", get(catalogue).route_layer(CacheLayer::new(cache.clone())));
/// // After a write: cache.invalidate_tag("catalogue").await
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct CacheLayer {
    cache: Cache,
    max_body: usize,
    learned: Arc<Learned>,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("cache", &self.cache)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// A layer storing responses in `cache`.
    pub fn new(cache: Cache) -> Self {
        CacheLayer {
            cache,
            max_body: DEFAULT_MAX_BODY,
            learned: Arc::new(Learned::default()),
        }
    }

    /// Stores bodies of at most `bytes` (1 MiB by default); larger ones
    /// pass through unstored.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`CacheLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct CacheService<S> {
    inner: S,
    layer: CacheLayer,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Default + Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CacheFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // A fresh hit is answered here, without the miss path's future.
        if let Some(response) = self.layer.fresh_hit::<S::Error, _>(&request) {
            return CacheFuture(Answer::Ready(Some(Ok(response))));
        }
        // The clone that was polled ready serves this call.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let layer = self.layer.clone();
        CacheFuture(Answer::Pending(Box::pin(async move {
            layer.serve(inner, request).await
        })))
    }
}

/// The future of [`CacheService`]: a fresh hit's response, ready at once, or
/// the rest of the load.
pub struct CacheFuture<E>(Answer<E>);

type Pending<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

enum Answer<E> {
    Ready(Option<Result<Response<Body>, E>>),
    Pending(Pending<E>),
}

impl<E> fmt::Debug for CacheFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Answer::Ready(_) => "CacheFuture(ready)",
            Answer::Pending(_) => "CacheFuture(pending)",
        })
    }
}

// Nothing in it is pinned in place: the pending part is boxed, and the
// ready answer is moved out.
impl<E> Unpin for CacheFuture<E> {}

impl<E> Future for CacheFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Answer::Ready(answer) => match answer.take() {
                Some(answer) => Poll::Ready(answer),
                None => Poll::Pending,
            },
            Answer::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// What a load returns that is not stored: the response as it is (not
/// an error: not every response may be stored), the answer to a response
/// whose body failed, or the inner service's error.
enum Pass<E> {
    Response(Box<Response<Body>>),
    Failed(Box<Response<Body>>),
    Error(E),
}

impl<E> Pass<E> {
    fn into_result(self) -> Result<Response<Body>, E> {
        match self {
            Pass::Response(response) | Pass::Failed(response) => Ok(marked(*response, "MISS")),
            Pass::Error(e) => Err(e),
        }
    }
}

impl<E> fmt::Debug for Pass<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pass::Response(response) => write!(f, "Pass({})", response.status()),
            Pass::Failed(response) => write!(f, "Pass(failed, {})", response.status()),
            Pass::Error(_) => f.write_str("Pass(error)"),
        }
    }
}

/// How the load path sees the layer's answers: a response to store, or
/// one passed on as it is, which counts as an error (`errors`, and a failed
/// refresh that waits before the next try) only when the service or the
/// response's body failed.
enum Http {}

impl<E> Shape<Loaded<E>> for Http {
    type Value = Stored;

    fn value_of(ret: &Loaded<E>) -> Option<Stored> {
        ret.as_ref().ok().cloned()
    }

    fn value_ref(ret: &Loaded<E>) -> Option<&Stored> {
        ret.as_ref().ok()
    }

    fn is_absent(_: &Stored) -> bool {
        false
    }

    fn is_error(ret: &Loaded<E>) -> bool {
        matches!(ret, Err(Pass::Failed(_) | Pass::Error(_)))
    }

    fn join(value: Stored) -> Loaded<E> {
        Ok(value)
    }
}

/// What the inner service's answer became.
type Loaded<E> = Result<Stored, Pass<E>>;

impl CacheLayer {
    async fn serve<S, ReqBody, ResBody>(
        self,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Default + Send + 'static,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        if !is_cacheable(&request) {
            let response = inner.call(request).await?;
            return Ok(marked(response.map(Body::new), "MISS"));
        }
        let (key, base_len, known) = self.key_of(&request);
        let codec = codec::<S::Error>();
        let lookup = with_tags(&known.tags, |tags| {
            tier::lookup::<Http, Loaded<S::Error>>(
                &SITE,
                &self.cache,
                codec,
                |w: &mut KeyWriter<'_>| w.lit(&key),
                tags,
            )
        });
        let record = Record::new();
        let (stored, from_body, request) = match lookup {
            Lookup::Hit(Ok(stored)) => {
                let now = self.cache.inner.clock.now_millis();
                if now < stored.0.fresh_until_ms {
                    // The hit path: nothing else to learn or start.
                    self.learn_tags(&key[..base_len], &known, &stored);
                    return Ok(stored.respond(now, "HIT", request.headers()));
                }
                (stored, false, Some(request))
            }
            Lookup::Hit(Err(pass)) => return pass.into_result(),
            Lookup::Miss(load) | Lookup::Refresh(_, load) => {
                let base = key[..base_len].to_owned();
                let fetch = self
                    .clone()
                    .fetch(inner.clone(), request, base, Arc::clone(&known));
                let load = load.with_lifetime(lifetime_of).with_record(&record);
                match load.run_async::<Http, _, _>(fetch, None).await {
                    Ok(stored) => {
                        let from_body = record.meta().map(|m| m.source) == Some(Source::Body);
                        (stored, from_body, None)
                    }
                    Err(pass) => return pass.into_result(),
                }
            }
        };
        self.learn_tags(&key[..base_len], &known, &stored);
        let now = self.cache.inner.clock.now_millis();
        let none = HeaderMap::new();
        let asked = request.as_ref().map_or(&none, |r| r.headers());
        if from_body {
            return Ok(stored.respond(now, "MISS", &none));
        }
        if now < stored.0.fresh_until_ms {
            return Ok(stored.respond(now, "HIT", asked));
        }
        let response = stored.respond(now, "STALE", asked);
        // Stale: served as it is while one refresh runs in the background,
        // sending this request again. (A stale response found in the shared
        // tier is refreshed by the next request, which finds it in L1.)
        if let Some(request) = request {
            let base = key[..base_len].to_owned();
            self.refresh(inner, request_parts(request), base, key, known, now);
        }
        Ok(response)
    }

    /// The key of `request` (its request line, then the values of the
    /// request headers its URL's responses vary on), how long the request
    /// line is, and what is known of the URL.
    fn key_of<B>(&self, request: &Request<B>) -> (String, usize, Arc<Known>) {
        let mut key = String::new();
        let (base_len, known) = self.key_into(request, &mut key);
        (
            key,
            base_len,
            known.unwrap_or_else(|| Arc::clone(&self.learned.none)),
        )
    }

    /// [`key_of`](Self::key_of) into `key`; `None` for a URL nothing is
    /// known of.
    fn key_into<B>(&self, request: &Request<B>, key: &mut String) -> (usize, Option<Arc<Known>>) {
        let uri = request.uri();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        key.clear();
        key.reserve(16 + path.len());
        key.push_str(request.method().as_str());
        key.push(' ');
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            // An absolute-form request (through a proxy) names its host.
            key.push_str(scheme);
            key.push_str("://");
            key.push_str(authority.as_str());
        }
        key.push_str(path);
        let base_len = key.len();
        let known = self.learned.get(key);
        if let Some(known) = &known {
            push_vary(key, &known.vary, request.headers());
        }
        (base_len, known)
    }

    /// The stored response for `request`, if it is fresh in L1.
    fn fresh_hit<E, B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        if !is_cacheable(request) {
            return None;
        }
        // The key is written into this thread's buffer: a hit allocates no
        // key of its own.
        let mut key = KEY.try_with(Cell::take).unwrap_or_default();
        let (base_len, known) = self.key_into(request, &mut key);
        let known = known.as_deref().unwrap_or(&NOTHING);
        let lookup = with_tags(&known.tags, |tags| {
            // Counted only if served here: a stale one is counted once, by
            // the lookup of the path that serves it.
            tier::lookup_uncounted::<Http, Loaded<E>>(
                &SITE,
                &self.cache,
                codec::<E>(),
                |w: &mut KeyWriter<'_>| w.lit(&key),
                tags,
                None,
            )
        });
        let answer = match lookup {
            Lookup::Hit(Ok(stored)) => {
                let now = self.cache.inner.clock.now_millis();
                (now < stored.0.fresh_until_ms).then(|| {
                    SITE.counters(&self.cache).l1_hits.bump();
                    self.learn_tags(&key[..base_len], known, &stored);
                    stored.respond(now, "HIT", request.headers())
                })
            }
            _ => None,
        };
        let _ = KEY.try_with(|cell| cell.set(key));
        answer
    }

    /// Starts a background refresh of a stale response, unless one runs.
    #[allow(clippy::too_many_arguments, reason = "what one refresh needs")]
    fn refresh<S, ReqBody, ResBody>(
        &self,
        inner: S,
        parts: RequestParts,
        base: String,
        key: String,
        known: Arc<Known>,
        now: u64,
    ) where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Default + Send + 'static,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let codec = codec::<S::Error>();
        // The stored entry's end as the load path sees it: a shared-tier
        // fill that ends later is a newer one, which ends the refresh.
        let record = Record::new();
        let _ = with_tags(&known.tags, |tags| {
            // The request was counted already.
            tier::lookup_uncounted::<Http, Loaded<S::Error>>(
                &SITE,
                &self.cache,
                codec,
                |w: &mut KeyWriter<'_>| w.lit(&key),
                tags,
                Some(&record),
            )
        });
        let Some(fresh_until_ms) = record.meta().map(|meta| meta.fresh_until_ms) else {
            return;
        };
        let load = with_tags(&known.tags, |tags| {
            Load::renewal(
                &SITE,
                &self.cache,
                codec,
                |w: &mut KeyWriter<'_>| w.lit(&key),
                tags,
                now,
                fresh_until_ms,
            )
        });
        let Some(load) = load else {
            return;
        };

        let load = load.with_lifetime(lifetime_of);
        let request = parts.into_request::<ReqBody>();
        let fetch = self.clone().fetch(inner, request, base, known);
        load.spawn_async::<Http, Loaded<S::Error>, _>(fetch);
    }

    /// Learns the tags of a response another process stored, that this
    /// process has not seen on this URL: its next lookups fence on them.
    fn learn_tags(&self, base: &str, known: &Known, stored: &Stored) {
        if stored.0.tags.iter().any(|tag| !known.tags.contains(tag)) {
            self.learned.learn(base, known, Some(&[]), &stored.0.tags);
        }
    }

    /// Calls the inner service and judges its answer: a response to store,
    /// or one to pass on as it is.
    async fn fetch<S, ReqBody, ResBody>(
        self,
        mut inner: S,
        request: Request<ReqBody>,
        base: String,
        known: Arc<Known>,
    ) -> Loaded<S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        if let Err(e) = poll_fn(|cx| inner.poll_ready(cx)).await {
            return Err(Pass::Error(e));
        }
        let response = inner.call(request).await.map_err(Pass::Error)?;
        let (parts, body) = response.into_parts();
        let verdict = judge(parts.status, &parts.headers);
        let vary = vary_of(&parts.headers);
        let tags = tags_of(&parts.headers);
        let learned = vary
            .as_ref()
            .is_some_and(|vary| vary.iter().any(|name| !known.vary.contains(name)))
            || tags.iter().any(|tag| !known.tags.contains(tag));
        if learned {
            // Keyed and fenced by what it names from the next request on.
            self.learned.learn(&base, &known, vary.as_deref(), &tags);
        }
        let pass = |body: Body| {
            Err(Pass::Response(Box::new(Response::from_parts(
                parts.clone(),
                body,
            ))))
        };
        let (Some(lifetime), Some(_), false) = (verdict, vary, learned) else {
            return pass(Body::new(body));
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body as u64) {
            return pass(Body::new(body));
        }
        let bytes = match collect(body, self.max_body).await {
            Collected::Whole(bytes) => bytes,
            Collected::TooLarge(resumed) => return pass(Body::new(resumed)),
            Collected::Failed => {
                return Err(Pass::Failed(Box::new(marked(
                    Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::from("the response body failed"))
                        .unwrap_or_default(),
                    "MISS",
                ))))
            }
        };
        let now = self.cache.inner.clock.now_millis();
        Ok(Stored::new(parts, bytes, lifetime, tags, now))
    }
}

/// GET and HEAD without `Authorization` are answered from the cache.
fn is_cacheable<B>(request: &Request<B>) -> bool {
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && !request.headers().contains_key(header::AUTHORIZATION)
}

/// Calls `f` with `tags` as a function's rendered tags.
fn with_tags<T>(tags: &[String], f: impl FnOnce(&[Tag<'_>]) -> T) -> T {
    let renders: Vec<_> = tags
        .iter()
        .map(|tag| move |w: &mut KeyWriter<'_>| w.lit(tag))
        .collect();
    let tags: Vec<Tag<'_>> = renders
        .iter()
        .map(|render| Tag {
            escape: Escape::of(""),
            render,
        })
        .collect();
    f(&tags)
}

/// The codec of stored responses.
fn codec<E>() -> Option<ValueCodec> {
    crate::value::shared::<Http, Loaded<E>>()
}

/// How long a stored response is kept: its freshness and stale window.
fn lifetime_of(value: &(dyn Any + Send + Sync)) -> Option<Duration> {
    let stored = value.downcast_ref::<Stored>()?;
    Some(Duration::from_millis(stored.0.keep_ms))
}

/// Appends the values of the `vary` request headers to `key`.
fn push_vary(key: &mut String, vary: &[String], headers: &HeaderMap) {
    for name in vary {
        key.push(' ');
        key.push_str(name);
        key.push('=');
        let mut first = true;
        for value in headers.get_all(name.as_str()) {
            if !first {
                key.push(',');
            }
            first = false;
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
}

/// The request line, headers and extensions (a router's path parameters
/// among them), to call the inner service again.
struct RequestParts(http::request::Parts);

fn request_parts<B>(request: Request<B>) -> RequestParts {
    RequestParts(request.into_parts().0)
}

impl RequestParts {
    fn into_request<B: Default>(self) -> Request<B> {
        Request::from_parts(self.0, B::default())
    }
}

/// How long a response may be stored, from its status and headers: its
/// freshness and its stale window; `None` when it must not be.
fn judge(status: StatusCode, headers: &HeaderMap) -> Option<(Duration, Duration)> {
    // The statuses RFC 9110 §15.1 lets a cache store by default.
    const STORABLE: [u16; 11] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 501];
    if !STORABLE.contains(&status.as_u16()) || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let (mut max_age, mut shared_max_age, mut stale) = (None, None, 0);
    for value in headers.get_all(header::CACHE_CONTROL) {
        let value = value.to_str().ok()?;
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (
                    name.trim().to_owned(),
                    Some(argument.trim().trim_matches('"').to_owned()),
                ),
                None => (directive.clone(), None),
            };
            let seconds = argument.as_deref().and_then(|a| a.parse::<u64>().ok());
            match name.as_str() {
                "no-store" | "no-cache" | "private" => return None,
                "max-age" => max_age = Some(seconds?),
                "s-maxage" => shared_max_age = Some(seconds?),
                "stale-while-revalidate" => stale = seconds?,
                _ => {}
            }
        }
    }
    let lifetime = shared_max_age.or(max_age)?;
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let fresh = lifetime.saturating_sub(age);
    if fresh == 0 && stale == 0 {
        return None;
    }
    Some((Duration::from_secs(fresh), Duration::from_secs(stale)))
}

/// The request headers a response varies on, lower-case; `None` for
/// `Vary: *`, which no key can capture.
fn vary_of(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        for name in value.to_str().ok()?.split(',') {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                return None;
            }
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Some(names)
}

/// The tags of a `Cache-Tag` header, comma-separated.
fn tags_of(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    for value in headers.get_all("cache-tag") {
        let Ok(value) = value.to_str() else { continue };
        for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
    }
    tags.sort();
    tags
}

fn marked(mut response: Response<Body>, label: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(label));
    response
}

/// A stored response: cheap to clone (one reference count), serialized as
/// its parts.
#[derive(Clone, Debug)]
pub(crate) struct Stored(Arc<Parts>);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Parts {
    status: u16,
    headers: Vec<(String, Blob)>,
    body: Blob,
    /// When the response was generated (its `Age` taken off), ms.
    created_ms: u64,
    /// Until when it is fresh, ms.
    fresh_until_ms: u64,
    /// How long it is kept from when it is stored: fresh, then stale.
    keep_ms: u64,
    /// Its `Cache-Tag` tags, sorted.
    tags: Vec<String>,
    /// `headers` as a map, built by the first hit in this process.
    #[serde(skip)]
    built: std::sync::OnceLock<HeaderMap>,
}

impl serde::Serialize for Stored {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Stored {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Parts::deserialize(deserializer).map(|parts| Stored(Arc::new(parts)))
    }
}

/// Headers that belong to one connection, or that the layer sets itself.
fn is_kept(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "age"
            | "x-cache"
    )
}

impl Stored {
    fn new(
        parts: http::response::Parts,
        body: Bytes,
        (fresh, stale): (Duration, Duration),
        tags: Vec<String>,
        now: u64,
    ) -> Stored {
        let age_ms = parts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(1000);
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| is_kept(name))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Blob(Bytes::copy_from_slice(value.as_bytes())),
                )
            })
            .collect();
        let fresh_ms = fresh.as_millis() as u64;
        Stored(Arc::new(Parts {
            status: parts.status.as_u16(),
            headers,
            body: Blob(body),
            created_ms: now.saturating_sub(age_ms),
            fresh_until_ms: now.saturating_add(fresh_ms),
            keep_ms: fresh_ms.saturating_add(stale.as_millis() as u64),
            tags,
            built: std::sync::OnceLock::new(),
        }))
    }

    /// The stored response, with `Age` and `X-Cache`; `304 Not Modified`
    /// without a body when the `asked` request headers' `If-None-Match`
    /// names its `ETag`.
    fn respond(&self, now: u64, label: &'static str, asked: &HeaderMap) -> Response<Body> {
        let parts = &*self.0;
        let not_modified = parts.status == 200 && self.revalidates(asked);
        let mut response = match not_modified {
            true => Response::new(Body::empty()),
            false => Response::new(Body::from(parts.body.0.clone())),
        };
        *response.status_mut() = match not_modified {
            true => StatusCode::NOT_MODIFIED,
            false => StatusCode::from_u16(parts.status).unwrap_or(StatusCode::OK),
        };
        let headers = parts.built.get_or_init(|| {
            let mut map = HeaderMap::with_capacity(parts.headers.len() + 3);
            for (name, value) in &parts.headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_maybe_shared(value.0.clone()),
                ) {
                    map.append(name, value);
                }
            }
            // The length axum (or hyper) would otherwise work out and
            // insert on every hit, growing the map each time.
            let bodiless = parts.status < 200 || parts.status == 204 || parts.status == 304;
            if !bodiless && !map.contains_key(header::CONTENT_LENGTH) {
                map.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(parts.body.0.len()),
                );
            }
            // Placeholders for the two headers every response gets: each
            // clone of the map then has their room, and setting them
            // replaces a value instead of growing the map.
            map.insert(header::AGE, HeaderValue::from_static("0"));
            map.insert(X_CACHE, HeaderValue::from_static("HIT"));
            map
        });
        *response.headers_mut() = headers.clone();
        // A 304 keeps the length of the 200 it stands for (RFC 9110 §8.6),
        // which also keeps axum from declaring a length of 0.
        let headers = response.headers_mut();
        let age = now.saturating_sub(parts.created_ms) / 1000;
        let age = match SMALL.get(age as usize) {
            Some(small) => HeaderValue::from_static(small),
            None => HeaderValue::from(age),
        };
        headers.insert(header::AGE, age);
        headers.insert(X_CACHE, HeaderValue::from_static(label));
        response
    }

    /// Whether `asked` holds an `If-None-Match` naming the stored `ETag`.
    fn revalidates(&self, asked: &HeaderMap) -> bool {
        let mut lists = asked.get_all(header::IF_NONE_MATCH).iter().peekable();
        if lists.peek().is_none() {
            return false;
        }
        let Some((_, etag)) = self.0.headers.iter().find(|(name, _)| name == "etag") else {
            return false;
        };
        let Ok(etag) = std::str::from_utf8(&etag.0) else {
            return false;
        };
        lists.any(|list| {
            list.to_str()
                .is_ok_and(|list| crate::entry::listed(list, etag))
        })
    }
}

/// Bytes serialized as one byte string, not as a sequence of numbers.
#[derive(Debug)]
struct Blob(Bytes);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(Bytes::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(Blob(Bytes::from(out)))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// A body read up to a limit.
enum Collected<B> {
    Whole(Bytes),
    /// Over the limit: what was read, and the rest still to stream.
    TooLarge(Resumed<B>),
    Failed,
}

async fn collect<B: HttpBody<Data = Bytes>>(body: B, max: usize) -> Collected<B> {
    let mut body = Box::pin(body);
    let mut read = VecDeque::new();
    let mut len = 0;
    loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => break,
            Some(Ok(frame)) => {
                // Trailers are not stored.
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    read.push_back(data);
                    if len > max {
                        return Collected::TooLarge(Resumed { read, rest: body });
                    }
                }
            }
            Some(Err(_)) => return Collected::Failed,
        }
    }
    let mut whole = BytesMut::with_capacity(len);
    for chunk in read {
        whole.extend_from_slice(&chunk);
    }
    Collected::Whole(whole.freeze())
}

/// A body whose first chunks were read already.
struct Resumed<B> {
    read: VecDeque<Bytes>,
    rest: Pin<Box<B>>,
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Resumed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(chunk) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        self.rest.as_mut().poll_frame(cx)
    }
}

/// What the layer learned of a URL's responses: the request headers they
/// vary on and the tags they carry.
#[derive(Debug, Default)]
struct Known {
    vary: Vec<String>,
    tags: Vec<String>,
}

/// One shard of [`Learned`].
type Shard = RwLock<HashMap<String, Arc<Known>>>;

/// [`Known`] per URL, in shards, each cleared when full.
struct Learned {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
    none: Arc<Known>,
    /// Whether anything was learned yet: until then a lookup is skipped.
    any: std::sync::atomic::AtomicBool,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            none: Arc::new(Known::default()),
            any: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Learned {
    fn shard(&self, base: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(base) as usize % SHARDS]
    }

    fn get(&self, base: &str) -> Option<Arc<Known>> {
        if !self.any.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let shard = self
            .shard(base)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(base).map(Arc::clone)
    }

    fn learn(&self, base: &str, known: &Known, vary: Option<&[String]>, tags: &[String]) {
        let union = |old: &[String], new: &[String]| {
            let mut all: Vec<String> = old.iter().chain(new).cloned().collect();
            all.sort();
            all.dedup();
            all
        };
        let next = Known {
            vary: union(&known.vary, vary.unwrap_or_default()),
            tags: union(&known.tags, tags),
        };
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut shard = self
            .shard(base)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= LEARNED_PER_SHARD {
            shard.clear();
        }
        shard.insert(base.to_owned(), Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn lifetimes_come_from_s_maxage_then_max_age_less_age() {
        let ok = StatusCode::OK;
        let secs = Duration::from_secs;
        assert_eq!(
            judge(ok, &headers(&[("cache-control", "max-age=60")])),
            Some((secs(60), secs(0)))
        );
        assert_eq!(
            judge(
                ok,
                &headers(&[(
                    "cache-control",
                    "max-age=60, s-maxage=10, stale-while-revalidate=5"
                )])
            ),
            Some((secs(10), secs(5)))
        );
        assert_eq!(
            judge(
                ok,
                &headers(&[("cache-control", "max-age=60"), ("age", "15")])
            ),
            Some((secs(45), secs(0)))
        );
        assert_eq!(
            judge(ok, &headers(&[("cache-control", "Public, MAX-AGE=\"7\"")])),
            Some((secs(7), secs(0)))
        );
    }

    #[test]
    fn what_must_not_be_stored_is_not() {
        let ok = StatusCode::OK;
        for cc in [
            "no-store, max-age=60",
            "private, max-age=60",
            "no-cache, max-age=60",
            "max-age=0",
            "public",
            "max-age=abc",
        ] {
            assert_eq!(judge(ok, &headers(&[("cache-control", cc)])), None, "{cc}");
        }
        assert_eq!(judge(ok, &headers(&[])), None);
        assert_eq!(
            judge(
                ok,
                &headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")])
            ),
            None
        );
        let cc = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(judge(StatusCode::INTERNAL_SERVER_ERROR, &cc), None);
        assert_eq!(judge(StatusCode::CREATED, &cc), None);
        assert!(judge(StatusCode::NOT_FOUND, &cc).is_some());
    }

    #[test]
    fn vary_and_cache_tag_lists_are_read_in_order_without_duplicates() {
        let h = headers(&[("vary", "Accept-Language, accept"), ("vary", "accept")]);
        assert_eq!(
            vary_of(&h),
            Some(vec!["accept".to_owned(), "accept-language".to_owned()])
        );
        assert_eq!(vary_of(&headers(&[("vary", "accept, *")])), None);
        let h = headers(&[
            ("cache-tag", "users, user:7,,users"),
            ("cache-tag", " page "),
        ]);
        assert_eq!(tags_of(&h), ["page", "user:7", "users"]);
        let request = headers(&[("accept-language", "en"), ("accept-language", "fr")]);
        let mut key = "GET /a".to_owned();
        push_vary(
            &mut key,
            &["accept-language".to_owned(), "x".to_owned()],
            &request,
        );
        assert_eq!(key, "GET /a accept-language=en,fr x=");
    }
}
