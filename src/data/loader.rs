//! Mini-batches: shuffling, augmentation and normalisation into `f32` tensors-to-be.

use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::augment::Augment;
use crate::data::dataset::Dataset;
use crate::data::normalize::Normalization;
use crate::error::{NasError, Result};

/// A mini-batch ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[n, channels, height, width]`, augmented and normalised.
    pub images: Vec<f32>,
    /// Class index per image.
    pub labels: Vec<i64>,
    /// Images in this batch (the last batch of an epoch may be smaller).
    pub n: usize,
    /// Colour planes per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

/// The resumable state of a [`BatchLoader`] (see [`BatchLoader::state`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoaderState {
    epoch_order: Vec<usize>,
    cycle_order: Vec<usize>,
    cycle_pos: usize,
    rng: ChaCha8Rng,
}

/// Iterates over a chosen set of images of a dataset in mini-batches.
///
/// All randomness (shuffling, augmentation) comes from one ChaCha8 generator seeded at
/// construction, so the same seed and the same sequence of calls give identical batches.
/// [`epoch`](Self::epoch) and [`next_cycling`](Self::next_cycling) keep separate positions and
/// orders, so one loader may serve both without disturbing either.
pub struct BatchLoader {
    data: Arc<Dataset>,
    batch_size: usize,
    shuffle: bool,
    augment: Augment,
    norm: Normalization,
    tables: Vec<[f32; 256]>,
    rng: ChaCha8Rng,
    epoch_order: Vec<usize>,
    cycle_order: Vec<usize>,
    /// Next position in `cycle_order`; 0 means a new cycle starts (and reshuffles).
    cycle_pos: usize,
}

impl BatchLoader {
    /// A loader over `indices` of `data`.
    ///
    /// Fails when `batch_size` is 0, `indices` is empty or holds an index past the end of
    /// `data`, or `norm` does not have one positive, finite std per channel.
    pub fn new(
        data: Arc<Dataset>,
        indices: Vec<usize>,
        batch_size: usize,
        shuffle: bool,
        augment: Augment,
        norm: Normalization,
        seed: u64,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(NasError::config(
                "batch_size",
                "must be at least 1, found 0",
            ));
        }
        if indices.is_empty() {
            return Err(NasError::config(
                "indices",
                format!("no image selected from {}", data.name),
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
            return Err(NasError::config(
                "indices",
                format!(
                    "index {bad} out of range: {} holds {} images",
                    data.name,
                    data.len()
                ),
            ));
        }
        if data.images.len() != data.len() * data.image_len() {
            return Err(NasError::config(
                "dataset",
                format!(
                    "{}: {} pixel bytes do not make {} images of {} bytes",
                    data.name,
                    data.images.len(),
                    data.len(),
                    data.image_len()
                ),
            ));
        }
        let valid_std = norm.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if norm.mean.len() != data.channels || norm.std.len() != data.channels || !valid_std {
            return Err(NasError::config(
                "normalization",
                format!(
                    "expected {} mean and {} positive std values for {}, found mean {:?} std {:?}",
                    data.channels, data.channels, data.name, norm.mean, norm.std
                ),
            ));
        }
        let tables = norm.lookup_tables(data.pixel_max);
        Ok(BatchLoader {
            data,
            batch_size,
            shuffle,
            augment,
            norm,
            tables,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cycle_order: indices.clone(),
            epoch_order: indices,
            cycle_pos: 0,
        })
    }

    /// One pass over every index, reshuffled first when shuffling is on; the last batch keeps
    /// the remainder and may be smaller than the batch size.
    pub fn epoch(&mut self) -> impl ExactSizeIterator<Item = Batch> + '_ {
        if self.shuffle {
            self.epoch_order.shuffle(&mut self.rng);
        }
        let batches = self.batches_per_epoch();
        (0..batches).map(move |b| {
            let start = b * self.batch_size;
            let end = (start + self.batch_size).min(self.epoch_order.len());
            assemble(
                &self.data,
                &self.epoch_order[start..end],
                &self.augment,
                &self.tables,
                &mut self.rng,
            )
        })
    }

