#![cfg(feature = "redis")]
//! A multi-process soak of the shared tier under injected faults, against
//! real `redis-server` processes.
//!
//! Three worker processes (this test binary run again, see
//! [`soak_worker`]) each build a `Cache` on one Redis, reached through a
//! [`FaultProxy`] of its own, and run 16 tasks over 300 Zipf-skewed keys:
//! about 6 % of the calls are writes, the rest reads of [`item`], a
//! `lock`ed, tagged cached function. The "database" is a second `redis-server` that is never
//! faulted (the truth store): a write bumps the key's version there
//! (`INCR truth:<id>`), then tells the cache with `item_invalidate`,
//! `item_put` or `invalidate_tag`; a read's body returns the version it
//! finds there. Meanwhile the parent test injects faults into the cache's
//! Redis only, one phase after another ([`schedule`]), each fault followed
//! by a few healthy seconds: latency below and above `l2_timeout`, a
//! blackhole of one worker (a partition) and of all, connection resets,
//! SIGKILL and restart, SIGSTOP and SIGCONT, and entries overwritten with
//! garbage.
//!
//! What it checks, from what the README promises:
//!
//! 1. No cached call fails, panics or hangs (each is bounded by
//!    [`CALL_BOUND`]).
//! 2. Within a process, once a write's companion returned `Ok` with truth
//!    version `v`, no read begun after it returns a version below `v`.
//! 3. Across processes, no read returns a version older than one whose
//!    write returned `Ok` (in any process) more than `l1_max_ttl` plus
//!    [`STALENESS_MARGIN`] before the read began. Writes are logged with
//!    their completion times in the truth store and checked after the run.
//! 4. Garbage in Redis never yields a value that is not a real version of
//!    its key.
//! 5. Once the faults and the writes are over, every process serves the
//!    truth for every key within [`CONVERGENCE_BOUND`].
//!
//! The run prints its figures (calls, companions' outcomes, staleness,
//! per-phase throughput, miss latency and recovery, convergence, body runs
//! per cold-key stampede) and, when a check fails, examples with what Redis
//! held for the key. It is `#[ignore]`d in the plain test run;
//! `scripts/test` runs it on its own, about 50 s of phases by default.
//! `CACHETTE_SOAK_SECS` sets another length, and `CACHETTE_SOAK_PHASES`
//! (words, comma-separated) keeps only the phases whose names contain one:
//!
//! ```sh
//! CACHETTE_SOAK_SECS=300 cargo test --all-features --test l2_soak -- --ignored --nocapture
//! CACHETTE_SOAK_SECS=100 CACHETTE_SOAK_PHASES=resets cargo test --all-features --test l2_soak -- --ignored --nocapture
//! ```

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachette::{cache, Cache};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use support::child::ChildProcess;
use support::proxy::FaultProxy;
use support::redis::{temp_dir, RedisConn, RedisServer, RespValue};

/// Worker processes.
const WORKERS: usize = 3;
/// Tasks per worker process.
const TASKS: usize = 16;
/// Keys of the workload, drawn Zipf-distributed by rank.
const KEYS: u64 = 300;
const ZIPF_EXPONENT: f64 = 1.0;
/// The share of calls that are writes.
const WRITE_SHARE: f64 = 0.06;
/// Each key belongs to one of this many tags, `group:<id % GROUPS>`.
const GROUPS: u64 = 16;
/// How long a task waits between two calls.
const THINK: Duration = Duration::from_millis(1);
/// The workers' caches: how long L1 keeps a value at most, which bounds
/// how stale another process may be (check 3).
const L1_MAX_TTL: Duration = Duration::from_secs(2);
const L2_TIMEOUT: Duration = Duration::from_millis(50);
/// Added to `l1_max_ttl` for check 3: a value read from Redis just before a
/// write lives in L1 from the read's end, at most `l2_timeout` later, and
/// the processes' clocks and schedulers are not exact.
const STALENESS_MARGIN: Duration = Duration::from_millis(250);
/// No call, cached or companion, may take longer (check 1).
const CALL_BOUND: Duration = Duration::from_secs(10);
/// How long after the faults end every process must serve the truth.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(5);
/// How long a worker keeps trying to converge before it reports failure.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(15);
/// From spawning the workers to the start of the first phase.
const STARTUP: Duration = Duration::from_secs(3);
/// The length of the fault schedule unless `CACHETTE_SOAK_SECS` says.
const DEFAULT_SECS: u64 = 50;
/// The cold keys of the stampedes, one per phase, are this and up.
const STAMPEDE_BASE: u64 = 1_000_000;
/// The prefix of the workers' caches.
const PREFIX: &str = "soak";

/// The environment variables that make [`soak_worker`] a worker.
const WORKER: &str = "CACHETTE_SOAK_WORKER";
const CACHE_URL: &str = "CACHETTE_SOAK_CACHE_URL";
const TRUTH_PORT: &str = "CACHETTE_SOAK_TRUTH_PORT";
const REPORT: &str = "CACHETTE_SOAK_REPORT";
const PLAN: &str = "CACHETTE_SOAK_PLAN";

/// Wall-clock milliseconds since the epoch: comparable across processes.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The tag of `id`'s group, as `invalidate_tag` takes it.
fn group_tag(id: u64) -> String {
    format!("group:{}", group(id))
}

fn group(id: u64) -> u64 {
    id % GROUPS
}

// ---------------------------------------------------------------------------
// The schedule, shared by the parent and the workers.

/// When the workers run: the first phase's start, the end of the last
/// phase (writes and faults stop, convergence begins) and the start of each
/// stampede, as wall-clock milliseconds.
#[derive(Clone, Debug)]
struct Plan {
    start_ms: u64,
    faults_end_ms: u64,
    stampedes_ms: Vec<u64>,
}

impl Plan {
    /// Phases back to back from `start_ms`, a stampede in the middle of
    /// each fault (of each healthy phase).
    fn new(start_ms: u64, phases: &[Phase]) -> Plan {
        let mut at = start_ms;
        let mut stampedes_ms = Vec::new();
        for phase in phases {
            let span = match phase.fault_ms {
                0 => phase.length_ms,
                fault_ms => fault_ms,
            };
            stampedes_ms.push(at + span / 2);
            at += phase.length_ms;
        }
        Plan {
            start_ms,
            faults_end_ms: at,
            stampedes_ms,
        }
    }

    fn encode(&self) -> String {
        let stampedes: Vec<String> = self.stampedes_ms.iter().map(u64::to_string).collect();
        format!(
            "{} {} {}",
            self.start_ms,
            self.faults_end_ms,
            stampedes.join(",")
        )
    }

    fn decode(text: &str) -> Plan {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("a bad plan: {text:?}"))
        };
        let stampedes_ms = words
            .get(2)
            .unwrap_or(&"")
            .split(',')
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().expect("a stampede time"))
            .collect();
        Plan {
            start_ms: number(0),
            faults_end_ms: number(1),
            stampedes_ms,
        }
    }
}

/// Whose link to Redis a proxy fault hits: each worker reaches Redis
/// through a proxy of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Every,
    /// One worker, another in each round: the others go on writing with
    /// `Ok` while it hears nothing, which puts check 3 to the test.
    One,
}

/// What the parent does to the cache's Redis while a phase's fault holds.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Healthy,
    /// Every reply waits this long in the proxy.
    Latency(Duration, Target),
    /// Commands reach Redis and run, but no reply (nor pushed message)
    /// comes back until the fault ends, when they all arrive late.
    Blackhole(Target),
    /// Every 250 ms, every connection is reset and the next command sent is
    /// lost with its connection.
    Resets,
    /// SIGKILL, and a restart on the same port (empty) when the fault ends.
    Kill,
    /// SIGSTOP, and SIGCONT when the fault ends.
    Pause,
    /// Every 50 ms, a few entries are overwritten with garbage.
    Garbage,
}

#[derive(Clone, Debug)]
struct Phase {
    name: String,
    fault: Fault,
    /// The worker a [`Target::One`] fault hits.
    worker: usize,
    /// How long the fault holds from the phase's start; the rest of the
    /// phase is for recovery.
    fault_ms: u64,
    length_ms: u64,
}

