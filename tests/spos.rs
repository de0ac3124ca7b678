//! Single-path one-shot on the inverted-residual supernet: a step on a sampled path moves only
//! that path's weights (and the shared stem and head), and recalibrating a subnet's batch
//! norm changes its running statistics, to the plain average over the batches, and nothing
//! else.

mod common;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use nasrs::nn::mobile::{BlockOp, MobileSupernet};
use nasrs::nn::{ParamInit, named_parameters};
use nasrs::search::spos::{path_step, recalibrate, uniform_path};
use nasrs::space::mobile::MobileSpace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny_space() -> MobileSpace {
    common::tiny_mobile_space()
}

/// `blocks.{b}.{i}.` names candidate `i` of block `b`; `None` for the stem and head.
fn candidate(name: &str) -> Option<(usize, usize)> {
    let mut parts = name.strip_prefix("blocks.")?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn a_path_step_moves_only_the_path_and_the_shared_layers() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::with_affine(&space, false, &mut ParamInit::new(1, &device));
    let before = named_parameters(&model);
    let path = uniform_path(&space, &mut ChaCha8Rng::seed_from_u64(4));
    let x = Tensor::<4>::random([4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_ints([0, 1, 2, 0], &device);
    let mut optimizer = nasrs::train::optim::sgd(0.9, 4e-5);
    let (model, step) = path_step(model, &mut optimizer, &path, x, y, 0.1, 5.0);
    assert!(step.loss.is_finite() && step.correct <= 4);
    let after = named_parameters(&model);
    assert_eq!(before.len(), after.len());
    let (mut moved_on_path, mut moved_shared) = (0, 0);
    for ((name, _, old), (_, _, new)) in before.iter().zip(&after) {
        let moved = old != new;
        match candidate(name) {
            Some((b, i)) if i != path[b] => assert!(!moved, "{name} is off the path and moved"),
            Some(_) => moved_on_path += usize::from(moved),
            None => moved_shared += usize::from(moved),
        }
    }
    // Every parameter of the path took a gradient: 3 convolutions per inverted residual
    // (non-affine batch norm has no parameters), minus skipped blocks.
    let convs: usize = space
        .blocks()
        .iter()
        .zip(&path)
        .map(|(s, &i)| {
            if s.choices()[i].name() == "skip" {
                0
            } else {
                3
            }
        })
        .sum();
    assert_eq!(moved_on_path, convs);
    // The stem's convolution, its affine batch norm (2), the head's convolution and batch norm
    // (2) and the classifier's weight and bias.
    assert_eq!(moved_shared, 1 + 2 + 1 + 2 + 2);
}

fn stats(bn: &nasrs::nn::batch_norm::BatchNorm2d) -> (Vec<f32>, Vec<f32>) {
    let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (read(bn.running_mean.value()), read(bn.running_var.value()))
}

/// After recalibration on two batches the stem's running mean is, per channel, the average of
/// the two batch means of its convolution's output (computed here directly); the parameters
/// are the supernet's, and a candidate off the path keeps the statistics it had.
#[test]
fn recalibration_changes_running_statistics_only() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::with_affine(&space, false, &mut ParamInit::new(2, &device));
    let path = vec![0, 3, 0, 6];
    let plain = device.clone().without_autodiff();
    let batches: Vec<Tensor<4>> = (0..2)
        .map(|k| {
            let values: Vec<f32> = (0..4 * 64)
                .map(|i| ((i * 7 + k * 13) % 17) as f32 / 4.0)
                .collect();
            Tensor::from_data(TensorData::new(values, [4, 1, 8, 8]), &plain)
        })
        .collect();
    let off_path = |m: &MobileSupernet| match &m.blocks[1][1] {
        BlockOp::MbConv(block) => stats(&block.expand.bn),
        BlockOp::Skip(_) => unreachable!("candidate 1 of block 1 is k3e6"),
    };
    let valid = model.valid();
    let off_before = off_path(&valid);
    let stem_before = stats(&valid.stem.conv.bn);

    let subnet = recalibrate(&model, &path, &batches);

    let params_before = named_parameters(&valid);
    let params_after = named_parameters(&subnet);
    assert_eq!(params_before.len(), params_after.len());
    for ((name, _, a), (_, _, b)) in params_before.iter().zip(&params_after) {
        assert_eq!(a, b, "{name} changed");
    }
    assert_eq!(
        off_path(&subnet),
        off_before,
        "an off-path candidate's statistics changed"
    );

    let conv = &valid.stem.conv.conv;
    let batch_mean = |x: &Tensor<4>| {
        let y = conv.forward(x.clone());
        y.mean_dims(&[0, 2, 3])
            .reshape([4])
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let (m1, m2) = (batch_mean(&batches[0]), batch_mean(&batches[1]));
    let (mean, _) = stats(&subnet.stem.conv.bn);
    assert_ne!(mean, stem_before.0);
    for c in 0..4 {
        let want = (m1[c] + m2[c]) / 2.0;
        assert!(
            (mean[c] - want).abs() < 1e-4,
            "channel {c}: {} vs {want}",
            mean[c]
        );
    }
    // The recalibrated subnet evaluates with running statistics again.
    assert!(!subnet.stem.conv.bn.training.is_enabled());
}
