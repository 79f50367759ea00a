//! The shared tier: Redis or Redis Cluster, behind a timeout and a circuit
//! breaker, with an invalidation channel that keeps every process's L1 and
//! generations in step.
//!
//! # Stored form
//!
//! With the builder's prefix `myapp` (keys start with `myapp:`; without a
//! prefix they start at the namespace or version):
//!
//! | what | Redis key |
//! |---|---|
//! | entry | `myapp:users@3:v1:user:42` (namespace `users` at generation 3, version 1), or `myapp:v1:user:42` without a namespace |
//! | tag generation | `myapp:#gen:tag:org:7` |
//! | namespace generation | `myapp:#gen:ns:users` |
//! | key generations | `myapp:#gen:key:17`, one per key slot |
//! | clear generation | `myapp:#gen:clear` |
//! | single-flight lock | `myapp:#lock:` + the entry key |
//! | invalidation channel | `myapp:#events` |
//!
//! Every operation is bounded by `l2_timeout` and goes over a connection
//! driven by the calling runtime when it has one (see [`routes`]), else over
//! the connection of a small runtime the cache owns, so callers in any
//! runtime (or none) get an answer in time.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{RedisError, RedisResult};
use tokio::sync::Notify;

use crate::breaker::Breaker;
use crate::codec::CodecKind;
use crate::error::Error;
use crate::invalidate::{GenId, Generations};
use crate::l1::L1Store;

/// Where the shared tier lives and how to use it.
#[derive(Debug, Clone)]
pub(crate) struct L2Config {
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
}

/// Why a shared-tier operation gave no answer. Never reaches a cached call:
/// it makes the call go on without L2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum L2Error {
    /// The breaker is open: the operation was not tried.
    Open,
    /// No answer within `l2_timeout`.
    Timeout,
    /// Redis could not be reached, or the connection failed.
    Redis(String),
    /// Redis answered, with an error about this operation (for example a
    /// key of another type): the server is fine, the key is not.
    Reply(String),
}

impl std::fmt::Display for L2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L2Error::Open => f.write_str("the shared tier is unavailable (circuit open)"),
            L2Error::Timeout => f.write_str("the shared tier did not answer in time"),
            L2Error::Redis(e) => write!(f, "the shared tier failed: {e}"),
            L2Error::Reply(e) => write!(f, "the shared tier refused the operation: {e}"),
        }
    }
}

impl From<L2Error> for Error {
    fn from(e: L2Error) -> Error {
        Error::L2(e.to_string())
    }
}

