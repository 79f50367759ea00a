//! What the cache tells `tracing` (feature `tracing`): a `debug` span
//! `cachette.load` around every body run, `warn` events for shared-tier
//! errors (at most one a second per cache), the breaker opening and
//! closing and stored values served because a body failed, and an `info`
//! event when the invalidation channel reconnects and L1 is voided. The L1
//! hit path calls nothing here. Keys may appear; values and credentials
//! never do (shared-tier errors are worded without either).
//!
//! Every span and event has the target `cachette` (filter with
//! `cachette=debug`).
//!
//! Without the feature every function here is empty and inlined away, and
//! the load path runs its body without a span.

#[cfg(feature = "tracing")]
use std::future::Future;
#[cfg(feature = "tracing")]
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::l2::L2Error;
#[cfg(feature = "tracing")]
use crate::spec::Tier;

/// Runs `body` inside the `cachette.load` span, and records its outcome
/// (`ok` or `error`, from `failed`) when it ends.
#[cfg(feature = "tracing")]
pub(crate) async fn load<R>(
    function: &str,
    key: &str,
    tier: Tier,
    body: impl Future<Output = R>,
    failed: impl FnOnce(&R) -> bool,
) -> R {
    use tracing::Instrument;
    let span = load_span(function, key, tier);
    let ret = body.instrument(span.clone()).await;
    record_outcome(&span, failed(&ret));
    ret
}

/// [`load`] for a sync body.
#[cfg(feature = "tracing")]
pub(crate) fn load_blocking<R>(
    function: &str,
    key: &str,
    tier: Tier,
    body: impl FnOnce() -> R,
    failed: impl FnOnce(&R) -> bool,
) -> R {
    let span = load_span(function, key, tier);
    let ret = span.in_scope(body);
    record_outcome(&span, failed(&ret));
    ret
}

#[cfg(feature = "tracing")]
fn load_span(function: &str, key: &str, tier: Tier) -> tracing::Span {
    tracing::debug_span!(
        target: "cachette",
        "cachette.load",
        function,
        key,
        tier = tier_name(tier),
        outcome = tracing::field::Empty
    )
}

#[cfg(feature = "tracing")]
fn record_outcome(span: &tracing::Span, failed: bool) {
    if !span.is_disabled() {
        span.record("outcome", if failed { "error" } else { "ok" });
    }
}

#[cfg(feature = "tracing")]
fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::L1 => "l1",
        Tier::L2 => "l2",
        Tier::Both => "both",
    }
}

/// Rate-limits [`l2_error`]: the last time one was emitted, in ms since the
/// cache's clock started counting.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    #[cfg(feature = "tracing")]
    last_ms: AtomicU64,
}

/// A shared-tier operation failed; the call goes on without it.
#[inline]
pub(crate) fn l2_error(limiter: &Limiter, now_ms: u64, function: &str, error: &L2Error) {
    #[cfg(feature = "tracing")]
    {
        let last = limiter.last_ms.load(Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= 1_000;
        if due
            && limiter
                .last_ms
                .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            let error = crate::Error::from(error.clone());
            tracing::warn!(
            target: "cachette",
                    function,
                    %error,
                    "cachette: a shared-tier operation failed; calls go on without it (at most one such event a second)"
                );
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (limiter, now_ms, function, error);
}

/// The breaker opened: shared-tier calls are skipped until a probe passes.
#[inline]
pub(crate) fn breaker_opened(cool_down_ms: u64) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "cachette",
        cool_down_ms,
        "cachette: the shared tier keeps failing; calls skip it until a probe passes"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = cool_down_ms;
}

/// The breaker closed: a probe passed.
#[inline]
pub(crate) fn breaker_closed() {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "cachette", "cachette: the shared tier answers again; calls use it");
}

/// A body failed and the call answered with the stored value.
#[inline]
pub(crate) fn served_stale_on_error(function: &str, key: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "cachette",
        function,
        key,
        "cachette: the body failed; the call answered with the stored value (stale_if_error)"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (function, key);
}

/// The invalidation channel is subscribed again after a disconnection;
/// L1's entries were voided, since invalidations may have been missed.
#[inline]
pub(crate) fn channel_reconnected(channel: &str) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: "cachette",
        channel,
        "cachette: the invalidation channel reconnected; L1 entries were dropped, as invalidations may have been missed"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = channel;
}
