//! Progressive shrinking of Once-for-All (Cai et al. 2020, "Once-for-All: Train One Network and
//! Specialize it for Efficient Deployment", section 3.3): the schedule of training phases.
//!
//! The elastic network ([`crate::nn::elastic::ElasticNetwork`]) is first trained as the full
//! network; each later phase samples subnets along one more elastic dimension, in the order
//! kernel, then depth, then width, so that the large subnets are trained before the small ones
//! share their weights. A phase lists the dimensions elastic in it; a phase may repeat the
//! previous one's (the paper trains depth and width each in two phases of growing range).
//!
//! A schedule is written in TOML (or JSON, through serde) as a list of phases:
//!
//! ```toml
//! [[phase]]
//! name = "full"
//! epochs = 4
//! lr = 0.05
//!
//! [[phase]]
//! dims = "kernel"          # or a list: ["kernel"]
//! epochs = 2
//! lr = 0.02
//! ```
//!
//! [`train_ofa`] runs a schedule: the full network first, then subnets sampled along the
//! phase's dimensions, distilled from the full network ([`distillation_loss`]).
//!
//! Elastic resolution is not a phase: as in the paper, every batch of every phase (the full
//! network's included) is resized to a side drawn uniformly from [`OfaConfig::resolutions`],
//! and the teacher sees the same resized batch. A subnet is then an architecture plus the side
//! it runs at; its batch norm is recalibrated on calibration batches of that side.

use std::path::Path;
use std::time::Instant;

use burn::module::RunningState;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::ensure_same_settings;
use crate::data::{BatchLoader, LoaderState};
use crate::nn::ParamInit;
use crate::nn::batch_norm::BatchNorm2d;
use crate::nn::elastic::{
    ElasticDim, ElasticDims, ElasticNetwork, largest_arch, sample_arch, sample_resolution,
    smallest_arch,
};
use crate::nn::mobile::{BlockOp, MobileNetwork};
use crate::nn::saved::{load_weights, read_info, save_with_info};
use crate::search::Resumable;
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::train::clip::clip_global_norm;
use crate::train::tensors::{batch_tensors, resize_images};
use crate::train::{EvalResult, correct_count, cosine_at, cross_entropy, evaluate};
use crate::{NasError, Result};

/// One phase of progressive shrinking.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// A name for logs and records.
    pub name: String,
    /// The dimensions sampled in this phase; the others stay at their largest value.
    pub dims: ElasticDims,
    /// Epochs of the phase (at least 1).
    pub epochs: usize,
    /// Learning rate at the start of the phase.
    pub lr: f64,
}

impl Phase {
    /// A phase named after the last dimension it makes elastic, `full` when none.
    pub fn new(dims: ElasticDims, epochs: usize, lr: f64) -> Self {
        Phase {
            name: default_name(dims),
            dims,
            epochs,
            lr,
        }
    }
}

/// The name of a phase written without one: its last elastic dimension in
/// [`ElasticDim::ORDER`], or `full`.
fn default_name(dims: ElasticDims) -> String {
    dims.enabled()
        .last()
        .map_or("full", |d| d.name())
        .to_string()
}

/// Reads the elastic dimensions of phase `index` from names joined by commas
/// (`kernel,depth`; empty or `none` for the full network).
///
/// # Errors
/// [`NasError::Config`] on field `phases[index].dims` naming the phase and the unknown
/// dimension.
pub fn parse_phase_dims(index: usize, text: &str) -> Result<ElasticDims> {
    ElasticDims::parse(text).map_err(|e| match e {
        NasError::Config { message, .. } => NasError::config(
            format!("phases[{index}].dims"),
            format!("phase {index}: {message}"),
        ),
        other => other,
    })
}

/// The phases of progressive shrinking, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleText", into = "ScheduleText")]
pub struct Schedule {
    /// The phases, the full network first.
    pub phases: Vec<Phase>,
}

impl Default for Schedule {
    /// [`Schedule::progressive`].
    fn default() -> Self {
        Self::progressive()
    }
}

impl Schedule {
    /// The paper's order: the full network, then `+kernel`, `+depth` and `+width`, each phase
    /// with the dimensions of the one before and the next one. The learning rate falls from
    /// phase to phase since each phase fine-tunes the weights of the one before, as in the
    /// paper; the epoch counts are sized for a CPU run on a small dataset, not the paper's
    /// ImageNet budget.
    pub fn progressive() -> Self {
        let kernel = ElasticDims::NONE.with(ElasticDim::Kernel);
        let depth = kernel.with(ElasticDim::Depth);
        let width = depth.with(ElasticDim::Width);
        Schedule {
            phases: vec![
                Phase::new(ElasticDims::NONE, 4, 0.05),
                Phase::new(kernel, 2, 0.02),
                Phase::new(depth, 2, 0.01),
                Phase::new(width, 2, 0.01),
            ],
        }
    }

