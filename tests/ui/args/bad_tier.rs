use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, tier = "L3")]
fn tier(id: u32) -> u32 {
    id
}

fn main() {}
