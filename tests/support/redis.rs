//! Private `redis-server` processes and a 3-master Redis Cluster on
//! 127.0.0.1, plus a small RESP2 client to drive them behind the cache's back.
//!
//! - [`RedisServer`]: one server on a free port, in a temp dir of its own,
//!   with no persistence. It can be killed, restarted on the same port,
//!   paused and resumed. Dropping it kills the process and deletes the dir.
//! - [`RedisCluster`]: `N` cluster-enabled servers joined with
//!   `redis-cli --cluster create`, waited on until every node reports
//!   `cluster_state:ok`.
//! - [`redis_cmd`] / [`RedisConn`] / [`RespValue`]: send a command, read the
//!   reply (simple strings, errors, integers, bulk strings, arrays, nil).
//!
//! A missing `redis-server` is a loud failure, never a skip: `scripts/test`
//! installs it. Only 127.0.0.1 is ever contacted and every wait is bounded.
//!
//! Strays: besides the kill on drop, each server has a watchdog (`sh`, idle
//! in `read` on a pipe from the test process). If the test process dies
//! without running destructors (a `static` fixture, a SIGKILL, an abort), the
//! pipe closes and the watchdog kills the server and deletes its dir.
//!
//! Ports are chosen below the kernel's ephemeral range when it leaves room
//! (Linux: `ip_local_port_range`), so no outgoing connection, such as a
//! client retrying against a killed server, can take a server's port as its
//! own source port (or connect to itself) and stop a restart on that port.

use std::collections::hash_map::RandomState;
use std::env;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only address this module ever contacts.
pub const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long a server may take to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restart keeps retrying while its port is still taken.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh ports tried by a start whose chosen port turned out to be taken.
const START_ATTEMPTS: usize = 8;
/// Connect, read and write timeout of [`RedisConn`].
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Redis Cluster's bus listens on the client port plus this.
const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// How long `redis-cli --cluster create` may run.
const CLUSTER_CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new cluster may take to report `cluster_state:ok` everywhere.
const CLUSTER_OK_TIMEOUT: Duration = Duration::from_secs(20);
/// Redirections [`RedisCluster::cmd`] follows before giving up.
const MAX_REDIRECTS: usize = 5;
/// Bulk strings larger than this are a protocol error (Redis caps at 512 MiB).
const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Nesting deeper than this is a protocol error.
const MAX_DEPTH: usize = 32;
/// Lines of a server's log quoted in a failure message.
const LOG_TAIL_LINES: usize = 40;

/// Whether `redis-server` is on `PATH`.
///
/// Tests that need Redis should not skip when this is false: starting a
/// server panics with an explanation instead.
pub fn redis_available() -> bool {
    find_on_path("redis-server").is_some()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

fn require(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH. The Redis tests run a real Redis and are never skipped: \
             run scripts/test (it installs redis-server), or install the redis-server package \
             (e.g. `apt-get install redis-server`)"
        )
    })
}

/// A fresh random number (std only: the hasher's keys are random).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Creates a new, empty directory for one server.
fn make_temp_dir(label: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(env::temp_dir, PathBuf::from);
    fs::create_dir_all(&base)
        .unwrap_or_else(|e| panic!("cannot create temp base dir {}: {e}", base.display()));
    for _ in 0..100 {
        let dir = base.join(format!(
            "{label}-{}-{:016x}",
            std::process::id(),
            random_u64()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
    panic!(
        "cannot find an unused temp dir name under {}",
        base.display()
    )
}

/// The kernel's range of ports for outgoing connections.
fn ephemeral_range() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            match (bounds.next(), bounds.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
                _ => None,
            }
        })
        .unwrap_or((32_768, 60_999))
}

/// A free port on 127.0.0.1, for a second listener of a server (such as
/// `--tls-port`).
pub fn free_port() -> u16 {
    pick_port(false)
}

/// A new, empty directory under the tests' temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    make_temp_dir(label)
}