    /// Rejects a schedule that progressive shrinking cannot follow: no phase; a first phase
    /// with an elastic dimension (it trains the full network); a phase that drops a dimension
    /// made elastic before, adds more than one, or adds one out of the order kernel, depth,
    /// width; zero epochs; a learning rate that is not positive and finite.
    ///
    /// # Errors
    /// [`NasError::Config`] on `phases[i].dims`, `phases[i].epochs` or `phases[i].lr` naming
    /// phase `i` and, for the order, the dimension at fault.
    pub fn check(&self) -> Result<()> {
        if self.phases.is_empty() {
            return Err(NasError::config(
                "phases",
                "at least one phase is needed, the full network first",
            ));
        }
        let mut previous = ElasticDims::NONE;
        for (i, phase) in self.phases.iter().enumerate() {
            let field = |name: &str| format!("phases[{i}].{name}");
            check_order(i, previous, phase.dims).map_err(|m| NasError::config(field("dims"), m))?;
            if phase.epochs == 0 {
                return Err(NasError::config(
                    field("epochs"),
                    format!(
                        "phase {i} (`{}`) must train at least 1 epoch, found 0",
                        phase.name
                    ),
                ));
            }
            if !(phase.lr.is_finite() && phase.lr > 0.0) {
                return Err(NasError::config(
                    field("lr"),
                    format!(
                        "phase {i} (`{}`) needs a positive, finite learning rate, found {}",
                        phase.name, phase.lr
                    ),
                ));
            }
            previous = phase.dims;
        }
        Ok(())
    }

    /// Reads the TOML form (a `[[phase]]` table per phase with `name` (optional), `dims` (a
    /// comma-separated text or a list of names, optional: none), `epochs` and `lr`) and checks
    /// it.
    ///
    /// # Errors
    /// [`NasError::Config`] on `phases` when the text is not such TOML, otherwise as the
    /// dimension names and [`Schedule::check`].
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let written: ScheduleText = toml::from_str(text).map_err(|e| {
            NasError::config(
                "phases",
                format!("not a valid TOML schedule: {}", e.to_string().trim_end()),
            )
        })?;
        Schedule::try_from(written)
    }

    /// The TOML form, which [`Schedule::from_toml_str`] reads back.
    ///
    /// # Errors
    /// [`NasError::Config`] on `phases` if the serialiser fails (it does not on these types).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(&ScheduleText::from(self.clone()))
            .map_err(|e| NasError::config("phases", format!("cannot write TOML: {e}")))
    }
}

/// Why phase `index` cannot follow a phase whose elastic dimensions are `previous`, if it
/// cannot.
fn check_order(
    index: usize,
    previous: ElasticDims,
    dims: ElasticDims,
) -> std::result::Result<(), String> {
    if index == 0 {
        if let Some(first) = dims.enabled().first() {
            return Err(format!(
                "phase 0 makes `{first}` elastic, but the first phase trains the full network \
                 with no elastic dimension"
            ));
        }
        return Ok(());
    }
    if let Some(dropped) = previous.enabled().into_iter().find(|&d| !dims.contains(d)) {
        return Err(format!(
            "phase {index} drops `{dropped}`, which phase {} made elastic: a dimension stays \
             elastic once enabled",
            index - 1
        ));
    }
    let added: Vec<ElasticDim> = dims
        .enabled()
        .into_iter()
        .filter(|&d| !previous.contains(d))
        .collect();
    let next = ElasticDim::ORDER
        .into_iter()
        .find(|&d| !previous.contains(d));
    match (added.as_slice(), next) {
        ([], _) => Ok(()),
        ([one], Some(next)) if *one == next => Ok(()),
        ([one], Some(next)) => Err(format!(
            "phase {index} adds `{one}` before `{next}`: progressive shrinking makes kernel \
             elastic first, then depth, then width"
        )),
        (several, _) => {
            let names: Vec<String> = several.iter().map(|d| format!("`{d}`")).collect();
            Err(format!(
                "phase {index} adds {} at once: a phase adds one dimension, in the order \
                 kernel, depth, width",
                names.join(" and ")
            ))
        }
    }
}

/// A schedule as written: the phases under the key `phase`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleText {
    phase: Vec<PhaseText>,
}

