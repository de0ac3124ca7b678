//! Estimating an architecture with the weights of a trained single-path one-shot supernet
//! instead of training it: an inverted-residual chain with the supernet of
//! [`crate::search::spos`], a pair of DARTS cells with the cell supernet of
//! [`crate::search::spos_cell`]. The subnet's batch-norm statistics are recomputed on training
//! batches (or, with recalibration off, the supernet's running statistics are used as they
//! are), then it is evaluated on the held-out part of the training split the supernet never
//! trained on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use burn::prelude::*;

use super::estimator::{Estimator, Evaluation};
use super::space::Space;
use crate::cost;
use crate::cost::Resolution;
use crate::data::{Augment, BatchLoader, Dataset, Normalization};
use crate::latency::LatencyTable;
use crate::nn::mobile::MobileSupernet;
use crate::nn::{NetworkConfig, SearchNetwork};
use crate::search::spos::{SupernetInfo, path_of, score_subnet};
use crate::search::spos_cell::{CellSupernetInfo, score_cell_subnet};
use crate::space::Genotype;
use crate::space::mobile::BlockChoice;
use crate::train::tensors::batch_tensors;
use crate::{NasError, Result};

/// Images per batch when evaluating a subnet.
const EVAL_BATCH: usize = 256;

/// A trained supernet of either space, with what it says about its training.
pub enum Supernet {
    /// The inverted-residual supernet.
    Mobile(Box<MobileSupernet>, SupernetInfo),
    /// The DARTS search network trained one genotype at a time.
    Cell(Box<SearchNetwork>, CellSupernetInfo),
}

/// What both kinds of supernet record about their training and data.
struct Trained {
    seed: u64,
    epochs: usize,
    dataset: String,
    batch_size: usize,
}

impl Supernet {
    fn trained(&self) -> Trained {
        match self {
            Supernet::Mobile(_, i) => Trained {
                seed: i.config.seed,
                epochs: i.config.epochs,
                dataset: i.dataset.clone(),
                batch_size: i.batch_size,
            },
            Supernet::Cell(_, i) => Trained {
                seed: i.config.seed,
                epochs: i.config.epochs,
                dataset: i.dataset.clone(),
                batch_size: i.batch_size,
            },
        }
    }

    /// The seed, subset and held-out fraction of the supernet's data.
    pub fn data_settings(&self) -> (u64, Option<usize>, f32) {
        match self {
            Supernet::Mobile(_, i) => (i.config.seed, i.subset, i.valid_portion),
            Supernet::Cell(_, i) => (i.config.seed, i.subset, i.valid_portion),
        }
    }

    /// The dataset the supernet was trained on.
    pub fn dataset(&self) -> String {
        self.trained().dataset
    }
}

/// Scores each architecture with a trained supernet's weights and reports `valid_accuracy`
/// (percent, on the held-out part: the metric to select by), `valid_loss`, `params`, `macs`
/// (of the standalone network of the subnet: for cells, a network of the supernet's cells
/// and channels) and, for inverted-residual chains with a latency table, `latency_ms`.
pub struct SupernetEstimator {
    supernet: Supernet,
    calibration: Vec<Tensor<4>>,
    valid: Arc<Dataset>,
    valid_indices: Vec<usize>,
    normalization: Normalization,
    device: Device,
    latency: Option<Arc<LatencyTable>>,
}

impl SupernetEstimator {
    /// An estimator with `supernet` validating on `valid_indices` of `train`. With
    /// `calibration_batches` > 0, that many training batches (of the supernet's batch size,
    /// drawn once from `train_indices` with `augment`, distinct images, the same for every
    /// subnet) recalibrate batch norm before each evaluation; with 0 the supernet's running
    /// statistics are used.
    ///
    /// # Errors
    /// [`NasError::Config`] when a part is empty, the dataset's images are not those the
    /// supernet was trained on, or there are fewer training batches than `calibration_batches`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        supernet: Supernet,
        train: Arc<Dataset>,
        train_indices: Vec<usize>,
        valid_indices: Vec<usize>,
        normalization: Normalization,
        augment: Augment,
        calibration_batches: usize,
        device: Device,
    ) -> Result<Self> {
        let (c, h, classes) = match &supernet {
            Supernet::Mobile(_, i) => (
                i.config.space.in_channels,
                i.config.space.image_size,
                i.config.space.classes,
            ),
            Supernet::Cell(_, i) => (
                i.config.network.in_channels,
                train.height,
                i.config.network.num_classes,
            ),
        };
        if (c, h, classes) != (train.channels, train.height, train.num_classes)
            || train.height != train.width
        {
            return Err(NasError::config(
                "dataset",
                format!(
                    "the supernet was trained on {c}-channel {h}-pixel images of {classes} \
                     classes; this dataset has {}-channel {}x{} images of {} classes",
                    train.channels, train.height, train.width, train.num_classes
                ),
            ));
        }
        if train_indices.is_empty() || valid_indices.is_empty() {
            return Err(NasError::config(
                "valid_portion",
                "both the training and validation parts must hold images",
            ));
        }
        let plain = device.clone().without_autodiff();
        let trained = supernet.trained();
        let mut calibration = Vec::with_capacity(calibration_batches);
        if calibration_batches > 0 {
            let mut loader = BatchLoader::new(
                Arc::clone(&train),
                train_indices,
                trained.batch_size,
                true,
                augment,
                normalization.clone(),
                trained.seed ^ 0x4341_4c49_4252_4154,
            )?;
            // Distinct images only: more batches than one pass over the training part would
            // repeat images and hold them all in memory for nothing.
            let available = loader.batches_per_epoch();
            if calibration_batches > available {
                return Err(NasError::config(
                    "calibration_batches",
                    format!(
                        "at most {available} (one pass over the {} training images in batches \
                         of {}), found {calibration_batches}",
                        loader.len(),
                        trained.batch_size
                    ),
                ));
            }
            for batch in loader.epoch().take(calibration_batches) {
                calibration.push(batch_tensors(&batch, &plain).0);
            }
        }
        let supernet = match supernet {
            Supernet::Mobile(m, i) => Supernet::Mobile(Box::new(m.valid()), i),
            Supernet::Cell(m, i) => Supernet::Cell(Box::new(m.valid()), i),
        };
        Ok(SupernetEstimator {
            supernet,
            calibration,
            valid: train,
            valid_indices,
            normalization,
            device: plain,
            latency: None,
        })
    }
}

