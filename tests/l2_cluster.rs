//! The shared tier on a real 3-master Redis Cluster (started by the
//! harness on 127.0.0.1): two caches stand for two processes. Entries,
//! generations and locks land on different nodes; invalidations travel on
//! the cluster's pub/sub; a killed master slows calls down but fails none.

#![cfg(feature = "cluster")]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cachette::{cache, cache_many, Cache};
use support::redis::RedisCluster;
use support::wait::eventually;

async fn process(cluster: &RedisCluster, prefix: &str, l2_timeout: Duration) -> Cache {
    Cache::builder()
        .prefix(prefix)
        .redis_cluster(cluster.urls())
        .l2_timeout(l2_timeout)
        .lock_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("connects to the cluster")
}

/// `count` ids whose Redis keys (`key(id)`) are spread over every node,
/// with the node each lands on.
fn ids_on_every_node(
    cluster: &RedisCluster,
    count: usize,
    key: impl Fn(u64) -> String,
) -> Vec<(u64, usize)> {
    let ids: Vec<(u64, usize)> = (0..count as u64)
        .map(|id| (id, cluster.owner_of(key(id))))
        .collect();
    let nodes: BTreeSet<usize> = ids.iter().map(|(_, node)| *node).collect();
    assert_eq!(
        nodes.len(),
        cluster.nodes().len(),
        "the keys cover every node"
    );
    ids
}

fn exists_on(cluster: &RedisCluster, node: usize, key: &str) -> bool {
    let reply = cluster.node(node).cmd(&["EXISTS", key]).expect("EXISTS");
    reply.as_int() == Some(1)
}

// ---------------------------------------------------------------------------

static ITEM_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "item:<id>", ttl = 300, cache = cache)]
async fn item(cache: &Cache, id: u64) -> String {
    ITEM_RUNS.fetch_add(1, SeqCst);
    format!("item {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_entry_filled_by_one_process_is_served_to_another_on_every_node() {
    let cluster = RedisCluster::start(3);
    let a = process(&cluster, "cf", Duration::from_millis(500)).await;
    let b = process(&cluster, "cf", Duration::from_millis(500)).await;
    let ids = ids_on_every_node(&cluster, 24, |id| format!("cf:v1:item:{id}"));

    for (id, _) in &ids {
        assert_eq!(item(&a, *id).await, format!("item {id}"));
    }
    assert_eq!(ITEM_RUNS.load(SeqCst), ids.len());
    for (id, node) in &ids {
        assert!(
            exists_on(&cluster, *node, &format!("cf:v1:item:{id}")),
            "item {id} is stored on node {node}, which owns its slot"
        );
    }
    for (id, _) in &ids {
        assert_eq!(item(&b, *id).await, format!("item {id}"));
    }
    assert_eq!(ITEM_RUNS.load(SeqCst), ids.len(), "b read a's fills");
    let stats = b.stats();
    let s = stats.function("l2_cluster::item").expect("stats");
    assert_eq!((s.l2_hits, s.misses, s.l2_errors), (ids.len() as u64, 0, 0));
    // And now from b's L1.
    for (id, _) in &ids {
        assert_eq!(item(&b, *id).await, format!("item {id}"));
    }
    let stats = b.stats();
    assert_eq!(
        stats.function("l2_cluster::item").expect("stats").l1_hits,
        ids.len() as u64
    );
}

// ---------------------------------------------------------------------------

static MEMBER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "member:<id>", ttl = 300, tags = ["team"], cache = cache)]
async fn member(cache: &Cache, id: u64) -> String {
    let run = MEMBER_RUNS.fetch_add(1, SeqCst);
    format!("member {id} run {run}")
}

static PAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "page:<id>", ttl = 300, namespace = "pages", cache = cache)]
async fn page(cache: &Cache, id: u64) -> String {
    let run = PAGE_RUNS.fetch_add(1, SeqCst);
    format!("page {id} run {run}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_g6_tag_and_namespace_invalidations_reach_every_process() {
    let cluster = RedisCluster::start(3);
    let a = process(&cluster, "ci", Duration::from_millis(500)).await;
    let b = process(&cluster, "ci", Duration::from_millis(500)).await;
    let ids: Vec<u64> = ids_on_every_node(&cluster, 12, |id| format!("ci:v1:member:{id}"))
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    // Tag: both hold every member (b from a's fills, then in L1).
    let mut held = Vec::new();
    for id in &ids {
        let value = member(&a, *id).await;
        assert_eq!(member(&b, *id).await, value);
        assert_eq!(member(&b, *id).await, value);
        held.push(value);
    }
    assert_eq!(MEMBER_RUNS.load(SeqCst), ids.len());
    a.invalidate_tag("team").await.expect("reaches the cluster");
    for (id, old) in ids.iter().zip(&held) {
        assert_ne!(&member(&a, *id).await, old, "a misses at once");
    }
    let b2 = b.clone();
    let held2 = held.clone();
    let ids2 = ids.clone();
    assert!(
        eventually(Duration::from_secs(5), async || {
            let mut fresh = true;
            for (id, old) in ids2.iter().zip(&held2) {
                fresh &= &member(&b2, *id).await != old;
            }
            fresh
        })
        .await,
        "b misses every tagged entry once the message arrives"
    );

    // Namespace.
    let mut held = Vec::new();
    for id in &ids {
        let value = page(&a, *id).await;
        assert_eq!(page(&b, *id).await, value);
        held.push(value);
    }
    let keys = cluster
        .cmd(&["EXISTS", "ci:#gen:ns:pages"])
        .expect("EXISTS");
    assert_eq!(keys.as_int(), Some(0), "no namespace generation yet");
    b.invalidate_namespace("pages")
        .await
        .expect("reaches the cluster");
    let generation = cluster.cmd(&["GET", "ci:#gen:ns:pages"]).expect("GET");
    assert_eq!(generation.as_str(), Some("1"));
    for (id, old) in ids.iter().zip(&held) {
        assert_ne!(&page(&b, *id).await, old, "b misses at once");
    }
    let a2 = a.clone();
    assert!(
        eventually(Duration::from_secs(5), async || {
            let mut fresh = true;
            for (id, old) in ids.iter().zip(&held) {
                fresh &= &page(&a2, *id).await != old;
            }
            fresh
        })
        .await,
        "a misses the whole namespace once the message arrives"
    );
    assert!(
        exists_on(
            &cluster,
            cluster.owner_of(format!("ci:pages@1:v1:page:{}", ids[0])),
            &format!("ci:pages@1:v1:page:{}", ids[0])
        ),
        "refills go under the new namespace generation"
    );
}

// ---------------------------------------------------------------------------

static REPORT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "report:<id>", ttl = 300, lock, cache = cache)]
async fn report(cache: &Cache, id: u64) -> String {
    let run = REPORT_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    format!("report {id} run {run}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_g5_caches_sharing_a_cluster_run_a_cold_keys_body_once() {
    let cluster = RedisCluster::start(3);
    let a = process(&cluster, "cl", Duration::from_millis(500)).await;
    let b = process(&cluster, "cl", Duration::from_millis(500)).await;
    // The entry and its lock may live on different nodes.
    let id = 5;
    let entry = format!("cl:v1:report:{id}");
    let lock = format!("cl:#lock:{entry}");
    println!(
        "entry on node {}, lock on node {}",
        cluster.owner_of(&entry),
        cluster.owner_of(&lock)
    );
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { report(&cache, id).await })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.expect("no panic"));
    }
    assert_eq!(REPORT_RUNS.load(SeqCst), 1, "one body run in total");
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    let reply = cluster.cmd(&["EXISTS", &lock]).expect("EXISTS");
    assert_eq!(reply.as_int(), Some(0), "the lock was released");
}

// ---------------------------------------------------------------------------

static SCORE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "score:<id>", ttl = 300, cache = cache)]
async fn score(cache: &Cache, id: u64) -> u64 {
    SCORE_RUNS.fetch_add(1, SeqCst);
    id * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_g8_a_killed_master_slows_calls_down_but_fails_none() {
    const L2_TIMEOUT: Duration = Duration::from_millis(200);
    /// What one call may take at worst: a few shared-tier steps, each
    /// bounded by the timeout.
    const CALL_BOUND: Duration = Duration::from_secs(2);
    let cluster = RedisCluster::start(3);
    let a = process(&cluster, "ck", L2_TIMEOUT).await;
    let b = process(&cluster, "ck", L2_TIMEOUT).await;
    let ids = ids_on_every_node(&cluster, 24, |id| format!("ck:v1:score:{id}"));
    for (id, _) in &ids {
        assert_eq!(score(&a, *id).await, id * 3);
    }

    // A master with some of the entries dies (no replica takes over).
    let victim = 1;
    cluster.node(victim).kill();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    // b reads every entry (from live nodes or, for the dead one's, by
    // running the body) and cold keys, for longer than the cluster takes to
    // notice the failure (node timeout 2 s).
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(3) || round < 2 {
        for (id, _) in &ids {
            let id = id + 1_000 * round;
            let call = Instant::now();
            assert_eq!(score(&b, id).await, id * 3, "round {round}");
            slowest = slowest.max(call.elapsed());
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the calls went on within a bounded time"
            );
        }
        round += 1;
    }
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");
    let stats = b.stats();
    let s = stats.function("l2_cluster::score").expect("stats");
    assert!(s.l2_errors > 0, "the dead master shows in the stats");
    println!(
        "{} rounds with node {victim} down; slowest call {slowest:?}; {s:?}",
        round
    );

    // Entries on live nodes still serve while the cluster has not yet
    // noticed; either way every call above returned the body's value.
    cluster.node(victim).restart();
    cluster.wait_until_ok(Duration::from_secs(20));
    // Back: b's fills reach the cluster again, and a new process reads them
    // instead of running the body.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 50_000;
    loop {
        id += 1;
        let runs = SCORE_RUNS.load(SeqCst);
        assert_eq!(score(&b, id).await, id * 3);
        let d = process(&cluster, "ck", L2_TIMEOUT).await;
        assert_eq!(score(&d, id).await, id * 3);
        if SCORE_RUNS.load(SeqCst) == runs + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fills reach the cluster again after the master is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------

static CREW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "crew:<id>", ttl = 300, tags = ["crew"], cache = cache)]
async fn crew(cache: &Cache, id: u64) -> String {
    CREW_RUNS.fetch_add(1, SeqCst);
    format!("crew {id}")
}

