//! An in-memory shared store for tests, with faults to inject: errors,
//! slow answers, hangs, garbage values and lost messages. Several caches
//! built on one [`MemoryStore`] behave like processes sharing one Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Backend, BoxFuture, Call, Connect, ConnectContext, Fault, Subscription};
use crate::error::Error;

/// What every operation does while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answers as Redis would.
    Healthy,
    /// Fails at once, as with a refused connection.
    Failing,
    /// Answers correctly, after this long.
    Slow(Duration),
    /// Never answers.
    Hanging,
    /// Does the operation at once, and answers after this long (a slow
    /// link: the store has moved on before the caller hears).
    LateReply(Duration),
}

#[derive(Default)]
struct State {
    values: HashMap<String, (Vec<u8>, Option<Instant>)>,
    subscribers: Vec<(String, mpsc::UnboundedSender<Vec<u8>>)>,
}

/// The store several test caches share.
#[derive(Clone)]
pub(crate) struct MemoryStore {
    state: Arc<Mutex<State>>,
    mode: Arc<Mutex<Mode>>,
    lose_messages: Arc<AtomicBool>,
    /// While on, a lock is taken but its answer comes after this long.
    late_locks: Arc<Mutex<Option<Duration>>>,
    /// While on, releasing a lock fails without releasing it.
    failing_unlocks: Arc<AtomicBool>,
    /// Reads of an entry done, by every cache on this store.
    pub(crate) entry_reads: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Connect for MemoryStore {
    fn connect(&self, _cx: ConnectContext) -> BoxFuture<'static, Result<Arc<dyn Backend>, Error>> {
        let store = self.clone();
        Box::pin(async move { Ok(Arc::new(store) as Arc<dyn Backend>) })
    }
}

impl MemoryStore {
    pub(crate) fn new() -> MemoryStore {
        MemoryStore {
            state: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Healthy)),
            lose_messages: Arc::default(),
            late_locks: Arc::default(),
            failing_unlocks: Arc::default(),
            entry_reads: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// While on, published messages reach no subscriber.
    pub(crate) fn lose_messages(&self, on: bool) {
        self.lose_messages.store(on, SeqCst);
    }

    /// While `Some`, taking a lock succeeds in the store but its answer
    /// arrives this much later.
    pub(crate) fn late_locks(&self, late: Option<Duration>) {
        *self
            .late_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = late;
    }

    /// While on, releasing a lock fails (as with a reset connection) and
    /// leaves it in place.
    pub(crate) fn failing_unlocks(&self, on: bool) {
        self.failing_unlocks.store(on, SeqCst);
    }

    /// Whether some lock is held.
    pub(crate) fn locked(&self) -> bool {
        let now = Instant::now();
        self.state()
            .values
            .iter()
            .any(|(k, (_, expires))| k.contains("#lock:") && expires.is_none_or(|at| at > now))
    }

    /// Ends every subscription, as a dropped connection does.
    pub(crate) fn drop_subscriptions(&self) {
        self.state().subscribers.clear();
    }

    /// Overwrites every stored value whose key contains `part` with `bytes`.
    pub(crate) fn overwrite(&self, part: &str, bytes: &[u8]) -> usize {
        let mut state = self.state();
        let mut overwritten = 0;
        for (key, (value, _)) in state.values.iter_mut() {
            if key.contains(part) && !key.contains('#') {
                *value = bytes.to_vec();
                overwritten += 1;
            }
        }
        overwritten
    }

    /// The bytes stored under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.state().values.get(key).map(|(v, _)| v.clone())
    }

    /// The stored keys that are entries (not generations or locks).
    pub(crate) fn entry_keys(&self) -> Vec<String> {
        let state = self.state();
        let mut keys: Vec<String> = state
            .values
            .keys()
            .filter(|k| !k.contains('#'))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Runs `op` on the state as the current mode says.
    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut State) -> Result<T, Fault> + Send + 'static,
    ) -> Call<T> {
        let store = self.clone();
        let mode = *self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        Call::background(async move {
            match mode {
                Mode::Healthy | Mode::LateReply(_) => {}
                Mode::Failing => return Err(Fault::Down("connection refused".to_owned())),
                Mode::Slow(by) => tokio::time::sleep(by).await,
                Mode::Hanging => std::future::pending::<()>().await,
            }
            let reply = {
                let mut state = store.state();
                let now = Instant::now();
                state
                    .values
                    .retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
                op(&mut state)
            };
            if let Mode::LateReply(by) = mode {
                tokio::time::sleep(by).await;
            }
            reply
        })
    }
}