/// One round of every fault: name, fault, seconds it holds, seconds of
/// the phase (45 s in all).
const CYCLE: [(&str, Fault, u64, u64); 7] = [
    (
        "latency 20 ms",
        Fault::Latency(Duration::from_millis(20), Target::Every),
        4,
        5,
    ),
    (
        "latency 120 ms",
        Fault::Latency(Duration::from_millis(120), Target::One),
        3,
        6,
    ),
    ("partition", Fault::Blackhole(Target::One), 3, 6),
    ("blackhole", Fault::Blackhole(Target::Every), 3, 6),
    ("resets", Fault::Resets, 3, 6),
    ("kill (SIGKILL, restart)", Fault::Kill, 3, 6),
    ("pause (SIGSTOP, SIGCONT)", Fault::Pause, 3, 6),
];
/// The last phase of a round, and the one that follows its baseline.
const GARBAGE_SECS: u64 = 5;
const BASELINE_SECS: u64 = 5;

/// A healthy baseline, then rounds of [`CYCLE`] and garbage, for about
/// `secs` (at least one round). With `only`, just the phases whose names
/// contain one of its words.
fn schedule(secs: u64, only: Option<&str>) -> Vec<Phase> {
    let phase = |name: &str, fault, worker, fault_secs: u64, secs: u64| Phase {
        name: name.to_owned(),
        fault,
        worker,
        fault_ms: fault_secs * 1_000,
        length_ms: secs * 1_000,
    };
    let round_secs: u64 = CYCLE.iter().map(|c| c.3).sum::<u64>() + GARBAGE_SECS;
    let rounds = (secs.saturating_sub(BASELINE_SECS) / round_secs).max(1);
    let picked = |name: &str| only.is_none_or(|only| only.split(',').any(|w| name.contains(w)));
    let mut phases = vec![phase("baseline", Fault::Healthy, 0, 0, BASELINE_SECS)];
    for round in 0..rounds as usize {
        let worker = round % WORKERS;
        for (name, fault, fault_secs, secs) in CYCLE {
            let name = match fault {
                Fault::Latency(_, Target::One) | Fault::Blackhole(Target::One) => {
                    format!("{name} (w{worker})")
                }
                _ => name.to_owned(),
            };
            phases.push(phase(&name, fault, worker, fault_secs, secs));
        }
        phases.push(phase(
            "garbage",
            Fault::Garbage,
            worker,
            GARBAGE_SECS,
            GARBAGE_SECS,
        ));
    }
    phases.retain(|p| matches!(p.fault, Fault::Healthy) || picked(&p.name));
    phases
}

/// The soak's length from `CACHETTE_SOAK_SECS`, or [`DEFAULT_SECS`].
fn soak_secs() -> u64 {
    std::env::var("CACHETTE_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("CACHETTE_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(DEFAULT_SECS)
}

// ---------------------------------------------------------------------------
// The workload: the truth store, the cached function and what it returns.

/// What [`item`] returns: a key's version, sealed so that a value that is
/// not one the body made (garbage decoded by chance) is told apart
/// (check 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    id: u64,
    version: u64,
    seal: u64,
}

impl Item {
    fn new(id: u64, version: u64) -> Item {
        Item {
            id,
            version,
            seal: seal(id, version),
        }
    }

    /// Whether this is a value the body could have made for `id`.
    fn is_genuine(&self, id: u64) -> bool {
        self.id == id && self.seal == seal(id, self.version)
    }
}

fn seal(id: u64, version: u64) -> u64 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version)
        .rotate_left(29)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The truth store, as the workers reach it: async, never faulted.
#[derive(Clone)]
struct Truth {
    conn: ConnectionManager,
}

impl Truth {
    async fn connect(port: u16) -> Truth {
        Truth::connect_url(&format!("redis://127.0.0.1:{port}/")).await
    }

    async fn connect_url(url: &str) -> Truth {
        let client = redis::Client::open(url).expect("a valid URL");
        // Generous: the truth store is never faulted, only slow when the
        // machine is busy.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .expect("connects to the truth store");
        Truth { conn }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.conn.clone())
            .await
            .unwrap_or_else(|e| panic!("the truth store failed: {e}"))
    }

    /// The key's current version (0 before its first write).
    async fn version(&self, id: u64) -> u64 {
        let version: Option<u64> = self.query(redis::cmd("GET").arg(truth_key(id))).await;
        version.unwrap_or(0)
    }

    /// Moves the key's version on; returns the new one.
    async fn bump(&self, id: u64) -> u64 {
        self.query(redis::cmd("INCR").arg(truth_key(id))).await
    }

    /// Takes the key's writer lock, so that writes of one key, across
    /// processes, follow one another: a `_put` never stores a version over
    /// a newer one. False when another writer holds it.
    async fn lock_writer(&self, id: u64) -> bool {
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(format!("writer:{id}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000),
            )
            .await;
        taken.is_some()
    }

    async fn unlock_writer(&self, id: u64) {
        let _: i64 = self
            .query(redis::cmd("DEL").arg(format!("writer:{id}")))
            .await;
    }

    async fn log_write(&self, write: &WriteRecord) {
        let _: i64 = self
            .query(redis::cmd("RPUSH").arg("writes").arg(write.encode()))
            .await;
    }
}

fn truth_key(id: u64) -> String {
    format!("truth:{id}")
}

/// The read under test: locked (one body run per cold key across
/// processes), tagged by group. The body reads the key's version in the
/// truth store and takes 1-2 ms more, as a database query would; it sets
/// `ran`, so that the caller knows its call ran the body.
#[cache(
    key = "item:<group>:<id>",
    ttl = 600,
    lock,
    tags = ["group:<group>"],
    skip(truth, ran),
    cache = cache
)]
async fn item(cache: &Cache, truth: &Truth, ran: &AtomicBool, group: u64, id: u64) -> Item {
    ran.store(true, SeqCst);
    let version = truth.version(id).await;
    tokio::time::sleep(Duration::from_micros(1_000 + fastrand::u64(..1_000))).await;
    Item::new(id, version)
}

/// How a write tells the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteKind {
    Invalidate,
    Put,
    Tag,
}

impl WriteKind {
    /// 60 % `item_invalidate`, 25 % `item_put`, 15 % `invalidate_tag`.
    fn draw(rng: &mut fastrand::Rng) -> WriteKind {
        match rng.u32(..100) {
            0..60 => WriteKind::Invalidate,
            60..85 => WriteKind::Put,
            _ => WriteKind::Tag,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WriteKind::Invalidate => "item_invalidate",
            WriteKind::Put => "item_put",
            WriteKind::Tag => "invalidate_tag",
        }
    }

    fn parse(name: &str) -> WriteKind {
        [WriteKind::Invalidate, WriteKind::Put, WriteKind::Tag]
            .into_iter()
            .find(|kind| kind.name() == name)
            .unwrap_or_else(|| panic!("no write kind {name}"))
    }

    /// Tells `cache` that `id` is now at `version`.
    async fn apply(self, cache: &Cache, id: u64, version: u64) -> Result<(), cachette::Error> {
        match self {
            WriteKind::Invalidate => item_invalidate(cache, group(id), id).await,
            WriteKind::Put => item_put(cache, group(id), id, Item::new(id, version)).await,
            WriteKind::Tag => cache.invalidate_tag(&group_tag(id)).await,
        }
    }
}

/// The variant of a companion's error, for the figures.
fn error_name(e: &cachette::Error) -> &'static str {
    match e {
        cachette::Error::L2Timeout => "L2Timeout",
        cachette::Error::L2Unavailable => "L2Unavailable",
        cachette::Error::L2Connection(_) => "L2Connection",
        cachette::Error::L2Refused(_) => "L2Refused",
        cachette::Error::BadData(_) => "BadData",
        _ => "other",
    }
}

/// One write, as logged in the truth store's `writes` list.
#[derive(Clone, Debug)]
struct WriteRecord {
    id: u64,
    version: u64,
    end_ms: u64,
    worker: usize,
    kind: WriteKind,
    ok: bool,
}

