//! Training a network of the inverted-residual space from scratch: SGD with momentum, a cosine
//! schedule per batch, global gradient clipping, evaluation on the test split after every
//! epoch.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::clip::clip_global_norm;
use super::tensors::batch_tensors;
use super::{correct_count, cosine_at, cross_entropy, evaluate};
use crate::checkpoint::ensure_same_settings;
use crate::data::{BatchLoader, LoaderState};
use crate::nn::ParamInit;
use crate::nn::mobile::MobileNetwork;
use crate::search::Resumable;
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::{NasError, Result};

/// Settings of a training run of one architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MobileTrainConfig {
    /// The space the architecture belongs to.
    pub space: MobileSpace,
    /// Epochs.
    pub epochs: usize,
    /// Initial learning rate, annealed per batch by a cosine to `lr_min`.
    pub lr: f64,
    /// Final learning rate.
    pub lr_min: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// The seed of the run (initialisation; the loaders carry their own streams).
    pub seed: u64,
}

/// One epoch of training.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MobileTrainEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy on augmented batches.
    pub train_accuracy: f64,
    /// Loss on the test split.
    pub test_loss: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Wall time, evaluation included.
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct MobileTrainState {
    config: MobileTrainConfig,
    arch: Vec<BlockChoice>,
    next_epoch: usize,
    records: Vec<MobileTrainEpoch>,
    train: LoaderState,
}

/// Trains the network of `arch` and evaluates it on `test` after every epoch; `on_epoch` hears
/// each epoch and can stop the training after it. Returns the records and the trained network.
/// With `resumable`, a checkpoint is written after every epoch (before `on_epoch`), and a
/// resumed run ends exactly as an uninterrupted one.
///
/// # Errors
/// [`NasError::Config`] for an architecture outside the space or impossible settings;
/// [`NasError::Numerical`] when the loss diverges.
pub fn train_mobile(
    config: &MobileTrainConfig,
    arch: &[BlockChoice],
    train: &mut BatchLoader,
    test: &mut BatchLoader,
    device: &Device,
    resumable: Option<&Resumable>,
    mut on_epoch: impl FnMut(&MobileTrainEpoch) -> ControlFlow<()>,
) -> Result<(Vec<MobileTrainEpoch>, MobileNetwork)> {
    config.space.check()?;
    config.space.validate(arch)?;
    if config.epochs == 0 {
        return Err(NasError::config("epochs", "must be at least 1"));
    }
    let lr_ok = config.lr.is_finite() && config.lr > 0.0;
    if !lr_ok || !(0.0..=config.lr).contains(&config.lr_min) {
        return Err(NasError::config(
            "lr",
            format!(
                "need 0 <= lr_min <= lr with lr > 0, found lr {} lr_min {}",
                config.lr, config.lr_min
            ),
        ));
    }
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    let mut model = MobileNetwork::new(&config.space, arch, &mut ParamInit::new(config.seed, &ad));
    let mut optimizer = super::optim::sgd(config.momentum, config.weight_decay);
    let steps = train.batches_per_epoch();
    let mut records = Vec::with_capacity(config.epochs);
    let mut start = 0;
    if let Some(r) = resumable.filter(|r| r.resume) {
        let state: MobileTrainState = r.checkpoint.load_state()?;
        // One flat object, so a refusal names the setting that changed.
        let settings = |c: &MobileTrainConfig, a: &[BlockChoice]| {
            let mut settings = serde_json::to_value(c).unwrap_or_default();
            if let Some(fields) = settings.as_object_mut() {
                fields.insert("architecture".into(), c.space.key(a).into());
            }
            settings
        };
        ensure_same_settings(
            &settings(&state.config, &state.arch),
            &settings(config, arch),
        )?;
        model = r.checkpoint.load_model(model)?;
        optimizer = r.checkpoint.load_optimizer("weights", optimizer)?;
        train.restore(state.train)?;
        records = state.records;
        start = state.next_epoch;
        tracing::info!(epochs_done = start, "resuming training");
    }
    for epoch in start..config.epochs {
        let started = Instant::now();
        let bar = crate::report::progress::epoch_bar(steps as u64, epoch + 1, config.epochs);
        let (mut loss_sum, mut correct, mut images) = (0.0, 0, 0);
        for (step, batch) in train.epoch().enumerate() {
            let progress = (epoch * steps + step) as f64 / (config.epochs * steps) as f64;
            let (x, y) = batch_tensors(&batch, &ad);
            let logits = model.forward(x);
            let loss = cross_entropy(logits.clone(), y.clone());
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(NasError::Numerical(format!(
                    "training loss became {value} in epoch {}; lower the learning rate",
                    epoch + 1
                )));
            }
            correct += correct_count(logits.detach(), y);
            loss_sum += value * batch.n as f64;
            images += batch.n;
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, config.grad_clip);
            model = optimizer.step(cosine_at(config.lr, config.lr_min, progress), model, grads);
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
        let eval_model = model.valid();
        let result = evaluate(test, &plain, |x| eval_model.forward(x));
        result.ensure_finite("test", epoch + 1)?;
        let record = MobileTrainEpoch {
            epoch: epoch + 1,
            seed: config.seed,
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            test_loss: result.loss,
            test_accuracy: result.accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            train_loss = format!("{:.4}", record.train_loss),
            test_acc = format!("{:.4}", record.test_accuracy),
            "training epoch done"
        );
        records.push(record.clone());
        if let Some(r) = resumable {
            let state = MobileTrainState {
                config: config.clone(),
                arch: arch.to_vec(),
                next_epoch: epoch + 1,
                records: records.clone(),
                train: train.state(),
            };
            r.checkpoint
                .save(&model, &[("weights", &optimizer)], &state)?;
        }
        let flow = on_epoch(&record);
        if flow.is_break() {
            break;
        }
    }
    Ok((records, model))
}
