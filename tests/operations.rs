//! Shapes and parameter counts of the DARTS operations and networks, against hand computation
//! and the published parameter count of DARTS-V2.

use burn::prelude::*;
use burn::tensor::Distribution;
use nasrs::nn::layout::edge_count;
use nasrs::nn::mixed::MixedOp;
use nasrs::nn::ops::{OpSettings, Operation};
use nasrs::nn::{
    Network, NetworkConfig, ParamInit, SearchNetwork, SearchNetworkConfig, count_parameters,
};
use nasrs::space::{DartsOp, published};

const EVAL: OpSettings = OpSettings {
    affine: true,
    bn_after_pool: false,
};
const SEARCH: OpSettings = OpSettings {
    affine: false,
    bn_after_pool: true,
};

fn device() -> Device {
    Device::flex()
}

#[test]
fn every_operation_keeps_size_at_stride_one_and_halves_it_rounding_up_at_stride_two() {
    let device = device();
    let c = 4;
    for size in [7usize, 8, 9, 16] {
        let x = Tensor::<4>::random([2, c, size, size], Distribution::Normal(0.0, 1.0), &device);
        for op in DartsOp::ALL {
            for (stride, expected) in [(1, size), (2, size.div_ceil(2))] {
                for settings in [EVAL, SEARCH] {
                    let mut init = ParamInit::new(1, &device);
                    let module = Operation::new(op, c, stride, settings, &mut init);
                    let y = module.forward(x.clone(), None);
                    assert_eq!(
                        y.dims(),
                        [2, c, expected, expected],
                        "{} stride {stride} on {size}x{size}",
                        op.name()
                    );
                }
            }
        }
    }
}

/// Parameters of each operation on C channels in a trained network (affine BN adds 2 per
/// channel per BN), worked out from the layer definitions:
/// sep_conv_kxk = 2 x (depthwise k*k*C + pointwise C*C + BN 2C); dil_conv_kxk = k*k*C + C*C + 2C;
/// skip at stride 2 = two 1x1 convs C x C/2 + BN 2C.
#[test]
fn operation_parameter_counts_match_hand_computation() {
    let device = device();
    let c = 16;
    let expected = |op: DartsOp, stride: usize| -> usize {
        match op {
            DartsOp::None | DartsOp::MaxPool3x3 | DartsOp::AvgPool3x3 => 0,
            DartsOp::SkipConnect if stride == 1 => 0,
            DartsOp::SkipConnect => 2 * c * (c / 2) + 2 * c,
            DartsOp::SepConv3x3 => 2 * (9 * c + c * c + 2 * c),
            DartsOp::SepConv5x5 => 2 * (25 * c + c * c + 2 * c),
            DartsOp::DilConv3x3 => 9 * c + c * c + 2 * c,
            DartsOp::DilConv5x5 => 25 * c + c * c + 2 * c,
        }
    };
    for op in DartsOp::ALL {
        for stride in [1, 2] {
            let module = Operation::new(op, c, stride, EVAL, &mut ParamInit::new(0, &device));
            assert_eq!(
                count_parameters(&module),
                expected(op, stride),
                "{}",
                op.name()
            );
        }
    }
    // For C = 16: sep3 864, sep5 1376, dil3 432, dil5 688: 3360 in all at stride 1.
    assert_eq!(
        DartsOp::ALL
            .iter()
            .map(|&op| expected(op, 1))
            .sum::<usize>(),
        3360
    );
}

/// The search network has no affine BN anywhere in its operations: a mixed edge on C channels
/// holds only convolution weights, 102 C + 6 C^2 at stride 1 (sep3 18C + 2C^2, sep5 50C + 2C^2,
/// dil3 9C + C^2, dil5 25C + C^2) and C^2 more at stride 2 (the factorized reduce convs).
#[test]
fn mixed_edge_has_no_affine_parameters() {
    let device = device();
    let c = 16;
    let stride1 = MixedOp::new(c, 1, SEARCH, &mut ParamInit::new(0, &device));
    let stride2 = MixedOp::new(c, 2, SEARCH, &mut ParamInit::new(0, &device));
    assert_eq!(count_parameters(&stride1), 102 * c + 6 * c * c);
    assert_eq!(count_parameters(&stride2), 102 * c + 7 * c * c);
}

