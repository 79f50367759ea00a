//! G14 in process: `#[cache_many]` runs its body with only the elements
//! that missed, once per element with `lock`, and shares entries with
//! `#[cache]` functions of the same template.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachette::{cache, cache_many, Cache};

#[derive(Debug)]
struct DbError;

/// Records every batch the body saw.
#[derive(Default)]
struct Db {
    batches: Mutex<Vec<Vec<u64>>>,
    fail: std::sync::atomic::AtomicBool,
}

impl Db {
    fn seen(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }

    fn fetch(&self, ids: &[u64]) -> Result<HashMap<u64, String>, DbError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        self.batches.lock().unwrap().push(sorted);
        if self.fail.load(SeqCst) {
            return Err(DbError);
        }
        // Odd ids do not exist.
        Ok(ids
            .iter()
            .filter(|id| *id % 2 == 0)
            .map(|id| (*id, format!("user {id}")))
            .collect())
    }
}

#[cache_many(key = "user:<ids>", ttl = 300, negative_ttl = 60, lock, skip(db), cache = cache)]
async fn get_users(cache: &Cache, db: &Db, ids: &[u64]) -> Result<HashMap<u64, String>, DbError> {
    db.fetch(ids)
}

#[cache(key = "user:<id>", ttl = 300, negative_ttl = 60, skip(db), cache = cache)]
async fn get_user(cache: &Cache, db: &Db, id: u64) -> Result<Option<String>, DbError> {
    Ok(db.fetch(&[id])?.remove(&id))
}

#[tokio::test]
async fn the_body_sees_only_the_missing_elements_each_once() {
    let (cache, db) = (Cache::local(), Db::default());
    let first = get_users(&cache, &db, &[1, 2, 3, 4, 2, 4]).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[&2], "user 2");
    assert_eq!(db.seen(), vec![vec![1, 2, 3, 4]], "duplicates are removed");
    let second = get_users(&cache, &db, &[2, 3, 4, 5, 6]).await.unwrap();
    assert_eq!(
        second.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([2, 4, 6])
    );
    assert_eq!(
        db.seen()[1],
        vec![5, 6],
        "absent 3 is cached with negative_ttl"
    );
    let third = get_users(&cache, &db, &[2, 6]).await.unwrap();
    assert_eq!(third.len(), 2);
    assert_eq!(db.seen().len(), 2, "all hits: no body run");
    let stats = cache.stats().total();
    assert_eq!(stats.body_runs, 2);
}

#[tokio::test]
async fn entries_are_shared_with_cache_of_the_same_template() {
    let (cache, db) = (Cache::local(), Db::default());
    get_users(&cache, &db, &[7, 8]).await.unwrap();
    assert_eq!(
        get_user(&cache, &db, 8).await.unwrap().as_deref(),
        Some("user 8")
    );
    assert_eq!(
        get_user(&cache, &db, 7).await.unwrap(),
        None,
        "the absent element too"
    );
    assert_eq!(db.seen().len(), 1, "get_user hit both");
    get_user(&cache, &db, 10).await.unwrap();
    let batch = get_users(&cache, &db, &[8, 10, 12]).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(db.seen().last().unwrap(), &vec![12]);
    assert_eq!(get_users_key(&cache, 8), get_user_key(&cache, 8));
}

