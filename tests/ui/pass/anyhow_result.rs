//! `anyhow::Result<T>` counts as a `Result`, and `?` in the body infers.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "port:<text>", ttl = 60)]
async fn port(text: &str) -> anyhow::Result<u16> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let port: u16 = text.parse().context("not a port")?;
    anyhow::ensure!(port != 0, "port 0");
    Ok(port)
}

#[cache(key = "config:<name>", ttl = 60, negative_ttl = 10)]
fn config(name: &str) -> anyhow::Result<Option<String>> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let value = std::env::var(name).ok();
    Ok(value)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    assert_eq!(port("8080").await?, 8080);
    assert_eq!(port("8080").await?, 8080);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the second call is a hit");
    assert!(port("x").await.is_err());
    assert!(port("x").await.is_err());
    assert_eq!(RUNS.load(Ordering::SeqCst), 3, "errors are not cached");
    port_put("1", 2).await?;
    assert_eq!(port("1").await?, 2);

    assert_eq!(config("CACHETTE_SURELY_UNSET")?, None);
    assert_eq!(config("CACHETTE_SURELY_UNSET")?, None);
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        4,
        "`Ok(None)` is cached with `negative_ttl`"
    );
    config_put("A", Some("a".to_owned()))?;
    assert_eq!(config("A")?.as_deref(), Some("a"));
    Ok(())
}
