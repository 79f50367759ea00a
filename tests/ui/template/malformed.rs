use cachette::cache;

#[cache(key = "user:<id", ttl = 60)]
fn unclosed(id: u32) -> u32 {
    id
}

#[cache(key = "user:<>:<id>", ttl = 60)]
fn empty_placeholder(id: u32) -> u32 {
    id
}

#[cache(key = "user:<id + 1>", ttl = 60)]
fn expression(id: u32) -> u32 {
    id
}

#[cache(key = "user:<user..id>", ttl = 60)]
fn empty_field(user: u32) -> u32 {
    user
}

#[cache(key = "", ttl = 60, tags = [""])]
fn empty_template() -> u32 {
    1
}

fn main() {}