/// A port nothing listens on (nor, with `bus`, on the port plus 10000).
///
/// Candidates come from below the ephemeral range when it leaves room, else
/// from the kernel (`127.0.0.1:0`). Either way the port is checked by binding
/// it, then released for the server; the server may still lose a race for
/// it, which the callers detect and retry.
fn pick_port(bus: bool) -> u16 {
    const LOWEST: u16 = 10_000;
    let (ephemeral_lo, _) = ephemeral_range();
    let highest = if bus {
        ephemeral_lo.saturating_sub(CLUSTER_BUS_OFFSET)
    } else {
        ephemeral_lo
    };
    let below_ephemeral = (highest > LOWEST + 1_000).then_some((LOWEST, highest));
    for _ in 0..1_000 {
        let candidate = match below_ephemeral {
            Some((lo, hi)) => {
                lo + u16::try_from(random_u64() % u64::from(hi - lo)).expect("below hi - lo")
            }
            None => 0,
        };
        let Ok(listener) = TcpListener::bind((HOST, candidate)) else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|addr| addr.port()) else {
            continue;
        };
        if bus {
            let Some(bus_port) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if TcpListener::bind((HOST, bus_port)).is_err() {
                continue;
            }
        }
        return port;
    }
    panic!("found no free port on 127.0.0.1 after 1000 tries")
}

/// Waits for `child` to exit, killing it when `timeout` passes first.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> &str {
    let trimmed = text.trim_end();
    match trimmed.rmatch_indices('\n').nth(lines.saturating_sub(1)) {
        Some((at, _)) => &trimmed[at + 1..],
        None => trimmed,
    }
}

/// Whether a server's chosen port was taken (so trying again may help).
#[derive(Debug)]
struct PortTaken;

