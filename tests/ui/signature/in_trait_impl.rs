//! `#[cache]` on a method of a trait `impl`: one error, at the attribute,
//! saying where it goes instead.

use cachette::cache;

trait Store {
    fn get(&self, id: u32) -> u32;
}

struct Db;

impl Store for Db {
    #[cache(key = "a:<id>", ttl = 60)]
    fn get(&self, id: u32) -> u32 {
        id
    }
}

fn main() {
    let _ = Db.get(1);
}
