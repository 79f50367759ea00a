use cachette::cache;

#[cache(key = "default:<id>", ttl = 60)]
fn make<T: Default + Clone + Send + Sync + 'static>(id: u32) -> Vec<T> {
    vec![T::default(); id as usize]
}

#[cache(key = "zeros", ttl = 60)]
fn zeros<const N: usize>() -> [u8; N] {
    [0; N]
}

fn main() {}
