//! A value that may live in the shared tier (the default `tier = "both"`)
//! needs serde; `tier = "l1"` does not.

use cachette::cache;

#[derive(Clone)]
struct Report {
    total: u64,
}

#[cache(key = "report:<id>", ttl = 60)]
fn report(id: u64) -> Report {
    Report { total: id }
}

#[cache(key = "local_report:<id>", ttl = 60, tier = "l1")]
fn local_report(id: u64) -> Report {
    Report { total: id }
}

fn main() {
    let _ = report(1).total + local_report(1).total;
}
