use cachette::KeyPart;

#[derive(KeyPart)]
enum Shape {
    Circle(f64),
    Square { side: u32 },
    Dot,
}

#[derive(KeyPart)]
union Bits {
    int: u32,
    float: f32,
}

#[derive(KeyPart)]
struct Misspelled {
    #[key_part(skipped)]
    id: u64,
}

#[derive(KeyPart)]
#[key_part(krate = "x")]
struct WrongContainer {
    id: u64,
}

fn main() {}