/// DARTS-V2 in the CIFAR network (20 cells, 36 channels) has 3,349,342 parameters without the
/// auxiliary head and 3,825,768 with it, as counted by the original DARTS code.
#[test]
fn darts_v2_parameter_count_is_the_published_one() {
    let device = device();
    let config = NetworkConfig {
        in_channels: 3,
        num_classes: 10,
        channels: 36,
        cells: 20,
        auxiliary: true,
        stem_multiplier: 3,
    };
    let network = Network::new(
        &config,
        &published::darts_v2(),
        &mut ParamInit::new(0, &device),
    )
    .unwrap();
    let total = count_parameters(&network);
    assert_eq!(total, 3_825_768);
    assert_eq!(total - network.auxiliary_params(), 3_349_342);
}

/// A search network of 5 and of 8 cells runs end to end on odd and even image sizes; wrong
/// channel bookkeeping between cells makes a convolution reject its input. The total parameter
/// count of the 5-cell, 16-channel network (1,276,058 including both 14 x 8 alpha tables) was
/// also printed by the PyTorch peer for the same network (`parameters` in its JSON line).
#[test]
fn search_networks_of_five_and_eight_cells_run() {
    let device = device();
    for (cells, size) in [(5, 8), (8, 9), (5, 32)] {
        let config = SearchNetworkConfig {
            in_channels: 3,
            num_classes: 10,
            channels: if size == 32 { 16 } else { 4 },
            cells,
            nodes: 4,
            stem_multiplier: 3,
        };
        let network = SearchNetwork::new(&config, &mut ParamInit::new(0, &device)).unwrap();
        if size == 32 {
            assert_eq!(count_parameters(&network), 1_276_058);
            continue;
        }
        let x = Tensor::<4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(network.forward(x).dims(), [2, 10]);
        let (normal, reduce) = network.architecture_weights();
        assert_eq!(normal.len(), edge_count(4));
        assert_eq!(reduce[0].len(), 8);
        // softmax rows sum to one.
        assert!(
            normal
                .iter()
                .all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-5)
        );
    }
}

/// Networks from genotypes with 3 and 5 nodes and a non-contiguous concat (the cell output
/// multiplier follows the concat length) run with and without the auxiliary head.
#[test]
fn genotype_networks_run_with_any_node_count() {
    let device = device().autodiff();
    let genotypes = [
        published::darts_v1(),
        nasrs::space::Genotype::parse(
            "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), \
             ('max_pool_3x3', 0), ('avg_pool_3x3', 3), ('none', 1)], normal_concat=[2, 4], \
             reduce=[('skip_connect', 0), ('sep_conv_5x5', 1), ('dil_conv_3x3', 0), \
             ('skip_connect', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 3)], \
             reduce_concat=range(2, 5))",
            "test",
        )
        .unwrap(),
    ];
    for genotype in genotypes {
        for (size, auxiliary) in [(32, true), (28, true), (9, false)] {
            let config = NetworkConfig {
                in_channels: 3,
                num_classes: 7,
                channels: 4,
                cells: 6,
                auxiliary,
                stem_multiplier: 3,
            };
            let network =
                Network::new(&config, &genotype, &mut ParamInit::new(0, &device)).unwrap();
            let x =
                Tensor::<4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            let out = network.forward(x, &nasrs::nn::network::DropPath::new(0.2, 0));
            assert_eq!(out.logits.dims(), [2, 7]);
            assert_eq!(out.auxiliary.map(|a| a.dims()), auxiliary.then_some([2, 7]));
        }
    }
}

/// Average pooling ignores padded zeros: on a 3x3 map of ones every output is exactly 1 (with
/// padding counted the corners would be 4/9). Max pooling pads with minus infinity: on a map of
/// -1 every output is -1, not 0.
#[test]
fn pooling_padding_semantics() {
    let device = device();
    let ones = Tensor::<4>::ones([1, 1, 3, 3], &device);
    let avg = Operation::new(
        DartsOp::AvgPool3x3,
        1,
        1,
        EVAL,
        &mut ParamInit::new(0, &device),
    );
    let y: Vec<f32> = avg
        .forward(ones.clone(), None)
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{y:?}");
    let max = Operation::new(
        DartsOp::MaxPool3x3,
        1,
        1,
        EVAL,
        &mut ParamInit::new(0, &device),
    );
    let y: Vec<f32> = max
        .forward(ones.neg(), None)
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(y.iter().all(|&v| (v + 1.0).abs() < 1e-6), "{y:?}");
}

