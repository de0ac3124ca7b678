//! Single-path one-shot (Guo et al. 2020) on the inverted-residual supernet: every weight step
//! trains one path drawn uniformly, so a candidate's weights move only in the steps that use
//! it; a subnet is then scored with the supernet's weights after its batch-norm statistics are
//! recomputed on training batches, since the running statistics a supernet accumulates mix
//! every path that ran through a layer.

use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::ensure_same_settings;
use crate::data::{BatchLoader, LoaderState};
use crate::nn::ParamInit;
use crate::nn::mobile::MobileSupernet;
use crate::nn::saved::{load_weights, read_info, save_with_info};
use crate::search::Resumable;
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::train::clip::clip_global_norm;
use crate::train::tensors::batch_tensors;
use crate::train::{EvalResult, correct_count, cosine_at, cross_entropy, evaluate};
use crate::{NasError, Result};

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

/// The index of every block's choice in `blocks` among that block's candidates in the
/// supernet of `space`.
///
/// # Errors
/// [`NasError::Config`] when `blocks` is not an architecture of `space`.
pub fn path_of(space: &MobileSpace, blocks: &[BlockChoice]) -> Result<Vec<usize>> {
    space.validate(blocks)?;
    space
        .blocks()
        .iter()
        .zip(blocks)
        .enumerate()
        .map(|(b, (shape, choice))| {
            shape
                .choices()
                .iter()
                .position(|c| c == choice)
                .ok_or_else(|| {
                    NasError::config(
                        "architecture",
                        format!("block {b} has no candidate {choice}"),
                    )
                })
        })
        .collect()
}

/// Accuracy and loss of the subnet `path` on `valid` with the supernet's weights: after its
/// batch-norm statistics are recomputed on `calibration` (see [`recalibrate`]), or with the
/// running statistics the supernet accumulated during training when `calibration` is `None`.
/// Images are evaluated on the plain (non-autodiff) `device`.
pub fn score_subnet(
    model: &MobileSupernet,
    path: &[usize],
    calibration: Option<&[Tensor<4>]>,
    valid: &mut BatchLoader,
    device: &Device,
) -> EvalResult {
    let subnet = match calibration {
        Some(batches) => recalibrate(model, path, batches),
        None => model.valid(),
    };
    evaluate(valid, &device.clone().without_autodiff(), |x| {
        subnet.forward_path(x, path)
    })
}

/// Settings of single-path one-shot supernet training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SposConfig {
    /// The space (stem, stages, head) of the supernet.
    pub space: MobileSpace,
    /// Epochs over the training data.
    pub epochs: usize,
    /// Initial learning rate, cosine-annealed per batch to `lr_min`.
    pub lr: f64,
    /// Final learning rate.
    pub lr_min: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// The seed of initialisation and path sampling (the loaders carry their own streams).
    pub seed: u64,
}

impl SposConfig {
    /// Rejects impossible settings with the name of the offending field.
    ///
    /// # Errors
    /// [`NasError::Config`] naming the field.
    pub fn check(&self) -> Result<()> {
        self.space.check()?;
        check_sgd(
            self.epochs,
            self.lr,
            self.lr_min,
            self.momentum,
            self.weight_decay,
            self.grad_clip,
        )
    }
}

/// Rejects impossible supernet training settings, naming the field: the checks both
/// single-path supernets share.
pub(crate) fn check_sgd(
    epochs: usize,
    lr: f64,
    lr_min: f64,
    momentum: f64,
    weight_decay: f64,
    grad_clip: f64,
) -> Result<()> {
    if epochs == 0 {
        return Err(NasError::config("epochs", "must be at least 1, found 0"));
    }
    let lr_ok = lr.is_finite() && lr > 0.0;
    if !lr_ok || !(0.0..=lr).contains(&lr_min) {
        return Err(NasError::config(
            "lr",
            format!("need 0 <= lr_min <= lr with lr > 0, found lr {lr} lr_min {lr_min}"),
        ));
    }
    if !(0.0..1.0).contains(&momentum) {
        return Err(NasError::config(
            "momentum",
            format!("must be in [0, 1), found {momentum}"),
        ));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(NasError::config(
            "weight_decay",
            format!("must be a non-negative number, found {weight_decay}"),
        ));
    }
    if !(grad_clip.is_finite() && grad_clip > 0.0) {
        return Err(NasError::config(
            "grad_clip",
            format!("must be positive, found {grad_clip}"),
        ));
    }
    Ok(())
}

