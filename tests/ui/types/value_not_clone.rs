//! A value type that is not `Clone + Send + Sync + 'static` is reported once, at
//! the return type, in the words of what it lacks; nothing else fails.

use cachette::cache;

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    total: u64,
}

#[cache(key = "report:<id>", ttl = 60)]
fn report(id: u64) -> Report {
    Report { total: id }
}

#[cache(key = "areport:<id>", ttl = 60, stale = 30)]
async fn areport(id: u64) -> Result<Option<Report>, std::io::Error> {
    Ok(Some(Report { total: id }))
}

#[derive(Clone)]
struct Local(std::rc::Rc<u8>);

#[cache(key = "local:<id>", ttl = 60, tier = "l1")]
fn local(id: u64) -> Option<Local> {
    let _ = id;
    None
}

fn main() {
    let _ = report(1).total;
    report_put(2, Report { total: 2 }).unwrap();
    let _ = local(1);
}

/// Neither `Clone` nor serde: one error for each.
struct Neither;

#[cache(key = "neither:<id>", ttl = 60)]
fn neither(id: u64) -> Neither {
    let _ = id;
    Neither
}