impl SupernetEstimator {
    /// Adds the metric `latency_ms`: the latency `table` predicts for each architecture.
    ///
    /// # Errors
    /// [`NasError::Config`] when the table was measured for another space than the
    /// supernet's.
    pub fn with_latency_table(mut self, table: LatencyTable) -> Result<Self> {
        let Supernet::Mobile(_, info) = &self.supernet else {
            return Err(NasError::config(
                "latency_table",
                "latency tables cover the inverted-residual space, not DARTS cells",
            ));
        };
        if table.space != info.config.space {
            return Err(NasError::config(
                "latency_table",
                "the table was measured for another space (image size, channels or classes) \
                 than the supernet's",
            ));
        }
        self.latency = Some(Arc::new(table));
        Ok(self)
    }

    /// Parameters, MACs and (with a table) predicted latency of the subnet's standalone network.
    fn subnet_cost(&self, blocks: &[BlockChoice]) -> Result<BTreeMap<String, f64>> {
        let Supernet::Mobile(_, info) = &self.supernet else {
            return Err(self.wrong_space("inverted-residual chains"));
        };
        let cost = cost::mobile_network(&info.config.space, blocks)?;
        let mut metrics = BTreeMap::from([
            ("params".to_string(), cost.params as f64),
            ("macs".to_string(), cost.macs as f64),
        ]);
        if let Some(table) = &self.latency {
            metrics.insert("latency_ms".to_string(), table.predict(blocks)?);
        }
        Ok(metrics)
    }

    /// Accuracy (fraction) and loss of `blocks` on the held-out part, recalibrated or not as
    /// this estimator was built.
    ///
    /// # Errors
    /// [`NasError::Config`] for an architecture outside the supernet's space;
    /// [`NasError::Numerical`] for a non-finite loss.
    pub fn score(&self, blocks: &[BlockChoice]) -> Result<(f64, f64)> {
        self.score_with(blocks, !self.calibration.is_empty())
    }

    /// As [`score`](Self::score), choosing whether to recalibrate (which needs calibration
    /// batches).
    ///
    /// # Errors
    /// As [`score`](Self::score); [`NasError::Config`] when asked to recalibrate without
    /// calibration batches.
    pub fn score_with(&self, blocks: &[BlockChoice], recalibrate: bool) -> Result<(f64, f64)> {
        let Supernet::Mobile(model, info) = &self.supernet else {
            return Err(self.wrong_space("inverted-residual chains"));
        };
        let path = path_of(&info.config.space, blocks)?;
        self.check_calibration(recalibrate)?;
        let mut valid = self.valid_loader()?;
        let calibration = recalibrate.then_some(self.calibration.as_slice());
        let result = score_subnet(model, &path, calibration, &mut valid, &self.device);
        result.ensure_finite("validation", info.config.epochs)?;
        Ok((result.accuracy, result.loss))
    }

    /// As [`score_with`](Self::score_with) for a pair of DARTS cells on the cell supernet.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with); [`NasError::Genotype`] for a genotype that is not
    /// a single path of the supernet (another node count, a `none` edge).
    pub fn score_cells(&self, genotype: &Genotype, recalibrate: bool) -> Result<(f64, f64)> {
        let Supernet::Cell(model, info) = &self.supernet else {
            return Err(self.wrong_space("DARTS cells"));
        };
        self.check_calibration(recalibrate)?;
        let mut valid = self.valid_loader()?;
        let calibration = recalibrate.then_some(self.calibration.as_slice());
        let result = score_cell_subnet(model, genotype, calibration, &mut valid, &self.device)?;
        result.ensure_finite("validation", info.config.epochs)?;
        Ok((result.accuracy, result.loss))
    }

