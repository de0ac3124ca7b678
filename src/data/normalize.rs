//! Per-channel normalisation constants.

use crate::data::dataset::Dataset;
use crate::data::kind::DatasetKind;

/// Per-channel mean and standard deviation in `[0, 1]` units: a pixel `x` becomes
/// `(x / pixel_max - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Statistics of `data` itself (use the training split, never the test split). A channel
    /// with zero spread gets std 1 so that normalising cannot divide by zero.
    pub fn from_dataset(data: &Dataset) -> Self {
        let (mean, std) = data.channel_stats();
        let std = std
            .into_iter()
            .map(|s| if s > 0.0 { s } else { 1.0 })
            .collect();
        Normalization { mean, std }
    }

    /// The constants customary in the literature, so results stay comparable with published
    /// training recipes; `None` where there is no such convention.
    pub fn known(kind: DatasetKind) -> Option<Self> {
        match kind {
            DatasetKind::Cifar10 => Some(Normalization {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            }),
            DatasetKind::Mnist => Some(Normalization {
                mean: vec![0.1307],
                std: vec![0.3081],
            }),
            DatasetKind::Digits | DatasetKind::FashionMnist => None,
        }
    }

    /// Mean 0 and std 1 on every channel: only the division by `pixel_max` remains.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// One 256-entry table per channel mapping a raw byte to its normalised value, so building
    /// a batch costs a lookup per pixel instead of a division.
    pub(crate) fn lookup_tables(&self, pixel_max: f32) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&mean, &std)| {
                let mut table = [0f32; 256];
                for (value, slot) in table.iter_mut().enumerate() {
                    *slot = (value as f32 / pixel_max - mean) / std;
                }
                table
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_channel_gets_unit_std() {
        let d = Dataset {
            name: "flat".into(),
            images: vec![8, 8, 8, 8],
            labels: vec![0],
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 1,
            pixel_max: 16.0,
        };
        let n = Normalization::from_dataset(&d);
        assert_eq!(n.mean, vec![0.5]);
        assert_eq!(n.std, vec![1.0]);
        assert!(Normalization::known(DatasetKind::Digits).is_none());
        assert_eq!(
            Normalization::known(DatasetKind::Mnist).map(|n| n.std),
            Some(vec![0.3081])
        );
    }
}
