//! Datasets: readers for the real files, normalisation, augmentation and mini-batches.
//!
//! Everything here is plain Rust on bytes and `f32` vectors; turning a [`Batch`] into tensors
//! is the caller's business, so this module does not depend on the deep-learning backend.
//!
//! - [`load`] picks the reader for a [`DatasetKind`]: [`load_cifar10`], [`load_idx`] (MNIST,
//!   Fashion-MNIST) or the digits set embedded in the binary.
//! - [`Normalization`] and [`Augment`] say how raw pixels become network input.
//! - [`BatchLoader`] shuffles, augments and batches with its own seeded generator.
//! - [`split_indices`] and [`subset_indices`] choose which images a loader sees.

mod augment;
mod cifar10;
mod dataset;
mod digits;
mod idx;
mod kind;
mod loader;
mod normalize;
mod resize;
mod source;
mod split;

use std::path::{Path, PathBuf};

pub use augment::Augment;
pub use cifar10::{CIFAR_IMAGE_BYTES, CIFAR_RECORD_BYTES, CIFAR_RECORDS_PER_FILE, load_cifar10};
pub use dataset::{Dataset, Splits};
pub use digits::{load_digits, load_digits_embedded, parse_digits_csv, split_digits};
pub use idx::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_idx, read_idx_images, read_idx_labels};
pub use kind::DatasetKind;
pub use loader::{Batch, BatchLoader, LoaderState};
pub use normalize::Normalization;
pub use resize::resize_bilinear;
pub use split::{split_indices, subset_indices};

use crate::error::{NasError, Result};

/// Where the Debian package `dataset-fashion-mnist` installs its files.
pub const FASHION_MNIST_DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Loads the train and test splits of `kind`.
///
/// `dir` may be the dataset's own folder or a parent holding it under its canonical name
/// (`cifar10/`, `mnist/`, `fashion-mnist/`, `digits/`), so one `--data-dir` can serve every
/// dataset. Without `dir`, digits come from the copy embedded in the binary and Fashion-MNIST
/// from [`FASHION_MNIST_DEFAULT_DIR`]; MNIST and CIFAR-10 need a directory.
pub fn load(kind: DatasetKind, dir: Option<&Path>) -> Result<Splits> {
    let dir = match (kind, dir) {
        (_, Some(dir)) => resolve_dir(kind, dir),
        (DatasetKind::Digits, None) => return load_digits_embedded(),
        (DatasetKind::FashionMnist, None) => {
            let default = Path::new(FASHION_MNIST_DEFAULT_DIR);
            if !default.is_dir() {
                return Err(NasError::MissingDataset {
                    dataset: kind.to_string(),
                    message: format!(
                        "{FASHION_MNIST_DEFAULT_DIR} does not exist; install it with \
                         `apt-get install dataset-fashion-mnist` or pass --data-dir DIR with \
                         the four IDX files"
                    ),
                });
            }
            default.to_path_buf()
        }
        (DatasetKind::Mnist | DatasetKind::Cifar10, None) => {
            let files = match kind {
                DatasetKind::Cifar10 => "data_batch_1..5.bin[.gz] and test_batch.bin[.gz]",
                _ => "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...",
            };
            return Err(NasError::MissingDataset {
                dataset: kind.to_string(),
                message: format!("no default location; pass --data-dir DIR holding {files}"),
            });
        }
    };
    if !dir.is_dir() {
        return Err(NasError::MissingDataset {
            dataset: kind.to_string(),
            message: format!("directory {} does not exist", dir.display()),
        });
    }
    match kind {
        DatasetKind::Digits => load_digits(&dir),
        DatasetKind::Mnist | DatasetKind::FashionMnist => load_idx(&dir, kind.name()),
        DatasetKind::Cifar10 => load_cifar10(&dir),
    }
}

/// `dir` itself when it holds the dataset's first file, else `dir/<name>` when that does;
/// otherwise `dir`, so that the reader's error lists what was looked for there.
fn resolve_dir(kind: DatasetKind, dir: &Path) -> PathBuf {
    let marker_present = |d: &Path| match kind {
        DatasetKind::Digits => d.join("digits.csv").is_file() || d.join("digits.csv.gz").is_file(),
        DatasetKind::Mnist | DatasetKind::FashionMnist => idx::idx_candidates(d, "train", "images")
            .iter()
            .any(|p| p.is_file()),
        DatasetKind::Cifar10 => cifar10::cifar_candidates(d, "data_batch_1")
            .iter()
            .any(|p| p.is_file()),
    };
    let nested = dir.join(kind.name());
    if !marker_present(dir) && marker_present(&nested) {
        nested
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::test_files::fresh_dir;

    #[test]
    fn defaults_and_missing_dirs() {
        for kind in [DatasetKind::Mnist, DatasetKind::Cifar10] {
            let msg = load(kind, None).unwrap_err().to_string();
            assert!(
                msg.contains("--data-dir") && msg.contains(kind.name()),
                "{msg}"
            );
        }
        let gone = fresh_dir("gone").join("nothing-here");
        let err = load(DatasetKind::Cifar10, Some(&gone)).unwrap_err();
        assert!(matches!(err, NasError::MissingDataset { .. }), "{err}");
        let digits = load(DatasetKind::Digits, None).expect("embedded digits");
        assert_eq!(digits.train.len() + digits.test.len(), 1797);
    }

    #[test]
    fn parent_dir_with_dataset_subfolder_is_accepted() {
        let root = fresh_dir("nested");
        let sub = root.join("digits");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let rows: Vec<String> = (0..10).map(|i| format!("{}{i}", "1,".repeat(64))).collect();
        std::fs::write(sub.join("digits.csv"), rows.join("\n")).expect("write");
        let s = load(DatasetKind::Digits, Some(&root)).expect("nested digits");
        // One image per class: class-local position 0 never goes to test.
        assert_eq!((s.train.len(), s.test.len()), (10, 0));
    }
}
