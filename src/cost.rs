//! Hardware cost from shapes alone: the trainable parameters and the multiply-accumulate
//! operations (MACs) of one forward pass of one image, for every network the project builds,
//! computed without building or running it.
//!
//! # Convention
//!
//! A MAC is one product added to an accumulator. Only convolutions and fully connected layers
//! are counted:
//! - a convolution costs `out_height * out_width * c_out * (c_in / groups) * kernel^2` MACs,
//!   that is its weight count times its output positions. Every kernel tap at every output
//!   position counts, also a tap that falls on zero padding, since the layer computes it like
//!   any other;
//! - a fully connected layer from `d_in` to `d_out` features costs `d_in * d_out`.
//!
//! Batch norm, ReLU, pooling, biases, additions, concatenation and the weighting of a mixed
//! edge's operations by `softmax(alpha)` are not counted: they are a few operations per
//! activation, against hundreds per output of a convolution. FLOPs are taken to be `2 x MACs`
//! (a multiplication and an addition). Papers use both words for the same number; DARTS, for
//! instance, limits its mobile ImageNet networks by multiply-adds.
//!
//! Parameters are the trainable ones, as [`crate::nn::count_parameters`] counts them in the
//! built module: batch-norm running statistics are not parameters.
//!
//! Every count follows the layer definitions of [`crate::nn`] (and, for NAS-Bench-201, those
//! documented at [`crate::multi::spaces::Nb201Space::params`]); the tests check the parameter
//! counts against the modules burn actually allocates.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use crate::nn::conv::ConvSpec;
use crate::nn::layout::{CellLayout, edge_count};
use crate::nn::ops::OpSettings;
use crate::nn::{NetworkConfig, SearchNetworkConfig};
use crate::space::mobile::{BlockChoice, BlockShape, MobileSpace};
use crate::space::{CellGenotype, DartsOp, Genotype};
use crate::{NasError, Result};

/// Parameters and multiply-accumulates of a layer or a network (see the module doc for what
/// is counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cost {
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates of one forward pass of one image.
    pub macs: u64,
}

impl Cost {
    /// Nothing: no parameters, no MACs.
    pub const ZERO: Cost = Cost { params: 0, macs: 0 };

    /// A cost of `params` parameters and `macs` MACs.
    pub fn new(params: u64, macs: u64) -> Self {
        Cost { params, macs }
    }

