//! ProxylessNAS (Cai, Zhu and Han 2019): a supernet over the inverted-residual chain space
//! searched by path-level binarisation, with the expected latency from a latency table in the
//! loss.
//!
//! Each epoch alternates two steps per batch:
//! - **weights**: one candidate per block is sampled from `softmax(alpha)`; only that path runs
//!   forward and backward, so memory stays that of one network and no other candidate's
//!   weights move;
//! - **architecture** (after the warm-up epochs): two distinct candidates per block are
//!   sampled from `softmax(alpha)` and one of them is made active with the probabilities of
//!   the two renormalised. The block's output is `g_a o_a + g_b o_b` with binary gates `g`
//!   (1 for the active candidate, 0 for the other); the gradient reaching the gates,
//!   `dL/dg_k = <dL/d output, o_k>`, becomes a gradient of the two logits through the softmax
//!   over the pair, `dL/dalpha_i = sum_k dL/dg_k p_k (delta_ik - p_i)`. The inactive candidate's
//!   output is computed without a graph: its value is all the gate gradient needs. The loss
//!   adds the expected latency `sum_blocks sum_ops p(op) latency(op, shape)` of the table,
//!   either multiplicatively, `CE (log E / log T)^beta` (latencies in microseconds so the
//!   logarithms stay positive), or additively, `CE + lambda (E - T) / T`. Only the two sampled
//!   logits of a block are updated (Adam without momentum, as the paper's code sets it, so a
//!   logit without gradient does not move either); then both are shifted by the same offset so
//!   that their summed exponentials, and with them every other candidate's probability, are
//!   what they were before the step.
//!
//! The target does not steer the multiplicative form: its gradient is
//! `(ln T)^-beta [(ln E)^beta dCE + CE beta (ln E)^(beta-1) dE / E]`, the target only a
//! positive factor in front, and Adam, which divides each logit's step by its own gradient
//! scale, then takes the same steps whatever the target (two searches with targets 2.5 and
//! 3.5 ms were bit for bit identical through their first architecture epoch, when they were
//! stopped). The additive form weights the latency by `lambda / T`, so a tighter target pushes harder, but it pushes below the target as well,
//! and a latency gradient of constant sign against the noisy cross-entropy gradient drove the
//! skip logits up in every block for targets of 2.4 and 3.6 ms alike. The hinge form,
//! `CE + lambda max(0, E - T) / T`, pulls only while the expected latency is over the target:
//! the default of the command line.
//!
//! The architecture found is the most probable candidate of every block. With a latency
//! target, if the table predicts that architecture over the target, blocks move to cheaper
//! candidates, each time the move that gives up the least log-probability per millisecond
//! saved, until the prediction meets the target; the result says whether that happened.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::softmax;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::ensure_same_settings;
use crate::data::{BatchLoader, LoaderState};
use crate::latency::LatencyTable;
use crate::nn::ParamInit;
use crate::nn::mobile::MobileSupernet;
use crate::search::Resumable;
use crate::search::spos::path_step;
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::train::tensors::batch_tensors;
use crate::train::{cosine_at, cross_entropy, evaluate};
use crate::{NasError, Result};

/// How the expected latency enters the architecture loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "kebab-case")]
pub enum LatencyLoss {
    /// `CE * (ln E_us / ln T_us)^beta`, latencies in microseconds.
    MulLog {
        /// The exponent (0.6 in the paper's code).
        beta: f64,
    },
    /// `CE + lambda * (E - T) / T`.
    Add {
        /// The weight of the relative excess (0.2 in the paper's code).
        lambda: f64,
    },
    /// `CE + lambda * max(0, E - T) / T`: the target as a budget, no pull below it.
    Hinge {
        /// The weight of the relative excess.
        lambda: f64,
    },
}

