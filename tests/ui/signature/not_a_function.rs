use cachette::cache;

#[cache(key = "a", ttl = 60)]
struct NotAFunction;

fn main() {}
