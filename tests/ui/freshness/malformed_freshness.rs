use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, stale = 0, early = -1.0, refresh = "later")]
fn value(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, stale = "soon", early = "1", stale_if_error = 1.5)]
fn other(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