/// A phase as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseText {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    dims: DimsText,
    epochs: usize,
    lr: f64,
}

/// Elastic dimensions as written: `"kernel,depth"` or `["kernel", "depth"]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum DimsText {
    Text(String),
    List(Vec<String>),
}

impl Default for DimsText {
    fn default() -> Self {
        DimsText::Text(String::new())
    }
}

impl TryFrom<ScheduleText> for Schedule {
    type Error = NasError;

    fn try_from(written: ScheduleText) -> Result<Self> {
        let phases = written
            .phase
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let dims = match &p.dims {
                    DimsText::Text(text) => parse_phase_dims(i, text)?,
                    DimsText::List(names) => parse_phase_dims(i, &names.join(","))?,
                };
                Ok(Phase {
                    name: p.name.unwrap_or_else(|| default_name(dims)),
                    dims,
                    epochs: p.epochs,
                    lr: p.lr,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let schedule = Schedule { phases };
        schedule.check()?;
        Ok(schedule)
    }
}

impl From<Schedule> for ScheduleText {
    fn from(schedule: Schedule) -> Self {
        let phase = schedule
            .phases
            .into_iter()
            .map(|p| PhaseText {
                name: Some(p.name),
                dims: DimsText::List(
                    p.dims
                        .enabled()
                        .into_iter()
                        .map(|d| d.name().to_string())
                        .collect(),
                ),
                epochs: p.epochs,
                lr: p.lr,
            })
            .collect();
        ScheduleText { phase }
    }
}

// ---------------------------------------------------------------------------------------------
// Progressive-shrinking training.
// ---------------------------------------------------------------------------------------------

/// Settings of progressive-shrinking training (the phases themselves are a [`Schedule`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfaConfig {
    /// The space of the elastic network.
    pub space: MobileSpace,
    /// Learning rate every phase's cosine schedule ends at (each phase starts at its own).
    pub lr_min: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Weight of the distillation term from the second phase on (0: cross-entropy only).
    pub kd_weight: f64,
    /// Softmax temperature `T` of the distillation term.
    pub temperature: f64,
    /// Image sides the batches are resized to, one drawn uniformly per batch (elastic
    /// resolution), in ascending order; the dataset's own side alone turns it off.
    pub resolutions: Vec<usize>,
    /// Seed of initialisation and subnet sampling (the loaders carry their own streams).
    pub seed: u64,
}

impl OfaConfig {
    /// The settings used when nothing else is asked for: SGD with momentum 0.9, weight decay
    /// 4e-5 (the MobileNet family's), clip 5, distillation weight 1 at temperature 1 (the
    /// paper's code distils with a weight of 1 on the plain softened outputs), and the
    /// space's own image side as the only resolution.
    pub fn new(space: MobileSpace, seed: u64) -> Self {
        OfaConfig {
            resolutions: vec![space.image_size],
            space,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 4e-5,
            grad_clip: 5.0,
            kd_weight: 1.0,
            temperature: 1.0,
            seed,
        }
    }

