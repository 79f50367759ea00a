//! The shared tier (L2): whatever store sits behind the [`Backend`] seam
//! (Redis or Redis Cluster in [`redis`]; an in-memory store with injectable
//! faults in tests), wrapped in a timeout and a circuit breaker, with an
//! invalidation channel that keeps every process's L1 and generations in
//! step.
//!
//! # Stored form
//!
//! With the builder's prefix `myapp` (keys start with `myapp:`; without a
//! prefix they start at the namespace or version):
//!
//! | what | stored key |
//! |---|---|
//! | entry | `myapp:users@3:v1:user:42` (namespace `users` at generation 3, version 1), or `myapp:v1:user:42` without a namespace |
//! | tag generation | `myapp:#gen:tag:org:7` |
//! | namespace generation | `myapp:#gen:ns:users` |
//! | key generations | `myapp:#gen:key:17`, one per key slot |
//! | clear generation | `myapp:#gen:clear` |
//! | single-flight lock | `myapp:#lock:` + the entry key |
//! | invalidation channel | `myapp:#events` |
//!
//! Every operation is bounded by `l2_timeout` and runs where the backend
//! says: in place, on a connection the calling runtime drives, or on the
//! cache's own small runtime ([`bridge`]), so callers in any runtime (or
//! none) get an answer in time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::breaker::Breaker;
use crate::codec::CodecKind;
use crate::config::L2Settings;
use crate::error::Error;
use crate::invalidate::{GenId, Generations};
use crate::l1::Store;

pub(crate) mod bridge;
pub(crate) mod channel;
pub(crate) mod invalidations;
mod keys;
#[cfg(test)]
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use bridge::Bridge;
use channel::Event;
use keys::StoredKeys;

/// A boxed `'static` future: what backend operations return, so a sync
/// caller can hand one to the cache's runtime.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a backend operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The store could not be reached, or the connection failed: counts
    /// against the breaker.
    Down(String),
    /// The store answered, with an error about this operation (for example
    /// a key of another type): the store is fine, the key is not.
    Refused(String),
}

/// Where a backend operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// On the calling task's runtime, which drives the connection: await it
    /// where it is.
    Here,
    /// On the cache's own runtime: hand it over and wait for the answer.
    Background,
}

/// One backend operation, ready to run.
pub(crate) struct Call<T> {
    pub(crate) place: Place,
    pub(crate) op: BoxFuture<'static, Result<T, Fault>>,
}

impl<T> Call<T> {
    /// An operation that runs on the cache's own runtime.
    #[cfg_attr(not(test), allow(dead_code, reason = "used by the test backend"))]
    pub(crate) fn background(
        op: impl Future<Output = Result<T, Fault>> + Send + 'static,
    ) -> Call<T> {
        Call {
            place: Place::Background,
            op: Box::pin(op),
        }
    }
}

/// What [`Backend::lock_and_get`] answers: whether each lock was taken,
/// and the values read.
pub(crate) type LockedRead = (Vec<bool>, Vec<Option<Vec<u8>>>);

/// Messages from the invalidation channel, until the subscription drops.
pub(crate) trait Subscription: Send {
    /// The next message's bytes; `None` once the subscription is gone.
    fn next(&mut self) -> BoxFuture<'_, Option<Vec<u8>>>;
}

