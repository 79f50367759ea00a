use cachette::cache;

#[cache(key = "name:<name>", ttl = 60, stale = 60, refresh = "background")]
async fn greeting(name: &str) -> String {
    format!("hello {name}")
}

struct Repo;

impl Repo {
    #[cache(key = "id:<id>", ttl = 60, stale = 60, refresh = "background", skip(self))]
    fn label(&self, id: u64) -> String {
        id.to_string()
    }
}

#[cache(key = "item:<id>", ttl = 60, early = 1.0, refresh = "background")]
fn generic<T: cachette::KeyPart>(id: T) -> u32 {
    let _ = id;
    1
}

fn main() {}