/// The processes behind a [`RedisServer`] while it runs.
#[derive(Debug, Default)]
struct Process {
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl Process {
    /// SIGKILLs the server and waits for it; stops the watchdog.
    fn stop(&mut self) {
        match self.server.take() {
            Some(mut server) => {
                // The unreaped server keeps its pid reserved while the
                // watchdog, which knows that pid, is stopped.
                let _ = server.kill();
                self.stop_watchdog();
                let _ = server.wait();
            }
            None => self.stop_watchdog(),
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Whether the server runs; reaps it (and stops the watchdog) if not.
    fn is_running(&mut self) -> bool {
        let exited = match self.server.as_mut() {
            None => return false,
            Some(server) => !matches!(server.try_wait(), Ok(None)),
        };
        if exited {
            self.stop_watchdog();
            self.server = None;
        }
        !exited
    }
}

/// A private `redis-server` on a free 127.0.0.1 port.
///
/// Started with `--save "" --appendonly no` (nothing is kept on disk),
/// `--protected-mode no` and `--bind 127.0.0.1`, in a temp dir of its own
/// (under cargo's `CARGO_TARGET_TMPDIR`) holding `redis.log`, the server's
/// stdout and stderr. Dropping it kills the server and deletes the dir, except
/// while the thread panics: then the dir is kept and its path printed.
///
/// Every method takes `&self`, so a server can sit in a `static` or be shared
/// between threads; its port never changes.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    log_path: PathBuf,
    binary: PathBuf,
    cluster: bool,
    extra_args: Vec<String>,
    process: Mutex<Process>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// Panics (with the log's tail) when it does not within 10 s, and when
    /// `redis-server` is missing.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with more command-line arguments, e.g.
    /// `&["--requirepass", "secret"]`. They must not lower `--loglevel`
    /// below `notice`: readiness is read from the log.
    pub fn start_with(args: &[&str]) -> RedisServer {
        Self::launch(false, "redis", args)
    }

    /// A cluster-enabled server, not yet part of any cluster.
    fn start_cluster_node() -> RedisServer {
        Self::launch(true, "redis-cluster", &[])
    }

    fn launch(cluster: bool, label: &str, args: &[&str]) -> RedisServer {
        let binary = require("redis-server");
        let dir = make_temp_dir(label);
        // On a panic from here on, dropping `server` cleans up.
        let mut server = RedisServer {
            port: 0,
            log_path: dir.join("redis.log"),
            dir,
            binary,
            cluster,
            extra_args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            process: Mutex::new(Process::default()),
        };
        for _ in 0..START_ATTEMPTS {
            server.port = pick_port(cluster);
            if server.spawn().is_ok() {
                return server;
            }
        }
        panic!(
            "redis-server lost the race for its port {START_ATTEMPTS} times in a row; last log:\n{}",
            server.log_tail()
        )
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://{HOST}:{}/", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((HOST, self.port))
    }

    /// The server's own temp dir (its log is `redis.log` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL_LINES).to_owned()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        let mut process = lock(&self.process);
        if process.is_running() {
            process.server.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Whether the server process is alive (it may be paused).
    pub fn is_running(&self) -> bool {
        lock(&self.process).is_running()
    }

    /// SIGKILLs the server and waits for it to exit. A no-op when it is not
    /// running. Clients see their connections drop; the data is gone.
    pub fn kill(&self) {
        lock(&self.process).stop();
    }

    /// Starts the server again on the same port (killing it first if it
    /// runs), retrying for up to 5 s while the port is still taken, and waits
    /// until it answers `PING`. It starts empty, except that a cluster node
    /// keeps its cluster config (`nodes-PORT.conf`) and so rejoins its
    /// cluster.
    pub fn restart(&self) {
        self.kill();
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        while self.spawn().is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} stayed taken for {RESTART_BIND_TIMEOUT:?} after the kill; last log:\n{}",
                self.port,
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the server (SIGSTOP): connections open and commands are
    /// accepted by the kernel, but nothing is answered until
    /// [`RedisServer::resume`]. Simulates a hung Redis.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Undoes [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port));
        let status = Command::new("sh")
            .args(["-c", r#"kill -s "$1" "$2""#, "signal"])
            .arg(name)
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh to send SIG{name}: {e}"));
        assert!(
            status.success(),
            "sending SIG{name} to {pid} failed: {status}"
        );
    }

    /// Sends one command to this server on a new connection.
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<RespValue, String> {
        redis_cmd(self.port, args)
    }

    /// The text of `INFO section`.
    pub fn info(&self, section: &str) -> Result<String, String> {
        let reply = self.cmd(&["INFO", section])?;
        reply
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("INFO {section} replied {reply:?}"))
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        args.push(self.dir.to_string_lossy().into_owned());
        if self.cluster {
            args.extend([
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                format!("nodes-{}.conf", self.port),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
            ]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Spawns the server on `self.port` and waits until it is ready.
    /// `Err` when the port was taken; panics on any other failure.
    fn spawn(&self) -> Result<(), PortTaken> {
        let mut process = lock(&self.process);
        process.stop();
        let log_start = fs::metadata(&self.log_path).map_or(0, |meta| meta.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let server = Command::new(&self.binary)
            .args(self.args())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.binary.display()));
        let pid = server.id();
        process.server = Some(server);
        process.watchdog = spawn_watchdog(pid, &self.dir);
        self.wait_ready(&mut process, log_start)
    }

    fn log_since(&self, offset: u64) -> String {
        let Ok(mut file) = fs::File::open(&self.log_path) else {
            return String::new();
        };
        let mut bytes = Vec::new();
        if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).is_err()
            || file.read_to_end(&mut bytes).is_err()
        {
            return String::new();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Ready means: this spawn's own log says so (so the answer to `PING`
    /// cannot come from another server that won the port) and `PING` is
    /// answered.
    fn wait_ready(&self, process: &mut Process, log_start: u64) -> Result<(), PortTaken> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log_since(log_start);
            if !process.is_running() {
                if log.contains("Address already in use") {
                    return Err(PortTaken);
                }
                panic!(
                    "redis-server on port {} exited before it was ready; log ({}):\n{}",
                    self.port,
                    self.log_path.display(),
                    tail(&log, LOG_TAIL_LINES)
                );
            }
            if log.contains("Ready to accept connections") && answers_ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                process.stop();
                panic!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log ({}):\n{}",
                    self.port,
                    self.log_path.display(),
                    tail(&log, LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        lock(&self.process).stop();
        if thread::panicking() {
            eprintln!(
                "keeping the dir of redis-server on port {} for inspection: {}",
                self.port,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A shell that waits for the test process to go away (its stdin, a pipe
/// from us, reaches end of file), then kills the server and deletes its dir.
/// It ignores the signals a terminal or a timeout sends to the whole process
/// group, so that it outlives the test process. Best effort: `None` when it
/// cannot be spawned.
fn spawn_watchdog(pid: u32, dir: &Path) -> Option<Child> {
    Command::new("sh")
        .args([
            "-c",
            r#"trap '' HUP INT TERM; read -r _; kill -9 "$1" 2>/dev/null; rm -rf "$2""#,
            "redis-watchdog",
        ])
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Whether something on `port` answers `PING` (`+PONG`, or `-NOAUTH` from a
/// server with a password).
fn answers_ping(port: u16) -> bool {
    match redis_cmd(port, &["PING"]) {
        Ok(RespValue::Simple(pong)) => pong == "PONG",
        Ok(RespValue::Error(error)) => error.starts_with("NOAUTH"),
        _ => false,
    }
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`, `-MOVED ...`, `-WRONGTYPE ...`: a reply, not an I/O error.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `*2\r\n...`
    Array(Vec<RespValue>),
    /// `$-1` or `*-1`.
    Nil,
}

impl RespValue {
    pub fn is_nil(&self) -> bool {
        matches!(self, RespValue::Nil)
    }

    /// `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, RespValue::Simple(text) if text == "OK")
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RespValue::Bulk(bytes) => Some(bytes),
            RespValue::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            RespValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[RespValue]> {
        match self {
            RespValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The text of an error reply.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            RespValue::Error(text) => Some(text),
            _ => None,
        }
    }

    /// A cluster redirection (`-MOVED slot host:port` or `-ASK ...`).
    pub fn redirect(&self) -> Option<Redirect> {
        let mut words = self.as_error()?.split_whitespace();
        let ask = match words.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot = words.next()?.parse().ok()?;
        let (_, port) = words.next()?.rsplit_once(':')?;
        Some(Redirect {
            ask,
            slot,
            port: port.parse().ok()?,
        })
    }
}

/// Where a cluster node sent a command. Only the port is kept: every node
/// of a [`RedisCluster`] is on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK` (one command, after `ASKING`) rather than `MOVED`.
    pub ask: bool,
    pub slot: u16,
    pub port: u16,
}

/// One connection to a server on 127.0.0.1, with 2 s connect, read and
/// write timeouts. Keep one to send `AUTH` first, to `SUBSCRIBE` and read
/// the messages, or to hold a client that a test then `CLIENT KILL`s.
#[derive(Debug)]
pub struct RedisConn {
    port: u16,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RedisConn {
    pub fn connect(port: u16) -> Result<RedisConn, String> {
        let addr = SocketAddr::from((HOST, port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let setup = |stream: &TcpStream| -> std::io::Result<TcpStream> {
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            stream.set_nodelay(true)?;
            stream.try_clone()
        };
        let writer = setup(&stream).map_err(|e| format!("cannot set up {addr}: {e}"))?;
        Ok(RedisConn {
            port,
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends a command and reads its reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<RespValue, String> {
        self.send(args)?;
        self.read_reply()
    }

    /// Sends a command without reading a reply.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), String> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&frame)
            .map_err(|e| format!("cannot write to 127.0.0.1:{}: {e}", self.port))
    }

    /// Reads one reply (or, once subscribed, one pushed message).
    pub fn read_reply(&mut self) -> Result<RespValue, String> {
        read_value(&mut self.reader, 0)
            .map_err(|e| format!("reading from 127.0.0.1:{}: {e}", self.port))
    }

    /// Changes the read timeout (e.g. to wait longer for a pushed message).
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())
    }
}

/// Sends one command to 127.0.0.1:`port` on a new connection and reads the
/// reply. `Err` is for connection and protocol failures; a Redis error reply
/// is `Ok(RespValue::Error(..))`.
///
/// Arguments are anything byte-like: `&["SET", "k", "v"]`,
/// `&[b"SET".as_slice(), key, &bytes]`, `&[String]`, ...
pub fn redis_cmd<A: AsRef<[u8]>>(port: u16, args: &[A]) -> Result<RespValue, String> {
    RedisConn::connect(port)?.cmd(args)
}

/// The value of `field` in `INFO` or `CLUSTER INFO` text (`field:value`
/// lines).
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}

fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => Err("connection closed".to_owned()),
        Ok(_) if line.ends_with(b"\r\n") => {
            line.truncate(line.len() - 2);
            Ok(line)
        }
        Ok(_) => Err(format!(
            "line not ended by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("timed out waiting for a reply".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn parse_number(digits: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(digits)))
}

fn read_value(reader: &mut impl BufRead, depth: usize) -> Result<RespValue, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deeply".to_owned());
    }
    let line = read_line(reader)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err("empty reply line".to_owned());
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(RespValue::Simple(text())),
        b'-' => Ok(RespValue::Error(text())),
        b':' => parse_number(rest).map(RespValue::Integer),
        b'$' => {
            let len = parse_number(rest)?;
            if len < 0 {
                return Ok(RespValue::Nil);
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            if len > MAX_BULK_LEN {
                return Err(format!("bulk string of {len} bytes"));
            }
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes).map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    "timed out reading a bulk string".to_owned()
                }
                _ => format!("reading a bulk string: {e}"),
            })?;
            if !bytes.ends_with(b"\r\n") {
                return Err("bulk string not ended by CRLF".to_owned());
            }
            bytes.truncate(len);
            Ok(RespValue::Bulk(bytes))
        }
        b'*' => {
            let count = parse_number(rest)?;
            if count < 0 {
                return Ok(RespValue::Nil);
            }
            let count = usize::try_from(count).map_err(|e| e.to_string())?;
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                items.push(read_value(reader, depth + 1)?);
            }
            Ok(RespValue::Array(items))
        }
        other => Err(format!(
            "unexpected reply type {:?} in {:?}",
            char::from(other),
            String::from_utf8_lossy(&line)
        )),
    }
}

/// A Redis Cluster of masters only (no replicas), each a [`RedisServer`]
/// with `--cluster-enabled yes --cluster-node-timeout 2000` and its cluster
/// config in its own dir, joined by `redis-cli --cluster create`. Dropping it
/// kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3), creates the cluster and waits
    /// until every node reports `cluster_state:ok`. Panics with the output
    /// of `redis-cli` or the nodes' states when something fails.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let cli = require("redis-cli");
        let cluster = RedisCluster {
            nodes: (0..masters)
                .map(|_| RedisServer::start_cluster_node())
                .collect(),
        };
        cluster.create(&cli);
        cluster.wait_until_ok(CLUSTER_OK_TIMEOUT);
        cluster
    }

    fn create(&self, cli: &Path) {
        let output_path = self.nodes[0].dir().join("cluster-create.log");
        let output = fs::File::create(&output_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", output_path.display()));
        let output_err = output
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let mut command = Command::new(cli);
        command.args(["--cluster", "create"]);
        command.args(self.ports().iter().map(|port| format!("{HOST}:{port}")));
        command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", cli.display()));
        let status = wait_with_deadline(&mut child, CLUSTER_CREATE_TIMEOUT);
        if status.is_some_and(|status| status.success()) {
            return;
        }
        let printed = fs::read_to_string(&output_path).unwrap_or_default();
        panic!(
            "`redis-cli --cluster create` {} ; its output:\n{}\nlast node log:\n{}",
            match status {
                Some(status) => format!("failed ({status})"),
                None => format!("did not finish within {CLUSTER_CREATE_TIMEOUT:?}"),
            },
            tail(&printed, LOG_TAIL_LINES),
            self.nodes[self.nodes.len() - 1].log_tail()
        );
    }

    /// `cluster_state` as node `i` reports it (`None` when it does not
    /// answer).
    pub fn node_state(&self, i: usize) -> Option<String> {
        let info = self.nodes[i].cmd(&["CLUSTER", "INFO"]).ok()?;
        info_field(info.as_str()?, "cluster_state")
    }

    /// Waits until every node reports `cluster_state:ok`; panics with their
    /// states after `timeout`.
    pub fn wait_until_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<Option<String>> =
                (0..self.nodes.len()).map(|i| self.node_state(i)).collect();
            if states.iter().all(|state| state.as_deref() == Some("ok")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster on ports {:?} did not reach cluster_state:ok within {timeout:?}: {states:?}",
                self.ports()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:PORT/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, asked of the first node
    /// that answers).
    pub fn keyslot(&self, key: impl AsRef<[u8]>) -> u16 {
        let key = key.as_ref();
        let reply = self.any_node_cmd(&[b"CLUSTER".as_slice(), b"KEYSLOT", key]);
        reply
            .as_int()
            .and_then(|slot| u16::try_from(slot).ok())
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT replied {reply:?}"))
    }

    /// The index of the node that serves `key`'s slot (from `CLUSTER
    /// SLOTS`, asked of the first node that answers).
    pub fn owner_of(&self, key: impl AsRef<[u8]>) -> usize {
        let slot = i64::from(self.keyslot(key));
        let reply = self.any_node_cmd(&["CLUSTER", "SLOTS"]);
        let port = reply
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(RespValue::as_array)
            .find(|range| {
                matches!(
                    (range.first().and_then(RespValue::as_int), range.get(1).and_then(RespValue::as_int)),
                    (Some(start), Some(end)) if (start..=end).contains(&slot)
                )
            })
            .and_then(|range| range.get(2)?.as_array()?.get(1)?.as_int())
            .unwrap_or_else(|| panic!("no owner of slot {slot} in CLUSTER SLOTS: {reply:?}"));
        self.nodes
            .iter()
            .position(|node| i64::from(node.port()) == port)
            .unwrap_or_else(|| panic!("slot {slot} is served on port {port}, not one of ours"))
    }

    /// Sends a command to the first node that accepts a connection and
    /// follows `MOVED` / `ASK` redirections (at most 5), returning the final
    /// reply.
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<RespValue, String> {
        let mut conn = self
            .nodes
            .iter()
            .find_map(|node| RedisConn::connect(node.port()).ok())
            .ok_or_else(|| format!("no node of the cluster on {:?} answers", self.ports()))?;
        for _ in 0..MAX_REDIRECTS {
            let reply = conn.cmd(args)?;
            let Some(redirect) = reply.redirect() else {
                return Ok(reply);
            };
            conn = RedisConn::connect(redirect.port)?;
            if redirect.ask {
                let asking = conn.cmd(&["ASKING"])?;
                if !asking.is_ok() {
                    return Err(format!("ASKING replied {asking:?}"));
                }
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirections"))
    }

    fn any_node_cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> RespValue {
        let mut errors = Vec::new();
        for node in &self.nodes {
            match node.cmd(args) {
                Ok(reply) => return reply,
                Err(e) => errors.push(e),
            }
        }
        panic!("no node of the cluster answered: {errors:?}")
    }
}
