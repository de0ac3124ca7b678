//! First-order DARTS (Liu, Simonyan & Yang, ICLR 2019): network weights and architecture
//! weights are optimised alternately, the architecture on the validation half of the training
//! set and the weights on the other half.
//!
//! Each step first takes an Adam step on the architecture weights from a validation batch, then
//! an SGD step on the network weights from a training batch. The two parameter groups have
//! separate optimisers and gradients are filtered by parameter id, so neither optimiser ever
//! touches the other group. The validation batches come from one persistent cycling iterator.

use std::time::Instant;

use burn::module::{Module, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::derive_capped::derive_with_skip_cap;
use crate::checkpoint::{Checkpoint, ensure_same_settings};
use crate::data::{BatchLoader, LoaderState};
use crate::error::{NasError, Result};
use crate::nn::{ParamInit, SearchNetwork, SearchNetworkConfig};
use crate::space::Genotype;
use crate::train::clip::clip_global_norm;
use crate::train::tensors::batch_tensors;
use crate::train::{correct_count, cosine_lr, cross_entropy, evaluate};

/// Settings of a DARTS search. Defaults are those of the paper's CIFAR-10 search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DartsConfig {
    /// The search network.
    pub network: SearchNetworkConfig,
    /// Training epochs.
    pub epochs: usize,
    /// Images per batch (for both the weight and the architecture step).
    pub batch_size: usize,
    /// Initial learning rate of the weights (SGD), annealed by cosine to `lr_min`.
    pub lr: f64,
    /// Final learning rate of the weights.
    pub lr_min: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay (L2).
    pub weight_decay: f64,
    /// Global gradient-norm clipping of the weights.
    pub grad_clip: f64,
    /// Adam learning rate of the architecture weights.
    pub arch_lr: f64,
    /// Adam first-moment decay of the architecture weights.
    pub arch_beta1: f64,
    /// Adam second-moment decay of the architecture weights.
    pub arch_beta2: f64,
    /// Adam weight decay (L2) of the architecture weights.
    pub arch_weight_decay: f64,
    /// Epochs at the start during which the architecture weights stay frozen, so the operations'
    /// weights are trained before they are compared (a remedy against early collapse).
    pub warmup_epochs: usize,
    /// At most this many skip connections in the derived normal cell (P-DARTS style cap).
    pub max_skip_connections: Option<usize>,
    /// Stop the search once the derived normal cell holds this many skip connections
    /// (DARTS+ style early stopping).
    pub stop_at_skip_connections: Option<usize>,
    /// The seed of the run: initialisation, data order and sampling.
    pub seed: u64,
}

impl DartsConfig {
    /// The paper's settings for `network`.
    pub fn paper(network: SearchNetworkConfig, seed: u64) -> Self {
        Self {
            network,
            epochs: 50,
            batch_size: 64,
            lr: 0.025,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            arch_lr: 3e-4,
            arch_beta1: 0.5,
            arch_beta2: 0.999,
            arch_weight_decay: 1e-3,
            warmup_epochs: 0,
            max_skip_connections: None,
            stop_at_skip_connections: None,
            seed,
        }
    }

