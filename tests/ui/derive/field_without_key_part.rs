use cachette::KeyPart;

struct Opaque;

#[derive(KeyPart)]
struct Holder {
    id: u64,
    opaque: Opaque,
}

fn main() {}
