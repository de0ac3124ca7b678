//! Two-dimensional convolution with seeded initialisation.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use super::init::ParamInit;

/// Geometry of a convolution: kernel, stride, padding, dilation and groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Square kernel side.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation in both directions.
    pub dilation: usize,
    /// Channel groups (`groups == channels` is a depthwise convolution).
    pub groups: usize,
}

impl ConvSpec {
    /// A dense convolution with the given kernel, stride and padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel,
            stride,
            padding,
            dilation: 1,
            groups: 1,
        }
    }

    /// The same geometry with a dilation.
    pub fn dilated(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }

    /// The same geometry split into channel groups.
    pub fn grouped(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Output side for an input side, as PyTorch and burn compute it.
    pub fn output_size(&self, input: usize) -> usize {
        (input + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) / self.stride + 1
    }
}

/// A bias-free or biased 2-D convolution. Input and output are `[batch, channels, height, width]`.
#[derive(Module, Debug)]
pub struct Conv2d {
    /// Kernel weights, `[out_channels, in_channels / groups, kernel, kernel]`.
    pub weight: Param<Tensor<4>>,
    /// Optional per-output-channel bias.
    pub bias: Option<Param<Tensor<1>>>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
}

impl Conv2d {
    /// A convolution from `c_in` to `c_out` channels; `bias` adds a learned offset per channel.
    pub fn new(
        c_in: usize,
        c_out: usize,
        spec: ConvSpec,
        bias: bool,
        init: &mut ParamInit,
    ) -> Self {
        let fan_in = (c_in / spec.groups) * spec.kernel * spec.kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = init.uniform([c_out, c_in / spec.groups, spec.kernel, spec.kernel], bound);
        let bias = bias.then(|| init.uniform([c_out], bound));
        Self {
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
            dilation: spec.dilation,
            groups: spec.groups,
        }
    }

    /// Applies the convolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c_out, _, k, _] = self.weight.dims();
        let pointwise = k == 1 && self.stride == 1 && self.padding == 0 && self.groups == 1;
        if pointwise {
            // A 1x1 convolution is a matrix product over channels. As one batched matmul its
            // backward pass is two matmuls, several times faster on the CPU backend than the
            // generic convolution backward (which treats the whole image as a kernel).
            let [n, c_in, h, w] = x.dims();
            let weight = self.weight.val().reshape([1, c_out, c_in]);
            let y = weight
                .matmul(x.reshape([n, c_in, h * w]))
                .reshape([n, c_out, h, w]);
            return match &self.bias {
                Some(b) => y + b.val().reshape([1, c_out, 1, 1]),
                None => y,
            };
        }
        self.forward_padded(x, [(self.padding, self.padding); 2])
    }

    /// Applies the convolution with explicit `(before, after)` padding per spatial axis instead
    /// of the symmetric padding it was built with.
    pub fn forward_padded(&self, x: Tensor<4>, padding: [(usize, usize); 2]) -> Tensor<4> {
        let options = ConvOptions::new_with_padding(
            [self.stride; 2],
            padding,
            [self.dilation; 2],
            self.groups,
        );
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            options,
        )
    }
}
