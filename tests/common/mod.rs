//! What several test files share: finding the real datasets.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/data` beside the checkout, when it is there.
pub fn shared_data() -> Option<PathBuf> {
    require(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// `dir` if it exists. Otherwise the test skips with a printed reason, except under CI (env
/// `CI` set), where a missing folder is a failure.
pub fn require(dir: PathBuf) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing and CI is set: the data tests must run in CI",
            dir.display()
        );
    }
    eprintln!(
        "skipped: {} not found (set CI to make this a failure)",
        dir.display()
    );
    None
}
