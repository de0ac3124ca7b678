//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// Cosine annealing from `lr_max` at epoch 0 to `lr_min` at epoch `epochs` (Loshchilov & Hutter
/// 2017, without restarts), evaluated once per epoch as the DARTS reference code does.
pub fn cosine_lr(lr_max: f64, lr_min: f64, epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return lr_max;
    }
    cosine_at(lr_max, lr_min, epoch as f64 / epochs as f64)
}

/// Cosine annealing at a fraction `progress` in [0, 1] of the whole run.
pub fn cosine_at(lr_max: f64, lr_min: f64, progress: f64) -> f64 {
    let progress = progress.clamp(0.0, 1.0);
    lr_min + 0.5 * (lr_max - lr_min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// When a cosine schedule moves the learning rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Once per epoch, as the DARTS reference code does: the last epoch still runs at a
    /// quarter of the peak rate when there are only three epochs.
    CosineEpoch,
    /// After every batch, reaching the final rate at the last step: the better choice for the
    /// short runs a CPU affords.
    #[default]
    CosineStep,
}

impl LrSchedule {
    /// The learning rate of batch `step` (from 0) of `steps_per_epoch` in epoch `epoch` of
    /// `epochs`.
    pub fn lr(
        self,
        lr_max: f64,
        lr_min: f64,
        epoch: usize,
        epochs: usize,
        step: usize,
        steps_per_epoch: usize,
    ) -> f64 {
        match self {
            LrSchedule::CosineEpoch => cosine_lr(lr_max, lr_min, epoch, epochs),
            LrSchedule::CosineStep => {
                let total = (epochs * steps_per_epoch).max(1);
                let done = epoch * steps_per_epoch + step;
                cosine_at(lr_max, lr_min, done as f64 / total as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_midpoint() {
        assert!((cosine_lr(0.025, 0.001, 0, 50) - 0.025).abs() < 1e-12);
        assert!((cosine_lr(0.025, 0.001, 50, 50) - 0.001).abs() < 1e-12);
        // Half way the cosine term is zero: the mean of the two ends.
        assert!((cosine_lr(0.025, 0.001, 25, 50) - 0.013).abs() < 1e-12);
    }

    #[test]
    fn per_step_schedule_reaches_the_floor_and_per_epoch_does_not() {
        // Three epochs of four steps: the per-epoch form holds 0.1, 0.075, 0.025 (cosine of
        // 0, pi/3, 2pi/3), the per-step form passes through 0.05 at step 6 of 12 and ends
        // one step short of the floor, at 0.05 * (1 + cos(11 pi / 12)).
        let epoch = LrSchedule::CosineEpoch;
        let step = LrSchedule::CosineStep;
        assert!((epoch.lr(0.1, 0.0, 1, 3, 3, 4) - 0.075).abs() < 1e-12);
        assert!((epoch.lr(0.1, 0.0, 2, 3, 0, 4) - 0.025).abs() < 1e-12);
        assert!((step.lr(0.1, 0.0, 0, 3, 0, 4) - 0.1).abs() < 1e-12);
        assert!((step.lr(0.1, 0.0, 1, 3, 2, 4) - 0.05).abs() < 1e-12);
        let last = 0.05 * (1.0 + (11.0 * std::f64::consts::PI / 12.0).cos());
        assert!((step.lr(0.1, 0.0, 2, 3, 3, 4) - last).abs() < 1e-12);
        assert!(last < 0.002);
    }
}