    /// Rejects impossible settings, a `lr_min` above a phase's starting rate, and resolutions
    /// that are missing, not strictly ascending, or outside `1..=4 x` the space's image side.
    ///
    /// # Errors
    /// [`NasError::Config`] naming the field.
    pub fn check(&self, schedule: &Schedule) -> Result<()> {
        self.space.check()?;
        schedule.check()?;
        check_resolutions(&self.resolutions, self.space.image_size)?;
        let least = schedule
            .phases
            .iter()
            .map(|p| p.lr)
            .fold(f64::INFINITY, f64::min);
        if !(self.lr_min.is_finite() && (0.0..=least).contains(&self.lr_min)) {
            return Err(NasError::config(
                "lr_min",
                format!(
                    "must be in [0, {least}] (the least phase lr), found {}",
                    self.lr_min
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(NasError::config(
                "momentum",
                format!("must be in [0, 1), found {}", self.momentum),
            ));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !non_negative(self.weight_decay) {
            return Err(NasError::config(
                "weight_decay",
                format!("must be a non-negative number, found {}", self.weight_decay),
            ));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip > 0.0) {
            return Err(NasError::config(
                "grad_clip",
                format!("must be positive, found {}", self.grad_clip),
            ));
        }
        if !non_negative(self.kd_weight) {
            return Err(NasError::config(
                "kd_weight",
                format!("must be a non-negative number, found {}", self.kd_weight),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(NasError::config(
                "temperature",
                format!("must be positive, found {}", self.temperature),
            ));
        }
        Ok(())
    }
}

/// Rejects a list of resolutions that is empty, not strictly ascending, or holds a side
/// outside `1..=4 x image_size` (larger sides only add cost to images of `image_size`).
///
/// # Errors
/// [`NasError::Config`] on `resolutions` naming the value at fault.
pub fn check_resolutions(resolutions: &[usize], image_size: usize) -> Result<()> {
    if resolutions.is_empty() {
        return Err(NasError::config(
            "resolutions",
            format!("at least one image side is needed (the images' own is {image_size})"),
        ));
    }
    let most = 4 * image_size;
    if let Some(&bad) = resolutions.iter().find(|&&r| r == 0 || r > most) {
        return Err(NasError::config(
            "resolutions",
            format!("every side must be in 1..={most} (4x the images' {image_size}), found {bad}"),
        ));
    }
    if let Some(pair) = resolutions.windows(2).find(|w| w[0] >= w[1]) {
        return Err(NasError::config(
            "resolutions",
            format!(
                "sides must be distinct and ascending, found {} before {} in {resolutions:?}",
                pair[0], pair[1]
            ),
        ));
    }
    Ok(())
}

/// One epoch of progressive shrinking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfaEpoch {
    /// Epoch number over the whole schedule, from 1.
    pub epoch: usize,
    /// Index of the phase in the schedule, from 0.
    pub phase: usize,
    /// Name of the phase.
    pub phase_name: String,
    /// Epoch number within the phase, from 1.
    pub phase_epoch: usize,
    /// The elastic dimensions of the phase (`none`, `kernel`, `kernel,depth`, ...).
    pub dims: String,
    /// The seed of the run.
    pub seed: u64,
    /// Learning rate at the first batch.
    pub lr: f64,
    /// Mean training loss of the sampled subnets (cross-entropy plus the weighted
    /// distillation term).
    pub train_loss: f64,
    /// Mean distillation term alone (0 in the first phase or without a teacher).
    pub train_kd: f64,
    /// Training accuracy of the sampled subnets (augmented batches).
    pub train_accuracy: f64,
    /// Validation accuracy of the largest subnet at the largest resolution, batch norm
    /// recalibrated (with a validation set only).
    pub largest_accuracy: Option<f64>,
    /// Validation accuracy of the smallest subnet of the space ([`smallest_arch`]) at the
    /// smallest resolution, batch norm recalibrated; the same subnet in every phase, so that
    /// the curve compares.
    pub smallest_accuracy: Option<f64>,
    /// Wall time of the epoch (validation included).
    pub seconds: f64,
}

/// Data to validate on after every epoch.
pub struct OfaValidation<'a> {
    /// Held-out images, never trained on.
    pub valid: &'a mut BatchLoader,
    /// Training images `[n, c, h, w]` (plain device) on which batch-norm statistics are
    /// recomputed before a subnet is scored (see [`recalibrate_network`]).
    pub calibration: &'a [Tensor<4>],
}

/// The distillation term of Hinton et al. 2015 ("Distilling the Knowledge in a Neural
/// Network", section 2), as Once-for-All uses it (Cai et al. 2020, section 3.3, with the
/// largest network as the teacher):
///
/// `T^2 x mean over the batch of KL(softmax(t / T) || softmax(s / T))`
///
/// for student logits `s` and teacher logits `t`, both `[n, classes]`; `[1]` out. The `T^2`
/// keeps the gradient's scale independent of the temperature, so the weight of the term means
/// the same at every `T`. The teacher's log-probabilities come from `log_softmax` rather than
/// the log of a softmax, so that a probability rounding to 0 gives no `0 x -inf`. Gradients flow
/// into `s` only when `t` is detached (the caller's teacher runs without autodiff).
pub fn distillation_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = student.dims();
    let log_q = log_softmax(student.div_scalar(temperature), 1);
    let log_p = log_softmax(teacher.div_scalar(temperature), 1);
    // [n, classes] -> [n, 1]: KL(p || q) = sum_c p_c (log p_c - log q_c) per image.
    let kl = log_p.clone().exp().mul(log_p - log_q).sum_dim(1);
    kl.reshape([n]).mean().mul_scalar(temperature * temperature)
}

/// The loss of a subnet step: `CE(s, y) + kd_weight x` [`distillation_loss`]`(s, t, T)`, or
/// the cross-entropy alone without teacher logits. Returns the loss `[1]` and the distillation
/// term's value.
fn subnet_loss(
    logits: Tensor<2>,
    y: Tensor<1, Int>,
    teacher: Option<Tensor<2>>,
    config: &OfaConfig,
) -> (Tensor<1>, f64) {
    let ce = cross_entropy(logits.clone(), y);
    match teacher {
        Some(t) => {
            let kd = distillation_loss(logits, t, config.temperature);
            let value = f64::from(kd.clone().into_scalar::<f32>());
            (ce + kd.mul_scalar(config.kd_weight), value)
        }
        None => (ce, 0.0),
    }
}

/// Applies `f` to every batch norm of a standalone network (stem, every inverted residual's
/// three, head).
fn map_network_bn(mut net: MobileNetwork, f: impl Fn(BatchNorm2d) -> BatchNorm2d) -> MobileNetwork {
    net.stem.conv.bn = f(net.stem.conv.bn);
    net.head.conv.bn = f(net.head.conv.bn);
    net.blocks = net
        .blocks
        .into_iter()
        .map(|op| match op {
            BlockOp::MbConv(mut mb) => {
                mb.expand.bn = f(mb.expand.bn);
                mb.depthwise.bn = f(mb.depthwise.bn);
                mb.project.bn = f(mb.project.bn);
                BlockOp::MbConv(mb)
            }
            other => other,
        })
        .collect();
    net
}

/// `net` in evaluation mode with every batch-norm running statistic recomputed on `batches`
/// (training images `[n, c, h, w]` on the network's plain device): the statistics are reset,
/// then the batches run in training mode, the `k`-th weighing `1 / k`, so that the result is
/// the plain average over the batches. The elastic network's running statistics mix every
/// subnet that ran through a layer and belong to none of them (Cai et al. 2020, section 3.3;
/// Guo et al. 2020, section 3.3), so a subnet is extracted first and then recalibrated on its
/// own. No parameter changes.
pub fn recalibrate_network(net: MobileNetwork, batches: &[Tensor<4>]) -> MobileNetwork {
    // Fresh states: an extracted network's may be shared with the elastic network's clones.
    let mut net = map_network_bn(net, |mut bn| {
        let c = bn.running_mean.value_sync().dims()[0];
        let device = bn.running_mean.value_sync().device();
        bn.running_mean = RunningState::new(Tensor::zeros([c], &device));
        bn.running_var = RunningState::new(Tensor::ones([c], &device));
        bn.with_training(true)
    });
    for (k, x) in batches.iter().enumerate() {
        let weight = 1.0 / (k + 1) as f64;
        net = map_network_bn(net, |bn| bn.with_momentum(weight));
        drop(net.forward(x.clone()));
    }
    // Commits the last pending running-statistics update before evaluation reads it.
    map_network_bn(net, |bn| {
        let _ = bn.running_mean.value_sync();
        let _ = bn.running_var.value_sync();
        bn.with_training(false).with_momentum(0.1)
    })
}

/// The standalone network of the subnet `arch` of `network` for images of side `side`, ready
/// to deploy: extracted with copied weights ([`ElasticNetwork::extract`]), its batch norm
/// recalibrated on `calibration` resized to `side` ([`recalibrate_network`]), in evaluation
/// mode on the plain device of `network`. Its inputs must be resized to `side` too
/// ([`resize_images`]).
///
/// # Errors
/// As [`ElasticNetwork::extract`].
pub fn specialise(
    network: &ElasticNetwork,
    arch: &[BlockChoice],
    side: usize,
    calibration: &[Tensor<4>],
) -> Result<MobileNetwork> {
    let resized: Vec<Tensor<4>> = calibration
        .iter()
        .map(|x| resize_images(x.clone(), side))
        .collect();
    Ok(recalibrate_network(
        network.valid().extract(arch)?,
        &resized,
    ))
}

/// Accuracy and loss on `valid` of the subnet `arch` of `network` at image side `side`: the
/// network of [`specialise`] evaluated on the plain `device` with every image resized to
/// `side` ([`resize_images`]).
///
/// # Errors
/// As [`ElasticNetwork::extract`].
pub fn score_subnet(
    network: &ElasticNetwork,
    arch: &[BlockChoice],
    side: usize,
    calibration: &[Tensor<4>],
    valid: &mut BatchLoader,
    device: &Device,
) -> Result<EvalResult> {
    let plain = device.clone().without_autodiff();
    let subnet = specialise(network, arch, side, calibration)?;
    Ok(evaluate(valid, &plain, |x| {
        subnet.forward(resize_images(x, side))
    }))
}

/// Loads a specialised subnet saved (with burn's `save_file`) from the network of
/// [`specialise`]: the standalone network of `arch` in `space`, on the plain `device`, in
/// evaluation mode. The weights do not depend on the image side, so nothing here knows it:
/// resize inputs to the side the subnet was specialised for ([`resize_images`]).
///
/// # Errors
/// [`NasError::Config`] when `arch` is not a subnet of `space`; [`NasError::Format`] naming
/// the file when it is missing or holds weights of other shapes.
pub fn load_specialised(
    path: &Path,
    space: &MobileSpace,
    arch: &[BlockChoice],
    device: &Device,
) -> Result<MobileNetwork> {
    crate::nn::elastic::check_arch(space, arch)?;
    let plain = device.clone().without_autodiff();
    let shell = MobileNetwork::new(space, arch, &mut ParamInit::new(0, &plain));
    Ok(load_weights(path, "subnet", shell)?.valid())
}

/// A copy of `network` on the plain device, in evaluation mode, whose batch-norm running
/// statistics are its own: clones share running-statistics cells, and the student's
/// training-mode batch norm would otherwise move the teacher's statistics.
fn frozen_copy(network: &ElasticNetwork) -> ElasticNetwork {
    let own = |mut bn: BatchNorm2d| {
        bn.running_mean = RunningState::new(bn.running_mean.value_sync());
        bn.running_var = RunningState::new(bn.running_var.value_sync());
        bn.with_training(false)
    };
    let mut copy = network.valid();
    copy.stem.conv.bn = own(copy.stem.conv.bn);
    copy.head.conv.bn = own(copy.head.conv.bn);
    for block in &mut copy.blocks {
        block.expand.bn = own(block.expand.bn.clone());
        block.depthwise.bn = own(block.depthwise.bn.clone());
        block.project.bn = own(block.project.bn.clone());
    }
    copy
}

/// The student and, from the second phase on, the teacher, saved together in one checkpoint
/// file so that the pair is written atomically.
#[derive(Module, Debug)]
struct OfaModels {
    student: ElasticNetwork,
    teacher: Option<ElasticNetwork>,
}

/// Everything a checkpoint compares with the current run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OfaSettings {
    #[serde(flatten)]
    config: OfaConfig,
    schedule: Schedule,
    /// Epochs of the whole schedule, read by [`crate::checkpoint::Checkpoint::is_finished`].
    epochs: usize,
}

#[derive(Serialize, Deserialize)]
struct OfaState {
    config: OfaSettings,
    next_epoch: usize,
    has_teacher: bool,
    records: Vec<OfaEpoch>,
    rng: ChaCha8Rng,
    train: LoaderState,
}

/// The phase of global epoch `epoch` (from 0) and the epoch's index within it.
fn phase_of(schedule: &Schedule, epoch: usize) -> (usize, usize) {
    let mut start = 0;
    for (p, phase) in schedule.phases.iter().enumerate() {
        if epoch < start + phase.epochs {
            return (p, epoch - start);
        }
        start += phase.epochs;
    }
    (schedule.phases.len(), 0)
}

/// Progressive shrinking (Cai et al. 2020, section 3.3) of the elastic network of
/// `config.space` on the batches of `train`.
///
/// Phase 0 trains the largest network with cross-entropy. At the start of every later phase
/// the network of the end of phase 0, frozen, becomes the teacher (once); a phase that makes
/// width elastic first sorts the hidden channels by importance
/// ([`ElasticNetwork::sort_channels`]). Every phase starts a new SGD optimiser (its own
/// momentum, as a new fine-tuning run; sorting also gives the parameters new ids) and anneals
/// its learning rate per batch from the phase's `lr` to `config.lr_min` (cosine). Each batch
/// of a later phase trains one subnet drawn by [`sample_arch`] along the phase's dimensions,
/// with the loss `CE + kd_weight x T^2 x KL(softmax(teacher / T) || softmax(student / T))`
/// ([`distillation_loss`]). Every batch of every phase is first resized to a side drawn
/// uniformly from `config.resolutions` ([`sample_resolution`]; student and teacher see the same
/// images), which leaves it as it is when the only side is the images' own.
///
/// After every epoch: with `validation`, the largest subnet at the largest side and the
/// smallest at the smallest side are scored ([`score_subnet`]: extracted, batch norm
/// recalibrated, evaluated); with `resumable`, a checkpoint (student, teacher, optimiser,
/// sampler, loader position, records) is written, and a resumed run ends exactly as an
/// uninterrupted one; then `on_epoch` hears the record.
/// Returns the trained network (on the autodiff device) and the records of all epochs.
///
/// # Errors
/// [`NasError::Config`] for impossible settings or a checkpoint made with other settings;
/// [`NasError::Numerical`] when the loss diverges; I/O errors of the checkpoint.
pub fn train_ofa(
    config: &OfaConfig,
    schedule: &Schedule,
    train: &mut BatchLoader,
    mut validation: Option<OfaValidation<'_>>,
    device: &Device,
    resumable: Option<&Resumable>,
    mut on_epoch: impl FnMut(&OfaEpoch) -> Result<()>,
) -> Result<(ElasticNetwork, Vec<OfaEpoch>)> {
    config.check(schedule)?;
    let settings = OfaSettings {
        config: config.clone(),
        schedule: schedule.clone(),
        epochs: schedule.phases.iter().map(|p| p.epochs).sum(),
    };
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    let mut model = ElasticNetwork::new(&config.space, &mut ParamInit::new(config.seed, &ad))?;
    let mut teacher: Option<ElasticNetwork> = None;
    let mut optimizer = crate::train::optim::sgd(config.momentum, config.weight_decay);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x4f46_415f_5053_4e4b);
    let mut records = Vec::with_capacity(settings.epochs);
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: OfaState = r.checkpoint.load_state()?;
        ensure_same_settings(&state.config, &settings)?;
        // The teacher's structure is the student's; its values come from the file.
        let shell = OfaModels {
            teacher: state.has_teacher.then(|| model.valid()),
            student: model,
        };
        let loaded = r.checkpoint.load_model(shell)?;
        model = loaded.student;
        teacher = loaded.teacher.map(|t| frozen_copy(&t));
        optimizer = r.checkpoint.load_optimizer("weights", optimizer)?;
        train.restore(state.train)?;
        rng = state.rng;
        records = state.records;
        start = state.next_epoch;
        tracing::info!(epochs_done = start, "resuming progressive shrinking");
    }
    tracing::info!(
        parameters = crate::nn::count_parameters(&model),
        blocks = config.space.blocks().len(),
        phases = schedule.phases.len(),
        "elastic network built"
    );

