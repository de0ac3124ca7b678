//! Readers for the IDX format of MNIST and Fashion-MNIST.
//!
//! An IDX file is a big-endian header (magic, then one `u32` per dimension) followed by raw
//! `u8` values. Both datasets use the same four file names, optionally gzip-compressed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::dataset::{Dataset, Splits};
use crate::data::source::{Source, find_first};
use crate::error::{NasError, Result};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Both MNIST variants have ten classes.
const IDX_CLASSES: usize = 10;

/// Refuse to pre-allocate more than this for a gzip file whose header cannot be checked against
/// the file size: a corrupt header must give an error, not an out-of-memory abort.
const MAX_GZIP_PREALLOC: usize = 1 << 30;

/// Reads an IDX image file and returns `(pixels, count, rows, cols)`, pixels row-major per image.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize)> {
    let mut src = Source::open(path)?;
    let dims = read_header(&mut src, IDX_IMAGES_MAGIC, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let pixels = read_payload(&mut src, &[count, rows, cols], 16)?;
    Ok((pixels, count, rows, cols))
}

/// Reads an IDX label file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let mut src = Source::open(path)?;
    let dims = read_header(&mut src, IDX_LABELS_MAGIC, 1)?;
    read_payload(&mut src, &dims, 8)
}

/// Loads an MNIST-style dataset from `dir`; `name` (`mnist`, `fashion-mnist`) names the splits.
///
/// File names tried, plain before gzip: `train-images-idx3-ubyte` and the dotted variant
/// `train-images.idx3-ubyte`, likewise for labels and for the `t10k` test files.
pub fn load_idx(dir: &Path, name: &str) -> Result<Splits> {
    let start = Instant::now();
    let (train, test) = std::thread::scope(|s| {
        // The train images dominate; reading the test split alongside hides its cost.
        let test = s.spawn(|| load_split(dir, name, "t10k", "test"));
        let train = load_split(dir, name, "train", "train");
        let test = test.join().unwrap_or_else(|_| {
            Err(NasError::format(
                dir,
                "reader thread for the test split panicked",
            ))
        });
        (train, test)
    });
    let (train, test) = (train?, test?);
    if (train.height, train.width) != (test.height, test.width) {
        return Err(NasError::format(
            dir,
            format!(
                "train images are {}x{} but test images are {}x{}",
                train.height, train.width, test.height, test.width
            ),
        ));
    }
    tracing::info!(
        dataset = name,
        dir = %dir.display(),
        train = train.len(),
        test = test.len(),
        ms = start.elapsed().as_millis() as u64,
        "loaded IDX dataset"
    );
    Ok(Splits { train, test })
}

/// Candidate paths for one IDX file, plain names before gzip ones.
pub(crate) fn idx_candidates(dir: &Path, prefix: &str, kind: &str) -> Vec<PathBuf> {
    let (dashed, dotted) = match kind {
        "images" => ("images-idx3-ubyte", "images.idx3-ubyte"),
        _ => ("labels-idx1-ubyte", "labels.idx1-ubyte"),
    };
    let stems = [format!("{prefix}-{dashed}"), format!("{prefix}-{dotted}")];
    let plain = stems.iter().map(|s| dir.join(s));
    let gzip = stems.iter().map(|s| dir.join(format!("{s}.gz")));
    plain.chain(gzip).collect()
}

