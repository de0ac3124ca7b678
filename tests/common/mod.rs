//! What several test files share: finding the real datasets, a small inverted-residual space.

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

/// A small inverted-residual space for fast supernet steps: 1-channel 8x8 images, a stage of
/// two 8-channel blocks at stride 2 and one of two at stride 1. Block 0 (4 to 8 channels at
/// stride 2) has no residual and is fixed; the other three are searchable.
pub fn tiny_mobile_space() -> nasrs::space::mobile::MobileSpace {
    use nasrs::space::mobile::{MobileSpace, Stage};
    MobileSpace {
        in_channels: 1,
        image_size: 8,
        stem_channels: 4,
        stages: vec![
            Stage {
                channels: 8,
                blocks: 2,
                stride: 2,
            },
            Stage {
                channels: 8,
                blocks: 2,
                stride: 1,
            },
        ],
        head_channels: 16,
        classes: 3,
        search_transitions: false,
    }
}
