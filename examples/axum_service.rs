//! An HTTP service over SQLite with cached repository methods, conditional
//! GETs, invalidation on write, `/stats` as JSON and `/metrics` for
//! Prometheus. The first 100 users are warmed with one query and one batch
//! `_put` before it listens. With `--redis URL`, several instances share
//! one Redis: a write on one is seen by the others at once.
//!
//! ```text
//! cargo run --example axum_service --features axum,metrics -- --port 3000
//! cargo run --example axum_service --features axum,metrics,redis -- --port 3001 --redis redis://127.0.0.1:6379/ --db /tmp/users.db
//! cargo run --example axum_service --features axum,metrics,redis -- --check   # two instances on one Redis, driven and checked
//! ```
//!
//! | route | does |
//! |---|---|
//! | `GET /users/{id}` | the user as JSON, with `ETag`, `Last-Modified` and `Cache-Control`; `304` for a matching `If-None-Match`; `X-Source` says where the value came from |
//! | `PUT /users/{id}` | renames the user (the body is the new name) and invalidates its entry and the `users` tag |
//! | `GET /users` | the first 20 users, a whole response cached by `CacheLayer` under the tag `users` |
//! | `GET /stats` | `Cache::stats()` as JSON |
//! | `GET /metrics` | the `cachette_*` counters in Prometheus' text format (feature `metrics`) |

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachette::http::{CacheLayer, Conditional};
use cachette::{cache, cache_many, Cache};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// A database error, as a `500` with its message.
#[derive(Debug)]
struct AppError(String);

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError(e.to_string())
    }
}

impl From<cachette::Error> for AppError {
    fn from(e: cachette::Error) -> Self {
        AppError(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

/// The users table, shared by every instance through one SQLite file.
#[derive(Clone)]
struct Db {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl Db {
    fn open(path: &Path, users: u64) -> Result<Db, rusqlite::Error> {
        let mut connection = rusqlite::Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)",
        )?;
        let tx = connection.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT OR IGNORE INTO users (id, name, email) VALUES (?1, ?2, ?3)")?;
            for id in 1..=users {
                insert.execute((
                    id as i64,
                    format!("user {id}"),
                    format!("user{id}@example.com"),
                ))?;
            }
        }
        tx.commit()?;
        Ok(Db {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, AppError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&connection).map_err(AppError::from)
        })
        .await
        .map_err(|e| AppError(e.to_string()))?
    }
}

fn user_of(row: &rusqlite::Row<'_>) -> Result<User, rusqlite::Error> {
    Ok(User {
        id: row.get::<_, i64>(0)? as u64,
        name: row.get(1)?,
        email: row.get(2)?,
    })
}

/// The repository: database reads behind cached methods on its own cache.
#[derive(Clone)]
struct Repo {
    db: Db,
    cache: Cache,
}

impl Repo {
    /// One user; a missing one is cached as absent for 30 s.
    #[cache(key = "user:<id>", ttl = 300, stale = 60, negative_ttl = 30, lock, cache = self.cache)]
    async fn user(&self, id: u64) -> Result<Option<User>, AppError> {
        self.db
            .with(move |c| {
                let mut query =
                    c.prepare_cached("SELECT id, name, email FROM users WHERE id = ?1")?;
                let mut rows = query.query_map([id as i64], user_of)?;
                rows.next().transpose()
            })
            .await
    }

    /// The batch twin of `user` (the same key template and `negative_ttl`,
    /// so the same entries): its `_put` warms many users in one write.
    #[cache_many(key = "user:<ids>", ttl = 300, negative_ttl = 30, lock, cache = self.cache)]
    async fn users(&self, ids: &[u64]) -> Result<HashMap<u64, User>, AppError> {
        let ids = ids.to_vec();
        self.db
            .with(move |c| {
                let mut query =
                    c.prepare_cached("SELECT id, name, email FROM users WHERE id = ?1")?;
                let mut found = HashMap::new();
                for id in ids {
                    if let Some(user) = query.query_map([id as i64], user_of)?.next() {
                        found.insert(id, user?);
                    }
                }
                Ok(found)
            })
            .await
    }

    /// Warming at start-up: the first `limit` users from one query, stored
    /// with one batch `_put` (one write to Redis), before the service
    /// listens.
    async fn warm(&self, limit: u64) -> Result<usize, AppError> {
        let users = self.first_users(limit).await?;
        let count = users.len();
        self.users_put(users.into_iter().map(|user| (user.id, user)).collect())
            .await?;
        Ok(count)
    }

