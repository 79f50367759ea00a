//! Compile-time behaviour of `#[cache]`: every check reports its error at
//! the right place (`tests/ui/<category>/*.rs` with their `.stderr`), and
//! every supported function shape compiles and caches (`tests/ui/pass`).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test ui`
//! and read every changed `.stderr` before keeping it.

#[test]
fn every_check_reports_its_error_and_every_supported_shape_caches() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/args/*.rs");
    cases.compile_fail("tests/ui/template/*.rs");
    cases.compile_fail("tests/ui/signature/*.rs");
    cases.compile_fail("tests/ui/types/*.rs");
    cases.compile_fail("tests/ui/lints/*.rs");
    cases.compile_fail("tests/ui/freshness/*.rs");
    cases.compile_fail("tests/ui/derive/*.rs");
    cases.compile_fail("tests/ui/tags/*.rs");
    cases.compile_fail("tests/ui/many/*.rs");
}
