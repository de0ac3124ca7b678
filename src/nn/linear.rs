//! Fully connected layer with seeded initialisation.

use burn::module::Param;
use burn::prelude::*;

use super::init::ParamInit;

/// `y = x W + b` over `[batch, features]`.
#[derive(Module, Debug)]
pub struct Linear {
    /// Weights, `[in_features, out_features]`.
    pub weight: Param<Tensor<2>>,
    /// Bias, `[out_features]`.
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    /// A layer from `d_in` to `d_out` features.
    pub fn new(d_in: usize, d_out: usize, init: &mut ParamInit) -> Self {
        let bound = 1.0 / (d_in as f32).sqrt();
        Self {
            weight: init.uniform([d_in, d_out], bound),
            bias: init.uniform([d_out], bound),
        }
    }

    /// Applies the layer to `[batch, d_in]`, giving `[batch, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val().unsqueeze_dim(0)
    }
}
