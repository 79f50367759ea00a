use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, stale_if_error = 600)]
fn plain(id: u32) -> Option<u32> {
    Some(id)
}

fn main() {}
