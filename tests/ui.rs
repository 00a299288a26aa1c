//! What users see when a workflow or a step is wrong: each file in `tests/ui/` is one
//! mistake, and its `.stderr` is the exact compiler output, reviewed.
//!
//! Regenerate with `TRYBUILD=overwrite cargo test --test ui`, then read every changed
//! `.stderr`: is the caret under the token the user must change? The output depends on the
//! rustc version; refresh it deliberately when the toolchain changes.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
