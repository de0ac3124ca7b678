//! Training a network built from a genotype from scratch (Liu et al. 2019, section 4.2 and
//! appendix A.2): SGD with momentum, cosine schedule, drop path ramped linearly from 0, an
//! optional auxiliary loss, and evaluation on the test split after every epoch.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::clip::clip_global_norm;
use super::tensors::batch_tensors;
use super::{LrSchedule, correct_count, cross_entropy, evaluate};
use crate::checkpoint::ensure_same_settings;
use crate::data::{BatchLoader, LoaderState};
use crate::error::{NasError, Result};
use crate::nn::network::DropPath;
use crate::nn::{Network, NetworkConfig, ParamInit};
use crate::search::Resumable;
use crate::space::Genotype;

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network.
    pub network: NetworkConfig,
    /// Training epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Initial learning rate, annealed by cosine to `lr_min`.
    pub lr: f64,
    /// Final learning rate.
    pub lr_min: f64,
    /// Whether the cosine moves per epoch or per batch.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay (L2).
    pub weight_decay: f64,
    /// Global gradient-norm clipping.
    pub grad_clip: f64,
    /// Largest drop-path probability; epoch `e` (from 0) of `E` uses `drop_path * e / E`.
    pub drop_path: f64,
    /// Weight of the auxiliary loss (used only if the network has the head).
    pub auxiliary_weight: f64,
    /// The seed of the run.
    pub seed: u64,
}

