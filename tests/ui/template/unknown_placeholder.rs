use cachette::cache;

#[cache(key = "user:<idd>", ttl = 60)]
fn typo(id: u32) -> u32 {
    id
}

#[cache(key = "user:<self.id>", ttl = 60)]
fn no_receiver(id: u32) -> u32 {
    id
}

#[cache(key = "user:<nothing>", ttl = 60)]
fn no_params() -> u32 {
    1
}

#[cache(key = "<T.name>:<id>", ttl = 60)]
fn type_field<T: Default>(id: u32) -> Vec<T> {
    let _ = id;
    Vec::new()
}

fn main() {}
