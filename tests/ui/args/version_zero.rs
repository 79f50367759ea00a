use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, version = 0)]
fn zero(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, version = 5_000_000_000)]
fn huge(id: u32) -> u32 {
    id
}

fn main() {}
