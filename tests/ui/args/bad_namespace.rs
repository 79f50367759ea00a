use cachette::cache;

#[cache(key = "a:<id>", ttl = 60, namespace = "my users")]
fn spaced(id: u32) -> u32 {
    id
}

#[cache(key = "b:<id>", ttl = 60, namespace = "")]
fn empty(id: u32) -> u32 {
    id
}

fn main() {}
