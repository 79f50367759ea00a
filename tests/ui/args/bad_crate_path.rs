use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, crate = "not a path")]
fn elsewhere(id: u32) -> u32 {
    id
}

fn main() {}