/// A Redis error's text without anything that could be a credential.
fn describe(e: &RedisError) -> String {
    let text = e.to_string();
    // URLs in messages may carry `user:password@`; keep only what follows.
    text.split_whitespace()
        .map(|word| match (word.find("://"), word.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://{}", &word[..scheme], &word[at + 1..])
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an error says the server is unreachable or unwell (which counts
/// against the breaker), as opposed to a bad answer about one key.
/// Error replies the client has no kind for (`WRONGTYPE`, `NOREPLICAS`,
/// `OOM`, ...) are answers too.
fn is_infrastructure(e: &RedisError) -> bool {
    !matches!(
        e.kind(),
        redis::ErrorKind::Server(_)
            | redis::ErrorKind::Extension
            | redis::ErrorKind::UnexpectedReturnType
    )
}

#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(mut self, cmd: redis::Cmd) -> RedisResult<T> {
        match &mut self {
            Conn::Single(c) => cmd.query_async(c).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// The string values of the keys of `mget` (an `MGET` command), in
    /// order; `None` for a key that is absent or holds another type. On a
    /// cluster the client splits it by node and joins the replies.
    async fn mget(self, mget: redis::Cmd) -> RedisResult<Vec<Option<Vec<u8>>>> {
        let replies: Vec<redis::Value> = self.query(mget).await?;
        Ok(replies
            .into_iter()
            .map(|v| match v {
                redis::Value::BulkString(bytes) => Some(bytes),
                _ => None,
            })
            .collect())
    }

    async fn script<T: redis::FromRedisValue>(
        mut self,
        script: &redis::Script,
        key: String,
        arg: String,
    ) -> RedisResult<T> {
        let mut invocation = script.key(key);
        invocation.arg(arg);
        match &mut self {
            Conn::Single(c) => invocation.invoke_async(c).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => invocation.invoke_async(c).await,
        }
    }
}

/// The name of the thread of the cache's own runtime.
const BACKGROUND_THREAD: &str = "cachette-l2";

thread_local! {
    /// The runtime a thread outside tokio drives its sync callers'
    /// shared-tier steps on (see [`Shared::block_on`]).
    static THREAD_RUNTIME: Option<tokio::runtime::Runtime> = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
        THREAD_RUNTIME_ID.set(runtime.as_ref().map(|r| r.handle().id()));
        runtime
    };
    /// Its id, once made.
    static THREAD_RUNTIME_ID: std::cell::Cell<Option<tokio::runtime::Id>> =
        const { std::cell::Cell::new(None) };
}

/// Whether `runtime` is the calling thread's own (see [`Shared::block_on`]).
fn on_thread_runtime(runtime: tokio::runtime::Id) -> bool {
    THREAD_RUNTIME_ID
        .try_with(|id| id.get() == Some(runtime))
        .unwrap_or(false)
}

/// The runtime shared-tier work runs on; its thread ends when the cache's
/// last clone is dropped (even from inside another runtime).
struct Background {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Background {
    fn start() -> Result<Background, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(BACKGROUND_THREAD)
            .enable_all()
            .build()
            .map_err(|e| Error::L2(format!("could not start the shared tier's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("cachette-l2-owner".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })
            .map_err(|e| Error::L2(format!("could not start the shared tier's thread: {e}")))?;
        Ok(Background {
            handle,
            _stop: stop,
        })
    }
}

/// One invalidation-channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A key's slot moved to a generation; the key is dropped from L1.
    Key {
        slot: usize,
        generation: u64,
        key: String,
    },
    Tag {
        generation: u64,
        tag: String,
    },
    Namespace {
        generation: u64,
        namespace: String,
    },
    Clear {
        generation: u64,
    },
    /// An entry was stored: single-flight waiters may look again.
    Filled,
}

impl Event {
    fn encode(&self, node: u64) -> String {
        match self {
            Event::Key {
                slot,
                generation,
                key,
            } => format!("{node}|k|{slot}|{generation}|{key}"),
            Event::Tag { generation, tag } => format!("{node}|t|{generation}|{tag}"),
            Event::Namespace {
                generation,
                namespace,
            } => format!("{node}|n|{generation}|{namespace}"),
            Event::Clear { generation } => format!("{node}|c|{generation}"),
            Event::Filled => format!("{node}|f"),
        }
    }

    /// The sender and the event; `None` for anything malformed.
    fn decode(text: &str) -> Option<(u64, Event)> {
        let (node, rest) = text.split_once('|')?;
        let node = node.parse().ok()?;
        let (kind, rest) = rest.split_once('|').unwrap_or((rest, ""));
        let event = match kind {
            "k" => {
                let (slot, rest) = rest.split_once('|')?;
                let (generation, key) = rest.split_once('|')?;
                let slot: usize = slot.parse().ok()?;
                if slot >= crate::invalidate::KEY_SLOTS {
                    return None;
                }
                Event::Key {
                    slot,
                    generation: generation.parse().ok()?,
                    key: key.to_owned(),
                }
            }
            "t" => {
                let (generation, tag) = rest.split_once('|')?;
                Event::Tag {
                    generation: generation.parse().ok()?,
                    tag: tag.to_owned(),
                }
            }
            "n" => {
                let (generation, namespace) = rest.split_once('|')?;
                Event::Namespace {
                    generation: generation.parse().ok()?,
                    namespace: namespace.to_owned(),
                }
            }
            "c" => Event::Clear {
                generation: rest.parse().ok()?,
            },
            "f" => Event::Filled,
            _ => return None,
        };
        Some((node, event))
    }
}

/// Compare-and-delete: releases a lock only if it still holds our token.
const UNLOCK: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

mod routes;

use routes::{Route, Routes};

/// The shared tier of one cache.
pub(crate) struct Shared {
    /// The connections: the cache's own, and one per calling runtime.
    routes: Routes,
    background: Background,
    timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) codec: CodecKind,
    pub(crate) max_value_size: usize,
    pub(crate) lock_timeout: Duration,
    /// `"myapp:"`, or empty.
    prefix: String,
    channel: String,
    /// This process's id on the channel, so it ignores its own messages.
    node: u64,
    /// Woken whenever any process stores an entry.
    pub(crate) fills: Arc<Notify>,
    /// Moves on whenever the invalidation channel connects or drops. A load
    /// that began in an earlier era may have missed messages (the L1 flush
    /// on reconnecting came before its fill), so it must not fill.
    era: Arc<AtomicU64>,
    unlock: redis::Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("breaker_open", &self.breaker.is_open())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects, and starts the invalidation subscriber that keeps `l1` and
    /// `generations` coherent with other processes.
    pub(crate) async fn connect(
        config: L2Config,
        settings: &crate::cache::L2Settings,
        prefix: &str,
        l1: Arc<dyn L1Store>,
        generations: Arc<Generations>,
    ) -> Result<Shared, Error> {
        let timeout = settings.timeout;
        if config.urls.is_empty() {
            return Err(Error::InvalidConfig("no Redis URL given".to_owned()));
        }
        let background = Background::start()?;
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        };
        let channel = format!("{prefix}#events");
        let node = fastrand::u64(1..);
        let urls = config.urls.clone();
        let cluster = config.cluster;
        let connect = background.handle.spawn(async move {
            let budget = timeout.max(Duration::from_secs(2));
            tokio::time::timeout(budget, open(urls, cluster, timeout))
                .await
                .unwrap_or_else(|_| Err(Error::L2("could not connect to Redis in time".to_owned())))
        });
        let conn = connect
            .await
            .map_err(|e| Error::L2(format!("the connection task failed: {e}")))??;
        let routes = Routes::new(
            config.clone(),
            timeout,
            settings.connection_per_runtime,
            background.handle.id(),
            conn,
        );
        // The runtime that builds the cache is likely the one that calls it:
        // start opening its connection now.
        let _ = routes.pick();

        let fills = Arc::new(Notify::new());
        let era = Arc::new(AtomicU64::new(0));
        background.handle.spawn(subscribe(
            config.urls.clone(),
            channel.clone(),
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
        let listening = background.handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout.max(Duration::from_millis(500));
            while first.load(SeqCst) == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let _ = listening.await;
        Ok(Shared {
            routes,
            background,
            timeout,
            breaker: Breaker::new(),
            codec: settings.codec,
            max_value_size: settings.max_value_size,
            lock_timeout: settings.lock_timeout,
            prefix,
            channel,
            node,
            fills,
            era,
            unlock: redis::Script::new(UNLOCK),
        })
    }

    /// The invalidation channel's current era: it moves on whenever the
    /// channel connects or drops.
    pub(crate) fn era(&self) -> u64 {
        self.era.load(SeqCst)
    }

    /// The Redis key of an entry: prefix, namespace and its generation,
    /// version, then the logical key (the `{fn}_key` form without its
    /// namespace and version, which are written here).
    pub(crate) fn entry_key(
        &self,
        namespace: Option<(&str, u64)>,
        version: u32,
        rendered: &str,
    ) -> String {
        let mut version_buffer = itoa::Buffer::new();
        let version = version_buffer.format(version);
        let mut generation_buffer = itoa::Buffer::new();
        let mut key = String::with_capacity(self.prefix.len() + 48 + rendered.len());
        key.push_str(&self.prefix);
        if let Some((ns, generation)) = namespace {
            key.push_str(ns);
            key.push('@');
            key.push_str(generation_buffer.format(generation));
            key.push(':');
        }
        key.push('v');
        key.push_str(version);
        key.push(':');
        key.push_str(rendered);
        key
    }

    fn generation_key(&self, id: &GenId) -> String {
        let mut key = String::new();
        self.write_generation_key(id, &mut key);
        key
    }

    /// Writes the Redis key of a generation into `key` (emptied first).
    fn write_generation_key(&self, id: &GenId, key: &mut String) {
        let (kind, name) = match id {
            GenId::Clear => ("clear", ""),
            GenId::KeySlot(_) => ("key:", ""),
            GenId::Namespace(ns) => ("ns:", ns.as_str()),
            GenId::Tag(tag) => ("tag:", tag.as_str()),
        };
        key.clear();
        key.push_str(&self.prefix);
        key.push_str("#gen:");
        key.push_str(kind);
        key.push_str(name);
        if let GenId::KeySlot(slot) = id {
            key.push_str(itoa::Buffer::new().format(*slot));
        }
    }

    /// `MGET` of `first` (when given) then the generations `ids`, built
    /// without a string per key.
    fn mget_command(&self, first: Option<&str>, ids: &[GenId]) -> redis::Cmd {
        let mut scratch = String::with_capacity(self.prefix.len() + 48);
        let keys = usize::from(first.is_some()) + ids.len();
        let bytes = first.map_or(0, str::len) + ids.len() * (self.prefix.len() + 24);
        let mut cmd = redis::Cmd::with_capacity(1 + keys, 4 + bytes);
        cmd.arg("MGET");
        if let Some(first) = first {
            cmd.arg(first);
        }
        for id in ids {
            self.write_generation_key(id, &mut scratch);
            cmd.arg(scratch.as_str());
        }
        cmd
    }

    /// Runs one operation over the calling runtime's connection, or else
    /// on the cache's own runtime; bounded by the timeout and guarded by
    /// the breaker.
    async fn run<T, Op>(&self, op: impl FnOnce(Conn) -> Op) -> Result<T, L2Error>
    where
        T: Send + 'static,
        Op: Future<Output = RedisResult<T>> + Send + 'static,
    {
        if !self.breaker.allow() {
            return Err(L2Error::Open);
        }
        let timeout = self.timeout;
        let done = match self.routes.pick() {
            Route::InPlace(conn) => Ok(tokio::time::timeout(timeout, op(conn)).await),
            Route::Background(conn) => {
                let op = op(conn);
                self.background
                    .handle
                    .spawn(async move { tokio::time::timeout(timeout, op).await })
                    .await
            }
        };
        let outcome = match done {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if is_infrastructure(&e) => Err(L2Error::Redis(describe(&e))),
            Ok(Ok(Err(e))) => {
                // The server answered: it is up, whatever it said.
                self.breaker.success();
                return Err(L2Error::Reply(describe(&e)));
            }
            Ok(Err(_elapsed)) => Err(L2Error::Timeout),
            Err(join) => Err(L2Error::Redis(format!("the operation was lost: {join}"))),
        };
        match outcome {
            Ok(_) => self.breaker.success(),
            Err(_) => self.breaker.failure(),
        }
        outcome
    }

    /// Runs `work` (shared-tier steps only, never a function body) to
    /// completion for a sync caller; blocks the calling thread for at most
    /// `budget`. Outside any tokio runtime the thread drives the work itself,
    /// on a small runtime of its own (with its own connection, see
    /// [`Routes`]); inside one (where blocking on another runtime would
    /// panic), the work goes to the cache's runtime.
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        budget: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let own_runtime = tokio::runtime::Handle::try_current().is_err()
            && THREAD_RUNTIME
                .try_with(|runtime| runtime.is_some())
                .unwrap_or(false);
        if own_runtime {
            let done = THREAD_RUNTIME.with(|runtime| {
                runtime.as_ref().map(|runtime| {
                    runtime.block_on(async { tokio::time::timeout(budget, work).await })
                })
            });
            return done.and_then(Result::ok);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.background.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv_timeout(budget).ok()
    }

    /// [`tokio::time::timeout`] on the timers of the cache's own runtime,
    /// so that a caller in a runtime without timers can wait too.
    pub(crate) fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> tokio::time::Timeout<F> {
        // A timer belongs to the runtime current when it is made.
        let _timers = self.background.handle.enter();
        tokio::time::timeout(duration, future)
    }

    /// How long a sync caller waits for `steps` shared-tier operations.
    pub(crate) fn budget(&self, steps: u32) -> Duration {
        self.timeout * steps + Duration::from_millis(50)
    }

    /// The current values of `ids`, in one round trip.
    pub(crate) async fn fetch_generations(&self, ids: &[GenId]) -> Result<Vec<u64>, L2Error> {
        let mget = self.mget_command(None, ids);
        let replies = self.run(|conn| conn.mget(mget)).await?;
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
        let mget = self.mget_command(Some(key), ids);
        let replies = self.run(|conn| conn.mget(mget)).await?;
        let mut replies = replies.into_iter();
        // Nothing, or a key of another type written behind the cache's
        // back: a miss, which the next fill replaces.
        let entry = replies.next().flatten();
        Ok((
            entry,
            replies.map(|r| generation_value(r.as_deref())).collect(),
        ))
    }

    pub(crate) async fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), L2Error> {
        let millis = ttl.as_millis().max(1) as u64;
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis)
            .clone();
        self.run(|conn| conn.query::<()>(cmd)).await
    }

    /// Reads one generation (0 when Redis has none yet).
    pub(crate) async fn fetch_generation(&self, id: &GenId) -> Result<u64, L2Error> {
        let cmd = redis::cmd("GET").arg(self.generation_key(id)).clone();
        let value: Option<u64> = self.run(|conn| conn.query(cmd)).await?;
        Ok(value.unwrap_or(0))
    }

    /// Reads one generation, first raising it in Redis to at least `floor`
    /// (this process's value) when it is lower there: Redis lost it (a
    /// restart without persistence) or never got it (an invalidation that
    /// failed). Entries filled with `floor` then stay below every later
    /// invalidation's generation, in every process.
    pub(crate) async fn fetch_generation_at_least(
        &self,
        id: &GenId,
        floor: u64,
    ) -> Result<u64, L2Error> {
        let value = self.fetch_generation(id).await?;
        if value >= floor {
            return Ok(value);
        }
        // Racing raises add up: harmless, generations only need to rise.
        self.advance_generation(id, floor - value).await
    }

    /// Moves one generation on and returns its new value.
    pub(crate) async fn bump_generation(&self, id: &GenId) -> Result<u64, L2Error> {
        self.advance_generation(id, 1).await
    }

    /// Moves one generation on by `by` and returns its new value.
    pub(crate) async fn advance_generation(&self, id: &GenId, by: u64) -> Result<u64, L2Error> {
        let cmd = redis::cmd("INCRBY")
            .arg(self.generation_key(id))
            .arg(by)
            .clone();
        self.run(|conn| conn.query(cmd)).await
    }

    pub(crate) async fn publish(&self, event: &Event) -> Result<(), L2Error> {
        let cmd = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(event.encode(self.node))
            .clone();
        self.run(|conn| conn.query::<i64>(cmd)).await.map(drop)
    }

    pub(crate) fn lock_key(&self, entry_key: &str) -> String {
        format!("{}#lock:{entry_key}", self.prefix)
    }

    /// `SET lock token NX PX timeout`: whether this caller now holds it.
    pub(crate) async fn try_lock(&self, lock_key: String, token: String) -> Result<bool, L2Error> {
        let millis = self.lock_timeout.as_millis().max(1) as u64;
        let cmd = redis::cmd("SET")
            .arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .clone();
        let reply: Option<String> = self.run(|conn| conn.query(cmd)).await?;
        Ok(reply.is_some())
    }

    /// Releases the lock if it still holds `token`.
    pub(crate) async fn unlock(&self, lock_key: String, token: String) -> Result<(), L2Error> {
        let script = self.unlock.clone();
        self.run(|conn| async move { conn.script::<i64>(&script, lock_key, token).await })
            .await
            .map(drop)
    }
}

/// A generation as Redis returns it: absent or unreadable counts as 0.
fn generation_value(reply: Option<&[u8]>) -> u64 {
    reply
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

async fn open(urls: Vec<String>, cluster: bool, timeout: Duration) -> Result<Conn, Error> {
    let bad_url = |e: RedisError| Error::InvalidConfig(format!("bad Redis URL: {}", describe(&e)));
    let unreachable =
        |e: RedisError| Error::L2(format!("could not connect to Redis: {}", describe(&e)));
    if cluster {
        #[cfg(feature = "cluster")]
        {
            let client = redis::cluster::ClusterClient::builder(urls)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(bad_url)?;
            let conn = client.get_async_connection().await.map_err(unreachable)?;
            return Ok(Conn::Cluster(conn));
        }
        #[cfg(not(feature = "cluster"))]
        {
            let _ = (urls, timeout, unreachable);
            return Err(Error::InvalidConfig(
                "`redis_cluster` needs the `cluster` feature".to_owned(),
            ));
        }
    }
    let client = redis::Client::open(urls[0].as_str()).map_err(bad_url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
        // Every operation is bounded by `l2_timeout` already (`Shared::run`):
        // a second timer per operation would only cost.
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(500));
    let conn = redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .map_err(unreachable)?;
    // A server that wants a password the URL lacks takes the connection and
    // refuses every command: a configuration error, reported now.
    let conn = Conn::Single(conn);
    conn.clone()
        .query::<String>(redis::cmd("PING"))
        .await
        .map_err(unreachable)?;
    Ok(conn)
}

/// Listens on the invalidation channel for as long as the cache lives,
/// reconnecting after any failure. Each (re)connection flushes L1 and forgets
/// the mirrored generations: messages sent while disconnected are lost. It
/// also moves the era on (before the flush), so loads in flight meanwhile do
/// not fill L1 again with what a lost message invalidated.
///
/// Each attempt goes to the next of `urls`: in a cluster a message published
/// on any node reaches every node, so when the node listened to dies the
/// subscriber moves on to another.
async fn subscribe(
    urls: Vec<String>,
    channel: String,
    node: u64,
    l1: Arc<dyn L1Store>,
    generations: Arc<Generations>,
    fills: Arc<Notify>,
    era: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(20);
    for url in urls.iter().cycle() {
        if let Ok(client) = redis::Client::open(url.as_str()) {
            if let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await
            {
                if pubsub.subscribe(&channel).await.is_ok() {
                    backoff = Duration::from_millis(20);
                    era.fetch_add(1, SeqCst);
                    l1.clear();
                    generations.forget_all();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                            continue;
                        };
                        apply(text, node, &*l1, &generations, &fills);
                    }
                    // The stream ended: the connection is gone.
                    era.fetch_add(1, SeqCst);
                    l1.clear();
                    generations.forget_all();
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn apply(text: &str, node: u64, l1: &dyn L1Store, generations: &Generations, fills: &Notify) {
    let Some((sender, event)) = Event::decode(text) else {
        return;
    };
    if let Event::Filled = event {
        // Our own fills wake our own cross-process waiters too.
        fills.notify_waiters();
        return;
    }
    if sender == node {
        return;
    }
    match event {
        Event::Key {
            slot,
            generation,
            key,
        } => {
            learn_announced(generations, &GenId::KeySlot(slot), generation);
            l1.remove(&key);
        }
        Event::Tag { generation, tag } => {
            learn_announced(generations, &GenId::Tag(tag), generation)
        }
        Event::Namespace {
            generation,
            namespace,
        } => learn_announced(generations, &GenId::Namespace(namespace), generation),
        Event::Clear { generation } => {
            learn_announced(generations, &GenId::Clear, generation);
            l1.clear();
        }
        Event::Filled => {}
    }
}

/// Learns a generation another process announced (or Redis reported),
/// except one below this
/// process's own value while that is not yet confirmed by Redis (after a
/// reconnection): Redis lost it, and the next load must read Redis and
/// raise it there ([`Shared::fetch_generation_at_least`]) rather than take
/// it as known.
pub(crate) fn learn_announced(generations: &Generations, id: &GenId, generation: u64) {
    if generation < generations.get(id) && !generations.unknown([id.clone()]).is_empty() {
        return;
    }
    generations.learn(id, generation);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let events = [
            Event::Key {
                slot: 7,
                generation: 3,
                key: "users:v1:user:4|2".into(),
            },
            Event::Tag {
                generation: 9,
                tag: "org:1".into(),
            },
            Event::Namespace {
                generation: 2,
                namespace: "users".into(),
            },
            Event::Clear { generation: 5 },
            Event::Filled,
        ];
        for event in events {
            assert_eq!(Event::decode(&event.encode(42)), Some((42, event)));
        }
        for garbage in ["", "x", "1|z|3", "1|k|99999|1|k", "a|t|1|x", "1|c|x"] {
            assert_eq!(Event::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn errors_never_show_credentials() {
        let e = RedisError::from((
            redis::ErrorKind::Io,
            "connect failed",
            "redis://user:secret@127.0.0.1:1/".to_owned(),
        ));
        let text = describe(&e);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
}
