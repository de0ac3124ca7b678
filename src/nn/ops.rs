//! The candidate operations of the DARTS cell space, as burn modules.
//!
//! Shapes follow Liu et al. 2019 (DARTS) and its reference code: padding keeps the spatial size
//! at stride 1 and gives `ceil(size / 2)` at stride 2 for every operation, odd sizes included.
//! Operations that start with a ReLU (separable, dilated, factorized reduce, ReLU-conv-BN) take
//! the rectified input from the caller, so that a mixed edge or a cell computes `relu(x)` once
//! per state instead of once per operation.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

use super::batch_norm::BatchNorm2d;
use super::conv::{Conv2d, ConvSpec};
use super::init::ParamInit;
use crate::space::DartsOp;

/// Settings shared by all operations of one network.
#[derive(Clone, Copy, Debug)]
pub struct OpSettings {
    /// Learned scale and shift in batch norm (false in the search network).
    pub affine: bool,
    /// Batch norm after pooling, as in the DARTS search network's mixed operation.
    pub bn_after_pool: bool,
}

/// The output of an operation that is exactly zero (`none`). It carries no parameters and is
/// skipped by mixed edges; it exists so that a genotype naming `none` can still be built.
#[derive(Module, Debug)]
pub struct Zero {
    stride: usize,
}

/// The identity (`skip_connect` at stride 1).
#[derive(Module, Debug)]
pub struct Identity {
    channels: usize,
}

/// 3x3 max or average pooling, padding 1; average pooling excludes padded zeros from the count.
#[derive(Module, Debug)]
pub struct Pool {
    max: bool,
    stride: usize,
    bn: Option<BatchNorm2d>,
}

impl Pool {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = if self.max {
            let options = MaxPoolOptions::new([3, 3])
                .with_stride([self.stride; 2])
                .with_padding([1, 1]);
            max_pool2d(x, options)
        } else {
            let options = AvgPoolOptions::new([3, 3])
                .with_stride([self.stride; 2])
                .with_padding([1, 1])
                .with_count_include_pad(false);
            avg_pool2d(x, options)
        };
        match &self.bn {
            Some(bn) => bn.forward(y),
            None => y,
        }
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn = self.bn.map(f);
        self
    }
}

/// ReLU, 1x1 convolution, BN: the cell preprocessing layer.
#[derive(Module, Debug)]
pub struct ReluConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ReluConvBn {
    /// Maps `c_in` to `c_out` channels with a 1x1 convolution.
    pub fn new(c_in: usize, c_out: usize, affine: bool, init: &mut ParamInit) -> Self {
        Self {
            conv: Conv2d::new(c_in, c_out, ConvSpec::new(1, 1, 0), false, init),
            bn: BatchNorm2d::new(c_out, affine, init),
        }
    }

    /// Applies the layer to `x` (ReLU included).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_rectified(relu(x))
    }

    fn forward_rectified(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn = f(self.bn);
        self
    }
}

/// Halves the spatial size without losing every other pixel: two 1x1 stride-2 convolutions, the
/// second on the input shifted by one pixel, concatenated on channels, then BN.
#[derive(Module, Debug)]
pub struct FactorizedReduce {
    conv_even: Conv2d,
    conv_odd: Conv2d,
    bn: BatchNorm2d,
}

impl FactorizedReduce {
    /// Maps `c_in` channels at size `s` to `c_out` (even) channels at `ceil(s / 2)`.
    pub fn new(c_in: usize, c_out: usize, affine: bool, init: &mut ParamInit) -> Self {
        debug_assert!(
            c_out.is_multiple_of(2),
            "factorized reduce needs an even channel count"
        );
        let spec = ConvSpec::new(1, 2, 0);
        Self {
            conv_even: Conv2d::new(c_in, c_out / 2, spec, false, init),
            conv_odd: Conv2d::new(c_in, c_out / 2, spec, false, init),
            bn: BatchNorm2d::new(c_out, affine, init),
        }
    }