    fn wrong_space(&self, wanted: &str) -> NasError {
        let held = match self.supernet {
            Supernet::Mobile(..) => "inverted-residual chains",
            Supernet::Cell(..) => "DARTS cells",
        };
        NasError::config(
            "estimator",
            format!("the supernet holds {held}, not {wanted}"),
        )
    }

    fn check_calibration(&self, recalibrate: bool) -> Result<()> {
        if recalibrate && self.calibration.is_empty() {
            return Err(NasError::config(
                "calibration_batches",
                "recalibration needs at least one calibration batch",
            ));
        }
        Ok(())
    }

    fn valid_loader(&self) -> Result<BatchLoader> {
        BatchLoader::new(
            Arc::clone(&self.valid),
            self.valid_indices.clone(),
            EVAL_BATCH,
            false,
            Augment::none(),
            self.normalization.clone(),
            0,
        )
    }

    /// Parameters and MACs of the network of `genotype` with the cell supernet's cells and
    /// channels (no auxiliary head), from shapes.
    fn cell_cost(&self, genotype: &Genotype) -> Result<BTreeMap<String, f64>> {
        let Supernet::Cell(_, info) = &self.supernet else {
            return Err(self.wrong_space("DARTS cells"));
        };
        let n = &info.config.network;
        let config = NetworkConfig {
            in_channels: n.in_channels,
            num_classes: n.num_classes,
            channels: n.channels,
            cells: n.cells,
            auxiliary: false,
            stem_multiplier: n.stem_multiplier,
        };
        let input = Resolution::new(self.valid.height, self.valid.width)?;
        let cost = cost::network(&config, genotype, input)?.network;
        Ok(BTreeMap::from([
            ("params".to_string(), cost.params as f64),
            ("macs".to_string(), cost.macs as f64),
        ]))
    }
}

impl Estimator for SupernetEstimator {
    fn describe(&self) -> String {
        let t = self.supernet.trained();
        let kind = match &self.supernet {
            Supernet::Mobile(..) => "inverted-residual".to_string(),
            Supernet::Cell(_, i) => format!(
                "DARTS cell ({} cells, {} channels, {} nodes)",
                i.config.network.cells, i.config.network.channels, i.config.network.nodes
            ),
        };
        format!(
            "{kind} supernet weights (single-path one-shot, {} epochs on {} with seed {}), {}, \
             validation on {} held-out images{}",
            t.epochs,
            t.dataset,
            t.seed,
            if self.calibration.is_empty() {
                "no batch-norm recalibration".to_string()
            } else {
                format!(
                    "batch norm recalibrated on {} training batches of {}",
                    self.calibration.len(),
                    t.batch_size
                )
            },
            self.valid_indices.len(),
            self.latency
                .as_ref()
                .map(|t| format!(
                    ", latency from a table of {} threads, batch {} on {} measured at {}",
                    t.settings.threads, t.settings.batch_size, t.settings.processor, t.measured_at
                ))
                .unwrap_or_default()
        )
    }

    fn metrics(&self) -> Vec<String> {
        ["valid_accuracy", "valid_loss", "params", "macs"]
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

    fn cost(&self, space: &dyn Space, arch: &[usize]) -> Option<BTreeMap<String, f64>> {
        match &self.supernet {
            Supernet::Mobile(..) => self.subnet_cost(&space.mobile_blocks(arch)?).ok(),
            Supernet::Cell(..) => self.cell_cost(&space.genotype(arch)?).ok(),
        }
    }

    fn evaluate(&self, space: &dyn Space, arch: &[usize], _seed: u64) -> Result<Evaluation> {
        let started = Instant::now();
        let recalibrate = !self.calibration.is_empty();
        let (mut metrics, (accuracy, loss)) = match &self.supernet {
            Supernet::Mobile(..) => {
                let blocks = space
                    .mobile_blocks(arch)
                    .ok_or_else(|| self.space_error(space))?;
                (
                    self.subnet_cost(&blocks)?,
                    self.score_with(&blocks, recalibrate)?,
                )
            }
            Supernet::Cell(..) => {
                let genotype = space
                    .genotype(arch)
                    .ok_or_else(|| self.space_error(space))?;
                (
                    self.cell_cost(&genotype)?,
                    self.score_cells(&genotype, recalibrate)?,
                )
            }
        };
        metrics.insert("valid_accuracy".to_string(), 100.0 * accuracy);
        metrics.insert("valid_loss".to_string(), loss);
        Ok(Evaluation {
            metrics,
            epochs: 0.0,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

impl SupernetEstimator {
    fn space_error(&self, space: &dyn Space) -> NasError {
        let held = match self.supernet {
            Supernet::Mobile(..) => "inverted-residual chains (--space mobile)",
            Supernet::Cell(..) => "DARTS cells (--space darts)",
        };
        NasError::config(
            "estimator",
            format!(
                "the supernet holds {held}; the `{}` space has none",
                space.kind()
            ),
        )
    }
}
