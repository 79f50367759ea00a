//! Compression of large values in the shared tier (feature `compression`),
//! against a real Redis: a value above `compress_above` is stored
//! compressed and read back by another process; a value below it, or from a
//! process that does not compress, is stored as it is and read by both;
//! `max_value_size` applies to the compressed size; corrupt compressed
//! bytes are a miss, never an error or a panic.

#![cfg(all(feature = "redis", feature = "compression"))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cachette::{cache, Cache};
use support::redis::RedisServer;

/// Body runs per `id`: each test uses its own ids, as tests run at once.
static RUNS: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn runs(id: u64) -> usize {
    RUNS[id as usize].load(SeqCst)
}

/// A JSON-like text of about `len` bytes, as an API response would be.
fn json_like(id: u64, len: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < len {
        out.push_str(&format!(
            "{{\"id\":{},\"name\":\"user {i}\",\"email\":\"user{i}@example.com\",\"active\":{}}},",
            id * 1_000_000 + i,
            i.is_multiple_of(3)
        ));
        i += 1;
    }
    out.push(']');
    out
}

#[cache(key = "report:<id>:<len>", ttl = 300, cache = cache)]
async fn report(cache: &Cache, id: u64, len: usize) -> String {
    RUNS[id as usize].fetch_add(1, SeqCst);
    json_like(id, len)
}

async fn process(
    server: &RedisServer,
    configure: impl FnOnce(cachette::Builder) -> cachette::Builder,
) -> Cache {
    configure(
        Cache::builder()
            .prefix("z")
            .redis(server.url())
            .l2_timeout(Duration::from_secs(1)),
    )
    .build()
    .await
    .expect("connects to the test's Redis")
}

fn stored(server: &RedisServer, key: &str) -> Vec<u8> {
    let value = server.cmd(&["GET", key]).expect("GET");
    value.as_bytes().expect("a stored value").to_vec()
}

/// The envelope's flags byte says whether the payload is compressed.
fn is_compressed(envelope: &[u8]) -> bool {
    envelope[2] & 2 != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_value_is_stored_compressed_and_read_back_by_another_process() {
    let server = RedisServer::start();
    let a = process(&server, |b| b).await;
    let b = process(&server, |b| b).await;
    let big = 64 * 1024;

    let value = report(&a, 1, big).await;
    assert_eq!(value, json_like(1, big));
    let envelope = stored(&server, "z:v1:report:1:65536");
    assert!(is_compressed(&envelope));
    assert!(
        envelope.len() < big / 3,
        "64 KiB of JSON-like text took {} bytes",
        envelope.len()
    );
    assert_eq!(report(&b, 1, big).await, value, "decompressed by b");
    assert_eq!(runs(1), 1, "b read a's fill");

    // Below the threshold: stored as it is.
    let _ = report(&a, 2, 600).await;
    assert!(!is_compressed(&stored(&server, "z:v1:report:2:600")));
    assert_eq!(report(&b, 2, 600).await, json_like(2, 600));
    assert_eq!(runs(2), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_compress_and_that_do_not_read_each_others_values() {
    let server = RedisServer::start();
    let plain = process(&server, |b| b.compress_above(usize::MAX)).await;
    let compressing = process(&server, |b| b.compress_above(100)).await;
    let len = 4 * 1024;

    let _ = report(&plain, 3, len).await;
    assert!(!is_compressed(&stored(&server, "z:v1:report:3:4096")));
    assert_eq!(report(&compressing, 3, len).await, json_like(3, len));

    let _ = report(&compressing, 4, len).await;
    assert!(is_compressed(&stored(&server, "z:v1:report:4:4096")));
    assert_eq!(report(&plain, 4, len).await, json_like(4, len));
    assert_eq!((runs(3), runs(4)), (1, 1), "every read was a hit in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_value_size_applies_to_the_compressed_size() {
    let server = RedisServer::start();
    let a = process(&server, |b| b.max_value_size(16 * 1024)).await;
    let b = process(&server, |b| b.max_value_size(16 * 1024)).await;
    let big = 64 * 1024;

    let _ = report(&a, 5, big).await;
    let envelope = stored(&server, "z:v1:report:5:65536");
    assert!(envelope.len() <= 16 * 1024);
    assert_eq!(report(&b, 5, big).await, json_like(5, big));
    assert_eq!(runs(5), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_compressed_bytes_are_a_miss() {
    let server = RedisServer::start();
    let a = process(&server, |b| b).await;
    let big = 16 * 1024;
    let key = "z:v1:report:6:16384";
    let _ = report(&a, 6, big).await;
    let good = stored(&server, key);
    assert!(is_compressed(&good));
    // No tags: a 49-byte header, the payload length, then the payload,
    // which starts with the uncompressed length.
    let payload = 53;

    let mut wrong_length = good.clone();
    wrong_length[payload] ^= 1;
    let mut rng = fastrand::Rng::with_seed(3);
    let mut noise = good.clone();
    for byte in &mut noise[payload + 4..] {
        *byte = rng.u8(..);
    }
    for (what, bytes) in [
        ("a wrong declared length", wrong_length),
        ("a garbled block", noise),
    ] {
        server
            .cmd(&[&b"SET"[..], key.as_bytes(), &bytes])
            .expect("SET");
        let reader = process(&server, |b| b).await;
        let before = runs(6);
        assert_eq!(report(&reader, 6, big).await, json_like(6, big), "{what}");
        assert_eq!(runs(6), before + 1, "{what} is a miss: the body ran");
        let stats = reader.stats();
        let s = stats.function("l2_compression::report").expect("stats");
        assert_eq!((s.l2_hits, s.misses), (0, 1), "{what}");
    }
}