/// The seam between the load path and a shared store: the handful of
/// operations the shared tier is made of. Keys and values are bytes the
/// tier has already named and encoded; timeouts, the breaker and the
/// runtime bridge are the tier's, not the backend's.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The values of `keys`, in order; `None` for a key that is absent or
    /// holds something other than a string.
    fn get_many(&self, keys: Vec<String>) -> Call<Vec<Option<Vec<u8>>>>;
    /// Stores `value` under `key` for `ttl`.
    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> Call<()>;
    /// Adds `by` to the integer at `key` (0 when absent) and returns the sum.
    fn increment(&self, key: String, by: u64) -> Call<u64>;
    /// Sends `message` to every subscriber of `channel`.
    fn publish(&self, channel: String, message: String) -> Call<()>;
    /// In one step: adds 1 to the integer at `key` (0 when absent), raises
    /// it to `floor` if it is still lower, sends `before` + the new value +
    /// `after` to `channel`'s subscribers, and returns the value.
    fn bump_and_announce(
        &self,
        key: String,
        floor: u64,
        channel: String,
        before: String,
        after: String,
    ) -> Call<u64>;
    /// Stores `value` under `key` for `ttl` unless the key exists; whether
    /// it was stored.
    fn set_if_absent(&self, key: String, value: String, ttl: Duration) -> Call<bool>;
    /// Deletes `key` if it still holds `value`.
    fn delete_if_equal(&self, key: String, value: String) -> Call<()>;
    /// Makes `key` expire `ttl` from now if it still holds `value`.
    fn expire_if_equal(&self, key: String, value: String, ttl: Duration) -> Call<()>;
    /// In one round trip and in this order: takes each lock of `locks`
    /// with `token` for `ttl` unless it is held ([`set_if_absent`]), then
    /// reads `keys` ([`get_many`]). Whether each lock was taken, and the
    /// values. A batch's read (`#[cache_many]`).
    ///
    /// [`set_if_absent`]: Backend::set_if_absent
    /// [`get_many`]: Backend::get_many
    fn lock_and_get(
        &self,
        locks: Vec<String>,
        token: String,
        ttl: Duration,
        keys: Vec<String>,
    ) -> Call<LockedRead> {
        let taking: Vec<_> = locks
            .into_iter()
            .map(|lock| self.set_if_absent(lock, token.clone(), ttl).op)
            .collect();
        let reading = self.get_many(keys).op;
        Call::background(async move {
            let mut taken = Vec::with_capacity(taking.len());
            for op in taking {
                taken.push(op.await?);
            }
            Ok((taken, reading.await?))
        })
    }

    /// In one round trip and in this order: stores each of `sets` (key,
    /// value, TTL), releases each lock of `unlocks` that still holds
    /// `token`, reads `keys`, and sends `publish` (channel, message). The
    /// values of `keys`. A batch's write (`#[cache_many]`).
    fn write_many(
        &self,
        sets: Vec<(String, Vec<u8>, Duration)>,
        unlocks: Vec<String>,
        token: String,
        keys: Vec<String>,
        publish: Option<(String, String)>,
    ) -> Call<Vec<Option<Vec<u8>>>> {
        let mut steps: Vec<BoxFuture<'static, Result<(), Fault>>> = Vec::new();
        for (key, value, ttl) in sets {
            steps.push(self.set(key, value, ttl).op);
        }
        for lock in unlocks {
            steps.push(self.delete_if_equal(lock, token.clone()).op);
        }
        let reading = self.get_many(keys).op;
        let announcing = publish.map(|(channel, message)| self.publish(channel, message).op);
        Call::background(async move {
            for step in steps {
                step.await?;
            }
            let values = reading.await?;
            if let Some(announcing) = announcing {
                announcing.await?;
            }
            Ok(values)
        })
    }

    /// Asks the store for an answer, any answer: whether it is up.
    fn ping(&self) -> Call<()>;
    /// Subscribes to `channel`; called on the cache's runtime, again after
    /// every drop.
    fn subscribe(
        &self,
        channel: String,
    ) -> BoxFuture<'static, Result<Box<dyn Subscription>, Fault>>;
    /// The cache was just built by the calling task: a backend that keeps a
    /// connection per runtime may start opening this one's.
    fn warm_up(&self) {}
}

/// What a backend is given to connect.
#[derive(Debug, Clone)]
pub(crate) struct ConnectContext {
    pub(crate) timeout: Duration,
    pub(crate) connection_per_runtime: bool,
    /// The cache's own runtime.
    pub(crate) background: tokio::runtime::Id,
}