    /// The first `limit` users (the listing is cached whole, as a
    /// response, by `CacheLayer`).
    async fn first_users(&self, limit: u64) -> Result<Vec<User>, AppError> {
        self.db
            .with(move |c| {
                let mut query =
                    c.prepare_cached("SELECT id, name, email FROM users ORDER BY id LIMIT ?1")?;
                let rows = query.query_map([limit as i64], user_of)?;
                rows.collect()
            })
            .await
    }

    /// A write: the database first, then every cached copy it changes, in
    /// every instance.
    async fn rename(&self, id: u64, name: String) -> Result<bool, AppError> {
        let changed = self
            .db
            .with(move |c| {
                c.execute(
                    "UPDATE users SET name = ?1 WHERE id = ?2",
                    (name, id as i64),
                )
            })
            .await?;
        self.user_invalidate(id).await?;
        self.cache.invalidate_tag("users").await?;
        Ok(changed > 0)
    }
}

async fn get_user(
    State(repo): State<Repo>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    match repo.user_entry(id).await.transpose()?.transpose() {
        Some(user) => {
            // Where the value came from (L1, L2, Body, Stale), for curious clients.
            let source = format!("{:?}", user.source);
            let mut response = Conditional::new(&headers, user.map(Json))
                .public()
                .into_response();
            if let Ok(source) = source.parse() {
                response.headers_mut().insert("x-source", source);
            }
            Ok(response)
        }
        None => Ok((StatusCode::NOT_FOUND, format!("no user {id}")).into_response()),
    }
}

