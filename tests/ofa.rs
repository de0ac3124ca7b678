//! The Once-for-All elastic network (Cai et al. 2020) on the inverted-residual space: subnets
//! extracted as standalone networks compute what the elastic network computes when restricted
//! to them, parameter counts against hand computation and the cost module, channel sorting,
//! the kernel transforms on known kernels, the elastic-depth rules, the sampler, and the
//! progressive-shrinking schedule's checks.
//!
//! Most tests run on the small space of `common::tiny_mobile_space`: a 4-channel stem on 8x8
//! one-channel images; stage 0 is block 0 (4 -> 8 channels at stride 2, fixed to k3e6, always
//! runs) and block 1 (8 -> 8, skippable); stage 1 is blocks 2 and 3 (8 -> 8 at stride 1, both
//! skippable, so the stage may run no block at all); a 16-channel head and 3 classes.

mod common;

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use nasrs::cost;
use nasrs::nn::batch_norm::BatchNorm2d;
use nasrs::nn::elastic::{
    ElasticArch, ElasticDim, ElasticDims, ElasticNetwork, check_arch, largest_arch, min_depths,
    sample_arch, smallest_arch,
};
use nasrs::nn::mobile::BlockOp;
use nasrs::nn::{ParamInit, count_parameters};
use nasrs::search::ofa::{Phase, Schedule, parse_phase_dims};
use nasrs::space::mobile::{BlockChoice, MobileSpace};
use nasrs::train::cross_entropy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const fn mb(kernel: usize, expand: usize) -> BlockChoice {
    BlockChoice::MbConv { kernel, expand }
}

const SKIP: BlockChoice = BlockChoice::Skip;