impl TrainConfig {
    /// Rejects impossible settings with the name of the offending field.
    pub fn check(&self) -> Result<()> {
        self.network.check()?;
        if self.epochs == 0 {
            return Err(NasError::config("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(NasError::config("batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(NasError::config(
                "lr",
                format!("must be positive, found {}", self.lr),
            ));
        }
        for (field, value) in [
            ("lr_min", self.lr_min),
            ("weight_decay", self.weight_decay),
            ("auxiliary_weight", self.auxiliary_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(NasError::config(
                    field,
                    format!("must be >= 0, found {value}"),
                ));
            }
        }
        if self.lr_min > self.lr {
            return Err(NasError::config(
                "lr_min",
                format!("must not exceed lr ({}), found {}", self.lr, self.lr_min),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(NasError::config(
                "drop_path",
                format!("must be in [0, 1), found {}", self.drop_path),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(NasError::config(
                "momentum",
                format!("must be in [0, 1), found {}", self.momentum),
            ));
        }
        if self.grad_clip.is_nan() || self.grad_clip <= 0.0 {
            return Err(NasError::config("grad_clip", "must be positive"));
        }
        Ok(())
    }

    /// Drop-path probability in `epoch` (from 0): linear from 0 to `drop_path`.
    pub fn drop_prob(&self, epoch: usize) -> f64 {
        self.drop_path * epoch as f64 / self.epochs as f64
    }
}

/// What one training epoch produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Learning rate at the first batch of the epoch.
    pub lr: f64,
    /// Drop-path probability used.
    pub drop_prob: f64,
    /// Mean training loss (main head only).
    pub train_loss: f64,
    /// Training accuracy on augmented batches.
    pub train_accuracy: f64,
    /// Loss on the test split.
    pub test_loss: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// The result of a training run.
pub struct TrainOutcome {
    /// One record per epoch.
    pub epochs: Vec<TrainEpoch>,
    /// The trained network.
    pub network: Network,
    /// Parameters without the auxiliary head.
    pub parameters: usize,
    /// Parameters of the auxiliary head.
    pub auxiliary_parameters: usize,
}

/// The loop state saved in a training checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainState {
    config: TrainConfig,
    genotype: Genotype,
    next_epoch: usize,
    records: Vec<TrainEpoch>,
    train: LoaderState,
}

/// Trains the network of `genotype` on `train`, evaluating on `test` after every epoch. With
/// `resumable`, a checkpoint is written after every epoch and `resume` continues from it.
/// `on_epoch` sees every epoch record and may end training early (early stopping) by
/// returning [`ControlFlow::Break`].
pub fn train_genotype(
    config: &TrainConfig,
    genotype: &Genotype,
    train: &mut BatchLoader,
    test: &mut BatchLoader,
    device: &Device,
    resumable: Option<&Resumable>,
    mut on_epoch: impl FnMut(&TrainEpoch) -> Result<ControlFlow<()>>,
) -> Result<TrainOutcome> {
    config.check()?;
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    let mut model = Network::new(
        &config.network,
        genotype,
        &mut ParamInit::new(config.seed, &ad),
    )?;
    let auxiliary_parameters = model.auxiliary_params();
    let parameters = crate::nn::count_parameters(&model) - auxiliary_parameters;
    tracing::info!(parameters, auxiliary_parameters, "network built");

    let mut optimizer = super::optim::sgd(config.momentum, config.weight_decay);
    let mut records = Vec::with_capacity(config.epochs);
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: TrainState = r.checkpoint.load_state()?;
        ensure_same_settings(&state.config, config)?;
        ensure_same_settings(&state.genotype, genotype)?;
        model = r.checkpoint.load_model(model)?;
        optimizer = r.checkpoint.load_optimizer("weights", optimizer)?;
        train.restore(state.train)?;
        records = state.records;
        start = state.next_epoch;
        tracing::info!(epochs_done = start, "resuming training");
    }
    for epoch in start..config.epochs {
        // One mask stream per epoch, derived from the run seed, so a resumed run draws the
        // masks an uninterrupted one would.
        let drop = DropPath::new(
            config.drop_prob(epoch),
            config.seed ^ ((epoch as u64) << 32),
        );
        let started = Instant::now();
        let steps = train.batches_per_epoch();
        let lr_of = |step: usize| {
            config
                .lr_schedule
                .lr(config.lr, config.lr_min, epoch, config.epochs, step, steps)
        };
        let lr = lr_of(0);
        let drop_prob = config.drop_prob(epoch);
        let bar = crate::report::progress::epoch_bar(
            train.batches_per_epoch() as u64,
            epoch + 1,
            config.epochs,
        );

        let mut loss_sum = 0.0;
        let mut correct = 0;
        let mut images = 0;
        for (step, batch) in train.epoch().enumerate() {
            let (x, y) = batch_tensors(&batch, &ad);
            let output = model.forward(x, &drop);
            let main = cross_entropy(output.logits.clone(), y.clone());
            let main_value = f64::from(main.clone().into_scalar::<f32>());
            if !main_value.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {main_value} in epoch {}; lower --lr",
                    epoch + 1
                )));
            }
            let loss = match output.auxiliary {
                Some(aux) => {
                    main + cross_entropy(aux, y.clone()).mul_scalar(config.auxiliary_weight)
                }
                None => main,
            };
            correct += correct_count(output.logits.detach(), y);
            loss_sum += main_value * batch.n as f64;
            images += batch.n;

            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, config.grad_clip);
            model = optimizer.step(lr_of(step), model, grads);
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
        let result = evaluate(test, &plain, |x| {
            eval_model.forward(x, &DropPath::off()).logits
        });
        result.ensure_finite("test", epoch + 1)?;
        let record = TrainEpoch {
            epoch: epoch + 1,
            seed: config.seed,
            lr,
            drop_prob,
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            test_loss: result.loss,
            test_accuracy: result.accuracy,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: images as f64 / train_seconds.max(1e-9),
        };
        tracing::info!(
            epoch = record.epoch,
            lr = format!("{lr:.5}"),
            train_loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            test_acc = format!("{:.4}", record.test_accuracy),
            images_per_s = format!("{:.1}", record.images_per_second),
            "epoch done"
        );
        records.push(record.clone());
        if let Some(r) = resumable {
            let state = TrainState {
                config: config.clone(),
                genotype: genotype.clone(),
                next_epoch: epoch + 1,
                records: records.clone(),
                train: train.state(),
            };
            r.checkpoint
                .save(&model, &[("weights", &optimizer)], &state)?;
        }
        if on_epoch(&record)?.is_break() {
            tracing::debug!(epoch = epoch + 1, "training stopped early");
            break;
        }
    }
    Ok(TrainOutcome {
        epochs: records,
        network: model,
        parameters,
        auxiliary_parameters,
    })
}