    /// The next batch of an endless stream that goes through every index once per cycle,
    /// reshuffling at the start of each cycle. It continues where the previous call stopped;
    /// the last batch of a cycle keeps the remainder, like [`epoch`](Self::epoch).
    pub fn next_cycling(&mut self) -> Batch {
        if self.cycle_pos == 0 && self.shuffle {
            self.cycle_order.shuffle(&mut self.rng);
        }
        let start = self.cycle_pos;
        let end = (start + self.batch_size).min(self.cycle_order.len());
        self.cycle_pos = if end == self.cycle_order.len() {
            0
        } else {
            end
        };
        assemble(
            &self.data,
            &self.cycle_order[start..end],
            &self.augment,
            &self.tables,
            &mut self.rng,
        )
    }

    /// Everything that decides the batches still to come: the two orders, the position in the
    /// cycle and the random generator. Saved in checkpoints so that a resumed run draws exactly
    /// the batches an uninterrupted one would have drawn.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            epoch_order: self.epoch_order.clone(),
            cycle_order: self.cycle_order.clone(),
            cycle_pos: self.cycle_pos,
            rng: self.rng.clone(),
        }
    }

    /// Restores a state taken with [`state`](Self::state) from a loader over the same images.
    pub fn restore(&mut self, state: LoaderState) -> Result<()> {
        let mut saved = state.epoch_order.clone();
        let mut current = self.epoch_order.clone();
        saved.sort_unstable();
        current.sort_unstable();
        if saved != current || state.cycle_order.len() != current.len() {
            return Err(NasError::config(
                "resume",
                format!(
                    "the checkpoint's data loader covers {} images but this run's covers {}; \
                     resume with the same dataset, subset and seed",
                    state.epoch_order.len(),
                    current.len()
                ),
            ));
        }
        self.epoch_order = state.epoch_order;
        self.cycle_order = state.cycle_order;
        self.cycle_pos = state.cycle_pos.min(self.cycle_order.len());
        self.rng = state.rng;
        Ok(())
    }

    /// Batches in one epoch, counting a last partial batch.
    pub fn batches_per_epoch(&self) -> usize {
        self.epoch_order.len().div_ceil(self.batch_size)
    }

    /// Images per epoch.
    pub fn len(&self) -> usize {
        self.epoch_order.len()
    }

    /// Always false: a loader holds at least one index.
    pub fn is_empty(&self) -> bool {
        self.epoch_order.is_empty()
    }

    /// The dataset this loader reads.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.data
    }

    /// The normalisation applied to every image.
    pub fn normalization(&self) -> &Normalization {
        &self.norm
    }
}

impl std::fmt::Debug for BatchLoader {
    // The derived form would print the dataset bytes and the lookup tables.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchLoader")
            .field("dataset", &self.data.name)
            .field("len", &self.len())
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("augment", &self.augment)
            .field("norm", &self.norm)
            .field("cycle_pos", &self.cycle_pos)
            .finish_non_exhaustive()
    }
}

