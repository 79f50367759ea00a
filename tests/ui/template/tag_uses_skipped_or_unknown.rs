use cachette::cache;

#[cache(key = "user:<id>", ttl = 60, tags = ["org:<org>", "region:<region>"], skip(org))]
fn tagged(org: u32, id: u32) -> u32 {
    org + id
}

fn main() {}
