//! Networks of the inverted-residual chain space ([`crate::space::mobile`]): the inverted
//! residual block, a standalone network for one architecture, and the ProxylessNAS supernet
//! holding every candidate of every block.
//!
//! Batch norm is affine everywhere, as in ProxylessNAS: a block's candidates never mix their
//! outputs (one path runs at a time), so learned scales cannot blur a comparison of weights.

use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn::tensor::module::adaptive_avg_pool2d;

use super::batch_norm::BatchNorm2d;
use super::conv::{Conv2d, ConvSpec};
use super::init::ParamInit;
use super::linear::Linear;
use crate::space::mobile::{BlockChoice, BlockShape, MobileSpace};

/// A bias-free convolution followed by batch norm.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: Conv2d,
    /// Its batch norm.
    pub bn: BatchNorm2d,
}

impl ConvBn {
    fn new(c_in: usize, c_out: usize, spec: ConvSpec, init: &mut ParamInit) -> Self {
        Self::with_affine(c_in, c_out, spec, true, init)
    }

    fn with_affine(
        c_in: usize,
        c_out: usize,
        spec: ConvSpec,
        affine: bool,
        init: &mut ParamInit,
    ) -> Self {
        ConvBn {
            conv: Conv2d::new(c_in, c_out, spec, false, init),
            bn: BatchNorm2d::new(c_out, affine, init),
        }
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.bn = f(self.bn);
        self
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// The MobileNetV2 inverted residual: `[n, c_in, h, w]` to `[n, c_out, ceil(h/s), ceil(w/s)]`.
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1x1 expansion to `expand x c_in` channels, batch norm (ReLU6 follows).
    pub expand: ConvBn,
    /// Depthwise `kernel x kernel` convolution at the block's stride, batch norm (ReLU6 follows).
    pub depthwise: ConvBn,
    /// 1x1 projection to `c_out` channels, batch norm, no activation.
    pub project: ConvBn,
    residual: bool,
}

impl MbConv {
    /// The block for `shape` with a `kernel` depthwise convolution and expansion `expand`.
    pub fn new(shape: BlockShape, kernel: usize, expand: usize, init: &mut ParamInit) -> Self {
        Self::with_affine(shape, kernel, expand, true, init)
    }

    /// The block with batch norm that learns a scale and shift (`affine`) or not.
    pub fn with_affine(
        shape: BlockShape,
        kernel: usize,
        expand: usize,
        affine: bool,
        init: &mut ParamInit,
    ) -> Self {
        let hidden = shape.c_in * expand;
        let depthwise = ConvSpec::new(kernel, shape.stride, kernel / 2).grouped(hidden);
        let pointwise = ConvSpec::new(1, 1, 0);
        MbConv {
            expand: ConvBn::with_affine(shape.c_in, hidden, pointwise, affine, init),
            depthwise: ConvBn::with_affine(hidden, hidden, depthwise, affine, init),
            project: ConvBn::with_affine(hidden, shape.c_out, pointwise, affine, init),
            residual: shape.can_skip(),
        }
    }

    fn map_bn(mut self, f: &impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.expand = self.expand.map_bn(f);
        self.depthwise = self.depthwise.map_bn(f);
        self.project = self.project.map_bn(f);
        self
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu6(self.expand.forward(x.clone()));
        let h = relu6(self.depthwise.forward(h));
        let y = self.project.forward(h);
        if self.residual { y + x } else { y }
    }
}

/// One candidate of a block: an inverted residual or the identity.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum BlockOp {
    /// An inverted residual.
    MbConv(MbConv),
    /// The identity (`skip`).
    Skip(Skip),
}

/// The identity of a skipped block; it holds the width only so that it is a module.
#[derive(Module, Debug)]
pub struct Skip {
    channels: usize,
}

impl BlockOp {
    /// The module computing `choice` on `shape`. `Skip` needs a shape where it fits.
    pub fn new(shape: BlockShape, choice: BlockChoice, init: &mut ParamInit) -> Self {
        Self::with_affine(shape, choice, true, init)
    }

    /// The module with affine batch norm or not.
    pub fn with_affine(
        shape: BlockShape,
        choice: BlockChoice,
        affine: bool,
        init: &mut ParamInit,
    ) -> Self {
        match choice {
            BlockChoice::MbConv { kernel, expand } => {
                BlockOp::MbConv(MbConv::with_affine(shape, kernel, expand, affine, init))
            }
            BlockChoice::Skip => BlockOp::Skip(Skip {
                channels: shape.c_in,
            }),
        }
    }

    /// Applies the candidate.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            BlockOp::MbConv(block) => block.forward(x),
            BlockOp::Skip(_) => x,
        }
    }
}

/// The stem: 3x3 convolution at stride 1, batch norm, ReLU6.
#[derive(Module, Debug)]
pub struct MobileStem {
    /// Convolution and batch norm.
    pub conv: ConvBn,
}

impl MobileStem {
    /// The stem of `space`.
    pub fn new(space: &MobileSpace, init: &mut ParamInit) -> Self {
        MobileStem {
            conv: ConvBn::new(
                space.in_channels,
                space.stem_channels,
                ConvSpec::new(3, 1, 1),
                init,
            ),
        }
    }

    /// `[n, in_channels, s, s]` to `[n, stem_channels, s, s]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu6(self.conv.forward(x))
    }
}

