//! Batch normalisation with switchable affine parameters.
//!
//! burn's own layer always learns a scale and a shift; the DARTS search network needs
//! `affine = false` in every operation (Liu et al. 2019, section 3.1: learnable affine parameters
//! would rescale the op outputs and blur the comparison of architecture weights), while networks
//! trained from a genotype use affine BN.

use burn::module::{Flag, Param, RunningState};
use burn::prelude::*;
use burn::tensor::module::batch_norm;

use super::init::ParamInit;

const EPSILON: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// Batch normalisation over `[batch, channels, height, width]`.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Learned scale, present only when affine.
    pub gamma: Option<Param<Tensor<1>>>,
    /// Learned shift, present only when affine.
    pub beta: Option<Param<Tensor<1>>>,
    /// Running mean used in evaluation mode.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance used in evaluation mode.
    pub running_var: RunningState<Tensor<1>>,
    /// Whether this layer normalises with batch statistics (cleared by `valid()`).
    pub training: Param<Flag>,
    channels: usize,
    /// Weight of the batch statistics in each update of the running ones.
    momentum: f64,
}

impl BatchNorm2d {
    /// A layer over `channels`; `affine` adds the learned scale and shift.
    pub fn new(channels: usize, affine: bool, init: &ParamInit) -> Self {
        let device = init.device();
        Self {
            gamma: affine.then(|| init.constant([channels], 1.0)),
            beta: affine.then(|| init.constant([channels], 0.0)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            training: Param::from_bool(true),
            channels,
            momentum: MOMENTUM,
        }
    }

    /// Normalises with batch statistics while training (updating the running ones), with the
    /// running statistics otherwise. Training is the layer's flag, which `valid()` clears; it
    /// does not depend on the device, so a network on a plain device can still run train-mode
    /// BN (to time a forward pass as PyTorch does under `no_grad`, or to recalibrate
    /// statistics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.training.is_enabled() {
            let device = x.device();
            let (gamma, beta) = match (&self.gamma, &self.beta) {
                (Some(g), Some(b)) => (g.val(), b.val()),
                _ => (
                    Tensor::ones([self.channels], &device),
                    Tensor::zeros([self.channels], &device),
                ),
            };
            let mean = self.running_mean.value().to_device(&device);
            let var = self.running_var.value().to_device(&device);
            return batch_norm(x, gamma, beta, mean, var, EPSILON);
        }

        // Batch statistics from elementary operations: their backward pass is about three
        // times faster on the CPU backend than that of the fused training kernel.
        let [n, c, h, w] = x.dims();
        let mean = x.clone().mean_dims(&[0, 2, 3]);
        let centered = x - mean.clone();
        let var = centered.clone().square().mean_dims(&[0, 2, 3]);
        let y = centered / var.clone().add_scalar(EPSILON).sqrt();
        let y = match (&self.gamma, &self.beta) {
            (Some(g), Some(b)) => y * g.val().reshape([1, c, 1, 1]) + b.val().reshape([1, c, 1, 1]),
            _ => y,
        };

        // Running variance is the unbiased estimate, as in PyTorch.
        let count = (n * h * w) as f64;
        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let device = y.device();
        let batch_mean = mean.detach().reshape([c]);
        let batch_var = var.detach().reshape([c]).mul_scalar(unbiased);
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        let m = self.momentum;
        let running_mean = running_mean
            .mul_scalar(1.0 - m)
            .add(batch_mean.mul_scalar(m));
        let running_var = running_var.mul_scalar(1.0 - m).add(batch_var.mul_scalar(m));
        self.running_mean.update(running_mean.detach());
        self.running_var.update(running_var.detach());
        y
    }

    /// The same layer normalising with batch statistics (`training`) or running ones, whatever
    /// `valid()` set.
    pub fn with_training(mut self, training: bool) -> Self {
        self.training = Param::from_bool(training);
        self
    }

    /// The same layer with another weight of the batch statistics in the running ones: 0.1 by
    /// default; `1 / k` at the `k`-th batch makes the running statistics the plain average of
    /// the batches seen since a reset.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Resets the running statistics to mean 0 and variance 1.
    pub fn reset_running_stats(&self) {
        let device = self.running_mean.value().device();
        self.running_mean
            .update(Tensor::zeros([self.channels], &device));
        self.running_var
            .update(Tensor::ones([self.channels], &device));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// One channel holding 1, 2, 3, 4 (batch 1, 2x2): batch mean 2.5, population variance 1.25,
    /// so the output is (x - 2.5) / sqrt(1.25 + 1e-5). The running mean moves 10% of the way to
    /// 2.5 (0.25); the running variance to 0.9 + 0.1 x 5/3 (unbiased variance 1.25 x 4/3).
    #[test]
    fn training_mode_uses_batch_statistics_and_updates_running_ones() {
        let device = Device::flex().autodiff();
        let init = ParamInit::new(0, &device);
        let bn = BatchNorm2d::new(1, false, &init);
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 4.0]]]], &device);
        let y = values(bn.forward(x));
        let scale = (1.25f32 + 1e-5).sqrt();
        for (got, raw) in y.iter().zip([1.0f32, 2.0, 3.0, 4.0]) {
            assert!((got - (raw - 2.5) / scale).abs() < 1e-5, "{y:?}");
        }
        let mean: f32 = bn.running_mean.value_sync().into_scalar();
        let var: f32 = bn.running_var.value_sync().into_scalar();
        assert!((mean - 0.25).abs() < 1e-6, "running mean {mean}");
        assert!(
            (var - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6,
            "running var {var}"
        );
    }

    /// In evaluation mode (`valid()`) the running statistics are used and not changed; affine
    /// parameters scale and shift.
    #[test]
    fn evaluation_mode_uses_running_statistics() {
        let device = Device::flex().autodiff();
        let init = ParamInit::new(0, &device);
        let bn = BatchNorm2d::new(1, true, &init);
        bn.running_mean.update(Tensor::from_floats([1.0], &device));
        bn.running_var.update(Tensor::from_floats([4.0], &device));
        let eval = bn.valid();
        let x = Tensor::<4>::from_floats([[[[1.0, 3.0], [5.0, -1.0]]]], &device.without_autodiff());
        let y = values(eval.forward(x));
        let expected = [0.0, 2.0, 4.0, -2.0].map(|d: f32| d / (4.0f32 + 1e-5).sqrt());
        for (got, want) in y.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{y:?}");
        }
        let mean: f32 = eval.running_mean.value().into_scalar();
        assert_eq!(mean, 1.0);
        assert_eq!(super::super::count_parameters(&bn), 2);
    }
}
