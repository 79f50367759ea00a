//! A caller module that shadows `Result`, `Option`, their variants and
//! other prelude and crate names: generated code uses absolute paths only.

#![allow(dead_code, non_camel_case_types)]

mod app {
    // `std` and `cachette` are shadowed below, so this module names them
    // from the root.
    use ::std::sync::atomic::{AtomicUsize, Ordering};

    use ::cachette::cache;

    #[derive(Debug, Clone, PartialEq)]
    pub struct MyErr;

    pub type Result<T> = ::std::result::Result<T, MyErr>;

    pub static RUNS: AtomicUsize = AtomicUsize::new(0);

    // Shadows of prelude items and of names generated code could use.
    pub struct Some;
    pub struct None;
    pub struct Ok;
    pub struct Err;
    pub struct Box;
    pub struct String;
    pub struct Vec;
    pub struct Clone;
    pub struct Send;
    pub struct Sync;
    pub struct Fn;
    pub struct FnOnce;
    pub struct Future;
    pub struct Duration;
    pub struct Cache;
    pub struct KeyWriter;
    mod core {}
    mod std {}
    mod cachette {}
    mod __private {}

    #[cache(key = "value:<id>", ttl = 60)]
    pub fn value(id: u32) -> Result<u32> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if id == 0 {
            return Result::Err(MyErr);
        }
        Result::Ok(id)
    }

    pub type Option<T> = ::std::option::Option<T>;

    #[cache(key = "maybe:<id>", ttl = 60, negative_ttl = 30)]
    pub async fn maybe(id: u32) -> Result<Option<u32>> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Result::Ok((id > 0).then_some(id))
    }
}

use std::sync::atomic::Ordering;

#[tokio::main]
async fn main() {
    assert_eq!(app::value(1), Ok(1));
    assert_eq!(app::value(1), Ok(1));
    assert_eq!(
        app::RUNS.load(Ordering::SeqCst),
        1,
        "the second call is a hit"
    );
    assert_eq!(app::value(0), Err(app::MyErr));
    assert_eq!(app::value(0), Err(app::MyErr));
    assert_eq!(app::RUNS.load(Ordering::SeqCst), 3, "errors are not cached");
    app::value_put(2, 20).unwrap();
    assert_eq!(app::value(2), Ok(20));
    assert_eq!(app::value_key(2), "value:2");

    assert_eq!(app::maybe(0).await, Ok(None));
    assert_eq!(app::maybe(0).await, Ok(None));
    assert_eq!(
        app::RUNS.load(Ordering::SeqCst),
        4,
        "`Ok(None)` is cached with `negative_ttl`"
    );
    app::maybe_put(5, Some(50)).await.unwrap();
    assert_eq!(app::maybe(5).await, Ok(Some(50)));
    app::maybe_invalidate(5).await.unwrap();
    assert_eq!(app::maybe_refresh(5).await, Ok(Some(5)));
    assert_eq!(app::maybe_uncached(5).await, Ok(Some(5)));
}
