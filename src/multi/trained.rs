//! Estimating an architecture by training its network from scratch on a real dataset.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::estimator::{Estimator, Evaluation};
use super::space::Space;
use crate::cost::{self, Cost, Resolution};
use crate::data::{Augment, BatchLoader, Dataset, Normalization};
use crate::latency::LatencyTable;
use crate::nn::NetworkConfig;
use crate::nn::network::DropPath;
use crate::space::Genotype;
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::train::mobile_trainer::{MobileTrainConfig, train_mobile};
use crate::train::{LrSchedule, TrainConfig, evaluate, train_genotype};
use crate::{NasError, Result};

/// Training budget and network size of [`TrainedEstimator`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainedSettings {
    /// Cells of the network built from each architecture.
    pub cells: usize,
    /// Initial channels.
    pub channels: usize,
    /// Largest number of training epochs.
    pub epochs: usize,
    /// Stop when validation accuracy has not improved for this many epochs (`None`: always
    /// train all `epochs`).
    pub patience: Option<usize>,
    /// Images per batch.
    pub batch_size: usize,
    /// Initial learning rate (cosine to 0 over `epochs`, per batch).
    pub lr: f64,
}

/// Trains the network of each architecture (a DARTS cell) on a training part of a dataset and
/// reports `valid_accuracy` (percent, on a held-out part of the training split: the metric to
/// select by), `test_accuracy` (percent, on the test split: to report only), `valid_loss`,
/// `params`, `macs` (multiply-accumulates per image at the dataset's image size, counted as
/// [`crate::cost`] does) and `epochs` (epochs actually run).
pub struct TrainedEstimator {
    settings: TrainedSettings,
    train: Arc<Dataset>,
    train_indices: Vec<usize>,
    valid_indices: Vec<usize>,
    test: Arc<Dataset>,
    normalization: Normalization,
    augment: Augment,
    device: Device,
    dataset_name: String,
    latency: Option<Arc<LatencyTable>>,
}

