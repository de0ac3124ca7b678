//! Single-path one-shot (Guo et al. 2020) on the inverted-residual supernet: every weight step
//! trains one path drawn uniformly, so a candidate's weights move only in the steps that use
//! it; a subnet is then scored with the supernet's weights after its batch-norm statistics are
//! recomputed on training batches, since the running statistics a supernet accumulates mix
//! every path that ran through a layer.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::nn::mobile::MobileSupernet;
use crate::space::mobile::MobileSpace;
use crate::train::clip::clip_global_norm;
use crate::train::{correct_count, cross_entropy};

/// One candidate per block, each drawn uniformly among the block's choices.
pub fn uniform_path(space: &MobileSpace, rng: &mut ChaCha8Rng) -> Vec<usize> {
    space
        .blocks()
        .iter()
        .map(|shape| rng.random_range(0..shape.choices().len()))
        .collect()
}

/// What a weight step on one path computed.
#[derive(Clone, Copy, Debug)]
pub struct PathStep {
    /// Cross-entropy of the path's logits on the batch (before the step).
    pub loss: f64,
    /// Images of the batch the path classified correctly (before the step).
    pub correct: usize,
}

/// One weight step on the subnet `path` (an index into every block's choices): cross-entropy
/// of the path's logits on `x`, `y`, gradients clipped to a global norm of `grad_clip`, an
/// optimiser step at `lr`. Only the stem, the head and the path's candidates receive
/// gradients, so no other weight moves. The caller checks that the loss is finite.
pub fn path_step(
    model: MobileSupernet,
    optimizer: &mut ModuleOptimizer,
    path: &[usize],
    x: Tensor<4>,
    y: Tensor<1, Int>,
    lr: f64,
    grad_clip: f64,
) -> (MobileSupernet, PathStep) {
    let logits = model.forward_path(x, path);
    let loss = cross_entropy(logits.clone(), y.clone());
    let step = PathStep {
        loss: f64::from(loss.clone().into_scalar::<f32>()),
        correct: correct_count(logits.detach(), y),
    };
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    clip_global_norm(&model, &mut grads, grad_clip);
    (optimizer.step(lr, model, grads), step)
}

/// The supernet in evaluation mode with the batch-norm statistics of the subnet `path`
/// recomputed: the stem's, the chosen candidates' and the head's running statistics are
/// reset, then `batches` (training images, `[n, c, h, w]` on the plain device) run through the
/// path in training mode, each weighing `1 / k` at the `k`-th batch so that the statistics are
/// the plain average over the batches. No parameter changes; the other candidates' statistics
/// are left as they are.
pub fn recalibrate(
    model: &MobileSupernet,
    path: &[usize],
    batches: &[Tensor<4>],
) -> MobileSupernet {
    let mut subnet = model.valid().map_path_bn(path, |bn| {
        bn.reset_running_stats();
        bn.with_training(true)
    });
    for (k, x) in batches.iter().enumerate() {
        let weight = 1.0 / (k + 1) as f64;
        subnet = subnet.map_path_bn(path, |bn| bn.with_momentum(weight));
        drop(subnet.forward_path(x.clone(), path));
    }
    // burn keeps a running-statistics update pending until the next update or `value_sync`;
    // committing here makes evaluation (which reads the committed value) see the last batch.
    subnet.map_path_bn(path, |bn| {
        let _ = bn.running_mean.value_sync();
        let _ = bn.running_var.value_sync();
        bn.with_training(false).with_momentum(0.1)
    })
}
