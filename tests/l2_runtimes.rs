//! Which connection a call reaches Redis over: each tokio runtime that calls
//! gets one of its own (so an L2 hit costs no thread switch), a thread
//! outside any runtime drives its own for sync functions, and both close
//! when their runtime or thread ends. Runtimes without I/O or timers still
//! get their calls served, over the cache's own runtime.

#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cachette::{cache, Cache};
use support::cache::redis_cache;
use support::redis::RedisServer;
use support::wait::{eventually, eventually_blocking_every, POLL};

const LIMIT: Duration = Duration::from_secs(10);

/// Every call reads Redis: no L1.
#[cache(key = "profile:<id>", ttl = 300, tier = "l2", cache = cache)]
async fn profile(cache: &Cache, id: u64) -> String {
    format!("profile {id}")
}

#[cache(key = "account:<id>", ttl = 300, tier = "l2", cache = cache)]
fn account(cache: &Cache, id: u64) -> String {
    format!("account {id}")
}

#[cache(key = "report:<id>", ttl = 300, lock, cache = cache)]
async fn report(cache: &Cache, id: u64) -> String {
    format!("report {id}")
}

/// How often `function`'s body ran on `cache`: counted per cache, so tests
/// sharing one process (plain `cargo test`) do not see each other's runs.
fn body_runs(cache: &Cache, function: &str) -> u64 {
    cache
        .stats()
        .function(&format!("l2_runtimes::{function}"))
        .map_or(0, |f| f.body_runs)
}

/// The server's client connections but the one asking: id to last command.
fn clients(server: &RedisServer) -> BTreeMap<u64, String> {
    let list = server.cmd(&["CLIENT", "LIST"]).expect("CLIENT LIST");
    let list = list.as_str().expect("CLIENT LIST is text").to_owned();
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            let id = field("id")?.parse().ok()?;
            let cmd = field("cmd")?;
            (cmd != "client|list").then(|| (id, cmd.to_owned()))
        })
        .collect()
}

/// Waits until the server's clients stop changing (connections being
/// opened in the background), and returns them.
fn settled(server: &RedisServer) -> BTreeMap<u64, String> {
    let mut last = clients(server);
    let mut same = 0;
    let steady = eventually_blocking_every(Duration::from_millis(50), LIMIT, || {
        let now = clients(server);
        same = if now.keys().eq(last.keys()) {
            same + 1
        } else {
            0
        };
        last = now;
        same >= 4
    });
    assert!(steady, "the clients settle: {last:?}");
    last
}

/// A client that was not there `before` and last ran `MGET`: a connection
/// that served an L2 read.
fn new_reader(server: &RedisServer, before: &BTreeMap<u64, String>) -> Option<u64> {
    clients(server)
        .into_iter()
        .find(|(id, cmd)| !before.contains_key(id) && cmd == "mget")
        .map(|(id, _)| id)
}

