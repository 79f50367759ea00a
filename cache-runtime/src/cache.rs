//! The cache handle, its builder and the global instance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::flight::Flights;
use crate::invalidate::Generations;
use crate::l1::{L1Store, MokaStore};
use crate::stats::{Counters, Registry, Stats};

/// Entries kept in L1 when the builder does not say.
pub const DEFAULT_L1_CAPACITY: u64 = 10_000;

/// A two-tier cache: what `#[cache]` functions read and fill.
///
/// Cheap to clone; clones share everything. Without
/// [`set_global`](crate::set_global), cached functions use an embedded
/// L1-only cache, so nothing needs setting up.
///
/// # Example
///
/// ```
/// use cache_runtime::Cache;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), cache_runtime::Error> {
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
    id: u64,
    prefix: String,
    pub(crate) l1: Box<dyn L1Store>,
    pub(crate) l1_max_ttl: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) generations: Generations,
    pub(crate) flights: Flights,
    registry: Registry,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.inner.prefix)
            .field("l1", &self.inner.l1)
            .field("l1_max_ttl", &self.inner.l1_max_ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Cache`]; see [`Cache::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    prefix: String,
    l1_capacity: u64,
    l1_max_ttl: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            l1_capacity: DEFAULT_L1_CAPACITY,
            l1_max_ttl: None,
            clock: None,
        }
    }
}

impl Builder {
    /// Prepended to every key in the shared tier, so services sharing one
    /// Redis stay apart. Empty by default.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How many entries L1 holds before evicting the least useful
    /// ([`DEFAULT_L1_CAPACITY`] by default).
    pub fn l1_capacity(mut self, entries: u64) -> Self {
        self.l1_capacity = entries;
        self
    }

    /// The longest any entry stays in L1, whatever its TTL. It bounds how
    /// long another process's invalidation can go unseen. Unbounded by
    /// default.
    pub fn l1_max_ttl(mut self, max: Duration) -> Self {
        self.l1_max_ttl = Some(max);
        self
    }

    /// The clock freshness is judged by; tests pass a
    /// [`ManualClock`](crate::ManualClock) to move time without sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `l1_max_ttl` is zero.
    pub async fn build(self) -> Result<Cache, Error> {
        self.build_local()
    }

    /// Builds an in-process cache without `async`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `l1_max_ttl` is zero.
    pub fn build_local(self) -> Result<Cache, Error> {
        if self.l1_max_ttl == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "`l1_max_ttl` must be positive".to_owned(),
            ));
        }
        Ok(Cache {
            inner: Arc::new(Inner {
                id: next_id(),
                prefix: self.prefix,
                l1: Box::new(MokaStore::new(self.l1_capacity)),
                l1_max_ttl: self.l1_max_ttl,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                generations: Generations::new(),
                flights: Flights::default(),
                registry: Registry::default(),
            }),
        })
    }
}

fn next_id() -> u64 {
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
    /// let cache = cache_runtime::Cache::local();
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
    /// began before it never stores its result (G6, G7).
    ///
    /// # Errors
    ///
    /// None yet for an in-process cache; the shared tier reports when it
    /// could not be reached (after L1 is already updated).
    pub async fn invalidate_key(&self, key: &str) -> Result<(), Error> {
        self.invalidate_key_blocking(key)
    }

    /// [`invalidate_key`](Self::invalidate_key) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_key_blocking(&self, key: &str) -> Result<(), Error> {
        self.inner.generations.invalidate_key(key);
        self.inner.l1.remove(key);
        Ok(())
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
        self.invalidate_tag_blocking(tag)
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_tag_blocking(&self, tag: &str) -> Result<(), Error> {
        self.inner.generations.invalidate_tag(tag);
        Ok(())
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
        self.invalidate_namespace_blocking(namespace)
    }

    /// [`invalidate_namespace`](Self::invalidate_namespace) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_namespace_blocking(&self, namespace: &str) -> Result<(), Error> {
        self.inner.generations.invalidate_namespace(namespace);
        Ok(())
    }

    /// Drops every entry.
    ///
    /// # Concurrency
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub async fn clear(&self) -> Result<(), Error> {
        self.clear_blocking()
    }

    /// [`clear`](Self::clear) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn clear_blocking(&self) -> Result<(), Error> {
        self.inner.generations.clear();
        self.inner.l1.clear();
        Ok(())
    }
}

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Makes `cache` the one cached functions use when they name no `cache = ..`.
///
/// Call it once at start-up, before any cached function runs; without it,
/// functions use an embedded L1-only cache.
///
/// # Errors
///
/// [`Error::GlobalAlreadySet`] if it was set before, or a cached function
/// already ran on the embedded default.
///
/// ```
/// let cache = cache_runtime::Cache::local();
/// cache_runtime::set_global(cache.clone()).unwrap();
/// assert!(cache_runtime::set_global(cache).is_err());
/// ```
pub fn set_global(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::GlobalAlreadySet)
}

/// The global cache: the one given to [`set_global`], or the embedded
/// L1-only default.
#[inline]
pub fn global() -> &'static Cache {
    GLOBAL.get_or_init(Cache::local)
}

/// [`Cache::invalidate_key`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_key(key: &str) -> Result<(), Error> {
    global().invalidate_key(key).await
}

/// [`Cache::invalidate_tag`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_tag(tag: &str) -> Result<(), Error> {
    global().invalidate_tag(tag).await
}

/// [`Cache::invalidate_namespace`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_namespace(namespace: &str) -> Result<(), Error> {
    global().invalidate_namespace(namespace).await
}

/// [`Cache::clear`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn clear() -> Result<(), Error> {
    global().clear().await
}

/// [`Cache::invalidate_key_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_key_blocking(key: &str) -> Result<(), Error> {
    global().invalidate_key_blocking(key)
}

/// [`Cache::invalidate_tag_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_tag_blocking(tag: &str) -> Result<(), Error> {
    global().invalidate_tag_blocking(tag)
}

/// [`Cache::invalidate_namespace_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn invalidate_namespace_blocking(namespace: &str) -> Result<(), Error> {
    global().invalidate_namespace_blocking(namespace)
}

/// [`Cache::clear_blocking`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub fn clear_blocking() -> Result<(), Error> {
    global().clear_blocking()
}
