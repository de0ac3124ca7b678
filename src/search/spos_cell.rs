//! Single-path one-shot (Guo et al. 2020) on the DARTS cell space: the DARTS search network is
//! the supernet, and every weight step trains one genotype drawn uniformly, running in every
//! cell only the chosen operation of each chosen edge (one operation per edge instead of the
//! weighted sum of DARTS). The architecture weights of the search network are never used or
//! moved. A genotype is then scored with the supernet's weights after the batch-norm statistics
//! of its path are recomputed on training batches: the running statistics a supernet
//! accumulates mix every path that ran through a layer.

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::BatchLoader;
use crate::nn::saved::{load_weights, read_info, save_with_info};
use crate::nn::{ParamInit, SearchNetwork, SearchNetworkConfig};
use crate::search::Resumable;
use crate::search::spos::{PathStep, SinglePathSchedule, SposEpoch, check_sgd, train_single_path};
use crate::space::{CellGenotype, DartsOp, GeneEdge, Genotype};
use crate::train::clip::clip_global_norm;
use crate::train::{EvalResult, correct_count, cross_entropy, evaluate};
use crate::{NasError, Result};

/// A genotype drawn uniformly from the single paths of a supernet with `nodes` intermediate
/// nodes per cell. For each node of the normal and of the reduction cell: an unordered pair of
/// distinct inputs drawn uniformly among the node's predecessors (the two cell inputs and the
/// earlier nodes), listed in increasing order, and for each of the two edges an operation
/// drawn uniformly among the seven DARTS operations other than `none`. Every intermediate node
/// is concatenated.
///
/// `none` is excluded because a discrete DARTS cell never keeps it (the derivation of Liu et
/// al. 2019 skips it, and the multi-trial DARTS space leaves it out): an edge sampled as `none`
/// would train no weight and make the supernet rank cells no one would build.
///
/// With `nodes` 0 the cells are empty, which [`Genotype::validate`] rejects; a search network
/// always has at least one node.
pub fn uniform_genotype(nodes: usize, rng: &mut ChaCha8Rng) -> Genotype {
    let ops: Vec<DartsOp> = DartsOp::ALL
        .into_iter()
        .filter(|&op| op != DartsOp::None)
        .collect();
    let mut cell = || {
        let mut edges = Vec::with_capacity(2 * nodes);
        for node in 0..nodes {
            let predecessors = node + 2;
            // The second input is uniform among the predecessors other than the first, so every
            // unordered pair has probability 2 / (n (n - 1)).
            let first = rng.random_range(0..predecessors);
            let mut second = rng.random_range(0..predecessors - 1);
            if second >= first {
                second += 1;
            }
            for input in [first.min(second), first.max(second)] {
                let op = ops[rng.random_range(0..ops.len())];
                edges.push(GeneEdge { op, input });
            }
        }
        CellGenotype {
            edges,
            concat: (2..nodes + 2).collect(),
        }
    };
    let normal = cell();
    let reduce = cell();
    Genotype { normal, reduce }
}

/// One weight step on the single path `genotype` (checked by
/// [`SearchNetwork::check_genotype`]): cross-entropy of the path's logits on the images `x`
/// (`[batch, channels, height, width]`, autodiff device) and labels `y` (`[batch]`), gradients
/// clipped to a global norm of `grad_clip`, an optimiser step at `lr`. Only the stem, the
/// preprocessing layers, the chosen operations and the classifier receive gradients; the
/// gradients are also filtered to the network weights, so the architecture weights cannot
/// move. The caller checks that the loss is finite.
///
/// # Panics
/// When `genotype` fails [`SearchNetwork::check_genotype`].
pub fn cell_path_step(
    model: SearchNetwork,
    optimizer: &mut ModuleOptimizer,
    genotype: &Genotype,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    lr: f64,
    grad_clip: f64,
) -> (SearchNetwork, PathStep) {
    let logits = model.forward_genotype(x, genotype);
    let loss = cross_entropy(logits.clone(), y.clone());
    let step = PathStep {
        loss: f64::from(loss.clone().into_scalar::<f32>()),
        correct: correct_count(logits.detach(), y),
    };
    let weights = model.weight_param_ids();
    let mut grads = loss.backward();
    let mut grads = GradientsParams::from_params(&mut grads, &model, &weights);
    clip_global_norm(&model, &mut grads, grad_clip);
    (optimizer.step(lr, model, grads), step)
}

/// The supernet in evaluation mode with the batch-norm statistics of the single path
/// `genotype` recomputed: the running statistics of the stem, of both preprocessing layers of
/// every cell and of the chosen operations are reset, then `batches` (training images,
/// `[n, c, h, w]` on the plain device) run through the path in training mode, each weighing
/// `1 / k` at the `k`-th batch so that the statistics are the plain average over the batches.
/// No parameter changes; the statistics of operations off the path are left as they are.
///
/// # Panics
/// When `genotype` fails [`SearchNetwork::check_genotype`].
pub fn recalibrate_cell(
    model: &SearchNetwork,
    genotype: &Genotype,
    batches: &[Tensor<4>],
) -> SearchNetwork {
    let mut subnet = model.valid().map_genotype_bn(genotype, |bn| {
        bn.reset_running_stats();
        bn.with_training(true)
    });
    for (k, x) in batches.iter().enumerate() {
        let weight = 1.0 / (k + 1) as f64;
        subnet = subnet.map_genotype_bn(genotype, |bn| bn.with_momentum(weight));
        drop(subnet.forward_genotype(x.clone(), genotype));
    }
    // The last batch's update stays pending in burn until it is read with `value_sync`;
    // evaluation reads the committed value, so commit it before leaving training mode.
    subnet.map_genotype_bn(genotype, |bn| {
        let _ = bn.running_mean.value_sync();
        let _ = bn.running_var.value_sync();
        bn.with_training(false).with_momentum(0.1)
    })
}

