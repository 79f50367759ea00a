//! `#[derive(KeyPart)]` on a struct with a skipped field, a tuple struct, a
//! generic struct, a unit struct and a fieldless enum, used in keys and
//! tags.

use cachette::{cache, KeyPart};

#[derive(KeyPart)]
struct Query {
    city: String,
    page: u32,
    #[key_part(skip)]
    _trace: u64,
}

#[derive(KeyPart)]
struct Point(i32, i32);

#[derive(KeyPart)]
struct Tagged<T> {
    inner: T,
}

#[derive(KeyPart)]
struct Everything;

#[derive(KeyPart)]
enum Sort {
    Name,
    Newest,
}

#[cache(key = "search:<q>:<sort>", ttl = 60, tags = ["city:<q.city>"], tier = "l1")]
fn search(q: Query, sort: Sort) -> String {
    let order = match sort {
        Sort::Name => "by name",
        Sort::Newest => "newest first",
    };
    format!("{} page {} {order}", q.city, q.page)
}

#[cache(key = "at:<p>:<t>:<all>", ttl = 60, tier = "l1")]
fn at(p: Point, t: Tagged<u8>, all: Everything) -> i64 {
    let _ = all;
    i64::from(p.0) + i64::from(p.1) + i64::from(t.inner)
}

fn main() {
    let q = || Query {
        city: "Lyon".into(),
        page: 2,
        _trace: 1,
    };
    assert_eq!(search(q(), Sort::Newest), "Lyon page 2 newest first");
    assert_eq!(search_key(q(), Sort::Name), "search:Lyon,2:Name");
    assert_eq!(at_key(Point(-1, 2), Tagged { inner: 3 }, Everything), "at:-1,2:3:");
    assert_eq!(at(Point(-1, 2), Tagged { inner: 3 }, Everything), 4);
}
