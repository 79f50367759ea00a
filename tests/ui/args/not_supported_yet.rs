use cachette::cache;

#[cache(
    key = "a:<id>",
    ttl = 60,
    stale = 60,
    stale_if_error = 600,
    early = 1.0
)]
fn later(id: u32) -> u32 {
    id
}

fn main() {}