impl TrainedEstimator {
    /// An estimator training on `train_indices` of `train`, validating on `valid_indices` of it
    /// and testing on `test`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: TrainedSettings,
        dataset_name: &str,
        train: Arc<Dataset>,
        train_indices: Vec<usize>,
        valid_indices: Vec<usize>,
        test: Arc<Dataset>,
        normalization: Normalization,
        augment: Augment,
        device: Device,
    ) -> Result<Self> {
        if settings.epochs == 0 {
            return Err(NasError::config("epochs", "must be at least 1"));
        }
        if settings.patience == Some(0) {
            return Err(NasError::config("patience", "must be at least 1 epoch"));
        }
        if train_indices.is_empty() || valid_indices.is_empty() {
            return Err(NasError::config(
                "valid_portion",
                format!(
                    "both the training ({}) and validation ({}) parts must hold images",
                    train_indices.len(),
                    valid_indices.len()
                ),
            ));
        }
        Ok(TrainedEstimator {
            settings,
            train,
            train_indices,
            valid_indices,
            test,
            normalization,
            augment,
            device,
            dataset_name: dataset_name.to_string(),
            latency: None,
        })
    }

    /// Adds the metric `latency_ms`: the latency `table` predicts for the network of an
    /// inverted-residual architecture (cell architectures have no latency table).
    ///
    /// # Errors
    /// [`NasError::Config`] when the table was measured for another shape of the space than
    /// this dataset's.
    pub fn with_latency_table(mut self, table: LatencyTable) -> Result<Self> {
        if table.space != self.mobile_space() {
            return Err(NasError::config(
                "latency_table",
                format!(
                    "the table was measured for {}-channel {}-pixel images and {} classes, the \
                     dataset {} has {}-channel {}-pixel images and {} classes",
                    table.space.in_channels,
                    table.space.image_size,
                    table.space.classes,
                    self.dataset_name,
                    self.train.channels,
                    self.train.height,
                    self.train.num_classes
                ),
            ));
        }
        self.latency = Some(Arc::new(table));
        Ok(self)
    }

    /// The inverted-residual space sized for this dataset.
    fn mobile_space(&self) -> MobileSpace {
        MobileSpace::cifar(
            self.train.channels,
            self.train.height,
            self.train.num_classes,
        )
    }

    /// Parameters, MACs and (with a table) predicted latency of an inverted-residual network.
    fn mobile_cost(&self, blocks: &[BlockChoice]) -> Result<BTreeMap<String, f64>> {
        let space = self.mobile_space();
        let cost = cost::mobile_network(&space, blocks)?;
        let mut metrics = BTreeMap::from([
            ("params".to_string(), cost.params as f64),
            ("macs".to_string(), cost.macs as f64),
        ]);
        if let Some(table) = &self.latency {
            metrics.insert("latency_ms".to_string(), table.predict(blocks)?);
        }
        Ok(metrics)
    }

    fn evaluate_mobile(&self, blocks: &[BlockChoice], seed: u64) -> Result<Evaluation> {
        let started = Instant::now();
        let s = &self.settings;
        let mut metrics = self.mobile_cost(blocks)?;
        let config = MobileTrainConfig {
            space: self.mobile_space(),
            epochs: s.epochs,
            lr: s.lr,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 4e-5,
            grad_clip: 5.0,
            seed,
        };
        let mut train = self.loader(&self.train, &self.train_indices, true, seed)?;
        let mut valid = self.loader(&self.train, &self.valid_indices, false, 0)?;
        let mut best = f64::NEG_INFINITY;
        let mut since_best = 0;
        let patience = s.patience;
        let on_epoch = |record: &crate::train::mobile_trainer::MobileTrainEpoch| {
            if record.test_accuracy > best {
                best = record.test_accuracy;
                since_best = 0;
            } else {
                since_best += 1;
            }
            match patience {
                Some(p) if since_best >= p => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        };
        let (records, network) = train_mobile(
            &config,
            blocks,
            &mut train,
            &mut valid,
            &self.device,
            None,
            on_epoch,
        )?;
        let last = records
            .last()
            .ok_or_else(|| NasError::config("epochs", "must be at least 1"))?;
        let plain = self.device.clone().without_autodiff();
        let model = network.valid();
        let all: Vec<usize> = (0..self.test.len()).collect();
        let mut test = self.loader(&self.test, &all, false, 0)?;
        let result = evaluate(&mut test, &plain, |x| model.forward(x));
        result.ensure_finite("test", records.len())?;
        // The trainer's "test" loader was the validation part here.
        metrics.insert("valid_accuracy".to_string(), 100.0 * last.test_accuracy);
        metrics.insert("valid_loss".to_string(), last.test_loss);
        metrics.insert("test_accuracy".to_string(), 100.0 * result.accuracy);
        metrics.insert("epochs".to_string(), records.len() as f64);
        Ok(Evaluation {
            metrics,
            epochs: records.len() as f64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The network every architecture is built into.
    fn network_config(&self) -> NetworkConfig {
        NetworkConfig {
            in_channels: self.train.channels,
            num_classes: self.train.num_classes,
            channels: self.settings.channels,
            cells: self.settings.cells,
            auxiliary: false,
            stem_multiplier: 3,
        }
    }

    /// Parameters and MACs of the network of `genotype` on this dataset's images, from shapes.
    fn network_cost(&self, genotype: &Genotype) -> Result<Cost> {
        let input = Resolution::new(self.train.height, self.train.width)?;
        Ok(cost::network(&self.network_config(), genotype, input)?.network)
    }

    fn loader(
        &self,
        data: &Arc<Dataset>,
        idx: &[usize],
        train: bool,
        seed: u64,
    ) -> Result<BatchLoader> {
        let augment = if train { self.augment } else { Augment::none() };
        BatchLoader::new(
            data.clone(),
            idx.to_vec(),
            self.settings.batch_size,
            train,
            augment,
            self.normalization.clone(),
            seed,
        )
    }
}

impl Estimator for TrainedEstimator {
    fn describe(&self) -> String {
        let s = &self.settings;
        let a = &self.augment;
        format!(
            "training from scratch on {} ({} train / {} validation images; augmentation: crop \
             padding {}, flip {}, cutout {}), networks of {} cells and {} channels for DARTS \
             cells{}, up to {} epochs{}, batch {}, lr {}",
            self.dataset_name,
            self.train_indices.len(),
            self.valid_indices.len(),
            a.crop_padding,
            a.horizontal_flip,
            a.cutout,
            s.cells,
            s.channels,
            self.latency
                .as_ref()
                .map(|t| format!(
                    ", inverted-residual networks with latency from a table of {} threads, batch \
                     {} on {} measured at {}",
                    t.settings.threads, t.settings.batch_size, t.settings.processor, t.measured_at
                ))
                .unwrap_or_default(),
            s.epochs,
            s.patience
                .map(|p| format!(" (early stop after {p} without improvement)"))
                .unwrap_or_default(),
            s.batch_size,
            s.lr
        )
    }

    fn metrics(&self) -> Vec<String> {
        [
            "valid_accuracy",
            "valid_loss",
            "test_accuracy",
            "params",
            "macs",
            "epochs",
        ]
        .map(String::from)
        .into_iter()
        .chain(self.latency.is_some().then(|| "latency_ms".to_string()))
        .collect()
    }

    fn selection_metric(&self) -> (String, bool) {
        ("valid_accuracy".to_string(), false)
    }

    fn deterministic(&self) -> bool {
        true
    }

    /// `params` and `macs` of the network, from shapes: the same numbers training reports.
    fn cost(&self, space: &dyn Space, arch: &[usize]) -> Option<BTreeMap<String, f64>> {
        if let Some(blocks) = space.mobile_blocks(arch) {
            return self.mobile_cost(&blocks).ok();
        }
        let cost = self.network_cost(&space.genotype(arch)?).ok()?;
        Some(BTreeMap::from([
            ("params".to_string(), cost.params as f64),
            ("macs".to_string(), cost.macs as f64),
        ]))
    }

    fn evaluate(&self, space: &dyn Space, arch: &[usize], seed: u64) -> Result<Evaluation> {
        if let Some(blocks) = space.mobile_blocks(arch) {
            return self.evaluate_mobile(&blocks, seed);
        }
        if self.latency.is_some() {
            return Err(NasError::config(
                "latency_table",
                format!(
                    "latency tables cover the inverted-residual space, not `{}`",
                    space.kind()
                ),
            ));
        }
        let genotype = space.genotype(arch).ok_or_else(|| {
            NasError::config(
                "estimator",
                format!(
                    "training needs architectures that are cells or inverted-residual chains; \
                     the `{}` space has neither",
                    space.kind()
                ),
            )
        })?;
        let started = Instant::now();
        let s = &self.settings;
        let cost = self.network_cost(&genotype)?;
        let config = TrainConfig {
            network: self.network_config(),
            epochs: s.epochs,
            batch_size: s.batch_size,
            lr: s.lr,
            lr_min: 0.0,
            lr_schedule: LrSchedule::CosineStep,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            drop_path: 0.0,
            auxiliary_weight: 0.0,
            seed,
        };
        let mut train = self.loader(&self.train, &self.train_indices, true, seed)?;
        let mut valid = self.loader(&self.train, &self.valid_indices, false, 0)?;
        let mut best = f64::NEG_INFINITY;
        let mut since_best = 0;
        let patience = s.patience;
        let outcome = train_genotype(
            &config,
            &genotype,
            &mut train,
            &mut valid,
            &self.device,
            None,
            |record| {
                if record.test_accuracy > best {
                    best = record.test_accuracy;
                    since_best = 0;
                } else {
                    since_best += 1;
                }
                Ok(match patience {
                    Some(p) if since_best >= p => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                })
            },
        )?;
        let last = outcome.epochs.last().expect("at least one epoch");
        let plain = self.device.clone().without_autodiff();
        let model = outcome.network.valid();
        let mut test = self.loader(
            &self.test,
            &(0..self.test.len()).collect::<Vec<_>>(),
            false,
            0,
        )?;
        let result = evaluate(&mut test, &plain, |x| {
            model.forward(x, &DropPath::off()).logits
        });
        result.ensure_finite("test", outcome.epochs.len())?;
        let mut metrics = BTreeMap::new();
        // The trainer's "test" loader was the validation part here.
        metrics.insert("valid_accuracy".to_string(), 100.0 * last.test_accuracy);
        metrics.insert("valid_loss".to_string(), last.test_loss);
        metrics.insert("test_accuracy".to_string(), 100.0 * result.accuracy);
        metrics.insert("params".to_string(), outcome.parameters as f64);
        metrics.insert("macs".to_string(), cost.macs as f64);
        metrics.insert("epochs".to_string(), outcome.epochs.len() as f64);
        Ok(Evaluation {
            metrics,
            epochs: outcome.epochs.len() as f64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
