use cachette::cache;

#[cache(key = "name:<first><last>", ttl = 60, tags = ["<first><last>"])]
fn full_name(first: &str, last: &str) -> String {
    format!("{first}{last}")
}

fn main() {}
