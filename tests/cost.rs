//! Analytic parameter and multiply-accumulate (MAC) counts against three references: hand
//! computation, the modules burn actually builds (their parameter counts, their weights'
//! shapes and their output sizes), and a naive convolution that counts its multiplications.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, TensorData};
use nasrs::cost::{self, Cost, Resolution};
use nasrs::data::{Augment, Dataset, Normalization};
use nasrs::multi::experiment::{Experiment, ExperimentSpec, run_in_memory};
use nasrs::multi::space::{Space, sample};
use nasrs::multi::spaces::{ChainSpace, DartsCellSpace};
use nasrs::multi::store::{Trial, TrialStatus};
use nasrs::multi::strategies::RandomSearch;
use nasrs::multi::trained::{TrainedEstimator, TrainedSettings};
use nasrs::multi::{Constraint, Estimator, Evaluation, Objective, Scoring};
use nasrs::nn::layout::is_reduction;
use nasrs::nn::network::DropPath;
use nasrs::nn::ops::{OpSettings, Operation};
use nasrs::nn::{
    Network, NetworkConfig, ParamInit, SearchNetwork, SearchNetworkConfig, count_parameters,
    named_parameters,
};
use nasrs::space::{CellGenotype, DartsOp, GeneEdge, Genotype, published};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EVAL: OpSettings = OpSettings {
    affine: true,
    bn_after_pool: false,
};
const SEARCH: OpSettings = OpSettings {
    affine: false,
    bn_after_pool: true,
};

fn res(height: usize, width: usize) -> Resolution {
    Resolution::new(height, width).unwrap()
}

/// Every operation on C = 4 channels of a 6x6 map (36 positions; 3x3 = 9 at stride 2) and of a
/// 7x7 map at stride 2 (4x4 = 16), with affine BN. Weights per layer: depthwise k x k: 4k^2
/// (36 for k = 3, 100 for k = 5); pointwise: 4 x 4 = 16; BN: 8 parameters, no MACs. Every layer
/// of an operation outputs at the operation's output size, so MACs = weights x positions:
/// - sep_conv_3x3: 2 x (36 + 16) = 104 weights; 104 x 36 = 3,744 (stride 1), 104 x 9 = 936,
///   104 x 16 = 1,664; params 104 + 2 x 8 = 120;
/// - sep_conv_5x5: 2 x (100 + 16) = 232 weights; 8,352, 2,088, 3,712; params 248;
/// - dil_conv_3x3: 36 + 16 = 52 weights; 1,872, 468, 832; params 60;
/// - dil_conv_5x5: 100 + 16 = 116 weights; 4,176, 1,044, 1,856; params 124;
/// - skip_connect at stride 2 (factorized reduce): two 1x1 convs 4 -> 2, 16 weights; 144, 256;
///   params 24;
/// - none, pooling, skip_connect at stride 1: nothing.
#[test]
fn every_operation_by_hand() {
    let six = res(6, 6);
    let seven = res(7, 7);
    let op =
        |op: DartsOp, stride: usize, input: Resolution| cost::operation(op, 4, stride, EVAL, input);
    let cases = [
        (DartsOp::SepConv3x3, 120, [3_744, 936, 1_664]),
        (DartsOp::SepConv5x5, 248, [8_352, 2_088, 3_712]),
        (DartsOp::DilConv3x3, 60, [1_872, 468, 832]),
        (DartsOp::DilConv5x5, 124, [4_176, 1_044, 1_856]),
    ];
    for (o, params, [s1, s2, odd]) in cases {
        assert_eq!(op(o, 1, six), Cost::new(params, s1), "{}", o.name());
        assert_eq!(op(o, 2, six), Cost::new(params, s2), "{}", o.name());
        assert_eq!(op(o, 2, seven), Cost::new(params, odd), "{}", o.name());
    }
    assert_eq!(op(DartsOp::SkipConnect, 2, six), Cost::new(24, 144));
    assert_eq!(op(DartsOp::SkipConnect, 2, seven), Cost::new(24, 256));
    for o in [DartsOp::None, DartsOp::MaxPool3x3, DartsOp::AvgPool3x3] {
        assert_eq!(op(o, 1, six), Cost::ZERO);
        assert_eq!(op(o, 2, seven), Cost::ZERO);
    }
    assert_eq!(op(DartsOp::SkipConnect, 1, six), Cost::ZERO);
    assert_eq!(op(DartsOp::SepConv3x3, 1, six).flops(), 7_488);
}

