//! A TCP proxy of the tests' own on 127.0.0.1, in front of a real server:
//! it forwards both ways and holds every reply for a set delay, as a slow
//! link does.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !before(&buf[..n]) || to.write_all(&buf[..n]).is_err() {
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
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
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
/// command lost with its connection ([`FaultProxy::cut_at`]), and every
/// connection reset at once ([`FaultProxy::reset`]). New connections are
/// accepted throughout. Stops, closing every connection, when dropped.
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
                let hold = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
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
    hold: &std::sync::Mutex<Option<std::time::Instant>>,
) {
    forward(from, to, &state.stop, |sent| match state.fire(sent) {
        Some(ProxyFault::Cut) => false,
        Some(ProxyFault::HoldReplies(delay)) => {
            // Set before the command goes on, so its reply cannot slip past.
            *hold
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(std::time::Instant::now() + delay);
            true
        }
        None => true,
    });
}

/// Server to client: forwards each chunk, after waiting out a hold.
fn held_downstream(
    from: TcpStream,
    to: TcpStream,
    state: &FaultState,
    hold: &std::sync::Mutex<Option<std::time::Instant>>,
) {
    forward(from, to, &state.stop, |_| {
        let until = *hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(left) =
            until.and_then(|until| until.checked_duration_since(std::time::Instant::now()))
        {
            thread::sleep(left);
        }
        true
    });
}
