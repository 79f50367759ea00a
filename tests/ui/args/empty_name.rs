use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, name = "")]
fn nameless(id: u32) -> u32 {
    id
}

fn main() {}
