//! The static description of one cached function, built by generated code.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::handle::Cache;
use crate::key::Escape;
use crate::stats::Counters;

/// Which tiers a function's entries live in (`tier = ".."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// In-process only; needs no serde bounds.
    L1,
    /// Shared tier only. With no shared tier configured, entries live in L1
    /// so the function is still cached.
    L2,
    /// Both tiers (the default).
    Both,
}

/// Everything the `#[cache(...)]` arguments say about one function.
#[derive(Debug)]
pub struct Spec {
    /// Name in stats (`name = ".."` or `module_path::fn_name`); a method's
    /// default name gets its type from [`Site::owned_by`].
    pub name: &'static str,
    /// Time to live of a present value.
    pub ttl: Duration,
    /// Relative spread of the TTL, `0 <= jitter < 1`.
    pub jitter: f64,
    /// Time to live of an absent value; `None` means absent values are not cached.
    pub negative_ttl: Option<Duration>,
    /// Single-flight loading.
    pub lock: bool,
    /// Versioned namespace.
    pub namespace: Option<&'static str>,
    /// Schema version baked into the key.
    pub version: u32,
    /// Cap on how long entries live in L1.
    pub l1_ttl: Option<Duration>,
    /// Which tiers to use.
    pub tier: Tier,
    /// What values must escape inside the key.
    pub key_escape: Escape,
    /// When stored values are refreshed and served past their TTL.
    pub freshness: Freshness,
}

/// The freshness arguments of one function (`stale`, `stale_if_error`,
/// `early`, `refresh_ahead`); [`Freshness::NONE`] when none is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freshness {
    /// After the TTL, how long the stored value is served while one refresh
    /// runs.
    pub stale: Duration,
    /// After the TTL, how long the stored value stands in for an error of
    /// the body.
    pub stale_if_error: Duration,
    /// XFetch's beta: a fresh hit starts a refresh with probability
    /// `exp(-(fresh_until - now) / (beta * compute_time))`; 0 is off.
    pub early: f64,
    /// A fresh hit with less than this left of its TTL starts a refresh;
    /// zero is off.
    pub refresh_ahead: Duration,
    /// Refreshes run on a task or thread of their own
    /// (`refresh = "background"`), not in the call that finds them due.
    pub in_background: bool,
}

impl Freshness {
    /// No freshness argument: entries end at their TTL.
    pub const NONE: Freshness = Freshness {
        stale: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        early: 0.0,
        refresh_ahead: Duration::ZERO,
        in_background: false,
    };

    /// How long past its TTL an entry is kept.
    pub(crate) fn window(&self) -> Duration {
        self.stale.max(self.stale_if_error)
    }

    /// Whether a fresh hit may start a refresh.
    #[inline]
    pub(crate) fn refreshes_early(&self) -> bool {
        self.early > 0.0 || !self.refresh_ahead.is_zero()
    }
}

/// One call site's handle on its [`Spec`], caching which counters to bump.
///
/// Generated code keeps one in a `static`; several sites of the same function
/// (the wrapper and its companions) share counters by name.
#[derive(Debug)]
pub struct Site {
    pub(crate) spec: Spec,
    bound: OnceLock<Bound>,
    /// The name in stats when it is not `spec.name`: that of a method, with
    /// its type (see [`Site::owned_by`]).
    name: OnceLock<&'static str>,
}

#[derive(Debug)]
struct Bound {
    cache_id: u64,
    counters: Arc<Counters>,
}

/// Counters borrowed from the site's binding, or fetched from another cache.
pub(crate) enum CountersRef {
    Bound(&'static Arc<Counters>),
    Other(Arc<Counters>),
}

impl CountersRef {
    /// The counters, owned.
    pub(crate) fn into_arc(self) -> Arc<Counters> {
        match self {
            CountersRef::Bound(c) => Arc::clone(c),
            CountersRef::Other(c) => c,
        }
    }
}

impl std::ops::Deref for CountersRef {
    type Target = Counters;
    #[inline]
    fn deref(&self) -> &Counters {
        match self {
            CountersRef::Bound(c) => c,
            CountersRef::Other(c) => c,
        }
    }
}

impl Site {
    /// A site for `spec`.
    pub const fn new(spec: Spec) -> Site {
        Site {
            spec,
            bound: OnceLock::new(),
            name: OnceLock::new(),
        }
    }

    /// This site as that of a method of the type `type_name()` names: its
    /// default name in stats becomes `path::Type::method` (generic
    /// arguments left out), so that two types' methods of the same name
    /// are told apart. Called by the generated code of a method without
    /// `name = ".."`, before each use; after the first it costs one load.
    #[inline]
    pub fn owned_by(&'static self, type_name: fn() -> &'static str) -> &'static Site {
        if self.name.get().is_none() {
            self.name
                .get_or_init(|| method_name(type_name(), self.spec.name));
        }
        self
    }

    /// The function's name in stats: `name = ".."`, `module::function`, or
    /// `module::Type::method` for a method.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.name.get().copied().unwrap_or(self.spec.name)
    }

    /// The function's spec.
    #[inline]
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The counters for this function on `cache`. The first cache a site
    /// meets is remembered, so the common one-cache case costs one compare.
    #[inline]
    pub(crate) fn counters(&'static self, cache: &Cache) -> CountersRef {
        if let Some(bound) = self.bound.get() {
            if bound.cache_id == cache.id() {
                return CountersRef::Bound(&bound.counters);
            }
            return CountersRef::Other(cache.counters(self.name()));
        }
        let bound = self.bound.get_or_init(|| Bound {
            cache_id: cache.id(),
            counters: cache.counters(self.name()),
        });
        if bound.cache_id == cache.id() {
            CountersRef::Bound(&bound.counters)
        } else {
            CountersRef::Other(cache.counters(self.name()))
        }
    }
}

/// `path::Type::method` from the type's name (`path::Type<Args>`) and the
/// default name (`module::method`). Leaked: one string per method, made
/// once.
fn method_name(type_name: &str, default: &'static str) -> &'static str {
    let owner = type_name.split('<').next().unwrap_or(type_name);
    let method = default
        .rsplit_once("::")
        .map_or(default, |(_, method)| method);
    Box::leak(format!("{owner}::{method}").into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::method_name;

    #[test]
    fn a_method_is_named_after_its_type_without_generic_arguments() {
        assert_eq!(
            method_name("app::repo::Repo", "app::repo::get"),
            "app::repo::Repo::get"
        );
        assert_eq!(
            method_name("app::Repo<alloc::string::String, u8>", "app::get"),
            "app::Repo::get"
        );
        assert_eq!(method_name("app::Repo", "get"), "app::Repo::get");
    }
}
