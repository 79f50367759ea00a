use cachette::cache;

#[cache(key = "a:<id>", ttl = 60)]
const fn constant(id: u32) -> u32 {
    id
}

fn main() {}
