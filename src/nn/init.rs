//! Seeded parameter initialisation.
//!
//! Every weight is drawn from one ChaCha stream on the host and then uploaded, so the same seed
//! gives the same network on every backend and thread count. The distributions are those of
//! PyTorch's defaults, which the DARTS reference code relies on: convolution and linear weights
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (Kaiming-uniform with `a = sqrt(5)`), linear biases the
//! same, batch-norm scale 1 and shift 0.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Draws initial parameter values from a seeded stream and places them on a device.
pub struct ParamInit {
    rng: ChaCha8Rng,
    device: Device,
}

impl ParamInit {
    /// A stream seeded with `seed`, producing parameters on `device`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A parameter of `shape` drawn from `U(-bound, bound)`.
    pub fn uniform<const D: usize>(&mut self, shape: [usize; D], bound: f32) -> Param<Tensor<D>> {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect();
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// A parameter of `shape` drawn from `N(0, std^2)` (Box-Muller on the seeded stream).
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], std: f32) -> Param<Tensor<D>> {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| std * self.standard_normal()).collect();
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// A parameter of `shape` filled with `value`.
    pub fn constant<const D: usize>(&self, shape: [usize; D], value: f32) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::full(shape, value, &self.device))
    }

    fn standard_normal(&mut self) -> f32 {
        let u1: f32 = self.rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = self.rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}
