//! The cache handle, its builder and the global instance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::flight::Flights;
use crate::invalidate::{GenId, Generations};
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
    pub(crate) l1: Arc<dyn L1Store>,
    pub(crate) l1_max_ttl: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) generations: Arc<Generations>,
    /// The shared tier, when one is configured.
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<Arc<crate::l2::Shared>>,
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
    #[cfg(feature = "redis")]
    l2: Option<crate::l2::L2Config>,
    #[cfg(feature = "redis")]
    l2_settings: L2Settings,
}

/// Shared-tier settings, kept apart from where the tier is so either can be
/// given first.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub(crate) struct L2Settings {
    pub(crate) timeout: Duration,
    pub(crate) codec: crate::codec::CodecKind,
    pub(crate) max_value_size: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) connection_per_runtime: bool,
}

/// How long a shared-tier operation may take by default.
#[cfg(feature = "redis")]
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest value stored in the shared tier by default.
#[cfg(feature = "redis")]
pub const DEFAULT_MAX_VALUE_SIZE: usize = 8 << 20;
/// How long a cross-process load may hold its lock by default.
#[cfg(feature = "redis")]
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// `l1_max_ttl` when a shared tier is configured and none is given.
#[cfg(feature = "redis")]
pub const DEFAULT_SHARED_L1_MAX_TTL: Duration = Duration::from_secs(60);

impl Default for Builder {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            l1_capacity: DEFAULT_L1_CAPACITY,
            l1_max_ttl: None,
            clock: None,
            #[cfg(feature = "redis")]
            l2: None,
            #[cfg(feature = "redis")]
            l2_settings: L2Settings {
                timeout: DEFAULT_L2_TIMEOUT,
                codec: crate::codec::CodecKind::Bincode,
                max_value_size: DEFAULT_MAX_VALUE_SIZE,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
                connection_per_runtime: !cfg!(panic = "abort"),
            },
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
    /// default without a shared tier; 60 s with one.
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

