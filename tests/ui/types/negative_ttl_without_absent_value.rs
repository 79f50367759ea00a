use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, negative_ttl = 30)]
fn plain(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, negative_ttl = 30)]
fn result(id: u32) -> Result<Vec<u32>, String> {
    Ok(vec![id])
}

fn main() {}
