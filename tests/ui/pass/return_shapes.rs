//! Each return shape: `T` always cached; `Option<T>` caches `None` only with
//! `negative_ttl`; `Result<T, E>` never caches `Err`; `Result<Option<T>, E>`
//! caches `Ok(None)` only with `negative_ttl`.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn run() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[cache(key = "plain:<n>", ttl = 60)]
fn plain(n: i32) -> (i32, bool) {
    run();
    (n, n > 0)
}

#[cache(key = "opt:<n>", ttl = 60)]
fn opt(n: i32) -> Option<i32> {
    run();
    (n > 0).then_some(n)
}

#[cache(key = "opt-neg:<n>", ttl = 60, negative_ttl = "30s")]
fn opt_negative(n: i32) -> Option<i32> {
    run();
    (n > 0).then_some(n)
}

#[cache(key = "res:<n>", ttl = 60)]
fn res(n: i32) -> Result<i32, String> {
    run();
    if n > 0 {
        Ok(n)
    } else {
        Err("negative".to_owned())
    }
}

#[cache(key = "res-opt:<n>", ttl = 60)]
fn res_opt(n: i32) -> Result<Option<i32>, String> {
    run();
    match n {
        0 => Ok(None),
        n if n > 0 => Ok(Some(n)),
        _ => Err("negative".to_owned()),
    }
}

#[cache(key = "res-opt-neg:<n>", ttl = 60, negative_ttl = 30)]
fn res_opt_negative(n: i32) -> Result<Option<i32>, String> {
    run();
    Ok((n > 0).then_some(n))
}

/// Calls `f` twice and returns how many times the body ran.
fn body_runs<R>(f: impl Fn() -> R) -> usize {
    let before = runs();
    f();
    f();
    runs() - before
}

fn main() {
    assert_eq!(body_runs(|| plain(1)), 1);
    assert_eq!(body_runs(|| opt(1)), 1);
    assert_eq!(
        body_runs(|| opt(0)),
        2,
        "`None` is not cached without `negative_ttl`"
    );
    assert_eq!(
        body_runs(|| opt_negative(0)),
        1,
        "`None` is cached with `negative_ttl`"
    );
    assert_eq!(body_runs(|| res(1)), 1);
    assert_eq!(body_runs(|| res(-1)), 2, "`Err` is never cached");
    assert_eq!(body_runs(|| res_opt(1)), 1);
    assert_eq!(
        body_runs(|| res_opt(0)),
        2,
        "`Ok(None)` is not cached without `negative_ttl`"
    );
    assert_eq!(body_runs(|| res_opt(-1)), 2, "`Err` is never cached");
    assert_eq!(
        body_runs(|| res_opt_negative(0)),
        1,
        "`Ok(None)` is cached with `negative_ttl`"
    );

    // `_put` takes the success type.
    plain_put(7, (70, false)).unwrap();
    assert_eq!(plain(7), (70, false));
    opt_put(7, Some(70)).unwrap();
    assert_eq!(opt(7), Some(70));
    res_put(7, 70).unwrap();
    assert_eq!(res(7), Ok(70));
    res_opt_put(7, Some(70)).unwrap();
    assert_eq!(res_opt(7), Ok(Some(70)));
}
