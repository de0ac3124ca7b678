//! The Once-for-All elastic network (Cai et al. 2020, "Once-for-All: Train One Network and
//! Specialize it for Efficient Deployment", ICLR): one set of weights over the inverted-residual
//! space of [`crate::space::mobile`] from which every subnet runs as it is, without retraining.
//!
//! Three dimensions are elastic (section 3.2 of the paper):
//!
//! - **kernel**: a block stores only its largest depthwise kernel (7x7 in a searchable block).
//!   The 5x5 kernel is the centre 5x5 of the 7x7 passed through a learned 25x25 transform, the
//!   3x3 the centre 3x3 of that (transformed) 5x5 through a learned 9x9 one. As in the paper a
//!   transform belongs to one block and is shared by all its channels; it starts as the
//!   identity, so that a smaller kernel is at first a plain centre crop.
//! - **width**: expansion 3 keeps the first `3 c_in` of the `6 c_in` hidden channels of the
//!   expansion, the depthwise convolution, their batch norms and the projection's input.
//!   [`ElasticNetwork::sort_channels`] moves the most important channels to the front before
//!   width becomes elastic.
//! - **depth**: a stage runs its first `d` blocks. An architecture keeps the space's own form,
//!   one [`BlockChoice`] per block, with the dropped blocks written `skip`
//!   ([`check_arch`] says which architectures elastic depth can reach).
//!
//! Elastic resolution is left to the caller: the network is convolutional up to a global
//! average pooling, so any image side runs.
//!
//! A block whose choice the space fixes (a stage transition while
//! [`MobileSpace::search_transitions`] is off, always k3e6) stores that kernel and width only,
//! with no transform: it is not elastic and always runs.
//!
//! Batch norm is affine, as in the paper. A narrower block normalises with the first channels
//! of its batch norm's scale, shift and running statistics; in training mode it updates the
//! running statistics of those channels only and leaves the others as they were.

use std::fmt;
use std::ops::Range;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn::tensor::module::{batch_norm, conv2d};
use burn::tensor::ops::ConvOptions;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch_norm::BatchNorm2d;
use super::conv::{Conv2d, ConvSpec};
use super::init::ParamInit;
use super::mobile::{BlockOp, ConvBn, MobileHead, MobileNetwork, MobileStem};
use crate::space::mobile::{BlockChoice, BlockShape, MobileSpace};
use crate::{NasError, Result};

/// The epsilon of [`BatchNorm2d`], repeated here for the evaluation of a narrower batch norm,
/// which calls the normalisation kernel directly with a slice of the statistics.
const BN_EPSILON: f64 = 1e-5;

/// One elastic dimension of Once-for-All.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElasticDim {
    /// The depthwise kernel side (7, 5 or 3).
    Kernel,
    /// The number of blocks a stage runs.
    Depth,
    /// The expansion ratio (6 or 3).
    Width,
}

impl ElasticDim {
    /// The order in which progressive shrinking makes the dimensions elastic (section 3.3 of
    /// the paper): kernel, then depth, then width.
    pub const ORDER: [ElasticDim; 3] = [ElasticDim::Kernel, ElasticDim::Depth, ElasticDim::Width];

    /// The lowercase name: `kernel`, `depth` or `width`.
    pub fn name(self) -> &'static str {
        match self {
            ElasticDim::Kernel => "kernel",
            ElasticDim::Depth => "depth",
            ElasticDim::Width => "width",
        }
    }

    /// Reads a lowercase name (surrounding spaces ignored).
    ///
    /// # Errors
    /// [`NasError::Config`] on field `dims` when `text` is none of the three names.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        Self::ORDER
            .into_iter()
            .find(|d| d.name() == text)
            .ok_or_else(|| {
                NasError::config(
                    "dims",
                    format!("unknown elastic dimension `{text}` (expected kernel, depth or width)"),
                )
            })
    }
}

impl fmt::Display for ElasticDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dimensions are elastic; a dimension that is not stays at its largest value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ElasticDims {
    /// Kernel sides 7, 5 and 3 are sampled (otherwise the largest kernel).
    pub kernel: bool,
    /// Stages run fewer blocks (otherwise all of them).
    pub depth: bool,
    /// Expansions 6 and 3 are sampled (otherwise 6).
    pub width: bool,
}

impl ElasticDims {
    /// No elastic dimension: the full network.
    pub const NONE: ElasticDims = ElasticDims {
        kernel: false,
        depth: false,
        width: false,
    };

