//! A `&mut` parameter in the key could change after the key was rendered:
//! the error points at its type and says what to write instead. A skipped
//! `&mut` parameter is fine.

use cachette::cache;

#[cache(key = "count:<id>", ttl = 60, tier = "l1")]
fn count(id: &mut u64) -> u64 {
    *id += 1;
    *id
}

#[cache(key = "tagged:<id>:<version>", ttl = 60, tags = ["t:<version>"], tier = "l1")]
fn tagged(id: u64, version: &mut u64) -> u64 {
    *version += 1;
    id
}

#[cache(key = "fine:<id>", ttl = 60, tier = "l1", skip(buffer))]
fn fine(id: u64, buffer: &mut Vec<u8>) -> u64 {
    buffer.push(1);
    id
}

fn main() {
    let mut n = 1;
    let _ = count(&mut n);
    count_invalidate(&mut n).unwrap();
    let mut b = Vec::new();
    let _ = fine(1, &mut b);
}
