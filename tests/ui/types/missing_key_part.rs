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
}

/// A field of a type that does implement it is fine.
#[cache(key = "users:<filter.active>", ttl = 60)]
fn users_field(filter: Filter) -> u32 {
    u32::from(filter.active)
}

fn main() {}