    /// Rejects impossible settings with the name of the offending field.
    pub fn check(&self) -> Result<()> {
        self.network.check()?;
        if self.epochs == 0 {
            return Err(NasError::config("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(NasError::config("batch_size", "must be at least 1"));
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
        for (field, value) in [
            ("lr_min", self.lr_min),
            ("weight_decay", self.weight_decay),
            ("arch_weight_decay", self.arch_weight_decay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(NasError::config(
                    field,
                    format!("must be >= 0, found {value}"),
                ));
            }
        }
        for (field, value) in [
            ("momentum", self.momentum),
            ("arch_beta1", self.arch_beta1),
            ("arch_beta2", self.arch_beta2),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(NasError::config(
                    field,
                    format!("must be in [0, 1), found {value}"),
                ));
            }
        }
        if self.lr_min > self.lr {
            return Err(NasError::config(
                "lr_min",
                format!("must not exceed lr ({}), found {}", self.lr, self.lr_min),
            ));
        }
        if self.stop_at_skip_connections == Some(0) {
            return Err(NasError::config(
                "stop_at_skip_connections",
                "must be at least 1 (0 would stop after the first architecture update)",
            ));
        }
        if self.warmup_epochs >= self.epochs {
            return Err(NasError::config(
                "warmup_epochs",
                format!(
                    "must be below epochs ({}), found {}: the architecture would never be trained",
                    self.epochs, self.warmup_epochs
                ),
            ));
        }
        Ok(())
    }
}

/// The three views of the data a search needs.
pub struct DartsData {
    /// Shuffled batches of the weight half of the training set.
    pub train: BatchLoader,
    /// Shuffled, cycling batches of the architecture half, drawn with `next_cycling`.
    pub valid: BatchLoader,
    /// The architecture half in order, without augmentation, for the per-epoch evaluation.
    pub valid_eval: BatchLoader,
}

/// What one epoch of search produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Weight learning rate used in this epoch.
    pub lr: f64,
    /// Whether the architecture weights were updated in this epoch.
    pub arch_updated: bool,
    /// Mean training loss of the weight steps.
    pub train_loss: f64,
    /// Training accuracy of the weight steps (on augmented batches, before each update).
    pub train_accuracy: f64,
    /// Loss on the whole validation half after the epoch.
    pub valid_loss: f64,
    /// Accuracy on the whole validation half after the epoch.
    pub valid_accuracy: f64,
    /// The derived genotype after the epoch.
    pub genotype: Genotype,
    /// The derived genotype in the DARTS text form.
    pub genotype_text: String,
    /// `softmax(alpha)` of the normal cell, one row per edge, columns in DARTS operation order.
    pub alpha_normal: Vec<Vec<f32>>,
    /// `softmax(alpha)` of the reduction cell.
    pub alpha_reduce: Vec<Vec<f32>>,
    /// Parameter-free operations (none, pools, skip) in the derived normal cell.
    pub parameter_free_normal: usize,
    /// Parameter-free operations in the derived reduction cell.
    pub parameter_free_reduce: usize,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Training images processed per second by the search steps.
    pub images_per_second: f64,
}

/// The result of a search.
pub struct DartsOutcome {
    /// One record per completed epoch.
    pub records: Vec<EpochRecord>,
    /// The final derived genotype.
    pub genotype: Genotype,
    /// Why the search stopped before its last epoch, if it did.
    pub stopped_early: Option<String>,
    /// The trained search network.
    pub network: SearchNetwork,
}

/// Where a search keeps its checkpoint and whether it continues from it.
#[derive(Clone, Debug)]
pub struct Resumable {
    /// The checkpoint written after every epoch.
    pub checkpoint: Checkpoint,
    /// Continue from the checkpoint instead of starting afresh.
    pub resume: bool,
}

/// The loop state saved in a search checkpoint.
#[derive(Serialize, Deserialize)]
struct SearchState {
    config: DartsConfig,
    next_epoch: usize,
    records: Vec<EpochRecord>,
    stopped_early: Option<String>,
    train: LoaderState,
    valid: LoaderState,
}

/// Runs the search on `device` (an autodiff device is made from it), calling `on_epoch` after
/// every epoch so the caller can write records as they come. With `resumable`, a checkpoint is
/// written after every epoch (before `on_epoch`), and with `resume` set the search continues
/// from it; the result is then the one an uninterrupted run would have given.
pub fn search(
    config: &DartsConfig,
    data: &mut DartsData,
    device: &Device,
    resumable: Option<&Resumable>,
    mut on_epoch: impl FnMut(&EpochRecord) -> Result<()>,
) -> Result<DartsOutcome> {
    config.check()?;
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    let mut model = SearchNetwork::new(&config.network, &mut ParamInit::new(config.seed, &ad))?;
    let mut weight_opt = weight_optimizer(config);
    let mut arch_opt = arch_optimizer(config);
    let mut records = Vec::with_capacity(config.epochs);
    let mut stopped_early = None;
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: SearchState = r.checkpoint.load_state()?;
        ensure_same_settings(&state.config, config)?;
        model = r.checkpoint.load_model(model)?;
        weight_opt = r.checkpoint.load_optimizer("weights", weight_opt)?;
        arch_opt = r.checkpoint.load_optimizer("architecture", arch_opt)?;
        data.train.restore(state.train)?;
        data.valid.restore(state.valid)?;
        records = state.records;
        stopped_early = state.stopped_early;
        start = state.next_epoch;
        tracing::info!(
            epochs_done = start,
            checkpoint = %r.checkpoint.dir().display(),
            "resuming search"
        );
    }
    let arch_ids = model.architecture_param_ids();
    let weight_ids = model.weight_param_ids();
    tracing::info!(
        parameters = crate::nn::count_parameters(&model),
        weight_tensors = weight_ids.len(),
        "search network built"
    );
    let mut genotype = derive(&model, config)?;
    let epochs = if stopped_early.is_some() {
        start..start
    } else {
        start..config.epochs
    };

