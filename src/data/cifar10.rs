//! Reader for the CIFAR-10 binary layout.
//!
//! A batch file is 10,000 records of 1 label byte followed by 3,072 pixel bytes (red, green and
//! blue planes, each 32x32 row-major), which is already the `[C, H, W]` layout of [`Dataset`].
//! The six files are decoded in parallel straight into one pre-allocated buffer per split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::dataset::{Dataset, Splits};
use crate::data::source::{Source, find_first};
use crate::error::{NasError, Result};

/// Bytes of one image.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record: the label then the image.
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Records in every official batch file.
pub const CIFAR_RECORDS_PER_FILE: usize = 10_000;

const CIFAR_CLASSES: usize = 10;
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
];
const TEST_FILE: &str = "test_batch";
/// Subfolder of the official `cifar-10-binary.tar.gz` archive.
const OFFICIAL_SUBDIR: &str = "cifar-10-batches-bin";

/// Loads CIFAR-10 from `dir`.
///
/// Each batch is looked for as `NAME.bin` in `dir`, then in `dir/cifar-10-batches-bin/`, then as
/// `NAME.bin.gz` in the same two places: plain files win when both exist.
pub fn load_cifar10(dir: &Path) -> Result<Splits> {
    let start = Instant::now();
    let train_paths = TRAIN_FILES
        .iter()
        .map(|name| find_first("cifar10", &cifar_candidates(dir, name)))
        .collect::<Result<Vec<_>>>()?;
    let test_path = find_first("cifar10", &cifar_candidates(dir, TEST_FILE))?;

    let mut train = empty_split("cifar10/train", TRAIN_FILES.len());
    let mut test = empty_split("cifar10/test", 1);
    let image_chunk = CIFAR_RECORDS_PER_FILE * CIFAR_IMAGE_BYTES;
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        let train_slots = train
            .images
            .chunks_mut(image_chunk)
            .zip(train.labels.chunks_mut(CIFAR_RECORDS_PER_FILE));
        let test_slot = std::iter::once((&mut test.images[..], &mut test.labels[..]));
        for (path, (images, labels)) in train_paths
            .iter()
            .chain([&test_path])
            .zip(train_slots.chain(test_slot))
        {
            handles.push(s.spawn(move || read_batch(path, CIFAR_RECORDS_PER_FILE, images, labels)));
        }
        handles
            .into_iter()
            .zip(train_paths.iter().chain([&test_path]))
            .map(|(h, path)| {
                h.join()
                    .unwrap_or_else(|_| Err(NasError::format(path, "reader thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;

    tracing::info!(
        train = ?train_paths,
        test = %test_path.display(),
        ms = start.elapsed().as_millis() as u64,
        "loaded CIFAR-10: {} train, {} test images",
        train.len(),
        test.len()
    );
    Ok(Splits { train, test })
}

/// Where a batch file may be, in order of preference.
pub(crate) fn cifar_candidates(dir: &Path, name: &str) -> Vec<PathBuf> {
    let sub = dir.join(OFFICIAL_SUBDIR);
    vec![
        dir.join(format!("{name}.bin")),
        sub.join(format!("{name}.bin")),
        dir.join(format!("{name}.bin.gz")),
        sub.join(format!("{name}.bin.gz")),
    ]
}

fn empty_split(name: &str, files: usize) -> Dataset {
    let n = files * CIFAR_RECORDS_PER_FILE;
    Dataset {
        name: name.to_string(),
        images: vec![0; n * CIFAR_IMAGE_BYTES],
        labels: vec![0; n],
        channels: 3,
        height: 32,
        width: 32,
        num_classes: CIFAR_CLASSES,
        pixel_max: 255.0,
    }
}

/// Streams one batch file of exactly `records` records into `images` and `labels`.
pub(crate) fn read_batch(
    path: &Path,
    records: usize,
    images: &mut [u8],
    labels: &mut [u8],
) -> Result<()> {
    let mut src = Source::open(path)?;
    let expected_bytes = (records * CIFAR_RECORD_BYTES) as u64;
    if let Some(len) = src.plain_len() {
        // A plain file can be judged before decoding anything.
        check_size(path, len, records)?;
    }
    for (i, (image, label)) in images
        .chunks_exact_mut(CIFAR_IMAGE_BYTES)
        .zip(labels.iter_mut())
        .enumerate()
    {
        let got = src.read_full(std::slice::from_mut(label))?;
        let got = if got == 1 {
            1 + src.read_full(image)?
        } else {
            got
        };
        if got < CIFAR_RECORD_BYTES {
            let found = (i * CIFAR_RECORD_BYTES + got) as u64;
            return Err(size_error(path, found, records, "after decompression"));
        }
        if *label as usize >= CIFAR_CLASSES {
            return Err(NasError::format(
                path,
                format!(
                    "record {i}: label {} out of range, expected 0..={}",
                    label,
                    CIFAR_CLASSES - 1
                ),
            ));
        }
    }
    if !src.at_end()? {
        return Err(NasError::format(
            path,
            format!(
                "holds more than the expected {records} records ({expected_bytes} bytes) after \
                 decompression"
            ),
        ));
    }
    Ok(())
}

fn check_size(path: &Path, len: u64, records: usize) -> Result<()> {
    if len == (records * CIFAR_RECORD_BYTES) as u64 {
        Ok(())
    } else {
        Err(size_error(path, len, records, "on disk"))
    }
}

fn size_error(path: &Path, found: u64, records: usize, how: &str) -> NasError {
    let record = CIFAR_RECORD_BYTES as u64;
    let detail = if !found.is_multiple_of(record) {
        format!(
            "{found} bytes {how}, not a whole number of {record}-byte records \
             (truncated or not a CIFAR-10 batch)"
        )
    } else {
        format!("{} records {how}", found / record)
    };
    NasError::format(
        path,
        format!(
            "expected {records} records ({} bytes), found {detail}",
            records as u64 * record
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::test_files::{fresh_dir, gzip};

    /// `n` records; record i has label i % 10 and every pixel equal to i.
    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut r = vec![i as u8; CIFAR_RECORD_BYTES];
                r[0] = (i % 10) as u8;
                r
            })
            .collect()
    }

    fn read(path: &Path, n: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut images = vec![0; n * CIFAR_IMAGE_BYTES];
        let mut labels = vec![0; n];
        read_batch(path, n, &mut images, &mut labels)?;
        Ok((images, labels))
    }

    #[test]
    fn reads_plain_and_gzip_records() {
        let dir = fresh_dir("cifar-ok");
        let bytes = records(12);
        std::fs::write(dir.join("p.bin"), &bytes).expect("write");
        std::fs::write(dir.join("g.bin.gz"), gzip(&bytes)).expect("write");
        for name in ["p.bin", "g.bin.gz"] {
            let (images, labels) = read(&dir.join(name), 12).expect("valid batch");
            assert_eq!(labels, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
            assert!(images[11 * CIFAR_IMAGE_BYTES..].iter().all(|&p| p == 11));
            assert!(images[..CIFAR_IMAGE_BYTES].iter().all(|&p| p == 0));
        }
    }

    #[test]
    fn truncated_files_report_sizes() {
        let dir = fresh_dir("cifar-trunc");
        let mut bytes = records(3);
        bytes.truncate(2 * CIFAR_RECORD_BYTES + 100);
        std::fs::write(dir.join("cut.bin"), &bytes).expect("write");
        let msg = read(&dir.join("cut.bin"), 3).unwrap_err().to_string();
        assert!(
            msg.contains("cut.bin") && msg.contains("expected 3 records (9219 bytes)"),
            "{msg}"
        );
        assert!(
            msg.contains("6246 bytes on disk, not a whole number of 3073-byte records"),
            "{msg}"
        );

        std::fs::write(dir.join("cut.bin.gz"), gzip(&bytes)).expect("write");
        let msg = read(&dir.join("cut.bin.gz"), 3).unwrap_err().to_string();
        assert!(msg.contains("6246 bytes after decompression"), "{msg}");

        std::fs::write(dir.join("two.bin"), records(2)).expect("write");
        let msg = read(&dir.join("two.bin"), 3).unwrap_err().to_string();
        assert!(msg.contains("found 2 records on disk"), "{msg}");

        std::fs::write(dir.join("four.bin.gz"), gzip(&records(4))).expect("write");
        let msg = read(&dir.join("four.bin.gz"), 3).unwrap_err().to_string();
        assert!(msg.contains("more than the expected 3 records"), "{msg}");
    }

    #[test]
    fn label_out_of_range_fails() {
        let dir = fresh_dir("cifar-label");
        let mut bytes = records(2);
        bytes[CIFAR_RECORD_BYTES] = 10;
        std::fs::write(dir.join("l.bin"), &bytes).expect("write");
        let msg = read(&dir.join("l.bin"), 2).unwrap_err().to_string();
        assert!(msg.contains("record 1: label 10 out of range"), "{msg}");
    }

    #[test]
    fn plain_preferred_and_official_subfolder_found() {
        let dir = fresh_dir("cifar-find");
        std::fs::write(dir.join("data_batch_1.bin.gz"), b"x").expect("write");
        let sub = dir.join(OFFICIAL_SUBDIR);
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join("data_batch_1.bin"), b"x").expect("write");
        let found = find_first("cifar10", &cifar_candidates(&dir, "data_batch_1")).expect("found");
        assert_eq!(found, sub.join("data_batch_1.bin"));
        std::fs::write(dir.join("data_batch_1.bin"), b"x").expect("write");
        let found = find_first("cifar10", &cifar_candidates(&dir, "data_batch_1")).expect("found");
        assert_eq!(found, dir.join("data_batch_1.bin"));
        let err = load_cifar10(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NasError::MissingDataset { .. }), "{msg}");
        assert!(msg.contains("data_batch_2.bin.gz"), "{msg}");
    }
}
