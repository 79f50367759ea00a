use cachette::cache;

#[cache(key = "point:<x>", ttl = 60)]
fn point((x, y): (i32, i32)) -> i32 {
    x + y
}

struct Pair {
    a: u32,
    b: u32,
}

#[cache(key = "pair", ttl = 60, skip(a))]
fn pair(Pair { a, b }: Pair) -> u32 {
    a + b
}

fn main() {}
