//! cachette in front of a real database: a cached SQLite lookup under a
//! skewed, concurrent workload, then a stampede, invalidation, negative
//! caching, freshness and a batch lookup of a page of users.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --features redis --example demo -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! The database is a SQLite file in the temporary directory, removed at the
//! end. Every query also sleeps for a fixed [`ROUND_TRIP`] to model the
//! network round trip a real database server costs; without it SQLite answers
//! from its page cache in a few microseconds and there would be little to
//! save.
//!
//! With `--redis URL` the cache has a shared tier in Redis under the prefix
//! [`PREFIX`]. The data and the workload are deterministic, so two processes
//! run against one Redis look up the same rows: the first fills Redis, and
//! the second starts warm, answering its first read of each id from Redis
//! instead of the database. `--quick` runs fewer lookups; `--help` lists
//! the options.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachette::{cache, cache_many, Cache, FunctionStats};
use rusqlite::{Connection, OptionalExtension};

/// Rows in the `users` table; ids run from 1 to `USERS`.
const USERS: u64 = 10_000;
/// Concurrent tasks in the lookup workload.
const TASKS: usize = 8;
/// Lookups each task makes.
const LOOKUPS_PER_TASK: usize = 5_000;
/// Lookups each task makes with `--quick`.
const QUICK_LOOKUPS_PER_TASK: usize = 500;
/// Skew of the workload: user ids are drawn Zipf-distributed by rank.
const ZIPF_EXPONENT: f64 = 1.1;
/// The fixed cost added to every query, modelling a network round trip.
const ROUND_TRIP: Duration = Duration::from_micros(200);
/// Concurrent callers of one cold key in the stampede.
const STAMPEDE_CALLERS: usize = 1_000;
/// The cached function's name in stats.
const NAME: &str = "demo.get_user";
/// What the freshness section's report query costs on top of a lookup.
const REPORT_LATENCY: Duration = Duration::from_millis(50);
/// How long the freshness section's callers keep calling.
const FRESHNESS_RUN: Duration = Duration::from_secs(2);
/// The prefix of the demo's keys in Redis, with `--redis`.
const PREFIX: &str = "cachette-demo";
/// The entry TTL of `get_user`, in seconds, as the report prints it.
const TTL_SECS: u64 = 300;

/// The attribute below, as the report prints it.
const ATTRIBUTE: &str = "#[cache(key = \"user:<id>\", ttl = 300, jitter = 0.1, negative_ttl = 60, \
                         lock, skip(db), name = \"demo.get_user\")]";