    /// A shared tier in Redis, by redis-rs URL: `redis://host:port/db`,
    /// `redis://user:password@host:port/db`, or `rediss://` for TLS (with the
    /// `tls` feature). The connection reconnects by itself.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: &str) -> Self {
        self.l2 = Some(crate::l2::L2Config {
            urls: vec![url.to_owned()],
            cluster: false,
        });
        self
    }

    /// A shared tier in Redis Cluster, given some of its nodes' URLs.
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.l2 = Some(crate::l2::L2Config {
            urls: urls.into_iter().map(|u| u.as_ref().to_owned()).collect(),
            cluster: true,
        });
        self
    }

    /// How long one shared-tier operation may take before the call goes on
    /// without it ([`DEFAULT_L2_TIMEOUT`] by default).
    #[cfg(feature = "redis")]
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_settings.timeout = timeout;
        self
    }

    /// The format values are stored in ([`Bincode`](crate::Bincode) by
    /// default). A value written in another format is a miss.
    #[cfg(feature = "redis")]
    pub fn codec(mut self, codec: impl crate::codec::Codec) -> Self {
        self.l2_settings.codec =
            crate::codec::CodecKind::of(codec.id()).unwrap_or(crate::codec::CodecKind::Bincode);
        self
    }

    /// The largest stored entry, in bytes ([`DEFAULT_MAX_VALUE_SIZE`] by
    /// default). Larger values stay in L1 only; larger stored entries are
    /// misses.
    #[cfg(feature = "redis")]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.l2_settings.max_value_size = bytes;
        self
    }

    /// How long a cross-process `lock` is held at most: after it, a waiting
    /// process runs the body itself ([`DEFAULT_LOCK_TIMEOUT`] by default).
    #[cfg(feature = "redis")]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.l2_settings.lock_timeout = timeout;
        self
    }

    /// Whether each tokio runtime that calls the cache gets a Redis
    /// connection of its own, driven by that runtime. On by default, except
    /// in builds with `panic = "abort"`.
    ///
    /// A connection is driven by a task of one runtime; a caller in another
    /// runtime reaches it through two thread switches, which cost more than
    /// the round trip to a nearby Redis. With a connection per runtime, an
    /// L2 hit costs about what a hand-written redis-rs call does. A
    /// runtime's connection is opened in the background once it has made 32
    /// calls over at least 100 ms (calls before, and short-lived runtimes,
    /// go through the cache's own runtime) and closed when the runtime shuts
    /// down.
    ///
    /// Such a runtime needs I/O and timers enabled, as `#[tokio::main]`,
    /// `#[tokio::test]` and `Runtime::new` have them. In a runtime without,
    /// the task opening the connection panics: tokio prints the message
    /// once and the calls go on through the cache's own runtime; in a
    /// `panic = "abort"` build the process would end, hence the default
    /// there. Sync functions called outside any runtime drive their own
    /// thread's connection either way.
    #[cfg(feature = "redis")]
    pub fn l2_connection_per_runtime(mut self, on: bool) -> Self {
        self.l2_settings.connection_per_runtime = on;
        self
    }

    /// Builds the cache, connecting to the shared tier if one is
    /// configured.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero duration or a malformed URL;
    /// [`Error::L2`] when Redis cannot be reached at start-up (later
    /// outages only slow calls down).
    pub async fn build(self) -> Result<Cache, Error> {
        #[cfg(feature = "redis")]
        if let Some(l2) = self.l2.clone() {
            return self.build_shared(l2).await;
        }
        self.build_local()
    }

    #[cfg(feature = "redis")]
    async fn build_shared(mut self, l2: crate::l2::L2Config) -> Result<Cache, Error> {
        let settings = self.l2_settings.clone();
        for (name, value) in [
            ("l2_timeout", settings.timeout),
            ("lock_timeout", settings.lock_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig(format!("`{name}` must be positive")));
            }
        }
        self.l1_max_ttl = self.l1_max_ttl.or(Some(DEFAULT_SHARED_L1_MAX_TTL));
        self.l2 = None;
        let mut cache = self.build_local()?;
        let inner = Arc::get_mut(&mut cache.inner).ok_or_else(|| {
            Error::InvalidConfig("the cache was shared while being built".to_owned())
        })?;
        let shared = crate::l2::Shared::connect(
            l2,
            &settings,
            &inner.prefix,
            Arc::clone(&inner.l1),
            Arc::clone(&inner.generations),
        )
        .await?;
        inner.shared = Some(Arc::new(shared));
        Ok(cache)
    }

    /// Builds an in-process cache without `async`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `l1_max_ttl` is zero, or when a shared
    /// tier is configured (connecting to it needs [`build`](Self::build)).
    pub fn build_local(self) -> Result<Cache, Error> {
        #[cfg(feature = "redis")]
        if self.l2.is_some() {
            return Err(Error::InvalidConfig(
                "a shared tier is configured; build the cache with `.build().await`".to_owned(),
            ));
        }
        if self.l1_max_ttl == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "`l1_max_ttl` must be positive".to_owned(),
            ));
        }
        Ok(Cache {
            inner: Arc::new(Inner {
                id: next_id(),
                prefix: self.prefix,
                l1: Arc::new(MokaStore::new(self.l1_capacity)),
                l1_max_ttl: self.l1_max_ttl,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                generations: Arc::new(Generations::new()),
                #[cfg(feature = "redis")]
                shared: None,
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
        let change = self.invalidate_locally(Change::Key(key));
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(change)) = (self.inner.shared.clone(), change) {
            return propagate(shared, Arc::clone(&self.inner.generations), change).await;
        }
        let _ = change;
        Ok(())
    }

    /// [`invalidate_key`](Self::invalidate_key) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_key_blocking(&self, key: &str) -> Result<(), Error> {
        let change = self.invalidate_locally(Change::Key(key));
        self.propagate_blocking(change)
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
        let change = self.invalidate_locally(Change::Id(GenId::Tag(tag.to_owned())));
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(change)) = (self.inner.shared.clone(), change) {
            return propagate(shared, Arc::clone(&self.inner.generations), change).await;
        }
        let _ = change;
        Ok(())
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_tag_blocking(&self, tag: &str) -> Result<(), Error> {
        let change = self.invalidate_locally(Change::Id(GenId::Tag(tag.to_owned())));
        self.propagate_blocking(change)
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
        let change = self.invalidate_locally(Change::Id(GenId::Namespace(namespace.to_owned())));
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(change)) = (self.inner.shared.clone(), change) {
            return propagate(shared, Arc::clone(&self.inner.generations), change).await;
        }
        let _ = change;
        Ok(())
    }

    /// [`invalidate_namespace`](Self::invalidate_namespace) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn invalidate_namespace_blocking(&self, namespace: &str) -> Result<(), Error> {
        let change = self.invalidate_locally(Change::Id(GenId::Namespace(namespace.to_owned())));
        self.propagate_blocking(change)
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
        let change = self.invalidate_locally(Change::Id(GenId::Clear));
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(change)) = (self.inner.shared.clone(), change) {
            return propagate(shared, Arc::clone(&self.inner.generations), change).await;
        }
        let _ = change;
        Ok(())
    }

    /// [`clear`](Self::clear) for sync code.
    ///
    /// # Errors
    ///
    /// As [`invalidate_key`](Self::invalidate_key).
    pub fn clear_blocking(&self) -> Result<(), Error> {
        let change = self.invalidate_locally(Change::Id(GenId::Clear));
        self.propagate_blocking(change)
    }

    /// Applies an invalidation to this process: at once, whatever happens
    /// to the shared tier. Returns what the shared tier must hear.
    fn invalidate_locally(&self, change: Change<'_>) -> Option<Pending> {
        let inner = &*self.inner;
        let pending = match change {
            Change::Key(key) => {
                inner.generations.invalidate_key(key, None);
                inner.l1.remove(key);
                Pending {
                    id: GenId::KeySlot(inner.generations.slot(key)),
                    key: Some(key.to_owned()),
                }
            }
            Change::Id(id) => {
                inner.generations.invalidate(&id, None);
                if id == GenId::Clear {
                    inner.l1.clear();
                }
                Pending { id, key: None }
            }
        };
        #[cfg(feature = "redis")]
        if inner.shared.is_some() {
            return Some(pending);
        }
        let _ = pending;
        None
    }

    fn propagate_blocking(&self, change: Option<Pending>) -> Result<(), Error> {
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(change)) = (self.inner.shared.clone(), change) {
            let work = propagate(
                Arc::clone(&shared),
                Arc::clone(&self.inner.generations),
                change,
            );
            return shared
                .block_on(shared.budget(2), work)
                .unwrap_or_else(|| Err(Error::from(crate::l2::L2Error::Timeout)));
        }
        let _ = change;
        Ok(())
    }
}