/// One epoch of supernet training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SposEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Learning rate at the first batch.
    pub lr: f64,
    /// Mean training loss of the sampled paths.
    pub train_loss: f64,
    /// Training accuracy of the sampled paths (augmented batches).
    pub train_accuracy: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// The loop state saved in a checkpoint of single-path training; `C` is the supernet's
/// settings, compared on resume.
#[derive(Serialize, Deserialize)]
struct SposState<C> {
    config: C,
    next_epoch: usize,
    records: Vec<SposEpoch>,
    rng: ChaCha8Rng,
    train: LoaderState,
}

/// The schedule of a single-path training run, as both supernets' settings give it.
pub(crate) struct SinglePathSchedule {
    /// Epochs over the training data.
    pub epochs: usize,
    /// Initial learning rate, cosine-annealed per batch to `lr_min`.
    pub lr: f64,
    /// Final learning rate.
    pub lr_min: f64,
    /// The seed recorded with every epoch.
    pub seed: u64,
}

/// The epochs of single-path training shared by both supernets: per batch, `sample` draws a
/// path with the run's generator and `step` takes one weight step on it at the cosine
/// learning rate; a record per epoch, then (with `resumable`) a checkpoint of the model, the
/// optimiser, the generator, the loader position and `config`, then `on_epoch`. A resumed
/// run continues from the checkpoint and ends exactly as an uninterrupted one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_single_path<M, C, P>(
    name: &str,
    config: &C,
    schedule: &SinglePathSchedule,
    mut model: M,
    mut optimizer: ModuleOptimizer,
    mut rng: ChaCha8Rng,
    train: &mut BatchLoader,
    device: &Device,
    resumable: Option<&Resumable>,
    mut sample: impl FnMut(&mut ChaCha8Rng) -> P,
    mut step: impl FnMut(M, &mut ModuleOptimizer, &P, Tensor<4>, Tensor<1, Int>, f64) -> (M, PathStep),
    mut on_epoch: impl FnMut(&SposEpoch) -> Result<()>,
) -> Result<(M, Vec<SposEpoch>)>
where
    M: Module,
    C: Clone + Serialize + DeserializeOwned,
{
    let mut records = Vec::with_capacity(schedule.epochs);
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: SposState<C> = r.checkpoint.load_state()?;
        ensure_same_settings(&state.config, config)?;
        model = r.checkpoint.load_model(model)?;
        optimizer = r.checkpoint.load_optimizer("weights", optimizer)?;
        train.restore(state.train)?;
        rng = state.rng;
        records = state.records;
        start = state.next_epoch;
        tracing::info!(epochs_done = start, "resuming {name} training");
    }
    tracing::info!(
        parameters = crate::nn::count_parameters(&model),
        "{name} built"
    );

    let steps = train.batches_per_epoch();
    for epoch in start..schedule.epochs {
        let started = Instant::now();
        let lr_of = |step: usize| {
            let progress = (epoch * steps + step) as f64 / (schedule.epochs * steps) as f64;
            cosine_at(schedule.lr, schedule.lr_min, progress)
        };
        let bar = crate::report::progress::epoch_bar(steps as u64, epoch + 1, schedule.epochs);
        let (mut loss_sum, mut correct, mut images) = (0.0, 0, 0);
        for (index, batch) in train.epoch().enumerate() {
            let path = sample(&mut rng);
            let (x, y) = batch_tensors(&batch, device);
            let (stepped, done) = step(model, &mut optimizer, &path, x, y, lr_of(index));
            model = stepped;
            if !done.loss.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {} in epoch {}; lower the learning rate",
                    done.loss,
                    epoch + 1
                )));
            }
            correct += done.correct;
            loss_sum += done.loss * batch.n as f64;
            images += batch.n;
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
        let record = SposEpoch {
            epoch: epoch + 1,
            seed: schedule.seed,
            lr: lr_of(0),
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            train_loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            seconds = format!("{:.1}", record.seconds),
            "{name} epoch done"
        );
        records.push(record.clone());
        if let Some(r) = resumable {
            let state = SposState {
                config: config.clone(),
                next_epoch: epoch + 1,
                records: records.clone(),
                rng: rng.clone(),
                train: train.state(),
            };
            r.checkpoint
                .save(&model, &[("weights", &optimizer)], &state)?;
        }
        on_epoch(&record)?;
    }
    Ok((model, records))
}