    let largest = largest_arch(&config.space);
    let smallest = smallest_arch(&config.space);
    let (smallest_side, largest_side) = (
        config.resolutions[0],
        config.resolutions[config.resolutions.len() - 1],
    );
    let steps = train.batches_per_epoch();
    for epoch in start..settings.epochs {
        let (p, phase_epoch) = phase_of(schedule, epoch);
        let phase = &schedule.phases[p];
        if phase_epoch == 0 && p > 0 {
            if teacher.is_none() {
                teacher = Some(frozen_copy(&model));
            }
            if phase.dims.width && !schedule.phases[p - 1].dims.width {
                model = model.sort_channels();
                tracing::info!(phase = %phase.name, "hidden channels sorted by importance");
            }
        }
        if phase_epoch == 0 {
            optimizer = crate::train::optim::sgd(config.momentum, config.weight_decay);
            tracing::info!(phase = %phase.name, dims = %phase.dims, "phase starts");
        }
        let distil = p > 0 && config.kd_weight > 0.0;

        let started = Instant::now();
        let lr_of = |step: usize| {
            let progress = (phase_epoch * steps + step) as f64 / (phase.epochs * steps) as f64;
            cosine_at(phase.lr, config.lr_min, progress)
        };
        let bar = crate::report::progress::epoch_bar(steps as u64, epoch + 1, settings.epochs);
        let (mut loss_sum, mut kd_sum, mut correct, mut images) = (0.0, 0.0, 0, 0);
        for (step, batch) in train.epoch().enumerate() {
            // Drawn in every phase (the full network's included), so that the sampler's stream
            // does not depend on where a phase starts.
            let arch = sample_arch(&config.space, &phase.dims, &mut rng);
            let batch = batch.resized(sample_resolution(&config.resolutions, &mut rng));
            let (x, y) = batch_tensors(&batch, &ad);
            // [n, classes] from the frozen teacher on the plain device, brought over as data:
            // no gradient reaches the teacher.
            let teacher_logits = match (&teacher, distil) {
                (Some(t), true) => {
                    let (x_plain, _) = batch_tensors(&batch, &plain);
                    let logits = t.forward(x_plain).into_data();
                    Some(Tensor::<2>::from_data(logits, &ad))
                }
                _ => None,
            };
            let logits = model.forward_subnet(x, &arch);
            let (loss, kd) = subnet_loss(logits.clone(), y.clone(), teacher_logits, config);
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            if !loss_value.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {loss_value} in epoch {} (phase `{}`); lower the \
                     phase's learning rate",
                    epoch + 1,
                    phase.name
                )));
            }
            correct += correct_count(logits.detach(), y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, config.grad_clip);
            model = optimizer.step(lr_of(step), model, grads);

            loss_sum += loss_value * batch.n as f64;
            kd_sum += kd * batch.n as f64;
            images += batch.n;
            bar.set_message(format!(
                "{} loss {:.3}",
                phase.name,
                loss_sum / images as f64
            ));
            bar.inc(1);
            crate::report::progress::log_if_hidden(
                &bar,
                epoch + 1,
                loss_sum / images as f64,
                started,
            );
        }
        bar.finish_and_clear();

        let (mut largest_accuracy, mut smallest_accuracy) = (None, None);
        if let Some(v) = validation.as_mut() {
            let mut score = |arch: &[BlockChoice], side: usize| -> Result<f64> {
                let result = score_subnet(&model, arch, side, v.calibration, v.valid, &plain)?;
                result.ensure_finite("validation", epoch + 1)?;
                Ok(result.accuracy)
            };
            largest_accuracy = Some(score(&largest, largest_side)?);
            smallest_accuracy = Some(score(&smallest, smallest_side)?);
        }
        let denominator = images.max(1) as f64;
        let record = OfaEpoch {
            epoch: epoch + 1,
            phase: p,
            phase_name: phase.name.clone(),
            phase_epoch: phase_epoch + 1,
            dims: phase.dims.to_string(),
            seed: config.seed,
            lr: lr_of(0),
            train_loss: loss_sum / denominator,
            train_kd: kd_sum / denominator,
            train_accuracy: correct as f64 / denominator,
            largest_accuracy,
            smallest_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            phase = %record.phase_name,
            train_loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            largest_acc = record.largest_accuracy.map(|a| format!("{a:.4}")),
            smallest_acc = record.smallest_accuracy.map(|a| format!("{a:.4}")),
            seconds = format!("{:.1}", record.seconds),
            "progressive-shrinking epoch done"
        );
        records.push(record.clone());
        if let Some(r) = resumable {
            let state = OfaState {
                config: settings.clone(),
                next_epoch: epoch + 1,
                has_teacher: teacher.is_some(),
                records: records.clone(),
                rng: rng.clone(),
                train: train.state(),
            };
            let pair = OfaModels {
                student: model.clone(),
                teacher: teacher.clone(),
            };
            r.checkpoint
                .save(&pair, &[("weights", &optimizer)], &state)?;
        }
        on_epoch(&record)?;
    }
    Ok((model, records))
}