/// A row of `users`. Serde lets entries live in the shared tier, when the
/// cache has one (with `--redis`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// What a query can fail with.
#[derive(Debug)]
struct DbError(String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

impl From<tokio::task::JoinError> for DbError {
    fn from(e: tokio::task::JoinError) -> Self {
        DbError(e.to_string())
    }
}

/// A handle on the demo database that counts the lookups it runs and
/// remembers which ids they were for.
///
/// rusqlite is blocking, so queries run on tokio's blocking pool; each pool
/// thread opens its own connection once and keeps it.
struct Db {
    path: Arc<Path>,
    lookups: AtomicU64,
    queried: Mutex<HashSet<u64>>,
}

thread_local! {
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

impl Db {
    /// Creates the database file at `path` and fills it with [`USERS`] users,
    /// the same rows in every process.
    fn create(path: &Path) -> Result<Db, DbError> {
        let mut conn = Connection::open(path)?;
        // Readers on other connections keep reading while the invalidation
        // section writes.
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.execute_batch(
            "CREATE TABLE users (
                 id    INTEGER PRIMARY KEY,
                 name  TEXT NOT NULL,
                 email TEXT NOT NULL
             );",
        )?;
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT INTO users (id, name, email) VALUES (?1, ?2, ?3)")?;
            for id in 1..=USERS {
                let (name, email) = person(id);
                insert.execute((sql_id(id), name, email))?;
            }
        }
        tx.commit()?;
        Ok(Db {
            path: Arc::from(path),
            lookups: AtomicU64::new(0),
            queried: Mutex::new(HashSet::new()),
        })
    }

    /// Runs `f` on a blocking-pool thread with that thread's connection.
    async fn with_connection<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            CONNECTION.with(|cell| {
                let mut slot = cell.borrow_mut();
                let conn = match slot.as_mut() {
                    Some(conn) => conn,
                    None => slot.insert(Connection::open(&path)?),
                };
                f(conn)
            })
        })
        .await?
        .map_err(DbError::from)
    }

    /// `SELECT` one user by primary key, plus the modelled round trip.
    async fn fetch_user(&self, id: u64) -> Result<Option<User>, DbError> {
        self.lookups.fetch_add(1, Relaxed);
        self.queried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        self.with_connection(move |conn| {
            let user = conn
                .prepare_cached("SELECT id, name, email FROM users WHERE id = ?1")?
                .query_row([sql_id(id)], |row| {
                    Ok(User {
                        id: row.get::<_, i64>(0)?.unsigned_abs(),
                        name: row.get(1)?,
                        email: row.get(2)?,
                    })
                })
                .optional();
            std::thread::sleep(ROUND_TRIP);
            user
        })
        .await
    }

    /// `SELECT .. WHERE id IN (..)`: many users in one query, plus the
    /// modelled round trip.
    async fn fetch_users(&self, ids: &[u64]) -> Result<HashMap<u64, User>, DbError> {
        self.lookups.fetch_add(1, Relaxed);
        self.queried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(ids.iter().copied());
        let ids: Vec<i64> = ids.iter().map(|&id| sql_id(id)).collect();
        self.with_connection(move |conn| {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql = format!("SELECT id, name, email FROM users WHERE id IN ({marks})");
            let mut query = conn.prepare(&sql)?;
            let rows = query.query_map(rusqlite::params_from_iter(&ids), |row| {
                let id = row.get::<_, i64>(0)?.unsigned_abs();
                Ok((
                    id,
                    User {
                        id,
                        name: row.get(1)?,
                        email: row.get(2)?,
                    },
                ))
            })?;
            let users = rows.collect::<Result<HashMap<u64, User>, _>>();
            std::thread::sleep(ROUND_TRIP);
            users
        })
        .await
    }

    async fn rename_user(&self, id: u64, name: String) -> Result<(), DbError> {
        self.with_connection(move |conn| {
            conn.execute(
                "UPDATE users SET name = ?1 WHERE id = ?2",
                (name, sql_id(id)),
            )
            .map(drop)
        })
        .await
    }

    /// The `n` users with the lowest ids, from a slow report query: the
    /// modelled round trip plus [`REPORT_LATENCY`].
    async fn top_users(&self, n: u64) -> Result<Vec<User>, DbError> {
        self.lookups.fetch_add(1, Relaxed);
        let users = self
            .with_connection(move |conn| {
                let mut query =
                    conn.prepare_cached("SELECT id, name, email FROM users ORDER BY id LIMIT ?1")?;
                let rows = query.query_map([sql_id(n)], |row| {
                    Ok(User {
                        id: row.get::<_, i64>(0)?.unsigned_abs(),
                        name: row.get(1)?,
                        email: row.get(2)?,
                    })
                })?;
                let users = rows.collect::<Result<Vec<User>, _>>();
                std::thread::sleep(ROUND_TRIP);
                users
            })
            .await?;
        tokio::time::sleep(REPORT_LATENCY).await;
        Ok(users)
    }

    fn lookups(&self) -> u64 {
        self.lookups.load(Relaxed)
    }

    /// The distinct ids queried since the last call.
    fn take_queried(&self) -> HashSet<u64> {
        std::mem::take(&mut *self.queried.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// SQLite's integer type is `i64`; the demo's ids are small and positive.
fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A deterministic name and e-mail address for user `id`.
fn person(id: u64) -> (String, String) {
    const FIRST: [&str; 10] = [
        "Alex", "Blake", "Casey", "Drew", "Emery", "Finley", "Gray", "Harper", "Jordan", "Quinn",
    ];
    const LAST: [&str; 10] = [
        "Ash", "Birch", "Cedar", "Elm", "Fir", "Hazel", "Larch", "Maple", "Oak", "Rowan",
    ];
    let first = FIRST[(id % 10) as usize];
    let last = LAST[(id / 10 % 10) as usize];
    let email = format!("{}.{}{id}@example.com", first, last).to_lowercase();
    (format!("{first} {last}"), email)
}

/// The cached lookup: the database is skipped (it does not shape the
/// result), the key is the user id, absent users are remembered for a
/// minute, and concurrent misses of one id share one query.
#[cache(
    key = "user:<id>",
    ttl = 300,
    jitter = 0.1,
    negative_ttl = 60,
    lock,
    skip(db),
    name = "demo.get_user"
)]
async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError> {
    db.fetch_user(id).await
}

/// The batch twin of `get_user`: the same key template and, with
/// `negative_ttl`, the same stored value, so the two share entries. The body
/// gets only the ids that missed both tiers, in one query.
#[cache_many(
    key = "user:<ids>",
    ttl = 300,
    jitter = 0.1,
    negative_ttl = 60,
    lock,
    skip(db),
    name = "demo.get_users"
)]
async fn get_users(db: &Db, ids: &[u64]) -> Result<HashMap<u64, User>, DbError> {
    db.fetch_users(ids).await
}