impl WriteRecord {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.id,
            self.version,
            self.end_ms,
            self.worker,
            self.kind.name(),
            u8::from(self.ok)
        )
    }

    fn decode(text: &str) -> WriteRecord {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("a bad write record: {text:?}"))
        };
        WriteRecord {
            id: number(0),
            version: number(1),
            end_ms: number(2),
            worker: number(3) as usize,
            kind: WriteKind::parse(words.get(4).copied().unwrap_or_default()),
            ok: number(5) == 1,
        }
    }
}

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|rank| {
                total += (rank as f64).powf(-s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

// ---------------------------------------------------------------------------
// A worker process.

/// A write this process finished: the version, when (wall-clock ms) and
/// how the cache was told.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    version: u64,
    end_ms: u64,
    kind: Option<WriteKind>,
}

/// What a read of a key begins with: the newest writes of it this process
/// had finished, with `Ok` and with an error.
#[derive(Clone, Copy, Debug, Default)]
struct Floors {
    ok: Written,
    failed: Written,
}

/// What a worker shares between its tasks.
struct Worker {
    index: usize,
    /// When the first phase began, for the times in examples.
    start_ms: u64,
    cache: Cache,
    truth: Truth,
    /// A connection of its own to the cache's Redis, to show what it holds
    /// when a check fails.
    probe: Truth,
    /// Per key: the newest write this process finished with `Ok`, and
    /// with an error.
    ok_writes: Vec<Mutex<Written>>,
    failed_writes: Vec<Mutex<Written>>,
}

impl Worker {
    async fn connect(index: usize, start_ms: u64, cache_url: &str, truth_port: u16) -> Worker {
        let cache = Cache::builder()
            .prefix(PREFIX)
            .redis(cache_url)
            .l2_timeout(L2_TIMEOUT)
            .l1_max_ttl(L1_MAX_TTL)
            .build()
            .await
            .expect("connects to the cache's Redis");
        let writes = || (0..KEYS).map(|_| Mutex::default()).collect();
        Worker {
            index,
            start_ms,
            cache,
            truth: Truth::connect(truth_port).await,
            probe: Truth::connect_url(cache_url).await,
            ok_writes: writes(),
            failed_writes: writes(),
        }
    }

    /// The newest writes of `id` this process finished, as a read of it
    /// begins.
    fn floors(&self, id: u64) -> Floors {
        let Some(i) = usize::try_from(id)
            .ok()
            .filter(|&i| i < self.ok_writes.len())
        else {
            return Floors::default();
        };
        Floors {
            ok: *lock(&self.ok_writes[i]),
            failed: *lock(&self.failed_writes[i]),
        }
    }

    /// Records a write of `id` this process finished.
    fn wrote(&self, id: u64, ok: bool, written: Written) {
        let list = match ok {
            true => &self.ok_writes,
            false => &self.failed_writes,
        };
        let mut newest = lock(&list[usize::try_from(id).expect("a key id")]);
        if written.version > newest.version {
            *newest = written;
        }
    }

    /// What the cache's Redis holds for `id` now: its entry's generations
    /// and age, and the current generations, for a failed check's example.
    async fn redis_view(&self, id: u64) -> String {
        let rendered = format!("item:{}:{id}", group(id));
        let keys = [
            format!("{PREFIX}:v1:{rendered}"),
            format!("{PREFIX}:#gen:key:{}", key_slot(&rendered)),
            format!("{PREFIX}:#gen:tag:{}", group_tag(id)),
            format!("{PREFIX}:#gen:clear"),
        ];
        let mut mget = redis::cmd("MGET");
        keys.iter().for_each(|key| {
            mget.arg(key);
        });
        let mut conn = self.probe.conn.clone();
        let read = mget.query_async::<Vec<Option<Vec<u8>>>>(&mut conn);
        let Ok(Ok(values)) = tokio::time::timeout(Duration::from_secs(1), read).await else {
            return "Redis did not answer".to_owned();
        };
        let number = |i: usize| {
            values[i]
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let entry = values[0].as_deref().and_then(Header::decode).map_or(
            "no readable entry".to_owned(),
            |h| {
                format!(
                    "an entry of version {} filled at +{:.3} s under key gen {}, tag gen {}, clear gen {}",
                    h.version.map_or("?".to_owned(), |v| v.to_string()),
                    self.offset(h.created_ms),
                    h.key_gen,
                    h.tag_gen,
                    h.clear_gen
                )
            },
        );
        format!(
            "Redis now holds {entry}; the current key gen is {}, tag gen {}, clear gen {}",
            number(1),
            number(2),
            number(3)
        )
    }

    /// `at_ms` as seconds since the first phase began.
    fn offset(&self, at_ms: u64) -> f64 {
        at_ms as f64 / 1_000.0 - self.start_ms as f64 / 1_000.0
    }
}

/// The generations an entry in Redis was filled under (the envelope's
/// header: `cache-runtime/src/envelope.rs`), for examples.
struct Header {
    created_ms: u64,
    clear_gen: u64,
    key_gen: u64,
    /// The first tag's (the function has one).
    tag_gen: u64,
    /// The stored [`Item`]'s version (bincode: a varint after the id's).
    version: Option<u64>,
}

impl Header {
    fn decode(bytes: &[u8]) -> Option<Header> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        if bytes.first() != Some(&0xCA) {
            return None;
        }
        let name_len = usize::from(u16::from_le_bytes(bytes.get(49..51)?.try_into().ok()?));
        let payload = bytes.get(51 + name_len + 8 + 4..)?;
        Some(Header {
            created_ms: u64_at(3)?,
            clear_gen: u64_at(31)?,
            key_gen: u64_at(39)?,
            tag_gen: u64_at(51 + name_len)?,
            version: varint(payload)
                .and_then(|(_, rest)| varint(rest))
                .map(|(v, _)| v),
        })
    }
}

/// A bincode varint at the start of `bytes`, and what follows it.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    let wide = |n: usize| -> Option<(u64, &[u8])> {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(rest.get(..n)?);
        Some((u64::from_le_bytes(le), &rest[n..]))
    };
    match first {
        0..=250 => Some((u64::from(first), rest)),
        251 => wide(2),
        252 => wide(4),
        253 => wide(8),
        _ => None,
    }
}

/// The key slot of a rendered key, as the cache computes it (FNV-1a, 4096
/// slots: `cache-runtime/src/invalidate.rs`).
fn key_slot(key: &str) -> u64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 4096
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a bounded call went wrong.
enum CallFault {
    Panicked(String),
    Hung,
}

/// Runs `call` as a task of its own, so that a panic is caught and a hang
/// is cut off after [`CALL_BOUND`].
async fn bounded<T: Send + 'static>(
    call: impl Future<Output = T> + Send + 'static,
) -> Result<T, CallFault> {
    let mut task = tokio::spawn(call);
    match tokio::time::timeout(CALL_BOUND, &mut task).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(CallFault::Panicked(join.to_string())),
        Err(_) => {
            task.abort();
            Err(CallFault::Hung)
        }
    }
}

/// The calls begun in one 100 ms bucket, and the slowest of them.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    calls: u64,
    max_us: u64,
}

const BUCKET_MS: u64 = 100;
/// Examples of each kind of failure kept for the report.
const EXAMPLES: usize = 20;

/// What a worker's tasks saw, added up.
#[derive(Default)]
struct Tally {
    calls: u64,
    failures: u64,
    hangs: u64,
    /// Values that are not a real version of their key (check 4).
    wrong: u64,
    /// Reads older than a write this process had finished with `Ok`
    /// (check 2).
    stale_in_process: u64,
    /// Reads older than a write this process had finished with an error: a
    /// figure, not a promise.
    stale_after_error: u64,
    examples: Vec<String>,
    buckets: BTreeMap<u64, Bucket>,
    /// Start (ms) and duration (µs) of each call that ran its body.
    misses: Vec<(u64, u64)>,
    /// Per key and version served: when the last read that got it began.
    served: HashMap<(u64, u64), u64>,
    /// Companion calls by name and outcome (`ok` or the error variant).
    companions: BTreeMap<(&'static str, &'static str), u64>,
    writes: u64,
    /// Writes not made because another process was writing the key.
    writes_skipped: u64,
    /// Per stampede: the calls of it that ran the body.
    stampede_runs: BTreeMap<usize, u64>,
    /// Keys still not read at their truth when convergence gave up.
    unconverged: Vec<u64>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.hangs += other.hangs;
        self.wrong += other.wrong;
        self.stale_in_process += other.stale_in_process;
        self.stale_after_error += other.stale_after_error;
        for example in other.examples {
            self.example(example);
        }
        for (at, bucket) in other.buckets {
            let mine = self.buckets.entry(at).or_default();
            mine.calls += bucket.calls;
            mine.max_us = mine.max_us.max(bucket.max_us);
        }
        self.misses.extend(other.misses);
        for (key, last_ms) in other.served {
            let mine = self.served.entry(key).or_default();
            *mine = (*mine).max(last_ms);
        }
        for (key, n) in other.companions {
            *self.companions.entry(key).or_default() += n;
        }
        self.writes += other.writes;
        self.writes_skipped += other.writes_skipped;
        for (n, runs) in other.stampede_runs {
            *self.stampede_runs.entry(n).or_default() += runs;
        }
        self.unconverged.extend(other.unconverged);
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }

    fn call(&mut self, start_ms: u64, took: Duration) {
        self.calls += 1;
        let bucket = self.buckets.entry(start_ms / BUCKET_MS).or_default();
        bucket.calls += 1;
        bucket.max_us = bucket.max_us.max(took.as_micros() as u64);
    }

    fn fault(&mut self, fault: CallFault, what: String) {
        match fault {
            CallFault::Panicked(why) => {
                self.failures += 1;
                self.example(format!("{what} panicked: {why}"));
            }
            CallFault::Hung => {
                self.hangs += 1;
                self.example(format!("{what} took longer than {CALL_BOUND:?}"));
            }
        }
    }

    /// Checks `read` (its value `got`), and records what it got; `view`
    /// is what Redis held for the key just after.
    fn read(&mut self, worker: &Worker, read: &Read, got: &Item, view: Option<String>) {
        let id = read.id;
        if !got.is_genuine(id) {
            self.wrong += 1;
            self.example(format!(
                "{}: not a real value: {got:?}",
                read.describe(worker)
            ));
            return;
        }
        let Floors { ok, failed } = read.floors;
        if got.version < ok.version {
            self.stale_in_process += 1;
            self.example(format!(
                "{} got version {}, although this process's {} of version {} had returned Ok at +{:.3} s. {}",
                read.describe(worker),
                got.version,
                ok.kind.map_or("write", WriteKind::name),
                ok.version,
                worker.offset(ok.end_ms),
                view.unwrap_or_default()
            ));
        } else if got.version < failed.version {
            self.stale_after_error += 1;
        }
        let last_ms = self.served.entry((id, got.version)).or_default();
        *last_ms = (*last_ms).max(read.start_ms);
    }
}

