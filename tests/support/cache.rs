//! Caches whose shared tier is a test's `redis-server`.

use std::time::Duration;

use cachette::Cache;

/// A cache on the Redis at `url`, its keys under `prefix`, with the shared
/// tier's timeout `l2_timeout` and, when given, the fill lock's
/// `lock_timeout` (the default otherwise). Panics when it cannot connect.
pub async fn redis_cache(
    url: &str,
    prefix: &str,
    l2_timeout: Duration,
    lock_timeout: Option<Duration>,
) -> Cache {
    let mut builder = Cache::builder()
        .prefix(prefix)
        .redis(url)
        .l2_timeout(l2_timeout);
    if let Some(lock_timeout) = lock_timeout {
        builder = builder.lock_timeout(lock_timeout);
    }
    builder.build().await.expect("connects to the test's Redis")
}
