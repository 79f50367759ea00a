//! TCP proxies of the tests' own on 127.0.0.1, in front of a real server:
//! [`LatencyProxy`] forwards both ways and holds every reply for a set
//! delay, as a slow link does; [`FaultProxy`] injects faults on cue.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// Forwards 127.0.0.1:`port()` to `upstream`, delaying what comes back.
/// Stops (and drops every connection) when dropped.
pub struct LatencyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl LatencyProxy {
    pub fn start(upstream: u16, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("bound").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let up = Arc::clone(&stopping);
                thread::spawn(move || pipe(client_in, server, Duration::ZERO, &up));
                let down = Arc::clone(&stopping);
                thread::spawn(move || pipe(server_in, client, delay, &down));
            }
        });
        LatencyProxy { port, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to`, holding each chunk for `delay`, until either side
/// closes or the proxy stops.
fn pipe(from: TcpStream, to: TcpStream, delay: Duration, stop: &AtomicBool) {
    forward(from, to, stop, |_| {
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        true
    });
}

/// Copies `from` to `to`, calling `before` with each chunk ahead of writing
/// it, until either side closes, `stop` is set or `before` says no; then
/// closes both.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    stop: &AtomicBool,
    mut before: impl FnMut(&[u8]) -> bool,
) {
    read_chunks(&mut from, stop, |chunk| {
        before(chunk) && to.write_all(chunk).is_ok()
    });
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Hands each chunk read from `from` to `each`, until `from` closes, `stop`
/// is set or `each` says no.
fn read_chunks(from: &mut TcpStream, stop: &AtomicBool, mut each: impl FnMut(&[u8]) -> bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !each(&buf[..n]) {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

/// What a client sends, as the proxy reads it from the socket: usually one
/// command, sometimes several pipelined ones. A matcher says whether a fault
/// fires on it.
type Matcher = Box<dyn Fn(&[u8]) -> bool + Send>;

/// A fault armed on a [`FaultProxy`], fired once, by the first chunk from a
/// client that its matcher accepts.
enum ProxyFault {
    /// The chunk goes on to the server at once, but everything the server
    /// sends back on that connection is held until this long after it
    /// passed: the command is done while its client, if its timeout is
    /// shorter, gives up on the answer.
    HoldReplies(Duration),
    /// The chunk is dropped, never reaching the server, and its connection
    /// is closed both ways (a connection reset mid-command).
    Cut,
    /// The chunk, and everything its client sends after it on that
    /// connection, reaches the server only this long after it was sent,
    /// as over a congested link; the client's other connections go on.
    HoldRequests(Duration),
}

/// What the threads of a [`FaultProxy`] share.
#[derive(Default)]
struct FaultState {
    stop: AtomicBool,
    armed: std::sync::Mutex<Vec<(Matcher, ProxyFault)>>,
    fired: std::sync::atomic::AtomicUsize,
    /// Both sockets of every open connection, by connection number, so that
    /// [`FaultProxy::reset`] can close them.
    open: std::sync::Mutex<std::collections::HashMap<u64, (TcpStream, TcpStream)>>,
    /// How long every reply waits after it came from the server, in
    /// microseconds ([`FaultProxy::set_reply_delay`]).
    reply_delay_us: AtomicU64,
    /// Whether every reply on every connection is held
    /// ([`FaultProxy::hold_all_replies`]).
    holding_all: AtomicBool,
}

impl FaultState {
    /// The fault the chunk `sent` fires, taken off the armed list.
    fn fire(&self, sent: &[u8]) -> Option<ProxyFault> {
        let mut armed = self
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = armed.iter().position(|(matches, _)| matches(sent))?;
        let (_, fault) = armed.remove(at);
        self.fired.fetch_add(1, SeqCst);
        Some(fault)
    }

    /// When a reply that came from the server at `arrived` may go on to its
    /// client: `None` while every reply is held.
    fn release_time(&self, arrived: Instant, connection_hold: Option<Instant>) -> Option<Instant> {
        if self.holding_all.load(SeqCst) {
            return None;
        }
        let delayed = arrived + Duration::from_micros(self.reply_delay_us.load(SeqCst));
        Some(connection_hold.map_or(delayed, |hold| hold.max(delayed)))
    }

    fn forget(&self, connection: u64) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&connection);
    }
}

/// A TCP proxy on 127.0.0.1 in front of a real server, without latency of
/// its own, that injects faults on cue: replies held past a client's
/// timeout after a given command ([`FaultProxy::hold_replies_after`]), a
/// command held on its way to the server ([`FaultProxy::hold_requests_at`]),
/// a command lost with its connection ([`FaultProxy::cut_at`]), every
/// connection reset at once ([`FaultProxy::reset`]), latency added to every
/// reply ([`FaultProxy::set_reply_delay`]) and a blackhole, where commands
/// still reach the server but no reply comes back until it ends
/// ([`FaultProxy::hold_all_replies`]). New connections are accepted
/// throughout. Stops, closing every connection, when dropped.
pub struct FaultProxy {
    port: u16,
    state: Arc<FaultState>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("bound").port();
        let state = Arc::new(FaultState::default());
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            let mut next = 0u64;
            for client in listener.incoming() {
                if shared.stop.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(client_in), Ok(server_in), Ok(client_kept), Ok(server_kept)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                next += 1;
                let connection = next;
                shared
                    .open
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(connection, (client_kept, server_kept));
                let hold = Arc::new(std::sync::Mutex::new(None::<Instant>));
                let (up, up_hold) = (Arc::clone(&shared), Arc::clone(&hold));
                thread::spawn(move || {
                    faulty_upstream(client_in, server, &up, &up_hold);
                    up.forget(connection);
                });
                let down = Arc::clone(&shared);
                thread::spawn(move || {
                    held_downstream(server_in, client, &down, &hold);
                    down.forget(connection);
                });
            }
        });
        FaultProxy { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Arms a one-shot fault: the first chunk a client sends that `matches`
    /// accepts goes on to the server at once, and every reply on that
    /// connection is held until `delay` after it passed.
    pub fn hold_replies_after(
        &self,
        matches: impl Fn(&[u8]) -> bool + Send + 'static,
        delay: Duration,
    ) {
        self.arm(Box::new(matches), ProxyFault::HoldReplies(delay));
    }

    /// Arms a one-shot fault: the first chunk a client sends that `matches`
    /// accepts, and the rest of that connection's chunks after it, reach the
    /// server only `delay` later.
    pub fn hold_requests_at(
        &self,
        matches: impl Fn(&[u8]) -> bool + Send + 'static,
        delay: Duration,
    ) {
        self.arm(Box::new(matches), ProxyFault::HoldRequests(delay));
    }

    /// Arms a one-shot fault: the first chunk a client sends that `matches`
    /// accepts never reaches the server, and its connection is closed both
    /// ways.
    pub fn cut_at(&self, matches: impl Fn(&[u8]) -> bool + Send + 'static) {
        self.arm(Box::new(matches), ProxyFault::Cut);
    }

    fn arm(&self, matches: Matcher, fault: ProxyFault) {
        self.state
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((matches, fault));
    }

    /// Forgets the faults armed that have not fired.
    pub fn disarm(&self) {
        self.state
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// How many armed faults have fired so far.
    pub fn fired(&self) -> usize {
        self.state.fired.load(SeqCst)
    }

    /// How many client connections are open.
    pub fn connections(&self) -> usize {
        self.state
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Holds every reply from the server for `delay` before it goes on to
    /// its client, on every connection, new ones too; `Duration::ZERO` ends
    /// it. Replies keep their order, and a connection's replies are not
    /// held back behind one another: each waits `delay` from its arrival.
    pub fn set_reply_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.reply_delay_us.store(micros, SeqCst);
    }

    /// With `true`, a blackhole: commands still reach the server and run,
    /// but every reply on every connection (pushed messages too) is held
    /// until `hold_all_replies(false)`, when they all go on, late.
    pub fn hold_all_replies(&self, hold: bool) {
        self.state.holding_all.store(hold, SeqCst);
    }

    /// Closes every open connection, both ways, as a reset link does;
    /// returns how many there were. New connections are still accepted.
    pub fn reset(&self) -> usize {
        let open = std::mem::take(
            &mut *self
                .state
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (client, server) in open.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        open.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, SeqCst);
        self.reset();
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Client to server: forwards each chunk, unless it fires a fault.
fn faulty_upstream(
    from: TcpStream,
    to: TcpStream,
    state: &FaultState,
    hold: &std::sync::Mutex<Option<Instant>>,
) {
    forward(from, to, &state.stop, |sent| match state.fire(sent) {
        Some(ProxyFault::Cut) => false,
        // This thread forwards the connection's chunks in order: the ones
        // after it wait too.
        Some(ProxyFault::HoldRequests(delay)) => {
            thread::sleep(delay);
            true
        }
        Some(ProxyFault::HoldReplies(delay)) => {
            // Set before the command goes on, so its reply cannot slip past.
            *hold
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + delay);
            true
        }
        None => true,
    });
}

/// Server to client: forwards each chunk once its release time has come
/// ([`FaultState::release_time`]). A reader thread stamps each chunk as it
/// arrives, so that a delay is counted from the chunk's own arrival, not
/// from when the chunk before it went on.
fn held_downstream(
    from: TcpStream,
    mut to: TcpStream,
    state: &Arc<FaultState>,
    hold: &std::sync::Mutex<Option<Instant>>,
) {
    let (chunks, arrivals) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = from.try_clone().ok().map(|mut reading| {
        let state = Arc::clone(state);
        thread::spawn(move || {
            read_chunks(&mut reading, &state.stop, |chunk| {
                chunks.send((Instant::now(), chunk.to_vec())).is_ok()
            });
        })
    });
    for (arrived, chunk) in arrivals {
        if !wait_for_release(state, hold, arrived) || to.write_all(&chunk).is_err() {
            break;
        }
    }
    // Also ends the reader, if it still reads.
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
}

/// Sleeps until a chunk that arrived at `arrived` may go on, looking again
/// every few milliseconds, since the delay and the blackhole may change
/// meanwhile. False when the proxy stops first.
fn wait_for_release(
    state: &FaultState,
    hold: &std::sync::Mutex<Option<Instant>>,
    arrived: Instant,
) -> bool {
    const LOOK_AGAIN: Duration = Duration::from_millis(5);
    loop {
        if state.stop.load(SeqCst) {
            return false;
        }
        let connection_hold = *hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wait = match state.release_time(arrived, connection_hold) {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(LOOK_AGAIN),
                _ => return true,
            },
            None => LOOK_AGAIN,
        };
        thread::sleep(wait);
    }
}