    for epoch in epochs {
        let started = Instant::now();
        let lr = cosine_lr(config.lr, config.lr_min, epoch, config.epochs);
        let arch_updated = epoch >= config.warmup_epochs;
        let bar = crate::report::progress::epoch_bar(
            data.train.batches_per_epoch() as u64,
            epoch + 1,
            config.epochs,
        );

        let mut loss_sum = 0.0;
        let mut correct = 0;
        let mut images = 0;
        for batch in data.train.epoch() {
            if arch_updated {
                let valid_batch = data.valid.next_cycling();
                let (x, y) = batch_tensors(&valid_batch, &ad);
                let loss = cross_entropy(model.forward(x), y);
                model = step(&mut arch_opt, config.arch_lr, model, loss, &arch_ids, None);
            }

            let (x, y) = batch_tensors(&batch, &ad);
            let logits = model.forward(x);
            let loss = cross_entropy(logits.clone(), y.clone());
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            if !loss_value.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {loss_value} in epoch {}; lower --lr",
                    epoch + 1
                )));
            }
            correct += correct_count(logits.detach(), y);
            loss_sum += loss_value * batch.n as f64;
            images += batch.n;
            model = step(
                &mut weight_opt,
                lr,
                model,
                loss,
                &weight_ids,
                Some(config.grad_clip),
            );
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
        let train_seconds = started.elapsed().as_secs_f64();

        let eval_model = model.valid();
        let valid = evaluate(&mut data.valid_eval, &plain, |x| eval_model.forward(x));
        valid.ensure_finite("validation", epoch + 1)?;
        genotype = derive(&model, config)?;
        let (alpha_normal, alpha_reduce) = model.architecture_weights();
        let record = EpochRecord {
            epoch: epoch + 1,
            seed: config.seed,
            lr,
            arch_updated,
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            valid_loss: valid.loss,
            valid_accuracy: valid.accuracy,
            genotype_text: genotype.to_darts_text(),
            parameter_free_normal: genotype.normal.parameter_free_ops(),
            parameter_free_reduce: genotype.reduce.parameter_free_ops(),
            genotype: genotype.clone(),
            alpha_normal,
            alpha_reduce,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: images as f64 / train_seconds.max(1e-9),
        };
        tracing::info!(
            epoch = record.epoch,
            train_loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            valid_loss = format!("{:.4}", record.valid_loss),
            valid_acc = format!("{:.4}", record.valid_accuracy),
            parameter_free_normal = record.parameter_free_normal,
            images_per_s = format!("{:.1}", record.images_per_second),
            "epoch done; genotype {}",
            record.genotype_text
        );
        // Counted on the uncapped derivation: with a cap the derived cell never shows more
        // skips than the cap, which would hide the collapse this criterion watches for.
        let skip_count = crate::space::derive_genotype(
            &record.alpha_normal,
            &record.alpha_reduce,
            config.network.nodes,
        )?
        .normal
        .edges
        .iter()
        .filter(|e| e.op == crate::space::DartsOp::SkipConnect)
        .count();
        records.push(record.clone());
        if let Some(limit) = config.stop_at_skip_connections
            && arch_updated
            && skip_count >= limit
        {
            let reason = format!(
                "the normal cell reached {skip_count} skip connections (limit {limit}) after epoch {}",
                epoch + 1
            );
            tracing::warn!("stopping early: {reason}");
            stopped_early = Some(reason);
        }
        if let Some(r) = resumable {
            let state = SearchState {
                config: config.clone(),
                next_epoch: epoch + 1,
                records: records.clone(),
                stopped_early: stopped_early.clone(),
                train: data.train.state(),
                valid: data.valid.state(),
            };
            r.checkpoint.save(
                &model,
                &[("weights", &weight_opt), ("architecture", &arch_opt)],
                &state,
            )?;
        }
        on_epoch(&record)?;
        if stopped_early.is_some() {
            break;
        }
    }

    Ok(DartsOutcome {
        records,
        genotype,
        stopped_early,
        network: model,
    })
}

fn derive(model: &SearchNetwork, config: &DartsConfig) -> Result<Genotype> {
    let (normal, reduce) = model.architecture_weights();
    derive_with_skip_cap(&normal, &reduce, model.nodes(), config.max_skip_connections)
}

/// One optimiser step on the parameters in `ids` only: the gradients of `loss` are filtered to
/// those ids before the optimiser sees them, so no other parameter can move. `clip` bounds the
/// global norm of the kept gradients.
pub fn step(
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    model: SearchNetwork,
    loss: Tensor<1>,
    ids: &[ParamId],
    clip: Option<f64>,
) -> SearchNetwork {
    let mut grads = loss.backward();
    let mut grads = GradientsParams::from_params(&mut grads, &model, ids);
    if let Some(max_norm) = clip {
        clip_global_norm(&model, &mut grads, max_norm);
    }
    optimizer.step(lr, model, grads)
}

/// SGD with momentum and L2 weight decay, PyTorch semantics (no dampening).
pub fn weight_optimizer(config: &DartsConfig) -> ModuleOptimizer {
    crate::train::optim::sgd(config.momentum, config.weight_decay)
}

/// Adam for the architecture weights with L2 weight decay, PyTorch semantics (epsilon 1e-8).
pub fn arch_optimizer(config: &DartsConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(config.arch_beta1 as f32)
        .with_beta_2(config.arch_beta2 as f32)
        .with_epsilon(1e-8)
        .with_weight_decay(Some(WeightDecayConfig::new(
            config.arch_weight_decay as f32,
        )))
        .init()
}