/// Settings of a ProxylessNAS search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxylessConfig {
    /// The space (stem, stages, head).
    pub space: MobileSpace,
    /// Epochs over the weight half of the data.
    pub epochs: usize,
    /// Epochs at the start that train weights only (paths sampled uniformly, since the logits
    /// start equal).
    pub warmup_epochs: usize,
    /// Initial weight learning rate, cosine-annealed per batch to `lr_min`.
    pub lr: f64,
    /// Final weight learning rate.
    pub lr_min: f64,
    /// SGD momentum of the weights.
    pub momentum: f64,
    /// SGD weight decay of the weights.
    pub weight_decay: f64,
    /// Global gradient-norm clip of the weights.
    pub grad_clip: f64,
    /// Adam learning rate of the architecture logits.
    pub arch_lr: f64,
    /// Adam's second-moment decay for the logits.
    pub arch_beta2: f64,
    /// Adam's epsilon for the logits.
    pub arch_eps: f64,
    /// Latency target in milliseconds; `None` searches for accuracy alone.
    pub target_ms: Option<f64>,
    /// The form of the latency term.
    pub latency_loss: LatencyLoss,
    /// The seed of the run.
    pub seed: u64,
}

impl ProxylessConfig {
    /// Rejects impossible settings with the name of the offending field.
    pub fn check(&self) -> Result<()> {
        self.space.check()?;
        if self.epochs == 0 {
            return Err(NasError::config("epochs", "must be at least 1"));
        }
        if self.warmup_epochs >= self.epochs {
            return Err(NasError::config(
                "warmup_epochs",
                format!(
                    "must be below epochs ({}) or the architecture never trains, found {}",
                    self.epochs, self.warmup_epochs
                ),
            ));
        }
        for (field, value) in [
            ("lr", self.lr),
            ("arch_lr", self.arch_lr),
            ("grad_clip", self.grad_clip),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(NasError::config(
                    field,
                    format!("must be positive, found {value}"),
                ));
            }
        }
        if !(self.lr_min.is_finite() && (0.0..=self.lr).contains(&self.lr_min)) {
            return Err(NasError::config(
                "lr_min",
                format!("must be in [0, lr = {}], found {}", self.lr, self.lr_min),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(NasError::config("weight_decay", "must be >= 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) || !(0.0..1.0).contains(&self.arch_beta2) {
            return Err(NasError::config(
                "momentum",
                "momentum and arch_beta2 must be in [0, 1)",
            ));
        }
        if !(self.arch_eps.is_finite() && self.arch_eps > 0.0) {
            return Err(NasError::config("arch_eps", "must be positive"));
        }
        if let Some(t) = self.target_ms
            && !(t.is_finite() && t * 1e3 > 1.0)
        {
            return Err(NasError::config(
                "target_ms",
                format!("must be a latency above 0.001 ms, found {t}"),
            ));
        }
        match self.latency_loss {
            LatencyLoss::MulLog { beta } if !(beta.is_finite() && beta >= 0.0) => Err(
                NasError::config("beta", format!("must be >= 0, found {beta}")),
            ),
            LatencyLoss::Add { lambda } | LatencyLoss::Hinge { lambda }
                if !(lambda.is_finite() && lambda >= 0.0) =>
            {
                Err(NasError::config(
                    "lambda",
                    format!("must be >= 0, found {lambda}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The architecture logits of every block with the state of their optimiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchWeights {
    /// `alpha[b][i]`: the logit of choice `i` (in [`crate::space::mobile::BlockShape::choices`]
    /// order) of block `b`.
    pub alpha: Vec<Vec<f64>>,
    /// Adam's second moments, one per logit.
    second_moment: Vec<Vec<f64>>,
    /// Adam steps taken by each logit (its bias correction).
    steps: Vec<Vec<u64>>,
}

/// Two candidates of one block in an architecture step: `pair[0]` is the active one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampledPair {
    /// The active candidate, then the inactive one (indices into the block's choices).
    pub pair: [usize; 2],
}

impl ArchWeights {
    /// All logits zero for the blocks of `space`: every candidate equally likely.
    pub fn zeros(space: &MobileSpace) -> Self {
        let sizes: Vec<usize> = space.blocks().iter().map(|s| s.choices().len()).collect();
        ArchWeights {
            alpha: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            second_moment: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            steps: sizes.iter().map(|&n| vec![0; n]).collect(),
        }
    }

    /// `softmax(alpha[block])`.
    pub fn probabilities(&self, block: usize) -> Vec<f64> {
        softmax_f64(&self.alpha[block])
    }

    /// One candidate per block drawn from `softmax(alpha)`.
    pub fn sample_path(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        (0..self.alpha.len())
            .map(|b| draw(&self.probabilities(b), rng))
            .collect()
    }

    /// Two distinct candidates per block drawn from `softmax(alpha)` without replacement, the
    /// active one chosen with the pair's renormalised probabilities. A block with a single
    /// candidate gets the pair `[0, 0]` and takes no architecture update.
    pub fn sample_pairs(&self, rng: &mut ChaCha8Rng) -> Vec<SampledPair> {
        (0..self.alpha.len())
            .map(|b| {
                if self.alpha[b].len() < 2 {
                    return SampledPair { pair: [0, 0] };
                }
                let p = self.probabilities(b);
                let first = draw(&p, rng);
                let mut rest = p.clone();
                rest[first] = 0.0;
                let second = draw(&rest, rng);
                let pair = softmax_f64(&[self.alpha[b][first], self.alpha[b][second]]);
                if rng.random::<f64>() < pair[0] {
                    SampledPair {
                        pair: [first, second],
                    }
                } else {
                    SampledPair {
                        pair: [second, first],
                    }
                }
            })
            .collect()
    }

    /// One Adam step (no first moment) on the two logits `pair` of `block` with their
    /// gradients, then the shift that restores the pair's summed exponentials. No other logit
    /// of the block changes, so no other probability does.
    pub fn update_pair(
        &mut self,
        block: usize,
        pair: [usize; 2],
        grads: [f64; 2],
        config: &ProxylessConfig,
    ) {
        let before = log_sum_exp(&[self.alpha[block][pair[0]], self.alpha[block][pair[1]]]);
        for (&i, &g) in pair.iter().zip(&grads) {
            let v = &mut self.second_moment[block][i];
            *v = config.arch_beta2 * *v + (1.0 - config.arch_beta2) * g * g;
            self.steps[block][i] += 1;
            let corrected = *v / (1.0 - config.arch_beta2.powi(self.steps[block][i] as i32));
            self.alpha[block][i] -= config.arch_lr * g / (corrected.sqrt() + config.arch_eps);
        }
        let after = log_sum_exp(&[self.alpha[block][pair[0]], self.alpha[block][pair[1]]]);
        for &i in &pair {
            self.alpha[block][i] += before - after;
        }
    }

    /// The most probable candidate of every block, as indices.
    pub fn argmax(&self) -> Vec<usize> {
        self.alpha
            .iter()
            .map(|a| {
                (0..a.len())
                    .max_by(|&x, &y| a[x].total_cmp(&a[y]).then(y.cmp(&x)))
                    .unwrap_or(0)
            })
            .collect()
    }
}

fn softmax_f64(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

fn log_sum_exp(logits: &[f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln()
}

/// An index drawn with probability proportional to `weights`.
fn draw(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

/// The expected latency in milliseconds as a differentiable function of the logits:
/// `fixed_ms + sum_b sum_i softmax(alpha_b)_i choice_ms[b][i]`.
pub fn expected_latency(alphas: &[Tensor<1>], choice_ms: &[Vec<f64>], fixed_ms: f64) -> Tensor<1> {
    let device = alphas[0].device();
    let mut total = Tensor::<1>::from_floats([fixed_ms as f32], &device);
    for (alpha, ms) in alphas.iter().zip(choice_ms) {
        let ms: Vec<f32> = ms.iter().map(|&m| m as f32).collect();
        let n = ms.len();
        let table = Tensor::<1>::from_data(TensorData::new(ms, [n]), &device);
        total = total + (softmax(alpha.clone(), 0) * table).sum();
    }
    total
}

/// The architecture loss: the cross-entropy `ce` combined with the expected latency
/// `expected_ms` ([`expected_latency`]) against `target_ms`, or `ce` alone without a target.
pub fn latency_loss(
    ce: Tensor<1>,
    expected_ms: Tensor<1>,
    target_ms: Option<f64>,
    form: LatencyLoss,
) -> Tensor<1> {
    let Some(target) = target_ms else {
        return ce;
    };
    match form {
        LatencyLoss::MulLog { beta } => {
            let ratio = expected_ms
                .mul_scalar(1e3)
                .log()
                .div_scalar((target * 1e3).ln());
            ce * ratio.powf_scalar(beta)
        }
        LatencyLoss::Add { lambda } => {
            ce + expected_ms
                .sub_scalar(target)
                .div_scalar(target)
                .mul_scalar(lambda)
        }
        LatencyLoss::Hinge { lambda } => {
            let excess = expected_ms.sub_scalar(target).clamp_min(0.0);
            ce + excess.div_scalar(target).mul_scalar(lambda)
        }
    }
}

/// What one architecture step computed.
#[derive(Clone, Copy, Debug)]
pub struct ArchStep {
    /// Cross-entropy of the active path on the batch.
    pub ce: f64,
    /// Expected latency before the step, in milliseconds.
    pub expected_ms: f64,
}

/// One architecture step on a batch: samples two candidates per block, computes the loss with
/// binary gates, and updates only the sampled logits ([`ArchWeights::update_pair`]). Returns
/// the step's figures and the pairs sampled.
pub fn arch_step(
    model: &MobileSupernet,
    arch: &mut ArchWeights,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    latency: Option<(&[Vec<f64>], f64)>,
    config: &ProxylessConfig,
    rng: &mut ChaCha8Rng,
) -> (ArchStep, Vec<SampledPair>) {
    let device = x.device();
    let pairs = arch.sample_pairs(rng);
    let alphas: Vec<Tensor<1>> = arch
        .alpha
        .iter()
        .map(|a| {
            let values: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let n = values.len();
            Tensor::<1>::from_data(TensorData::new(values, [n]), &device).require_grad()
        })
        .collect();

    // The weights take no gradient here: a frozen copy shares their values.
    let frozen = model.clone().no_grad();
    let mut h = frozen.stem.forward(x);
    for ((ops, alpha), sampled) in frozen.blocks.iter().zip(&alphas).zip(&pairs) {
        let [active, inactive] = sampled.pair;
        if active == inactive {
            h = ops[active].forward(h);
            continue;
        }
        let index = Tensor::<1, Int>::from_ints([active as i64, inactive as i64], &device);
        let p = softmax(alpha.clone().select(0, index), 0);
        let binary = Tensor::<1>::from_floats([1.0, 0.0], &device);
        // Forward value: the binary gates; backward: the gradient of the pair's softmax.
        let gates = p.clone() - p.detach() + binary;
        let on = ops[active].forward(h.clone());
        let off = ops[inactive].forward(h.detach()).detach();
        h = on * gates.clone().narrow(0, 0, 1).reshape([1, 1, 1, 1])
            + off * gates.narrow(0, 1, 1).reshape([1, 1, 1, 1]);
    }
    let logits = frozen.head.forward(h);
    let ce = cross_entropy(logits, y);
    let ce_value = f64::from(ce.clone().into_scalar::<f32>());
    let (loss, expected_ms) = match latency {
        Some((choice_ms, fixed_ms)) => {
            let expected = expected_latency(&alphas, choice_ms, fixed_ms);
            let value = f64::from(expected.clone().into_scalar::<f32>());
            (
                latency_loss(ce, expected, config.target_ms, config.latency_loss),
                value,
            )
        }
        None => (ce, f64::NAN),
    };
    let grads = loss.backward();
    for (b, (alpha, sampled)) in alphas.iter().zip(&pairs).enumerate() {
        let g: Vec<f32> = alpha
            .grad(&grads)
            .map(|t| {
                t.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let at = |i: usize| g.get(i).copied().map_or(0.0, f64::from);
        let [i, j] = sampled.pair;
        if i != j {
            arch.update_pair(b, [i, j], [at(i), at(j)], config);
        }
    }
    (
        ArchStep {
            ce: ce_value,
            expected_ms,
        },
        pairs,
    )
}

/// The data of a search: batches for the weights, batches for the architecture (a disjoint
/// part of the training split), and an unaugmented pass over the architecture part for
/// measuring the derived network each epoch.
pub struct ProxylessData {
    /// Weight batches.
    pub train: BatchLoader,
    /// Architecture batches.
    pub valid: BatchLoader,
    /// Evaluation over the architecture part.
    pub valid_eval: BatchLoader,
}

/// One epoch of a search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxylessEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Learning rate at the first batch.
    pub lr: f64,
    /// Whether the architecture was trained.
    pub arch_updated: bool,
    /// Mean training loss of the sampled paths.
    pub train_loss: f64,
    /// Training accuracy of the sampled paths.
    pub train_accuracy: f64,
    /// Mean cross-entropy of the architecture steps (none in warm-up).
    pub arch_ce: Option<f64>,
    /// Expected latency at the end of the epoch, in milliseconds (with a table).
    pub expected_ms: Option<f64>,
    /// The most probable architecture.
    pub arch: String,
    /// Its latency predicted by the table (with a table).
    pub arch_predicted_ms: Option<f64>,
    /// Its accuracy on the architecture part, with the supernet's weights.
    pub valid_accuracy: f64,
    /// Probabilities of every block's candidates.
    pub probabilities: Vec<Vec<f64>>,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// The result of a search.
pub struct ProxylessOutcome {
    /// One record per epoch.
    pub epochs: Vec<ProxylessEpoch>,
    /// The final logits.
    pub arch_weights: ArchWeights,
    /// The architecture found (after the move to the target, when one was needed).
    pub arch: Vec<BlockChoice>,
    /// The most probable architecture before any move to the target.
    pub argmax: Vec<BlockChoice>,
    /// Blocks moved to cheaper candidates to meet the target.
    pub moved_blocks: usize,
    /// Predicted latency of `arch`, in milliseconds (with a table).
    pub predicted_ms: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ProxylessState {
    config: ProxylessConfig,
    next_epoch: usize,
    records: Vec<ProxylessEpoch>,
    arch: ArchWeights,
    rng: ChaCha8Rng,
    train: LoaderState,
    valid: LoaderState,
}

/// The choices of `indices` in `space`.
fn choices(space: &MobileSpace, indices: &[usize]) -> Vec<BlockChoice> {
    space
        .blocks()
        .iter()
        .zip(indices)
        .map(|(shape, &i)| shape.choices()[i])
        .collect()
}

/// Moves blocks of `indices` to cheaper candidates until `choice_ms` predicts at most
/// `target_ms`, each time the move with the least log-probability lost per millisecond saved.
/// Returns the number of moves; stops when no cheaper candidate is left.
pub fn meet_target(
    arch: &ArchWeights,
    indices: &mut [usize],
    choice_ms: &[Vec<f64>],
    fixed_ms: f64,
    target_ms: f64,
) -> usize {
    let predict =
        |ix: &[usize]| fixed_ms + ix.iter().zip(choice_ms).map(|(&i, ms)| ms[i]).sum::<f64>();
    let mut moves = 0;
    while predict(indices) > target_ms {
        let mut best: Option<(f64, usize, usize)> = None;
        for (b, ms) in choice_ms.iter().enumerate() {
            let current = indices[b];
            for (i, &cost) in ms.iter().enumerate() {
                let saved = ms[current] - cost;
                if saved <= 0.0 {
                    continue;
                }
                let lost = arch.alpha[b][current] - arch.alpha[b][i];
                let price = lost / saved;
                if best.is_none_or(|(p, _, _)| price < p) {
                    best = Some((price, b, i));
                }
            }
        }
        let Some((_, b, i)) = best else { break };
        indices[b] = i;
        moves += 1;
    }
    moves
}

/// Runs the search on `device`, with `table` giving the latencies (required with a target).
/// `on_epoch` hears every epoch after its checkpoint is written.
///
/// # Errors
/// [`NasError::Config`] for invalid settings, a target without a table, or a table of another
/// space; [`NasError::Numerical`] when the training loss diverges; I/O errors of the
/// checkpoint.
pub fn search(
    config: &ProxylessConfig,
    data: &mut ProxylessData,
    table: Option<&LatencyTable>,
    device: &Device,
    resumable: Option<&Resumable>,
    mut on_epoch: impl FnMut(&ProxylessEpoch) -> Result<()>,
) -> Result<ProxylessOutcome> {
    config.check()?;
    if config.target_ms.is_some() && table.is_none() {
        return Err(NasError::config(
            "target_ms",
            "a latency target needs a latency table",
        ));
    }
    if let Some(t) = table
        && t.space != config.space
    {
        return Err(NasError::config(
            "latency table",
            "the table was measured for another space (stages, widths or image size differ)",
        ));
    }
    let latency = match table {
        Some(t) => Some((t.choice_ms()?, t.fixed_ms()?)),
        None => None,
    };
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    let mut model = MobileSupernet::new(&config.space, &mut ParamInit::new(config.seed, &ad));
    let mut optimizer = crate::train::optim::sgd(config.momentum, config.weight_decay);
    let mut arch = ArchWeights::zeros(&config.space);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut records: Vec<ProxylessEpoch> = Vec::with_capacity(config.epochs);
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: ProxylessState = r.checkpoint.load_state()?;
        ensure_same_settings(&state.config, config)?;
        model = r.checkpoint.load_model(model)?;
        optimizer = r.checkpoint.load_optimizer("weights", optimizer)?;
        data.train.restore(state.train)?;
        data.valid.restore(state.valid)?;
        arch = state.arch;
        rng = state.rng;
        records = state.records;
        start = state.next_epoch;
        tracing::info!(epochs_done = start, "resuming search");
    }
    tracing::info!(
        parameters = crate::nn::count_parameters(&model),
        blocks = arch.alpha.len(),
        "supernet built"
    );

    let steps = data.train.batches_per_epoch();
    for epoch in start..config.epochs {
        let started = Instant::now();
        let arch_updated = epoch >= config.warmup_epochs;
        let lr_of = |step: usize| {
            let progress = (epoch * steps + step) as f64 / (config.epochs * steps) as f64;
            cosine_at(config.lr, config.lr_min, progress)
        };
        let bar = crate::report::progress::epoch_bar(steps as u64, epoch + 1, config.epochs);
        let (mut loss_sum, mut correct, mut images) = (0.0, 0, 0);
        let (mut arch_ce_sum, mut arch_steps) = (0.0, 0);
        for (step, batch) in data.train.epoch().enumerate() {
            let path = arch.sample_path(&mut rng);
            let (x, y) = batch_tensors(&batch, &ad);
            let (stepped, done) = path_step(
                model,
                &mut optimizer,
                &path,
                x,
                y,
                lr_of(step),
                config.grad_clip,
            );
            model = stepped;
            if !done.loss.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {} in epoch {}; lower --lr",
                    done.loss,
                    epoch + 1
                )));
            }
            correct += done.correct;
            loss_sum += done.loss * batch.n as f64;
            images += batch.n;

            if arch_updated {
                let valid_batch = data.valid.next_cycling();
                let (x, y) = batch_tensors(&valid_batch, &ad);
                let view = latency.as_ref().map(|(c, f)| (c.as_slice(), *f));
                let (result, _) = arch_step(&model, &mut arch, x, y, view, config, &mut rng);
                arch_ce_sum += result.ce;
                arch_steps += 1;
            }
            bar.set_message(format!("loss {:.3}", loss_sum / images as f64));
            bar.inc(1);
            crate::report::progress::log_if_hidden(
                &bar,
                epoch + 1,
                loss_sum / images as f64,
                started,
            );
        }
        bar.finish_and_clear();

        let best = arch.argmax();
        let eval_model = model.valid();
        let valid = evaluate(&mut data.valid_eval, &plain, |x| {
            eval_model.forward_path(x, &best)
        });
        valid.ensure_finite("validation", epoch + 1)?;
        let (expected_ms, arch_predicted_ms) = match &latency {
            Some((choice_ms, fixed_ms)) => {
                let expected = fixed_ms
                    + choice_ms
                        .iter()
                        .enumerate()
                        .map(|(b, ms)| {
                            arch.probabilities(b)
                                .iter()
                                .zip(ms)
                                .map(|(p, m)| p * m)
                                .sum::<f64>()
                        })
                        .sum::<f64>();
                let predicted = fixed_ms
                    + best
                        .iter()
                        .zip(choice_ms)
                        .map(|(&i, ms)| ms[i])
                        .sum::<f64>();
                (Some(expected), Some(predicted))
            }
            None => (None, None),
        };
        let record = ProxylessEpoch {
            epoch: epoch + 1,
            seed: config.seed,
            lr: lr_of(0),
            arch_updated,
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            arch_ce: (arch_steps > 0).then(|| arch_ce_sum / arch_steps as f64),
            expected_ms,
            arch: config.space.key(&choices(&config.space, &best)),
            arch_predicted_ms,
            valid_accuracy: valid.accuracy,
            probabilities: (0..arch.alpha.len())
                .map(|b| arch.probabilities(b))
                .collect(),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            train_loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            valid_acc = format!("{:.4}", record.valid_accuracy),
            expected_ms = record.expected_ms.map(|v| format!("{v:.3}")),
            predicted_ms = record.arch_predicted_ms.map(|v| format!("{v:.3}")),
            "epoch done; most probable architecture {}",
            record.arch
        );
        records.push(record.clone());
        if let Some(r) = resumable {
            let state = ProxylessState {
                config: config.clone(),
                next_epoch: epoch + 1,
                records: records.clone(),
                arch: arch.clone(),
                rng: rng.clone(),
                train: data.train.state(),
                valid: data.valid.state(),
            };
            r.checkpoint
                .save(&model, &[("weights", &optimizer)], &state)?;
        }
        on_epoch(&record)?;
    }

    let argmax_indices = arch.argmax();
    let mut indices = argmax_indices.clone();
    let mut moved_blocks = 0;
    let mut predicted_ms = None;
    if let Some((choice_ms, fixed_ms)) = &latency {
        if let Some(target) = config.target_ms {
            meet_target(&arch, &mut indices, choice_ms, *fixed_ms, target);
            moved_blocks = indices
                .iter()
                .zip(&argmax_indices)
                .filter(|(a, b)| a != b)
                .count();
        }
        predicted_ms = Some(
            fixed_ms
                + indices
                    .iter()
                    .zip(choice_ms)
                    .map(|(&i, ms)| ms[i])
                    .sum::<f64>(),
        );
    }
    Ok(ProxylessOutcome {
        epochs: records,
        arch: choices(&config.space, &indices),
        argmax: choices(&config.space, &argmax_indices),
        arch_weights: arch,
        moved_blocks,
        predicted_ms,
    })
}
