//! The cache handle: what `#[cache]` functions read and fill, and the
//! invalidations behind its public methods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::CacheClock;
use crate::config::Builder;
use crate::error::Error;
use crate::flight::Flights;
use crate::invalidate::{GenId, Generations};
use crate::l1::Store;
use crate::l2::invalidations::{propagate, Change as Pending};
use crate::l2::L2;
use crate::stats::{Counters, Registry, Stats};
use crate::wait::{block_now, Awaiting, Blocking, Wait};

/// A two-tier cache: what `#[cache]` functions read and fill.
///
/// Cheap to clone; clones share everything. Without
/// [`set_global`](crate::set_global), cached functions use an embedded
/// L1-only cache, so nothing needs setting up.
///
/// # Example
///
/// ```
/// use cachette::Cache;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), cachette::Error> {
/// let cache = Cache::builder()
///     .prefix("myapp")
///     .l1_capacity(50_000)
///     .l1_max_ttl(Duration::from_secs(60))
///     .build_local()?;
/// cache.invalidate_tag_blocking("users")?;
/// assert!(cache.stats().functions.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) prefix: String,
    pub(crate) l1: Arc<Store>,
    pub(crate) l1_max_ttl: Option<Duration>,
    pub(crate) clock: CacheClock,
    pub(crate) generations: Arc<Generations>,
    /// The shared tier, when one is configured.
    pub(crate) l2: Option<Arc<L2>>,
    pub(crate) flights: Flights,
    /// The keys being refreshed in this process (§2a).
    pub(crate) refreshes: Arc<crate::refresh::Refreshes>,
    /// Runs sync functions' background refreshes.
    pub(crate) worker: crate::refresh::Worker,
    pub(crate) registry: Registry,
    /// L1 fills, for the `cachette_l1_entries` gauge.
    #[cfg(feature = "metrics")]
    pub(crate) l1_fills: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// Stores `entry` in L1, and now and then (every 256 fills) sets the
    /// `cachette_l1_entries{cache}` gauge to the entries L1 holds (feature
    /// `metrics`).
    #[inline]
    pub(crate) fn fill_l1(&self, key: &str, entry: crate::l1::Entry) {
        self.l1.insert(key, entry);
        #[cfg(feature = "metrics")]
        if self
            .l1_fills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(256)
        {
            crate::stats::l1_entries_metric(&self.prefix, self.l1.entries());
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.inner.prefix)
            .field("l1", &self.inner.l1)
            .field("l1_max_ttl", &self.inner.l1_max_ttl)
            .field("l2", &self.inner.l2)
            .finish_non_exhaustive()
    }
}

