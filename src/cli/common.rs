//! Options shared by the subcommands that read data and use a device.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use burn::prelude::Device;
use clap::Args;
use nasrs::data::{self, Augment, BatchLoader, Dataset, DatasetKind, Normalization, Splits};

/// Where the data comes from and how it is prepared.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset: digits (built in), mnist, fashion-mnist, cifar10.
    #[arg(long, default_value = "digits")]
    pub dataset: DatasetKind,
    /// Directory holding the dataset files (CIFAR-10 binary batches, MNIST IDX files).
    /// Fashion-MNIST defaults to /usr/share/datasets/fashion-mnist.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use a seeded random subset of this many training images.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Cutout side in pixels applied to training images (0: off).
    #[arg(long, default_value_t = 0)]
    pub cutout: usize,
    /// Disable random crop and flip on CIFAR-10.
    #[arg(long)]
    pub no_augment: bool,
}

/// Device and threads.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Compute device: auto, flex (CPU), cuda, cuda:N, wgpu (GPU backends need the cargo
    /// feature of the same name).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads of the flex backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl DeviceArgs {
    /// Sizes the thread pool and returns the device.
    pub fn device(&self) -> anyhow::Result<Device> {
        if let Some(threads) = self.threads {
            nasrs::device::set_threads(threads)?;
        }
        Ok(nasrs::device::select(&self.device)?)
    }
}

/// The loaded splits with the subset applied and the normalisation to use.
pub struct PreparedData {
    /// Training split (after `--subset`).
    pub train: Arc<Dataset>,
    /// Test split.
    pub test: Arc<Dataset>,
    /// Per-channel normalisation.
    pub normalization: Normalization,
    /// Augmentation of training batches.
    pub augment: Augment,
}

impl DataArgs {
    /// Loads the dataset and applies `--subset`.
    pub fn prepare(&self, seed: u64) -> anyhow::Result<PreparedData> {
        let Splits { train, test } = data::load(self.dataset, self.data_dir.as_deref())
            .with_context(|| format!("loading {}", self.dataset))?;
        let train = match self.subset {
            Some(size) => {
                let indices = data::subset_indices(&train, Some(size), seed)?;
                train.subset(&indices)
            }
            None => train,
        };
        let normalization = Normalization::known(self.dataset)
            .unwrap_or_else(|| Normalization::from_dataset(&train));
        let mut augment = if self.dataset == DatasetKind::Cifar10 && !self.no_augment {
            Augment::cifar()
        } else {
            Augment::none()
        };
        let side = train.height.min(train.width);
        if self.cutout > side {
            anyhow::bail!(
                "invalid setting `cutout`: must be at most the image side ({side} pixels for {}), \
                 found {}",
                self.dataset,
                self.cutout
            );
        }
        augment.cutout = self.cutout;
        tracing::info!(
            dataset = %self.dataset,
            train = train.len(),
            test = test.len(),
            shape = format!("{}x{}x{}", train.channels, train.height, train.width),
            "data ready"
        );
        Ok(PreparedData {
            train: Arc::new(train),
            test: Arc::new(test),
            normalization,
            augment,
        })
    }
}

/// An in-order, unaugmented loader over all of `data`.
pub fn eval_loader(
    data: &Arc<Dataset>,
    indices: Vec<usize>,
    batch: usize,
    norm: &Normalization,
) -> anyhow::Result<BatchLoader> {
    Ok(BatchLoader::new(
        data.clone(),
        indices,
        batch,
        false,
        Augment::none(),
        norm.clone(),
        0,
    )?)
}

/// Mixes a stream number into the run seed, so independent random streams (initialisation,
/// training order, validation order) all follow from the one seed.
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    // SplitMix64 finaliser: distinct streams get unrelated seeds.
    let mut z = seed.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a multi-trial experiment writes into its output directory.
pub const EXPERIMENT_FILES: &[&str] = &[
    "experiment.sqlite",
    "experiment.sqlite-wal",
    "experiment.sqlite-shm",
    "config.json",
    "trials.csv",
    "trajectory.csv",
    "trajectory.json",
    "trajectory.svg",
    "pareto.csv",
    "pareto.svg",
    "best_genotype.json",
    "best_genotype.txt",
    "summary.md",
];