/// Against the operations burn builds, at odd, even and non-square sizes: the parameter count
/// is `count_parameters` of the module, and with search settings (BN without parameters) every
/// parameter is a convolution weight applied at each output position of the operation, so the
/// MACs are the parameter count times the output positions burn's forward pass produces.
#[test]
fn operations_match_the_built_modules() {
    let device = Device::flex();
    let c = 4;
    for (h, w) in [(5, 5), (6, 6), (7, 7), (8, 8), (5, 8)] {
        let x = Tensor::<4>::random([1, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        for op in DartsOp::ALL {
            for stride in [1, 2] {
                for settings in [EVAL, SEARCH] {
                    let module =
                        Operation::new(op, c, stride, settings, &mut ParamInit::new(0, &device));
                    let analytic = cost::operation(op, c, stride, settings, res(h, w));
                    let at = format!("{} stride {stride} on {h}x{w}", op.name());
                    assert_eq!(analytic.params, count_parameters(&module) as u64, "{at}");
                    if !settings.affine {
                        let [_, _, oh, ow] = module.forward(x.clone(), None).dims();
                        assert_eq!(analytic.macs, analytic.params * (oh * ow) as u64, "{at}");
                    }
                }
            }
        }
    }
}

/// A convolution written as loops over a zero-padded input, counting every multiplication it
/// performs: `[c_in, h, w]` to `[c_out, h_out, w_out]`, weights `[c_out, c_in / groups, k, k]`.
#[derive(Clone, Copy)]
struct NaiveConv {
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
}

impl NaiveConv {
    fn run(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        weight: &[f32],
        muls: &mut u64,
    ) -> (Vec<f32>, usize, usize) {
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        let h_out = (h + 2 * p - d * (k - 1) - 1) / s + 1;
        let w_out = (w + 2 * p - d * (k - 1) - 1) / s + 1;
        let per_group_in = self.c_in / self.groups;
        let per_group_out = self.c_out / self.groups;
        let pixel = |c: usize, y: isize, x_: isize| -> f32 {
            if y < 0 || x_ < 0 || y >= h as isize || x_ >= w as isize {
                0.0
            } else {
                x[(c * h + y as usize) * w + x_ as usize]
            }
        };
        let mut out = vec![0.0; self.c_out * h_out * w_out];
        for oc in 0..self.c_out {
            let group = oc / per_group_out;
            for oy in 0..h_out {
                for ox in 0..w_out {
                    let mut acc = 0.0;
                    for ic in 0..per_group_in {
                        let c = group * per_group_in + ic;
                        for ky in 0..k {
                            for kx in 0..k {
                                let y = (oy * s + ky * d) as isize - p as isize;
                                let x_ = (ox * s + kx * d) as isize - p as isize;
                                let wv = weight[((oc * per_group_in + ic) * k + ky) * k + kx];
                                acc += wv * pixel(c, y, x_);
                                *muls += 1;
                            }
                        }
                    }
                    out[(oc * h_out + oy) * w_out + ox] = acc;
                }
            }
        }
        (out, h_out, w_out)
    }

    fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kernel * self.kernel
    }
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// The naive convolution computes what burn's `conv2d` computes (depthwise, dilated and strided
/// geometries of the DARTS operations), so its multiplication count is a count of the
/// convolution as the framework defines it; chained into sep_conv_3x3, sep_conv_5x5,
/// dil_conv_3x3 and dil_conv_5x5 (BN and ReLU have no multiplications in the count), its total
/// equals the analytic MACs, and its output size equals that of the operation burn builds.
#[test]
fn separable_and_dilated_convolutions_match_a_naive_count() {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let c = 3;
    for (h, w) in [(5, 5), (6, 7)] {
        let x: Vec<f32> = (0..c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        for (op, kernel, dilation) in [
            (DartsOp::SepConv3x3, 3, 1),
            (DartsOp::SepConv5x5, 5, 1),
            (DartsOp::DilConv3x3, 3, 2),
            (DartsOp::DilConv5x5, 5, 2),
        ] {
            for stride in [1, 2] {
                let padding = if dilation == 1 {
                    kernel / 2
                } else {
                    kernel - 1
                };
                let depthwise = |stride| NaiveConv {
                    c_in: c,
                    c_out: c,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    groups: c,
                };
                let pointwise = NaiveConv {
                    c_in: c,
                    c_out: c,
                    kernel: 1,
                    stride: 1,
                    padding: 0,
                    dilation: 1,
                    groups: 1,
                };
                let layers = if dilation == 1 {
                    vec![depthwise(stride), pointwise, depthwise(1), pointwise]
                } else {
                    vec![depthwise(stride), pointwise]
                };

                let mut muls = 0;
                let (mut y, mut yh, mut yw) = (x.clone(), h, w);
                for layer in &layers {
                    let weight: Vec<f32> = (0..layer.weight_len())
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect();
                    let (out, oh, ow) = layer.run(&y, yh, yw, &weight, &mut muls);

                    // The same layer in burn gives the same values.
                    let input =
                        Tensor::<4>::from_data(TensorData::new(y.clone(), [1, c, yh, yw]), &device);
                    let kernel_tensor = Tensor::<4>::from_data(
                        TensorData::new(
                            weight,
                            [
                                layer.c_out,
                                layer.c_in / layer.groups,
                                layer.kernel,
                                layer.kernel,
                            ],
                        ),
                        &device,
                    );
                    let options = ConvOptions::new(
                        [layer.stride; 2],
                        [layer.padding; 2],
                        [layer.dilation; 2],
                        layer.groups,
                    );
                    let reference = conv2d(input, kernel_tensor, None, options);
                    assert_eq!(reference.dims(), [1, c, oh, ow]);
                    for (a, b) in values(reference).iter().zip(&out) {
                        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                    }
                    (y, yh, yw) = (out, oh, ow);
                }

                let at = format!("{} stride {stride} on {h}x{w}", op.name());
                let analytic = cost::operation(op, c, stride, EVAL, res(h, w));
                assert_eq!(analytic.macs, muls, "{at}");
                let module = Operation::new(op, c, stride, EVAL, &mut ParamInit::new(0, &device));
                let input =
                    Tensor::<4>::from_data(TensorData::new(x.clone(), [1, c, h, w]), &device);
                assert_eq!(module.forward(input, None).dims(), [1, c, yh, yw], "{at}");
            }
        }
    }
}

/// MACs of a whole network from the module burn builds, independently of `nasrs::cost`: every
/// convolution or linear weight is applied once per output position of its layer. Preprocessing
/// layers output at the resolution of the cell's inputs, every operation of a cell at the cell's
/// output resolution (halved, rounding up, in a reduction cell); the auxiliary head's first
/// convolution runs on a 2x2 map and everything after it on 1x1. Returns (network, auxiliary).
fn macs_of_module<M: Module>(module: &M, input: Resolution, cells: usize) -> (u64, u64) {
    let mut inputs = Vec::with_capacity(cells);
    let (mut h, mut w) = (input.height(), input.width());
    let mut outputs = Vec::with_capacity(cells);
    for index in 0..cells {
        inputs.push((h * w) as u64);
        if is_reduction(index, cells) {
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
        }
        outputs.push((h * w) as u64);
    }
    let (mut network, mut auxiliary) = (0, 0);
    for (path, _, weights) in named_parameters(module) {
        let parts: Vec<&str> = path.split('.').collect();
        // Biases, batch-norm scales and shifts and architecture weights cost no MACs.
        if parts.last() != Some(&"weight") {
            continue;
        }
        let n = weights.len() as u64;
        match parts[0] {
            "stem_conv" => network += n * input.positions(),
            "classifier" => network += n,
            "auxiliary" if path.contains("conv1") => auxiliary += 4 * n,
            "auxiliary" => auxiliary += n,
            "cells" => {
                let cell: usize = parts[1].parse().unwrap_or_else(|_| panic!("{path}"));
                if parts[2].starts_with("preprocess") {
                    network += n * inputs[cell];
                } else {
                    network += n * outputs[cell];
                }
            }
            _ => panic!("unexpected parameter {path}"),
        }
    }
    (network, auxiliary)
}

fn genotype(normal: &[(DartsOp, usize)], reduce: &[(DartsOp, usize)]) -> Genotype {
    let cell = |edges: &[(DartsOp, usize)]| CellGenotype {
        edges: edges
            .iter()
            .map(|&(op, input)| GeneEdge { op, input })
            .collect(),
        concat: (2..edges.len() / 2 + 2).collect(),
    };
    Genotype {
        normal: cell(normal),
        reduce: cell(reduce),
    }
}

/// A network small enough to count by hand: 1 input channel, 3 classes, C = 2, 3 cells
/// (reductions at cells 1 and 2), one node per cell; normal cell sep_conv_3x3 on input 0 and
/// skip_connect on input 1, reduction cell dil_conv_3x3 on input 0 and skip_connect on input 1;
/// 5x5 images, so cell 1 outputs 3x3 and cell 2 2x2. (params, MACs):
/// - stem 1 -> 6, 3x3 on 5x5: 54 weights, 54 x 25 = 1,350 MACs, BN 12: (66, 1,350);
/// - cell 0 (C = 2, 5x5): preprocess 6 -> 2 twice: 12 weights x 25 = 300, BN 4: 2 x (16, 300);
///   sep_conv_3x3: 18 + 4 + 18 + 4 = 44 weights x 25 = 1,100, BN 8: (52, 1,100); total
///   (84, 1,700);
/// - cell 1 (C = 4, reduction): preprocess 6 -> 4 at 5x5: 24 x 25 = 600, BN 8: (32, 600);
///   2 -> 4: (16, 200); dil_conv_3x3 at stride 2 to 3x3: 36 + 16 = 52 weights x 9 = 468,
///   BN 8: (60, 468); skip at stride 2, factorized reduce 4 -> 4: 16 weights x 9 = 144, BN 8:
///   (24, 144); total (132, 1,412);
/// - cell 2 (C = 8, reduction after a reduction): preprocess 0 is factorized reduce 2 -> 8 from
///   5x5 to 3x3: 16 weights x 9 = 144, BN 16: (32, 144); preprocess 1 4 -> 8 at 3x3:
///   32 x 9 = 288, BN 16: (48, 288); dil_conv_3x3 to 2x2: 72 + 64 = 136 x 4 = 544, BN 16:
///   (152, 544); factorized reduce 8 -> 8 to 2x2: 64 x 4 = 256, BN 16: (80, 256); total
///   (312, 1,232);
/// - classifier 8 -> 3: (27, 24).
///
/// Network: 66 + 84 + 132 + 312 + 27 = 621 parameters, 1,350 + 1,700 + 1,412 + 1,232 + 24 =
/// 5,718 MACs. Auxiliary head on cell 2's 8 channels: 1x1 conv 8 -> 128 on 2x2 (1,024 weights,
/// 4,096 MACs), BN 256, 2x2 conv 128 -> 768 (393,216 weights and MACs), BN 1,536, linear
/// 768 -> 3 (2,307 parameters, 2,304 MACs): (398,339, 399,616).
#[test]
fn tiny_network_by_hand() {
    let genes = genotype(
        &[(DartsOp::SepConv3x3, 0), (DartsOp::SkipConnect, 1)],
        &[(DartsOp::DilConv3x3, 0), (DartsOp::SkipConnect, 1)],
    );
    let config = NetworkConfig {
        in_channels: 1,
        num_classes: 3,
        channels: 2,
        cells: 3,
        auxiliary: true,
        stem_multiplier: 3,
    };
    let input = res(5, 5);
    let counted = cost::network(&config, &genes, input).unwrap();
    assert_eq!(counted.network, Cost::new(621, 5_718));
    assert_eq!(counted.auxiliary, Some(Cost::new(398_339, 399_616)));
    assert_eq!(counted.total(), Cost::new(398_960, 405_334));

    // The built network agrees, and runs on 5x5 images.
    let device = Device::flex();
    let network = Network::new(&config, &genes, &mut ParamInit::new(0, &device)).unwrap();
    assert_eq!(count_parameters(&network), 398_960);
    assert_eq!(macs_of_module(&network, input, 3), (5_718, 399_616));
    let x = Tensor::<4>::zeros([2, 1, 5, 5], &device);
    assert_eq!(network.forward(x, &DropPath::off()).logits.dims(), [2, 3]);

    let without = NetworkConfig {
        auxiliary: false,
        ..config
    };
    let counted = cost::network(&without, &genes, input).unwrap();
    assert_eq!(counted.auxiliary, None);
    assert_eq!(counted.total(), Cost::new(621, 5_718));
}

/// The published DARTS-V2 figures: 3,349,342 parameters without the auxiliary head and
/// 3,825,768 with it (20 cells, 36 channels, CIFAR-10); the MACs per 32x32 image agree with
/// those read off the built module.
#[test]
fn darts_v2_matches_the_published_parameter_count() {
    let config = NetworkConfig {
        in_channels: 3,
        num_classes: 10,
        channels: 36,
        cells: 20,
        auxiliary: true,
        stem_multiplier: 3,
    };
    let input = res(32, 32);
    let counted = cost::network(&config, &published::darts_v2(), input).unwrap();
    assert_eq!(counted.network.params, 3_349_342);
    assert_eq!(counted.total().params, 3_825_768);

    let device = Device::flex();
    let network = Network::new(
        &config,
        &published::darts_v2(),
        &mut ParamInit::new(0, &device),
    )
    .unwrap();
    let (macs, auxiliary) = macs_of_module(&network, input, 20);
    assert_eq!(counted.network.macs, macs);
    // The figure the README quotes; the reading of the module above is its reference.
    assert_eq!(macs, 528_359_040);
    assert_eq!(counted.auxiliary.map(|a| a.macs), Some(auxiliary));
}

/// 60 random genotypes from the DARTS cell space (1 to 5 nodes), at 1 to 8 cells, 2 to 8
/// channels, 1 or 3 image channels, 2 or 10 classes, with and without the auxiliary head, on
/// odd, even and non-square images: parameters equal `count_parameters` of the built network
/// (and of its auxiliary head), MACs equal those read off the built module.
#[test]
fn random_genotypes_match_the_built_networks() {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let sizes = [(5, 5), (8, 8), (7, 9), (12, 12), (9, 9), (16, 11)];
    for i in 0..60 {
        let nodes = 1 + i % 5;
        let space = DartsCellSpace::new(nodes).unwrap();
        let arch = sample(&space, &mut rng);
        let genes = space.genotype(&arch);
        let cells = [1, 2, 3, 4, 5, 6, 8][rng.random_range(0..7)];
        let config = NetworkConfig {
            in_channels: [1, 3][i % 2],
            num_classes: [2, 10][(i / 2) % 2],
            channels: [2, 4, 6, 8][rng.random_range(0..4)],
            cells,
            auxiliary: cells >= 3 && rng.random_bool(0.5),
            stem_multiplier: 3,
        };
        let (h, w) = sizes[i % sizes.len()];
        let input = res(h, w);
        let at = format!("{config:?} {h}x{w} {}", space.key(&arch));

        let counted = cost::network(&config, &genes, input).unwrap();
        let network = Network::new(&config, &genes, &mut ParamInit::new(0, &device)).unwrap();
        assert_eq!(
            counted.total().params,
            count_parameters(&network) as u64,
            "{at}"
        );
        let auxiliary = counted.auxiliary.map(|a| a.params).unwrap_or(0);
        assert_eq!(auxiliary, network.auxiliary_params() as u64, "{at}");
        assert_eq!(counted.auxiliary.is_some(), config.auxiliary, "{at}");
        let (macs, auxiliary_macs) = macs_of_module(&network, input, cells);
        assert_eq!(counted.network.macs, macs, "{at}");
        assert_eq!(
            counted.auxiliary.map(|a| a.macs).unwrap_or(0),
            auxiliary_macs,
            "{at}"
        );
    }
}

/// The search network at several shapes: network parameters plus the two `[edges, 8]` alpha
/// tables equal `count_parameters` of the built module, and its MACs (every operation of every
/// mixed edge but `none`) equal those read off the module.
#[test]
fn search_networks_match_the_built_modules() {
    let device = Device::flex();
    for (cells, channels, nodes, in_channels, (h, w)) in [
        (3, 4, 1, 1, (5, 5)),
        (3, 2, 2, 3, (8, 8)),
        (4, 4, 3, 1, (7, 9)),
        (5, 6, 4, 3, (9, 9)),
        (5, 8, 4, 3, (32, 32)),
        (8, 4, 2, 1, (12, 12)),
    ] {
        let config = SearchNetworkConfig {
            in_channels,
            num_classes: 10,
            channels,
            cells,
            nodes,
            stem_multiplier: 3,
        };
        let input = res(h, w);
        let counted = cost::search_network(&config, input).unwrap();
        let network = SearchNetwork::new(&config, &mut ParamInit::new(0, &device)).unwrap();
        let edges: u64 = (0..nodes as u64).map(|i| i + 2).sum();
        assert_eq!(counted.architecture_params, 2 * edges * 8, "{config:?}");
        assert_eq!(
            counted.params(),
            count_parameters(&network) as u64,
            "{config:?}"
        );
        assert_eq!(
            counted.network.macs,
            macs_of_module(&network, input, cells).0,
            "{config:?}"
        );
    }
}

/// Shapes no network can have are errors, not panics.
#[test]
fn invalid_shapes_are_errors() {
    assert!(Resolution::new(32, 0).is_err());
    let config = SearchNetworkConfig {
        in_channels: 3,
        num_classes: 10,
        channels: 5,
        cells: 5,
        nodes: 4,
        stem_multiplier: 3,
    };
    let err = cost::search_network(&config, res(8, 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("channels"), "{err}");
    let mut bad = published::darts_v2();
    bad.normal.edges[3].input = 9;
    let config = NetworkConfig {
        in_channels: 3,
        num_classes: 10,
        channels: 16,
        cells: 8,
        auxiliary: false,
        stem_multiplier: 3,
    };
    let err = cost::network(&config, &bad, res(32, 32))
        .unwrap_err()
        .to_string();
    assert!(err.contains("normal"), "{err}");
}

/// Parameters of a chain architecture for [`Guarded`]: 100 per unit of its option indices.
fn chain_params(arch: &[usize]) -> f64 {
    100.0 * arch.iter().sum::<usize>() as f64
}

/// An estimator that knows parameter counts in advance and panics when asked to evaluate an
/// architecture over `limit`, so that a run which evaluates one fails the test.
struct Guarded {
    limit: f64,
}

impl Estimator for Guarded {
    fn describe(&self) -> String {
        format!("guarded at {} parameters", self.limit)
    }

    fn metrics(&self) -> Vec<String> {
        vec!["score".into(), "params".into()]
    }

    fn selection_metric(&self) -> (String, bool) {
        ("score".into(), false)
    }

    fn deterministic(&self) -> bool {
        true
    }

    fn cost(&self, _space: &dyn Space, arch: &[usize]) -> Option<BTreeMap<String, f64>> {
        Some(BTreeMap::from([("params".into(), chain_params(arch))]))
    }

    fn evaluate(
        &self,
        _space: &dyn Space,
        arch: &[usize],
        _seed: u64,
    ) -> nasrs::Result<Evaluation> {
        let params = chain_params(arch);
        assert!(
            params <= self.limit,
            "evaluate was called for {arch:?}, which has {params} > {} parameters",
            self.limit
        );
        Ok(Evaluation {
            metrics: BTreeMap::from([("score".into(), -params), ("params".into(), params)]),
            epochs: 1.0,
            seconds: 0.0,
        })
    }
}

/// Checks the trials of a run over every architecture of the 4-layer, 3-option chain with the
/// constraint `params<=400`: the 50 architectures whose option indices sum to at most 4 are
/// evaluated, the other 31 are failed trials with the violated bound as their reason.
fn check_rejections(trials: &[Trial]) {
    assert_eq!(trials.len(), 81);
    let mut evaluated = 0;
    for trial in trials {
        let params = chain_params(&trial.arch);
        if params <= 400.0 {
            assert_eq!(trial.status, TrialStatus::Done, "{}", trial.key);
            evaluated += 1;
        } else {
            assert_eq!(trial.status, TrialStatus::Failed, "{}", trial.key);
            assert_eq!(
                trial.error.as_deref(),
                Some(format!("rejected before evaluation: params {params} > 400").as_str())
            );
        }
    }
    // Four values in 0..=2 sum to 8 in 1 way, to 7 in 4, to 6 in 10 and to 5 in 16 (by symmetry
    // with sums 0, 1, 2 and 3: 1, 4, 10 and 16 ways), so 31 of the 81 sums exceed 4.
    assert_eq!(evaluated, 81 - 31);
}

#[test]
fn constraint_violations_known_in_advance_are_never_evaluated() {
    let space = ChainSpace::new(4, &["a", "b", "c"]).unwrap();
    let estimator = Guarded { limit: 400.0 };
    let scoring = || Scoring {
        objectives: vec!["score".parse::<Objective>().unwrap()],
        constraints: vec!["params<=400".parse::<Constraint>().unwrap()],
    };
    let spec = || ExperimentSpec {
        space: &space,
        estimator: &estimator,
        strategy: Box::new(RandomSearch::new(3)),
        scoring: scoring(),
        budget: 81,
        seed: 5,
    };
    check_rejections(&run_in_memory(spec()).unwrap());

    // The same with a store and two workers.
    let dir = std::env::temp_dir().join(format!("nasrs-cost-reject-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let experiment = Experiment::create(&dir, spec()).unwrap();
    experiment.run(2).unwrap();
    let trials = experiment.trials().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    check_rejections(&trials);
}

/// A dataset of `n` blank 1-channel `size` x `size` images of 2 classes.
fn blank_dataset(n: usize, size: usize) -> Arc<Dataset> {
    Arc::new(Dataset {
        name: "blank".into(),
        images: vec![0; n * size * size],
        labels: (0..n).map(|i| (i % 2) as u8).collect(),
        channels: 1,
        height: size,
        width: size,
        num_classes: 2,
        pixel_max: 255.0,
    })
}

/// The training estimator's advance metrics are the analytic counts of the network it would
/// train (on the dataset's image size); with a parameter bound below every network, a search
/// trains nothing and records every trial as rejected.
#[test]
fn training_estimator_rejects_before_training() {
    let data = blank_dataset(4, 9);
    let settings = TrainedSettings {
        cells: 3,
        channels: 4,
        epochs: 1,
        patience: None,
        batch_size: 2,
        lr: 0.01,
    };
    let estimator = TrainedEstimator::new(
        settings,
        "blank",
        data.clone(),
        vec![0, 1],
        vec![2, 3],
        data,
        Normalization::identity(1),
        Augment::none(),
        Device::flex(),
    )
    .unwrap();
    assert!(estimator.metrics().contains(&"macs".to_string()));

    let space = DartsCellSpace::new(2).unwrap();
    let arch = sample(&space, &mut ChaCha8Rng::seed_from_u64(1));
    let config = NetworkConfig {
        in_channels: 1,
        num_classes: 2,
        channels: 4,
        cells: 3,
        auxiliary: false,
        stem_multiplier: 3,
    };
    let expected = cost::network(&config, &space.genotype(&arch), res(9, 9))
        .unwrap()
        .network;
    let known = estimator.cost(&space, &arch).unwrap();
    assert_eq!(known["params"], expected.params as f64);
    assert_eq!(known["macs"], expected.macs as f64);
    let chain = ChainSpace::new(2, &["a", "b"]).unwrap();
    assert_eq!(estimator.cost(&chain, &[0, 1]), None);

    let trials = run_in_memory(ExperimentSpec {
        space: &space,
        estimator: &estimator,
        strategy: Box::new(RandomSearch::new(0)),
        scoring: Scoring {
            objectives: vec!["valid_accuracy".parse::<Objective>().unwrap()],
            constraints: vec!["params<=100".parse::<Constraint>().unwrap()],
        },
        budget: 3,
        seed: 0,
    })
    .unwrap();
    assert_eq!(trials.len(), 3);
    for trial in trials {
        assert_eq!(trial.status, TrialStatus::Failed);
        let error = trial.error.unwrap();
        assert!(
            error.starts_with("rejected before evaluation: params "),
            "{error}"
        );
        assert!(error.ends_with(" > 100"), "{error}");
    }
}