fn load_split(dir: &Path, name: &str, prefix: &str, split: &str) -> Result<Dataset> {
    let image_path = find_first(name, &idx_candidates(dir, prefix, "images"))?;
    let label_path = find_first(name, &idx_candidates(dir, prefix, "labels"))?;
    let (images, count, rows, cols) = read_idx_images(&image_path)?;
    let labels = read_idx_labels(&label_path)?;
    if labels.len() != count {
        return Err(NasError::format(
            &label_path,
            format!(
                "{} labels but {} holds {count} images",
                labels.len(),
                image_path.display()
            ),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= IDX_CLASSES) {
        return Err(NasError::format(
            &label_path,
            format!(
                "label {} of item {i} is out of range: expected 0..={}",
                labels[i],
                IDX_CLASSES - 1
            ),
        ));
    }
    tracing::info!(
        images = %image_path.display(),
        labels = %label_path.display(),
        count,
        "read IDX split"
    );
    Ok(Dataset {
        name: format!("{name}/{split}"),
        images,
        labels,
        channels: 1,
        height: rows,
        width: cols,
        num_classes: IDX_CLASSES,
        pixel_max: 255.0,
    })
}

/// Checks the magic number and returns the `rank` dimension sizes.
fn read_header(src: &mut Source, magic: u32, rank: usize) -> Result<Vec<usize>> {
    let mut word = [0u8; 4];
    src.read_exact_or(&mut word, "IDX magic number")?;
    let found = u32::from_be_bytes(word);
    if found != magic {
        return Err(NasError::format(
            src.path(),
            format!("wrong IDX magic number: expected 0x{magic:08x}, found 0x{found:08x}"),
        ));
    }
    (0..rank)
        .map(|_| {
            src.read_exact_or(&mut word, "IDX header")?;
            Ok(u32::from_be_bytes(word) as usize)
        })
        .collect()
}

/// Reads exactly the payload the header announces, in one allocation, and rejects extra bytes.
fn read_payload(src: &mut Source, dims: &[usize], header_len: u64) -> Result<Vec<u8>> {
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NasError::format(src.path(), format!("header sizes {dims:?} overflow")))?;
    let size_hint = if let Some(file_len) = src.plain_len() {
        // Check before allocating so a bad header cannot request gigabytes.
        let expected = header_len + total as u64;
        if file_len != expected {
            return Err(NasError::format(
                src.path(),
                format!(
                    "header {dims:?} implies {expected} bytes, file has {file_len} ({})",
                    if file_len < expected {
                        "truncated"
                    } else {
                        "trailing data"
                    }
                ),
            ));
        }
        total
    } else {
        total.min(MAX_GZIP_PREALLOC)
    };
    let mut data = Vec::with_capacity(size_hint);
    // Grow in steps so a gzip file lying about its size costs memory only as data arrives;
    // within the reserved capacity this never reallocates.
    while data.len() < total {
        let filled = data.len();
        let want = (total - filled).min(1 << 24);
        data.resize(filled + want, 0);
        let got = src.read_full(&mut data[filled..])?;
        if got < want {
            return Err(NasError::format(
                src.path(),
                format!(
                    "truncated payload: header {dims:?} announces {total} bytes, found {}",
                    filled + got
                ),
            ));
        }
    }
    if !src.at_end()? {
        return Err(NasError::format(
            src.path(),
            format!("trailing data after the {total}-byte payload announced by header {dims:?}"),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::test_files::{fresh_dir, gzip};

    fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// Writes a 3-train / 2-test set of 2x2 images; `labels_train` lets tests break it.
    fn write_set(dir: &Path, labels_train: &[u8], gz: bool) {
        let files = [
            (
                "train-images-idx3-ubyte",
                idx(IDX_IMAGES_MAGIC, &[3, 2, 2], &[1; 12]),
            ),
            (
                "train-labels-idx1-ubyte",
                idx(IDX_LABELS_MAGIC, &[labels_train.len() as u32], labels_train),
            ),
            (
                "t10k-images-idx3-ubyte",
                idx(IDX_IMAGES_MAGIC, &[2, 2, 2], &[2; 8]),
            ),
            (
                "t10k-labels-idx1-ubyte",
                idx(IDX_LABELS_MAGIC, &[2], &[9, 0]),
            ),
        ];
        for (name, bytes) in files {
            let (name, bytes) = if gz {
                (format!("{name}.gz"), gzip(&bytes))
            } else {
                (name.to_string(), bytes)
            };
            std::fs::write(dir.join(name), bytes).expect("write");
        }
    }

    #[test]
    fn reads_plain_and_gzip() {
        for gz in [false, true] {
            let dir = fresh_dir("idx-ok");
            write_set(&dir, &[3, 1, 4], gz);
            let s = load_idx(&dir, "mnist").expect("valid set");
            assert_eq!(s.train.name, "mnist/train");
            assert_eq!((s.train.len(), s.test.len()), (3, 2));
            assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 2, 2));
            assert_eq!(s.train.labels, vec![3, 1, 4]);
            assert_eq!(s.test.image(1), &[2, 2, 2, 2]);
        }
    }

    #[test]
    fn wrong_magic_says_expected_and_found() {
        let dir = fresh_dir("idx-magic");
        let path = dir.join("labels-as-images");
        std::fs::write(&path, idx(IDX_LABELS_MAGIC, &[1], &[0])).expect("write");
        let msg = read_idx_images(&path).unwrap_err().to_string();
        assert!(
            msg.contains("expected 0x00000803, found 0x00000801"),
            "{msg}"
        );
        assert!(msg.contains("labels-as-images"), "{msg}");
    }

    #[test]
    fn truncated_and_oversized_payloads_fail() {
        let dir = fresh_dir("idx-trunc");
        let short = idx(IDX_IMAGES_MAGIC, &[2, 28, 28], &[0; 1000]);
        let plain = dir.join("short");
        std::fs::write(&plain, &short).expect("write");
        let msg = read_idx_images(&plain).unwrap_err().to_string();
        assert!(
            msg.contains("1584 bytes") && msg.contains("1016") && msg.contains("truncated"),
            "{msg}"
        );
        let packed = dir.join("short.gz");
        std::fs::write(&packed, gzip(&short)).expect("write");
        let msg = read_idx_images(&packed).unwrap_err().to_string();
        assert!(msg.contains("announces 1568 bytes, found 1000"), "{msg}");
        let long = dir.join("long.gz");
        std::fs::write(&long, gzip(&idx(IDX_LABELS_MAGIC, &[2], &[1, 2, 3]))).expect("write");
        let msg = read_idx_labels(&long).unwrap_err().to_string();
        assert!(msg.contains("trailing data"), "{msg}");
        let header = dir.join("header");
        std::fs::write(&header, IDX_IMAGES_MAGIC.to_be_bytes()).expect("write");
        let msg = read_idx_images(&header).unwrap_err().to_string();
        assert!(
            msg.contains("IDX header") && msg.contains("found 0"),
            "{msg}"
        );
    }

    #[test]
    fn count_mismatch_and_bad_label_fail() {
        let dir = fresh_dir("idx-count");
        write_set(&dir, &[1, 2], false);
        let msg = load_idx(&dir, "mnist").unwrap_err().to_string();
        assert!(
            msg.contains("2 labels") && msg.contains("3 images"),
            "{msg}"
        );
        let dir = fresh_dir("idx-label");
        write_set(&dir, &[1, 10, 2], true);
        let msg = load_idx(&dir, "mnist").unwrap_err().to_string();
        assert!(
            msg.contains("label 10 of item 1") && msg.contains("0..=9"),
            "{msg}"
        );
    }

    #[test]
    fn dotted_names_and_missing_files() {
        let dir = fresh_dir("idx-names");
        write_set(&dir, &[0, 0, 0], false);
        let dashed = dir.join("t10k-images-idx3-ubyte");
        std::fs::rename(&dashed, dir.join("t10k-images.idx3-ubyte")).expect("rename");
        assert_eq!(
            load_idx(&dir, "fashion-mnist")
                .expect("dotted name")
                .test
                .len(),
            2
        );
        std::fs::remove_file(dir.join("t10k-images.idx3-ubyte")).expect("remove");
        let err = load_idx(&dir, "fashion-mnist").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NasError::MissingDataset { .. }), "{msg}");
        assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
    }
}