    /// Every dimension elastic.
    pub const ALL: ElasticDims = ElasticDims {
        kernel: true,
        depth: true,
        width: true,
    };

    /// Whether `dim` is elastic.
    pub fn contains(self, dim: ElasticDim) -> bool {
        match dim {
            ElasticDim::Kernel => self.kernel,
            ElasticDim::Depth => self.depth,
            ElasticDim::Width => self.width,
        }
    }

    /// The same set with `dim` elastic too.
    pub fn with(mut self, dim: ElasticDim) -> Self {
        match dim {
            ElasticDim::Kernel => self.kernel = true,
            ElasticDim::Depth => self.depth = true,
            ElasticDim::Width => self.width = true,
        }
        self
    }

    /// The elastic dimensions in [`ElasticDim::ORDER`].
    pub fn enabled(self) -> Vec<ElasticDim> {
        ElasticDim::ORDER
            .into_iter()
            .filter(|&d| self.contains(d))
            .collect()
    }

    /// Reads names joined by commas, `kernel,depth`; an empty text or `none` is the full
    /// network. A name may repeat; the order of the names does not matter.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `dims` naming the unknown dimension.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(Self::NONE);
        }
        text.split(',').try_fold(Self::NONE, |dims, name| {
            Ok(dims.with(ElasticDim::parse(name)?))
        })
    }
}

