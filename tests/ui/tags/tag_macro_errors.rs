fn main() {
    let org = 7;
    let _ = cachette::tag!("org:<org>", team = 3);
    let _ = cachette::tag!("org:<org", org = 1);
    let _ = cachette::tag!("org:<missing>");
    let _ = cachette::tag!("org:<o>", o = 1, o = 2);
    let _ = org;
}
