//! Problems in the arguments, the template and the signature are all
//! reported at once, and the function is still emitted: calling it causes no
//! further errors.

use cachette::cache;

#[cache(key = "a:<idd>", ttl = 0, tier = "l3", skip(nothing))]
fn many(id: u32, other: u32) -> u32 {
    id + other
}

fn main() {
    let _: u32 = many(1, 2);
}
