use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, jitter = 1.0)]
fn one(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, jitter = -0.1)]
fn negative(id: u32) -> u32 {
    id
}

#[cache(key = "c:<id>", ttl = 60, jitter = "10%")]
fn percent(id: u32) -> u32 {
    id
}

fn main() {}