/// A slow report, kept fresh without making callers wait: past its TTL the
/// stored list is served for up to `stale` while one refresh runs in the
/// background, and `early` starts that refresh shortly before the TTL ends
/// on a hot key. The database is an owned `Arc`, so the refresh can run
/// after the call has returned.
#[cache(
    key = "top:<n>",
    ttl = "500ms",
    stale = "1m",
    early = 1.0,
    skip(db),
    name = "demo.top_users"
)]
async fn top_users(db: Arc<Db>, n: u64) -> Result<Vec<User>, DbError> {
    db.top_users(n).await
}

/// Draws ranks `1..=n` with probability proportional to `1 / rank^s`.
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
        let index = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        index as u64 + 1
    }

    /// Probability of the most popular rank.
    fn top_share(&self) -> f64 {
        self.cdf[0]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cached,
    Uncached,
}

/// One lookup through the cached function or straight to the database.
async fn lookup(db: &Db, id: u64, mode: Mode) -> Result<Option<User>, DbError> {
    match mode {
        Mode::Cached => get_user(db, id).await,
        Mode::Uncached => get_user_uncached(db, id).await,
    }
}

/// What one run of the workload measured.
struct Run {
    calls: u64,
    queries: u64,
    /// Distinct ids the database was queried for.
    queried_ids: u64,
    wall: Duration,
    latencies: Latencies,
    stats: FunctionStats,
}

