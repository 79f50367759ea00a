//! The invalidation channel: its wire format, and the listener that applies
//! other processes' invalidations to this process's L1 and generations.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::Backend;
use crate::invalidate::{GenId, Generations, KEY_SLOTS};
use crate::l1::Store;

/// One invalidation-channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A key's slot moved to a generation; the key is dropped from L1.
    Key {
        slot: usize,
        generation: u64,
        key: String,
    },
    Tag {
        generation: u64,
        tag: String,
    },
    Namespace {
        generation: u64,
        namespace: String,
    },
    Clear {
        generation: u64,
    },
    /// An entry was stored: single-flight waiters may look again.
    Filled,
}

impl Event {
    pub(crate) fn encode(&self, node: u64) -> String {
        match self {
            Event::Key {
                slot,
                generation,
                key,
            } => format!("{node}|k|{slot}|{generation}|{key}"),
            Event::Tag { generation, tag } => format!("{node}|t|{generation}|{tag}"),
            Event::Namespace {
                generation,
                namespace,
            } => format!("{node}|n|{generation}|{namespace}"),
            Event::Clear { generation } => format!("{node}|c|{generation}"),
            Event::Filled => format!("{node}|f"),
        }
    }

    /// The encoding's text before and after the generation, which the
    /// shared store fills in when it moves the generation and announces it
    /// in one step (`encode` is `before + generation + after`).
    pub(crate) fn around_generation(&self, node: u64) -> (String, String) {
        match self {
            Event::Key { slot, key, .. } => (format!("{node}|k|{slot}|"), format!("|{key}")),
            Event::Tag { tag, .. } => (format!("{node}|t|"), format!("|{tag}")),
            Event::Namespace { namespace, .. } => (format!("{node}|n|"), format!("|{namespace}")),
            Event::Clear { .. } => (format!("{node}|c|"), String::new()),
            Event::Filled => (format!("{node}|f"), String::new()),
        }
    }

    /// The sender and the event; `None` for anything malformed.
    pub(crate) fn decode(text: &str) -> Option<(u64, Event)> {
        let (node, rest) = text.split_once('|')?;
        let node = node.parse().ok()?;
        let (kind, rest) = rest.split_once('|').unwrap_or((rest, ""));
        let event = match kind {
            "k" => {
                let (slot, rest) = rest.split_once('|')?;
                let (generation, key) = rest.split_once('|')?;
                let slot: usize = slot.parse().ok()?;
                if slot >= KEY_SLOTS {
                    return None;
                }
                Event::Key {
                    slot,
                    generation: generation.parse().ok()?,
                    key: key.to_owned(),
                }
            }
            "t" => {
                let (generation, tag) = rest.split_once('|')?;
                Event::Tag {
                    generation: generation.parse().ok()?,
                    tag: tag.to_owned(),
                }
            }
            "n" => {
                let (generation, namespace) = rest.split_once('|')?;
                Event::Namespace {
                    generation: generation.parse().ok()?,
                    namespace: namespace.to_owned(),
                }
            }
            "c" => Event::Clear {
                generation: rest.parse().ok()?,
            },
            "f" => Event::Filled,
            _ => return None,
        };
        Some((node, event))
    }
}

/// Listens on the invalidation channel for as long as the cache lives,
/// subscribing again after any failure. Each (re)subscription voids L1's
/// entries and forgets the mirrored generations: messages sent while disconnected are
/// lost. It also moves the era on (before the flush), so loads in flight
/// meanwhile do not fill L1 again with what a lost message invalidated.
pub(crate) async fn listen(
    backend: Arc<dyn Backend>,
    channel: String,
    node: u64,
    l1: Arc<Store>,
    generations: Arc<Generations>,
    fills: Arc<Notify>,
    era: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut subscribed_before = false;
    loop {
        let subscribing = backend.subscribe(channel.clone());
        if let Ok(Ok(mut subscription)) =
            tokio::time::timeout(Duration::from_secs(2), subscribing).await
        {
            backoff = Duration::from_millis(20);
            if subscribed_before {
                era.fetch_add(1, SeqCst);
                generations.forget_all();
                crate::trace::channel_reconnected(&channel);
            } else {
                // The first subscription: the cache's start waits for the
                // era to move, so the flush goes first and no load or put
                // begun after the start meets it.
                generations.forget_all();
                era.fetch_add(1, SeqCst);
            }
            subscribed_before = true;
            while let Some(message) = subscription.next().await {
                let Ok(text) = std::str::from_utf8(&message) else {
                    continue;
                };
                apply(text, node, &l1, &generations, &fills);
            }
            // The subscription ended: the connection is gone.
            era.fetch_add(1, SeqCst);
            generations.forget_all();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn apply(text: &str, node: u64, l1: &Store, generations: &Generations, fills: &Notify) {
    let Some((sender, event)) = Event::decode(text) else {
        return;
    };
    if let Event::Filled = event {
        // Our own fills wake our own cross-process waiters too.
        fills.notify_waiters();
        return;
    }
    if sender == node {
        return;
    }
    match event {
        Event::Key {
            slot,
            generation,
            key,
        } => {
            generations.learn_announced(&GenId::KeySlot(slot), generation);
            l1.remove(&key);
        }
        Event::Tag { generation, tag } => generations.learn_announced(&GenId::Tag(tag), generation),
        Event::Namespace {
            generation,
            namespace,
        } => generations.learn_announced(&GenId::Namespace(namespace), generation),
        Event::Clear { generation } => {
            generations.learn_announced(&GenId::Clear, generation);
            generations.void_entries();
        }
        Event::Filled => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let events = [
            Event::Key {
                slot: 7,
                generation: 3,
                key: "users:v1:user:4|2".into(),
            },
            Event::Tag {
                generation: 9,
                tag: "org:1".into(),
            },
            Event::Namespace {
                generation: 2,
                namespace: "users".into(),
            },
            Event::Clear { generation: 5 },
            Event::Filled,
        ];
        for event in events {
            assert_eq!(Event::decode(&event.encode(42)), Some((42, event)));
        }
        for event in [
            Event::Key {
                slot: 7,
                generation: 31,
                key: "k|1".into(),
            },
            Event::Tag {
                generation: 31,
                tag: "org:1".into(),
            },
            Event::Namespace {
                generation: 31,
                namespace: "users".into(),
            },
            Event::Clear { generation: 31 },
        ] {
            let (before, after) = event.around_generation(42);
            assert_eq!(format!("{before}31{after}"), event.encode(42));
        }
        for garbage in ["", "x", "1|z|3", "1|k|99999|1|k", "a|t|1|x", "1|c|x"] {
            assert_eq!(Event::decode(garbage), None, "{garbage:?}");
        }
    }
}
