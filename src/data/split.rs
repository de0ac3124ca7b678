//! Seeded index selections: train/validation splits and class-balanced subsets.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::dataset::Dataset;
use crate::error::{NasError, Result};

/// Shuffles `0..n` with `seed` and cuts it: the first part gets `floor(n * fraction_first)`
/// indices (fraction clamped to `[0, 1]`), the second the rest. Both parts are returned sorted,
/// which keeps memory access in file order for loaders that do not shuffle.
///
/// DARTS uses this with 0.5 to train weights on one half of the training set and the
/// architecture on the other.
pub fn split_indices(n: usize, fraction_first: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if fraction_first.is_nan() {
        0.0
    } else {
        f64::from(fraction_first).clamp(0.0, 1.0)
    };
    let cut = ((n as f64 * fraction).floor() as usize).min(n);
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut second = all.split_off(cut);
    all.sort_unstable();
    second.sort_unstable();
    (all, second)
}

/// A seeded random subset of `size` indices of `data`, sorted; `None` selects everything.
///
/// The subset is stratified: each class gets its share of `size` in proportion to its count,
/// rounded by largest remainder (ties to the lower class), so small subsets stay balanced.
/// Fails when `size` is 0 or larger than the dataset.
pub fn subset_indices(data: &Dataset, size: Option<usize>, seed: u64) -> Result<Vec<usize>> {
    let n = data.len();
    let Some(size) = size else {
        return Ok((0..n).collect());
    };
    if size == 0 || size > n {
        return Err(NasError::config(
            "subset",
            format!("size must be in 1..={n} for {}, found {size}", data.name),
        ));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); data.num_classes];
    for (i, &label) in data.labels.iter().enumerate() {
        // Readers guarantee labels below num_classes; guard hand-built datasets anyway.
        if let Some(members) = by_class.get_mut(label as usize) {
            members.push(i);
        }
    }
    let counted: usize = by_class.iter().map(Vec::len).sum();
    if counted < size {
        return Err(NasError::config(
            "subset",
            format!("{} has only {counted} images with valid labels", data.name),
        ));
    }
    let quotas = largest_remainder(&by_class.iter().map(Vec::len).collect::<Vec<_>>(), size);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(size);
    for (members, quota) in by_class.iter_mut().zip(quotas) {
        let (picked, _) = members.partial_shuffle(&mut rng, quota);
        chosen.extend_from_slice(picked);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// Splits `size` over classes in proportion to `counts`; each share is at most its count.
fn largest_remainder(counts: &[usize], size: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let mut quotas: Vec<usize> = counts.iter().map(|&c| c * size / total).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    // Remainder of class c is (c * size) % total; larger remainders get the leftover first.
    order.sort_by_key(|&c| std::cmp::Reverse((counts[c] * size) % total));
    let mut missing = size - quotas.iter().sum::<usize>();
    for c in order {
        if missing == 0 {
            break;
        }
        if quotas[c] < counts[c] {
            quotas[c] += 1;
            missing -= 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(labels: Vec<u8>, classes: usize) -> Dataset {
        Dataset {
            name: "l".into(),
            images: vec![0; labels.len()],
            labels,
            channels: 1,
            height: 1,
            width: 1,
            num_classes: classes,
            pixel_max: 255.0,
        }
    }

    #[test]
    fn split_is_disjoint_complete_and_seeded() {
        let (a, b) = split_indices(101, 0.5, 7);
        assert_eq!((a.len(), b.len()), (50, 51));
        let mut all = [a.clone(), b.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(split_indices(101, 0.5, 7), (a.clone(), b));
        assert_ne!(split_indices(101, 0.5, 8).0, a);
        assert_eq!(split_indices(4, 1.5, 0).0.len(), 4);
        assert_eq!(split_indices(4, -1.0, 0).0.len(), 0);
        assert_eq!(split_indices(4, f32::NAN, 0).1.len(), 4);
    }

    #[test]
    fn subset_is_stratified_and_seeded() {
        // 60 of class 0, 30 of class 1, 10 of class 2.
        let labels: Vec<u8> = (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let d = labelled(labels, 3);
        let pick = subset_indices(&d, Some(10), 1).expect("valid size");
        let per_class = |ids: &[usize]| d.subset(ids).class_counts();
        assert_eq!(per_class(&pick), vec![6, 3, 1]);
        assert_eq!(pick, subset_indices(&d, Some(10), 1).expect("valid size"));
        assert_ne!(pick, subset_indices(&d, Some(10), 2).expect("valid size"));
        assert!(pick.windows(2).all(|w| w[0] < w[1]));
        // 7 of 100: shares 4.2, 2.1, 0.7, so the one leftover goes to class 2.
        assert_eq!(
            per_class(&subset_indices(&d, Some(7), 1).expect("valid")),
            vec![4, 2, 1]
        );
        assert_eq!(subset_indices(&d, None, 1).expect("all").len(), 100);
        assert!(subset_indices(&d, Some(0), 1).is_err());
        let msg = subset_indices(&d, Some(101), 1).unwrap_err().to_string();
        assert!(msg.contains("1..=100") && msg.contains("101"), "{msg}");
    }
}
