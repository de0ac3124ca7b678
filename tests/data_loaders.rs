//! Loaders on the real dataset files, checked against the facts in `../shared/data/README.md`.
//!
//! When the data folder is absent the tests skip with a message, except under CI (env `CI`
//! set), where a missing folder is a failure: CI must not pass without having read the data.

mod common;

use common::{require, shared_data};

use std::path::PathBuf;
use std::sync::Arc;

use nasrs::data::{
    Augment, BatchLoader, DatasetKind, Normalization, load, load_cifar10, load_digits_embedded,
    load_idx, parse_digits_csv, read_idx_labels, subset_indices,
};

fn close(found: &[f32], expected: &[f32], tol: f32) -> bool {
    found.len() == expected.len()
        && found
            .iter()
            .zip(expected)
            .all(|(f, e)| (f - e).abs() <= tol)
}

#[test]
fn cifar10_counts_and_channel_statistics() {
    let Some(root) = shared_data() else { return };
    let s = load_cifar10(&root.join("cifar10")).expect("CIFAR-10 loads");
    assert_eq!((s.train.len(), s.test.len()), (50_000, 10_000));
    assert_eq!(s.train.class_counts(), vec![5_000; 10]);
    assert_eq!(s.test.class_counts(), vec![1_000; 10]);
    assert_eq!(
        (s.train.channels, s.train.height, s.train.width),
        (3, 32, 32)
    );
    let (mean, std) = s.train.channel_stats();
    assert!(
        close(&mean, &[0.4913, 0.4821, 0.4465], 5e-4),
        "mean {mean:?}"
    );
    assert!(close(&std, &[0.2452, 0.2428, 0.2606], 0.01), "std {std:?}");
    // The literature constants are within the JPEG loss of this copy's statistics.
    let known = Normalization::known(DatasetKind::Cifar10).expect("CIFAR-10 constants");
    assert!(close(&known.mean, &mean, 1e-3));
}

#[test]
fn mnist_counts_and_mean_pixel() {
    let Some(root) = shared_data() else { return };
    let s = load_idx(&root.join("mnist"), "mnist").expect("MNIST loads");
    assert_eq!((s.train.len(), s.test.len()), (60_000, 10_000));
    let expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
    assert_eq!(s.train.class_counts(), expected);
    assert_eq!(
        (s.train.channels, s.train.height, s.train.width),
        (1, 28, 28)
    );
    let sum: u64 = s.train.images.iter().map(|&p| u64::from(p)).sum();
    let mean = sum as f64 / s.train.images.len() as f64;
    assert!((mean - 33.318).abs() < 0.01, "mean pixel {mean}");
    let labels = read_idx_labels(&root.join("mnist/t10k-labels-idx1-ubyte.gz")).expect("labels");
    assert_eq!(labels, s.test.labels);
}

#[test]
fn load_accepts_the_parent_data_dir() {
    let Some(root) = shared_data() else { return };
    let s = load(DatasetKind::Mnist, Some(&root)).expect("mnist/ found under the root");
    assert_eq!(s.train.name, "mnist/train");
    assert_eq!(s.test.len(), 10_000);
}

const DIGITS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

#[test]
fn digits_file_and_embedded_copy() {
    let embedded = load_digits_embedded().expect("embedded digits");
    let mut counts = embedded.train.class_counts();
    for (c, t) in counts.iter_mut().zip(embedded.test.class_counts()) {
        // Every fifth image of a class is a test image: floor(count / 5) of them.
        *c += t;
    }
    assert_eq!(counts, DIGITS_COUNTS);
    let test_expected: Vec<usize> = DIGITS_COUNTS.iter().map(|c| c / 5).collect();
    assert_eq!(embedded.test.class_counts(), test_expected);
    assert_eq!((embedded.train.len(), embedded.test.len()), (1442, 355));
    assert_eq!(embedded.train.pixel_max, 16.0);

    let Some(root) = shared_data() else { return };
    let path = root.join("digits/digits.csv.gz");
    let bytes = std::fs::read(&path).expect("digits file");
    let all = parse_digits_csv(&bytes, &path).expect("digits parse");
    assert_eq!(all.len(), 1_797);
    assert_eq!(all.class_counts(), DIGITS_COUNTS);
    assert_eq!(all.images.iter().max(), Some(&16));
    let from_dir = load(DatasetKind::Digits, Some(&root)).expect("digits from dir");
    assert_eq!(from_dir, embedded);
}

#[test]
fn fashion_mnist_default_dir() {
    let Some(_) = require(PathBuf::from(nasrs::data::FASHION_MNIST_DEFAULT_DIR)) else {
        return;
    };
    let s = load(DatasetKind::FashionMnist, None).expect("Fashion-MNIST loads");
    assert_eq!((s.train.len(), s.test.len()), (60_000, 10_000));
    assert_eq!(s.train.class_counts(), vec![6_000; 10]);
    assert_eq!(s.test.class_counts(), vec![1_000; 10]);
    assert_eq!(s.train.name, "fashion-mnist/train");
}

#[test]
fn digits_loader_end_to_end() {
    let s = load_digits_embedded().expect("embedded digits");
    let train = Arc::new(s.train);
    let ids = subset_indices(&train, Some(500), 1).expect("subset");
    let norm = Normalization::from_dataset(&train);
    let aug = Augment {
        crop_padding: 1,
        horizontal_flip: false,
        cutout: 2,
    };
    let mut loader = BatchLoader::new(train.clone(), ids, 64, true, aug, norm, 7).expect("loader");
    let batches: Vec<_> = loader.epoch().collect();
    assert_eq!(batches.len(), 8);
    assert_eq!(batches.iter().map(|b| b.n).sum::<usize>(), 500);
    assert_eq!(batches[0].images.len(), 64 * 64);
    assert!(
        batches
            .iter()
            .all(|b| b.images.iter().all(|v| v.is_finite()))
    );
    // Normalised by its own statistics, an unaugmented pass over all images has mean ~0.
    let all: Vec<usize> = (0..train.len()).collect();
    let norm = Normalization::from_dataset(&train);
    let mut plain =
        BatchLoader::new(train, all, 256, false, Augment::none(), norm, 0).expect("loader");
    let (sum, n) = plain.epoch().fold((0f64, 0usize), |(s, n), b| {
        (
            s + b.images.iter().map(|&v| f64::from(v)).sum::<f64>(),
            n + b.images.len(),
        )
    });
    assert!((sum / n as f64).abs() < 1e-4, "mean {}", sum / n as f64);
}
