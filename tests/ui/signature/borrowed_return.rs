//! A borrowed return type (`&str`, `&T`, `Cow<'a, T>`) cannot be stored:
//! the error points at the borrow and says to return an owned value. The
//! companions still exist, so calls of them report nothing more.

use cachette::cache;

#[cache(key = "name:<id>", ttl = 60, tier = "l1")]
fn name(id: u64) -> &'static str {
    let _ = id;
    "x"
}

#[cache(key = "label:<id>", ttl = 60, skip(text))]
fn label<'a>(id: u64, text: &'a str) -> std::borrow::Cow<'a, str> {
    let _ = id;
    text.into()
}

#[cache(key = "first:<id>", ttl = 60, tier = "l1")]
fn first(id: u64) -> Option<&'static u64> {
    let _ = id;
    None
}

fn main() {
    let _ = name_key(1);
    name_invalidate(1).unwrap();
}
