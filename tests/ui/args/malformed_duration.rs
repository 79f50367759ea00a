use cachette::cache;

#[cache(key = "a:<id>", ttl = "5 minutes", negative_ttl = "30", l1_ttl = 1.5)]
fn words(id: u32) -> Option<u32> {
    Some(id)
}

#[cache(key = "b:<id>", ttl = 5m)]
fn unquoted(id: u32) -> u32 {
    id
}

#[cache(key = "c:<id>", ttl = SECONDS)]
fn constant(id: u32) -> u32 {
    id
}

fn main() {}