/// A fresh id for each cache built, so sites can tell caches apart.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Cache {
    /// A builder with every setting at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// An in-process (L1-only) cache with default settings, built without
    /// `async`.
    ///
    /// ```
    /// let cache = cachette::Cache::local();
    /// cache.clear_blocking().unwrap();
    /// ```
    pub fn local() -> Cache {
        match Builder::default().build_local() {
            Ok(cache) => cache,
            Err(_) => unreachable!("the default configuration is valid"),
        }
    }

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The prefix given to the builder.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn counters(&self, name: &'static str) -> Arc<Counters> {
        self.inner.registry.counters(name)
    }

    /// A snapshot of every function's counters on this cache.
    pub fn stats(&self) -> Stats {
        self.inner.registry.snapshot()
    }

    /// Drops one entry, by the key its function's `{fn}_key` companion
    /// returns.
    ///
    /// # Concurrency
    ///
    /// When this returns, this process misses on the key, and a body run that
    /// began before it never stores its result. Other processes drop their
    /// copies when the announcement reaches them.
    ///
    /// # Errors
    ///
    /// None for an in-process cache. With a shared tier, the error says
    /// whether it timed out ([`Error::L2Timeout`]), was skipped because
    /// the tier is known to be down ([`Error::L2Unavailable`]), could not
    /// connect ([`Error::L2Connection`]) or was refused
    /// ([`Error::L2Refused`]); L1 and this process's generations are
    /// updated first, whatever happens to the shared tier.
    pub async fn invalidate_key(&self, key: &str) -> Result<(), Error> {
        self.invalidate(Awaiting, Change::Key(key)).await
    }

    /// [`invalidate_key`](Self::invalidate_key) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_key_blocking(&self, key: &str) -> Result<(), Error> {
        block_now(self.invalidate(Blocking, Change::Key(key)))
    }

    /// Drops every entry carrying `tag`, in O(1) whatever their number.
    ///
    /// # Concurrency
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        self.invalidate(Awaiting, Change::Id(GenId::Tag(tag.to_owned())))
            .await
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_tag_blocking(&self, tag: &str) -> Result<(), Error> {
        block_now(self.invalidate(Blocking, Change::Id(GenId::Tag(tag.to_owned()))))
    }

    /// Drops every entry of functions with `namespace = "<namespace>"`, in
    /// O(1): the namespace's generation moves on and old entries stop
    /// matching.
    ///
    /// # Concurrency
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub async fn invalidate_namespace(&self, namespace: &str) -> Result<(), Error> {
        self.invalidate(Awaiting, Change::Id(GenId::Namespace(namespace.to_owned())))
            .await
    }

    /// [`invalidate_namespace`](Self::invalidate_namespace) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_namespace_blocking(&self, namespace: &str) -> Result<(), Error> {
        block_now(self.invalidate(Blocking, Change::Id(GenId::Namespace(namespace.to_owned()))))
    }

    /// Drops every entry, in O(1) in the shared tier too.
    ///
    /// # Concurrency
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub async fn clear(&self) -> Result<(), Error> {
        self.invalidate(Awaiting, Change::Id(GenId::Clear)).await
    }

    /// [`clear`](Self::clear) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn clear_blocking(&self) -> Result<(), Error> {
        block_now(self.invalidate(Blocking, Change::Id(GenId::Clear)))
    }

    /// [`invalidate_key`](Self::invalidate_key) with the caller's way of
    /// waiting; write-throughs begin with it.
    pub(crate) async fn invalidate_key_with<W: Wait>(
        &self,
        wait: W,
        key: &str,
    ) -> Result<(), Error> {
        self.invalidate(wait, Change::Key(key)).await
    }

    /// Applies an invalidation here, then tells the shared tier; `wait`
    /// says how the caller waits for it (a sync caller for at most two
    /// shared-tier operations).
    async fn invalidate<W: Wait>(&self, wait: W, change: Change<'_>) -> Result<(), Error> {
        crate::stats::invalidation_metric(match &change {
            Change::Key(_) => "key",
            Change::Id(GenId::Tag(_)) => "tag",
            Change::Id(GenId::Namespace(_)) => "namespace",
            Change::Id(_) => "clear",
        });
        let Some((l2, pending)) = self.invalidate_locally(change) else {
            return Ok(());
        };
        let work = propagate(
            Arc::clone(&l2),
            Arc::clone(&self.inner.generations),
            pending,
        );
        wait.l2(&l2, l2.budget(2), work)
            .await
            .unwrap_or(Err(Error::L2Timeout))
    }

    /// Applies an invalidation to this process: at once, whatever happens
    /// to the shared tier. Returns what the shared tier must hear.
    fn invalidate_locally(&self, change: Change<'_>) -> Option<(Arc<L2>, Pending)> {
        let inner = &*self.inner;
        match &change {
            Change::Key(key) => {
                inner.generations.invalidate_key(key, None);
                inner.l1.remove(key);
            }
            // A cleared cache's entries are void by their fences; the store
            // keeps them until evicted or overwritten (O(1)).
            Change::Id(id) => inner.generations.invalidate(id, None),
        }
        // Without a shared tier there is nothing to tell, and nothing to copy.
        let l2 = inner.l2.clone()?;
        let pending = match change {
            Change::Key(key) => Pending {
                id: GenId::KeySlot(inner.generations.slot(key)),
                key: Some(key.to_owned()),
            },
            Change::Id(id) => Pending { id, key: None },
        };
        Some((l2, pending))
    }
}

/// An invalidation, as asked for.
enum Change<'a> {
    Key(&'a str),
    Id(GenId),
}