/// How the builder makes a backend: the Redis URLs, or a test's store.
pub(crate) trait Connect: std::fmt::Debug + Send + Sync + 'static {
    /// Connects; runs on the cache's own runtime.
    fn connect(&self, cx: ConnectContext) -> BoxFuture<'static, Result<Arc<dyn Backend>, Error>>;
}

/// Why a shared-tier operation gave no answer. Never reaches a cached call:
/// it makes the call go on without L2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum L2Error {
    /// The breaker is open: the operation was not tried.
    Open,
    /// No answer within `l2_timeout`.
    Timeout,
    /// The store could not be reached, or the connection failed.
    Down(String),
    /// The store answered with an error about this operation.
    Refused(String),
}

impl From<L2Error> for Error {
    fn from(e: L2Error) -> Error {
        match e {
            L2Error::Open => Error::L2Unavailable,
            L2Error::Timeout => Error::L2Timeout,
            L2Error::Down(why) => Error::L2Connection(why),
            L2Error::Refused(why) => Error::L2Refused(why),
        }
    }
}

/// The shared tier of one cache.
pub(crate) struct L2 {
    backend: Arc<dyn Backend>,
    bridge: Bridge,
    timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) codec: CodecKind,
    pub(crate) max_value_size: usize,
    pub(crate) compress_above: Option<usize>,
    /// Rate-limits the warnings about failed operations.
    pub(crate) warnings: crate::trace::Limiter,
    pub(crate) lock_timeout: Duration,
    /// How long a cross-process lock lives unless its holder renews it.
    lease: Duration,
    keys: StoredKeys,
    /// This process's id on the channel, so it ignores its own messages.
    node: u64,
    /// Woken whenever any process stores an entry.
    pub(crate) fills: Arc<Notify>,
    /// Invalidations that could not reach the store yet.
    queue: invalidations::Queue,
    /// Moves on whenever the invalidation channel connects or drops. A load
    /// that began in an earlier era may have missed messages (the L1 flush
    /// on reconnecting came before its fill), so it must not fill.
    era: Arc<AtomicU64>,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2")
            .field("keys", &self.keys)
            .field("timeout", &self.timeout)
            .field("breaker_open", &self.breaker.is_open())
            .finish_non_exhaustive()
    }
}