/// Accuracy and loss of the single path `genotype` on `valid` with the supernet's weights:
/// after its batch-norm statistics are recomputed on `calibration` (see [`recalibrate_cell`]),
/// or with the running statistics the supernet accumulated during training when
/// `calibration` is `None`. Images are evaluated on the plain (non-autodiff) `device`.
///
/// # Errors
/// [`NasError::Genotype`] when `genotype` is not a single path of `model` (see
/// [`SearchNetwork::check_genotype`]).
pub fn score_cell_subnet(
    model: &SearchNetwork,
    genotype: &Genotype,
    calibration: Option<&[Tensor<4>]>,
    valid: &mut BatchLoader,
    device: &Device,
) -> Result<EvalResult> {
    model.check_genotype(genotype)?;
    let subnet = match calibration {
        Some(batches) => recalibrate_cell(model, genotype, batches),
        None => model.valid(),
    };
    Ok(evaluate(valid, &device.clone().without_autodiff(), |x| {
        subnet.forward_genotype(x, genotype)
    }))
}

/// Settings of single-path one-shot training of the DARTS search network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellSposConfig {
    /// The search network used as the supernet (its cell operations have batch norm without
    /// affine parameters; its architecture weights are kept but never trained).
    pub network: SearchNetworkConfig,
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
    /// The seed of initialisation and genotype sampling (the loaders carry their own streams).
    pub seed: u64,
}

impl CellSposConfig {
    /// Rejects impossible settings with the name of the offending field.
    ///
    /// # Errors
    /// [`NasError::Config`] naming the field.
    pub fn check(&self) -> Result<()> {
        self.network.check()?;
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

/// Trains the DARTS search network of `config.network` as a single-path supernet: one
/// genotype drawn by [`uniform_genotype`] per batch of `train`, one [`cell_path_step`] on it.
/// With `resumable`, a checkpoint is written after every epoch and a resumed run ends exactly
/// as an uninterrupted one. `on_epoch` hears every epoch after its checkpoint; an error from
/// it ends training with that error. Returns the trained supernet (on the autodiff device) and
/// the records of all epochs.
///
/// # Errors
/// [`NasError::Config`] for impossible settings or a checkpoint made with other settings;
/// [`NasError::Numerical`] when the loss diverges; I/O errors of the checkpoint; the error of
/// `on_epoch`.
pub fn train_cell_supernet(
    config: &CellSposConfig,
    train: &mut BatchLoader,
    device: &Device,
    resumable: Option<&Resumable>,
    on_epoch: impl FnMut(&SposEpoch) -> Result<()>,
) -> Result<(SearchNetwork, Vec<SposEpoch>)> {
    config.check()?;
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    let model = SearchNetwork::new(&config.network, &mut ParamInit::new(config.seed, &ad))?;
    let optimizer = crate::train::optim::sgd(config.momentum, config.weight_decay);
    // A stream of its own, so that sampling does not shift when initialisation changes.
    let rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x4345_4c4c_5350_4f53);
    let schedule = SinglePathSchedule {
        epochs: config.epochs,
        lr: config.lr,
        lr_min: config.lr_min,
        seed: config.seed,
    };
    train_single_path(
        "cell supernet",
        config,
        &schedule,
        model,
        optimizer,
        rng,
        train,
        &ad,
        resumable,
        |rng| uniform_genotype(config.network.nodes, rng),
        |model, optimizer, genotype, x, y, lr| {
            cell_path_step(model, optimizer, genotype, x, y, lr, config.grad_clip)
        },
        on_epoch,
    )
}

/// What a trained cell supernet file says about itself: the settings it was trained with and
/// the data it saw, so that a search on it validates on images it never trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellSupernetInfo {
    /// The training settings (network shape and seed included).
    pub config: CellSposConfig,
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

/// The name of a saved cell supernet's files (`.bpk` and `.json`), other than the
/// inverted-residual supernet's, so that neither loader mistakes the other's files.
const NAME: &str = "cell_supernet";

/// Saves a trained cell supernet as `dir/cell_supernet.bpk` (weights, architecture weights
/// and batch-norm statistics) with `dir/cell_supernet.json` (`info`).
///
/// # Errors
/// I/O errors naming the file.
pub fn save_cell_supernet(
    dir: &Path,
    model: &SearchNetwork,
    info: &CellSupernetInfo,
) -> Result<()> {
    save_with_info(dir, NAME, "cell supernet", model.valid(), info)
}

/// Loads the cell supernet saved in `dir` by [`save_cell_supernet`] onto `device`, in
/// evaluation mode.
///
/// # Errors
/// A missing or unreadable file, `cell_supernet.json` that is not a cell supernet
/// description or describes impossible settings, or weights of another shape, each naming
/// the file.
pub fn load_cell_supernet(
    dir: &Path,
    device: &Device,
) -> Result<(SearchNetwork, CellSupernetInfo)> {
    let meta = dir.join(format!("{NAME}.json"));
    let info: CellSupernetInfo = read_info(dir, NAME, "cell supernet")?;
    info.config
        .check()
        .map_err(|e| NasError::format(&meta, e.to_string()))?;
    let plain = device.clone().without_autodiff();
    let shell = SearchNetwork::new(
        &info.config.network,
        &mut ParamInit::new(info.config.seed, &plain),
    )
    .map_err(|e| NasError::format(&meta, e.to_string()))?;
    let weights = dir.join(format!("{NAME}.bpk"));
    let model = load_weights(&weights, "cell supernet", shell)?.valid();
    Ok((model, info))
}