    /// Applies the layer to `x` (ReLU included).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_rectified(relu(x))
    }

    fn forward_rectified(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        // The shifted path drops the first row and column; one zero row and column at the end
        // keep both paths at ceil(size / 2) for odd sizes. For even sizes the padded row is never
        // sampled, so this equals the reference `x[:, :, 1:, 1:]`.
        let shifted = x.clone().slice([0..n, 0..c, 1..h, 1..w]);
        let even = self.conv_even.forward(x);
        let odd = self.conv_odd.forward_padded(shifted, [(0, 1), (0, 1)]);
        self.bn.forward(Tensor::cat(vec![even, odd], 1))
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn = f(self.bn);
        self
    }
}

/// Depthwise-separable convolution applied twice (ReLU, depthwise kxk, pointwise 1x1, BN; then
/// the same at stride 1), as in the DARTS operation set.
#[derive(Module, Debug)]
pub struct SepConv {
    depthwise1: Conv2d,
    pointwise1: Conv2d,
    bn1: BatchNorm2d,
    depthwise2: Conv2d,
    pointwise2: Conv2d,
    bn2: BatchNorm2d,
}

impl SepConv {
    fn new(c: usize, kernel: usize, stride: usize, affine: bool, init: &mut ParamInit) -> Self {
        let pad = kernel / 2;
        Self {
            depthwise1: Conv2d::new(
                c,
                c,
                ConvSpec::new(kernel, stride, pad).grouped(c),
                false,
                init,
            ),
            pointwise1: Conv2d::new(c, c, ConvSpec::new(1, 1, 0), false, init),
            bn1: BatchNorm2d::new(c, affine, init),
            depthwise2: Conv2d::new(c, c, ConvSpec::new(kernel, 1, pad).grouped(c), false, init),
            pointwise2: Conv2d::new(c, c, ConvSpec::new(1, 1, 0), false, init),
            bn2: BatchNorm2d::new(c, affine, init),
        }
    }

    fn forward_rectified(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .bn1
            .forward(self.pointwise1.forward(self.depthwise1.forward(x)));
        let y = relu(y);
        self.bn2
            .forward(self.pointwise2.forward(self.depthwise2.forward(y)))
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn1 = f(self.bn1);
        self.bn2 = f(self.bn2);
        self
    }
}

/// Dilated depthwise-separable convolution, applied once (ReLU, depthwise kxk with dilation 2,
/// pointwise 1x1, BN).
#[derive(Module, Debug)]
pub struct DilConv {
    depthwise: Conv2d,
    pointwise: Conv2d,
    bn: BatchNorm2d,
}

impl DilConv {
    fn new(c: usize, kernel: usize, stride: usize, affine: bool, init: &mut ParamInit) -> Self {
        let spec = ConvSpec::new(kernel, stride, kernel - 1)
            .dilated(2)
            .grouped(c);
        Self {
            depthwise: Conv2d::new(c, c, spec, false, init),
            pointwise: Conv2d::new(c, c, ConvSpec::new(1, 1, 0), false, init),
            bn: BatchNorm2d::new(c, affine, init),
        }
    }

    fn forward_rectified(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn
            .forward(self.pointwise.forward(self.depthwise.forward(x)))
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn = f(self.bn);
        self
    }
}

/// One candidate operation on an edge.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Operation {
    /// `none`.
    Zero(Zero),
    /// `max_pool_3x3` or `avg_pool_3x3`.
    Pool(Pool),
    /// `skip_connect` at stride 1.
    Identity(Identity),
    /// `skip_connect` at stride 2.
    Reduce(FactorizedReduce),
    /// `sep_conv_3x3` or `sep_conv_5x5`.
    Sep(SepConv),
    /// `dil_conv_3x3` or `dil_conv_5x5`.
    Dil(DilConv),
}