/// The entry point of worker processes: does nothing unless the parent set
/// [`WORKER`].
#[test]
fn soak_worker() {
    let Ok(index) = std::env::var(WORKER) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("the parent sets {name}"));
    let index: usize = index.parse().expect("a worker index");
    let cache_url = var(CACHE_URL);
    let truth_port: u16 = var(TRUTH_PORT).parse().expect("a port");
    let plan = Plan::decode(&var(PLAN));
    let report = PathBuf::from(var(REPORT));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async move {
            let worker =
                Arc::new(Worker::connect(index, plan.start_ms, &cache_url, truth_port).await);
            let ready_ms = now_ms();
            let (tally, converged) = run_worker(&worker, &plan).await;
            let probe = probe_l2(&worker).await;
            write_report(&report, &worker, &tally, converged, ready_ms, &probe);
        });
}

/// The worker's run: its tasks and its share of every stampede until the
/// faults end, then [`converge`].
async fn run_worker(worker: &Arc<Worker>, plan: &Plan) -> (Tally, Option<u64>) {
    sleep_until_ms(plan.start_ms).await;
    let stampedes = tokio::spawn(run_stampedes(Arc::clone(worker), plan.stampedes_ms.clone()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| tokio::spawn(load(Arc::clone(worker), plan.faults_end_ms)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.absorb(task.await.expect("a load task"));
    }
    tally.absorb(stampedes.await.expect("the stampedes"));
    let stampede_ids = (0..plan.stampedes_ms.len() as u64).map(|n| STAMPEDE_BASE + n);
    let ids: Vec<u64> = (0..KEYS).chain(stampede_ids).collect();
    let converged = converge(worker, &ids, plan.faults_end_ms, &mut tally).await;
    (tally, converged)
}

async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
}

/// One task of the workload: Zipf-drawn keys, [`WRITE_SHARE`] of them
/// written, the rest read, until `end_ms`.
async fn load(worker: Arc<Worker>, end_ms: u64) -> Tally {
    let zipf = Zipf::new(KEYS, ZIPF_EXPONENT);
    let mut rng = fastrand::Rng::new();
    let mut tally = Tally::default();
    while now_ms() < end_ms {
        let id = zipf.sample(&mut rng);
        if rng.f64() < WRITE_SHARE {
            write(&worker, id, WriteKind::draw(&mut rng), &mut tally).await;
        } else {
            read(&worker, id, &mut tally).await;
        }
        tokio::time::sleep(THINK).await;
    }
    tally
}

/// A read of a key, as checked.
struct Read {
    id: u64,
    floors: Floors,
    start_ms: u64,
    took: Duration,
    /// Whether this call ran the body.
    ran: bool,
}

impl Read {
    fn describe(&self, worker: &Worker) -> String {
        format!(
            "a read of {} at +{:.3} s ({} us, {})",
            self.id,
            worker.offset(self.start_ms),
            self.took.as_micros(),
            match self.ran {
                true => "ran the body",
                false => "did not run the body",
            }
        )
    }
}

/// One read of `id`, checked (checks 1, 2 and 4) and recorded; the value
/// and whether this call ran the body, unless the call failed.
async fn read(worker: &Arc<Worker>, id: u64, tally: &mut Tally) -> Option<(Item, bool)> {
    let floors = worker.floors(id);
    let start_ms = now_ms();
    let started = Instant::now();
    let call = {
        let worker = Arc::clone(worker);
        async move {
            let ran = AtomicBool::new(false);
            let got = item(&worker.cache, &worker.truth, &ran, group(id), id).await;
            (got, ran.into_inner())
        }
    };
    let outcome = bounded(call).await;
    let took = started.elapsed();
    tally.call(start_ms, took);
    match outcome {
        Ok((got, ran)) => {
            if ran {
                tally.misses.push((start_ms, took.as_micros() as u64));
            }
            let read = Read {
                id,
                floors,
                start_ms,
                took,
                ran,
            };
            // Redis's side of a failed check 2, looked at before it moves on.
            let view = match got.version < floors.ok.version {
                true => Some(worker.redis_view(id).await),
                false => None,
            };
            tally.read(worker, &read, &got, view);
            Some((got, ran))
        }
        Err(fault) => {
            tally.fault(fault, format!("a read of {id}"));
            None
        }
    }
}

/// One write of `id`: the new version in the truth store, then the cache
/// told by `kind`; logged in the truth store with its completion time.
/// Skipped when another process is writing the key.
async fn write(worker: &Arc<Worker>, id: u64, kind: WriteKind, tally: &mut Tally) {
    if !worker.truth.lock_writer(id).await {
        tally.writes_skipped += 1;
        return;
    }
    let version = worker.truth.bump(id).await;
    let call = {
        let worker = Arc::clone(worker);
        async move { kind.apply(&worker.cache, id, version).await }
    };
    let outcome = bounded(call).await;
    let end_ms = now_ms();
    tally.writes += 1;
    let ok = match outcome {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            *tally
                .companions
                .entry((kind.name(), error_name(&e)))
                .or_default() += 1;
            false
        }
        Err(fault) => {
            tally.fault(fault, format!("{} of {id}", kind.name()));
            false
        }
    };
    let written = Written {
        version,
        end_ms,
        kind: Some(kind),
    };
    worker.wrote(id, ok, written);
    if ok {
        *tally.companions.entry((kind.name(), "ok")).or_default() += 1;
    }
    let record = WriteRecord {
        id,
        version,
        end_ms,
        worker: worker.index,
        kind,
        ok,
    };
    worker.truth.log_write(&record).await;
    worker.truth.unlock_writer(id).await;
}

/// At each stampede time, [`TASKS`] calls of a new cold key at once, in
/// every worker; counts the calls that ran the body (the parent adds up
/// the processes').
async fn run_stampedes(worker: Arc<Worker>, times_ms: Vec<u64>) -> Tally {
    let mut tally = Tally::default();
    for (n, at_ms) in times_ms.into_iter().enumerate() {
        sleep_until_ms(at_ms).await;
        let id = STAMPEDE_BASE + n as u64;
        let callers: Vec<_> = (0..TASKS)
            .map(|_| {
                let worker = Arc::clone(&worker);
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let ran = read(&worker, id, &mut tally)
                        .await
                        .is_some_and(|(_, ran)| ran);
                    *tally.stampede_runs.entry(n).or_default() += u64::from(ran);
                    tally
                })
            })
            .collect();
        for caller in callers {
            tally.absorb(caller.await.expect("a stampede caller"));
        }
    }
    tally
}

