//! A placeholder whose type does not implement `KeyPart` is one mistake and
//! one error, at the placeholder, however many companions render the key.

use cachette::cache;

#[derive(Clone)]
struct Filter {
    active: bool,
}

#[cache(key = "users:<filter>", ttl = 60)]
fn users(filter: Filter) -> u32 {
    u32::from(filter.active)
}

/// With the default key the error points at the parameter.
#[cache(ttl = 60)]
fn users_default(filter: Filter) -> u32 {
    u32::from(filter.active)
}

struct Repo;

impl Repo {
    /// The default key puts `self` in, unless it is skipped.
    #[cache(ttl = 60)]
    fn count(&self, id: u32) -> u32 {
        id
    }

    /// The receiver in the key, taken as `&mut self` by the function and as
    /// `&self` by the companions: still one error.
    #[cache(key = "bump:<self>:<id>", ttl = 60)]
    fn bump(&mut self, id: u32) -> u32 {
        id
    }

    /// And taken by value.
    #[cache(key = "into:<self>", ttl = 60)]
    fn into_count(self) -> u32 {
        0
    }
}

/// A field of a type that does implement it is fine.
#[cache(key = "users:<filter.active>", ttl = 60)]
fn users_field(filter: Filter) -> u32 {
    u32::from(filter.active)
}

fn main() {}
