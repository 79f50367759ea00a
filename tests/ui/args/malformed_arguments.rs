use cachette::cache;

#[cache(key = 5, ttl = 60, tags = "users", skip = db, lock = true, cache)]
fn shapes(db: u32, id: u32) -> u32 {
    db + id
}

fn main() {}
