use cachette::cache;

#[cache(key = "a:<id>", ttl = 60)]
fn nothing(id: u32) {
    let _ = id;
}

#[cache(key = "b:<id>", ttl = 60)]
async fn unit(id: u32) -> () {
    let _ = id;
}

fn main() {}
