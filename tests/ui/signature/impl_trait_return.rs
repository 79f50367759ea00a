use cachette::cache;

#[cache(key = "a:<id>", ttl = 60)]
fn numbers(id: u32) -> impl Iterator<Item = u32> {
    0..id
}

#[cache(key = "b:<id>", ttl = 60)]
async fn hidden(id: u32) -> impl Clone {
    id
}

#[cache(key = "c:<id>", ttl = 60)]
fn nested(id: u32) -> Vec<impl Clone> {
    vec![id]
}

fn main() {}