impl L2 {
    /// Connects through `connect`, and starts the invalidation subscriber
    /// that keeps `l1` and `generations` coherent with other processes.
    pub(crate) async fn start(
        connect: &dyn Connect,
        settings: &L2Settings,
        prefix: &str,
        l1: Arc<Store>,
        generations: Arc<Generations>,
    ) -> Result<L2, Error> {
        let timeout = settings.timeout;
        let codec = CodecKind::of(settings.codec).ok_or_else(|| {
            Error::InvalidConfig(format!("no codec has the id {}", settings.codec))
        })?;
        let bridge = Bridge::start()?;
        let keys = StoredKeys::new(prefix);
        let node = fastrand::u64(1..);
        let cx = ConnectContext {
            timeout,
            connection_per_runtime: settings.connection_per_runtime,
            background: bridge.handle().id(),
        };
        let connecting = connect.connect(cx);
        let backend = bridge
            .handle()
            .spawn(async move {
                let budget = timeout.max(Duration::from_secs(2));
                tokio::time::timeout(budget, connecting)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::L2Connection(
                            "could not connect to the shared tier in time".to_owned(),
                        ))
                    })
            })
            .await
            .map_err(|e| Error::L2Connection(format!("the connection task failed: {e}")))??;
        backend.warm_up();

        let fills = Arc::new(Notify::new());
        let era = Arc::new(AtomicU64::new(0));
        bridge.handle().spawn(channel::listen(
            Arc::clone(&backend),
            keys.channel(),
            node,
            l1,
            generations,
            Arc::clone(&fills),
            Arc::clone(&era),
        ));
        // Listen before the first load, so that no load of this cache
        // begins before the first era (bounded: a cache that cannot
        // subscribe still works, and fills once it has).
        let first = Arc::clone(&era);
        let listening = bridge.handle().spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout.max(Duration::from_millis(500));
            while first.load(SeqCst) == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let _ = listening.await;
        Ok(L2 {
            backend,
            bridge,
            timeout,
            breaker: Breaker::new(),
            codec,
            max_value_size: settings.max_value_size,
            compress_above: settings.compress_above,
            warnings: crate::trace::Limiter::default(),
            lock_timeout: settings.lock_timeout,
            lease: lock_lease(settings.lock_timeout, timeout),
            keys,
            node,
            fills,
            queue: invalidations::Queue::default(),
            era,
        })
    }

    /// Starts replaying invalidations that could not reach the store, for
    /// as long as `l2` lives.
    pub(crate) fn start_replay(l2: &Arc<L2>, generations: Arc<Generations>) {
        l2.bridge
            .handle()
            .spawn(invalidations::replay(Arc::downgrade(l2), generations));
    }

    /// The invalidation channel's current era: it moves on whenever the
    /// channel connects or drops.
    pub(crate) fn era(&self) -> u64 {
        self.era.load(SeqCst)
    }

    /// The stored key of an entry (see [`StoredKeys::entry`]).
    pub(crate) fn entry_key(
        &self,
        namespace: Option<(&str, u64)>,
        version: u32,
        rendered: &str,
    ) -> String {
        self.keys.entry(namespace, version, rendered)
    }

    /// Runs one backend operation where the backend says; bounded by the
    /// timeout and guarded by the breaker.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        call: impl FnOnce() -> Call<T>,
    ) -> Result<T, L2Error> {
        let Some(permit) = self.breaker.permit() else {
            return Err(L2Error::Open);
        };
        let started = crate::stats::l2_timer();
        let outcome = self.execute(call()).await;
        crate::stats::l2_seconds(op, started);
        match &outcome {
            // The store answered (with an error, perhaps, about this
            // operation): it is up, whatever it said.
            Ok(_) | Err(L2Error::Refused(_)) => permit.success(),
            // A connection that dropped during an outage fails the first
            // operation sent over it, and only then does the client open a
            // new one: the probe after the outage finds it so, while the
            // store may well answer again. The probe asks once more, over
            // the new connection, so that the breaker closes as soon as the
            // store answers rather than a doubled cool-down later.
            Err(L2Error::Down(_)) if permit.is_probe() => {
                match self.execute(self.backend.ping()).await {
                    Ok(()) | Err(L2Error::Refused(_)) => permit.success(),
                    Err(_) => permit.failure(),
                }
            }
            Err(_) => permit.failure(),
        }
        outcome
    }

    /// Runs one backend operation where the backend says, bounded by the
    /// timeout; the breaker is the caller's.
    async fn execute<T: Send + 'static>(&self, call: Call<T>) -> Result<T, L2Error> {
        let timeout = self.timeout;
        let Call { place, op } = call;
        let done = match place {
            Place::Here => Ok(tokio::time::timeout(timeout, op).await),
            Place::Background => {
                self.bridge
                    .handle()
                    .spawn(async move { tokio::time::timeout(timeout, op).await })
                    .await
            }
        };
        match done {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(Fault::Down(why)))) => Err(L2Error::Down(why)),
            Ok(Ok(Err(Fault::Refused(why)))) => Err(L2Error::Refused(why)),
            Ok(Err(_elapsed)) => Err(L2Error::Timeout),
            Err(join) => Err(L2Error::Down(format!("the operation was lost: {join}"))),
        }
    }

    /// Runs `work` (shared-tier steps only, never a function body) to
    /// completion for a sync caller, blocking for at most `budget` (see
    /// [`Bridge::block_on`]).
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.bridge.block_on(budget, work)
    }

    /// [`tokio::time::timeout`] on the timers of the cache's own runtime,
    /// so that a caller in a runtime without timers can wait too.
    pub(crate) fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> tokio::time::Timeout<F> {
        self.bridge.timeout(duration, future)
    }

    /// How long a sync caller waits for `steps` shared-tier operations.
    pub(crate) fn budget(&self, steps: u32) -> Duration {
        self.timeout * steps + Duration::from_millis(50)
    }

    /// The current values of `ids`, in one round trip.
    pub(crate) async fn fetch_generations(&self, ids: &[GenId]) -> Result<Vec<u64>, L2Error> {
        let keys = ids.iter().map(|id| self.keys.generation(id)).collect();
        let replies = self
            .run("generations", || self.backend.get_many(keys))
            .await?;
        Ok(replies
            .iter()
            .map(|r| generation_value(r.as_deref()))
            .collect())
    }

    /// Reads an entry and the current values of the generations it
    /// depends on in one round trip.
    pub(crate) async fn get_with_generations(
        &self,
        key: &str,
        ids: &[GenId],
    ) -> Result<(Option<Vec<u8>>, Vec<u64>), L2Error> {
        let mut keys = Vec::with_capacity(1 + ids.len());
        keys.push(key.to_owned());
        keys.extend(ids.iter().map(|id| self.keys.generation(id)));
        let replies = self.run("get", || self.backend.get_many(keys)).await?;
        let mut replies = replies.into_iter();
        // Nothing, or a key of another type written behind the cache's
        // back: a miss, which the next fill replaces.
        let entry = replies.next().flatten();
        Ok((
            entry,
            replies.map(|r| generation_value(r.as_deref())).collect(),
        ))
    }

    /// A batch's read: takes the locks of `locks` (with `token`, for one
    /// lease) and reads `entries` and the generations `ids`, in one round
    /// trip. Whether each lock was taken, the entries, and the
    /// generations' values.
    #[allow(clippy::type_complexity, reason = "three lists, in order")]
    pub(crate) async fn lock_and_read(
        &self,
        locks: Vec<String>,
        token: String,
        entries: Vec<String>,
        ids: &[GenId],
    ) -> Result<(Vec<bool>, Vec<Option<Vec<u8>>>, Vec<u64>), L2Error> {
        let count = entries.len();
        let mut keys = entries;
        keys.extend(ids.iter().map(|id| self.keys.generation(id)));
        let ttl = self.lease;
        let (taken, mut replies) = self
            .run("get", || self.backend.lock_and_get(locks, token, ttl, keys))
            .await?;
        let generations = replies
            .split_off(count.min(replies.len()))
            .iter()
            .map(|r| generation_value(r.as_deref()))
            .collect();
        Ok((taken, replies, generations))
    }

    /// A batch's write: stores `sets`, releases the locks of `unlocks`
    /// held with `token`, reads the generations `ids` again and, when
    /// `announce`, tells waiting processes of the fills, in one round
    /// trip. The generations' values.
    pub(crate) async fn write_many(
        &self,
        sets: Vec<(String, Vec<u8>, Duration)>,
        unlocks: Vec<String>,
        token: String,
        ids: &[GenId],
        announce: bool,
    ) -> Result<Vec<u64>, L2Error> {
        let keys = ids.iter().map(|id| self.keys.generation(id)).collect();
        let publish = announce.then(|| (self.keys.channel(), Event::Filled.encode(self.node)));
        let replies = self
            .run("set", || {
                self.backend.write_many(sets, unlocks, token, keys, publish)
            })
            .await?;
        Ok(replies
            .iter()
            .map(|r| generation_value(r.as_deref()))
            .collect())
    }

    /// Runs `work` on the cache's own runtime, without waiting for it.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.bridge.handle().spawn(work);
    }

    pub(crate) async fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), L2Error> {
        self.run("set", || self.backend.set(key, value, ttl)).await
    }

    /// Reads one generation, first raising it in the store to at least
    /// `floor` (this process's value) when it is lower there: the store lost
    /// it (a restart without persistence) or never got it (an invalidation
    /// that failed). Entries filled with `floor` then stay below every later
    /// invalidation's generation, in every process.
    pub(crate) async fn fetch_generation_at_least(
        &self,
        id: &GenId,
        floor: u64,
    ) -> Result<u64, L2Error> {
        let value = self.fetch_generations(std::slice::from_ref(id)).await?[0];
        if value >= floor {
            return Ok(value);
        }
        // Racing raises add up: harmless, generations only need to rise.
        self.advance_generation(id, floor - value).await
    }

    /// Moves one generation on, to at least `floor` (this process's value),
    /// and announces `event` with the new value, in one round trip; returns
    /// the new value.
    pub(crate) async fn bump_and_announce(
        &self,
        id: &GenId,
        floor: u64,
        event: &Event,
    ) -> Result<u64, L2Error> {
        let key = self.keys.generation(id);
        let (before, after) = event.around_generation(self.node);
        self.run("invalidate", || {
            self.backend
                .bump_and_announce(key, floor, self.keys.channel(), before, after)
        })
        .await
    }

    /// Moves one generation on by `by` and returns its new value.
    pub(crate) async fn advance_generation(&self, id: &GenId, by: u64) -> Result<u64, L2Error> {
        let key = self.keys.generation(id);
        self.run("generation", || self.backend.increment(key, by))
            .await
    }

    pub(crate) async fn publish(&self, event: &Event) -> Result<(), L2Error> {
        let message = event.encode(self.node);
        self.run("publish", || {
            self.backend.publish(self.keys.channel(), message)
        })
        .await
    }

    pub(crate) fn lock_key(&self, entry_key: &str) -> String {
        self.keys.lock(entry_key)
    }

    /// Takes the lock `lock_key` with `token` for one lease: whether this
    /// caller now holds it.
    pub(crate) async fn try_lock(&self, lock_key: String, token: String) -> Result<bool, L2Error> {
        let ttl = self.lease;
        self.run("lock", || self.backend.set_if_absent(lock_key, token, ttl))
            .await
    }

    /// Releases the lock if it still holds `token`. A release that failed
    /// with its connection is sent once more: a reset connection fails the
    /// first command sent after it and reconnects, and deleting by token is
    /// safe to repeat, while a lost release stalls the key in every process
    /// for the rest of the lease.
    pub(crate) async fn unlock(&self, lock_key: String, token: String) -> Result<(), L2Error> {
        let first = self
            .run("unlock", || {
                self.backend
                    .delete_if_equal(lock_key.clone(), token.clone())
            })
            .await;
        match first {
            Err(L2Error::Down(_)) => {
                self.run("unlock", || self.backend.delete_if_equal(lock_key, token))
                    .await
            }
            other => other,
        }
    }

    /// Keeps the lock `lock_key` alive (if it holds `token`) until the
    /// returned guard is dropped: a holder that stops, dies or is cancelled
    /// leaves a lock that ends within one lease, not `lock_timeout`.
    pub(crate) fn hold(self: &Arc<Self>, lock_key: String, token: String) -> Held {
        let l2 = Arc::clone(self);
        let (key, value) = (lock_key.clone(), token.clone());
        let renewal = self.bridge.handle().spawn(async move {
            loop {
                tokio::time::sleep(l2.lease / 3).await;
                let ttl = l2.lease;
                let renew = l2.run("renew", || {
                    l2.backend.expire_if_equal(key.clone(), value.clone(), ttl)
                });
                // A failed renewal is retried at the next tick; the lease
                // covers a few of them.
                let _ = renew.await;
            }
        });
        Held {
            lock_key,
            token,
            renewal: renewal.abort_handle(),
        }
    }
}

/// A cross-process lock this load holds, or may hold (its `SET` got no
/// answer), renewed while the guard lives and released by its token.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) lock_key: String,
    pub(crate) token: String,
    renewal: tokio::task::AbortHandle,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// A lock's lease: short, so a holder that stopped frees the key soon, and
/// long enough for a few renewals, each bounded by `l2_timeout`.
fn lock_lease(lock_timeout: Duration, l2_timeout: Duration) -> Duration {
    lock_timeout.min(Duration::from_secs(1)).max(l2_timeout * 4)
}

/// A generation as the store returns it: absent or unreadable counts as 0.
fn generation_value(reply: Option<&[u8]>) -> u64 {
    reply
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}