/// Once the faults and writes are over, reads every key of `ids` (in
/// [`TASKS`] parallel sweeps) until two rounds in a row return the truth
/// for all of them (check 5); how long after `faults_end_ms` the first of
/// the two ended, or `None` after [`CONVERGENCE_LIMIT`].
async fn converge(
    worker: &Arc<Worker>,
    ids: &[u64],
    faults_end_ms: u64,
    tally: &mut Tally,
) -> Option<u64> {
    let deadline = Instant::now() + CONVERGENCE_LIMIT;
    let mut first_clean = None;
    let mut stale = Vec::new();
    while Instant::now() < deadline {
        let sweeps: Vec<_> = ids
            .chunks(ids.len().div_ceil(TASKS))
            .map(|chunk| tokio::spawn(sweep(Arc::clone(worker), chunk.to_vec())))
            .collect();
        stale.clear();
        for sweep in sweeps {
            let (off, swept) = sweep.await.expect("a sweep");
            stale.extend(off);
            tally.absorb(swept);
        }
        match (stale.is_empty(), first_clean) {
            (true, Some(at)) => return Some(at),
            (true, None) => first_clean = Some(now_ms().saturating_sub(faults_end_ms)),
            (false, _) => first_clean = None,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (id, got) in stale.into_iter().take(5) {
        let view = worker.redis_view(id).await;
        tally.example(format!(
            "after {CONVERGENCE_LIMIT:?}, key {id} still read {got} ({view})"
        ));
        tally.unconverged.push(id);
    }
    None
}

/// What the cache's shared tier answers once the run is over: five
/// invalidations of an unused tag, 200 ms apart (`ok` or the error).
async fn probe_l2(worker: &Worker) -> String {
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let outcome = worker.cache.invalidate_tag("soak-probe").await;
        outcomes.push(outcome.map_or_else(|e| error_name(&e), |()| "ok"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcomes.join(",")
}

/// Reads each of `ids` once: the keys that did not return the truth, with
/// what they returned (version and how), for [`converge`].
async fn sweep(worker: Arc<Worker>, ids: Vec<u64>) -> (Vec<(u64, String)>, Tally) {
    let mut tally = Tally::default();
    let mut stale = Vec::new();
    for id in ids {
        let started = Instant::now();
        let got = read(&worker, id, &mut tally).await;
        let took = started.elapsed();
        let truth = worker.truth.version(id).await;
        match got {
            Some((got, _)) if got.version == truth => {}
            Some((got, ran)) => stale.push((
                id,
                format!(
                    "version {} for {truth}, in {} us, body ran: {ran}",
                    got.version,
                    took.as_micros()
                ),
            )),
            None => stale.push((id, "nothing: the call failed".to_owned())),
        }
    }
    (stale, tally)
}

/// Writes what the worker saw to `path`, one fact a line, for the parent.
fn write_report(
    path: &Path,
    worker: &Worker,
    tally: &Tally,
    converged: Option<u64>,
    ready_ms: u64,
    probe: &str,
) {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("ready {ready_ms}"));
    line(format!("probe {probe}"));
    for (name, n) in [
        ("calls", tally.calls),
        ("failures", tally.failures),
        ("hangs", tally.hangs),
        ("wrong", tally.wrong),
        ("stale_in_process", tally.stale_in_process),
        ("stale_after_error", tally.stale_after_error),
        ("writes", tally.writes),
        ("writes_skipped", tally.writes_skipped),
    ] {
        line(format!("count {name} {n}"));
    }
    line(format!(
        "converged {}",
        converged.map_or("none".to_owned(), |ms| ms.to_string())
    ));
    for example in &tally.examples {
        line(format!("example {}", example.replace('\n', " ")));
    }
    for (at, bucket) in &tally.buckets {
        line(format!("bucket {at} {} {}", bucket.calls, bucket.max_us));
    }
    for (start_ms, us) in &tally.misses {
        line(format!("miss {start_ms} {us}"));
    }
    for ((id, version), last_ms) in &tally.served {
        line(format!("served {id} {version} {last_ms}"));
    }
    for ((name, outcome), n) in &tally.companions {
        line(format!("companion {name} {outcome} {n}"));
    }
    for (n, runs) in &tally.stampede_runs {
        line(format!("stampede {n} {runs}"));
    }
    for id in &tally.unconverged {
        line(format!("unconverged {id}"));
    }
    let stats = worker.cache.stats();
    let total = stats.total();
    for (name, n) in [
        ("l1_hits", total.l1_hits),
        ("l2_hits", total.l2_hits),
        ("misses", total.misses),
        ("body_runs", total.body_runs),
        ("lock_waits", total.lock_waits),
        ("l2_errors", total.l2_errors),
    ] {
        line(format!("stat {name} {n}"));
    }
    std::fs::write(path, out)
        .unwrap_or_else(|e| panic!("cannot write the report {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// The parent: faults, then the checks and the figures.

#[test]
#[ignore = "a soak of about a minute: scripts/test runs it on its own (CACHETTE_SOAK_SECS sets its length)"]
fn three_processes_stay_coherent_and_never_fail_a_call_under_redis_faults() {
    let secs = soak_secs();
    let truth = RedisServer::start();
    let server = RedisServer::start();
    let proxies: Vec<FaultProxy> = (0..WORKERS)
        .map(|_| FaultProxy::start(server.port()))
        .collect();
    let only = std::env::var("CACHETTE_SOAK_PHASES").ok();
    let phases = schedule(secs, only.as_deref());
    let plan = Plan::new(now_ms() + STARTUP.as_millis() as u64, &phases);
    let dir = temp_dir("soak");
    let started = Instant::now();
    let workers: Vec<(ChildProcess, PathBuf)> = (0..WORKERS)
        .map(|index| {
            let report = dir.join(format!("worker-{index}.txt"));
            let env = [
                (WORKER, index.to_string()),
                (CACHE_URL, proxies[index].url()),
                (TRUTH_PORT, truth.port().to_string()),
                (REPORT, report.display().to_string()),
                (PLAN, plan.encode()),
            ];
            (
                ChildProcess::spawn(&format!("worker {index}"), "soak_worker", &env),
                report,
            )
        })
        .collect();

    let mut faults = Faults::new(&server, &proxies);
    let runs = faults.drive(&plan, &phases);
    let limit = Duration::from_millis(plan.faults_end_ms.saturating_sub(now_ms()))
        + CONVERGENCE_LIMIT
        + CALL_BOUND * 2;
    let reports: Vec<Report> = workers
        .into_iter()
        .map(|(child, path)| {
            child.succeeds(limit);
            Report::read(&path)
        })
        .collect();
    let wall = started.elapsed();

    let writes = writes_logged(&truth);
    let figures = Figures::new(&reports, &writes, &truth, &runs, &plan, faults.garbage);
    figures.print(secs, wall);
    figures.check();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A phase as it ran: its planned bounds and when its fault really held.
#[derive(Clone, Debug)]
struct PhaseRun {
    name: String,
    start_ms: u64,
    end_ms: u64,
    fault_ms: Option<(u64, u64)>,
    kill: bool,
}

/// Garbage written over entries, for the figures.
#[derive(Clone, Copy, Debug, Default)]
struct GarbageCount {
    writes: u64,
    /// Writes that replaced an entry that was there.
    over_entries: u64,
}

/// The parent's hold on the cache's Redis and on each worker's link to it.
struct Faults<'a> {
    server: &'a RedisServer,
    proxies: &'a [FaultProxy],
    /// A direct connection (not through a proxy) for the garbage.
    conn: Option<RedisConn>,
    rng: fastrand::Rng,
    garbage: GarbageCount,
}

impl<'a> Faults<'a> {
    fn new(server: &'a RedisServer, proxies: &'a [FaultProxy]) -> Faults<'a> {
        Faults {
            server,
            proxies,
            conn: None,
            rng: fastrand::Rng::new(),
            garbage: GarbageCount::default(),
        }
    }

    /// Runs every phase on the plan's clock; Redis is healthy again at the
    /// end of each phase's fault.
    fn drive(&mut self, plan: &Plan, phases: &[Phase]) -> Vec<PhaseRun> {
        let mut start_ms = plan.start_ms;
        let mut runs = Vec::new();
        for phase in phases {
            let end_ms = start_ms + phase.length_ms;
            sleep_until_blocking(start_ms);
            let fault_ms = self.apply(phase, start_ms + phase.fault_ms);
            sleep_until_blocking(end_ms);
            runs.push(PhaseRun {
                name: phase.name.clone(),
                start_ms,
                end_ms,
                fault_ms,
                kill: matches!(phase.fault, Fault::Kill),
            });
            start_ms = end_ms;
        }
        runs
    }

    /// The proxies a fault on `target` hits.
    fn targets(&self, target: Target, worker: usize) -> &'a [FaultProxy] {
        match target {
            Target::Every => self.proxies,
            Target::One => std::slice::from_ref(&self.proxies[worker]),
        }
    }

    /// Injects `phase`'s fault until `until_ms`, then undoes it; returns
    /// when it really began and ended.
    fn apply(&mut self, phase: &Phase, until_ms: u64) -> Option<(u64, u64)> {
        let began = now_ms();
        match phase.fault {
            Fault::Healthy => return None,
            Fault::Latency(delay, target) => {
                let proxies = self.targets(target, phase.worker);
                proxies.iter().for_each(|p| p.set_reply_delay(delay));
                sleep_until_blocking(until_ms);
                proxies
                    .iter()
                    .for_each(|p| p.set_reply_delay(Duration::ZERO));
            }
            Fault::Blackhole(target) => {
                let proxies = self.targets(target, phase.worker);
                proxies.iter().for_each(|p| p.hold_all_replies(true));
                sleep_until_blocking(until_ms);
                proxies.iter().for_each(|p| p.hold_all_replies(false));
            }
            Fault::Resets => {
                while now_ms() + 250 < until_ms {
                    for proxy in self.proxies {
                        proxy.reset();
                        proxy.cut_at(|_| true);
                    }
                    thread::sleep(Duration::from_millis(250));
                }
                sleep_until_blocking(until_ms);
                self.proxies.iter().for_each(FaultProxy::disarm);
            }
            Fault::Kill => {
                self.server.kill();
                sleep_until_blocking(until_ms);
                self.server.restart();
                self.conn = None;
            }
            Fault::Pause => {
                self.server.pause();
                sleep_until_blocking(until_ms);
                self.server.resume();
            }
            Fault::Garbage => {
                while now_ms() + 50 < until_ms {
                    for _ in 0..8 {
                        self.spoil_one();
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Some((began, now_ms()))
    }

    /// Overwrites the entry of a hot or a random key with garbage
    /// ([`spoiled`]), over a direct connection (not through the proxy).
    fn spoil_one(&mut self) {
        let id = match self.rng.bool() {
            true => self.rng.u64(..20),
            false => self.rng.u64(..KEYS),
        };
        let key = format!("{PREFIX}:v1:item:{}:{id}", group(id));
        let port = self.server.port();
        let Some(mut conn) = self.conn.take().or_else(|| RedisConn::connect(port).ok()) else {
            return;
        };
        let entry = match conn.cmd(&["GET", &key]) {
            Ok(RespValue::Bulk(bytes)) => Some(bytes),
            Ok(_) => None,
            // The connection is dropped: the next spoil opens another.
            Err(_) => return,
        };
        let written = match spoiled(&mut self.rng, entry.clone()) {
            Spoiled::Bytes(bytes) => conn.cmd(&[b"SET".as_slice(), key.as_bytes(), &bytes]),
            Spoiled::Hash => conn
                .cmd(&["DEL", &key])
                .and_then(|_| conn.cmd(&["HSET", &key, "field", "garbage"])),
        };
        if written.is_ok() {
            self.garbage.writes += 1;
            self.garbage.over_entries += u64::from(entry.is_some());
            self.conn = Some(conn);
        }
    }
}

/// What replaces an entry in Redis.
enum Spoiled {
    Bytes(Vec<u8>),
    /// A key of another type.
    Hash,
}

/// One of several kinds of garbage for a key holding `entry`: random
/// bytes, with or without the envelope's first byte; the entry truncated,
/// padded, or with another codec id; a hash instead of a string.
fn spoiled(rng: &mut fastrand::Rng, entry: Option<Vec<u8>>) -> Spoiled {
    let mut random =
        |len: usize| -> Vec<u8> { std::iter::repeat_with(|| rng.u8(..)).take(len).collect() };
    let kind = random(1)[0] % 6;
    let len = usize::from(random(1)[0] % 64);
    Spoiled::Bytes(match (kind, entry) {
        (5, _) => return Spoiled::Hash,
        (1, _) => [vec![0xCA], random(len)].concat(),
        (2, Some(mut bytes)) => {
            bytes.truncate(len.min(bytes.len().saturating_sub(1)));
            bytes
        }
        (3, Some(bytes)) => [bytes, random(1 + len % 8)].concat(),
        (4, Some(mut bytes)) => {
            if let Some(codec) = bytes.get_mut(1) {
                *codec ^= 0x5A;
            }
            bytes
        }
        _ => random(1 + len),
    })
}

fn sleep_until_blocking(at_ms: u64) {
    thread::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms())));
}

/// Every write the workers logged in the truth store.
fn writes_logged(truth: &RedisServer) -> Vec<WriteRecord> {
    let reply = truth
        .cmd(&["LRANGE", "writes", "0", "-1"])
        .expect("the truth store answers");
    reply
        .as_array()
        .unwrap_or_else(|| panic!("LRANGE writes replied {reply:?}"))
        .iter()
        .map(|item| WriteRecord::decode(item.as_str().expect("a write record")))
        .collect()
}

/// One worker's report, as [`write_report`] wrote it.
#[derive(Debug, Default)]
struct Report {
    ready_ms: u64,
    /// [`probe_l2`]'s outcomes.
    probe: String,
    counts: HashMap<String, u64>,
    converged_ms: Option<u64>,
    examples: Vec<String>,
    buckets: Vec<(u64, Bucket)>,
    misses: Vec<(u64, u64)>,
    /// (id, version, when the last read that got it began).
    served: Vec<(u64, u64, u64)>,
    companions: Vec<(String, String, u64)>,
    /// Per stampede, the body runs in this process.
    stampede_runs: Vec<(usize, u64)>,
    /// Keys not at their truth when convergence gave up.
    unconverged: Vec<u64>,
    stats: HashMap<String, u64>,
}

impl Report {
    fn read(path: &Path) -> Report {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
        let mut report = Report::default();
        for line in text.lines() {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let words: Vec<&str> = rest.split_whitespace().collect();
            let number = |i: usize| -> u64 {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("a bad report line: {line:?}"))
            };
            match kind {
                "ready" => report.ready_ms = number(0),
                "probe" => report.probe = rest.to_owned(),
                "count" => {
                    report.counts.insert(words[0].to_owned(), number(1));
                }
                "converged" => report.converged_ms = rest.parse().ok(),
                "example" => report.examples.push(rest.to_owned()),
                "bucket" => report.buckets.push((
                    number(0),
                    Bucket {
                        calls: number(1),
                        max_us: number(2),
                    },
                )),
                "miss" => report.misses.push((number(0), number(1))),
                "served" => report.served.push((number(0), number(1), number(2))),
                "companion" => {
                    report
                        .companions
                        .push((words[0].to_owned(), words[1].to_owned(), number(2)))
                }
                "stampede" => report.stampede_runs.push((number(0) as usize, number(1))),
                "unconverged" => report.unconverged.push(number(0)),
                "stat" => {
                    report.stats.insert(words[0].to_owned(), number(1));
                }
                other => panic!("an unknown report line {other:?} in {}", path.display()),
            }
        }
        report
    }
}

/// The `p`-th percentile (0-100) of sorted `values`.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

/// A version still served after a newer one's write had returned `Ok`.
#[derive(Clone, Debug)]
struct Stale {
    worker: usize,
    id: u64,
    version: u64,
    newer: u64,
    writer: usize,
    via: WriteKind,
    /// From the newer write's end to the last read that got the old version.
    lag_ms: u64,
}

/// One phase's figures (see [`phase_figures`]).
#[derive(Clone, Debug)]
struct PhaseFigures {
    run: PhaseRun,
    calls_per_s: f64,
    calls_per_s_after: Option<f64>,
    miss_p50_us: Option<u64>,
    writes_ok: u64,
    writes_failed: u64,
    /// `None` for a healthy phase; `Some(None)` when some process had not
    /// recovered by the phase's end.
    recovered_ms: Option<Option<u64>>,
    slowest_us: u64,
    stampede_runs: u64,
}

/// Everything the run showed, across the workers.
struct Figures {
    /// When the first phase began.
    start_ms: u64,
    total: HashMap<String, u64>,
    examples: Vec<String>,
    unconverged: Vec<usize>,
    converged_ms: Vec<Option<u64>>,
    probes: Vec<String>,
    late_starts: Vec<usize>,
    companions: BTreeMap<(String, String), u64>,
    writes_ok: u64,
    writes_failed: u64,
    stale: Vec<Stale>,
    /// Values above their key's last version (check 4).
    beyond_truth: Vec<(usize, u64, u64)>,
    phases: Vec<PhaseFigures>,
    /// Median miss latency while Redis was killed, and how many misses.
    down_miss_p50_us: Option<u64>,
    down_misses: usize,
    garbage: GarbageCount,
    stats: HashMap<String, u64>,
}

impl Figures {
    fn new(
        reports: &[Report],
        writes: &[WriteRecord],
        truth: &RedisServer,
        runs: &[PhaseRun],
        plan: &Plan,
        garbage: GarbageCount,
    ) -> Figures {
        let mut total: HashMap<String, u64> = HashMap::new();
        let mut companions = BTreeMap::new();
        let mut stats: HashMap<String, u64> = HashMap::new();
        let mut examples = Vec::new();
        for (index, report) in reports.iter().enumerate() {
            for (name, n) in &report.counts {
                *total.entry(name.clone()).or_default() += n;
            }
            for (name, outcome, n) in &report.companions {
                *companions
                    .entry((name.clone(), outcome.clone()))
                    .or_default() += n;
            }
            for (name, n) in &report.stats {
                *stats.entry(name.clone()).or_default() += n;
            }
            examples.extend(
                report
                    .examples
                    .iter()
                    .map(|e| format!("worker {index}: {e}")),
            );
        }
        let mut unconverged: Vec<u64> =
            reports.iter().flat_map(|r| r.unconverged.clone()).collect();
        unconverged.sort_unstable();
        unconverged.dedup();
        for id in unconverged {
            examples.push(last_writes(writes, id, plan.start_ms));
        }
        let (stale, beyond_truth) = staleness(reports, writes, truth);
        let down: Vec<(u64, u64)> = runs
            .iter()
            .filter(|run| run.kill)
            .filter_map(|run| run.fault_ms)
            .collect();
        let mut down_misses: Vec<u64> = reports
            .iter()
            .flat_map(|r| &r.misses)
            .filter(|(at, _)| down.iter().any(|(from, to)| (*from..*to).contains(at)))
            .map(|(_, us)| *us)
            .collect();
        down_misses.sort_unstable();
        Figures {
            start_ms: plan.start_ms,
            unconverged: (0..reports.len())
                .filter(|&i| {
                    reports[i]
                        .converged_ms
                        .is_none_or(|ms| ms > CONVERGENCE_BOUND.as_millis() as u64)
                })
                .collect(),
            converged_ms: reports.iter().map(|r| r.converged_ms).collect(),
            probes: reports.iter().map(|r| r.probe.clone()).collect(),
            late_starts: (0..reports.len())
                .filter(|&i| reports[i].ready_ms > plan.start_ms)
                .collect(),
            writes_ok: writes.iter().filter(|w| w.ok).count() as u64,
            writes_failed: writes.iter().filter(|w| !w.ok).count() as u64,
            phases: phase_figures(reports, runs, writes),
            down_miss_p50_us: percentile(&down_misses, 50.0),
            down_misses: down_misses.len(),
            total,
            examples,
            companions,
            stale,
            beyond_truth,
            garbage,
            stats,
        }
    }

    fn total(&self, name: &str) -> u64 {
        self.total.get(name).copied().unwrap_or(0)
    }

    fn staleness_bound_ms() -> u64 {
        (L1_MAX_TTL + STALENESS_MARGIN).as_millis() as u64
    }

    /// Stale versions served longer than the bound after a newer write
    /// returned `Ok` (check 3).
    fn too_stale(&self) -> Vec<&Stale> {
        self.stale
            .iter()
            .filter(|s| s.lag_ms > Self::staleness_bound_ms())
            .collect()
    }

    fn print(&self, secs: u64, wall: Duration) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nsoak: {WORKERS} processes x {TASKS} tasks, {KEYS} keys (Zipf {ZIPF_EXPONENT}), \
             {:.0} % writes, l1_max_ttl {L1_MAX_TTL:?}, l2_timeout {L2_TIMEOUT:?}; \
             {secs} s of phases asked, {:.1} s wall",
            WRITE_SHARE * 100.0,
            wall.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  calls {}   failures {}   hangs {}   wrong values {}",
            self.total("calls"),
            self.total("failures"),
            self.total("hangs"),
            self.total("wrong") + self.beyond_truth.len() as u64
        );
        let _ = writeln!(
            out,
            "  writes {} (Ok {}, Err {}; {} skipped: another process was writing the key)",
            self.total("writes"),
            self.writes_ok,
            self.writes_failed,
            self.total("writes_skipped")
        );
        for ((name, outcome), n) in &self.companions {
            let _ = writeln!(out, "    {name:<16} {outcome:<14} {n}");
        }
        let _ = writeln!(
            out,
            "  in-process reads older than this process's Ok write: {}; older than its failed write (not promised): {}",
            self.total("stale_in_process"),
            self.total("stale_after_error")
        );
        let mut lags: Vec<u64> = self.stale.iter().map(|s| s.lag_ms).collect();
        lags.sort_unstable();
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        let _ = writeln!(
            out,
            "  cross-process staleness (old version served after a newer write returned Ok): \
             {} (process, key, version) cases; p50 {}, p90 {}, p99 {}, max {}; bound {} ms, over it {}",
            lags.len(),
            ms(percentile(&lags, 50.0)),
            ms(percentile(&lags, 90.0)),
            ms(percentile(&lags, 99.0)),
            ms(lags.last().copied()),
            Self::staleness_bound_ms(),
            self.too_stale().len()
        );
        if let Some(worst) = self.stale.iter().max_by_key(|s| s.lag_ms) {
            let _ = writeln!(
                out,
                "    worst: process {} served key {} at version {} {} ms after process {}'s {} of version {} returned Ok",
                worst.worker,
                worst.id,
                worst.version,
                worst.lag_ms,
                worst.writer,
                worst.via.name(),
                worst.newer
            );
        }
        let converged: Vec<String> = self.converged_ms.iter().map(|c| ms(*c)).collect();
        let _ = writeln!(
            out,
            "  convergence after the faults and writes ended, per process: {}",
            converged.join(", ")
        );
        let _ = writeln!(
            out,
            "  invalidations of an unused tag after the run, per process: {}",
            self.probes.join("; ")
        );
        let _ = writeln!(
            out,
            "  {:>6} {:<24} {:>5} | {:>8} {:>9} {:>11} | {:>8} {:>9} | {:>9} {:>8}",
            "at s",
            "phase: fault",
            "secs",
            "calls/s",
            "miss p50",
            "writes ok/err",
            "after",
            "recovered",
            "slowest",
            "stampede"
        );
        let ms_of_us = |us: u64| format!("{:.1} ms", us as f64 / 1_000.0);
        for p in &self.phases {
            let fault_secs = p
                .run
                .fault_ms
                .map_or(p.run.end_ms.saturating_sub(p.run.start_ms), |(from, to)| {
                    to.saturating_sub(from)
                });
            let recovered = match p.recovered_ms {
                None => "-".to_owned(),
                Some(None) => format!(
                    "> {:.1} s",
                    // A fault may be lifted a moment after its phase's end.
                    p.run
                        .end_ms
                        .saturating_sub(p.run.fault_ms.map_or(p.run.end_ms, |f| f.1))
                        as f64
                        / 1_000.0
                ),
                Some(Some(ms)) => format!("{ms} ms"),
            };
            let _ = writeln!(
                out,
                "  {:>6.1} {:<24} {:>5.1} | {:>8.0} {:>9} {:>11} | {:>8} {:>9} | {:>9} {:>8}",
                p.run.start_ms.saturating_sub(self.start_ms) as f64 / 1_000.0,
                p.run.name,
                fault_secs as f64 / 1_000.0,
                p.calls_per_s,
                p.miss_p50_us.map_or("-".to_owned(), ms_of_us),
                format!("{}/{}", p.writes_ok, p.writes_failed),
                p.calls_per_s_after
                    .map_or("-".to_owned(), |c| format!("{c:.0}")),
                recovered,
                ms_of_us(p.slowest_us),
                p.stampede_runs
            );
        }
        let _ = writeln!(
            out,
            "  misses while Redis was down (killed): {}, median {}",
            self.down_misses,
            self.down_miss_p50_us.map_or("-".to_owned(), |us| format!(
                "{:.1} ms",
                us as f64 / 1_000.0
            ))
        );
        let _ = writeln!(
            out,
            "  garbage written: {} ({} over a stored entry)",
            self.garbage.writes, self.garbage.over_entries
        );
        let stat = |name: &str| self.stats.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "  cache stats, all processes: l1_hits {} l2_hits {} misses {} body_runs {} lock_waits {} l2_errors {}",
            stat("l1_hits"),
            stat("l2_hits"),
            stat("misses"),
            stat("body_runs"),
            stat("lock_waits"),
            stat("l2_errors")
        );
        for example in &self.examples {
            let _ = writeln!(out, "  ! {example}");
        }
        if !self.late_starts.is_empty() {
            let _ = writeln!(
                out,
                "  note: workers {:?} were ready only after the first phase began",
                self.late_starts
            );
        }
        eprintln!("{out}");
    }

    /// The five checks, each with what went wrong.
    fn check(&self) {
        let examples = self.examples.join("\n  ");
        assert_eq!(
            (self.total("failures"), self.total("hangs")),
            (0, 0),
            "cached or companion calls panicked or took longer than {CALL_BOUND:?} (check 1):\n  {examples}"
        );
        assert_eq!(
            self.total("stale_in_process"),
            0,
            "reads returned a version older than one this process's write had finished with Ok (check 2):\n  {examples}"
        );
        assert!(
            self.too_stale().is_empty(),
            "versions were served more than l1_max_ttl + {STALENESS_MARGIN:?} after a newer write returned Ok in some process (check 3): {:#?}",
            self.too_stale().iter().take(EXAMPLES).collect::<Vec<_>>()
        );
        assert_eq!(
            self.total("wrong"),
            0,
            "values that no body made came back (check 4):\n  {examples}"
        );
        assert!(
            self.beyond_truth.is_empty(),
            "versions beyond their key's last write came back (check 4): {:?}",
            &self.beyond_truth[..self.beyond_truth.len().min(EXAMPLES)]
        );
        assert!(
            self.unconverged.is_empty(),
            "workers {:?} did not serve the truth for every key within {CONVERGENCE_BOUND:?} of the faults' end (check 5): {:?}",
            self.unconverged,
            self.converged_ms
        );
        // The faults reached the caches: otherwise nothing above was tested.
        let faulted = self.phases.iter().any(|p| p.run.fault_ms.is_some());
        assert!(
            self.writes_failed > 0 || !faulted,
            "no companion call failed: the faults never reached the caches"
        );
        assert!(
            self.garbage.over_entries > 0 || self.garbage.writes == 0,
            "no garbage replaced a stored entry: the entry keys are not where the soak looks"
        );
    }
}

/// The last few writes of `id`, for an example.
fn last_writes(writes: &[WriteRecord], id: u64, start_ms: u64) -> String {
    let mut of_key: Vec<&WriteRecord> = writes.iter().filter(|w| w.id == id).collect();
    of_key.sort_by_key(|w| w.version);
    let last: Vec<String> = of_key
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|w| {
            format!(
                "version {} by worker {} ({}, {}) at +{:.3} s",
                w.version,
                w.worker,
                w.kind.name(),
                if w.ok { "Ok" } else { "Err" },
                (w.end_ms as f64 - start_ms as f64) / 1_000.0
            )
        })
        .collect();
    format!("key {id}'s last writes: {}", last.join("; "))
}