/// Trains the supernet of `config.space` (batch norm without affine parameters) with one
/// uniformly drawn path per batch of `train`. With `resumable`, a checkpoint is written after
/// every epoch and a resumed run ends exactly as an uninterrupted one. `on_epoch` hears every
/// epoch after its checkpoint. Returns the trained supernet (on the autodiff device) and the
/// records of all epochs.
///
/// # Errors
/// [`NasError::Config`] for impossible settings or a checkpoint made with other settings;
/// [`NasError::Numerical`] when the loss diverges; I/O errors of the checkpoint.
pub fn train_supernet(
    config: &SposConfig,
    train: &mut BatchLoader,
    device: &Device,
    resumable: Option<&Resumable>,
    on_epoch: impl FnMut(&SposEpoch) -> Result<()>,
) -> Result<(MobileSupernet, Vec<SposEpoch>)> {
    config.check()?;
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    let model =
        MobileSupernet::with_affine(&config.space, false, &mut ParamInit::new(config.seed, &ad));
    let optimizer = crate::train::optim::sgd(config.momentum, config.weight_decay);
    let rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5350_4f53_5041_5448);
    let schedule = SinglePathSchedule {
        epochs: config.epochs,
        lr: config.lr,
        lr_min: config.lr_min,
        seed: config.seed,
    };
    train_single_path(
        "supernet",
        config,
        &schedule,
        model,
        optimizer,
        rng,
        train,
        &ad,
        resumable,
        |rng| uniform_path(&config.space, rng),
        |model, optimizer, path, x, y, lr| {
            path_step(model, optimizer, path, x, y, lr, config.grad_clip)
        },
        on_epoch,
    )
}

/// What a trained supernet file says about itself: the settings it was trained with and the
/// data it saw, so that a search on it validates on images it never trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupernetInfo {
    /// The training settings (space and seed included).
    pub config: SposConfig,
    /// Name of the dataset.
    pub dataset: String,
    /// The seeded subset of the training split the run used (`None`: all of it).
    pub subset: Option<usize>,
    /// Fraction of the training split held out for validation.
    pub valid_portion: f32,
    /// Images per batch.
    pub batch_size: usize,
    /// The records of training.
    pub epochs: Vec<SposEpoch>,
}

/// Saves a trained supernet as `dir/supernet.bpk` (weights and batch-norm statistics) with
/// `dir/supernet.json` (`info`).
///
/// # Errors
/// I/O errors naming the file.
pub fn save_supernet(dir: &Path, model: &MobileSupernet, info: &SupernetInfo) -> Result<()> {
    save_with_info(dir, "supernet", "supernet", model.valid(), info)
}

/// Loads the supernet saved in `dir` by [`save_supernet`] onto `device`, in evaluation mode.
///
/// # Errors
/// A missing or unreadable file, `supernet.json` that is not a supernet description or
/// describes an invalid space, or weights of another shape, each naming the file.
pub fn load_supernet(dir: &Path, device: &Device) -> Result<(MobileSupernet, SupernetInfo)> {
    let info: SupernetInfo = read_info(dir, "supernet", "supernet")?;
    info.config
        .check()
        .map_err(|e| NasError::format(dir.join("supernet.json"), e.to_string()))?;
    let plain = device.clone().without_autodiff();
    let shell = MobileSupernet::with_affine(
        &info.config.space,
        false,
        &mut ParamInit::new(info.config.seed, &plain),
    );
    let model = load_weights(&dir.join("supernet.bpk"), "supernet", shell)?;
    Ok((model, info))
}
