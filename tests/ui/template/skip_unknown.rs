use cachette::cache;

#[cache(key = "user:<id>", ttl = 60, skip(dbb, self, id_, dbb))]
fn skips(db: u32, id: u32) -> u32 {
    db + id
}

fn main() {}