/// Per-call latencies, sorted.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort_unstable();
        Latencies(all)
    }

    /// The nearest-rank percentile `p` (0 < p <= 100).
    fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (p / 100.0 * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

/// Runs every task's list of ids concurrently, timing each call.
async fn run_workload(
    cache: &Cache,
    db: &Arc<Db>,
    plan: &Arc<Vec<Vec<u64>>>,
    mode: Mode,
) -> Result<Run, DbError> {
    let stats_before = function_stats(cache);
    let queries_before = db.lookups();
    db.take_queried();
    let started = Instant::now();
    let tasks: Vec<_> = (0..plan.len())
        .map(|task| {
            let db = Arc::clone(db);
            let plan = Arc::clone(plan);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(plan[task].len());
                for &id in &plan[task] {
                    let call = Instant::now();
                    let user = lookup(&db, id, mode).await?;
                    latencies.push(call.elapsed());
                    if user.as_ref().map(|u| u.id) != Some(id) {
                        return Err(DbError(format!("user {id}: got {user:?}")));
                    }
                }
                Ok::<_, DbError>(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(plan.iter().map(Vec::len).sum());
    for task in tasks {
        all.extend(task.await??);
    }
    let wall = started.elapsed();
    Ok(Run {
        calls: all.len() as u64,
        queries: db.lookups() - queries_before,
        queried_ids: db.take_queried().len() as u64,
        wall,
        latencies: Latencies::new(all),
        stats: delta(&function_stats(cache), &stats_before),
    })
}

/// What the stampede measured.
struct Stampede {
    queries: u64,
    latencies: Latencies,
    stats: FunctionStats,
}

/// `callers` tasks released together, each looking up the same id.
async fn stampede(cache: &Cache, db: &Arc<Db>, id: u64, mode: Mode) -> Result<Stampede, DbError> {
    let stats_before = function_stats(cache);
    let queries_before = db.lookups();
    let start = Arc::new(tokio::sync::Barrier::new(STAMPEDE_CALLERS));
    let callers: Vec<_> = (0..STAMPEDE_CALLERS)
        .map(|_| {
            let db = Arc::clone(db);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let call = Instant::now();
                let user = lookup(&db, id, mode).await?;
                let latency = call.elapsed();
                match user {
                    Some(u) if u.id == id => Ok(latency),
                    other => Err(DbError(format!("user {id}: got {other:?}"))),
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(STAMPEDE_CALLERS);
    for caller in callers {
        latencies.push(caller.await??);
    }
    Ok(Stampede {
        queries: db.lookups() - queries_before,
        latencies: Latencies::new(latencies),
        stats: delta(&function_stats(cache), &stats_before),
    })
}

fn function_stats(cache: &Cache) -> FunctionStats {
    cache.stats().function(NAME).cloned().unwrap_or_default()
}

/// The counters that moved between two snapshots.
fn delta(after: &FunctionStats, before: &FunctionStats) -> FunctionStats {
    after.since(before)
}

/// A call's outcome for the walk-throughs, and where it came from: the
/// database, or the cache (with a shared tier, which of its tiers).
async fn describe(cache: &Cache, db: &Db, id: u64, shared: bool) -> Result<String, DbError> {
    let before = db.lookups();
    let stats_before = function_stats(cache);
    let user = get_user(db, id).await?;
    let stats = delta(&function_stats(cache), &stats_before);
    let source = if db.lookups() > before {
        "database query"
    } else if !shared {
        "cache hit"
    } else if stats.l2_hits > 0 {
        "L2 hit, from Redis"
    } else {
        "L1 hit"
    };
    Ok(match user {
        Some(u) => format!("{:<26} ({source})", format!("{:?}", u.name)),
        None => format!("{:<26} ({source})", "None"),
    })
}

/// The L1-only cache, or with `--redis` one with a shared tier.
async fn build_cache(options: &Options) -> Result<Cache, Box<dyn Error>> {
    let builder = Cache::builder().l1_capacity(20_000);
    match &options.redis {
        None => Ok(builder.build_local()?),
        #[cfg(feature = "redis")]
        Some(url) => builder
            .prefix(PREFIX)
            .redis(url)
            .build()
            .await
            .map_err(|e| format!("could not connect to Redis at {}: {e}", redact(url)).into()),
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(NO_REDIS_FEATURE.into()),
    }
}

async fn run(path: &Path, options: &Options) -> Result<(), Box<dyn Error>> {
    // The global cache, configured explicitly; a clone keeps a handle for
    // reading stats. Without `set_global`, cached functions would use an
    // embedded cache with default settings.
    let cache = build_cache(options).await?;
    cachette::set_global(cache.clone())?;
    let shared = options.redis.is_some();
    let lookups_per_task = options.lookups_per_task();

    let setup = Instant::now();
    let db = Arc::new(Db::create(path)?);
    let setup = setup.elapsed();

    let zipf = Zipf::new(USERS, ZIPF_EXPONENT);
    let plan: Arc<Vec<Vec<u64>>> = Arc::new(
        (0..TASKS)
            .map(|task| {
                let mut rng = fastrand::Rng::with_seed(task as u64 + 1);
                (0..lookups_per_task)
                    .map(|_| zipf.sample(&mut rng))
                    .collect()
            })
            .collect(),
    );
    let distinct = {
        let mut ids: Vec<u64> = plan.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u64
    };

    println!("cachette demo: a cached SQLite lookup under a skewed, concurrent workload");
    println!();
    println!(
        "  database   {} (SQLite), {} users, created in {}",
        path.display(),
        group(USERS),
        human(setup)
    );
    println!(
        "  per query  SELECT by primary key + a fixed {} sleep modelling a network round trip",
        human(ROUND_TRIP)
    );
    println!(
        "  workload   {TASKS} tokio tasks x {} lookups; ids drawn Zipf (s = {ZIPF_EXPONENT}), \
         {} distinct, hottest id {:.1} % of draws",
        group(lookups_per_task as u64),
        group(distinct),
        zipf.top_share() * 100.0
    );
    println!("  function   {ATTRIBUTE}");
    println!("             async fn get_user(db: &Db, id: u64) -> Result<Option<User>, DbError>");
    match &options.redis {
        None => {
            println!("  cache      in-process L1, set with cachette::set_global; starts empty")
        }
        Some(url) => {
            println!(
                "  cache      in-process L1 in front of a shared L2 in Redis at {}, set with \
                 cachette::set_global",
                redact(url)
            );
            println!(
                "             L1 starts empty; Redis keeps what earlier processes stored, under \
                 \"{PREFIX}:v1:user:<id>\""
            );
        }
    }

    // 1. The workload, cached then uncached, on the same draws.
    let cached = run_workload(&cache, &db, &plan, Mode::Cached).await?;
    let uncached = run_workload(&cache, &db, &plan, Mode::Uncached).await?;

    println!();
    println!(
        "1. The same {} lookups with and without the cache",
        group(cached.calls)
    );
    println!();
    table_header("", "get_user", "get_user_uncached");
    table_row("calls", group(cached.calls), group(uncached.calls));
    table_row(
        "database queries",
        group(cached.queries),
        group(uncached.queries),
    );
    table_row(
        "hits / misses",
        format!(
            "{} / {}",
            group(cached.stats.l1_hits + cached.stats.l2_hits),
            group(cached.stats.misses)
        ),
        "-".into(),
    );
    if shared {
        table_row(
            "  L1 hits / L2 hits",
            format!(
                "{} / {}",
                group(cached.stats.l1_hits),
                group(cached.stats.l2_hits)
            ),
            "-".into(),
        );
        if cached.stats.l2_errors > 0 {
            table_row(
                "  L2 errors (fail-open)",
                group(cached.stats.l2_errors),
                "-".into(),
            );
        }
    }
    table_row(
        "hit ratio",
        format!("{:.1} %", cached.stats.hit_ratio() * 100.0),
        "-".into(),
    );
    table_row(
        "waited on a running query",
        group(cached.stats.lock_waits),
        "-".into(),
    );
    table_row(
        "p50 latency",
        human(cached.latencies.percentile(50.0)),
        human(uncached.latencies.percentile(50.0)),
    );
    table_row(
        "p99 latency",
        human(cached.latencies.percentile(99.0)),
        human(uncached.latencies.percentile(99.0)),
    );
    table_row(
        "mean latency",
        human(cached.latencies.mean()),
        human(uncached.latencies.mean()),
    );
    table_row("wall time", human(cached.wall), human(uncached.wall));
    table_row(
        "throughput",
        format!("{}/s", group(per_second(cached.calls, cached.wall))),
        format!("{}/s", group(per_second(uncached.calls, uncached.wall))),
    );
    println!();
    if shared {
        report_warmth(&cached, distinct);
    }
    let miss_ratio = 1.0 - cached.stats.hit_ratio();
    if miss_ratio > 0.01 {
        println!(
            "  {:.1} % of cached calls missed (each id's first read), so the cached p99 is a \
             database round trip too",
            miss_ratio * 100.0
        );
    }
    let latency = uncached.latencies.mean().as_secs_f64() / cached.latencies.mean().as_secs_f64();
    let latency = if latency >= 1.0 {
        format!("{latency:.1}x lower mean latency")
    } else {
        format!("{:.1}x higher mean latency", 1.0 / latency)
    };
    let speed_up = format!(
        "  speed-up: {:.1}x the throughput, {latency}",
        uncached.wall.as_secs_f64() / cached.wall.as_secs_f64(),
    );
    if cached.queries == 0 {
        println!("{speed_up}, and no queries at all");
    } else {
        let fewer = uncached.queries as f64 / cached.queries as f64;
        if fewer < 100.0 {
            println!("{speed_up}, {fewer:.1}x fewer queries");
        } else {
            println!("{speed_up}, {}x fewer queries", group(fewer.round() as u64));
        }
    }

    // 2. Stampede: the hottest key goes cold and everyone wants it at once.
    let hot = 1;
    get_user_invalidate(hot).await?;
    let locked = stampede(&cache, &db, hot, Mode::Cached).await?;
    let unprotected = stampede(&cache, &db, hot, Mode::Uncached).await?;

    println!();
    println!(
        "2. Stampede: {} concurrent callers of one cold key",
        group(STAMPEDE_CALLERS as u64)
    );
    println!();
    println!(
        "  get_user_invalidate({hot}) drops {:?}, the hottest key; then {} tasks released \
         together call it",
        get_user_key(hot),
        group(STAMPEDE_CALLERS as u64)
    );
    println!();
    table_header("", "get_user (lock)", "get_user_uncached");
    table_row(
        "callers",
        group(STAMPEDE_CALLERS as u64),
        group(STAMPEDE_CALLERS as u64),
    );
    table_row(
        "database queries",
        group(locked.queries),
        group(unprotected.queries),
    );
    table_row(
        "waited for that query",
        group(locked.stats.lock_waits),
        "-".into(),
    );
    table_row(
        "hits (arrived after it)",
        group(locked.stats.l1_hits + locked.stats.l2_hits),
        "-".into(),
    );
    table_row(
        "p50 latency",
        human(locked.latencies.percentile(50.0)),
        human(unprotected.latencies.percentile(50.0)),
    );
    table_row(
        "p99 latency",
        human(locked.latencies.percentile(99.0)),
        human(unprotected.latencies.percentile(99.0)),
    );
    println!();
    if locked.queries == 1 {
        println!(
            "  with `lock`, exactly one query ran for {} callers",
            group(STAMPEDE_CALLERS as u64)
        );
    } else {
        println!(
            "  with `lock`, {} queries ran for {} callers (expected one)",
            group(locked.queries),
            group(STAMPEDE_CALLERS as u64)
        );
    }

    // 3. Invalidation after a write.
    let id = 46;
    let call = format!("get_user({id})");
    println!();
    println!("3. Invalidation after a write");
    println!();
    step(&call, &describe(&cache, &db, id, shared).await?);
    step(&call, &describe(&cache, &db, id, shared).await?);
    let renamed = format!("{} (renamed)", person(id).0);
    db.rename_user(id, renamed.clone()).await?;
    println!("  UPDATE users SET name = '{renamed}' WHERE id = {id}");
    let outcome = describe(&cache, &db, id, shared).await?;
    step(
        &call,
        &format!("{outcome}  <- the cached row, until invalidated"),
    );
    get_user_invalidate(id).await?;
    let dropped = if shared {
        format!(
            "drops {:?} from L1 and Redis, and tells the other processes",
            get_user_key(id)
        )
    } else {
        format!("drops {:?}", get_user_key(id))
    };
    step(&format!("get_user_invalidate({id})"), &dropped);
    step(&call, &describe(&cache, &db, id, shared).await?);
    step(&call, &describe(&cache, &db, id, shared).await?);
    if shared {
        // Every process has its own database with the original rows: put
        // the original back in Redis too, or the next process would read
        // this process's renamed row.
        let (original, _) = person(id);
        db.rename_user(id, original.clone()).await?;
        get_user_invalidate(id).await?;
        get_user(&db, id).await?;
        println!(
            "  (renamed back to {original:?}, invalidated and read again: Redis keeps the original \
             row for the next process)"
        );
    }

    // 4. Negative caching: absent rows are remembered for `negative_ttl`.
    let missing = USERS + 1;
    let call = format!("get_user({missing})");
    println!();
    println!("4. Negative caching (negative_ttl = 60): a user that does not exist");
    println!();
    step(&call, &describe(&cache, &db, missing, shared).await?);
    step(&call, &describe(&cache, &db, missing, shared).await?);

    // 5. Freshness: a slow query kept fresh in the background.
    freshness(&cache, &db).await?;

    // 6. Batches: a page of users in one query for what missed.
    batches(&cache, &db, options.redis.as_deref()).await?;

    // 7. The counters cachette kept for the function over the whole run.
    let total = function_stats(&cache);
    println!();
    println!("7. cache.stats().function({NAME:?}) after everything above");
    println!();
    if shared {
        println!(
            "  l1_hits {}   l2_hits {}   misses {}   body_runs {}   lock_waits {}   errors {}   \
             l2_errors {}   hit_ratio() {:.3}",
            group(total.l1_hits),
            group(total.l2_hits),
            group(total.misses),
            group(total.body_runs),
            group(total.lock_waits),
            group(total.errors),
            group(total.l2_errors),
            total.hit_ratio()
        );
    } else {
        println!(
            "  l1_hits {}   misses {}   body_runs {}   lock_waits {}   errors {}   hit_ratio() {:.3}",
            group(total.l1_hits),
            group(total.misses),
            group(total.body_runs),
            group(total.lock_waits),
            group(total.errors),
            total.hit_ratio()
        );
    }
    Ok(())
}

/// Section 6: pages of 100 users through `#[cache_many]`, against 100
/// single lookups.
async fn batches(cache: &Cache, db: &Db, redis: Option<&str>) -> Result<(), DbError> {
    const PAGE: u64 = 100;
    const FIRST: u64 = 9_001;
    println!();
    println!(
        "6. Batches: #[cache_many(key = \"user:<ids>\", ..)] async fn get_users(db: &Db, ids: &[u64]) \
         -> Result<HashMap<u64, User>, DbError>"
    );
    println!();
    let commands = RedisCommands::open(redis);
    if commands.0.is_some() {
        println!(
            "  (Redis lines: the commands Redis counted, INFO commandstats; a cold page costs three \
             round trips with `lock`: read, lock and re-read the misses, write; the unlock \
             script's GET and DEL count too)"
        );
        println!();
    }
    let stats = || {
        cache
            .stats()
            .function("demo.get_users")
            .cloned()
            .unwrap_or_default()
    };
    let pages = [FIRST, FIRST + PAGE / 2, FIRST];
    for first in pages {
        let ids: Vec<u64> = (first..first + PAGE).collect();
        db.take_queried();
        let (before, queries, sent) = (stats(), db.lookups(), commands.snapshot());
        let started = Instant::now();
        let users = get_users(db, &ids).await?;
        let took = started.elapsed();
        let during = delta(&stats(), &before);
        let queried = db.take_queried().len();
        let mut outcome = format!(
            "{} users in {}: {} from L1, ",
            users.len(),
            human(took),
            during.l1_hits
        );
        if redis.is_some() {
            outcome.push_str(&format!("{} from Redis, ", during.l2_hits));
        }
        outcome.push_str(&match db.lookups() - queries {
            0 => "no database query".to_owned(),
            1 => format!("{queried} in 1 database query"),
            n => format!("{queried} in {n} database queries"),
        });
        step(
            &format!("get_users(&[{first}..={}])", first + PAGE - 1),
            &outcome,
        );
        if let Some(sent) = commands.since(sent) {
            step("", &sent);
        }
    }
    // The same page size, one lookup at a time, for comparison.
    let singles: Vec<u64> = (FIRST + 2 * PAGE..FIRST + 3 * PAGE).collect();
    let (queries, started) = (db.lookups(), Instant::now());
    for id in &singles {
        get_user(db, *id).await?;
    }
    step(
        &format!("get_user x {PAGE}, one by one"),
        &format!(
            "{} in {} database queries",
            human(started.elapsed()),
            db.lookups() - queries
        ),
    );
    // Entries are shared: a batch's elements are `get_user` hits.
    let before = db.lookups();
    let user = get_user(db, FIRST + 7).await?;
    step(
        &format!("get_user({})", FIRST + 7),
        &format!(
            "{:?} ({})",
            user.map(|u| u.name).unwrap_or_default(),
            if db.lookups() == before {
                "hit: get_users stored it"
            } else {
                "database query"
            }
        ),
    );
    Ok(())
}

/// What Redis counted (`INFO commandstats`), to show a batch's round trips;
/// nothing without `--redis`.
struct RedisCommands(Option<Mutex<redis::Connection>>);

impl RedisCommands {
    fn open(url: Option<&str>) -> RedisCommands {
        let conn = url.and_then(|url| redis::Client::open(url).ok()?.get_connection().ok());
        RedisCommands(conn.map(Mutex::new))
    }

    /// Calls of each command so far.
    fn snapshot(&self) -> HashMap<String, u64> {
        let Some(conn) = &self.0 else {
            return HashMap::new();
        };
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut *conn)
            .unwrap_or_default();
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_uppercase(), calls))
            })
            .collect()
    }

    /// The commands sent since `before`, as `"1 MGET, 100 SET"`.
    fn since(&self, before: HashMap<String, u64>) -> Option<String> {
        self.0.as_ref()?;
        let mut sent: Vec<String> = self
            .snapshot()
            .into_iter()
            .filter(|(name, _)| name != "INFO")
            .filter_map(|(name, calls)| {
                let delta = calls - before.get(&name).copied().unwrap_or(0);
                (delta > 0).then(|| format!("{delta} {name}"))
            })
            .collect();
        sent.sort();
        Some(match sent.is_empty() {
            true => "Redis: no command".to_owned(),
            false => format!("Redis: {}", sent.join(", ")),
        })
    }
}

/// Section 5: callers of a slow, hot query with `stale` and `early` never
/// wait for its refreshes.
async fn freshness(cache: &Cache, db: &Arc<Db>) -> Result<(), DbError> {
    const CALLERS: usize = 8;
    println!();
    println!(
        "5. Freshness: a report query taking {} more, with ttl = \"500ms\", stale = \"1m\", \
         early = 1.0",
        human(REPORT_LATENCY)
    );
    println!();
    let stats = || {
        cache
            .stats()
            .function("demo.top_users")
            .cloned()
            .unwrap_or_default()
    };
    let first = Instant::now();
    top_users(Arc::clone(db), 20).await?;
    let first = first.elapsed();
    let before = stats();
    let queries_before = db.lookups();
    let until = Instant::now() + FRESHNESS_RUN;
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let db = Arc::clone(db);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let start = Instant::now();
                    top_users(Arc::clone(&db), 20).await?;
                    latencies.push(start.elapsed());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok::<_, DbError>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await??);
    }
    let latencies = Latencies::new(all);
    let during = delta(&stats(), &before);
    let queries = db.lookups() - queries_before;
    step(
        "first call (a miss)",
        &format!("waited {} for the query", human(first)),
    );
    step(
        &format!("{CALLERS} tasks, {}", human(FRESHNESS_RUN)),
        &format!(
            "{} calls: p50 {}, p99 {}, slowest {}",
            group(latencies.0.len() as u64),
            human(latencies.percentile(50.0)),
            human(latencies.percentile(99.0)),
            human(latencies.0.last().copied().unwrap_or_default()),
        ),
    );
    step(
        "refreshes",
        &format!(
            "{} started ({} early, before the TTL ended), {} queries ran; {} calls got a \
             stale value while one ran",
            group(during.refreshes),
            group(during.early_refreshes),
            group(queries),
            group(during.stale_served),
        ),
    );
    let slowest = latencies.0.last().copied().unwrap_or_default();
    if slowest < REPORT_LATENCY {
        println!();
        println!(
            "  no caller waited for a refresh: the slowest call took {}, the query {}",
            human(slowest),
            human(first)
        );
    }
    Ok(())
}

