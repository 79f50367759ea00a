use cachette::cache;

#[cache(key = "a:<id>", ttl = 0, negative_ttl = -5, l1_ttl = "0s")]
fn zero(id: u32) -> Option<u32> {
    Some(id)
}

fn main() {}