/// The same seed builds the same network; another seed a different one.
#[test]
fn initialisation_is_seeded() {
    let device = device();
    let config = NetworkConfig {
        in_channels: 1,
        num_classes: 10,
        channels: 4,
        cells: 3,
        auxiliary: false,
        stem_multiplier: 3,
    };
    let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let logits = |seed| -> Vec<f32> {
        let net = Network::new(
            &config,
            &published::darts_v2(),
            &mut ParamInit::new(seed, &device),
        )
        .unwrap();
        net.forward(x.clone(), &nasrs::nn::network::DropPath::off())
            .logits
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    assert_eq!(logits(3), logits(3));
    assert_ne!(logits(3), logits(4));
}

/// Positions of the nonzero outputs of `op` (evaluation mode, so BN is an affine map that keeps
/// zeros) for a single-channel impulse at `(row, col)` of a `size x size` image.
fn footprint(
    op: DartsOp,
    stride: usize,
    size: usize,
    row: usize,
    col: usize,
) -> Vec<(usize, usize, usize)> {
    use burn::module::Module;
    let device = device();
    let channels = 2;
    let module =
        Operation::new(op, channels, stride, EVAL, &mut ParamInit::new(5, &device)).valid();
    let mut pixels = vec![0.0f32; channels * size * size];
    pixels[row * size + col] = 1.0;
    pixels[size * size + row * size + col] = 1.0;
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(pixels, [1, channels, size, size]),
        &device,
    );
    let y = module.forward(x, None);
    let [_, c, h, w] = y.dims();
    let values: Vec<f32> = y.into_data().try_to_vec().unwrap();
    let mut nonzero = Vec::new();
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                if values[(ch * h + i) * w + j].abs() > 1e-7 {
                    nonzero.push((ch, i, j));
                }
            }
        }
    }
    nonzero
}

/// A dilated 3x3 convolution (dilation 2) touches only every other pixel within two of the
/// impulse: a 3x3 grid with spacing 2. A separable 3x3 applied twice spreads over 5x5.
#[test]
fn impulse_responses_show_dilation_and_double_application() {
    let grid: Vec<(usize, usize)> = footprint(DartsOp::DilConv3x3, 1, 9, 4, 4)
        .into_iter()
        .filter(|p| p.0 == 0)
        .map(|p| (p.1, p.2))
        .collect();
    let expected: Vec<(usize, usize)> = [2, 4, 6]
        .iter()
        .flat_map(|&i| [2, 4, 6].map(|j| (i, j)))
        .collect();
    assert_eq!(grid, expected);

    let sep: Vec<_> = footprint(DartsOp::SepConv3x3, 1, 9, 4, 4)
        .into_iter()
        .filter(|p| p.0 == 0)
        .collect();
    // The ReLU between the two applications zeroes some positions, but the response reaches
    // two pixels from the impulse (a single 3x3 would reach one) and never further.
    assert!(
        sep.iter()
            .all(|p| (2..=6).contains(&p.1) && (2..=6).contains(&p.2)),
        "{sep:?}"
    );
    assert!(
        sep.iter()
            .any(|p| p.1 == 2 || p.1 == 6 || p.2 == 2 || p.2 == 6),
        "{sep:?}"
    );
}

/// Factorized reduce: the first half of the output channels samples even pixels, the second
/// half the input shifted by one pixel. An impulse at (1, 1) is missed by the first half and
/// lands at (0, 0) of the second.
#[test]
fn factorized_reduce_reads_the_shifted_input_in_its_second_half() {
    let hits = footprint(DartsOp::SkipConnect, 2, 4, 1, 1);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|&(ch, i, j)| ch >= 1 && i == 0 && j == 0),
        "{hits:?}"
    );
    let hits = footprint(DartsOp::SkipConnect, 2, 4, 2, 2);
    assert!(
        hits.iter().all(|&(ch, i, j)| ch == 0 && i == 1 && j == 1),
        "{hits:?}"
    );
}
