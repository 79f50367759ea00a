//! The text between two placeholders must start with punctuation: values
//! escape only `%` and punctuation, so `<a>x<b>` could not tell where `a`
//! ends (`f("1x2", "3")` and `f("1", "2x3")` would share a key).

use cachette::cache;

#[cache(key = "<a>x<b>", ttl = 60, tier = "l1")]
fn letters(a: &str, b: &str) -> usize {
    a.len() + b.len()
}

#[cache(key = "<a>%<b>", ttl = 60, tier = "l1")]
fn percent(a: &str, b: &str) -> usize {
    a.len() + b.len()
}

#[cache(key = "<a>-x<b>v1", ttl = 60, tier = "l1")]
fn fine(a: &str, b: &str) -> usize {
    a.len() + b.len()
}

fn main() {
    let _ = letters("a", "b") + percent("a", "b") + fine("a", "b");
}