impl Operation {
    /// Builds `op` on `c` channels at `stride` (1 or 2).
    pub fn new(op: DartsOp, c: usize, stride: usize, s: OpSettings, init: &mut ParamInit) -> Self {
        let pool = |max: bool, init: &mut ParamInit| {
            Operation::Pool(Pool {
                max,
                stride,
                bn: s.bn_after_pool.then(|| BatchNorm2d::new(c, false, init)),
            })
        };
        match op {
            DartsOp::None => Operation::Zero(Zero { stride }),
            DartsOp::MaxPool3x3 => pool(true, init),
            DartsOp::AvgPool3x3 => pool(false, init),
            DartsOp::SkipConnect if stride == 1 => Operation::Identity(Identity { channels: c }),
            DartsOp::SkipConnect => Operation::Reduce(FactorizedReduce::new(c, c, s.affine, init)),
            DartsOp::SepConv3x3 => Operation::Sep(SepConv::new(c, 3, stride, s.affine, init)),
            DartsOp::SepConv5x5 => Operation::Sep(SepConv::new(c, 5, stride, s.affine, init)),
            DartsOp::DilConv3x3 => Operation::Dil(DilConv::new(c, 3, stride, s.affine, init)),
            DartsOp::DilConv5x5 => Operation::Dil(DilConv::new(c, 5, stride, s.affine, init)),
        }
    }

    /// Whether the operation begins with a ReLU of its input.
    pub fn needs_rectified(&self) -> bool {
        matches!(
            self,
            Operation::Reduce(_) | Operation::Sep(_) | Operation::Dil(_)
        )
    }

    /// Whether the output is the input itself (drop path never applies to it).
    pub fn is_identity(&self) -> bool {
        matches!(self, Operation::Identity(_))
    }

    /// Whether the output is exactly zero.
    pub fn is_zero(&self) -> bool {
        matches!(self, Operation::Zero(_))
    }

    /// Applies the operation. `rectified` must be `relu(x)` when
    /// [`needs_rectified`](Self::needs_rectified) holds; it is ignored otherwise.
    pub fn forward(&self, x: Tensor<4>, rectified: Option<Tensor<4>>) -> Tensor<4> {
        let rectified = || rectified.unwrap_or_else(|| relu(x.clone()));
        match self {
            Operation::Zero(zero) => {
                let [n, c, h, w] = x.dims();
                let s = zero.stride;
                Tensor::zeros([n, c, h.div_ceil(s), w.div_ceil(s)], &x.device())
            }
            Operation::Pool(pool) => pool.forward(x),
            Operation::Identity(_) => x,
            Operation::Reduce(reduce) => reduce.forward_rectified(rectified()),
            Operation::Sep(sep) => sep.forward_rectified(rectified()),
            Operation::Dil(dil) => dil.forward_rectified(rectified()),
        }
    }

    /// The same operation with `f` applied to each of its batch-norm layers (none for `none`,
    /// the identity, and pooling without BN); used to reset and recompute the statistics of one
    /// operation of a supernet without touching the others.
    pub fn map_bn(self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        match self {
            Operation::Pool(pool) => Operation::Pool(pool.map_bn(f)),
            Operation::Reduce(reduce) => Operation::Reduce(reduce.map_bn(f)),
            Operation::Sep(sep) => Operation::Sep(sep.map_bn(f)),
            Operation::Dil(dil) => Operation::Dil(dil.map_bn(f)),
            other @ (Operation::Zero(_) | Operation::Identity(_)) => other,
        }
    }
}

/// The layer mapping a cell input to `c` channels: factorized reduce when the input is at twice
/// the resolution of the cell's other input (it comes from before a reduction cell), otherwise
/// ReLU-conv-BN.
#[derive(Module, Debug)]
pub enum Preprocess {
    /// Same resolution: ReLU, 1x1 convolution, BN.
    Conv(ReluConvBn),
    /// Double resolution: factorized reduce.
    Reduce(FactorizedReduce),
}

impl Preprocess {
    /// Builds the layer from `c_in` to `c_out`; `reduce` halves the resolution.
    pub fn new(
        c_in: usize,
        c_out: usize,
        reduce: bool,
        affine: bool,
        init: &mut ParamInit,
    ) -> Self {
        if reduce {
            Preprocess::Reduce(FactorizedReduce::new(c_in, c_out, affine, init))
        } else {
            Preprocess::Conv(ReluConvBn::new(c_in, c_out, affine, init))
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Preprocess::Conv(layer) => layer.forward(x),
            Preprocess::Reduce(layer) => layer.forward(x),
        }
    }

    /// The same layer with `f` applied to its batch norm.
    pub fn map_bn(self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        match self {
            Preprocess::Conv(layer) => Preprocess::Conv(layer.map_bn(f)),
            Preprocess::Reduce(layer) => Preprocess::Reduce(layer.map_bn(f)),
        }
    }
}