/// What a trained elastic network file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElasticInfo {
    /// The training settings (space and seed included).
    pub config: OfaConfig,
    /// The phases it was trained with.
    pub schedule: Schedule,
    /// Name of the dataset.
    pub dataset: String,
    /// The seeded subset of the training split the run used (`None`: all of it).
    pub subset: Option<usize>,
    /// Fraction of the training split held out for validation.
    pub valid_portion: f32,
    /// Images per batch.
    pub batch_size: usize,
    /// The records of training.
    pub epochs: Vec<OfaEpoch>,
}

/// Saves a trained elastic network as `dir/elastic.bpk` (weights, transforms, batch-norm
/// statistics) with `dir/elastic.json` (`info`).
///
/// # Errors
/// I/O errors naming the file.
pub fn save_elastic(dir: &Path, network: &ElasticNetwork, info: &ElasticInfo) -> Result<()> {
    save_with_info(dir, "elastic", "elastic network", network.valid(), info)
}

/// Loads the elastic network saved in `dir` by [`save_elastic`] onto `device`, in evaluation
/// mode.
///
/// # Errors
/// A missing or unreadable file, `elastic.json` that is not such a description or describes
/// invalid settings, or weights of another shape, each naming the file.
pub fn load_elastic(dir: &Path, device: &Device) -> Result<(ElasticNetwork, ElasticInfo)> {
    let meta = dir.join("elastic.json");
    let info: ElasticInfo = read_info(dir, "elastic", "elastic network")?;
    info.config
        .check(&info.schedule)
        .map_err(|e| NasError::format(&meta, e.to_string()))?;
    let plain = device.clone().without_autodiff();
    let shell = ElasticNetwork::new(&info.config.space, &mut ParamInit::new(0, &plain))
        .map_err(|e| NasError::format(&meta, e.to_string()))?;
    let network = load_weights(&dir.join("elastic.bpk"), "elastic network", shell)?.valid();
    Ok((network, info))
}