/// Whether this process started warm: the ids of the cached workload that
/// it never queried were answered from Redis on their first read here (its
/// L1 started empty), so they were there before it looked.
fn report_warmth(cached: &Run, distinct: u64) {
    let queried = cached.queried_ids;
    let warm = distinct.saturating_sub(queried);
    if warm > 0 {
        println!(
            "  started warm: {} of {} ids already in Redis; their first read here was an L2 hit, \
             not a query",
            group(warm),
            group(distinct)
        );
        if queried > 0 {
            println!(
                "  the other {} ids were not in Redis or had been voided by an invalidation, and \
                 ran one query each",
                group(queried)
            );
        }
    } else {
        println!(
            "  started cold: none of the {} ids was in Redis yet; each ran one query and is now \
             in Redis for about {TTL_SECS} s,",
            group(distinct)
        );
        println!("  so another process run against this Redis meanwhile starts warm");
    }
    println!(
        "  tiers: L1 answered {} calls, Redis (L2) {}; {} missed both, and {} database queries ran",
        group(cached.stats.l1_hits),
        group(cached.stats.l2_hits),
        group(cached.stats.misses),
        group(cached.queries)
    );
}

/// One line of a walk-through: the call and what it gave.
fn step(call: &str, outcome: &str) {
    println!("  {call:<LABEL_WIDTH$} -> {outcome}");
}