/// The head: 1x1 convolution to `head_channels`, batch norm, ReLU6, global average pooling and
/// a linear classifier.
#[derive(Module, Debug)]
pub struct MobileHead {
    /// The 1x1 convolution and batch norm.
    pub conv: ConvBn,
    /// The classifier.
    pub classifier: Linear,
}

impl MobileHead {
    /// The head of `space`.
    pub fn new(space: &MobileSpace, init: &mut ParamInit) -> Self {
        let spec = ConvSpec::new(1, 1, 0);
        MobileHead {
            conv: ConvBn::new(space.final_channels(), space.head_channels, spec, init),
            classifier: Linear::new(space.head_channels, space.classes, init),
        }
    }

    /// `[n, c, h, w]` features to `[n, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = relu6(self.conv.forward(x));
        let [n, c, _, _] = h.dims();
        let pooled = adaptive_avg_pool2d(h, [1, 1]).reshape([n, c]);
        self.classifier.forward(pooled)
    }
}

/// A standalone network of one architecture of the space.
#[derive(Module, Debug)]
pub struct MobileNetwork {
    /// The stem.
    pub stem: MobileStem,
    /// One module per searchable block.
    pub blocks: Vec<BlockOp>,
    /// The head.
    pub head: MobileHead,
}

impl MobileNetwork {
    /// The network of `arch`, which must fit `space` (see [`MobileSpace::validate`]).
    pub fn new(space: &MobileSpace, arch: &[BlockChoice], init: &mut ParamInit) -> Self {
        let stem = MobileStem::new(space, init);
        let blocks = space
            .blocks()
            .into_iter()
            .zip(arch)
            .map(|(shape, &choice)| BlockOp::new(shape, choice, init))
            .collect();
        let head = MobileHead::new(space, init);
        MobileNetwork { stem, blocks, head }
    }

    /// Images `[n, c, s, s]` to logits `[n, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self.stem.forward(x);
        for block in &self.blocks {
            h = block.forward(h);
        }
        self.head.forward(h)
    }

    /// The forward pass with a clock around each part: milliseconds of the stem, of every
    /// block in order, and of the head. `sync` waits for the device before each reading, so
    /// that a part's time is its own on asynchronous backends too.
    pub fn forward_timed(&self, x: Tensor<4>, sync: impl Fn()) -> Vec<f64> {
        let mut times = Vec::with_capacity(self.blocks.len() + 2);
        let mut clock = |start: std::time::Instant| {
            sync();
            times.push(start.elapsed().as_secs_f64() * 1e3);
        };
        let start = std::time::Instant::now();
        let mut h = self.stem.forward(x);
        clock(start);
        for block in &self.blocks {
            let start = std::time::Instant::now();
            h = block.forward(h);
            clock(start);
        }
        let start = std::time::Instant::now();
        drop(self.head.forward(h));
        clock(start);
        times
    }
}

/// The ProxylessNAS supernet: every candidate of every block, with its own weights. A forward
/// pass runs the candidates a caller picks (see [`crate::search::proxyless`]); architecture
/// weights live outside the module.
#[derive(Module, Debug)]
pub struct MobileSupernet {
    /// The stem.
    pub stem: MobileStem,
    /// For each block, one module per choice of [`BlockShape::choices`], in that order.
    pub blocks: Vec<Vec<BlockOp>>,
    /// The head.
    pub head: MobileHead,
}

impl MobileSupernet {
    /// The supernet of `space`, every candidate drawn independently.
    pub fn new(space: &MobileSpace, init: &mut ParamInit) -> Self {
        Self::with_affine(space, true, init)
    }

    /// The supernet with the candidates' batch norm affine or not (single-path one-shot
    /// training leaves it without scale and shift, so that a candidate's output scale is its
    /// convolutions' alone); the stem and head keep theirs.
    pub fn with_affine(space: &MobileSpace, affine: bool, init: &mut ParamInit) -> Self {
        let stem = MobileStem::new(space, init);
        let blocks = space
            .blocks()
            .into_iter()
            .map(|shape| {
                shape
                    .choices()
                    .into_iter()
                    .map(|choice| BlockOp::with_affine(shape, choice, affine, init))
                    .collect()
            })
            .collect();
        let head = MobileHead::new(space, init);
        MobileSupernet { stem, blocks, head }
    }

    /// Applies `f` to the batch norm layers of the subnet `path`: the stem's, those of the
    /// chosen candidate of every block, and the head's; every other layer is left as it is.
    pub fn map_path_bn(mut self, path: &[usize], f: impl Fn(BatchNorm2d) -> BatchNorm2d) -> Self {
        self.stem.conv = self.stem.conv.map_bn(&f);
        self.head.conv = self.head.conv.map_bn(&f);
        self.blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(b, ops)| {
                let chosen = path.get(b).copied();
                ops.into_iter()
                    .enumerate()
                    .map(|(i, op)| match op {
                        BlockOp::MbConv(block) if Some(i) == chosen => {
                            BlockOp::MbConv(block.map_bn(&f))
                        }
                        other => other,
                    })
                    .collect()
            })
            .collect();
        self
    }

    /// The subnet with candidate `path[b]` (an index into block `b`'s choices) in every block.
    pub fn forward_path(&self, x: Tensor<4>, path: &[usize]) -> Tensor<2> {
        let mut h = self.stem.forward(x);
        for (ops, &i) in self.blocks.iter().zip(path) {
            h = ops[i].forward(h);
        }
        self.head.forward(h)
    }
}
