use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, ttl = "5m", lock, lock)]
fn twice(id: u32) -> u32 {
    id
}

fn main() {}
