//! Generic functions: the type goes into the key as `<T>`; `where` clauses
//! are kept; companions keep only the generic parameters they need.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The value type depends on `T`, so the key names it. The default tier
/// may share values, so `T` needs serde too.
#[cache(key = "default:<T>:<id>", ttl = 60)]
fn make<T>(id: u32) -> Vec<T>
where
    T: Default + Clone + Send + Sync + 'static,
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    RUNS.fetch_add(1, Ordering::SeqCst);
    vec![T::default(); id as usize]
}

/// `S` only shapes a skipped parameter, so the companions that take key
/// args do not have it and need no turbofish.
#[cache(key = "len:<id>", ttl = 60, skip(source))]
fn len<S: AsRef<str> + Debug>(source: S, id: u32) -> usize {
    RUNS.fetch_add(1, Ordering::SeqCst);
    source.as_ref().len() + id as usize
}

/// The default key adds `<T>` for a type parameter the return type mentions.
#[cache(ttl = 60, tier = "l1")]
fn parse<T: std::str::FromStr + Clone + Send + Sync + 'static>(text: &str) -> Option<T> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    text.parse().ok()
}

/// A const parameter in the return type is part of the key.
#[cache(key = "zeros:<N>", ttl = 60, tier = "l1")]
fn zeros<const N: usize>() -> [u8; N] {
    RUNS.fetch_add(1, Ordering::SeqCst);
    [0; N]
}

/// A lifetime and a generic key arg.
#[cache(key = "show:<item>", ttl = 60)]
async fn show<'a, D>(item: &'a D) -> String
where
    D: cachette::KeyPart + Debug + Sync + ?Sized,
{
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{item:?}")
}

/// The generic parameters of an `impl` are not the function's own; `<Self>`
/// puts the implementing type, and so them, into the key.
struct Store<T>(std::marker::PhantomData<T>);

impl<T: Default + Clone + Send + Sync + 'static> Store<T> {
    #[cache(key = "<Self>:<id>", ttl = 60, tier = "l1")]
    fn get(id: u32) -> Vec<T> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        vec![T::default(); id as usize]
    }
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[tokio::main]
async fn main() {
    assert_eq!(make::<u8>(2), vec![0u8, 0]);
    assert_eq!(make::<u8>(2), vec![0u8, 0]);
    assert_eq!(runs(), 1, "the second call is a hit");
    assert_eq!(make::<String>(2), vec![String::new(), String::new()]);
    assert_eq!(runs(), 2, "another type is another entry");
    assert_eq!(make_key::<u8>(2), "default:u8:2");
    make_invalidate::<u8>(2).unwrap();
    make_put::<u8>(2, vec![9]).unwrap();
    assert_eq!(make::<u8>(2), vec![9]);
    assert_eq!(make_refresh::<u8>(1), vec![0]);
    assert_eq!(make_uncached::<u8>(1), vec![0]);

    let before = runs();
    assert_eq!(len("abc", 1), 4);
    assert_eq!(len(String::from("xyz"), 1), 4);
    assert_eq!(runs(), before + 1, "the second call is a hit");
    assert_eq!(len_key(1), "len:1");
    len_invalidate(1).unwrap();
    len_put(1, 100).unwrap();
    assert_eq!(len("", 1), 100);
    assert_eq!(len_refresh("ab", 1), 3);
    assert_eq!(len_uncached("ab", 1), 3);

    let before = runs();
    assert_eq!(parse::<u32>("7"), Some(7));
    assert_eq!(parse::<u32>("7"), Some(7));
    assert_eq!(runs(), before + 1, "the second call is a hit");
    assert_eq!(parse::<i64>("7"), Some(7));
    assert_eq!(runs(), before + 2);
    assert_eq!(parse_key::<u32>("7"), "parse:7:u32");

    let before = runs();
    assert_eq!(zeros::<3>(), [0, 0, 0]);
    assert_eq!(zeros::<3>(), [0, 0, 0]);
    assert_eq!(zeros::<2>(), [0, 0]);
    assert_eq!(runs(), before + 2);
    assert_eq!(zeros_key::<3>(), "zeros:3");

    let before = runs();
    assert_eq!(Store::<u8>::get(1), vec![0u8]);
    assert_eq!(Store::<u8>::get(1), vec![0u8]);
    assert_eq!(Store::<u16>::get(1), vec![0u16]);
    assert_eq!(runs(), before + 2, "each `Self` has its own entries");
    assert!(Store::<u8>::get_key(1).ends_with("Store<u8>:1"));

    let before = runs();
    assert_eq!(show("hi").await, "\"hi\"");
    assert_eq!(show("hi").await, "\"hi\"");
    assert_eq!(runs(), before + 1, "the second call is a hit");
    assert_eq!(show_key("hi"), "show:hi");
    show_invalidate("hi").await.unwrap();
    show_put("hi", "put".to_owned()).await.unwrap();
    assert_eq!(show("hi").await, "put");
    assert_eq!(show_refresh("hi").await, "\"hi\"");
    assert_eq!(show_uncached("hi").await, "\"hi\"");
}
