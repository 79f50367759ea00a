use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, stale_if_error = 60, refresh = "caller")]
fn value(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
