//! Write-behind: writes go into the cache at once with `{fn}_put`, and a
//! bounded queue flushes them to the database in batches, and once more on
//! shutdown, so that no write is lost.
//!
//! ```text
//! cargo run --example write_behind
//! ```
//!
//! Readers see a write as soon as `_put` returns, before the database has
//! it. The queue is bounded: when the database falls behind, writers wait
//! for room instead of piling up memory. A crash loses what the queue held:
//! use this where a few seconds of writes may be lost, or where the writes
//! can be replayed. Writes to one key must come from one writer at a time
//! (or carry a version), so that the queue holds them in the order the
//! cache saw them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use cachette::cache;
use tokio::sync::mpsc;

/// The database: a table of counters, and how many batches it was sent.
#[derive(Default)]
struct Database {
    rows: Mutex<HashMap<u64, u64>>,
    batches: AtomicUsize,
    reads: AtomicUsize,
}

impl Database {
    async fn read(&self, id: u64) -> u64 {
        self.reads.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.rows.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// One round trip for many rows, as an `INSERT .. ON CONFLICT` would be.
    async fn write_batch(&self, batch: &[(u64, u64)]) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.rows.lock().unwrap().extend(batch.iter().copied());
        self.batches.fetch_add(1, SeqCst);
    }
}

static DB: std::sync::LazyLock<Database> = std::sync::LazyLock::new(Database::default);

#[cache(key = "score:<id>", ttl = "10m", tier = "l1")]
async fn score(id: u64) -> u64 {
    DB.read(id).await
}

/// The write side: the cache first, then the queue.
#[derive(Clone)]
struct Writer {
    queue: mpsc::Sender<(u64, u64)>,
}

impl Writer {
    async fn set_score(&self, id: u64, value: u64) -> Result<(), cachette::Error> {
        score_put(id, value).await?;
        // Waits for room when the flusher is behind: the queue stays bounded.
        self.queue
            .send((id, value))
            .await
            .expect("the flusher runs until every writer is gone");
        Ok(())
    }
}

/// Drains the queue in batches of at most `max` writes, each sent when it
/// is full or `every` has passed; returns when every writer is dropped and
/// the last batch is written.
async fn flusher(mut queue: mpsc::Receiver<(u64, u64)>, max: usize, every: Duration) {
    let mut batch = Vec::with_capacity(max);
    loop {
        let deadline = tokio::time::sleep(every);
        tokio::pin!(deadline);
        let closed = loop {
            tokio::select! {
                write = queue.recv() => match write {
                    Some(write) => {
                        batch.push(write);
                        if batch.len() == max {
                            break false;
                        }
                    }
                    None => break true,
                },
                () = &mut deadline => break false,
            }
        };
        if !batch.is_empty() {
            DB.write_batch(&batch).await;
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), cachette::Error> {
    let (queue, pending) = mpsc::channel(64);
    let flushing = tokio::spawn(flusher(pending, 32, Duration::from_millis(50)));
    let writer = Writer { queue };

    // 4 writers × 100 writes, each writer over 25 ids of its own: one
    // writer per key keeps the queue in the order the cache saw.
    let mut tasks = Vec::new();
    for task in 0..4u64 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..100u64 {
                let id = task * 25 + n % 25;
                writer.set_score(id, task * 1_000 + n).await?;
                // Read your write: the cache has it before the database.
                assert_eq!(score(id).await, task * 1_000 + n);
            }
            Ok::<_, cachette::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("a writer task")?;
    }

    // Shutdown: drop the last writer, then wait for the final flush.
    drop(writer);
    flushing.await.expect("the flusher");

    let rows = DB.rows.lock().unwrap().clone();
    assert_eq!(rows.len(), 100);
    for id in 0..100 {
        assert_eq!(
            rows.get(&id).copied(),
            Some(score(id).await),
            "the database has every last write, and so does the cache"
        );
    }
    println!(
        "400 writes, {} batches to the database, {} database reads; every id in the database matches the cache",
        DB.batches.load(SeqCst),
        DB.reads.load(SeqCst)
    );
    assert!(DB.batches.load(SeqCst) < 400, "writes were batched");
    Ok(())
}