/// An invalidation, as asked for.
enum Change<'a> {
    Key(&'a str),
    Id(GenId),
}

/// An invalidation applied locally, still to reach the shared tier.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "used by the shared tier")
)]
struct Pending {
    id: GenId,
    /// The `{fn}_key` of a key invalidation, for other processes' L1.
    key: Option<String>,
}

/// Moves the generation on in Redis, learns its new value, and announces it
/// on the invalidation channel.
#[cfg(feature = "redis")]
async fn propagate(
    shared: Arc<crate::l2::Shared>,
    generations: Arc<Generations>,
    change: Pending,
) -> Result<(), Error> {
    use crate::l2::Event;
    let bumped = async {
        let generation = shared.bump_generation(&change.id).await?;
        // Redis is behind this process (it lost generations): move it past
        // ours, or other processes would take this invalidation for an old one.
        let local = generations.get(&change.id);
        if generation < local {
            return shared
                .advance_generation(&change.id, local - generation)
                .await;
        }
        Ok(generation)
    };
    let generation = match bumped.await {
        Ok(generation) => generation,
        Err(e) => {
            // This process's generation moved on and Redis's did not: the
            // next loads read every generation again, raising Redis's to
            // ours, before they fill with them.
            generations.forget_all();
            return Err(e.into());
        }
    };
    generations.learn(&change.id, generation);
    let event = match change.id {
        GenId::KeySlot(slot) => Event::Key {
            slot,
            generation,
            key: change.key.unwrap_or_default(),
        },
        GenId::Tag(tag) => Event::Tag { generation, tag },
        GenId::Namespace(namespace) => Event::Namespace {
            generation,
            namespace,
        },
        GenId::Clear => Event::Clear { generation },
    };
    shared.publish(&event).await?;
    Ok(())
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
