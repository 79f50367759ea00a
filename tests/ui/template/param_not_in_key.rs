use cachette::cache;

struct Db;

#[cache(key = "user:<id>", ttl = 60)]
fn forgot(db: &Db, id: u32, region: &str) -> u32 {
    let _ = (db, region);
    id
}

/// A tag does not count: calls that differ in `org` would share one entry.
#[cache(key = "user:<id>", tags = ["org:<org>"], ttl = 60)]
fn tag_only(org: u32, id: u32) -> u32 {
    org + id
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cache(key = "order:<id>", ttl = 60)]
    fn order(&self, id: u32) -> String {
        format!("{}:{id}", self.tenant)
    }
}

fn main() {}