/// For every version each process served: was a newer version's write
/// finished with `Ok` (anywhere) before the last read that got it began,
/// and by how long (check 3); and is it a version the key ever had
/// (check 4: at most its last version in the truth store).
fn staleness(
    reports: &[Report],
    writes: &[WriteRecord],
    truth: &RedisServer,
) -> (Vec<Stale>, Vec<(usize, u64, u64)>) {
    // Per key, Ok writes by version, each with the write that ended first
    // among it and every newer one.
    let mut by_key: HashMap<u64, Vec<&WriteRecord>> = HashMap::new();
    for write in writes.iter().filter(|w| w.ok) {
        by_key.entry(write.id).or_default().push(write);
    }
    let superseded: HashMap<u64, Vec<(u64, &WriteRecord)>> = by_key
        .into_iter()
        .map(|(id, mut list)| {
            list.sort_by_key(|w| w.version);
            let mut earliest: Option<&WriteRecord> = None;
            let mut out: Vec<(u64, &WriteRecord)> = list
                .iter()
                .rev()
                .map(|w| {
                    let first = *earliest.get_or_insert(w);
                    let first = if w.end_ms < first.end_ms { w } else { first };
                    earliest = Some(first);
                    (w.version, first)
                })
                .collect();
            out.reverse();
            (id, out)
        })
        .collect();
    let mut last_versions: HashMap<u64, u64> = HashMap::new();
    let mut last_version = |id: u64| -> u64 {
        *last_versions.entry(id).or_insert_with(|| {
            truth
                .cmd(&["GET", &truth_key(id)])
                .ok()
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0)
        })
    };
    let mut stale = Vec::new();
    let mut beyond = Vec::new();
    for (worker, report) in reports.iter().enumerate() {
        for &(id, version, last_ms) in &report.served {
            if version > last_version(id) {
                beyond.push((worker, id, version));
            }
            let Some(list) = superseded.get(&id) else {
                continue;
            };
            // The first Ok write of a newer version, and the earliest end
            // among it and the ones after.
            let at = list.partition_point(|(v, _)| *v <= version);
            if let Some(&(_, first)) = list.get(at) {
                if last_ms > first.end_ms {
                    stale.push(Stale {
                        worker,
                        id,
                        version,
                        newer: first.version,
                        writer: first.worker,
                        via: first.kind,
                        lag_ms: last_ms - first.end_ms,
                    });
                }
            }
        }
    }
    (stale, beyond)
}

