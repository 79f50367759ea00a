//! HTTP validators and response caching (feature `axum`, §5b).
//!
//! [`Conditional`] turns what a `{fn}_entry` companion returns into an
//! axum response with `ETag`, `Last-Modified`, `Age` and `Cache-Control`
//! set from the entry, and answers a conditional request whose validator
//! still matches with `304 Not Modified` and no body. [`CacheLayer`] caches
//! whole GET and HEAD responses as a reverse proxy does, purged by tag.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum_core::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use crate::entry::Entry;

mod layer;

pub use layer::{CacheFuture, CacheLayer, CacheService, DEFAULT_MAX_BODY};

/// Who may store the response, as `Cache-Control` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Visibility {
    /// Neither `public` nor `private`: the HTTP default.
    #[default]
    Unstated,
    /// `public`: shared caches (proxies, CDNs) may store it.
    Public,
    /// `private`: only the client's own cache may store it.
    Private,
}

/// A cached value as a conditional HTTP response.
///
/// Built from the request's headers and an [`Entry`] (from `{fn}_entry`,
/// mapped to something that is a response, such as `axum::Json`):
///
/// - `If-None-Match` naming the entry's ETag (compared weakly, `*`
///   included), or, without `If-None-Match`, an `If-Modified-Since` after
///   the second the entry was created in, gives `304 Not Modified` with the
///   validators and no body (`Last-Modified` has whole seconds, so a date
///   in the entry's own second could name an older value made in that
///   second: the ETag is the validator to rely on);
/// - otherwise the value's own response, with `ETag`, `Last-Modified`
///   (`created`), `Age` and `Cache-Control: max-age=<until fresh_until>`,
///   plus `stale-while-revalidate` and `stale-if-error` from the function's
///   `stale` and `stale_if_error` windows, and `public` or `private` as
///   chosen.
///
/// The headers go on success responses only: a value whose response is an
/// error status is passed on as it is.
///
/// # Example
///
/// ```
/// use axum::extract::Path;
/// use axum::http::HeaderMap;
/// use axum::Json;
/// use cachette::cache;
/// use cachette::http::Conditional;
///
/// #[cache(key = "article:<id>", ttl = 60, stale = 300)]
/// async fn article(id: u64) -> String {
///     format!("article {id}")
/// }
///
/// async fn get_article(Path(id): Path<u64>, headers: HeaderMap) -> Conditional<Json<String>> {
///     Conditional::new(&headers, article_entry(id).await.map(Json)).public()
/// }
///
/// let app: axum::Router = axum::Router::new().route("/articles/{id}", axum::routing::get(get_article));
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct Conditional<T> {
    entry: Entry<T>,
    not_modified: bool,
    visibility: Visibility,
}

impl<T> Conditional<T> {
    /// The response to a request with `request` headers for `entry`.
    pub fn new(request: &HeaderMap, entry: Entry<T>) -> Self {
        let not_modified = is_not_modified(request, &entry);
        Conditional {
            entry,
            not_modified,
            visibility: Visibility::Unstated,
        }
    }

    /// Marks the response `public`: shared caches may store it.
    pub fn public(mut self) -> Self {
        self.visibility = Visibility::Public;
        self
    }

    /// Marks the response `private`: only the client may store it.
    pub fn private(mut self) -> Self {
        self.visibility = Visibility::Private;
        self
    }

    /// Whether this is a `304 Not Modified`.
    pub fn is_not_modified(&self) -> bool {
        self.not_modified
    }

    /// The entry it answers with.
    pub fn entry(&self) -> &Entry<T> {
        &self.entry
    }
}

/// Whether the request's validators still match `entry` (RFC 9110 §13.2.2:
/// `If-None-Match` first; `If-Modified-Since` only without it).
fn is_not_modified<T>(request: &HeaderMap, entry: &Entry<T>) -> bool {
    let mut tags = request.get_all(header::IF_NONE_MATCH).iter().peekable();
    if tags.peek().is_some() {
        return tags.any(|value| value.to_str().is_ok_and(|v| entry.etag.matches(v)));
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok());
    // `Last-Modified` has whole seconds, so two values made in one second
    // share it: only a date after the entry's second proves the client
    // has this value (RFC 9110 §8.8.2.2). `If-None-Match` has no such gap.
    since.is_some_and(|since| whole_seconds(entry.created) < since)
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

/// `max-age=N[, stale-while-revalidate=S][, stale-if-error=E][, public]`.
pub(crate) fn cache_control<T>(entry: &Entry<T>, visibility: Visibility) -> String {
    let mut value = String::new();
    // To the nearest second: a value just filled says its whole TTL.
    let max_age = (entry.max_age().as_millis() + 500) / 1000;
    let _ = write!(value, "max-age={max_age}");
    if !entry.stale_while_revalidate.is_zero() {
        let _ = write!(
            value,
            ", stale-while-revalidate={}",
            entry.stale_while_revalidate.as_secs()
        );
    }
    if !entry.stale_if_error.is_zero() {
        let _ = write!(value, ", stale-if-error={}", entry.stale_if_error.as_secs());
    }
    match visibility {
        Visibility::Unstated => {}
        Visibility::Public => value.push_str(", public"),
        Visibility::Private => value.push_str(", private"),
    }
    value
}

/// Sets the validators and freshness of `entry` on `headers`.
fn set_headers<T>(headers: &mut HeaderMap, entry: &Entry<T>, visibility: Visibility) {
    let mut set = |name, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, entry.etag.to_string());
    set(
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(whole_seconds(entry.created)),
    );
    set(header::AGE, entry.age().as_secs().to_string());
    set(header::CACHE_CONTROL, cache_control(entry, visibility));
}

impl<T: IntoResponse> IntoResponse for Conditional<T> {
    fn into_response(self) -> Response {
        let Conditional {
            entry,
            not_modified,
            visibility,
        } = self;
        if not_modified {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_headers(response.headers_mut(), &entry, visibility);
            return response;
        }
        let (value, facts) = entry.split();
        let mut response = value.into_response();
        if response.status().is_success() {
            set_headers(response.headers_mut(), &facts, visibility);
        }
        response
    }
}