fn tiny() -> MobileSpace {
    common::tiny_mobile_space()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// A tensor of `shape` with entries `N(mean, std^2)` from a seeded stream (Box-Muller), so
/// that every run sees the same numbers.
fn seeded<const D: usize>(
    shape: [usize; D],
    mean: f32,
    std: f32,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Tensor<D> {
    let count: usize = shape.iter().product();
    let data: Vec<f32> = (0..count)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random_range(0.0..1.0);
            mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// The largest absolute difference between two tensors of the same shape.
fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `bn` with a random scale around 1, shift around 0, running mean around 0 and running
/// variance around 1 (kept positive), so that no batch norm is the identity.
fn scramble_bn(mut bn: BatchNorm2d, rng: &mut ChaCha8Rng, device: &Device) -> BatchNorm2d {
    let c = bn.running_mean.value().dims()[0];
    bn.gamma = Some(Param::from_tensor(seeded([c], 1.0, 0.3, rng, device)));
    bn.beta = Some(Param::from_tensor(seeded([c], 0.0, 0.3, rng, device)));
    bn.running_mean = burn::module::RunningState::new(seeded([c], 0.0, 0.5, rng, device));
    let var = seeded([c], 0.0, 0.5, rng, device).abs().add_scalar(0.5);
    bn.running_var = burn::module::RunningState::new(var);
    bn
}

/// Every transform set to the identity plus `N(0, 0.1^2)` noise and every batch norm of the
/// blocks scrambled, so that neither a plain crop nor plain normalisation could pass for the
/// right computation.
fn scramble(mut net: ElasticNetwork, rng: &mut ChaCha8Rng, device: &Device) -> ElasticNetwork {
    for block in &mut net.blocks {
        block.transforms = block
            .transforms
            .iter()
            .map(|t| {
                let [n, _] = t.dims();
                let noisy = Tensor::eye(n, device) + seeded([n, n], 0.0, 0.1, rng, device);
                Param::from_tensor(noisy)
            })
            .collect();
        block.expand.bn = scramble_bn(block.expand.bn.clone(), rng, device);
        block.depthwise.bn = scramble_bn(block.depthwise.bn.clone(), rng, device);
        block.project.bn = scramble_bn(block.project.bn.clone(), rng, device);
    }
    net
}

/// `steps` SGD steps (lr 0.05, momentum 0.9) on random subnets with every dimension elastic,
/// on seeded batches of 8 images with random labels; training-mode batch norm moves the
/// running statistics of the channels each subnet uses.
fn train(
    mut net: ElasticNetwork,
    steps: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> ElasticNetwork {
    let space = net.space().clone();
    let mut optimizer = nasrs::train::optim::sgd(0.9, 0.0);
    for _ in 0..steps {
        let arch = sample_arch(&space, &ElasticDims::ALL, rng);
        let x = seeded([8, 1, 8, 8], 0.0, 1.0, rng, device);
        let labels: Vec<i64> = (0..8).map(|_| rng.random_range(0..3)).collect();
        let y = Tensor::<1, Int>::from_ints(TensorData::new(labels, [8]), device);
        let loss = cross_entropy(net.forward_subnet(x, &arch), y);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optimizer.step(0.05, net, grads);
    }
    net
}

/// A trained, scrambled, channel-sorted elastic network on the tiny space, on the autodiff
/// device.
fn trained_network(seed: u64) -> ElasticNetwork {
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = ElasticNetwork::new(&tiny(), &mut ParamInit::new(seed, &device)).unwrap();
    let net = scramble(net, &mut rng, &device);
    let net = train(net, 4, &mut rng, &device);
    let net = net.sort_channels();
    train(net, 2, &mut rng, &device)
}

/// The standalone network extracted for a subnet gives, in evaluation mode, the logits of the
/// elastic network restricted to that subnet, for 30 random subnets plus the largest and the
/// smallest, on images of the space's side and of two smaller ones. The network has
/// non-identity transforms, scrambled and then trained batch norm (running statistics updated
/// on parts of the channels), and sorted channels.
///
/// Reference: the two forward passes must run the same operations on the same values (a 1x1
/// convolution as the same matrix product, the depthwise convolution with the same kernel
/// and padding, batch norm with the same statistics), so they can differ only by the
/// rounding of f32 arithmetic done in a different grouping (another backend may pick other
/// kernels for the two shapes); 1e-5 relative to the logits' magnitude allows a few ulps on
/// every one of the ~10 layers. On the flex CPU backend the difference measured is exactly 0.
/// A wrong channel, a kernel cropped or transformed differently, or a statistic off by one
/// channel moves logits by orders of magnitude more (checked below: distinct subnets give logits 1e-3 apart or more).
#[test]
fn extracted_subnets_compute_what_the_elastic_network_computes() {
    let space = tiny();
    let net = trained_network(7).valid();
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = seeded([4, 1, 8, 8], 0.0, 1.0, &mut rng, &device);
    // Elastic resolution: the same subnets on smaller images (odd sides too, where a stride-2
    // convolution rounds up).
    let x6 = seeded([4, 1, 6, 6], 0.0, 1.0, &mut rng, &device);
    let x5 = seeded([4, 1, 5, 5], 0.0, 1.0, &mut rng, &device);

    let mut archs = vec![largest_arch(&space), smallest_arch(&space)];
    archs.extend((0..30).map(|_| sample_arch(&space, &ElasticDims::ALL, &mut rng)));
    let mut outputs: Vec<Tensor<2>> = Vec::new();
    for arch in &archs {
        let standalone = net.extract(arch).unwrap();
        for input in [&x, &x6, &x5] {
            let elastic = net.forward_subnet(input.clone(), arch);
            let extracted = standalone.forward(input.clone());
            let scale = values(elastic.clone())
                .iter()
                .fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = max_diff(elastic.clone(), extracted);
            assert!(
                diff <= 1e-5 * scale,
                "{} at side {}: extracted differs by {diff} (logits up to {scale})",
                space.key(arch),
                input.dims()[2]
            );
        }
        outputs.push(net.forward_subnet(x.clone(), arch));
    }

    // Distinct subnets compute distinct functions: the comparison above could not pass with
    // a network that ignored its architecture.
    for i in 0..archs.len() {
        for j in i + 1..archs.len() {
            if archs[i] != archs[j] {
                let d = max_diff(outputs[i].clone(), outputs[j].clone());
                assert!(
                    d > 1e-3,
                    "{} and {} give the same logits",
                    space.key(&archs[i]),
                    space.key(&archs[j])
                );
            }
        }
    }
}

/// A specialised subnet (extracted, batch norm recalibrated on the calibration images resized
/// to its side) is the extracted network recalibrated on those images resized by hand
/// ([`nasrs::data::resize_bilinear`] on the host), so the same subnet specialised at another
/// side has other statistics. Saved and loaded back it computes the same logits bit for bit;
/// loading it as an architecture of other shapes, or from a missing file, is refused naming
/// the file.
#[test]
fn specialised_subnets_use_their_side_and_load_back() {
    use burn::module::Module;
    use nasrs::search::ofa::{load_specialised, recalibrate_network, specialise};
    use nasrs::search::ofa_search::at_side;

    let space = tiny();
    let net = trained_network(3).valid();
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let calibration: Vec<Tensor<4>> = (0..3)
        .map(|_| seeded([8, 1, 8, 8], 0.5, 1.0, &mut rng, &device))
        .collect();
    let arch = largest_arch(&space);
    let at6 = specialise(&net, &arch, 6, &calibration).unwrap();
    let at8 = specialise(&net, &arch, 8, &calibration).unwrap();

    let by_hand: Vec<Tensor<4>> = calibration
        .iter()
        .map(|x| {
            let resized = nasrs::data::resize_bilinear(&values(x.clone()), 8, 8, 8, 6);
            Tensor::from_data(TensorData::new(resized, [8, 1, 6, 6]), &device)
        })
        .collect();
    let reference = recalibrate_network(net.extract(&arch).unwrap(), &by_hand);
    let stem_mean =
        |n: &nasrs::nn::mobile::MobileNetwork| values(n.stem.conv.bn.running_mean.value());
    assert_eq!(stem_mean(&at6), stem_mean(&reference));
    assert_ne!(stem_mean(&at6), stem_mean(&at8));

    let x = seeded([4, 1, 6, 6], 0.0, 1.0, &mut rng, &device);
    assert_eq!(
        values(at6.forward(x.clone())),
        values(reference.forward(x.clone()))
    );
    let dir = std::env::temp_dir().join(format!("nasrs-ofa-subnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("subnet.bpk");
    at6.clone().save_file(&path).unwrap();
    let loaded = load_specialised(&path, &at_side(&space, 6), &arch, &device).unwrap();
    assert_eq!(values(at6.forward(x.clone())), values(loaded.forward(x)));

    let other = smallest_arch(&space);
    let message = load_specialised(&path, &at_side(&space, 6), &other, &device)
        .unwrap_err()
        .to_string();
    assert!(message.contains("subnet.bpk"), "{message}");
    let missing = dir.join("absent.bpk");
    let message = load_specialised(&missing, &at_side(&space, 6), &arch, &device)
        .unwrap_err()
        .to_string();
    assert!(message.contains("absent.bpk"), "{message}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A trained elastic network saved with its description loads back computing the same logits
/// for any subnet, bit for bit; a missing weights file, a description that is not one and
/// weights of another space are each refused naming the file.
#[test]
fn saved_elastic_networks_load_back() {
    use nasrs::search::ofa::{ElasticInfo, OfaConfig, Schedule, load_elastic, save_elastic};

    let space = tiny();
    let net = trained_network(5).valid();
    let device = Device::flex();
    let info = |space: &MobileSpace| ElasticInfo {
        config: OfaConfig::new(space.clone(), 5),
        schedule: Schedule::default(),
        dataset: "digits".into(),
        subset: None,
        valid_portion: 0.2,
        batch_size: 8,
        epochs: Vec::new(),
    };
    let dir = std::env::temp_dir().join(format!("nasrs-ofa-elastic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    save_elastic(&dir, &net, &info(&space)).unwrap();
    let (loaded, loaded_info) = load_elastic(&dir, &device).unwrap();
    assert_eq!(loaded_info, info(&space));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = seeded([4, 1, 8, 8], 0.0, 1.0, &mut rng, &device);
    for arch in [
        largest_arch(&space),
        smallest_arch(&space),
        sample_arch(&space, &ElasticDims::ALL, &mut rng),
    ] {
        assert_eq!(
            values(net.forward_subnet(x.clone(), &arch)),
            values(loaded.forward_subnet(x.clone(), &arch)),
            "{}",
            space.key(&arch)
        );
    }

    let error = || load_elastic(&dir, &device).err().unwrap().to_string();
    let wider = MobileSpace {
        head_channels: space.head_channels + 8,
        ..space.clone()
    };
    std::fs::write(
        dir.join("elastic.json"),
        serde_json::to_string(&info(&wider)).unwrap(),
    )
    .unwrap();
    let message = error();
    assert!(message.contains("elastic.bpk"), "{message}");
    std::fs::write(dir.join("elastic.json"), "{\"config\": 3}").unwrap();
    let message = error();
    assert!(
        message.contains("elastic.json")
            && message.contains("not a description of a saved elastic network"),
        "{message}"
    );
    save_elastic(&dir, &net, &info(&space)).unwrap();
    std::fs::remove_file(dir.join("elastic.bpk")).unwrap();
    let message = error();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        message.contains("elastic.bpk") && message.contains("missing"),
        "{message}"
    );
}

/// In training mode a narrower block normalises with batch statistics and updates the running
/// statistics of the channels it uses only. Reference: the standalone network extracted
/// before the step, whose batch norms are the project's `BatchNorm2d` over exactly those
/// channels; after one forward pass of each on the same batch the logits agree, the used
/// channels' running statistics agree with the standalone layer's, and the unused channels'
/// are bit for bit what they were.
#[test]
fn training_mode_updates_only_the_used_channels_statistics() {
    let space = tiny();
    let net = trained_network(3);
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = seeded([6, 1, 8, 8], 0.0, 1.0, &mut rng, &device);
    // Block 1 at expansion 3 uses 24 of its 48 hidden channels.
    let arch = vec![mb(3, 6), mb(5, 3), mb(7, 6), SKIP];
    check_arch(&space, &arch).unwrap();

    let stats = |bn: &BatchNorm2d| {
        (
            values(bn.running_mean.value_sync()),
            values(bn.running_var.value_sync()),
        )
    };
    let (mean_before, var_before) = stats(&net.blocks[1].expand.bn);
    let standalone = net.extract(&arch).unwrap();

    let elastic = net.forward_subnet(x.clone(), &arch);
    let extracted = standalone.forward(x);
    let scale = values(elastic.clone())
        .iter()
        .fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(max_diff(elastic, extracted) <= 1e-5 * scale);

    let (mean_after, var_after) = stats(&net.blocks[1].expand.bn);
    let BlockOp::MbConv(block) = &standalone.blocks[1] else {
        panic!("block 1 runs k5e3");
    };
    let (mean_ref, var_ref) = stats(&block.expand.bn);
    assert_eq!(mean_ref.len(), 24);
    for c in 0..24 {
        assert!(
            (mean_after[c] - mean_ref[c]).abs() < 1e-5,
            "mean of channel {c}"
        );
        assert!((var_after[c] - var_ref[c]).abs() < 1e-5 * var_ref[c].max(1.0));
        assert_ne!(mean_after[c], mean_before[c], "channel {c} did not move");
    }
    assert_eq!(mean_after[24..], mean_before[24..]);
    assert_eq!(var_after[24..], var_before[24..]);
}

/// Parameter counts by hand on the tiny space. Elastic network:
/// - stem: 3x3 conv 1 -> 4 (36) and BN (8): 44;
/// - block 0, fixed k3e6 on 4 -> 8 channels, hidden 24: expand 4*24 = 96, BN 48, depthwise
///   24*9 = 216, BN 48, project 24*8 = 192, BN 16: 616 (no transform: one kernel only);
/// - blocks 1-3, elastic on 8 -> 8 channels, hidden 48 (expansion 6): expand 8*48 = 384,
///   BN 96, depthwise 48*49 = 2,352, BN 96, transforms 25*25 + 9*9 = 706, project 48*8 = 384,
///   BN 16: 4,034 each, 12,102 for three;
/// - head: 1x1 conv 8 -> 16 (128), BN (32), classifier 16*3 + 3 = 51: 211;
/// - total 44 + 616 + 12,102 + 211 = 12,973.
///
/// Extracted networks: the largest (k7e6 in blocks 1-3: 384 + 96 + 2,352 + 96 + 384 + 16 =
/// 3,328 each) has 44 + 616 + 3 * 3,328 + 211 = 10,855; the smallest (block 0 only) 44 + 616 +
/// 211 = 871; block 1 at k5e3 (hidden 24: 192 + 48 + 24*25 = 600 + 48 + 192 + 16 = 1,096).
/// Every extracted network of 20 random subnets counts what `cost::mobile_network` computes
/// from shapes.
#[test]
fn parameter_counts_and_shapes_follow_the_choices() {
    let space = tiny();
    let device = Device::flex();
    let mut init = ParamInit::new(0, &device);
    let net = ElasticNetwork::new(&space, &mut init).unwrap();
    assert_eq!(count_parameters(&net), 12_973);
    assert_eq!(count_parameters(&net.blocks[0]), 616);
    assert_eq!(count_parameters(&net.blocks[1]), 4_034);
    assert!(net.blocks[0].transforms.is_empty());
    let sides: Vec<[usize; 2]> = net.blocks[1].transforms.iter().map(|t| t.dims()).collect();
    assert_eq!(sides, [[25, 25], [9, 9]]);

    let largest = largest_arch(&space);
    assert_eq!(largest, [mb(3, 6), mb(7, 6), mb(7, 6), mb(7, 6)]);
    assert_eq!(smallest_arch(&space), [mb(3, 6), SKIP, SKIP, SKIP]);
    assert_eq!(count_parameters(&net.extract(&largest).unwrap()), 10_855);
    let smallest = net.extract(&smallest_arch(&space)).unwrap();
    assert_eq!(count_parameters(&smallest), 871);
    let one = net.extract(&[mb(3, 6), mb(5, 3), SKIP, SKIP]).unwrap();
    assert_eq!(count_parameters(&one), 871 + 1_096);

    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..20 {
        let arch = sample_arch(&space, &ElasticDims::ALL, &mut rng);
        let expected = cost::mobile_network(&space, &arch).unwrap().params;
        let standalone = net.extract(&arch).unwrap();
        assert_eq!(
            count_parameters(&standalone) as u64,
            expected,
            "{}",
            space.key(&arch)
        );
    }

    // Shapes: a block maps [n, c_in, s, s] to [n, c_out, s / stride, s / stride] at any
    // kernel and width; the depthwise kernel is [e * c_in, 1, k, k]; logits are [n, classes].
    let x = Tensor::<4>::zeros([2, 4, 8, 8], &device);
    assert_eq!(net.blocks[0].forward(x, 3, 6).dims(), [2, 8, 4, 4]);
    for (kernel, expand) in [(7, 6), (5, 3), (3, 3), (3, 6)] {
        let x = Tensor::<4>::zeros([2, 8, 4, 4], &device);
        assert_eq!(
            net.blocks[1].forward(x, kernel, expand).dims(),
            [2, 8, 4, 4]
        );
        let w = net.blocks[1].depthwise_kernel(kernel, 8 * expand);
        assert_eq!(w.dims(), [8 * expand, 1, kernel, kernel]);
    }
    let images = Tensor::<4>::zeros([5, 1, 8, 8], &device);
    assert_eq!(
        net.forward_subnet(images.clone(), &smallest_arch(&space))
            .dims(),
        [5, 3]
    );
    assert_eq!(net.forward(images).dims(), [5, 3]);
}

/// On the CIFAR space (ten blocks; the four stage transitions fixed to k3e6, six searchable
/// blocks) the elastic network holds the stem and head of the space (`cost::mobile_fixed`),
/// each fixed block as the standalone k3e6 block (`cost::mobile_block`), and each searchable
/// block as its k7e6 block plus the 706 transform entries (25*25 + 9*9). The cost module
/// computes from shapes alone, independently of the modules.
#[test]
fn cifar_elastic_network_counts_its_largest_blocks_and_transforms() {
    let space = MobileSpace::cifar(3, 32, 10);
    let net = ElasticNetwork::new(&space, &mut ParamInit::new(0, &Device::flex())).unwrap();
    let mut expected = cost::mobile_fixed(&space).params;
    for shape in space.blocks() {
        expected += match shape.fixed {
            Some(choice) => cost::mobile_block(shape, choice).params,
            None => cost::mobile_block(shape, mb(7, 6)).params + 706,
        };
    }
    assert_eq!(count_parameters(&net) as u64, expected);
    let arch = largest_arch(&space);
    let full = cost::mobile_network(&space, &arch).unwrap().params;
    assert_eq!(count_parameters(&net) as u64, full + 6 * 706);
}

/// Sorting reorders the hidden channels of every block by the L1 norm of the projection
/// weights reading them, largest first, and leaves the function of the full network
/// unchanged (evaluation and training mode). Reference: the logits before sorting, the
/// importances before sorting (sorted on the host), and at expansion 3 the importance of
/// the channels kept is the sum of the 24 largest of the old importances.
#[test]
fn sorting_channels_keeps_the_full_network_and_orders_importance() {
    let space = tiny();
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let net = ElasticNetwork::new(&space, &mut ParamInit::new(21, &device)).unwrap();
    let net = train(scramble(net, &mut rng, &device), 3, &mut rng, &device);
    let plain = Device::flex();
    let x = seeded([4, 1, 8, 8], 0.0, 1.0, &mut rng, &plain);
    let largest = largest_arch(&space);

    let before = net.valid();
    let logits_before = before.forward_subnet(x.clone(), &largest);
    let importance_before: Vec<Vec<f32>> = before
        .blocks
        .iter()
        .map(|b| values(b.channel_importance()))
        .collect();
    let sorted = net.clone().sort_channels();
    let after = sorted.valid();
    let logits_after = after.forward_subnet(x.clone(), &largest);
    let scale = values(logits_before.clone())
        .iter()
        .fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(logits_before, logits_after);
    assert!(diff <= 1e-5 * scale, "sorting changed the logits by {diff}");

    let mut reordered = 0;
    for (b, (block, old)) in after.blocks.iter().zip(&importance_before).enumerate() {
        let new = values(block.channel_importance());
        let mut want = old.clone();
        want.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(new, want, "block {b}: importance not in descending order");
        reordered += usize::from(new != *old);
        let hidden = new.len() / 2;
        let kept: f32 = new[..hidden].iter().sum();
        let top: f32 = want[..hidden].iter().sum();
        assert!(
            (kept - top).abs() <= 1e-4 * top,
            "block {b}: {kept} vs {top}"
        );
    }
    // Random weights are not sorted already, so the test exercised the permutation.
    assert_eq!(reordered, 4);

    // Training mode (batch statistics) computes the same function too.
    let x = x.to_device(&device);
    let unsorted_logits = net.forward_subnet(x.clone(), &largest);
    let sorted_logits = sorted.forward_subnet(x, &largest);
    let scale = values(unsorted_logits.clone())
        .iter()
        .fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(unsorted_logits, sorted_logits);
    assert!(
        diff <= 1e-5 * scale,
        "sorting changed training-mode logits by {diff}"
    );
}

/// The kernels of a block on a known 7x7 kernel, channel `c` holding `100 c + 10 i + j` at
/// row `i`, column `j`. With identity transforms the 5x5 kernel is rows and columns 1..=5
/// (channel 0 starts `11 12 13 14 15`) and the 3x3 rows and columns 2..=4 (`22 23 24`,
/// `32 33 34`, `42 43 44`). With the 25x25 transform doubled the 5x5 doubles, and so does the
/// 3x3 taken from it; with the 9x9 transform reversing the nine entries the 3x3 is the centre
/// turned by 180 degrees (`44 43 42`, `34 33 32`, `24 23 22`).
#[test]
fn smaller_kernels_are_transformed_centre_crops() {
    let device = Device::flex();
    let mut net = ElasticNetwork::new(&tiny(), &mut ParamInit::new(0, &device)).unwrap();
    let block = &mut net.blocks[1];
    let known: Vec<f32> = (0..48 * 49)
        .map(|n| {
            let (c, i, j) = (n / 49, (n % 49) / 7, n % 7);
            (100 * c + 10 * i + j) as f32
        })
        .collect();
    block.depthwise.conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(known, [48, 1, 7, 7]),
        &device,
    ));

    let k7 = values(block.depthwise_kernel(7, 48));
    assert_eq!(k7[..7], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let k5 = values(block.depthwise_kernel(5, 48));
    assert_eq!(k5.len(), 48 * 25);
    assert_eq!(k5[..5], [11.0, 12.0, 13.0, 14.0, 15.0]);
    assert_eq!(k5[20..25], [51.0, 52.0, 53.0, 54.0, 55.0]);
    let k3 = values(block.depthwise_kernel(3, 24));
    assert_eq!(k3.len(), 24 * 9);
    assert_eq!(
        k3[..9],
        [22.0, 23.0, 24.0, 32.0, 33.0, 34.0, 42.0, 43.0, 44.0]
    );
    // Channel 5 of the 3x3: 500 more.
    assert_eq!(k3[45..48], [522.0, 523.0, 524.0]);

    block.transforms[0] = Param::from_tensor(Tensor::eye(25, &device).mul_scalar(2.0));
    let k5 = values(block.depthwise_kernel(5, 48));
    assert_eq!(k5[..5], [22.0, 24.0, 26.0, 28.0, 30.0]);
    let k3 = values(block.depthwise_kernel(3, 48));
    assert_eq!(k3[..3], [44.0, 46.0, 48.0]);

    block.transforms[0] = Param::from_tensor(Tensor::eye(25, &device));
    let reverse: Vec<f32> = (0..81)
        .map(|n| if n / 9 + n % 9 == 8 { 1.0 } else { 0.0 })
        .collect();
    block.transforms[1] =
        Param::from_tensor(Tensor::from_data(TensorData::new(reverse, [9, 9]), &device));
    let k3 = values(block.depthwise_kernel(3, 48));
    assert_eq!(
        k3[..9],
        [44.0, 43.0, 42.0, 34.0, 33.0, 32.0, 24.0, 23.0, 22.0]
    );
    // The 5x5 does not go through the 9x9 transform.
    assert_eq!(
        values(block.depthwise_kernel(5, 48))[..5],
        [11.0, 12.0, 13.0, 14.0, 15.0]
    );
}

/// Elastic depth keeps the first blocks of a stage: `skip` only at the end of a stage and
/// never on a block that cannot be the identity; the errors name the block and the stage.
/// The elastic form converts to the space's form and back.
#[test]
fn elastic_depth_reaches_only_suffix_skips() {
    let space = tiny();
    assert_eq!(min_depths(&space), [1, 0]);
    for arch in [
        vec![mb(3, 6), SKIP, SKIP, SKIP],
        vec![mb(3, 6), mb(5, 3), mb(3, 3), SKIP],
        vec![mb(3, 6), mb(7, 6), mb(7, 6), mb(7, 6)],
    ] {
        check_arch(&space, &arch).unwrap();
    }

    let err = check_arch(&space, &[mb(3, 6), SKIP, SKIP, mb(3, 3)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("block 3 is `k3e3` after the skipped block 2 of stage 1"),
        "{err}"
    );
    // A skip ends stage 0 only; stage 1 runs in full.
    check_arch(&space, &[mb(3, 6), SKIP, mb(5, 6), mb(3, 3)]).unwrap();
    let err = check_arch(&space, &[SKIP, mb(3, 3), SKIP, SKIP])
        .unwrap_err()
        .to_string();
    assert!(err.contains("block 0 cannot be `skip`"), "{err}");
    let err = check_arch(&space, &[mb(7, 6), SKIP, SKIP, SKIP])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("block 0 starts a stage and is fixed to `k3e6`"),
        "{err}"
    );
    let net = ElasticNetwork::new(&space, &mut ParamInit::new(0, &Device::flex())).unwrap();
    assert!(net.extract(&[mb(3, 6), SKIP, SKIP, mb(3, 3)]).is_err());

    // Depths 1 and 1: blocks 0 and 2 run, 1 and 3 are skipped whatever their kernels say.
    let elastic = ElasticArch {
        depths: vec![1, 1],
        kernels: vec![3, 7, 5, 3],
        expands: vec![6, 6, 3, 3],
    };
    let arch = elastic.to_arch(&space).unwrap();
    assert_eq!(arch, [mb(3, 6), SKIP, mb(5, 3), SKIP]);
    let back = ElasticArch::from_arch(&space, &arch).unwrap();
    assert_eq!(back.depths, [1, 1]);
    assert_eq!(back.kernels, [3, 7, 5, 7]);
    assert_eq!(back.expands, [6, 6, 3, 6]);
    assert_eq!(back.to_arch(&space).unwrap(), arch);

    let bad = |depths: Vec<usize>, kernels: Vec<usize>, expands: Vec<usize>| {
        ElasticArch {
            depths,
            kernels,
            expands,
        }
        .to_arch(&space)
        .unwrap_err()
        .to_string()
    };
    let err = bad(vec![0, 2], vec![3, 7, 7, 7], vec![6; 4]);
    assert!(
        err.contains("`depths[0]`") && err.contains("between 1 and 2"),
        "{err}"
    );
    let err = bad(vec![2, 3], vec![3, 7, 7, 7], vec![6; 4]);
    assert!(
        err.contains("`depths[1]`") && err.contains("found 3"),
        "{err}"
    );
    let err = bad(vec![2, 2], vec![3, 7, 9, 7], vec![6; 4]);
    assert!(
        err.contains("`kernels[2]`") && err.contains("found 9"),
        "{err}"
    );
    let err = bad(vec![2, 2], vec![5, 7, 7, 7], vec![6; 4]);
    assert!(err.contains("`kernels[0]`") && err.contains("[3]"), "{err}");
    let err = bad(vec![2, 2], vec![3, 7, 7, 7], vec![6, 4, 6, 6]);
    assert!(
        err.contains("`expands[1]`") && err.contains("found 4"),
        "{err}"
    );
    let err = bad(vec![2], vec![3, 7, 7, 7], vec![6; 4]);
    assert!(
        err.contains("`depths`") && err.contains("one value per stage (2)"),
        "{err}"
    );

    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for _ in 0..50 {
        let arch = sample_arch(&space, &ElasticDims::ALL, &mut rng);
        let elastic = ElasticArch::from_arch(&space, &arch).unwrap();
        assert_eq!(elastic.to_arch(&space).unwrap(), arch);
    }
}

/// The sampler: a disabled dimension stays at its largest value, an enabled one is uniform.
/// Over 3,000 draws with one dimension enabled each value's count is binomial; the bounds are
/// the expected count plus or minus 5 standard deviations (for p = 1/3: 1,000 +- 129; for
/// p = 1/2: 1,500 +- 137), which a uniform sampler misses with probability below 1e-5.
#[test]
fn the_sampler_is_uniform_along_the_enabled_dimensions() {
    let space = tiny();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let largest = largest_arch(&space);
    for _ in 0..20 {
        assert_eq!(sample_arch(&space, &ElasticDims::NONE, &mut rng), largest);
    }
    let draws = 3_000;
    let within = |count: usize, p: f64| {
        let mean = draws as f64 * p;
        let sd = (draws as f64 * p * (1.0 - p)).sqrt();
        (count as f64 - mean).abs() <= 5.0 * sd
    };

    let kernel = ElasticDims::NONE.with(ElasticDim::Kernel);
    let mut kernels = [[0usize; 8]; 4];
    for _ in 0..draws {
        let arch = sample_arch(&space, &kernel, &mut rng);
        for (b, choice) in arch.iter().enumerate() {
            let BlockChoice::MbConv { kernel, expand } = *choice else {
                panic!("depth is not elastic, yet block {b} is skipped");
            };
            assert_eq!(expand, 6);
            kernels[b][kernel] += 1;
        }
    }
    assert_eq!(kernels[0][3], draws, "the fixed block keeps k3");
    for (b, counts) in kernels.iter().enumerate().skip(1) {
        for k in [3, 5, 7] {
            assert!(
                within(counts[k], 1.0 / 3.0),
                "block {b} kernel {k}: {}",
                counts[k]
            );
        }
    }

    let depth = ElasticDims::NONE.with(ElasticDim::Depth);
    let mut depths = [[0usize; 3]; 2];
    for _ in 0..draws {
        let arch = sample_arch(&space, &depth, &mut rng);
        check_arch(&space, &arch).unwrap();
        assert!(arch.iter().all(|&c| c == SKIP || largest.contains(&c)));
        let elastic = ElasticArch::from_arch(&space, &arch).unwrap();
        depths[0][elastic.depths[0]] += 1;
        depths[1][elastic.depths[1]] += 1;
    }
    assert_eq!(depths[0][0], 0, "stage 0 always runs its transition");
    assert!(
        within(depths[0][1], 0.5) && within(depths[0][2], 0.5),
        "{depths:?}"
    );
    for d in 0..3 {
        assert!(
            within(depths[1][d], 1.0 / 3.0),
            "stage 1 depth {d}: {depths:?}"
        );
    }

    let width = ElasticDims::NONE.with(ElasticDim::Width);
    let mut narrow = [0usize; 4];
    for _ in 0..draws {
        for (b, choice) in sample_arch(&space, &width, &mut rng).iter().enumerate() {
            let BlockChoice::MbConv { kernel, expand } = *choice else {
                panic!("block {b} skipped");
            };
            assert_eq!(kernel, if b == 0 { 3 } else { 7 });
            narrow[b] += usize::from(expand == 3);
        }
    }
    assert_eq!(narrow[0], 0, "the fixed block keeps e6");
    assert!(narrow[1..].iter().all(|&n| within(n, 0.5)), "{narrow:?}");
}

fn dims(names: &[ElasticDim]) -> ElasticDims {
    names.iter().fold(ElasticDims::NONE, |d, &n| d.with(n))
}

fn schedule(phases: &[(&[ElasticDim], usize)]) -> Schedule {
    Schedule {
        phases: phases
            .iter()
            .map(|(names, epochs)| Phase::new(dims(names), *epochs, 0.01))
            .collect(),
    }
}

/// The default schedule is the paper's order (full, +kernel, +depth, +width) and passes its
/// own check; it round-trips through TOML and JSON.
#[test]
fn the_default_schedule_is_progressive_shrinking() {
    use ElasticDim::{Depth, Kernel, Width};
    let default = Schedule::default();
    default.check().unwrap();
    let names: Vec<&str> = default.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["full", "kernel", "depth", "width"]);
    let expected = [
        dims(&[]),
        dims(&[Kernel]),
        dims(&[Kernel, Depth]),
        dims(&[Kernel, Depth, Width]),
    ];
    let found: Vec<ElasticDims> = default.phases.iter().map(|p| p.dims).collect();
    assert_eq!(found, expected);
    assert!(default.phases.iter().all(|p| p.epochs > 0 && p.lr > 0.0));

    let text = default.to_toml_string().unwrap();
    assert_eq!(Schedule::from_toml_str(&text).unwrap(), default);
    let json = serde_json::to_string(&default).unwrap();
    assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), default);

    // A phase may repeat the previous one's dimensions (the paper runs depth and width in
    // two phases each); the text form accepts either spelling and any order of names.
    let repeated = schedule(&[
        (&[], 1),
        (&[Kernel], 1),
        (&[Kernel, Depth], 1),
        (&[Kernel, Depth], 1),
    ]);
    repeated.check().unwrap();
    let written = r#"
        [[phase]]
        epochs = 3
        lr = 0.1

        [[phase]]
        name = "k"
        dims = "kernel"
        epochs = 1
        lr = 0.05

        [[phase]]
        dims = ["depth", "kernel"]
        epochs = 2
        lr = 0.01
    "#;
    let read = Schedule::from_toml_str(written).unwrap();
    let names: Vec<&str> = read.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["full", "k", "depth"]);
    assert_eq!(read.phases[2].dims, dims(&[Kernel, Depth]));
    assert_eq!(read.phases[2].epochs, 2);
    assert_eq!(read.phases[0].lr, 0.1);
    assert_eq!(
        parse_phase_dims(4, " width , kernel ").unwrap(),
        dims(&[Kernel, Width])
    );
    assert_eq!(parse_phase_dims(0, "none").unwrap(), ElasticDims::NONE);
}

/// Each rejected schedule names the phase (index and field) and the dimension at fault.
#[test]
fn schedule_errors_name_the_phase_and_the_dimension() {
    use ElasticDim::{Depth, Kernel, Width};
    let check = |s: Schedule| s.check().unwrap_err().to_string();

    let err = check(schedule(&[(&[], 1), (&[Depth], 1)]));
    assert!(err.contains("`phases[1].dims`"), "{err}");
    assert!(
        err.contains("phase 1 adds `depth` before `kernel`"),
        "{err}"
    );

    let err = check(schedule(&[(&[], 1), (&[Kernel], 1), (&[Kernel, Width], 1)]));
    assert!(err.contains("`phases[2].dims`"), "{err}");
    assert!(err.contains("phase 2 adds `width` before `depth`"), "{err}");

    let err = check(schedule(&[(&[Kernel], 1), (&[Kernel], 1)]));
    assert!(err.contains("`phases[0].dims`"), "{err}");
    assert!(err.contains("phase 0 makes `kernel` elastic"), "{err}");

    let err = check(schedule(&[(&[], 1), (&[Kernel], 1), (&[Depth], 1)]));
    assert!(err.contains("`phases[2].dims`"), "{err}");
    assert!(
        err.contains("phase 2 drops `kernel`, which phase 1 made elastic"),
        "{err}"
    );

    let err = check(schedule(&[(&[], 1), (&[Kernel, Depth], 1)]));
    assert!(
        err.contains("phase 1 adds `kernel` and `depth` at once"),
        "{err}"
    );

    let err = check(schedule(&[(&[], 1), (&[Kernel], 1), (&[Kernel, Depth], 0)]));
    assert!(err.contains("`phases[2].epochs`"), "{err}");
    assert!(
        err.contains("phase 2 (`depth`) must train at least 1 epoch, found 0"),
        "{err}"
    );

    let mut bad_lr = Schedule::default();
    bad_lr.phases[1].lr = -0.1;
    let err = check(bad_lr);
    assert!(
        err.contains("`phases[1].lr`") && err.contains("found -0.1"),
        "{err}"
    );

    let err = check(Schedule { phases: Vec::new() });
    assert!(err.contains("at least one phase"), "{err}");

    let err = parse_phase_dims(3, "kernel,colour")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`phases[3].dims`"), "{err}");
    assert!(
        err.contains("phase 3: unknown elastic dimension `colour`"),
        "{err}"
    );

    // The TOML form reports the same errors, for either spelling of the dimensions.
    let toml = |second_dims: &str, epochs: usize| {
        format!(
            "[[phase]]\nepochs = 1\nlr = 0.1\n\n[[phase]]\ndims = {second_dims}\n\
             epochs = {epochs}\nlr = 0.1\n"
        )
    };
    let err = Schedule::from_toml_str(&toml("\"kernel,depht\"", 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase 1: unknown elastic dimension `depht`"),
        "{err}"
    );
    let err = Schedule::from_toml_str(&toml("[\"widht\"]", 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase 1: unknown elastic dimension `widht`"),
        "{err}"
    );
    let err = Schedule::from_toml_str(&toml("\"width\"", 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase 1 adds `width` before `kernel`"),
        "{err}"
    );
    let err = Schedule::from_toml_str(&toml("\"kernel\"", 0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase 1 (`kernel`) must train at least 1 epoch"),
        "{err}"
    );
    let json = r#"{"phase": [{"epochs": 1, "lr": 0.1}, {"dims": "size", "epochs": 1, "lr": 0.1}]}"#;
    let err = serde_json::from_str::<Schedule>(json)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase 1: unknown elastic dimension `size`"),
        "{err}"
    );
}

/// Progressive-shrinking training, the distillation term, the evolutionary search under a
/// latency budget and the resumable measurement of subnets.
mod progressive_shrinking {
    use std::sync::Arc;

    use burn::prelude::*;
    use nasrs::checkpoint::Checkpoint;
    use nasrs::data::{Augment, BatchLoader, Normalization, load_digits_embedded};
    use nasrs::latency::table::fixed_shapes;
    use nasrs::latency::{LatencyEntry, LatencySettings, LatencyTable, Timing};
    use nasrs::nn::elastic::check_arch;
    use nasrs::nn::named_parameters;
    use nasrs::search::Resumable;
    use nasrs::search::ofa::{
        OfaConfig, OfaEpoch, OfaValidation, Schedule, check_resolutions, distillation_loss,
        score_subnet, train_ofa,
    };
    use nasrs::search::ofa_search::{
        EvolutionConfig, MeasuredSubnet, ResolutionTables, Subnet, append_measured, at_side,
        draw_subnets, encode, evolve, measure_subnets, mutate, read_measured,
    };
    use nasrs::space::mobile::{BlockChoice, MobileSpace};
    use nasrs::train::EvalResult;

    use super::{dims, tiny, values};
    use nasrs::nn::elastic::ElasticDim;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nasrs-ofa-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn loader(range: std::ops::Range<usize>, batch: usize, shuffle: bool) -> BatchLoader {
        let train = Arc::new(load_digits_embedded().unwrap().train);
        let norm = Normalization::from_dataset(&train);
        BatchLoader::new(
            train,
            range.collect(),
            batch,
            shuffle,
            Augment::none(),
            norm,
            3,
        )
        .unwrap()
    }

    /// The tiny space with the ten digit classes.
    fn digits_space() -> MobileSpace {
        MobileSpace {
            classes: 10,
            ..tiny()
        }
    }

    /// One epoch per phase: full, +kernel, +depth, +width.
    fn four_phases() -> Schedule {
        Schedule {
            phases: vec![
                nasrs::search::ofa::Phase::new(dims(&[]), 1, 0.05),
                nasrs::search::ofa::Phase::new(dims(&[ElasticDim::Kernel]), 1, 0.02),
                nasrs::search::ofa::Phase::new(
                    dims(&[ElasticDim::Kernel, ElasticDim::Depth]),
                    1,
                    0.02,
                ),
                nasrs::search::ofa::Phase::new(
                    dims(&[ElasticDim::Kernel, ElasticDim::Depth, ElasticDim::Width]),
                    1,
                    0.01,
                ),
            ],
        }
    }

    /// Training with elastic resolution (batches resized to 6x6 or 8x8) stopped after its
    /// second epoch (the first with a teacher; the error comes after the checkpoint) and
    /// resumed ends with the parameters and records of an uninterrupted run, through the
    /// channel sorting of the width phase that runs after the resume. Reference: the
    /// uninterrupted run itself, compared bit for bit. The last record's validation scores are
    /// those of the largest subnet at the largest side and the smallest at the smallest.
    #[test]
    fn an_interrupted_training_resumes_to_the_uninterrupted_network() {
        let device = Device::flex();
        let config = OfaConfig {
            resolutions: vec![6, 8],
            ..OfaConfig::new(digits_space(), 4)
        };
        let schedule = four_phases();
        let calibration: Vec<Tensor<4>> = loader(0..64, 32, true)
            .epoch()
            .map(|b| nasrs::train::tensors::batch_tensors(&b, &device).0)
            .collect();
        let run = |resumable: Option<&Resumable>, stop_at: Option<usize>| {
            let mut valid = loader(192..320, 64, false);
            let validation = OfaValidation {
                valid: &mut valid,
                calibration: &calibration,
            };
            train_ofa(
                &config,
                &schedule,
                &mut loader(0..192, 32, true),
                Some(validation),
                &device,
                resumable,
                |e: &OfaEpoch| {
                    if Some(e.epoch) == stop_at {
                        Err(nasrs::NasError::Numerical("stop here".into()))
                    } else {
                        Ok(())
                    }
                },
            )
        };
        let (whole, records) = run(None, None).unwrap();
        assert_eq!(records.len(), 4);
        let names: Vec<&str> = records.iter().map(|r| r.phase_name.as_str()).collect();
        assert_eq!(names, ["full", "kernel", "depth", "width"]);
        assert_eq!(
            records[0].train_kd, 0.0,
            "no distillation in the first phase"
        );
        assert!(records[1].train_kd > 0.0, "{records:?}");
        assert!(records.iter().all(|r| r.largest_accuracy.is_some()));
        let space = digits_space();
        let score = |arch: &[BlockChoice], side: usize| {
            let mut valid = loader(192..320, 64, false);
            score_subnet(&whole, arch, side, &calibration, &mut valid, &device).unwrap()
        };
        let (largest, smallest) = (
            nasrs::nn::elastic::largest_arch(&space),
            nasrs::nn::elastic::smallest_arch(&space),
        );
        let last = records.last().unwrap();
        assert_eq!(last.largest_accuracy, Some(score(&largest, 8).accuracy));
        assert_eq!(last.smallest_accuracy, Some(score(&smallest, 6).accuracy));
        // The side matters to the score, so the two checks above could not pass at the wrong
        // one.
        assert_ne!(score(&largest, 8).loss, score(&largest, 6).loss);
        assert_ne!(score(&smallest, 6).loss, score(&smallest, 8).loss);

        let dir = temp("resume");
        let resumable = |resume| Resumable {
            checkpoint: Checkpoint::in_run(&dir),
            resume,
        };
        assert!(run(Some(&resumable(false)), Some(2)).is_err());
        let (resumed, resumed_records) = run(Some(&resumable(true)), None).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(records.len(), resumed_records.len());
        for (a, b) in records.iter().zip(&resumed_records) {
            assert_eq!(
                (a.train_loss, a.largest_accuracy, a.smallest_accuracy),
                (b.train_loss, b.largest_accuracy, b.smallest_accuracy),
                "epoch {}",
                a.epoch
            );
        }
        let (a, b) = (named_parameters(&whole), named_parameters(&resumed));
        assert_eq!(a.len(), b.len());
        for ((name, _, x), (_, _, y)) in a.iter().zip(&b) {
            assert_eq!(x, y, "{name} differs after resuming");
        }
    }

    /// Training resizes the batches to the drawn side: one epoch of the full network at side 6
    /// ends with other weights than at side 8, while side 8 alone (the digits' own) is the
    /// default configuration bit for bit.
    #[test]
    fn training_runs_at_the_configured_sides() {
        let device = Device::flex();
        let schedule = Schedule {
            phases: vec![nasrs::search::ofa::Phase::new(dims(&[]), 1, 0.05)],
        };
        let trained = |resolutions: Option<Vec<usize>>| {
            let mut config = OfaConfig::new(digits_space(), 2);
            if let Some(r) = resolutions {
                config.resolutions = r;
            }
            let (net, _) = train_ofa(
                &config,
                &schedule,
                &mut loader(0..128, 32, true),
                None,
                &device,
                None,
                |_: &OfaEpoch| Ok(()),
            )
            .unwrap();
            named_parameters(&net)
        };
        let default = trained(None);
        let at8 = trained(Some(vec![8]));
        let at6 = trained(Some(vec![6]));
        for ((name, _, a), (_, _, b)) in default.iter().zip(&at8) {
            assert_eq!(a, b, "{name}");
        }
        let differing = default
            .iter()
            .zip(&at6)
            .filter(|((_, _, a), (_, _, b))| a != b)
            .count();
        assert!(
            differing > 0,
            "training at side 6 left the weights of side 8"
        );
    }

    /// The distillation term `T^2 x mean KL(softmax(t/T) || softmax(s/T))` is 0 when the
    /// student's logits are the teacher's, and by hand on two classes: for s = (1, 0),
    /// t = (0, 1), T = 2 the softened logits differ by 0.5, so p = softmax(t/2) = (q2, q1) with
    /// q = softmax(s/2) = (sigma(0.5), 1 - sigma(0.5)), and
    /// KL = (q1 - q2) ln(q1 / q2) = (2 sigma(0.5) - 1) x 0.5 = tanh(0.25) / 2; times T^2 = 4 that
    /// is 2 tanh(0.25) = 0.489837. A second image with equal logits adds 0 and halves the mean.
    #[test]
    fn the_distillation_term_matches_hand_computation() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.3, -1.2, 2.0], [1.5, 0.0, -0.7]], &device);
        let zero = values(distillation_loss(logits.clone(), logits, 3.0))[0];
        assert!(zero.abs() < 1e-6, "{zero}");

        let student = Tensor::<2>::from_floats([[1.0, 0.0]], &device);
        let teacher = Tensor::<2>::from_floats([[0.0, 1.0]], &device);
        let expected = 2.0 * 0.25f64.tanh();
        let one = values(distillation_loss(student, teacher, 2.0))[0] as f64;
        // f32 softmax and logarithms: a few ulps of values near 1.
        assert!((one - expected).abs() < 1e-5, "{one} vs {expected}");

        let student = Tensor::<2>::from_floats([[1.0, 0.0], [0.4, 0.4]], &device);
        let teacher = Tensor::<2>::from_floats([[0.0, 1.0], [0.4, 0.4]], &device);
        let two = values(distillation_loss(student, teacher, 2.0))[0] as f64;
        assert!(
            (two - expected / 2.0).abs() < 1e-5,
            "{two} vs {}",
            expected / 2.0
        );

        // The direction of the divergence: with p = softmax(2, 0, 0) the teacher's and q
        // uniform the student's, KL(p || q) = sum p ln(p / q) = 0.433040 (Python, float64:
        // p = (e^2, 1, 1) / (e^2 + 2), q = 1/3 each), while KL(q || p) would be 0.474266.
        let student = Tensor::<2>::from_floats([[0.0, 0.0, 0.0]], &device);
        let teacher = Tensor::<2>::from_floats([[2.0, 0.0, 0.0]], &device);
        let forward = values(distillation_loss(student, teacher, 1.0))[0] as f64;
        assert!((forward - 0.433_039_6).abs() < 1e-5, "{forward}");
    }

    /// A latency table of `space` with fixed latencies in place of timings: 0.05 ms for the
    /// stem and for the head, `0.01 x kernel x expansion` ms for an inverted residual; all of
    /// it times `(side / 8)^2` for the space's image side (as compute grows with the pixels).
    fn synthetic_table(space: &MobileSpace) -> LatencyTable {
        let area = (space.image_size * space.image_size) as f64 / 64.0;
        let timing = |ms: f64| Timing {
            median_ms: ms,
            p10_ms: ms,
            p90_ms: ms,
            runs: 1,
        };
        let entry = |op: String, shape: nasrs::space::mobile::BlockShape, ms: f64| LatencyEntry {
            op,
            c_in: shape.c_in,
            c_out: shape.c_out,
            stride: shape.stride,
            input_size: shape.input_size,
            timing: timing(ms * area),
        };
        let (stem, head) = fixed_shapes(space);
        let mut entries = vec![
            entry("stem".into(), stem, 0.05),
            entry("head".into(), head, 0.05),
        ];
        for shape in space.blocks() {
            for choice in shape.choices() {
                if let BlockChoice::MbConv { kernel, expand } = choice {
                    entries.push(entry(choice.name(), shape, 0.01 * (kernel * expand) as f64));
                }
            }
        }
        LatencyTable {
            settings: LatencySettings {
                device: "flex".into(),
                processor: "synthetic".into(),
                threads: 1,
                batch_size: 1,
            },
            warmup: 0,
            measured_at: 0,
            nasrs_version: "test".into(),
            backend_library: "none".into(),
            space: space.clone(),
            entries,
        }
    }

    /// Every subnet elastic depth reaches in `space` (every combination of the blocks'
    /// choices, kept when [`check_arch`] accepts it).
    fn all_subnets(space: &MobileSpace) -> Vec<Vec<BlockChoice>> {
        let mut all: Vec<Vec<BlockChoice>> = vec![Vec::new()];
        for shape in space.blocks() {
            all = all
                .into_iter()
                .flat_map(|prefix| {
                    shape.choices().into_iter().map(move |c| {
                        let mut next = prefix.clone();
                        next.push(c);
                        next
                    })
                })
                .collect();
        }
        all.retain(|a| check_arch(space, a).is_ok());
        all
    }

    /// The tables of the tiny space at `sides`, as [`ResolutionTables`].
    fn synthetic_tables(sides: &[usize]) -> ResolutionTables {
        let tables = sides
            .iter()
            .map(|&side| {
                let table = synthetic_table(&at_side(&tiny(), side));
                (format!("synthetic {side}"), table)
            })
            .collect();
        ResolutionTables::new(&tiny(), sides, tables).unwrap()
    }

    fn sevens(arch: &[BlockChoice]) -> f64 {
        arch.iter()
            .filter(|c| matches!(c, BlockChoice::MbConv { kernel: 7, .. }))
            .count() as f64
    }

    /// With the predicted accuracy a known function (the number of 7x7 blocks), evolution
    /// under each budget finds a subnet whose value is the optimum found by enumerating all
    /// 301 reachable subnets of the tiny space, and stays within the budget. By hand: the stem,
    /// head and fixed k3e6 block cost 0.28 ms, the cheapest 7x7 block (k7e3) 0.21 ms, so the
    /// budgets 0.5, 0.75 and 0.95 ms admit at most 1, 2 and 3 of them; unconstrained the
    /// optimum is 3, so the first two budgets bind. A budget below 0.28 ms is refused.
    #[test]
    fn evolution_finds_the_best_subnet_within_the_budget() {
        let space = tiny();
        let table = synthetic_table(&space);
        let tables = synthetic_tables(&[8]);
        let all = all_subnets(&space);
        assert_eq!(all.len(), 301);
        let config = EvolutionConfig {
            population: 20,
            sample: 5,
            cycles: 2000,
            seed: 1,
        };
        let predict = |s: &Subnet| sevens(&s.arch);
        for (budget, by_hand) in [(0.5, 1.0), (0.75, 2.0), (0.95, 3.0)] {
            let optimum = all
                .iter()
                .filter(|a| table.predict(a).unwrap() <= budget)
                .map(|a| sevens(a))
                .fold(f64::MIN, f64::max);
            assert_eq!(optimum, by_hand, "budget {budget}");
            // Three seeds, so that a pass is not one lucky draw.
            for seed in 1..=3 {
                let config = EvolutionConfig { seed, ..config };
                let found = evolve(&space, &[8], &tables, budget, predict, &config).unwrap();
                assert_eq!(
                    found.predicted_accuracy, optimum,
                    "budget {budget}: {found:?}"
                );
                assert_eq!(sevens(&found.subnet.arch), optimum);
                assert_eq!(found.subnet.resolution, 8);
                let latency = table.predict(&found.subnet.arch).unwrap();
                assert_eq!(latency, found.predicted_latency_ms);
                assert!(latency <= budget, "{latency} over {budget}");
                check_arch(&space, &found.subnet.arch).unwrap();
            }
        }
        let message = evolve(&space, &[8], &tables, 0.2, predict, &config)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("budgets") && message.contains("0.2"),
            "{message}"
        );
    }

    /// With elastic resolution the search trades image side against architecture. The tables
    /// at side 6 cost 36/64 of those at side 8, and the predicted accuracy is the number of
    /// 7x7 blocks plus 0.5 at side 8. By hand, with 0.28 ms of fixed cost and 0.21 ms per k7e3
    /// at side 8 (0.1575 and 0.118125 ms at side 6): under 0.5 ms side 6 takes 2 sevens
    /// (0.39375 ms; 3 would be 0.511875) against 1 at side 8 (value 1.5 < 2), so side 6 wins;
    /// under 0.95 ms side 8 takes all 3 (0.91 ms, value 3.5) against 3 at side 6 (3), so side
    /// 8 wins. Evolution matches the optimum of all 602 subnets under each budget.
    #[test]
    fn evolution_chooses_the_resolution_with_the_architecture() {
        let space = tiny();
        let sides = [6, 8];
        let tables = synthetic_tables(&sides);
        let value = |s: &Subnet| sevens(&s.arch) + if s.resolution == 8 { 0.5 } else { 0.0 };
        let all: Vec<Subnet> = all_subnets(&space)
            .into_iter()
            .flat_map(|arch| {
                sides.map(|resolution| Subnet {
                    arch: arch.clone(),
                    resolution,
                })
            })
            .collect();
        assert_eq!(all.len(), 602);
        let config = EvolutionConfig {
            population: 20,
            sample: 5,
            cycles: 2000,
            seed: 1,
        };
        for (budget, by_hand, side) in [(0.5, 2.0, 6), (0.95, 3.5, 8)] {
            let best = all
                .iter()
                .filter(|s| tables.predict(s).unwrap() <= budget)
                .max_by(|a, b| value(a).total_cmp(&value(b)))
                .unwrap();
            assert_eq!((value(best), best.resolution), (by_hand, side), "{budget}");
            for seed in 1..=3 {
                let config = EvolutionConfig { seed, ..config };
                let found = evolve(&space, &sides, &tables, budget, value, &config).unwrap();
                assert_eq!(
                    found.predicted_accuracy, by_hand,
                    "budget {budget}: {found:?}"
                );
                assert_eq!(found.subnet.resolution, side, "budget {budget}: {found:?}");
                let latency = tables.predict(&found.subnet).unwrap();
                assert_eq!(latency, found.predicted_latency_ms);
                assert!(latency <= budget, "{latency} over {budget}");
            }
        }
        // Below the smallest subnet at side 8 (0.28 ms) but above it at side 6 (0.1575 ms):
        // a subnet still fits, at side 6.
        let found = evolve(&space, &sides, &tables, 0.2, value, &config).unwrap();
        assert_eq!(found.subnet.resolution, 6);
    }

    /// A mutation changes one gene: with two sides, about one mutation in nine (the number of
    /// genes, below) changes the side and then leaves the architecture alone; the side always
    /// stays among the given ones. With one side no side gene is drawn: every mutation changes
    /// the architecture.
    #[test]
    fn mutation_changes_the_side_or_the_architecture() {
        let space = tiny();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        let start = Subnet {
            arch: nasrs::nn::elastic::largest_arch(&space),
            resolution: 8,
        };
        let (mut side_changes, mut arch_changes) = (0, 0);
        for _ in 0..400 {
            let child = mutate(&space, &[6, 8], &start, &mut rng).unwrap();
            assert!([6, 8].contains(&child.resolution));
            match (
                child.resolution != start.resolution,
                child.arch != start.arch,
            ) {
                (true, false) => side_changes += 1,
                (false, true) => arch_changes += 1,
                (false, false) => {}
                (true, true) => panic!("two genes changed: {child:?}"),
            }
            let fixed = mutate(&space, &[8], &start, &mut rng).unwrap();
            assert_eq!(fixed.resolution, 8);
            assert_ne!(fixed.arch, start.arch);
        }
        // The largest subnet of the tiny space has 2 depth genes, 3 kernel and 3 expansion
        // genes (blocks 1 to 3; block 0 is fixed) and the side: 1 in 9.
        assert!((25..=70).contains(&side_changes), "{side_changes}");
        assert!(arch_changes > 300, "{arch_changes}");
    }

    /// The predictor's encoding: one indicator per choice of each block, then one per side,
    /// with exactly one set in each group.
    #[test]
    fn encoding_has_one_indicator_per_block_and_for_the_side() {
        let space = tiny();
        let subnet = Subnet {
            arch: nasrs::nn::elastic::smallest_arch(&space),
            resolution: 6,
        };
        let choices: usize = space.blocks().iter().map(|b| b.choices().len()).sum();
        let x = encode(&space, &[5, 6, 8], &subnet);
        assert_eq!(x.len(), choices + 3);
        assert_eq!(&x[choices..], &[0.0, 1.0, 0.0]);
        assert_eq!(
            x[..choices].iter().sum::<f32>(),
            space.blocks().len() as f32
        );
    }

    /// Tables are matched to sides by the image size they were measured at, and every mismatch
    /// is refused naming the table: another space, a side not searched, two tables for one
    /// side, a side without a table, other measurement settings. Resolution lists that are
    /// empty, out of order, repeated or out of range are refused too.
    #[test]
    fn resolution_tables_and_lists_are_checked() {
        let space = tiny();
        let table = |side: usize| synthetic_table(&at_side(&space, side));
        let named = |side: usize| (format!("t{side}.json"), table(side));
        let tables = ResolutionTables::new(&space, &[6, 8], vec![named(8), named(6)]).unwrap();
        let sides: Vec<usize> = tables.tables().iter().map(|t| t.space.image_size).collect();
        assert_eq!(sides, [6, 8]);
        let subnet = Subnet {
            arch: nasrs::nn::elastic::smallest_arch(&space),
            resolution: 6,
        };
        assert_eq!(
            tables.predict(&subnet).unwrap(),
            table(6).predict(&subnet.arch).unwrap()
        );

        let error = |sides: &[usize], given: Vec<(String, LatencyTable)>| {
            ResolutionTables::new(&space, sides, given)
                .unwrap_err()
                .to_string()
        };
        let mut other = named(8);
        other.1.space.classes = 7;
        let message = error(&[8], vec![other]);
        assert!(
            message.contains("t8.json") && message.contains("classes 7 (the dataset's space: 3)"),
            "{message}"
        );
        let message = error(&[8], vec![named(6), named(8)]);
        assert!(
            message.contains("t6.json") && message.contains("not among"),
            "{message}"
        );
        let message = error(&[8], vec![named(8), named(8)]);
        assert!(message.contains("both for 8x8"), "{message}");
        let message = error(&[6, 8], vec![named(8)]);
        assert!(
            message.contains("no table for 6x6") && message.contains("--image-size 6"),
            "{message}"
        );
        let mut slower = named(6);
        slower.1.settings.threads = 2;
        let message = error(&[6, 8], vec![named(8), slower]);
        assert!(
            message.contains("t6.json")
                && message.contains("other settings")
                && message.contains("2 thread(s)"),
            "{message}"
        );

        check_resolutions(&[6, 8], 8).unwrap();
        check_resolutions(&[40], 32).unwrap();
        for (bad, expected) in [
            (vec![], "at least one"),
            (vec![0, 8], "found 0"),
            (vec![8, 33], "found 33"),
            (vec![8, 6], "8 before 6"),
            (vec![6, 6], "6 before 6"),
        ] {
            let message = check_resolutions(&bad, 8).unwrap_err().to_string();
            assert!(
                message.contains("resolutions") && message.contains(expected),
                "{bad:?}: {message}"
            );
        }
    }

    /// A measurement of subnets at two sides killed after three subnets (and in the middle of
    /// writing a fourth line) resumes measuring only the two it had not, keeps the three
    /// earlier results, and leaves a file of five complete lines. A subnet measured at one side
    /// counts as not measured at the other.
    #[test]
    fn resumed_measurement_skips_measured_subnets() {
        let space = tiny();
        let archs = draw_subnets(&space, &[6, 8], 5, 11);
        assert_eq!(archs.len(), 5);
        // A longer draw extends this one, so a resumed run may ask for more subnets.
        assert_eq!(draw_subnets(&space, &[6, 8], 40, 11)[..5], archs[..]);
        let sides: std::collections::HashSet<usize> = archs.iter().map(|s| s.resolution).collect();
        assert_eq!(sides.len(), 2, "{archs:?}");
        let dir = temp("measured");
        let path = dir.join("predictor_samples.jsonl");
        let result = |accuracy| EvalResult {
            loss: 1.0,
            accuracy,
            images: 10,
        };

        let mut calls = 0;
        let first = measure_subnets(
            &space,
            &archs[..3],
            &[],
            None,
            |_| {
                calls += 1;
                Ok(result(0.1 * calls as f64))
            },
            |m| append_measured(&path, m),
        )
        .unwrap();
        assert_eq!(calls, 3);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"key\":\"k3e6-k5").unwrap();
        drop(file);

        let done = read_measured(&path).unwrap();
        assert_eq!(done, first);
        let mut measured_now = Vec::new();
        let all = measure_subnets(
            &space,
            &archs,
            &done,
            None,
            |subnet| {
                measured_now.push(subnet.key(&space));
                Ok(result(0.9))
            },
            |m| append_measured(&path, m),
        )
        .unwrap();
        let expected: Vec<String> = archs[3..].iter().map(|s| s.key(&space)).collect();
        assert_eq!(measured_now, expected);
        let accuracies: Vec<f64> = all.iter().map(|m: &MeasuredSubnet| m.accuracy).collect();
        let rounded: Vec<f64> = accuracies
            .iter()
            .map(|a| (a * 10.0).round() / 10.0)
            .collect();
        assert_eq!(rounded, [0.1, 0.2, 0.3, 0.9, 0.9]);
        assert_eq!(read_measured(&path).unwrap(), all);

        let moved = Subnet {
            arch: archs[0].arch.clone(),
            resolution: 14 - archs[0].resolution,
        };
        let mut again = 0;
        let both = measure_subnets(
            &space,
            &[archs[0].clone(), moved],
            &all,
            None,
            |_| {
                again += 1;
                Ok(result(0.5))
            },
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(again, 1, "only the subnet at the other side is measured");
        assert_eq!((both[0].accuracy, both[1].accuracy), (all[0].accuracy, 0.5));
        std::fs::remove_dir_all(&dir).ok();
    }
}