fn assemble(
    data: &Dataset,
    ids: &[usize],
    augment: &Augment,
    tables: &[[f32; 256]],
    rng: &mut ChaCha8Rng,
) -> Batch {
    let shape = (data.channels, data.height, data.width);
    let size = data.image_len();
    let mut images = vec![0f32; ids.len() * size];
    for (&id, out) in ids.iter().zip(images.chunks_exact_mut(size.max(1))) {
        let draw = augment.draw(data.height, data.width, rng);
        augment.render(data.image(id), shape, &draw, tables, out);
    }
    Batch {
        images,
        labels: ids.iter().map(|&i| i64::from(data.labels[i])).collect(),
        n: ids.len(),
        channels: data.channels,
        height: data.height,
        width: data.width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` 1x1x2 images whose two pixels both hold the image index, labels = index % 3.
    fn numbered(n: usize) -> Arc<Dataset> {
        Arc::new(Dataset {
            name: "numbered".into(),
            images: (0..n).flat_map(|i| [i as u8, i as u8]).collect(),
            labels: (0..n).map(|i| (i % 3) as u8).collect(),
            channels: 1,
            height: 1,
            width: 2,
            num_classes: 3,
            pixel_max: 255.0,
        })
    }

    /// Image ids of a batch under identity normalisation; the larger pixel, because a 1-pixel
    /// cutout may have zeroed the other.
    fn ids(b: &Batch) -> Vec<usize> {
        b.images
            .chunks(2)
            .map(|p| (p[0].max(p[1]) * 255.0).round() as usize)
            .collect()
    }

    fn loader(n: usize, batch: usize, shuffle: bool, seed: u64) -> BatchLoader {
        let aug = Augment {
            cutout: 1,
            ..Augment::none()
        };
        let ids: Vec<usize> = (0..n).collect();
        BatchLoader::new(
            numbered(n),
            ids,
            batch,
            shuffle,
            aug,
            Normalization::identity(1),
            seed,
        )
        .expect("valid loader")
    }

    #[test]
    fn rejects_bad_arguments() {
        let d = numbered(4);
        let norm = || Normalization::identity(1);
        let make = |ids: Vec<usize>, bs, norm| {
            BatchLoader::new(d.clone(), ids, bs, false, Augment::none(), norm, 0)
        };
        assert!(matches!(
            make(vec![0], 0, norm()),
            Err(NasError::Config { .. })
        ));
        assert!(matches!(
            make(vec![], 2, norm()),
            Err(NasError::Config { .. })
        ));
        let msg = make(vec![0, 4], 2, norm()).unwrap_err().to_string();
        assert!(msg.contains("index 4") && msg.contains("holds 4"), "{msg}");
        assert!(make(vec![0], 2, Normalization::identity(3)).is_err());
        let zero_std = Normalization {
            mean: vec![0.0],
            std: vec![0.0],
        };
        assert!(make(vec![0], 2, zero_std).is_err());
    }

    #[test]
    fn epoch_shapes_and_normalisation() {
        let d = numbered(5);
        let norm = Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        };
        let mut l = BatchLoader::new(d, vec![4, 0, 2], 2, false, Augment::none(), norm, 0)
            .expect("valid loader");
        assert_eq!((l.len(), l.batches_per_epoch()), (3, 2));
        let batches: Vec<Batch> = l.epoch().collect();
        assert_eq!(batches.len(), 2);
        assert_eq!((batches[0].n, batches[1].n), (2, 1));
        assert_eq!(batches[0].labels, vec![1, 0]);
        assert_eq!(batches[1].labels, vec![2]);
        // Image 2 has pixels 2 of 255: (2/255 - 0.5) / 0.25 = -1.968627...
        assert_eq!(batches[1].images.len(), 2);
        for v in &batches[1].images {
            assert!((v + 1.968_627_5).abs() < 1e-5, "{v}");
        }
        assert_eq!(
            (batches[1].channels, batches[1].height, batches[1].width),
            (1, 1, 2)
        );
    }

    #[test]
    fn same_seed_same_batches_other_seed_other_order() {
        let run = |seed| {
            let mut l = loader(50, 8, true, seed);
            let mut all: Vec<Batch> = l.epoch().collect();
            all.extend(l.epoch());
            all
        };
        assert_eq!(run(3), run(3));
        let order = |seed| run(seed).iter().flat_map(ids).collect::<Vec<_>>();
        assert_ne!(order(3), order(4));
        // The two epochs of one run use different permutations.
        let one = order(3);
        assert_ne!(one[..50], one[50..]);
    }

    #[test]
    fn unshuffled_epoch_keeps_index_order() {
        let mut l = loader(5, 2, false, 9);
        let seen: Vec<usize> = l.epoch().flat_map(|b| ids(&b)).collect();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn cycling_covers_each_index_once_per_cycle_and_continues() {
        let mut l = loader(10, 4, true, 5);
        let mut cycles = Vec::new();
        for _ in 0..3 {
            // 10 images in batches of 4: 4, 4, 2 per cycle.
            let sizes: Vec<usize> = (0..3)
                .map(|_| l.next_cycling())
                .map(|b| {
                    cycles.extend(ids(&b));
                    b.n
                })
                .collect();
            assert_eq!(sizes, vec![4, 4, 2]);
        }
        for cycle in cycles.chunks(10) {
            let mut sorted = cycle.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(cycles[..10], cycles[10..20], "each cycle reshuffles");
        // An epoch in between does not move the cycling position.
        let mut l = loader(10, 4, false, 5);
        let first = ids(&l.next_cycling());
        let _ = l.epoch().count();
        assert_eq!(first, vec![0, 1, 2, 3]);
        assert_eq!(ids(&l.next_cycling()), vec![4, 5, 6, 7]);
    }
}
