//! Redis and Redis Cluster behind the [`Backend`] seam.
//!
//! Each operation goes over a connection driven by the calling runtime when
//! it has one (see [`routes`]), else over the connection of the cache's own
//! runtime.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{RedisError, RedisResult};

use super::{
    Backend, BoxFuture, Call, Connect, ConnectContext, Fault, LockedRead, Place, Subscription,
};
use crate::error::Error;

mod routes;

use routes::{Route, Routes};

/// Where the Redis server or cluster is.
#[derive(Debug, Clone)]
pub(crate) struct RedisConfig {
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
}

impl Connect for RedisConfig {
    fn connect(&self, cx: ConnectContext) -> BoxFuture<'static, Result<Arc<dyn Backend>, Error>> {
        let config = self.clone();
        Box::pin(async move {
            if config.urls.is_empty() {
                return Err(Error::InvalidConfig("no Redis URL given".to_owned()));
            }
            let conn = open(config.urls.clone(), config.cluster, cx.timeout).await?;
            let routes = Routes::new(
                config.clone(),
                cx.timeout,
                cx.connection_per_runtime,
                cx.background,
                conn,
            );
            Ok(Arc::new(RedisBackend {
                routes,
                unlock: redis::Script::new(UNLOCK),
                renew: redis::Script::new(RENEW),
                bump: redis::Script::new(BUMP_AND_ANNOUNCE),
                urls: config.urls,
                next_url: AtomicUsize::new(0),
            }) as Arc<dyn Backend>)
        })
    }
}

/// Compare-and-delete: releases a lock only if it still holds our token.
const UNLOCK: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// Moves a generation on (to at least ARGV[1]) and announces it, in one
/// round trip.
const BUMP_AND_ANNOUNCE: &str = r"local g = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if g < floor then g = redis.call('INCRBY', KEYS[1], floor - g) end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. g .. ARGV[4])
return g";
/// Compare-and-expire: renews a lock only if it still holds our token.
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

struct RedisBackend {
    /// The connections: the cache's own, and one per calling runtime.
    routes: Routes,
    unlock: redis::Script,
    renew: redis::Script,
    bump: redis::Script,
    /// Where the subscriber listens: each attempt goes to the next URL, so
    /// in a cluster (where a message published on any node reaches every
    /// node) it moves on when the node it listened to dies.
    urls: Vec<String>,
    next_url: AtomicUsize,
}

impl RedisBackend {
    /// `op` over the calling task's route, as a [`Call`].
    fn call<T, Op>(&self, op: impl FnOnce(Conn) -> Op) -> Call<T>
    where
        Op: std::future::Future<Output = RedisResult<T>> + Send + 'static,
    {
        let (place, conn) = match self.routes.pick() {
            Route::InPlace(conn) => (Place::Here, conn),
            Route::Background(conn) => (Place::Background, conn),
        };
        let op = op(conn);
        Call {
            place,
            op: Box::pin(async move { op.await.map_err(|e| fault(&e)) }),
        }
    }
}

impl Backend for RedisBackend {
    fn get_many(&self, keys: Vec<String>) -> Call<Vec<Option<Vec<u8>>>> {
        let mut mget = redis::Cmd::with_capacity(
            1 + keys.len(),
            4 + keys.iter().map(String::len).sum::<usize>(),
        );
        mget.arg("MGET");
        for key in &keys {
            mget.arg(key.as_str());
        }
        self.call(|conn| conn.mget(mget))
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> Call<()> {
        let millis = ttl.as_millis().max(1) as u64;
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis)
            .clone();
        self.call(|conn| conn.query::<()>(cmd))
    }

    fn increment(&self, key: String, by: u64) -> Call<u64> {
        let cmd = redis::cmd("INCRBY").arg(key).arg(by).clone();
        self.call(|conn| conn.query(cmd))
    }