impl fmt::Display for ElasticDims {
    /// `none`, or the elastic dimensions joined by commas in [`ElasticDim::ORDER`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.enabled().into_iter().map(ElasticDim::name).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// The kernel sides a block can take, largest first (`[7, 5, 3]` for a searchable block,
/// `[3]` for a fixed transition).
pub fn block_kernels(shape: &BlockShape) -> Vec<usize> {
    let mut kernels: Vec<usize> = shape
        .choices()
        .into_iter()
        .filter_map(|c| match c {
            BlockChoice::MbConv { kernel, .. } => Some(kernel),
            BlockChoice::Skip => None,
        })
        .collect();
    kernels.sort_unstable_by(|a, b| b.cmp(a));
    kernels.dedup();
    kernels
}

/// The expansion ratios a block can take, smallest first (`[3, 6]` for a searchable block,
/// `[6]` for a fixed transition).
pub fn block_expands(shape: &BlockShape) -> Vec<usize> {
    let mut expands: Vec<usize> = shape
        .choices()
        .into_iter()
        .filter_map(|c| match c {
            BlockChoice::MbConv { expand, .. } => Some(expand),
            BlockChoice::Skip => None,
        })
        .collect();
    expands.sort_unstable();
    expands.dedup();
    expands
}

/// The largest choice of a block: its fixed choice, or the largest kernel at the largest
/// expansion (k7e6).
fn largest_choice(shape: &BlockShape) -> BlockChoice {
    match (block_kernels(shape).first(), block_expands(shape).last()) {
        (Some(&kernel), Some(&expand)) => BlockChoice::MbConv { kernel, expand },
        _ => shape.fixed.unwrap_or(BlockChoice::Skip),
    }
}

/// The indices into [`MobileSpace::blocks`] of each stage's blocks.
pub fn stage_ranges(space: &MobileSpace) -> Vec<Range<usize>> {
    let mut start = 0;
    space
        .stages
        .iter()
        .map(|stage| {
            let range = start..start + stage.blocks;
            start = range.end;
            range
        })
        .collect()
}

/// The fewest blocks each stage can run: every block up to the last one that cannot be the
/// identity (the stage's first block in the spaces of [`MobileSpace::cifar`], so 1).
pub fn min_depths(space: &MobileSpace) -> Vec<usize> {
    let blocks = space.blocks();
    stage_ranges(space)
        .into_iter()
        .map(|range| {
            let start = range.start;
            range
                .rev()
                .find(|&b| !blocks[b].can_skip())
                .map_or(0, |b| b - start + 1)
        })
        .collect()
}

/// Checks that elastic depth can reach `arch`: it fits the space ([`MobileSpace::validate`]:
/// one choice per block, `skip` only where the identity fits, fixed blocks unchanged) and in
/// every stage the `skip` blocks come after all the running ones, since a stage of depth `d`
/// runs its first `d` blocks.
///
/// # Errors
/// [`NasError::Config`] on field `architecture` naming the block at fault and the stage.
pub fn check_arch(space: &MobileSpace, arch: &[BlockChoice]) -> Result<()> {
    space.validate(arch)?;
    for (s, range) in stage_ranges(space).into_iter().enumerate() {
        let mut first_skip = None;
        for b in range {
            match (arch[b], first_skip) {
                (BlockChoice::Skip, None) => first_skip = Some(b),
                (BlockChoice::MbConv { .. }, Some(skipped)) => {
                    return Err(NasError::config(
                        "architecture",
                        format!(
                            "block {b} is `{}` after the skipped block {skipped} of stage {s}: \
                             elastic depth runs the first blocks of a stage, so a stage's \
                             `skip` blocks must all come at its end",
                            arch[b]
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An architecture written along the elastic dimensions: a depth per stage and a kernel and an
/// expansion per block. It converts to and from the space's one-choice-per-block form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticArch {
    /// Blocks each stage runs, one per stage.
    pub depths: Vec<usize>,
    /// Depthwise kernel side of every block of the space (read only where the block runs).
    pub kernels: Vec<usize>,
    /// Expansion ratio of every block of the space (read only where the block runs).
    pub expands: Vec<usize>,
}

impl ElasticArch {
    /// The space's form: the first `depths[s]` blocks of stage `s` run as
    /// `k{kernels[b]}e{expands[b]}`, the rest are `skip`.
    ///
    /// # Errors
    /// [`NasError::Config`] on `depths`, `kernels` or `expands` when a length differs from the
    /// space's stages or blocks, on `depths[s]` when a depth is outside what the stage allows,
    /// on `kernels[b]` / `expands[b]` when a running block has no such choice.
    pub fn to_arch(&self, space: &MobileSpace) -> Result<Vec<BlockChoice>> {
        let blocks = space.blocks();
        let lengths = [
            ("depths", self.depths.len(), space.stages.len(), "stage"),
            ("kernels", self.kernels.len(), blocks.len(), "block"),
            ("expands", self.expands.len(), blocks.len(), "block"),
        ];
        for (field, found, expected, what) in lengths {
            if found != expected {
                return Err(NasError::config(
                    field,
                    format!("expected one value per {what} ({expected}), found {found}"),
                ));
            }
        }

        let mut arch = Vec::with_capacity(blocks.len());
        let minima = min_depths(space);
        for (s, range) in stage_ranges(space).into_iter().enumerate() {
            let depth = self.depths[s];
            if depth < minima[s] || depth > range.len() {
                return Err(NasError::config(
                    format!("depths[{s}]"),
                    format!(
                        "stage {s} runs between {} and {} of its blocks (blocks that cannot be \
                         skipped always run), found {depth}",
                        minima[s],
                        range.len()
                    ),
                ));
            }
            for (position, b) in range.enumerate() {
                if position >= depth {
                    arch.push(BlockChoice::Skip);
                    continue;
                }
                let shape = &blocks[b];
                let (kernel, expand) = (self.kernels[b], self.expands[b]);
                if !block_kernels(shape).contains(&kernel) {
                    return Err(NasError::config(
                        format!("kernels[{b}]"),
                        format!(
                            "block {b} takes a kernel among {:?}, found {kernel}",
                            block_kernels(shape)
                        ),
                    ));
                }
                if !block_expands(shape).contains(&expand) {
                    return Err(NasError::config(
                        format!("expands[{b}]"),
                        format!(
                            "block {b} takes an expansion among {:?}, found {expand}",
                            block_expands(shape)
                        ),
                    ));
                }
                arch.push(BlockChoice::MbConv { kernel, expand });
            }
        }
        check_arch(space, &arch)?;
        Ok(arch)
    }

    /// The elastic form of `arch`. A skipped block has no kernel or expansion of its own; it is
    /// given its largest (7 and 6 in a searchable block), so that converting back gives `arch`.
    ///
    /// # Errors
    /// As [`check_arch`].
    pub fn from_arch(space: &MobileSpace, arch: &[BlockChoice]) -> Result<Self> {
        check_arch(space, arch)?;
        let blocks = space.blocks();
        let depths = stage_ranges(space)
            .into_iter()
            .map(|range| range.filter(|&b| arch[b] != BlockChoice::Skip).count())
            .collect();
        let (kernels, expands) = arch
            .iter()
            .zip(&blocks)
            .map(|(&choice, shape)| match (choice, largest_choice(shape)) {
                (BlockChoice::MbConv { kernel, expand }, _)
                | (_, BlockChoice::MbConv { kernel, expand }) => (kernel, expand),
                (BlockChoice::Skip, BlockChoice::Skip) => (0, 0),
            })
            .unzip();
        Ok(ElasticArch {
            depths,
            kernels,
            expands,
        })
    }
}

/// The largest subnet: every block at its largest kernel and expansion (k7e6; a fixed block
/// keeps its choice), every stage at full depth.
pub fn largest_arch(space: &MobileSpace) -> Vec<BlockChoice> {
    space.blocks().iter().map(largest_choice).collect()
}

/// The smallest subnet: every stage at its least depth ([`min_depths`]), the blocks that run at
/// their smallest kernel and expansion (k3e3; a fixed block keeps its choice).
pub fn smallest_arch(space: &MobileSpace) -> Vec<BlockChoice> {
    let blocks = space.blocks();
    let minima = min_depths(space);
    let mut arch = Vec::with_capacity(blocks.len());
    for (range, depth) in stage_ranges(space).into_iter().zip(minima) {
        for (position, b) in range.enumerate() {
            let shape = &blocks[b];
            let smallest = match (block_kernels(shape).last(), block_expands(shape).first()) {
                _ if position >= depth => BlockChoice::Skip,
                (Some(&kernel), Some(&expand)) => BlockChoice::MbConv { kernel, expand },
                _ => largest_choice(shape),
            };
            arch.push(smallest);
        }
    }
    arch
}

/// A subnet drawn as Once-for-All samples one during progressive shrinking: each stage's depth
/// uniformly among those it allows, then each running block's kernel and expansion uniformly
/// among its own. A dimension not in `dims` stays at its largest value (full depth, kernel 7,
/// expansion 6). The stream is read in the same way whatever `dims` says (a depth per stage,
/// then a kernel and an expansion per block, running or not), so that one seed gives related
/// subnets across phases.
pub fn sample_arch(
    space: &MobileSpace,
    dims: &ElasticDims,
    rng: &mut ChaCha8Rng,
) -> Vec<BlockChoice> {
    let blocks = space.blocks();
    let minima = min_depths(space);
    let mut arch = Vec::with_capacity(blocks.len());
    for (range, least) in stage_ranges(space).into_iter().zip(minima) {
        let full = range.len();
        let drawn = rng.random_range(least..=full);
        let depth = if dims.depth { drawn } else { full };
        for (position, b) in range.enumerate() {
            let kernels = block_kernels(&blocks[b]);
            let expands = block_expands(&blocks[b]);
            if kernels.is_empty() || expands.is_empty() {
                arch.push(largest_choice(&blocks[b]));
                continue;
            }
            let kernel = kernels[rng.random_range(0..kernels.len())];
            let expand = expands[rng.random_range(0..expands.len())];
            let choice = BlockChoice::MbConv {
                kernel: if dims.kernel { kernel } else { kernels[0] },
                expand: if dims.width {
                    expand
                } else {
                    expands[expands.len() - 1]
                },
            };
            arch.push(if position < depth {
                choice
            } else {
                BlockChoice::Skip
            });
        }
    }
    arch
}

/// An image side drawn uniformly from `resolutions` (elastic resolution); the only side, with
/// nothing drawn, when there is one, so that a run without elastic resolution reads the stream
/// as before.
///
/// # Panics
/// When `resolutions` is empty (see [`crate::search::ofa::check_resolutions`]).
pub fn sample_resolution(resolutions: &[usize], rng: &mut ChaCha8Rng) -> usize {
    match resolutions {
        [] => panic!("sample_resolution: no image side to draw from"),
        [one] => *one,
        several => several[rng.random_range(0..several.len())],
    }
}

/// An elastic inverted residual: the widest expansion and the largest kernel of the block, plus
/// the kernel transforms; any of the block's choices runs on a part of these weights.
#[derive(Module, Debug)]
pub struct ElasticBlock {
    /// 1x1 expansion to the widest hidden width `H = max expand x c_in`, batch norm over `H`.
    pub expand: ConvBn,
    /// Depthwise convolution, weight `[H, 1, K, K]` with `K` the largest kernel, batch norm.
    pub depthwise: ConvBn,
    /// 1x1 projection from `H` to `c_out`, batch norm over `c_out` (never narrowed).
    pub project: ConvBn,
    /// `transforms[i]` maps the centre `k x k` of kernel `kernels[i]`, flattened row by row, to
    /// kernel `k = kernels[i + 1]`: `[k^2, k^2]`, applied as `w_k = centre(w) M` on each
    /// channel's flattened kernel. 25x25 then 9x9 in a searchable block, none in a fixed one.
    pub transforms: Vec<Param<Tensor<2>>>,
    /// The kernel sides of the block, largest first.
    kernels: Vec<usize>,
    /// The expansion ratios of the block, smallest first.
    expands: Vec<usize>,
    #[module(skip)]
    shape: BlockShape,
}

impl ElasticBlock {
    /// The block for `shape`, at the largest kernel and widest expansion among its choices,
    /// with identity transforms; the convolutions drawn as [`Conv2d::new`] draws them.
    fn new(shape: BlockShape, init: &mut ParamInit) -> Self {
        let kernels = block_kernels(&shape);
        let expands = block_expands(&shape);
        let (kernel, expand) = (kernels[0], expands[expands.len() - 1]);
        let hidden = shape.c_in * expand;
        let pointwise = ConvSpec::new(1, 1, 0);
        let depthwise = ConvSpec::new(kernel, shape.stride, kernel / 2).grouped(hidden);
        let conv_bn = |c_in, c_out, spec, init: &mut ParamInit| ConvBn {
            conv: Conv2d::new(c_in, c_out, spec, false, init),
            bn: BatchNorm2d::new(c_out, true, init),
        };
        let expand_layer = conv_bn(shape.c_in, hidden, pointwise, init);
        let depthwise_layer = conv_bn(hidden, hidden, depthwise, init);
        let project = conv_bn(hidden, shape.c_out, pointwise, init);
        let transforms = kernels[1..]
            .iter()
            .map(|&k| Param::from_tensor(Tensor::eye(k * k, init.device())))
            .collect();
        ElasticBlock {
            expand: expand_layer,
            depthwise: depthwise_layer,
            project,
            transforms,
            kernels,
            expands,
            shape,
        }
    }

    /// The block's geometry.
    pub fn shape(&self) -> BlockShape {
        self.shape
    }

    /// Whether the block can run `choice` (an inverted residual among its choices).
    pub fn supports(&self, choice: BlockChoice) -> bool {
        match choice {
            BlockChoice::MbConv { kernel, expand } => {
                self.kernels.contains(&kernel) && self.expands.contains(&expand)
            }
            BlockChoice::Skip => false,
        }
    }

    /// The depthwise kernel of side `kernel` for the first `hidden` channels,
    /// `[hidden, 1, kernel, kernel]`: the stored kernel cropped to its centre and transformed
    /// step by step down the block's kernel sides (7 to 5 to 3).
    ///
    /// # Panics
    /// When `kernel` is not among the block's kernel sides or `hidden` exceeds its width
    /// (a programming error: architectures are checked before they reach a block).
    pub fn depthwise_kernel(&self, kernel: usize, hidden: usize) -> Tensor<4> {
        assert!(
            self.kernels.contains(&kernel),
            "kernel {kernel} is not among this block's kernels {:?}",
            self.kernels
        );
        let mut weight = self.depthwise.conv.weight.val().narrow(0, 0, hidden);
        for (transform, sides) in self.transforms.iter().zip(self.kernels.windows(2)) {
            let (side, next) = (sides[0], sides[1]);
            if side == kernel {
                break;
            }
            let start = (side - next) / 2;
            let window = start..start + next;
            // [hidden, 1, next, next] -> [hidden, next^2], one row per channel, times the
            // transform shared by every channel.
            let centre = weight.slice([0..hidden, 0..1, window.clone(), window]);
            weight = centre
                .reshape([hidden, next * next])
                .matmul(transform.val())
                .reshape([hidden, 1, next, next]);
        }
        weight
    }

    /// The importance of every hidden channel, `[H]`: the L1 norm of the projection weights
    /// reading it (section 3.2 of the paper, elastic width).
    pub fn channel_importance(&self) -> Tensor<1> {
        let [c_out, hidden, _, _] = self.project.conv.weight.dims();
        self.project
            .conv
            .weight
            .val()
            .abs()
            .reshape([c_out, hidden])
            .sum_dim(0)
            .reshape([hidden])
    }

    /// Applies the block as `k{kernel}e{expand}`: `[n, c_in, h, w]` to
    /// `[n, c_out, ceil(h / stride), ceil(w / stride)]`.
    ///
    /// # Panics
    /// As [`ElasticBlock::depthwise_kernel`], and when `expand` is not among the block's
    /// expansions.
    pub fn forward(&self, x: Tensor<4>, kernel: usize, expand: usize) -> Tensor<4> {
        assert!(
            self.expands.contains(&expand),
            "expansion {expand} is not among this block's expansions {:?}",
            self.expands
        );
        let hidden = self.shape.c_in * expand;

        // [n, c_in, h, w] -> [n, hidden, h, w] with the first `hidden` output channels.
        let expand_weight = self.expand.conv.weight.val().narrow(0, 0, hidden);
        let h = relu6(prefix_bn(
            &self.expand.bn,
            pointwise(x.clone(), expand_weight),
        ));

        let spatial = self.depthwise_kernel(kernel, hidden);
        let padding = (kernel / 2, kernel / 2);
        let options =
            ConvOptions::new_with_padding([self.shape.stride; 2], [padding; 2], [1; 2], hidden);
        let h = relu6(prefix_bn(
            &self.depthwise.bn,
            conv2d(h, spatial, None, options),
        ));

        // [n, hidden, h', w'] -> [n, c_out, h', w'] with the first `hidden` input channels.
        let c_out = self.shape.c_out;
        let project_weight = self.project.conv.weight.val().slice([0..c_out, 0..hidden]);
        let y = self.project.bn.forward(pointwise(h, project_weight));
        if self.shape.can_skip() { y + x } else { y }
    }

    /// The block with its hidden channels in descending order of importance; the function it
    /// computes at full width is unchanged.
    fn sort_channels(mut self) -> Self {
        let importance = tensor_values(self.channel_importance());
        let mut order: Vec<usize> = (0..importance.len()).collect();
        // Stable: channels of equal importance keep their order.
        order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
        let device = self.project.conv.weight.val().device();
        let order: Vec<i64> = order.into_iter().map(|c| c as i64).collect();
        let len = order.len();
        let index = Tensor::<1, Int>::from_ints(TensorData::new(order, [len]), &device);

        // Output channels of the expansion and of the depthwise convolution (dim 0 of
        // `[H, c_in, 1, 1]` and `[H, 1, K, K]`) with their batch norms, input channels of the
        // projection (dim 1 of `[c_out, H, 1, 1]`). The transforms act within a channel's
        // kernel and are shared by all channels, so they stay as they are.
        self.expand.conv.weight = reordered(&self.expand.conv.weight, 0, &index);
        self.expand.bn = reordered_bn(self.expand.bn, &index);
        self.depthwise.conv.weight = reordered(&self.depthwise.conv.weight, 0, &index);
        self.depthwise.bn = reordered_bn(self.depthwise.bn, &index);
        self.project.conv.weight = reordered(&self.project.conv.weight, 1, &index);
        self
    }
}

/// A 1x1 convolution as a batched matrix product, `[n, c_in, h, w]` by weight
/// `[c_out, c_in, 1, 1]`, as [`Conv2d::forward`] computes it, so that the standalone network
/// gives the same numbers.
fn pointwise(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [n, c_in, h, w] = x.dims();
    let [c_out, _, _, _] = weight.dims();
    weight
        .reshape([1, c_out, c_in])
        .matmul(x.reshape([n, c_in, h * w]))
        .reshape([n, c_out, h, w])
}

/// Batch norm of `x`, `[n, c, h, w]`, with the first `c` channels of `bn`.
///
/// In evaluation mode it normalises with the first `c` running statistics. In training mode it
/// normalises with the batch statistics through a copy of `bn` that holds the first `c` running
/// statistics (so the momentum and the update rule are `bn`'s own), then writes the updated
/// `c` values back into `bn`'s running statistics; the other channels keep theirs.
fn prefix_bn(bn: &BatchNorm2d, x: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    if c == bn.running_mean.value().dims()[0] {
        return bn.forward(x);
    }
    let device = x.device();
    let affine = |param: &Option<Param<Tensor<1>>>| param.as_ref().map(|p| p.val().narrow(0, 0, c));
    let (gamma, beta) = (affine(&bn.gamma), affine(&bn.beta));

    if !bn.training.is_enabled() {
        let mean = bn.running_mean.value().to_device(&device).narrow(0, 0, c);
        let var = bn.running_var.value().to_device(&device).narrow(0, 0, c);
        let gamma = gamma.unwrap_or_else(|| Tensor::ones([c], &device));
        let beta = beta.unwrap_or_else(|| Tensor::zeros([c], &device));
        return batch_norm(x, gamma, beta, mean, var, BN_EPSILON);
    }

    let full_mean = bn.running_mean.value_sync();
    let full_var = bn.running_var.value_sync();
    let mut part = bn.clone();
    part.gamma = None;
    part.beta = None;
    part.running_mean = RunningState::new(full_mean.clone().narrow(0, 0, c));
    part.running_var = RunningState::new(full_var.clone().narrow(0, 0, c));
    let y = part.forward(x);
    let stats_device = full_mean.device();
    let mean = part.running_mean.value_sync().to_device(&stats_device);
    let var = part.running_var.value_sync().to_device(&stats_device);
    bn.running_mean
        .update(full_mean.slice_assign(s![0..c], mean));
    bn.running_var.update(full_var.slice_assign(s![0..c], var));

    match (gamma, beta) {
        (Some(g), Some(b)) => y * g.reshape([1, c, 1, 1]) + b.reshape([1, c, 1, 1]),
        _ => y,
    }
}

/// A new parameter holding `param` with its entries along `dim` taken in `index` order. It
/// has a new id, so an optimiser's state for the old order is not applied to the new one.
fn reordered<const D: usize>(
    param: &Param<Tensor<D>>,
    dim: usize,
    index: &Tensor<1, Int>,
) -> Param<Tensor<D>> {
    Param::from_tensor(param.val().select(dim, index.clone()).detach())
}

/// `bn` with its scale, shift and running statistics taken in `index` order.
fn reordered_bn(mut bn: BatchNorm2d, index: &Tensor<1, Int>) -> BatchNorm2d {
    bn.gamma = bn.gamma.as_ref().map(|g| reordered(g, 0, index));
    bn.beta = bn.beta.as_ref().map(|b| reordered(b, 0, index));
    let mean = bn.running_mean.value_sync().select(0, index.clone());
    let var = bn.running_var.value_sync().select(0, index.clone());
    // Fresh states: the old ones may be shared with clones of the network, which keep the old
    // channel order.
    bn.running_mean = RunningState::new(mean);
    bn.running_var = RunningState::new(var);
    bn
}

/// A tensor's values on the host.
fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("values converted to f32 read back as f32")
}

/// The Once-for-All network of a [`MobileSpace`]: the stem and head of
/// [`MobileNetwork`], and one [`ElasticBlock`] per block of the space.
#[derive(Module, Debug)]
pub struct ElasticNetwork {
    /// The stem.
    pub stem: MobileStem,
    /// One elastic block per block of the space.
    pub blocks: Vec<ElasticBlock>,
    /// The head.
    pub head: MobileHead,
    #[module(skip)]
    space: MobileSpace,
}

impl ElasticNetwork {
    /// The network of `space`, drawn from `init` (stem, then blocks in order, then head; every
    /// transform the identity).
    ///
    /// # Errors
    /// As [`MobileSpace::check`], and [`NasError::Config`] on `stages` when a block has no
    /// inverted residual among its choices.
    pub fn new(space: &MobileSpace, init: &mut ParamInit) -> Result<Self> {
        space.check()?;
        let shapes = space.blocks();
        if let Some(b) = shapes.iter().position(|s| block_kernels(s).is_empty()) {
            return Err(NasError::config(
                "stages",
                format!("block {b} has no inverted residual among its choices to make elastic"),
            ));
        }
        let stem = MobileStem::new(space, init);
        let blocks = shapes
            .into_iter()
            .map(|shape| ElasticBlock::new(shape, init))
            .collect();
        let head = MobileHead::new(space, init);
        Ok(ElasticNetwork {
            stem,
            blocks,
            head,
            space: space.clone(),
        })
    }

    /// The space the network covers.
    pub fn space(&self) -> &MobileSpace {
        &self.space
    }

    /// Images `[n, in_channels, s, s]` to logits `[n, classes]` through the subnet `arch`
    /// (the space's form, one choice per block; see [`check_arch`]).
    ///
    /// # Panics
    /// When `arch` is not reachable by elastic depth in this space: check it with
    /// [`check_arch`] first where it comes from a user.
    pub fn forward_subnet(&self, x: Tensor<4>, arch: &[BlockChoice]) -> Tensor<2> {
        if let Err(e) = check_arch(&self.space, arch) {
            panic!("forward_subnet on an unreachable architecture: {e}");
        }
        let mut h = self.stem.forward(x);
        for (block, &choice) in self.blocks.iter().zip(arch) {
            if let BlockChoice::MbConv { kernel, expand } = choice {
                h = block.forward(h, kernel, expand);
            }
        }
        self.head.forward(h)
    }

    /// The largest subnet, [`largest_arch`].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_subnet(x, &largest_arch(&self.space))
    }

    /// The network with every block's hidden channels in descending order of importance
    /// ([`ElasticBlock::channel_importance`]), so that a narrower width keeps the most
    /// important channels (section 3.2 of the paper). The full network computes the same
    /// function. The reordered parameters get new ids: start a new optimiser afterwards, as
    /// the paper does at each phase of progressive shrinking.
    pub fn sort_channels(mut self) -> Self {
        self.blocks = self
            .blocks
            .into_iter()
            .map(ElasticBlock::sort_channels)
            .collect();
        self
    }

    /// The standalone [`MobileNetwork`] of `arch` with the weights of this network: the
    /// stem and head copied, in every running block the first `expand x c_in` hidden channels
    /// and the transformed kernel. Batch norm takes the same channels' scale, shift and
    /// running statistics, and this network's training or evaluation mode; its momentum is
    /// the default 0.1. The copy owns its parameters (new ids, no gradient history).
    ///
    /// # Errors
    /// As [`check_arch`].
    pub fn extract(&self, arch: &[BlockChoice]) -> Result<MobileNetwork> {
        check_arch(&self.space, arch)?;
        let device = self.head.classifier.bias.val().device();
        // The standalone network's own weights are drawn only to be replaced.
        let mut net = MobileNetwork::new(&self.space, arch, &mut ParamInit::new(0, &device));

        let stem_weight = self.stem.conv.conv.weight.val();
        net.stem.conv = copied_conv_bn(&self.stem.conv, net.stem.conv, stem_weight);
        let head_weight = self.head.conv.conv.weight.val();
        net.head.conv = copied_conv_bn(&self.head.conv, net.head.conv, head_weight);
        net.head.classifier.weight = copied(self.head.classifier.weight.val());
        net.head.classifier.bias = copied(self.head.classifier.bias.val());

        net.blocks = net
            .blocks
            .into_iter()
            .zip(&self.blocks)
            .zip(arch)
            .map(|((op, block), &choice)| match (op, choice) {
                (BlockOp::MbConv(mut mb), BlockChoice::MbConv { kernel, expand }) => {
                    let hidden = block.shape.c_in * expand;
                    let c_out = block.shape.c_out;
                    let expand_weight = block.expand.conv.weight.val().narrow(0, 0, hidden);
                    mb.expand = copied_conv_bn(&block.expand, mb.expand, expand_weight);
                    let spatial = block.depthwise_kernel(kernel, hidden);
                    mb.depthwise = copied_conv_bn(&block.depthwise, mb.depthwise, spatial);
                    let project_weight =
                        block.project.conv.weight.val().slice([0..c_out, 0..hidden]);
                    mb.project = copied_conv_bn(&block.project, mb.project, project_weight);
                    BlockOp::MbConv(mb)
                }
                (other, _) => other,
            })
            .collect();
        Ok(net)
    }
}

/// A parameter of its own holding `value`.
fn copied<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(value.detach())
}

/// `target` (a layer of the standalone network, already of the right shape) with convolution
/// weight `weight` and the first channels of `source`'s batch norm. The convolutions of these
/// layers have no bias.
fn copied_conv_bn(source: &ConvBn, mut target: ConvBn, weight: Tensor<4>) -> ConvBn {
    let [channels, _, _, _] = weight.dims();
    target.conv.weight = copied(weight);
    let src = &source.bn;
    let mut bn = target.bn.with_training(src.training.is_enabled());
    let prefix =
        |p: &Option<Param<Tensor<1>>>| p.as_ref().map(|p| copied(p.val().narrow(0, 0, channels)));
    bn.gamma = prefix(&src.gamma);
    bn.beta = prefix(&src.beta);
    bn.running_mean = RunningState::new(src.running_mean.value_sync().narrow(0, 0, channels));
    bn.running_var = RunningState::new(src.running_var.value_sync().narrow(0, 0, channels));
    target.bn = bn;
    target
}
