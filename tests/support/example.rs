//! The content pipeline example's binary, for tests that run it in child processes.

use std::path::{Path, PathBuf};

/// The example binary: `cargo test` builds the examples next to the test binaries.
pub(crate) fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join("content_pipeline");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}
