//! The builder of a [`Cache`] and the settings it collects.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{CacheClock, Clock};
use crate::codec::{Codec, CodecKind};
use crate::error::Error;
use crate::flight::Flights;
use crate::handle::{next_id, Cache, Inner};
use crate::invalidate::Generations;
use crate::l1::{L1Store, Store};
use crate::l2::{Connect, L2};
use crate::stats::Registry;

/// Entries kept in L1 when the builder does not say.
pub const DEFAULT_L1_CAPACITY: u64 = 10_000;

/// Configures a [`Cache`]; see [`Cache::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    prefix: String,
    l1_capacity: u64,
    l1_store: L1Store,
    l1_max_ttl: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    /// How to reach the shared tier, when one is configured.
    l2: Option<Arc<dyn Connect>>,
    l2_settings: L2Settings,
}

/// Shared-tier settings, kept apart from where the tier is so either can be
/// given first.
#[derive(Debug, Clone)]
pub(crate) struct L2Settings {
    pub(crate) timeout: Duration,
    /// The id of the codec given to [`Builder::codec`].
    pub(crate) codec: u8,
    pub(crate) max_value_size: usize,
    /// Payloads longer than this are stored compressed (feature
    /// `compression`); `None` without the feature.
    pub(crate) compress_above: Option<usize>,
    pub(crate) lock_timeout: Duration,
    pub(crate) connection_per_runtime: bool,
}

/// How long a shared-tier operation may take by default.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest value stored in the shared tier by default.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 8 << 20;
/// Encoded values longer than this are stored compressed by default
/// (feature `compression`).
pub const DEFAULT_COMPRESS_ABOVE: usize = 1024;
/// How long a cross-process load may hold its lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// `l1_max_ttl` when a shared tier is configured and none is given.
pub const DEFAULT_SHARED_L1_MAX_TTL: Duration = Duration::from_secs(60);

impl Default for Builder {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            l1_capacity: DEFAULT_L1_CAPACITY,
            l1_store: L1Store::default(),
            l1_max_ttl: None,
            clock: None,
            l2: None,
            l2_settings: L2Settings {
                timeout: DEFAULT_L2_TIMEOUT,
                codec: CodecKind::Bincode.id(),
                max_value_size: DEFAULT_MAX_VALUE_SIZE,
                compress_above: cfg!(feature = "compression").then_some(DEFAULT_COMPRESS_ABOVE),
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

    /// Which store holds L1's entries: [`L1Store::QuickCache`] by default,
    /// or [`L1Store::Moka`](L1Store) with the `moka` feature.
    pub fn l1_store(mut self, store: L1Store) -> Self {
        self.l1_store = store;
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
    pub fn redis(mut self, url: impl AsRef<str>) -> Self {
        self.l2 = Some(Arc::new(crate::l2::redis::RedisConfig {
            urls: vec![url.as_ref().to_owned()],
            cluster: false,
        }));
        self
    }

    /// A shared tier in Redis Cluster, given some of its nodes' URLs.
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.l2 = Some(Arc::new(crate::l2::redis::RedisConfig {
            urls: urls.into_iter().map(|u| u.as_ref().to_owned()).collect(),
            cluster: true,
        }));
        self
    }

    /// How long one shared-tier operation may take before the call goes on
    /// without it ([`DEFAULT_L2_TIMEOUT`] by default).
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_settings.timeout = timeout;
        self
    }

    /// The format values are stored in ([`Bincode`](crate::Bincode) by
    /// default). A value written in another format is a miss.
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.l2_settings.codec = codec.id();
        self
    }

    /// The largest stored entry, in bytes ([`DEFAULT_MAX_VALUE_SIZE`] by
    /// default). Larger values stay in L1 only; larger stored entries are
    /// misses.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.l2_settings.max_value_size = bytes;
        self
    }

    /// Encoded values longer than `bytes` ([`DEFAULT_COMPRESS_ABOVE`] by
    /// default) are stored in the shared tier compressed with LZ4, when
    /// that makes them shorter; `usize::MAX` turns compression off.
    /// [`max_value_size`](Self::max_value_size) applies to the stored,
    /// compressed size. Every reader decompresses; a process built without
    /// the `compression` feature reads a compressed entry as a miss, so
    /// enable it in every process that shares the tier.
    #[cfg(feature = "compression")]
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.l2_settings.compress_above = Some(bytes);
        self
    }

    /// How long a cross-process `lock` is held at most: after it, a waiting
    /// process runs the body itself ([`DEFAULT_LOCK_TIMEOUT`] by default).
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
    /// [`Error::L2Connection`] when Redis cannot be reached at start-up (later
    /// outages only slow calls down).
    pub async fn build(self) -> Result<Cache, Error> {
        match self.l2.clone() {
            Some(connect) => self.build_shared(connect).await,
            None => self.build_local(),
        }
    }

    /// A shared tier on a test's own store.
    #[cfg(test)]
    pub(crate) fn backend(mut self, store: impl Connect) -> Self {
        self.l2 = Some(Arc::new(store));
        self
    }

    async fn build_shared(mut self, connect: Arc<dyn Connect>) -> Result<Cache, Error> {
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
        let l2 = L2::start(
            &*connect,
            &settings,
            &inner.prefix,
            Arc::clone(&inner.l1),
            Arc::clone(&inner.generations),
        )
        .await?;
        let l2 = Arc::new(l2);
        L2::start_replay(&l2, Arc::clone(&inner.generations));
        inner.l2 = Some(l2);
        Ok(cache)
    }

    /// Builds an in-process cache without `async`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `l1_max_ttl` is zero, or when a shared
    /// tier is configured (connecting to it needs [`build`](Self::build)).
    pub fn build_local(self) -> Result<Cache, Error> {
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
                l1: Arc::new(Store::new(self.l1_store, self.l1_capacity)),
                l1_max_ttl: self.l1_max_ttl,
                clock: self.clock.map_or(CacheClock::System, CacheClock::Given),
                generations: Arc::new(Generations::new()),
                l2: None,
                flights: Flights::default(),
                refreshes: Arc::default(),
                worker: crate::refresh::Worker::default(),
                registry: Registry::default(),
                #[cfg(feature = "metrics")]
                l1_fills: Default::default(),
            }),
        })
    }
}