async fn put_user(
    State(repo): State<Repo>,
    UrlPath(id): UrlPath<u64>,
    name: String,
) -> Result<StatusCode, AppError> {
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(match repo.rename(id, name).await? {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

/// Behind `CacheLayer`: the response says how long it may be kept and which
/// tag purges it.
async fn list_users(State(repo): State<Repo>) -> Result<Response, AppError> {
    let page = repo.first_users(20).await?;
    let headers = [
        ("cache-control", "max-age=60, stale-while-revalidate=30"),
        ("cache-tag", "users"),
    ];
    Ok((headers, Json(page)).into_response())
}

async fn stats(State(repo): State<Repo>) -> Json<cachette::Stats> {
    Json(repo.cache.stats())
}

#[cfg(feature = "metrics")]
async fn metrics(State(handle): State<metrics_exporter_prometheus::PrometheusHandle>) -> String {
    handle.render()
}

fn router(repo: Repo) -> Router {
    let listing = CacheLayer::new(repo.cache.clone());
    let app = Router::new()
        .route("/users/{id}", get(get_user).put(put_user))
        .route("/users", get(list_users).route_layer(listing))
        .route("/stats", get(stats))
        .with_state(repo);
    #[cfg(feature = "metrics")]
    let app = {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only metrics recorder");
        app.merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(handle),
        )
    };
    #[cfg(not(feature = "metrics"))]
    let app = app.route(
        "/metrics",
        get(|| async { (StatusCode::NOT_FOUND, "built without the `metrics` feature") }),
    );
    app
}

struct Options {
    port: u16,
    redis: Option<String>,
    db: Option<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 3000,
        redis: None,
        db: None,
        check: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                options.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--redis" => options.redis = Some(value("--redis")?),
            "--db" => options.db = Some(PathBuf::from(value("--db")?)),
            "--check" => options.check = true,
            "--help" | "-h" => {
                return Err(
                    "usage: axum_service [--port P] [--redis URL] [--db FILE] [--check]".into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(options)
}

async fn build_cache(redis: Option<&str>) -> Result<Cache, Box<dyn Error>> {
    let builder = Cache::builder().prefix("users-service");
    match redis {
        #[cfg(feature = "redis")]
        Some(url) => Ok(builder.redis(url).build().await?),
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature: add `--features redis`".into()),
        None => Ok(builder.build().await?),
    }
}

async fn serve(options: Options) -> Result<(), Box<dyn Error>> {
    let path = options.db.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cachette-users-{}.db", std::process::id()))
    });
    let db = Db::open(&path, 1_000)?;
    let cache = build_cache(options.redis.as_deref()).await?;
    let repo = Repo { db, cache };
    let warmed = repo.warm(100).await.map_err(|e| e.0)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "listening on http://{addr} (database {}, {warmed} users warmed)",
        path.display()
    );
    axum::serve(listener, router(repo)).await?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if options.check {
        return check::run();
    }
    tokio::runtime::Runtime::new()?.block_on(serve(options))
}

/// `--check`: a redis-server on a free port, two instances of this program
/// on it, and a bounded HTTP client that checks what they answer.
mod check {
    use std::error::Error;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child process, killed when dropped.
    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> Result<u16, Box<dyn Error>> {
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }

    /// Waits until something accepts connections on `port`.
    fn wait_for(port: u16, what: &str) -> Result<(), Box<dyn Error>> {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("{what} did not listen on port {port} within 60 s").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// One answer: status, headers (lower-case names), body.
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// One HTTP/1.1 request with `Connection: close`, bounded by a timeout.
    fn request(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, Box<dyn Error>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream.take(4 << 20).read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no end of headers")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or("no status line")?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Answer {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    fn expect(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
        match ok {
            true => {
                println!("  ok: {what}");
                Ok(())
            }
            false => Err(format!("check failed: {what}").into()),
        }
    }

    pub(super) fn run() -> Result<(), Box<dyn Error>> {
        let dir = std::env::temp_dir().join(format!("cachette-axum-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let redis_port = free_port()?;
        let _redis = Killed(
            Command::new("redis-server")
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting redis-server (is it installed?): {e}"))?,
        );
        wait_for(redis_port, "redis-server")?;
        let url = format!("redis://127.0.0.1:{redis_port}/");
        let db = dir.join("users.db");
        let me = std::env::current_exe()?;
        let instance = |port: u16| -> Result<Killed, Box<dyn Error>> {
            let child = Command::new(&me)
                .args(["--port", &port.to_string(), "--redis", &url])
                .arg("--db")
                .arg(&db)
                .stdout(Stdio::null())
                .spawn()?;
            Ok(Killed(child))
        };
        let (a, b) = (free_port()?, free_port()?);
        let _first = instance(a)?;
        wait_for(a, "instance A")?;
        let _second = instance(b)?;
        wait_for(b, "instance B")?;
        println!("two instances on one Redis: A on {a}, B on {b}");

        let first = request(a, "GET", "/users/7", &[], "")?;
        expect(first.status == 200, "GET /users/7 on A is 200")?;
        expect(
            first.header("x-source").is_some_and(|s| s != "Body"),
            "user 7 was warmed before A listened: the first GET runs no query",
        )?;
        let etag = first.header("etag").ok_or("no ETag")?.to_owned();
        expect(!etag.starts_with("W/"), "the ETag is strong")?;
        expect(
            first.header("cache-control") == Some("max-age=300, stale-while-revalidate=60, public"),
            "Cache-Control carries the TTL and the stale window",
        )?;
        expect(
            first.header("last-modified").is_some(),
            "Last-Modified is set",
        )?;
        let again = request(a, "GET", "/users/7", &[("If-None-Match", &etag)], "")?;
        expect(
            again.status == 304 && again.body.is_empty(),
            "a matching If-None-Match on A is 304 without a body",
        )?;
        let other = request(b, "GET", "/users/7", &[("If-None-Match", &etag)], "")?;
        expect(
            other.status == 304,
            "B, reading Redis, agrees: 304 for A's ETag",
        )?;

        let page = request(b, "GET", "/users", &[], "")?;
        expect(
            page.status == 200 && page.body.contains("\"user 7\""),
            "GET /users on B lists user 7",
        )?;
        // The first response teaches the layer its tag; the second is stored,
        // and A finds it in Redis.
        let _ = request(b, "GET", "/users", &[], "")?;
        let page = request(a, "GET", "/users", &[], "")?;
        expect(
            page.header("x-cache") == Some("HIT"),
            "A serves B's stored listing: X-Cache: HIT",
        )?;

        let put = request(a, "PUT", "/users/7", &[], "Ada Lovelace")?;
        expect(put.status == 204, "PUT /users/7 on A is 204")?;
        let changed = request(b, "GET", "/users/7", &[("If-None-Match", &etag)], "")?;
        expect(
            changed.status == 200
                && changed.body.contains("Ada Lovelace")
                && changed.header("etag").is_some_and(|t| t != etag),
            "after the write on A, B answers 200 with the new name and a new ETag",
        )?;
        let purged = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            request(b, "GET", "/users", &[], "")
                .is_ok_and(|page| page.body.contains("Ada Lovelace"))
        });
        expect(purged, "the tag purge reached B's cached listing")?;
        let missing = request(a, "GET", "/users/999999", &[], "")?;
        expect(missing.status == 404, "an unknown user is 404")?;

        let stats = request(a, "GET", "/stats", &[], "")?;
        expect(
            stats.status == 200 && stats.body.contains("\"functions\""),
            "/stats answers JSON",
        )?;
        let metrics = request(a, "GET", "/metrics", &[], "")?;
        if cfg!(feature = "metrics") {
            expect(
                metrics.body.contains("cachette_requests_total"),
                "/metrics has cachette_requests_total",
            )?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        println!("axum_service check passed");
        Ok(())
    }
}