    fn publish(&self, channel: String, message: String) -> Call<()> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(message).clone();
        self.call(|conn| async move { conn.query::<i64>(cmd).await.map(drop) })
    }

    fn set_if_absent(&self, key: String, value: String, ttl: Duration) -> Call<bool> {
        let millis = ttl.as_millis().max(1) as u64;
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .clone();
        self.call(|conn| async move {
            let reply: Option<String> = conn.query(cmd).await?;
            Ok(reply.is_some())
        })
    }

    fn delete_if_equal(&self, key: String, value: String) -> Call<()> {
        let script = self.unlock.clone();
        self.call(|conn| async move {
            conn.script::<i64>(&script, key, std::slice::from_ref(&value))
                .await
                .map(drop)
        })
    }

    fn bump_and_announce(
        &self,
        key: String,
        floor: u64,
        channel: String,
        before: String,
        after: String,
    ) -> Call<u64> {
        let script = self.bump.clone();
        self.call(|conn| async move {
            conn.script::<u64>(&script, key, &[floor.to_string(), channel, before, after])
                .await
        })
    }

    fn expire_if_equal(&self, key: String, value: String, ttl: Duration) -> Call<()> {
        let script = self.renew.clone();
        let millis = ttl.as_millis().max(1).to_string();
        self.call(|conn| async move {
            conn.script::<i64>(&script, key, &[value, millis])
                .await
                .map(drop)
        })
    }

    fn lock_and_get(
        &self,
        locks: Vec<String>,
        token: String,
        ttl: Duration,
        keys: Vec<String>,
    ) -> Call<LockedRead> {
        let millis = ttl.as_millis().max(1) as u64;
        let mut commands: Vec<redis::Cmd> = locks
            .iter()
            .map(|lock| {
                redis::cmd("SET")
                    .arg(lock.as_str())
                    .arg(token.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(millis)
                    .clone()
            })
            .collect();
        let taking = commands.len();
        if !keys.is_empty() {
            commands.push(mget(&keys));
        }
        self.call(move |conn| async move {
            let mut replies = conn.phases(vec![commands]).await?.into_iter();
            let taken = replies
                .by_ref()
                .take(taking)
                .map(|reply| !matches!(reply, redis::Value::Nil))
                .collect();
            let values = match replies.next() {
                Some(redis::Value::Array(values)) => values.into_iter().map(bulk).collect(),
                _ => vec![None; keys.len()],
            };
            Ok((taken, values))
        })
    }

    fn write_many(
        &self,
        sets: Vec<(String, Vec<u8>, Duration)>,
        unlocks: Vec<String>,
        token: String,
        keys: Vec<String>,
        publish: Option<(String, String)>,
    ) -> Call<Vec<Option<Vec<u8>>>> {
        let mut writes: Vec<redis::Cmd> = sets
            .iter()
            .map(|(key, value, ttl)| {
                redis::cmd("SET")
                    .arg(key.as_str())
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .clone()
            })
            .collect();
        writes.extend(unlocks.iter().map(|lock| {
            redis::cmd("EVAL")
                .arg(UNLOCK)
                .arg(1)
                .arg(lock.as_str())
                .arg(token.as_str())
                .clone()
        }));
        let written = writes.len();
        let mut after = Vec::new();
        if !keys.is_empty() {
            after.push(mget(&keys));
        }
        if let Some((channel, message)) = &publish {
            after.push(
                redis::cmd("PUBLISH")
                    .arg(channel.as_str())
                    .arg(message.as_str())
                    .clone(),
            );
        }
        self.call(move |conn| async move {
            let replies = conn.phases(vec![writes, after]).await?;
            Ok(match replies.into_iter().nth(written) {
                Some(redis::Value::Array(values)) if !keys.is_empty() => {
                    values.into_iter().map(bulk).collect()
                }
                _ => vec![None; keys.len()],
            })
        })
    }

    fn ping(&self) -> Call<()> {
        self.call(|conn| async move { conn.query::<String>(redis::cmd("PING")).await.map(drop) })
    }

    fn subscribe(
        &self,
        channel: String,
    ) -> BoxFuture<'static, Result<Box<dyn Subscription>, Fault>> {
        let url = self.urls[self.next_url.fetch_add(1, Relaxed) % self.urls.len()].clone();
        Box::pin(async move {
            let client = redis::Client::open(url.as_str()).map_err(|e| fault(&e))?;
            let mut pubsub = client.get_async_pubsub().await.map_err(|e| fault(&e))?;
            pubsub.subscribe(&channel).await.map_err(|e| fault(&e))?;
            Ok(Box::new(RedisSubscription {
                messages: Box::pin(pubsub.into_on_message()),
            }) as Box<dyn Subscription>)
        })
    }

    fn warm_up(&self) {
        let _ = self.routes.pick();
    }
}

struct RedisSubscription {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Subscription for RedisSubscription {
    fn next(&mut self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            self.messages
                .next()
                .await
                .map(|message| message.get_payload_bytes().to_vec())
        })
    }
}

/// A Redis error as a [`Fault`], without anything that could be a
/// credential.
fn fault(e: &RedisError) -> Fault {
    match is_infrastructure(e) {
        true => Fault::Down(describe(e)),
        false => Fault::Refused(describe(e)),
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
        Ok(replies.into_iter().map(bulk).collect())
    }

    /// The replies of every command of `phases`, in order. On one server
    /// all of them go in one pipeline (one round trip, run in order). On a
    /// cluster, where a pipeline cannot span slots, each phase's commands
    /// are sent at once (the client routes each to its node) and the next
    /// phase follows: one round trip per phase.
    async fn phases(self, phases: Vec<Vec<redis::Cmd>>) -> RedisResult<Vec<redis::Value>> {
        match self {
            Conn::Single(mut c) => {
                let mut pipe = redis::pipe();
                for command in phases.into_iter().flatten() {
                    pipe.add_command(command);
                }
                if pipe.is_empty() {
                    return Ok(Vec::new());
                }
                pipe.query_async(&mut c).await
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => {
                let mut replies = Vec::new();
                for phase in phases {
                    let sent = phase.into_iter().map(|command| {
                        let mut c = c.clone();
                        async move { command.query_async::<redis::Value>(&mut c).await }
                    });
                    replies.extend(futures_util::future::try_join_all(sent).await?);
                }
                Ok(replies)
            }
        }
    }

    async fn script<T: redis::FromRedisValue>(
        mut self,
        script: &redis::Script,
        key: String,
        args: &[String],
    ) -> RedisResult<T> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg.as_str());
        }
        match &mut self {
            Conn::Single(c) => invocation.invoke_async(c).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => invocation.invoke_async(c).await,
        }
    }
}

/// `MGET keys..`.
fn mget(keys: &[String]) -> redis::Cmd {
    let mut mget = redis::cmd("MGET");
    for key in keys {
        mget.arg(key.as_str());
    }
    mget
}

/// A string value's bytes; `None` for nil or a value of another type.
fn bulk(value: redis::Value) -> Option<Vec<u8>> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

async fn open(urls: Vec<String>, cluster: bool, timeout: Duration) -> Result<Conn, Error> {
    // The URL itself is left out: it may hold a password.
    let bad_url = |e: RedisError| {
        Error::InvalidConfig(format!(
            "bad Redis URL ({}); expected redis://[user:password@]host[:port][/db], \
             or rediss://... for TLS",
            describe(&e)
        ))
    };
    let unreachable = |e: RedisError| {
        Error::L2Connection(format!("could not connect to Redis: {}", describe(&e)))
    };
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
        // Every operation is bounded by `l2_timeout` already (`L2::run`):
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

#[cfg(test)]
mod tests {
    use super::*;

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
