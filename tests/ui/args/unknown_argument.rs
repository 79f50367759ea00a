use cachette::cache;

#[cache(key = "a:<id>", ttll = 60)]
fn near_miss(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, colour = "blue", serde::with = 1)]
fn far_miss(id: u32) -> u32 {
    id
}

fn main() {}