#[tokio::test]
async fn companions_invalidate_put_refresh_and_uncached() {
    let (cache, db) = (Cache::local(), Db::default());
    get_users(&cache, &db, &[2, 4]).await.unwrap();
    get_users_invalidate(&cache, &[2]).await.unwrap();
    get_users(&cache, &db, &[2, 4]).await.unwrap();
    assert_eq!(
        db.seen()[1],
        vec![2],
        "only the invalidated element reloads"
    );

    let warm: HashMap<u64, String> = (100..110).map(|id| (id, format!("warm {id}"))).collect();
    get_users_put(&cache, warm).await.unwrap();
    let warmed = get_users(&cache, &db, &(100..110).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(warmed[&105], "warm 105");
    assert_eq!(db.seen().len(), 2, "put filled every element");

    let refreshed = get_users_refresh(&cache, &db, &[100, 101]).await.unwrap();
    assert_eq!(refreshed.get(&100).map(String::as_str), Some("user 100"));
    assert!(!refreshed.contains_key(&101));
    assert_eq!(db.seen()[2], vec![100, 101]);
    let after = get_users(&cache, &db, &[100, 101, 102]).await.unwrap();
    assert_eq!(after[&100], "user 100");
    assert!(
        !after.contains_key(&101),
        "the refresh cached 101 as absent"
    );
    assert_eq!(after[&102], "warm 102");

    let runs = db.seen().len();
    get_users_uncached(&cache, &db, &[100]).await.unwrap();
    assert_eq!(db.seen().len(), runs + 1);
}

#[tokio::test]
async fn a_failed_body_is_the_calls_error_and_caches_nothing() {
    let (cache, db) = (Cache::local(), Db::default());
    get_users(&cache, &db, &[2]).await.unwrap();
    db.fail.store(true, SeqCst);
    assert!(get_users(&cache, &db, &[2, 4]).await.is_err());
    db.fail.store(false, SeqCst);
    let map = get_users(&cache, &db, &[2, 4]).await.unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(db.seen(), vec![vec![2], vec![4], vec![4]]);
}

/// A slow source that counts each element's loads.
#[derive(Default)]
struct Slow {
    loads: Mutex<HashMap<u64, usize>>,
    calls: AtomicUsize,
}

#[cache_many(key = "slow:<ids>", ttl = 300, lock, skip(source), cache = cache)]
async fn get_slow(cache: &Cache, source: &Slow, ids: Vec<u64>) -> HashMap<u64, u64> {
    source.calls.fetch_add(1, SeqCst);
    {
        let mut loads = source.loads.lock().unwrap();
        for id in &ids {
            *loads.entry(*id).or_default() += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    ids.iter().map(|id| (*id, id * 10)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_overlapping_batches_load_each_element_once() {
    let cache = Cache::local();
    let source = Arc::new(Slow::default());
    let mut tasks = Vec::new();
    for task in 0..50u64 {
        let (cache, source) = (cache.clone(), Arc::clone(&source));
        tasks.push(tokio::spawn(async move {
            // Overlapping windows of 20 over 0..100.
            let ids: Vec<u64> = (0..20).map(|i| (task * 7 + i) % 100).collect();
            let map = get_slow(&cache, &source, ids.clone()).await;
            for id in ids {
                assert_eq!(map[&id], id * 10, "task {task}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loads = source.loads.lock().unwrap();
    assert!(
        loads.values().all(|&n| n == 1),
        "an element loaded twice: {loads:?}"
    );
    assert!(!loads.is_empty());
}

#[cache_many(key = "sync:<ids>", ttl = 300, tier = "l1")]
fn squares(ids: &BTreeSet<u32>) -> BTreeMap<u32, u64> {
    ids.iter()
        .map(|id| (*id, u64::from(*id) * u64::from(*id)))
        .collect()
}

#[cache_many(key = "set:<ids>", ttl = 300, tier = "l1")]
fn lengths(ids: HashSet<String>) -> HashMap<String, usize> {
    ids.into_iter().map(|id| (id.clone(), id.len())).collect()
}

#[test]
fn sync_functions_and_other_collections() {
    let map = squares(&BTreeSet::from([2, 3]));
    assert_eq!(map, BTreeMap::from([(2, 4), (3, 9)]));
    assert_eq!(squares(&BTreeSet::from([3, 4]))[&4], 16);
    let lens = lengths(HashSet::from(["ab".to_owned(), "abc".to_owned()]));
    assert_eq!(lens["abc"], 3);
    squares_invalidate(&BTreeSet::from([2])).unwrap();
}

/// A source whose batches fail when they hold element 1.
#[derive(Default)]
struct Flaky {
    batches: Mutex<Vec<Vec<u64>>>,
}

#[cache_many(key = "g4:<ids>", ttl = 300, lock, skip(source), cache = cache)]
async fn flaky(cache: &Cache, source: &Flaky, ids: &[u64]) -> Result<HashMap<u64, u64>, DbError> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    source.batches.lock().unwrap().push(sorted);
    tokio::time::sleep(Duration::from_millis(60)).await;
    match ids.contains(&1) {
        true => Err(DbError),
        false => Ok(ids.iter().map(|id| (*id, id * 2)).collect()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g4_a_failed_batch_leaves_its_waiters_to_load_their_elements() {
    let cache = Cache::local();
    let source = Arc::new(Flaky::default());
    let first = {
        let (cache, source) = (cache.clone(), Arc::clone(&source));
        tokio::spawn(async move { flaky(&cache, &source, &[1, 2]).await })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    let second = flaky(&cache, &source, &[2, 3]).await.expect("2 and 3 load");
    assert!(first.await.unwrap().is_err());
    assert_eq!(second, HashMap::from([(2, 4), (3, 6)]));
    assert_eq!(
        *source.batches.lock().unwrap(),
        vec![vec![1, 2], vec![3], vec![2]],
        "2 waited for the first batch, then was loaded by the second"
    );
}

#[cache_many(key = "member:<org>:<ids>", ttl = 300, tags = ["org:<org>", "member:<ids>"], tier = "l1", cache = cache)]
fn members(cache: &Cache, org: u32, ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|id| (*id, format!("{org}/{id}"))).collect()
}

#[test]
fn tags_render_per_element_and_invalidate_what_they_name() {
    let cache = Cache::local();
    assert_eq!(members(&cache, 1, &[1, 2])[&2], "1/2");
    members(&cache, 2, &[1]);
    assert_eq!(members_tag_org(&cache, 1), "org:1");
    assert_eq!(members_tag_member(&cache, 2), "member:2");
    assert_eq!(cache.stats().total().body_runs, 2);
    members_invalidate_member(&cache, 2).unwrap();
    members(&cache, 1, &[1, 2]);
    assert_eq!(
        cache.stats().total().body_runs,
        3,
        "member 2 of org 1 reloaded"
    );
    members_invalidate_org(&cache, 1).unwrap();
    members(&cache, 1, &[1, 2]);
    members(&cache, 2, &[1]);
    assert_eq!(
        cache.stats().total().body_runs,
        4,
        "org 1 reloaded, org 2 still cached"
    );
}

/// A repository whose methods use its own cache.
struct Repo {
    cache: Cache,
    tenant: String,
    loads: AtomicUsize,
}

impl Repo {
    #[cache_many(key = "<self.tenant>:doc:<ids>", ttl = 300, cache = self.cache)]
    async fn docs(&self, ids: Vec<u64>) -> HashMap<u64, String> {
        self.loads.fetch_add(ids.len(), SeqCst);
        ids.into_iter()
            .map(|id| (id, format!("{} doc {id}", self.tenant)))
            .collect()
    }
}

#[tokio::test]
async fn methods_key_by_self_and_use_their_cache() {
    let repo = Repo {
        cache: Cache::local(),
        tenant: "acme".to_owned(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(repo.docs(vec![1, 2]).await[&1], "acme doc 1");
    repo.docs(vec![2, 3]).await;
    assert_eq!(repo.loads.load(SeqCst), 3);
    assert_eq!(repo.docs_key(2), "acme:doc:2");
    repo.docs_invalidate(vec![1]).await.unwrap();
    repo.docs(vec![1, 2, 3]).await;
    assert_eq!(repo.loads.load(SeqCst), 4);
    repo.docs_put(HashMap::from([(9, "nine".to_owned())]))
        .await
        .unwrap();
    assert_eq!(repo.docs(vec![9]).await[&9], "nine");
}

#[cache_many(ttl = 300, tier = "l1", skip(factor))]
fn scaled(factor: u64, ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, id * factor)).collect()
}

#[test]
fn the_default_key_names_each_element() {
    assert_eq!(scaled(3, &[1, 2])[&2], 6);
    assert_eq!(scaled_key(2), "scaled:2");
    // `factor` is skipped: the stored values stand.
    assert_eq!(scaled(5, &[2])[&2], 6);
}

/// Another name of the element type keys the map as well.
type Id = u64;

#[cache_many(key = "aliased:<ids>", ttl = 300, tier = "l1")]
fn aliased(ids: &[Id]) -> HashMap<u64, Id> {
    ids.iter().map(|id| (*id, id + 1)).collect()
}

#[test]
fn an_alias_of_the_element_type_keys_the_map() {
    assert_eq!(aliased(&[1, 2])[&2], 3);
}