/// Per phase, while its fault held (the whole phase for a healthy one):
/// calls per second, the median latency of calls that ran their body, the
/// writes that ended with `Ok` and with an error; calls per second in the
/// rest of the phase, how long every process took after the fault to
/// finish a write with `Ok` again, the slowest call of the phase, and the
/// body runs of its stampede across processes.
fn phase_figures(
    reports: &[Report],
    runs: &[PhaseRun],
    writes: &[WriteRecord],
) -> Vec<PhaseFigures> {
    runs.iter()
        .enumerate()
        .map(|(n, run)| {
            let (from, to) = run.fault_ms.unwrap_or((run.start_ms, run.end_ms));
            let mut misses: Vec<u64> = reports
                .iter()
                .flat_map(|r| &r.misses)
                .filter(|(at, _)| (from..to).contains(at))
                .map(|(_, us)| *us)
                .collect();
            misses.sort_unstable();
            let ended: Vec<&WriteRecord> = writes
                .iter()
                .filter(|w| (from..to).contains(&w.end_ms))
                .collect();
            let writes_ok = ended.iter().filter(|w| w.ok).count() as u64;
            let slowest_us = reports
                .iter()
                .flat_map(|r| &r.buckets)
                .filter(|(at, _)| (run.start_ms / BUCKET_MS..run.end_ms / BUCKET_MS).contains(at))
                .map(|(_, b)| b.max_us)
                .max()
                .unwrap_or(0);
            PhaseFigures {
                run: run.clone(),
                calls_per_s: calls_per_s(reports, from, to),
                calls_per_s_after: run.fault_ms.map(|_| calls_per_s(reports, to, run.end_ms)),
                miss_p50_us: percentile(&misses, 50.0),
                writes_ok,
                writes_failed: ended.len() as u64 - writes_ok,
                recovered_ms: run.fault_ms.map(|_| recovery(writes, to, run.end_ms)),
                slowest_us,
                stampede_runs: reports
                    .iter()
                    .flat_map(|r| &r.stampede_runs)
                    .filter(|(stampede, _)| *stampede == n)
                    .map(|(_, runs)| runs)
                    .sum(),
            }
        })
        .collect()
}

/// Calls begun per second between `from_ms` and `to_ms`, every process
/// together.
fn calls_per_s(reports: &[Report], from_ms: u64, to_ms: u64) -> f64 {
    let buckets = from_ms.div_ceil(BUCKET_MS)..to_ms / BUCKET_MS;
    let calls: u64 = reports
        .iter()
        .flat_map(|r| &r.buckets)
        .filter(|(at, _)| buckets.contains(at))
        .map(|(_, b)| b.calls)
        .sum();
    let span_ms = (buckets.end.saturating_sub(buckets.start) * BUCKET_MS).max(1);
    calls as f64 * 1_000.0 / span_ms as f64
}

/// How long after `from_ms` every worker had finished a write with `Ok`;
/// `None` when one did not before `to_ms`.
fn recovery(writes: &[WriteRecord], from_ms: u64, to_ms: u64) -> Option<u64> {
    (0..WORKERS)
        .map(|worker| {
            writes
                .iter()
                .filter(|w| w.ok && w.worker == worker && (from_ms..to_ms).contains(&w.end_ms))
                .map(|w| w.end_ms - from_ms)
                .min()
        })
        .try_fold(0, |worst, took| took.map(|took| worst.max(took)))
}