/// A private Redis, a runtime that lives through the test, and a cache on
/// that Redis built in that runtime, its keys under `prefix`.
fn start(
    prefix: &str,
    lock_timeout: Option<Duration>,
) -> (RedisServer, tokio::runtime::Runtime, Cache) {
    let server = RedisServer::start();
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let l2_timeout = Duration::from_millis(500);
    let cache = home.block_on(redis_cache(&server.url(), prefix, l2_timeout, lock_timeout));
    (server, home, cache)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn each_runtime_that_calls_reads_over_its_own_connection_closed_when_it_shuts_down() {
    let (server, home, cache) = start("runtimes", None);
    assert_eq!(home.block_on(profile(&cache, 1)), "profile 1");
    let before = settled(&server);

    for round in 0..3 {
        let runtime = current_thread();
        let reader = runtime.block_on(async {
            let mut reader = None;
            let found = eventually(LIMIT, async || {
                assert_eq!(profile(&cache, 1).await, "profile 1");
                reader = new_reader(&server, &before);
                reader.is_some()
            })
            .await;
            assert!(
                found,
                "round {round}: the runtime reads over a connection of its own"
            );
            reader
        });
        let reader = reader.expect("found");
        drop(runtime);
        let closed =
            eventually_blocking_every(POLL, LIMIT, || !clients(&server).contains_key(&reader));
        assert!(closed, "round {round}: its connection closes with it");
    }
    assert_eq!(
        settled(&server).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no connection is left behind"
    );
    assert_eq!(body_runs(&cache, "profile"), 1, "every later call hit L2");

    // The runtime that built the cache, still running, earns one too;
    // dropping the cache closes all its connections, that one included.
    let now = clients(&server);
    let earned = home.block_on(eventually(LIMIT, async || {
        profile(&cache, 1).await;
        new_reader(&server, &now).is_some()
    }));
    assert!(
        earned,
        "the home runtime reads over a connection of its own"
    );
    drop(cache);
    let closed = eventually_blocking_every(POLL, LIMIT, || clients(&server).is_empty());
    assert!(closed, "left open: {:?}", clients(&server));
    drop(home);
}

/// A runtime made for a few calls (one per request, say) is served over
/// the cache's own connection: no connection is opened and closed for it.
#[test]
fn short_lived_runtimes_open_no_connection() {
    let (server, home, cache) = start("brief", None);
    assert_eq!(home.block_on(profile(&cache, 3)), "profile 3");
    let before = settled(&server);
    let connections = || {
        let info = server.info("stats").expect("INFO stats");
        support::redis::info_field(&info, "total_connections_received")
            .and_then(|n| n.parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let opened = connections();
    for _ in 0..20 {
        let runtime = current_thread();
        for _ in 0..5 {
            assert_eq!(runtime.block_on(profile(&cache, 3)), "profile 3");
        }
    }
    // Each INFO and CLIENT LIST above is a connection of its own.
    let asked = 1;
    assert_eq!(
        connections(),
        opened + asked,
        "no runtime opened a connection"
    );
    assert_eq!(
        settled(&server).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn threads_outside_any_runtime_read_over_their_own_connections_closed_when_they_end() {
    let (server, _home, cache) = start("threads", None);
    assert_eq!(account(&cache, 1), "account 1");
    let before = settled(&server);

    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let mut calls = 0;
                    // The thread's connection opens while its calls run.
                    let found = eventually_blocking_every(POLL, LIMIT, || {
                        for _ in 0..5 {
                            calls += 1;
                            assert_eq!(account(&cache, 1), "account 1");
                        }
                        new_reader(&server, &before).is_some()
                    });
                    assert!(found, "a thread reads over a connection of its own");
                    calls
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().expect("no panic") >= 5);
        }
    });
    let closed =
        eventually_blocking_every(POLL, LIMIT, || clients(&server).keys().eq(before.keys()));
    assert!(closed, "the threads' connections close with them");
    assert_eq!(body_runs(&cache, "account"), 1, "every later call hit L2");
}

/// Runtimes built without I/O or without timers cannot drive a connection:
/// their calls go over the cache's own runtime, and a lock wait uses its
/// timers. Nothing panics in the caller (the task that tries to open the
/// runtime's connection panics inside tokio, which prints its message).
#[test]
fn runtimes_without_io_or_timers_are_served_over_the_caches_own_runtime() {
    let lock_timeout = Duration::from_millis(300);
    let (server, home, cache) = start("bare", Some(lock_timeout));
    assert_eq!(home.block_on(profile(&cache, 9)), "profile 9");
    let runs = body_runs(&cache, "profile");

    let bare = [
        (
            "neither",
            tokio::runtime::Builder::new_current_thread().build(),
        ),
        (
            "timers only",
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build(),
        ),
        (
            "I/O only",
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build(),
        ),
    ];
    for (id, (what, runtime)) in (100..).zip(bare) {
        let runtime = runtime.expect("a runtime");
        for _ in 0..20 {
            assert_eq!(runtime.block_on(profile(&cache, 9)), "profile 9", "{what}");
        }
        // Another process holds the fill lock: the call waits for it on
        // the cache's timers, then runs the body itself (G5).
        let lock = format!("bare:#lock:bare:v1:report:{id}");
        let held = server.cmd(&["SET", &lock, "elsewhere", "PX", "60000"]);
        assert!(held.expect("SET").is_ok());
        let before = body_runs(&cache, "report");
        assert_eq!(
            runtime.block_on(report(&cache, id)),
            format!("report {id}"),
            "{what}"
        );
        assert_eq!(body_runs(&cache, "report"), before + 1, "{what}");
    }
    assert_eq!(
        body_runs(&cache, "profile"),
        runs,
        "every call was an L2 hit"
    );
    let stats = cache.stats();
    let waits = stats
        .function("l2_runtimes::report")
        .expect("stats")
        .lock_waits;
    assert_eq!(waits, 0, "nobody stored the value: the waits timed out");
}

/// With `l2_connection_per_runtime(false)` a busy runtime keeps going
/// through the cache's own connection.
#[test]
fn without_connections_per_runtime_a_busy_runtime_opens_none() {
    let server = RedisServer::start();
    let home = current_thread();
    let cache = home
        .block_on(
            Cache::builder()
                .prefix("shared")
                .redis(server.url())
                .l2_connection_per_runtime(false)
                .build(),
        )
        .expect("connects");
    assert_eq!(home.block_on(profile(&cache, 5)), "profile 5");
    let before = settled(&server);
    let runtime = current_thread();
    runtime.block_on(async {
        for _ in 0..200 {
            assert_eq!(profile(&cache, 5).await, "profile 5");
        }
        // Long enough for a connection to be earned and opened, were it on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..50 {
            assert_eq!(profile(&cache, 5).await, "profile 5");
        }
    });
    assert_eq!(
        settled(&server).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no connection of its own"
    );
}