const LABEL_WIDTH: usize = 28;
const COLUMN_WIDTH: usize = 20;

fn table_header(label: &str, left: &str, right: &str) {
    println!("  {label:<LABEL_WIDTH$}{left:>COLUMN_WIDTH$}{right:>COLUMN_WIDTH$}");
    println!(
        "  {:-<LABEL_WIDTH$}{:->COLUMN_WIDTH$}{:->COLUMN_WIDTH$}",
        "", "", ""
    );
}

fn table_row(label: &str, left: String, right: String) {
    println!("  {label:<LABEL_WIDTH$}{left:>COLUMN_WIDTH$}{right:>COLUMN_WIDTH$}");
}

/// `1234567` -> `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A duration with a unit that keeps three significant figures or so.
fn human(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 10_000 {
        format!("{:.2} µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000 {
        format!("{} µs", nanos / 1_000)
    } else if nanos < 1_000_000_000 {
        format!("{:.1} ms", nanos as f64 / 1e6)
    } else {
        format!("{:.2} s", nanos as f64 / 1e9)
    }
}

fn per_second(calls: u64, wall: Duration) -> u64 {
    (calls as f64 / wall.as_secs_f64()).round() as u64
}

/// Removes the database file (and SQLite's side files) when dropped, so a
/// failed run leaves nothing behind either.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            // Absent side files are expected.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The command line.
struct Options {
    /// `--redis URL`: a shared tier in Redis.
    redis: Option<String>,
    /// `--quick`: fewer lookups, for a smoke run.
    quick: bool,
}

impl Options {
    fn lookups_per_task(&self) -> usize {
        if self.quick {
            QUICK_LOOKUPS_PER_TASK
        } else {
            LOOKUPS_PER_TASK
        }
    }
}

const USAGE: &str = "\
cachette demo: a cached SQLite lookup under a skewed, concurrent workload

usage: cargo run --release [--features redis] --example demo -- [options]

options:
  --redis URL   put a shared L2 tier in Redis behind the in-process L1 (needs the
                `redis` feature); keys go under the prefix \"cachette-demo\", and a
                second process run against the same Redis starts warm
  --quick       fewer lookups (8 tasks x 500 instead of 8 x 5,000), for a smoke run
  -h, --help    print this and exit";

const NO_REDIS_FEATURE: &str = "error: --redis needs the `redis` feature; run \
     `cargo run --release --features redis --example demo -- --redis URL`";

/// Reads the command line; `Err` is the message for a bad one.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        redis: None,
        quick: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => options.quick = true,
            "--redis" => match args.next() {
                Some(url) if !url.starts_with("--") => options.redis = Some(url),
                _ => return Err("--redis needs a URL, like redis://127.0.0.1:6379/".to_owned()),
            },
            _ => match arg.strip_prefix("--redis=") {
                Some(url) if !url.is_empty() => options.redis = Some(url.to_owned()),
                _ => return Err(format!("unknown argument {arg:?}")),
            },
        }
    }
    Ok(Some(options))
}

/// A Redis URL without its password (or user name), for printing.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if options.redis.is_some() && !cfg!(feature = "redis") {
        eprintln!("{NO_REDIS_FEATURE}");
        std::process::exit(2);
    }
    let path = std::env::temp_dir().join(format!("cachette-demo-{}.sqlite3", std::process::id()));
    let cleanup = RemoveOnDrop(path.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Bounds the connections the uncached stampede opens.
        .max_blocking_threads(64)
        .build()?;
    let result = runtime.block_on(run(&path, &options));
    // Closes the per-thread connections before the file goes.
    drop(runtime);
    drop(cleanup);
    result?;
    println!();
    println!("database removed: {}", path.display());
    Ok(())
}