/// Pub/sub clients connected to `node`.
fn subscribers_on(cluster: &RedisCluster, node: usize) -> usize {
    let Ok(list) = cluster.node(node).cmd(&["CLIENT", "LIST"]) else {
        return 0;
    };
    list.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|line| line.split(' ').any(|field| field == "sub=1"))
        .count()
}

/// The caches listen on the first URL's node; when it dies they listen on
/// another, and invalidations reach them again (G6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_g6_invalidations_arrive_after_the_node_listened_to_dies() {
    let cluster = RedisCluster::start(3);
    // A prefix whose tag generation lives on a node that stays up.
    let prefix = (0..)
        .map(|n| format!("sub{n}"))
        .find(|p| cluster.owner_of(format!("{p}:#gen:tag:crew")) != 0)
        .expect("some prefix");
    let a = process(&cluster, &prefix, Duration::from_millis(200)).await;
    let b = process(&cluster, &prefix, Duration::from_millis(200)).await;
    assert_eq!(
        subscribers_on(&cluster, 0),
        2,
        "both listen on the first node"
    );

    cluster.node(0).kill();
    let moved = eventually(Duration::from_secs(10), async || {
        subscribers_on(&cluster, 1) + subscribers_on(&cluster, 2) == 2
    })
    .await;
    assert!(moved, "both subscribers moved to live nodes");

    // b holds the entry in L1 (read from Redis or filled by its body).
    assert_eq!(crew(&b, 1).await, "crew 1");
    let runs = CREW_RUNS.load(SeqCst);
    assert_eq!(crew(&b, 1).await, "crew 1");
    assert_eq!(CREW_RUNS.load(SeqCst), runs, "an L1 hit");

    // a invalidates the tag; the message may first go to the dead node.
    let invalidated = eventually(Duration::from_secs(10), async || {
        a.invalidate_tag("crew").await.is_ok()
    })
    .await;
    assert!(invalidated, "the invalidation reaches the live nodes");
    let missed = eventually(Duration::from_secs(10), async || {
        crew(&b, 1).await;
        CREW_RUNS.load(SeqCst) > runs
    })
    .await;
    assert!(missed, "b hears the invalidation on its new node");
}

// ---------------------------------------------------------------------------
// `#[cache_many]` on a cluster: the batch's pipelines span every node.

static BATCH_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cache_many(key = "crate:<ids>", ttl = 300, lock, cache = cache)]
async fn crates(cache: &Cache, ids: &[u64]) -> std::collections::HashMap<u64, String> {
    BATCH_LOADS.fetch_add(ids.len(), SeqCst);
    ids.iter().map(|id| (*id, format!("crate {id}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_g14_a_batch_over_every_node_is_stored_and_served_per_element() {
    let cluster = RedisCluster::start(3);
    let a = process(&cluster, "cm", Duration::from_millis(500)).await;
    let b = process(&cluster, "cm", Duration::from_millis(500)).await;
    let ids = ids_on_every_node(&cluster, 24, |id| format!("cm:v1:crate:{id}"));
    let keys: Vec<u64> = ids.iter().map(|(id, _)| *id).collect();

    let first = crates(&a, &keys).await;
    assert_eq!(first.len(), keys.len());
    assert_eq!(BATCH_LOADS.load(SeqCst), keys.len());
    for (id, node) in &ids {
        assert!(
            exists_on(&cluster, *node, &format!("cm:v1:crate:{id}")),
            "crate {id} is stored on node {node}"
        );
    }
    let second = crates(&b, &keys).await;
    assert_eq!(second, first);
    assert_eq!(
        BATCH_LOADS.load(SeqCst),
        keys.len(),
        "b read every element from the cluster"
    );
}
