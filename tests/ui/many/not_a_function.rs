use cachette::cache_many;

#[cache_many(key = "a:<ids>", ttl = 60)]
struct NotAFunction;

fn main() {}
