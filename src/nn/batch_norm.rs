//! Batch normalisation with switchable affine parameters.
//!
//! burn's own layer always learns a scale and a shift; the DARTS search network needs
//! `affine = false` in every operation (Liu et al. 2019, section 3.1: learnable affine parameters
//! would rescale the op outputs and blur the comparison of architecture weights), while networks
//! trained from a genotype use affine BN.

use burn::module::{Flag, Param, RunningState};
use burn::prelude::*;
use burn::tensor::module::{batch_norm, batch_norm_train};

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
    /// Running (unbiased-free, population) variance used in evaluation mode.
    pub running_var: RunningState<Tensor<1>>,
    /// Whether this layer normalises with batch statistics when gradients are tracked.
    pub training: Param<Flag>,
    channels: usize,
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
        }
    }

    /// Normalises with batch statistics while training (updating the running ones), with the
    /// running statistics otherwise. Training is the layer's flag, which `valid()` clears; it
    /// does not depend on the device, so a network on a plain device can still run train-mode
    /// BN (to time a forward pass as PyTorch does under `no_grad`, or to recalibrate
    /// statistics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let (gamma, beta) = match (&self.gamma, &self.beta) {
            (Some(g), Some(b)) => (g.val(), b.val()),
            _ => (
                Tensor::ones([self.channels], &device),
                Tensor::zeros([self.channels], &device),
            ),
        };

        if !self.training.is_enabled() {
            let mean = self.running_mean.value().to_device(&device);
            let var = self.running_var.value().to_device(&device);
            return batch_norm(x, gamma, beta, mean, var, EPSILON);
        }

        let result = batch_norm_train(x, gamma, beta, EPSILON);
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        let mean = mean
            .mul_scalar(1.0 - MOMENTUM)
            .add(result.mean.detach().mul_scalar(MOMENTUM));
        let var = var
            .mul_scalar(1.0 - MOMENTUM)
            .add(result.variance.detach().mul_scalar(MOMENTUM));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        result.output
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