    /// Floating-point operations, counted as two per MAC (a multiplication and an addition).
    pub fn flops(&self) -> u64 {
        2 * self.macs
    }
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            params: self.params + other.params,
            macs: self.macs + other.macs,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(costs: I) -> Cost {
        costs.fold(Cost::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Cost> for Cost {
    fn sum<I: Iterator<Item = &'a Cost>>(costs: I) -> Cost {
        costs.copied().sum()
    }
}

/// The spatial size of a feature map or an image, at least 1x1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolution {
    height: usize,
    width: usize,
}

impl Resolution {
    /// A `height` x `width` map.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `image size` when either side is 0.
    pub fn new(height: usize, width: usize) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(NasError::config(
                "image size",
                format!("height and width must be at least 1, found {height}x{width}"),
            ));
        }
        Ok(Resolution { height, width })
    }

    /// A `side` x `side` map.
    ///
    /// # Errors
    /// As [`Resolution::new`].
    pub fn square(side: usize) -> Result<Self> {
        Self::new(side, side)
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `height * width`.
    pub fn positions(&self) -> u64 {
        (self.height * self.width) as u64
    }

    /// The size after an operation of `stride` (1 or 2) of the DARTS set: every one of them
    /// pads so that the output side is `ceil(side / stride)`.
    pub fn strided(&self, stride: usize) -> Resolution {
        Resolution {
            height: self.height.div_ceil(stride),
            width: self.width.div_ceil(stride),
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// A bias-free convolution on an `input` map: its cost and its output size. The geometry must
/// fit the input (true of every padded convolution of the DARTS networks on any map of at
/// least 1x1), which is why this stays private.
fn conv(c_in: usize, c_out: usize, spec: ConvSpec, input: Resolution) -> (Cost, Resolution) {
    let output = Resolution {
        height: spec.output_size(input.height),
        width: spec.output_size(input.width),
    };
    let weights = (c_out * (c_in / spec.groups) * spec.kernel * spec.kernel) as u64;
    let cost = Cost {
        params: weights,
        macs: weights * output.positions(),
    };
    (cost, output)
}

/// Batch norm over `channels`: a scale and a shift per channel when `affine`, no MACs.
pub fn batch_norm(channels: usize, affine: bool) -> Cost {
    let params = if affine { 2 * channels as u64 } else { 0 };
    Cost::new(params, 0)
}

/// A fully connected layer with bias from `d_in` to `d_out` features: `d_in * d_out + d_out`
/// parameters, `d_in * d_out` MACs.
pub fn linear(d_in: usize, d_out: usize) -> Cost {
    let weights = (d_in * d_out) as u64;
    Cost::new(weights + d_out as u64, weights)
}

/// The stem: a 3x3 convolution from the image's `in_channels` to `c_out` channels, keeping the
/// size, and an affine batch norm.
pub fn stem(in_channels: usize, c_out: usize, input: Resolution) -> Cost {
    conv(in_channels, c_out, ConvSpec::new(3, 1, 1), input).0 + batch_norm(c_out, true)
}

/// The classifier after global average pooling: a linear layer from `features` to `classes`.
pub fn classifier(features: usize, classes: usize) -> Cost {
    linear(features, classes)
}

/// ReLU, 1x1 convolution from `c_in` to `c_out` channels, batch norm (the preprocessing of a
/// cell input at the cell's resolution).
pub fn relu_conv_bn(c_in: usize, c_out: usize, affine: bool, input: Resolution) -> Cost {
    conv(c_in, c_out, ConvSpec::new(1, 1, 0), input).0 + batch_norm(c_out, affine)
}

/// Factorized reduce from `c_in` to `c_out` (even) channels: two 1x1 stride-2 convolutions to
/// `c_out / 2` channels each, and batch norm over `c_out`. Both give `ceil(side / 2)` outputs per
/// side, odd sides included: the shifted path drops the first row and column and pads one zero
/// row and column at the end, so it convolves a map of the input's own size.
pub fn factorized_reduce(c_in: usize, c_out: usize, affine: bool, input: Resolution) -> Cost {
    let (half, _) = conv(c_in, c_out / 2, ConvSpec::new(1, 2, 0), input);
    half + half + batch_norm(c_out, affine)
}

/// The preprocessing of a cell input: factorized reduce when `reduce` (the input is at twice
/// the cell's resolution), ReLU-conv-BN otherwise.
pub fn preprocess(
    c_in: usize,
    c_out: usize,
    reduce: bool,
    affine: bool,
    input: Resolution,
) -> Cost {
    if reduce {
        factorized_reduce(c_in, c_out, affine, input)
    } else {
        relu_conv_bn(c_in, c_out, affine, input)
    }
}

/// A separable convolution on `c` channels applied twice: depthwise `kernel` x `kernel` at
/// `stride`, pointwise 1x1, batch norm; then the same at stride 1.
fn sep_conv(c: usize, kernel: usize, stride: usize, affine: bool, input: Resolution) -> Cost {
    let pad = kernel / 2;
    let (depthwise1, mid) = conv(c, c, ConvSpec::new(kernel, stride, pad).grouped(c), input);
    let (pointwise1, _) = conv(c, c, ConvSpec::new(1, 1, 0), mid);
    let (depthwise2, _) = conv(c, c, ConvSpec::new(kernel, 1, pad).grouped(c), mid);
    let (pointwise2, _) = conv(c, c, ConvSpec::new(1, 1, 0), mid);
    depthwise1
        + pointwise1
        + depthwise2
        + pointwise2
        + batch_norm(c, affine)
        + batch_norm(c, affine)
}

/// A dilated separable convolution on `c` channels: depthwise `kernel` x `kernel` with dilation
/// 2 at `stride`, pointwise 1x1, batch norm.
fn dil_conv(c: usize, kernel: usize, stride: usize, affine: bool, input: Resolution) -> Cost {
    let spec = ConvSpec::new(kernel, stride, kernel - 1)
        .dilated(2)
        .grouped(c);
    let (depthwise, mid) = conv(c, c, spec, input);
    let (pointwise, _) = conv(c, c, ConvSpec::new(1, 1, 0), mid);
    depthwise + pointwise + batch_norm(c, affine)
}

/// One DARTS operation on `c` channels at `stride` on an `input` map, as
/// [`crate::nn::ops::Operation::new`] builds it with `settings`. `none`, pooling and the
/// identity have no MACs; pooling has batch-norm parameters only when `settings.bn_after_pool`
/// asks for a batch norm, which is never affine; `skip_connect` at a stride other than 1 is a
/// factorized reduce.
pub fn operation(
    op: DartsOp,
    c: usize,
    stride: usize,
    settings: OpSettings,
    input: Resolution,
) -> Cost {
    let affine = settings.affine;
    match op {
        DartsOp::None => Cost::ZERO,
        DartsOp::MaxPool3x3 | DartsOp::AvgPool3x3 if settings.bn_after_pool => batch_norm(c, false),
        DartsOp::MaxPool3x3 | DartsOp::AvgPool3x3 => Cost::ZERO,
        DartsOp::SkipConnect if stride == 1 => Cost::ZERO,
        DartsOp::SkipConnect => factorized_reduce(c, c, affine, input),
        DartsOp::SepConv3x3 => sep_conv(c, 3, stride, affine, input),
        DartsOp::SepConv5x5 => sep_conv(c, 5, stride, affine, input),
        DartsOp::DilConv3x3 => dil_conv(c, 3, stride, affine, input),
        DartsOp::DilConv5x5 => dil_conv(c, 5, stride, affine, input),
    }
}

/// The auxiliary head on a map of `c_in` channels: ReLU and average pooling to 2x2 (whatever
/// the map's size), a 1x1 convolution to 128 channels, batch norm, ReLU, a 2x2 convolution to
/// 768 channels (1x1 output), batch norm, ReLU and a linear layer to `classes`.
pub fn auxiliary_head(c_in: usize, classes: usize) -> Cost {
    let pooled = Resolution {
        height: 2,
        width: 2,
    };
    let (conv1, mid) = conv(c_in, 128, ConvSpec::new(1, 1, 0), pooled);
    let (conv2, _) = conv(128, 768, ConvSpec::new(2, 1, 0), mid);
    conv1 + batch_norm(128, true) + conv2 + batch_norm(768, true) + linear(768, classes)
}

/// The cost of a search network, with the architecture weights apart: they are parameters of
/// the module but not of any network a search produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchNetworkCost {
    /// The network weights and the MACs of one forward pass, in which every operation of every
    /// mixed edge except `none` is computed.
    pub network: Cost,
    /// The two `alpha` tables, `[edges, 8]` each.
    pub architecture_params: u64,
}

impl SearchNetworkCost {
    /// Every parameter of the module: what [`crate::nn::count_parameters`] reports.
    pub fn params(&self) -> u64 {
        self.network.params + self.architecture_params
    }
}

/// The cost of the search network of `config` on `input` images.
///
/// # Errors
/// [`NasError::Config`] when `config` is not a valid search network (see
/// [`SearchNetworkConfig::check`]).
pub fn search_network(
    config: &SearchNetworkConfig,
    input: Resolution,
) -> Result<SearchNetworkCost> {
    config.check()?;
    let settings = OpSettings {
        affine: false,
        bn_after_pool: true,
    };
    let layouts = config.layouts();
    let network = skeleton(
        Skeleton {
            in_channels: config.in_channels,
            num_classes: config.num_classes,
            stem_channels: config.stem_multiplier * config.channels,
            affine: false,
        },
        &layouts,
        input,
        |layout, cell_input| {
            let mut cost = Cost::ZERO;
            for node in 0..config.nodes {
                for state in 0..node + 2 {
                    let (stride, at) = edge_geometry(layout, state, cell_input);
                    cost += DartsOp::ALL
                        .into_iter()
                        .map(|op| operation(op, layout.c, stride, settings, at))
                        .sum();
                }
            }
            cost
        },
        |_, _| {},
    );
    let architecture_params = (2 * edge_count(config.nodes) * DartsOp::ALL.len()) as u64;
    Ok(SearchNetworkCost {
        network,
        architecture_params,
    })
}

/// The cost of a network built from a genotype, with the auxiliary head apart: it runs in
/// training only, so papers report the network without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkCost {
    /// The network without the auxiliary head: what inference costs.
    pub network: Cost,
    /// The auxiliary head, when the configuration has one.
    pub auxiliary: Option<Cost>,
}

impl NetworkCost {
    /// The network and its auxiliary head together: every parameter of the module, and the
    /// MACs of a training forward pass.
    pub fn total(&self) -> Cost {
        self.network + self.auxiliary.unwrap_or(Cost::ZERO)
    }
}

/// The cost of the network of `config` built from `genotype`, on `input` images.
///
/// # Errors
/// [`NasError::Config`] when `config` is not a valid network (see [`NetworkConfig::check`]);
/// [`NasError::Genotype`] when a cell of `genotype` is invalid.
pub fn network(
    config: &NetworkConfig,
    genotype: &Genotype,
    input: Resolution,
) -> Result<NetworkCost> {
    config.check()?;
    genotype.normal.validate("normal")?;
    genotype.reduce.validate("reduce")?;
    let settings = OpSettings {
        affine: true,
        bn_after_pool: false,
    };
    let layouts = config.layouts(genotype);
    let mut auxiliary = None;
    let network = skeleton(
        Skeleton {
            in_channels: config.in_channels,
            num_classes: config.num_classes,
            stem_channels: config.stem_multiplier * config.channels,
            affine: true,
        },
        &layouts,
        input,
        |layout, cell_input| {
            let genes: &CellGenotype = if layout.reduction {
                &genotype.reduce
            } else {
                &genotype.normal
            };
            genes
                .edges
                .iter()
                .map(|edge| {
                    let (stride, at) = edge_geometry(layout, edge.input, cell_input);
                    operation(edge.op, layout.c, stride, settings, at)
                })
                .sum()
        },
        |index, layout| {
            if config.auxiliary && index == config.auxiliary_position() {
                auxiliary = Some(auxiliary_head(layout.c_out, config.num_classes));
            }
        },
    );
    Ok(NetworkCost { network, auxiliary })
}

/// What the two kinds of DARTS network share outside their cells.
struct Skeleton {
    in_channels: usize,
    num_classes: usize,
    stem_channels: usize,
    /// Whether the cells' batch norms are affine (the stem's always is).
    affine: bool,
}

/// Stem, cells and classifier: `edges(layout, r)` is the cost of the operations of a cell
/// whose inputs (after preprocessing) are `r` maps; `visit(index, layout)` sees every cell.
///
/// Each cell reads the outputs of the two cells before it. Input 1 sets the cell's resolution;
/// input 0 is at twice that resolution after a reduction cell and then goes through factorized
/// reduce. A reduction cell outputs `ceil(side / 2)`.
fn skeleton(
    shape: Skeleton,
    layouts: &[CellLayout],
    input: Resolution,
    mut edges: impl FnMut(&CellLayout, Resolution) -> Cost,
    mut visit: impl FnMut(usize, &CellLayout),
) -> Cost {
    let mut cost = stem(shape.in_channels, shape.stem_channels, input);
    let (mut r_prev_prev, mut r_prev) = (input, input);
    for (index, layout) in layouts.iter().enumerate() {
        cost += preprocess(
            layout.c_prev_prev,
            layout.c,
            layout.reduction_prev,
            shape.affine,
            r_prev_prev,
        );
        cost += preprocess(layout.c_prev, layout.c, false, shape.affine, r_prev);
        cost += edges(layout, r_prev);
        visit(index, layout);
        let output = if layout.reduction {
            r_prev.strided(2)
        } else {
            r_prev
        };
        (r_prev_prev, r_prev) = (r_prev, output);
    }
    let features = layouts
        .last()
        .map(|l| l.c_out)
        .unwrap_or(shape.stem_channels);
    cost + classifier(features, shape.num_classes)
}

/// Stride and input size of an edge reading `state` in a cell whose inputs are `cell_input`
/// maps: only the edges from the two cell inputs of a reduction cell have stride 2; edges from
/// intermediate nodes read maps already at the cell's output size.
fn edge_geometry(layout: &CellLayout, state: usize, cell_input: Resolution) -> (usize, Resolution) {
    match (layout.reduction, state < 2) {
        (true, true) => (2, cell_input),
        (true, false) => (1, cell_input.strided(2)),
        (false, _) => (1, cell_input),
    }
}

/// The cost of one block of the inverted-residual space choosing `choice` (nothing for `skip`):
/// a 1x1 expansion on the input map, a depthwise convolution at the block's stride and a 1x1
/// projection on the output map, each with an affine batch norm.
pub fn mobile_block(shape: BlockShape, choice: BlockChoice) -> Cost {
    let BlockChoice::MbConv { kernel, expand } = choice else {
        return Cost::ZERO;
    };
    let hidden = shape.c_in * expand;
    let input = Resolution {
        height: shape.input_size,
        width: shape.input_size,
    };
    let (expansion, _) = conv(shape.c_in, hidden, ConvSpec::new(1, 1, 0), input);
    let spec = ConvSpec::new(kernel, shape.stride, kernel / 2).grouped(hidden);
    let (depthwise, output) = conv(hidden, hidden, spec, input);
    let (projection, _) = conv(hidden, shape.c_out, ConvSpec::new(1, 1, 0), output);
    expansion
        + depthwise
        + projection
        + batch_norm(hidden, true)
        + batch_norm(hidden, true)
        + batch_norm(shape.c_out, true)
}

/// The parts of a network of the inverted-residual space that do not depend on the choices:
/// the stem (3x3 convolution, batch norm) and the head (1x1 convolution, batch norm, linear
/// classifier after pooling).
pub fn mobile_fixed(space: &MobileSpace) -> Cost {
    let image = Resolution {
        height: space.image_size,
        width: space.image_size,
    };
    let stem = conv(
        space.in_channels,
        space.stem_channels,
        ConvSpec::new(3, 1, 1),
        image,
    )
    .0 + batch_norm(space.stem_channels, true);
    let last = Resolution {
        height: space.final_size(),
        width: space.final_size(),
    };
    let head = conv(
        space.final_channels(),
        space.head_channels,
        ConvSpec::new(1, 1, 0),
        last,
    )
    .0 + batch_norm(space.head_channels, true)
        + linear(space.head_channels, space.classes);
    stem + head
}

/// The cost of the network of `arch` in `space`.
///
/// # Errors
/// [`NasError::Config`] when `space` or `arch` is invalid.
pub fn mobile_network(space: &MobileSpace, arch: &[BlockChoice]) -> Result<Cost> {
    space.check()?;
    space.validate(arch)?;
    let blocks: Cost = space
        .blocks()
        .into_iter()
        .zip(arch)
        .map(|(shape, &choice)| mobile_block(shape, choice))
        .sum();
    Ok(mobile_fixed(space) + blocks)
}

/// The parameters of the ProxylessNAS supernet of `space` (every candidate of every block), and
/// the MACs of its largest path.
pub fn mobile_supernet(space: &MobileSpace) -> Cost {
    let mut total = mobile_fixed(space);
    for shape in space.blocks() {
        let costs: Vec<Cost> = shape
            .choices()
            .into_iter()
            .map(|c| mobile_block(shape, c))
            .collect();
        total.params += costs.iter().map(|c| c.params).sum::<u64>();
        total.macs += costs.iter().map(|c| c.macs).max().unwrap_or(0);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVAL: OpSettings = OpSettings {
        affine: true,
        bn_after_pool: false,
    };
    const SEARCH: OpSettings = OpSettings {
        affine: false,
        bn_after_pool: true,
    };

    #[test]
    fn sums_and_flops() {
        let parts = [Cost::new(1, 10), Cost::new(2, 20), Cost::new(3, 30)];
        let total: Cost = parts.iter().sum();
        assert_eq!(total, Cost::new(6, 60));
        assert_eq!(total.flops(), 120);
        let mut c = Cost::ZERO;
        c += Cost::new(4, 5);
        assert_eq!(c, Cost::new(4, 5));
    }

    #[test]
    fn resolutions() {
        let r = Resolution::new(7, 8).unwrap();
        assert_eq!(r.positions(), 56);
        assert_eq!(r.strided(2), Resolution::new(4, 4).unwrap());
        assert_eq!(r.to_string(), "7x8");
        let err = Resolution::new(0, 3).unwrap_err().to_string();
        assert!(err.contains("at least 1, found 0x3"), "{err}");
    }

    /// Layer formulas at one shape, by hand:
    /// - stem 3 -> 6 on 5x5: weights 3*6*9 = 162, MACs 162*25 = 4,050, BN 12 -> (174, 4,050);
    /// - linear 8 -> 3: weights 24, bias 3 -> (27, 24);
    /// - ReLU-conv-BN 4 -> 6 on 3x3, affine: weights 24, MACs 24*9 = 216, BN 12 -> (36, 216);
    /// - factorized reduce 4 -> 6 on 5x5 (output 3x3), not affine: two convs of 4*3 = 12 weights,
    ///   each 12*9 = 108 MACs -> (24, 216);
    /// - auxiliary head 16 -> 10 classes: conv1 16*128 = 2,048 weights on 2x2 = 8,192 MACs;
    ///   conv2 128*768*4 = 393,216 weights on 1x1 = 393,216 MACs; BN 256 + 1,536; linear 7,690
    ///   params, 7,680 MACs -> (404,746, 409,088).
    #[test]
    fn layer_formulas_by_hand() {
        let r = |s| Resolution::square(s).unwrap();
        assert_eq!(stem(3, 6, r(5)), Cost::new(174, 4_050));
        assert_eq!(linear(8, 3), Cost::new(27, 24));
        assert_eq!(relu_conv_bn(4, 6, true, r(3)), Cost::new(36, 216));
        assert_eq!(factorized_reduce(4, 6, false, r(5)), Cost::new(24, 216));
        assert_eq!(preprocess(4, 6, true, false, r(5)), Cost::new(24, 216));
        assert_eq!(auxiliary_head(16, 10), Cost::new(404_746, 409_088));
    }

    /// Search settings put a (non-affine, parameter-free) batch norm after pooling; neither
    /// setting gives pooling or the identity a MAC.
    #[test]
    fn parameter_free_operations() {
        let r = Resolution::square(6).unwrap();
        for settings in [EVAL, SEARCH] {
            for op in [DartsOp::None, DartsOp::MaxPool3x3, DartsOp::AvgPool3x3] {
                for stride in [1, 2] {
                    assert_eq!(operation(op, 8, stride, settings, r), Cost::ZERO);
                }
            }
            assert_eq!(
                operation(DartsOp::SkipConnect, 8, 1, settings, r),
                Cost::ZERO
            );
        }
    }
}
