//! Invalidations on their way to the shared tier: moving the generation
//! there, announcing it, and replaying those that could not get through.
//!
//! An invalidation is applied to this process at once, whatever the shared
//! tier does. One that cannot reach the tier is returned as an error and
//! queued (coalesced per key, tag and namespace; a full queue becomes one
//! `clear`), then replayed in order as soon as the tier answers again, so
//! other processes stop serving the old entry soon after an outage ends
//! rather than when its TTL runs out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::channel::Event;
use super::{L2Error, L2};
use crate::error::Error;
use crate::invalidate::{GenId, Generations};

/// How many distinct invalidations wait for the shared tier at most; past
/// that they are replaced by one `clear`.
const QUEUE_LIMIT: usize = 4096;
/// How often queued invalidations are retried.
const REPLAY_EVERY: Duration = Duration::from_millis(100);

/// One invalidation for the shared tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) id: GenId,
    /// The `{fn}_key` of a key invalidation, for other processes' L1.
    pub(crate) key: Option<String>,
}

/// Invalidations that could not reach the shared tier yet, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    changes: Mutex<VecDeque<Change>>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Change>> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `change` unless the same one already waits; a `clear` covers
    /// everything before it.
    fn push(&self, change: Change) {
        let mut changes = self.lock();
        if change.id == GenId::Clear || changes.len() >= QUEUE_LIMIT {
            changes.clear();
            changes.push_back(Change {
                id: GenId::Clear,
                key: None,
            });
            return;
        }
        if !changes.contains(&change) {
            changes.push_back(change);
        }
    }

    fn front(&self) -> Option<Change> {
        self.lock().front().cloned()
    }

    /// Drops the front if it is still `done` (a `clear` queued meanwhile
    /// replaced it).
    fn pop(&self, done: &Change) {
        let mut changes = self.lock();
        if changes.front() == Some(done) {
            changes.pop_front();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Moves the generation on in the shared tier, learns its new value, and
/// announces it on the invalidation channel; a change that does not get
/// through is queued for [`replay`].
pub(crate) async fn propagate(
    l2: Arc<L2>,
    generations: Arc<Generations>,
    change: Change,
) -> Result<(), Error> {
    let result = send(&l2, &generations, &change).await;
    if result.is_err() {
        l2.queue.push(change);
    }
    result.map_err(Error::from)
}

async fn send(l2: &L2, generations: &Generations, change: &Change) -> Result<(), L2Error> {
    // The store may be behind this process (it lost generations): it moves
    // past ours, or other processes would take this invalidation for an old
    // one. The generation in the event is the store's to fill in.
    let floor = generations.get(&change.id);
    let event = match &change.id {
        GenId::KeySlot(slot) => Event::Key {
            slot: *slot,
            generation: 0,
            key: change.key.clone().unwrap_or_default(),
        },
        GenId::Tag(tag) => Event::Tag {
            generation: 0,
            tag: tag.clone(),
        },
        GenId::Namespace(namespace) => Event::Namespace {
            generation: 0,
            namespace: namespace.clone(),
        },
        GenId::Clear => Event::Clear { generation: 0 },
    };
    // On failure this process's generation has moved on and the store's
    // may not have. The local invalidation left it unknown, so the next
    // load that needs it reads the store's and raises it to ours before
    // filling with it. Nothing else is forgotten: a failed send (one every
    // replay while the tier is down) must not void the L1 entries that
    // carry the service through the outage.
    let generation = l2.bump_and_announce(&change.id, floor, &event).await?;
    generations.learn(&change.id, generation);
    Ok(())
}

/// Replays queued invalidations, in order, whenever the shared tier
/// answers; ends with the cache.
pub(crate) async fn replay(l2: Weak<L2>, generations: Arc<Generations>) {
    loop {
        tokio::time::sleep(REPLAY_EVERY).await;
        let Some(l2) = l2.upgrade() else {
            return;
        };
        while let Some(change) = l2.queue.front() {
            if l2.breaker.refusing() || send(&l2, &generations, &change).await.is_err() {
                break;
            }
            l2.queue.pop(&change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Change {
        Change {
            id: GenId::KeySlot(1),
            key: Some(k.to_owned()),
        }
    }

    #[test]
    fn the_queue_coalesces_repeats_and_a_clear_covers_everything() {
        let queue = Queue::default();
        queue.push(key("a"));
        queue.push(key("b"));
        queue.push(key("a"));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.front(), Some(key("a")));
        queue.pop(&key("a"));
        assert_eq!(queue.front(), Some(key("b")));
        queue.push(Change {
            id: GenId::Clear,
            key: None,
        });
        assert_eq!(queue.len(), 1);
        // A replay that finished `b` does not drop the `clear` that replaced it.
        queue.pop(&key("b"));
        assert_eq!(queue.front().map(|c| c.id), Some(GenId::Clear));
    }

    #[test]
    fn a_full_queue_becomes_one_clear() {
        let queue = Queue::default();
        for i in 0..QUEUE_LIMIT + 1 {
            queue.push(Change {
                id: GenId::Tag(format!("t{i}")),
                key: None,
            });
        }
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.front().map(|c| c.id), Some(GenId::Clear));
    }
}
