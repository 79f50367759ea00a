use cachette::cache;

#[cache(key = "a:<id>")]
fn forever(id: u32) -> u32 {
    id
}

fn main() {}