fn integer(value: Option<&(Vec<u8>, Option<Instant>)>) -> Result<u64, Fault> {
    match value {
        None => Ok(0),
        Some((bytes, _)) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Fault::Refused("value is not an integer".to_owned())),
    }
}

impl Backend for MemoryStore {
    fn get_many(&self, keys: Vec<String>) -> Call<Vec<Option<Vec<u8>>>> {
        let entry_reads = Arc::clone(&self.entry_reads);
        self.call(move |state| {
            if keys.first().is_some_and(|k| !k.contains('#')) {
                entry_reads.fetch_add(1, SeqCst);
            }
            Ok(keys
                .iter()
                .map(|k| state.values.get(k).map(|(v, _)| v.clone()))
                .collect())
        })
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> Call<()> {
        self.call(move |state| {
            state
                .values
                .insert(key, (value, Some(Instant::now() + ttl)));
            Ok(())
        })
    }

    fn increment(&self, key: String, by: u64) -> Call<u64> {
        self.call(move |state| {
            let next = integer(state.values.get(&key))? + by;
            state
                .values
                .insert(key, (next.to_string().into_bytes(), None));
            Ok(next)
        })
    }

    fn publish(&self, channel: String, message: String) -> Call<()> {
        let lose = Arc::clone(&self.lose_messages);
        self.call(move |state| {
            if !lose.load(SeqCst) {
                state.subscribers.retain(|(c, tx)| {
                    *c != channel || tx.send(message.clone().into_bytes()).is_ok()
                });
            }
            Ok(())
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
        let lose = Arc::clone(&self.lose_messages);
        self.call(move |state| {
            let next = (integer(state.values.get(&key))? + 1).max(floor);
            state
                .values
                .insert(key, (next.to_string().into_bytes(), None));
            if !lose.load(SeqCst) {
                let message = format!("{before}{next}{after}").into_bytes();
                state
                    .subscribers
                    .retain(|(c, tx)| *c != channel || tx.send(message.clone()).is_ok());
            }
            Ok(next)
        })
    }

    fn set_if_absent(&self, key: String, value: String, ttl: Duration) -> Call<bool> {
        let late = *self
            .late_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Call { place, op } = self.call(move |state| {
            if state.values.contains_key(&key) {
                return Ok(false);
            }
            state
                .values
                .insert(key, (value.into_bytes(), Some(Instant::now() + ttl)));
            Ok(true)
        });
        let op: BoxFuture<'static, Result<bool, Fault>> = match late {
            Some(by) => Box::pin(async move {
                let reply = op.await;
                tokio::time::sleep(by).await;
                reply
            }),
            None => op,
        };
        Call { place, op }
    }

    fn expire_if_equal(&self, key: String, value: String, ttl: Duration) -> Call<()> {
        self.call(move |state| {
            if let Some((v, expires)) = state.values.get_mut(&key) {
                if *v == value.as_bytes() {
                    *expires = Some(Instant::now() + ttl);
                }
            }
            Ok(())
        })
    }

    fn delete_if_equal(&self, key: String, value: String) -> Call<()> {
        if self.failing_unlocks.load(SeqCst) {
            return Call::background(async { Err(Fault::Down("connection reset".to_owned())) });
        }
        self.call(move |state| {
            if state
                .values
                .get(&key)
                .is_some_and(|(v, _)| *v == value.as_bytes())
            {
                state.values.remove(&key);
            }
            Ok(())
        })
    }

    fn ping(&self) -> Call<()> {
        self.call(|_| Ok(()))
    }

    fn subscribe(
        &self,
        channel: String,
    ) -> BoxFuture<'static, Result<Box<dyn Subscription>, Fault>> {
        let Call { op, .. } = self.call(move |state| {
            let (tx, rx) = mpsc::unbounded_channel();
            state.subscribers.push((channel, tx));
            Ok(rx)
        });
        Box::pin(async move {
            let rx = op.await?;
            Ok(Box::new(MemorySubscription(rx)) as Box<dyn Subscription>)
        })
    }
}

struct MemorySubscription(mpsc::UnboundedReceiver<Vec<u8>>);

impl Subscription for MemorySubscription {
    fn next(&mut self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.0.recv())
    }
}
