//! The inverted-residual chain space (ProxylessNAS on 32x32 images): analytic parameter and
//! multiply-accumulate (MAC) counts against hand computation and against the modules burn
//! builds, the shapes the networks and the supernet produce, and the rejection of invalid
//! architectures.
//!
//! Two variants of the CIFAR space are checked: the default (`MobileSpace::cifar`), where the
//! first block of every stage (0, 2, 5, 8) is fixed to `MobileSpace::TRANSITION` (k3e6), and
//! the same space with `search_transitions: true`, where those blocks choose among the six
//! inverted residuals too.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use nasrs::cost::{self, Cost};
use nasrs::nn::mobile::{BlockOp, MbConv, MobileNetwork, MobileSupernet};
use nasrs::nn::{ParamInit, count_parameters};
use nasrs::space::mobile::{BlockChoice, BlockShape, MobileSpace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const fn mb(kernel: usize, expand: usize) -> BlockChoice {
    BlockChoice::MbConv { kernel, expand }
}

const SKIP: BlockChoice = BlockChoice::Skip;

/// The stage-opening blocks of the CIFAR space (width or resolution changes, no identity).
const TRANSITIONS: [usize; 4] = [0, 2, 5, 8];

/// The default CIFAR space: stage transitions fixed to k3e6.
fn cifar() -> MobileSpace {
    MobileSpace::cifar(3, 32, 10)
}

/// The CIFAR space with every block searched.
fn cifar_all() -> MobileSpace {
    MobileSpace {
        search_transitions: true,
        ..MobileSpace::cifar(3, 32, 10)
    }
}

/// A searchable block's geometry.
fn shape(c_in: usize, c_out: usize, stride: usize, input_size: usize) -> BlockShape {
    BlockShape {
        c_in,
        c_out,
        stride,
        input_size,
        fixed: None,
    }
}

/// The same geometry fixed to the transition block.
fn fixed(shape: BlockShape) -> BlockShape {
    BlockShape {
        fixed: Some(MobileSpace::TRANSITION),
        ..shape
    }
}

/// An architecture of `space`: the fixed choice where a block has one, else `other(shape)`.
fn arch_with(space: &MobileSpace, other: impl Fn(&BlockShape) -> BlockChoice) -> Vec<BlockChoice> {
    space
        .blocks()
        .iter()
        .map(|s| s.fixed.unwrap_or_else(|| other(s)))
        .collect()
}

fn random_arch(space: &MobileSpace, rng: &mut ChaCha8Rng) -> Vec<BlockChoice> {
    space
        .blocks()
        .iter()
        .map(|s| {
            let choices = s.choices();
            choices[rng.random_range(0..choices.len())]
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

fn weights<const D: usize>(p: &Param<Tensor<D>>) -> u64 {
    p.lazy_shape().num_elements() as u64
}

/// The MACs of `net` on one image, read off the built modules: every convolution's weight count
/// times the output positions burn's forward pass gives it, and the classifier's weight count.
/// Also returns the `[n, c, h, w]` output of every block, in order.
fn module_macs(net: &MobileNetwork, x: Tensor<4>) -> (u64, Vec<[usize; 4]>) {
    let positions = |t: &Tensor<4>| {
        let [_, _, h, w] = t.dims();
        (h * w) as u64
    };
    let conv = &net.stem.conv.conv;
    let mut macs = weights(&conv.weight) * positions(&conv.forward(x.clone()));
    let mut h = net.stem.forward(x);
    let mut dims = Vec::new();
    for block in &net.blocks {
        if let BlockOp::MbConv(m) = block {
            let e = m.expand.conv.forward(h.clone());
            macs += weights(&m.expand.conv.weight) * positions(&e);
            let d = m.depthwise.conv.forward(e);
            macs += weights(&m.depthwise.conv.weight) * positions(&d);
            let p = m.project.conv.forward(d);
            macs += weights(&m.project.conv.weight) * positions(&p);
        }
        h = block.forward(h);
        dims.push(h.dims());
    }
    let conv = &net.head.conv.conv;
    macs += weights(&conv.weight) * positions(&conv.forward(h));
    macs += weights(&net.head.classifier.weight);
    (macs, dims)
}

/// The geometry every hand count below relies on: a 16-channel stem at 32x32, then stages of
/// 24 (2 blocks, stride 2), 32 (3, stride 2), 64 (3, stride 2) and 96 channels (2, stride 1),
/// so the head sees 96 channels at 32 / 2 / 2 / 2 = 4x4. Blocks that change width or resolution
/// (0, 2, 5, 8) cannot be skipped. By default they are fixed to k3e6 and have 1 choice; the
/// others have 7 (six inverted residuals and skip). With `search_transitions` the geometry is
/// the same, nothing is fixed, and the stage openers have the 6 inverted residuals.
#[test]
fn cifar_block_geometry() {
    assert_eq!(MobileSpace::TRANSITION, mb(3, 6));
    let space = cifar();
    assert!(!space.search_transitions);
    space.check().unwrap();
    let expected = [
        fixed(shape(16, 24, 2, 32)),
        shape(24, 24, 1, 16),
        fixed(shape(24, 32, 2, 16)),
        shape(32, 32, 1, 8),
        shape(32, 32, 1, 8),
        fixed(shape(32, 64, 2, 8)),
        shape(64, 64, 1, 4),
        shape(64, 64, 1, 4),
        fixed(shape(64, 96, 1, 4)),
        shape(96, 96, 1, 4),
    ];
    assert_eq!(space.blocks(), expected);
    assert_eq!((space.final_size(), space.final_channels()), (4, 96));
    let counts: Vec<usize> = space.blocks().iter().map(|s| s.choices().len()).collect();
    assert_eq!(counts, [1, 7, 1, 7, 7, 1, 7, 7, 1, 7]);
    let opens: Vec<usize> = (0..10).filter(|&b| !expected[b].can_skip()).collect();
    assert_eq!(opens, TRANSITIONS);
    for b in TRANSITIONS {
        assert_eq!(expected[b].choices(), [mb(3, 6)], "block {b}");
    }
    assert_eq!(expected[1].choices(), BlockChoice::ALL);
    assert_eq!(expected[1].choices().last(), Some(&SKIP));

    let all = cifar_all();
    all.check().unwrap();
    let unfixed: Vec<BlockShape> = expected
        .iter()
        .map(|s| BlockShape { fixed: None, ..*s })
        .collect();
    assert_eq!(all.blocks(), unfixed);
    assert_eq!((all.final_size(), all.final_channels()), (4, 96));
    let counts: Vec<usize> = all.blocks().iter().map(|s| s.choices().len()).collect();
    assert_eq!(counts, [6, 7, 6, 7, 7, 6, 7, 7, 6, 7]);
    assert_eq!(unfixed[0].choices(), BlockChoice::ALL[..6]);
    assert!(!unfixed[0].choices().contains(&SKIP));
    assert_eq!(unfixed[1].choices(), BlockChoice::ALL);
}

/// A space written before `search_transitions` existed reads back with the transitions fixed
/// (`#[serde(default)]`, i.e. false), and the field round-trips when present.
#[test]
fn search_transitions_defaults_to_false_when_absent() {
    let mut json = serde_json::to_value(cifar_all()).unwrap();
    assert_eq!(json["search_transitions"], serde_json::Value::Bool(true));
    let back: MobileSpace = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, cifar_all());
    json.as_object_mut().unwrap().remove("search_transitions");
    let old: MobileSpace = serde_json::from_value(json).unwrap();
    assert_eq!(old, cifar());
}

/// One inverted residual, hidden width `h = expand * c_in`: expansion 1x1 `c_in -> h` on the
/// input map, depthwise `k x k` (groups = h) at the block's stride, projection 1x1 `h -> c_out`
/// on the output map, three affine BNs (2 parameters per channel, no MACs).
///
/// k3e6 on 16 -> 24 channels, stride 2, 32x32 input (16x16 output), h = 96:
/// - expand: 16*96 = 1,536 weights, MACs 1,536 * 32*32 = 1,572,864;
/// - depthwise: 96*9 = 864 weights, MACs 864 * 16*16 = 221,184;
/// - project: 96*24 = 2,304 weights, MACs 2,304 * 16*16 = 589,824;
/// - BN: 2*(96 + 96 + 24) = 432;
/// - params 1,536 + 864 + 2,304 + 432 = 5,136; MACs 1,572,864 + 221,184 + 589,824 = 2,383,872.
///
/// k7e3 on 24 -> 24 channels, stride 1, 16x16 input, h = 72:
/// - expand: 24*72 = 1,728 weights, MACs 1,728 * 256 = 442,368;
/// - depthwise: 72*49 = 3,528 weights, MACs 3,528 * 256 = 903,168;
/// - project: 72*24 = 1,728 weights, MACs 442,368;
/// - BN: 2*(72 + 72 + 24) = 336;
/// - params 1,728 + 3,528 + 1,728 + 336 = 7,320; MACs 442,368 * 2 + 903,168 = 1,787,904.
///
/// k5e3 on 8 -> 8 channels, stride 2, odd 5x5 input (padding 2: ceil(5/2) = 3x3 output), h = 24:
/// - expand: 8*24 = 192 weights, MACs 192 * 25 = 4,800;
/// - depthwise: 24*25 = 600 weights, MACs 600 * 9 = 5,400;
/// - project: 24*8 = 192 weights, MACs 192 * 9 = 1,728;
/// - BN: 2*(24 + 24 + 8) = 112;
/// - params 192 + 600 + 192 + 112 = 1,096; MACs 4,800 + 5,400 + 1,728 = 11,928.
///
/// skip: nothing.
#[test]
fn blocks_by_hand() {
    let k3e6 = cost::mobile_block(shape(16, 24, 2, 32), mb(3, 6));
    assert_eq!(k3e6, Cost::new(5_136, 2_383_872));
    let k7e3 = cost::mobile_block(shape(24, 24, 1, 16), mb(7, 3));
    assert_eq!(k7e3, Cost::new(7_320, 1_787_904));
    let odd = cost::mobile_block(shape(8, 8, 2, 5), mb(5, 3));
    assert_eq!(odd, Cost::new(1_096, 11_928));
    assert_eq!(cost::mobile_block(shape(24, 24, 1, 16), SKIP), Cost::ZERO);
    assert_eq!(k3e6.flops(), 4_767_744);
}

/// The same blocks built by burn: the parameter counts above, and the output sizes the MACs
/// assume (16x16 for stride 2 on 32x32, 3x3 for stride 2 on 5x5).
#[test]
fn built_blocks_match_the_hand_counts() {
    let device = Device::flex();
    let cases = [
        (shape(16, 24, 2, 32), 3, 6, 5_136, [1, 24, 16, 16]),
        (shape(24, 24, 1, 16), 7, 3, 7_320, [1, 24, 16, 16]),
        (shape(8, 8, 2, 5), 5, 3, 1_096, [1, 8, 3, 3]),
    ];
    for (s, kernel, expand, params, out) in cases {
        let block = MbConv::new(s, kernel, expand, &mut ParamInit::new(0, &device));
        assert_eq!(count_parameters(&block), params, "{s:?} k{kernel}e{expand}");
        let x = Tensor::<4>::random(
            [1, s.c_in, s.input_size, s.input_size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        assert_eq!(block.forward(x).dims(), out, "{s:?} k{kernel}e{expand}");
    }
}

/// Stem and head of the CIFAR space (3 -> 16 channels at 32x32; 96 -> 256 at 4x4; 10 classes):
/// - stem 3x3: 3*16*9 = 432 weights, MACs 432 * 1,024 = 442,368; BN 32;
/// - head 1x1: 96*256 = 24,576 weights, MACs 24,576 * 16 = 393,216; BN 512;
/// - classifier: 256*10 = 2,560 weights + 10 biases, 2,560 MACs;
/// - params 432 + 32 + 24,576 + 512 + 2,570 = 28,122; MACs 442,368 + 393,216 + 2,560 = 838,144.
///
/// The smallest network of the default space skips every skippable block and keeps the fixed
/// k3e6 in blocks 0, 2, 5, 8 (h = 6 * c_in; expand, depthwise 3x3, project, BN):
/// - 0: 16 -> 24, s2, 32 -> 16, h = 96: 1,536 + 864 + 2,304 + BN 432 = 5,136 params;
///   MACs 1,536*1,024 + 864*256 + 2,304*256 = 1,572,864 + 221,184 + 589,824 = 2,383,872;
/// - 2: 24 -> 32, s2, 16 -> 8, h = 144: 3,456 + 1,296 + 4,608 + BN 640 = 10,000;
///   MACs 3,456*256 + 1,296*64 + 4,608*64 = 884,736 + 82,944 + 294,912 = 1,262,592;
/// - 5: 32 -> 64, s2, 8 -> 4, h = 192: 6,144 + 1,728 + 12,288 + BN 896 = 21,056;
///   MACs 6,144*64 + 1,728*16 + 12,288*16 = 393,216 + 27,648 + 196,608 = 617,472;
/// - 8: 64 -> 96, s1, 4x4, h = 384: 24,576 + 3,456 + 36,864 + BN 1,728 = 66,624;
///   MACs (24,576 + 3,456 + 36,864)*16 = 64,896*16 = 1,038,336;
/// - blocks 5,136 + 10,000 + 21,056 + 66,624 = 102,816 params;
///   2,383,872 + 1,262,592 + 617,472 + 1,038,336 = 5,302,272 MACs;
/// - total params 28,122 + 102,816 = 130,938; MACs 838,144 + 5,302,272 = 6,140,416.
///
/// With `search_transitions` the network with every skippable block skipped and k3e3
/// elsewhere adds blocks 0, 2, 5, 8:
/// - 0: 16 -> 24, s2, 32 -> 16, h = 48: 768 + 432 + 1,152 + BN 240 = 2,592 params;
///   MACs 768*1,024 + 432*256 + 1,152*256 = 786,432 + 110,592 + 294,912 = 1,191,936;
/// - 2: 24 -> 32, s2, 16 -> 8, h = 72: 1,728 + 648 + 2,304 + BN 352 = 5,032;
///   MACs 1,728*256 + 648*64 + 2,304*64 = 442,368 + 41,472 + 147,456 = 631,296;
/// - 5: 32 -> 64, s2, 8 -> 4, h = 96: 3,072 + 864 + 6,144 + BN 512 = 10,592;
///   MACs 3,072*64 + 864*16 + 6,144*16 = 196,608 + 13,824 + 98,304 = 308,736;
/// - 8: 64 -> 96, s1, 4x4, h = 192: 12,288 + 1,728 + 18,432 + BN 960 = 33,408;
///   MACs 12,288*16 + 1,728*16 + 18,432*16 = 196,608 + 27,648 + 294,912 = 519,168;
/// - total params 28,122 + 2,592 + 5,032 + 10,592 + 33,408 = 79,746;
///   MACs 838,144 + 1,191,936 + 631,296 + 308,736 + 519,168 = 3,489,280.
#[test]
fn fixed_parts_and_a_whole_network_by_hand() {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let t = mb(3, 6);
    let k = mb(3, 3);
    let cases = [
        (
            cifar(),
            [t, SKIP, t, SKIP, SKIP, t, SKIP, SKIP, t, SKIP],
            Cost::new(130_938, 6_140_416),
        ),
        (
            cifar_all(),
            [k, SKIP, k, SKIP, SKIP, k, SKIP, SKIP, k, SKIP],
            Cost::new(79_746, 3_489_280),
        ),
    ];
    for (space, arch, expected) in cases {
        let key = space.key(&arch);
        assert_eq!(
            cost::mobile_fixed(&space),
            Cost::new(28_122, 838_144),
            "{key}"
        );
        let analytic = cost::mobile_network(&space, &arch).unwrap();
        assert_eq!(analytic, expected, "{key}");

        let net = MobileNetwork::new(&space, &arch, &mut ParamInit::new(3, &device));
        assert_eq!(count_parameters(&net) as u64, expected.params, "{key}");
        assert_eq!(module_macs(&net, x.clone()).0, expected.macs, "{key}");
    }
}

/// Random architectures (each block uniform over its `choices()`, so the fixed blocks of the
/// default space take k3e6): the analytic parameters are what burn allocates, the analytic MACs
/// are what the built convolutions compute (weights times the output positions of burn's
/// forward pass, plus the classifier), and every block outputs `[1, c_out, ceil(side / stride),
/// ...]`. 40 draws from the default space, 20 from the space with searched transitions.
#[test]
fn random_networks_match_the_built_modules() {
    for (space, draws) in [(cifar(), 40), (cifar_all(), 20)] {
        random_networks(&space, draws);
    }
}

fn random_networks(space: &MobileSpace, draws: u64) {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let mut skips = 0;
    let mut kinds = std::collections::BTreeSet::new();
    let mut transition_kinds = std::collections::BTreeSet::new();
    for seed in 0..draws {
        let arch = random_arch(space, &mut rng);
        space.validate(&arch).unwrap();
        skips += arch.iter().filter(|c| **c == SKIP).count();
        kinds.extend(arch.iter().copied());
        transition_kinds.extend(TRANSITIONS.map(|b| arch[b]));
        let key = space.key(&arch);
        let analytic = cost::mobile_network(space, &arch).unwrap();
        let net = MobileNetwork::new(space, &arch, &mut ParamInit::new(seed, &device));
        assert_eq!(analytic.params, count_parameters(&net) as u64, "{key}");
        let (macs, dims) = module_macs(&net, x.clone());
        assert_eq!(analytic.macs, macs, "{key}");
        let expected: Vec<[usize; 4]> = space
            .blocks()
            .iter()
            .map(|s| [1, s.c_out, s.output_size(), s.output_size()])
            .collect();
        assert_eq!(dims, expected, "{key}");
    }
    // At least 20 draws over 6 blocks with 7 choices: the sample exercises skip and all seven
    // choices. The stage openers only ever hold k3e6 when fixed; when searched, 20 draws over 4
    // blocks with 6 choices exercise all six inverted residuals there.
    assert!(skips > 0);
    assert_eq!(kinds.len(), 7);
    if space.search_transitions {
        assert_eq!(transition_kinds.len(), 6);
    } else {
        assert_eq!(transition_kinds.into_iter().collect::<Vec<_>>(), [mb(3, 6)]);
    }
}

/// The supernet holds all candidates of every block. A block of `c_in = a`, `c_out = b` with
/// hidden `h = e*a` has `a*h + h*k^2 + h*b + 2*(2h + b) = h*(a + b + k^2 + 4) + 2b` parameters;
/// summed over k in {3, 5, 7} and e in {3, 6} (skip has none) that is
/// `9a * (3*(a + b + 4) + 9 + 25 + 49) + 6*2b = 9a * (3*(a + b + 4) + 83) + 12b`:
/// - 16 -> 24: 144*215 + 288 = 31,248;      - 24 -> 24: 216*239 + 288 = 51,912;
/// - 24 -> 32: 216*263 + 384 = 57,192;      - 32 -> 32 (twice): 288*287 + 384 = 83,040;
/// - 32 -> 64: 288*383 + 768 = 111,072;     - 64 -> 64 (twice): 576*479 + 768 = 276,672;
/// - 64 -> 96: 576*575 + 1,152 = 332,352;   - 96 -> 96: 864*671 + 1,152 = 580,896;
/// - with `search_transitions` every block holds all of them, blocks 0 to 9:
///   31,248 + 51,912 + 57,192 + 2*83,040 + 111,072 + 2*276,672 + 332,352 + 580,896 = 1,884,096;
/// - total with `search_transitions`: 28,122 (stem and head) + 1,884,096 = 1,912,218.
///
/// In the default space a fixed block holds only k3e6 (h = 6a, k^2 = 9):
/// `6a * (a + b + 13) + 2b` parameters:
/// - 16 -> 24: 96*53 + 48 = 5,136;          - 24 -> 32: 144*69 + 64 = 10,000;
/// - 32 -> 64: 192*109 + 128 = 21,056;      - 64 -> 96: 384*173 + 192 = 66,624;
/// - fixed blocks: 5,136 + 10,000 + 21,056 + 66,624 = 102,816;
/// - searched blocks: 51,912 + 2*83,040 + 2*276,672 + 580,896 = 1,352,232;
/// - total: 28,122 + 102,816 + 1,352,232 = 1,483,170;
/// - check: the openers' six candidates were 31,248 + 57,192 + 111,072 + 332,352 = 531,864,
///   and 1,912,218 - 531,864 + 102,816 = 1,483,170.
///
/// With `search_transitions` its MACs are those of its largest path, k7e6 everywhere (h = 6a;
/// expand `a*h*n^2`, depthwise `h*49*o^2`, project `h*b*o^2` for input side n and output side o):
/// - 16 -> 24, 32 -> 16: 1,572,864 + 1,204,224 + 589,824 = 3,366,912;
/// - 24 -> 24, 16: 884,736 + 1,806,336 + 884,736 = 3,575,808;
/// - 24 -> 32, 16 -> 8: 884,736 + 451,584 + 294,912 = 1,631,232;
/// - 32 -> 32, 8 (twice): 393,216 + 602,112 + 393,216 = 1,388,544;
/// - 32 -> 64, 8 -> 4: 393,216 + 150,528 + 196,608 = 740,352;
/// - 64 -> 64, 4 (twice): 393,216 + 301,056 + 393,216 = 1,087,488;
/// - 64 -> 96, 4: 393,216 + 301,056 + 589,824 = 1,284,096;
/// - 96 -> 96, 4: 884,736 + 451,584 + 884,736 = 2,221,056;
/// - blocks 17,771,520, plus 838,144 for stem and head: 18,609,664.
///
/// In the default space the largest path keeps k3e6 in the fixed blocks and takes k7e6 in the
/// others:
/// - fixed blocks, as in `fixed_parts_and_a_whole_network_by_hand`:
///   2,383,872 + 1,262,592 + 617,472 + 1,038,336 = 5,302,272;
/// - searched blocks: 3,575,808 + 2*1,388,544 + 2*1,087,488 + 2,221,056 = 10,748,928;
/// - total: 838,144 + 5,302,272 + 10,748,928 = 16,889,344;
/// - check: the openers' k7e6 were 3,366,912 + 1,631,232 + 740,352 + 1,284,096 = 7,022,592,
///   and 18,609,664 - 7,022,592 + 5,302,272 = 16,889,344.
#[test]
fn supernet_by_hand_and_as_built() {
    let device = Device::flex();
    let cases = [
        (
            cifar(),
            102_816 + 1_352_232,
            Cost::new(1_483_170, 16_889_344),
        ),
        (cifar_all(), 1_884_096, Cost::new(1_912_218, 18_609_664)),
    ];
    for (space, blocks_params, expected) in cases {
        let all = space.search_transitions;
        let per_block: u64 = space
            .blocks()
            .iter()
            .map(|s| {
                let (a, b) = (s.c_in as u64, s.c_out as u64);
                match s.fixed {
                    Some(choice) => {
                        assert_eq!(choice, mb(3, 6));
                        6 * a * (a + b + 13) + 2 * b
                    }
                    None => 9 * a * (3 * (a + b + 4) + 83) + 12 * b,
                }
            })
            .sum();
        assert_eq!(per_block, blocks_params, "search_transitions {all}");
        let supernet = cost::mobile_supernet(&space);
        assert_eq!(supernet, expected, "search_transitions {all}");
        let largest = cost::mobile_network(&space, &arch_with(&space, |_| mb(7, 6))).unwrap();
        assert_eq!(largest.macs, expected.macs, "search_transitions {all}");

        let built = MobileSupernet::new(&space, &mut ParamInit::new(0, &device));
        assert_eq!(
            count_parameters(&built) as u64,
            expected.params,
            "search_transitions {all}"
        );
    }
}

/// Candidate `i` of supernet block `b` is `blocks()[b].choices()[i]`: its depthwise weights are
/// `[e*c_in, 1, k, k]`, and skip sits last where the block allows it. The default supernet holds
/// 4*1 + 6*7 = 46 candidates (one k3e6 in each fixed block), the one with searched transitions
/// 4*6 + 6*7 = 66.
#[test]
fn supernet_candidates_follow_the_choice_order() {
    for (space, candidates) in [(cifar(), 46), (cifar_all(), 66)] {
        supernet_candidates(&space, candidates);
    }
}

fn supernet_candidates(space: &MobileSpace, candidates: usize) {
    let device = Device::flex();
    let supernet = MobileSupernet::new(space, &mut ParamInit::new(0, &device));
    assert_eq!(supernet.blocks.len(), 10);
    let held: usize = supernet.blocks.iter().map(Vec::len).sum();
    assert_eq!(held, candidates);
    for (b, (ops, s)) in supernet.blocks.iter().zip(space.blocks()).enumerate() {
        let choices = s.choices();
        assert_eq!(ops.len(), choices.len(), "block {b}");
        for (i, (op, choice)) in ops.iter().zip(&choices).enumerate() {
            match (op, *choice) {
                (BlockOp::MbConv(m), BlockChoice::MbConv { kernel, expand }) => {
                    let dims = m.depthwise.conv.weight.dims();
                    assert_eq!(
                        dims,
                        [expand * s.c_in, 1, kernel, kernel],
                        "block {b} op {i}"
                    );
                    let project = m.project.conv.weight.dims();
                    assert_eq!(
                        project,
                        [s.c_out, expand * s.c_in, 1, 1],
                        "block {b} op {i}"
                    );
                }
                (BlockOp::Skip(_), BlockChoice::Skip) => {}
                _ => panic!("block {b} candidate {i} is not {choice}"),
            }
        }
    }
}

/// A network of images `[2, 3, 32, 32]` gives logits `[2, 10]`, for the smallest, the largest
/// and a mixed architecture of both spaces; the supernet gives the same shape along any path,
/// and along a path it computes exactly the network assembled from the candidates the path
/// picks.
#[test]
fn forward_shapes_and_supernet_paths() {
    // The default space fixes blocks 0, 2, 5, 8 to k3e6; the other mixes k5e6 and k7e6 there.
    let mixed = [
        "k3e6-k7e3-k3e6-skip-k3e3-k3e6-skip-k5e3-k3e6-k7e3",
        "k3e6-k7e3-k5e6-skip-k3e3-k7e6-skip-k5e3-k3e6-k7e3",
    ];
    for (space, mixed) in [(cifar(), mixed[0]), (cifar_all(), mixed[1])] {
        forward_shapes(&space, mixed);
    }
}

fn forward_shapes(space: &MobileSpace, mixed: &str) {
    let device = Device::flex();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let smallest = |s: &BlockShape| if s.can_skip() { SKIP } else { mb(3, 3) };
    let archs = [
        arch_with(space, smallest),
        arch_with(space, |_| mb(7, 6)),
        space.parse(mixed).unwrap(),
    ];
    for arch in &archs {
        space.validate(arch).unwrap();
        let net = MobileNetwork::new(space, arch, &mut ParamInit::new(1, &device));
        let y = net.forward(x.clone());
        assert_eq!(y.dims(), [2, 10], "{}", space.key(arch));
        assert!(
            values(y).iter().all(|v| v.is_finite()),
            "{}",
            space.key(arch)
        );
    }

    let supernet = MobileSupernet::new(space, &mut ParamInit::new(5, &device));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..3 {
        let path: Vec<usize> = space
            .blocks()
            .iter()
            .map(|s| rng.random_range(0..s.choices().len()))
            .collect();
        let y = supernet.forward_path(x.clone(), &path);
        assert_eq!(y.dims(), [2, 10], "{path:?}");
        let assembled = MobileNetwork {
            stem: supernet.stem.clone(),
            blocks: supernet
                .blocks
                .iter()
                .zip(&path)
                .map(|(ops, &i)| ops[i].clone())
                .collect(),
            head: supernet.head.clone(),
        };
        let expected = values(assembled.forward(x.clone()));
        let got = values(y);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5, "{path:?}: {got:?} vs {expected:?}");
        }
        // Different paths compute different functions: the first path's candidates matter.
        // Every block with more than one candidate changes; a fixed block has only candidate 0.
        let other: Vec<usize> = path
            .iter()
            .zip(&supernet.blocks)
            .map(|(&i, ops)| if ops.len() == 1 || i != 0 { 0 } else { 1 })
            .collect();
        let changed = path.iter().zip(&other).filter(|(a, b)| a != b).count();
        let searched = if space.search_transitions { 10 } else { 6 };
        assert_eq!(changed, searched, "{path:?} and {other:?}");
        let z = values(supernet.forward_path(x.clone(), &other));
        let diff = z
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff > 1e-4, "{path:?} and {other:?} agree");
    }
}

/// The residual connection exists exactly where the identity fits: with the projection's batch
/// norm zeroed (scale 0, shift 0) the projection outputs zeros, so a stride-1 width-keeping block
/// returns its input unchanged and any other block returns zeros.
#[test]
fn residual_only_where_the_identity_fits() {
    let device = Device::flex();
    let zero_projection = |mut block: MbConv| {
        let c = block.project.conv.weight.dims()[0];
        block.project.bn.gamma = Some(Param::from_tensor(Tensor::zeros([c], &device)));
        block.project.bn.beta = Some(Param::from_tensor(Tensor::zeros([c], &device)));
        block
    };
    let x = Tensor::<4>::random([2, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device);
    let input = values(x.clone());

    let same = shape(4, 4, 1, 5);
    let block = MbConv::new(same, 3, 3, &mut ParamInit::new(0, &device));
    // Untouched, the block is not the identity.
    let changed = values(block.forward(x.clone()));
    let diff = changed
        .iter()
        .zip(&input)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 0.1, "max |block(x) - x| = {diff}");
    assert_eq!(values(zero_projection(block).forward(x.clone())), input);

    for (s, out) in [
        (shape(4, 8, 1, 5), [2, 8, 5, 5]),
        (shape(4, 4, 2, 5), [2, 4, 3, 3]),
    ] {
        let block = zero_projection(MbConv::new(s, 3, 3, &mut ParamInit::new(0, &device)));
        let y = block.forward(x.clone());
        assert_eq!(y.dims(), out, "{s:?}");
        assert!(values(y).iter().all(|v| *v == 0.0), "{s:?}");
    }
}

/// Invalid architectures are refused with the block at fault or the expected count: skip where
/// the width or resolution changes (blocks 0, 2, 5, 8 of the CIFAR space, fixed or searched),
/// 9 or 11 choices.
#[test]
fn invalid_architectures_are_rejected() {
    for space in [cifar(), cifar_all()] {
        let valid = arch_with(&space, |_| mb(3, 3));
        assert!(cost::mobile_network(&space, &valid).is_ok());
        for b in TRANSITIONS {
            let mut arch = valid.clone();
            arch[b] = SKIP;
            let err = cost::mobile_network(&space, &arch).unwrap_err().to_string();
            assert!(
                err.contains(&format!("block {b} cannot be `skip`")),
                "{err}"
            );
        }
        let err = cost::mobile_network(&space, &[SKIP; 10])
            .unwrap_err()
            .to_string();
        assert!(err.contains("block 0 cannot be `skip`"), "{err}");
    }
    let space = cifar();
    for n in [9, 11] {
        let err = cost::mobile_network(&space, &vec![mb(3, 3); n])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 10 block choices"), "{err}");
        assert!(err.contains(&format!("found {n}")), "{err}");
    }
    let err = cost::mobile_network(&space, &[]).unwrap_err().to_string();
    assert!(
        err.contains("expected 10 block choices") && err.contains("found 0"),
        "{err}"
    );
    let err = space.parse("k3e3-k9e6").unwrap_err().to_string();
    assert!(err.contains("unknown block choice `k9e6`"), "{err}");
}

/// In the default space the stage openers (blocks 0, 2, 5, 8) accept only k3e6: every other
/// inverted residual there is refused by `validate`, `parse` and `mobile_network` with the
/// block, the fixed choice and the choice found. With `search_transitions` the same
/// architectures are valid and round-trip through their keys. Searched blocks accept all seven
/// choices in both spaces.
#[test]
fn fixed_blocks_accept_only_the_transition() {
    let space = cifar();
    let all = cifar_all();
    let base = arch_with(&space, |_| mb(3, 3));
    assert_eq!(
        space.key(&base),
        "k3e6-k3e3-k3e6-k3e3-k3e3-k3e6-k3e3-k3e3-k3e6-k3e3"
    );
    space.validate(&base).unwrap();
    all.validate(&base).unwrap();
    let others: Vec<BlockChoice> = BlockChoice::ALL
        .into_iter()
        .filter(|c| *c != MobileSpace::TRANSITION && *c != SKIP)
        .collect();
    assert_eq!(others, [mb(3, 3), mb(5, 3), mb(5, 6), mb(7, 3), mb(7, 6)]);
    for b in TRANSITIONS {
        for &choice in &others {
            let mut arch = base.clone();
            arch[b] = choice;
            let key = space.key(&arch);
            let expected = format!("block {b} starts a stage and is fixed to `k3e6`");
            let found = format!("found `{choice}`");
            let err = space.validate(&arch).unwrap_err().to_string();
            assert!(
                err.contains(&expected) && err.contains(&found),
                "{key}: {err}"
            );
            let err = space.parse(&key).unwrap_err().to_string();
            assert!(
                err.contains(&expected) && err.contains(&found),
                "{key}: {err}"
            );
            let err = cost::mobile_network(&space, &arch).unwrap_err().to_string();
            assert!(err.contains(&expected), "{key}: {err}");

            all.validate(&arch).unwrap();
            assert_eq!(all.parse(&key).unwrap(), arch, "{key}");
            assert!(cost::mobile_network(&all, &arch).is_ok(), "{key}");
        }
    }
    // A searched block (1: 24 -> 24 at 16x16) takes any of the seven choices in either space.
    for choice in BlockChoice::ALL {
        let mut arch = base.clone();
        arch[1] = choice;
        space.validate(&arch).unwrap();
        all.validate(&arch).unwrap();
    }
    // The whole-network example of the space with searched transitions (k3e3 in the openers)
    // is refused by the default space at its first opener.
    let k = mb(3, 3);
    let arch = [k, SKIP, k, SKIP, SKIP, k, SKIP, SKIP, k, SKIP];
    all.validate(&arch).unwrap();
    let err = space.validate(&arch).unwrap_err().to_string();
    assert!(
        err.contains("block 0 starts a stage and is fixed to `k3e6`"),
        "{err}"
    );
}