/// What a DARTS search or a training run writes into its output directory (besides the
/// `checkpoint` folder).
pub const EPOCH_RUN_FILES: &[&str] = &[
    "config.json",
    "epochs.jsonl",
    "genotype.json",
    "genotype.txt",
    "model.bpk",
    "summary.md",
    "report.html",
    "loss.svg",
    "accuracy.svg",
    "parameter_free.svg",
    "alpha_normal.svg",
    "alpha_reduce.svg",
];

/// Whether `dir` holds a multi-trial experiment.
pub fn holds_experiment(dir: &std::path::Path) -> bool {
    dir.join("experiment.sqlite").exists()
}

/// Whether `dir` holds a DARTS search or a training run.
pub fn holds_epoch_run(dir: &std::path::Path) -> bool {
    dir.join("checkpoint").exists() || dir.join("epochs.jsonl").exists()
}

/// Removes the files of a run of either kind from `dir` (and nothing else), so that a replaced
/// run leaves no stale result beside the new one.
pub fn remove_run_files(dir: &std::path::Path) -> anyhow::Result<()> {
    for name in EXPERIMENT_FILES.iter().chain(EPOCH_RUN_FILES) {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for name in ["checkpoint", "checkpoint.old", "checkpoint.tmp"] {
        let path = dir.join(name);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Before a run with per-epoch checkpoints starts in `out`: refuses a directory that holds one
/// (a checkpoint or epoch records) unless `resume` continues it or `overwrite` replaces it.
pub fn refuse_existing_run(
    out: &nasrs::report::OutputDir,
    checkpoint: &nasrs::checkpoint::Checkpoint,
    resume: bool,
    overwrite: bool,
) -> anyhow::Result<()> {
    let holds_run = checkpoint.exists() || out.path("epochs.jsonl").exists();
    if !resume && !overwrite && holds_run {
        anyhow::bail!(
            "invalid setting `output`: {} holds a run: pass --resume to continue it, \
             --overwrite to replace it, or choose another --output",
            out.root().display()
        );
    }
    Ok(())
}

/// Before a DARTS search or a training run starts in `dir`: refuses a directory holding a
/// multi-trial experiment unless `overwrite` is set, in which case that experiment's files go.
pub fn clear_experiment(dir: &std::path::Path, overwrite: bool) -> anyhow::Result<()> {
    if !holds_experiment(dir) {
        return Ok(());
    }
    if !overwrite {
        anyhow::bail!(
            "invalid setting `output`: {} holds a multi-trial experiment: pass --overwrite to \
             replace it, or choose another --output",
            dir.display()
        );
    }
    remove_run_files(dir)
}

/// The data settings of a run as `config.json` records them, for comparing on resume.
pub fn data_settings(data: &DataArgs) -> serde_json::Value {
    serde_json::json!({
        "dataset": data.dataset.to_string(),
        "data_dir": data.data_dir,
        "subset": data.subset,
        "cutout": data.cutout,
        "no_augment": data.no_augment,
    })
}

/// Before resuming the run in `dir`: fails unless its `config.json` holds the same value as
/// `current` for every field of `fields` (the settings a checkpoint does not compare itself).
/// A run with a checkpoint but no readable `config.json` is refused: it cannot be checked.
pub fn check_resumed_config(
    dir: &std::path::Path,
    current: &serde_json::Value,
    fields: &[&str],
    has_checkpoint: bool,
) -> anyhow::Result<()> {
    let path = dir.join("config.json");
    let saved = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not the run's configuration ({e}); the run cannot be resumed safely, pass \
                 --overwrite to start again",
                path.display()
            )
        })?,
        Err(_) if !has_checkpoint => return Ok(()),
        Err(e) => anyhow::bail!(
            "{}: cannot read the run's configuration ({e}); the run cannot be resumed safely, \
             pass --overwrite to start again",
            path.display()
        ),
    };
    for field in fields {
        let (was, now) = (saved.pointer(field), current.pointer(field));
        if was != now {
            let show = |v: Option<&serde_json::Value>| {
                v.map_or_else(|| "nothing".to_string(), |v| v.to_string())
            };
            anyhow::bail!(
                "invalid setting `{}`: the run in {} was started with {}, not {}",
                field.trim_start_matches('/').replace('/', "."),
                dir.display(),
                show(was),
                show(now)
            );
        }
    }
    Ok(())
}
