use cachette::cache;

#[cache(key = "user:<id>", ttl = 60, skip(id))]
fn skips(id: u32) -> u32 {
    id
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cache(key = "<self.tenant>:<id>", ttl = 60, skip(self))]
    fn order(&self, id: u32) -> String {
        format!("{}:{id}", self.tenant)
    }
}

fn main() {}
