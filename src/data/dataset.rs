//! One split of an image-classification dataset, kept as raw bytes.
//!
//! Pixels stay `u8` until a batch is built: CIFAR-10 as `f32` would take four times the memory,
//! and augmentation (padding, cropping) is defined on the raw image anyway.

/// One split (train or test) of a dataset, with raw pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Dataset and split, e.g. `cifar10/train`.
    pub name: String,
    /// `len() * channels * height * width` bytes; each image channel-planar `[C, H, W]`.
    pub images: Vec<u8>,
    /// One class index per image, each below `num_classes`.
    pub labels: Vec<u8>,
    /// Colour planes per image.
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes; labels lie in `0..num_classes`.
    pub num_classes: usize,
    /// The brightest possible pixel value: 255 for photographs, 16 for the digits set.
    pub pixel_max: f32,
}

/// The train and test splits of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Training split.
    pub train: Dataset,
    /// Test split (held out; never used for search decisions).
    pub test: Dataset,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, channel-planar `[C, H, W]`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.image_len();
        &self.images[i * size..(i + 1) * size]
    }

    /// Images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &label in &self.labels {
            // Labels are validated by every reader; a hand-built dataset with a stray label
            // still must not panic here.
            if let Some(c) = counts.get_mut(label as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Per-channel mean and population standard deviation, in `[0, 1]` units (`x / pixel_max`).
    ///
    /// A byte histogram per channel makes the sums exact and costs one pass; an empty dataset
    /// gives zeros.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut histograms = vec![[0u64; 256]; self.channels];
        for image in self.images.chunks_exact(self.image_len().max(1)) {
            for (hist, pixels) in histograms.iter_mut().zip(image.chunks_exact(plane.max(1))) {
                for &p in pixels {
                    hist[p as usize] += 1;
                }
            }
        }
        let scale = f64::from(self.pixel_max);
        histograms
            .iter()
            .map(|hist| {
                let (mut n, mut sum, mut sum_sq) = (0u64, 0u64, 0u64);
                for (value, &count) in hist.iter().enumerate() {
                    let v = value as u64;
                    n += count;
                    sum += v * count;
                    sum_sq += v * v * count;
                }
                if n == 0 {
                    return (0.0, 0.0);
                }
                let mean = sum as f64 / n as f64;
                let var = (sum_sq as f64 / n as f64 - mean * mean).max(0.0);
                ((mean / scale) as f32, (var.sqrt() / scale) as f32)
            })
            .unzip()
    }

    /// A new dataset holding the images at `indices`, in that order, under the same name.
    ///
    /// # Panics
    /// If an index is out of range; indices come from code such as [`subset_indices`], not from
    /// users.
    ///
    /// [`subset_indices`]: crate::data::subset_indices
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: self.name.clone(),
            images,
            labels,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 2-channel 1x2 images: channel 0 holds 0, 255, 255, 255; channel 1 holds 51 four times.
    fn tiny() -> Dataset {
        Dataset {
            name: "tiny/train".into(),
            images: vec![0, 255, 51, 51, 255, 255, 51, 51],
            labels: vec![1, 0],
            channels: 2,
            height: 1,
            width: 2,
            num_classes: 3,
            pixel_max: 255.0,
        }
    }

    #[test]
    fn stats_match_hand_computation() {
        let (mean, std) = tiny().channel_stats();
        // Channel 0 in [0,1] units: {0,1,1,1}: mean 0.75, variance 0.75 - 0.5625 = 0.1875.
        assert!((mean[0] - 0.75).abs() < 1e-6);
        assert!((std[0] - 0.1875f32.sqrt()).abs() < 1e-6);
        assert!((mean[1] - 0.2).abs() < 1e-6);
        assert!(std[1].abs() < 1e-6);
    }

    #[test]
    fn subset_and_counts() {
        let d = tiny();
        assert_eq!(d.class_counts(), vec![1, 1, 0]);
        let s = d.subset(&[1, 1]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.labels, vec![0, 0]);
        assert_eq!(s.image(1), &[255, 255, 51, 51]);
        assert_eq!(s.class_counts(), vec![2, 0, 0]);
    }
}
