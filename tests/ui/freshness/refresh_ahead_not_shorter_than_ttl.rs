use cachette::cache;

#[cache(key = "a:<id>", ttl = "1m", refresh_ahead = "1m")]
fn value(id: u32) -> u32 {
    id
}

fn main() {}
