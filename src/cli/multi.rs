//! Multi-trial search from the command line: building the space, estimator, scoring and
//! strategy from flags, running an experiment, and writing what a person reads afterwards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use nasrs::data::split_indices;
use nasrs::latency::measure::processor_name;
use nasrs::latency::{LatencySettings, LatencyTable};
use nasrs::multi::experiment::{Experiment, ExperimentSpec, history_of};
use nasrs::multi::pareto::pareto_front;
use nasrs::multi::spaces::{ChainSpace, ChoiceSpace, DartsCellSpace, MobileChainSpace, Nb201Space};
use nasrs::multi::store::{Trial, TrialStatus};
use nasrs::multi::strategies::{
    LocalSearch, ParetoEvolution, PredictorConfig, PredictorSearch, RandomSearch,
    RegularizedEvolution,
};
use nasrs::multi::supernet::{Supernet, SupernetEstimator};
use nasrs::multi::tabular::{Nb201Dataset, TableEstimator, TableOptions};
use nasrs::multi::trained::{TrainedEstimator, TrainedSettings};
use nasrs::multi::trajectory::incumbents;
use nasrs::multi::{Constraint, Estimator, Objective, Scoring, Space, Strategy};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, line_chart, scatter_chart};
use nasrs::search::spos::load_supernet;
use nasrs::search::spos_cell::load_cell_supernet;
use nasrs::space::mobile::MobileSpace;

use super::common::{
    DataArgs, DeviceArgs, holds_epoch_run, holds_experiment, remove_run_files, stream_seed,
};

/// The file name of the NAS-Bench-201 table under a data directory.
const NB201_FILE: &str = "nats_bench_tss_200ep_test_acc.csv";

/// Search strategies: DARTS (differentiable, one network) or a multi-trial strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyKind {
    /// First-order DARTS on an image dataset (the default).
    Darts,
    /// Uniform draws without repeats.
    Random,
    /// Regularized (aging) evolution.
    Evolution,
    /// Hill climbing over single-gene changes with random restarts.
    Local,
    /// An MLP-ensemble predictor choosing among mutations of the best by an acquisition function.
    Predictor,
    /// NSGA-II-style evolution over several objectives; the result is the Pareto front.
    Pareto,
}

impl StrategyKind {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Darts => "darts",
            StrategyKind::Random => "random",
            StrategyKind::Evolution => "evolution",
            StrategyKind::Local => "local",
            StrategyKind::Predictor => "predictor",
            StrategyKind::Pareto => "pareto",
        }
    }
}

/// Settings of multi-trial search shared by `nas search --strategy ...` and `nas compare`.
#[derive(Args, Debug, Clone)]
pub struct MultiArgs {
    /// Search space of multi-trial strategies: nb201, darts (normal and reduction cells), chain
    /// (a chain of --layers layers, one DARTS operation each), mobile (ProxylessNAS's
    /// inverted-residual blocks), or choices:FILE (named choices in a JSON or TOML file).
    #[arg(long, default_value = "nb201")]
    pub space: String,
    /// How architectures are evaluated: nb201 (NAS-Bench-201 table lookup), table:FILE (a CSV
    /// of architecture key -> metrics), train (train each architecture's network on
    /// --dataset; darts and mobile spaces), or supernet:DIR (the weights of a supernet trained
    /// by `nas spos` into DIR, batch norm recalibrated; mobile or darts space, as trained).
    #[arg(long, default_value = "nb201")]
    pub estimator: String,
    /// Dataset of the NAS-Bench-201 table: cifar10, cifar100, imagenet16-120.
    #[arg(long, default_value = "cifar10")]
    pub benchmark: String,
    /// The NAS-Bench-201 CSV; by default nas-bench-201/nats_bench_tss_200ep_test_acc.csv under
    /// --data-dir.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Column holding the architecture keys of a table:FILE estimator.
    #[arg(long, default_value = "arch")]
    pub key_column: String,
    /// Number of evaluations (trials).
    #[arg(long, default_value_t = 100)]
    pub budget: usize,
    /// Objective, repeatable: NAME, max:NAME or min:NAME (costs such as params are minimised).
    /// The first one is what single-objective strategies optimise; default: the estimator's
    /// selection metric (validation accuracy when training, test accuracy for NAS-Bench-201).
    #[arg(long)]
    pub objective: Vec<String>,
    /// Constraint, repeatable: METRIC<=VALUE, e.g. params<=500000.
    #[arg(long)]
    pub constraint: Vec<String>,
    /// Population of evolution and Pareto evolution.
    #[arg(long, default_value_t = 20)]
    pub population: usize,
    /// Tournament size of evolution.
    #[arg(long, default_value_t = 5)]
    pub sample: usize,
    /// Uniform draws before the predictor's first fit.
    #[arg(long, default_value_t = 10)]
    pub initial: usize,
    /// Acquisition of the predictor: ei, ucb or ucb:KAPPA.
    #[arg(long, default_value = "ei")]
    pub acquisition: String,
    /// Layers of the chain space.
    #[arg(long, default_value_t = 8)]
    pub layers: usize,
    /// With --estimator train: stop a trial when validation accuracy has not improved for
    /// this many epochs.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Latency table from `nas latency-table` (with --space mobile --estimator train): adds
    /// the metric latency_ms, the predicted latency, for constraints and objectives.
    #[arg(long)]
    pub latency_table: Option<PathBuf>,
    /// With --estimator supernet:DIR: training batches that recompute each subnet's batch-norm
    /// statistics before it is evaluated (0: use the supernet's running statistics).
    #[arg(long, default_value_t = 50)]
    pub calibration_batches: usize,
    /// With --estimator train: fraction of the training split held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub valid_portion: f32,
}

/// Network and training budget of each trial of a trained estimator.
#[derive(Clone, Debug)]
pub struct TrialTraining {
    pub cells: usize,
    pub channels: usize,
    pub nodes: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
}

/// Builds the search space.
pub fn build_space(args: &MultiArgs, nodes: usize) -> anyhow::Result<Box<dyn Space>> {
    let space: Box<dyn Space> = match args.space.as_str() {
        "nb201" => Box::new(Nb201Space::new()),
        "darts" => Box::new(DartsCellSpace::new(nodes)?),
        "chain" => Box::new(ChainSpace::with_darts_ops(args.layers)?),
        // The block structure does not depend on the image size; the estimator sizes the
        // networks for the dataset.
        "mobile" => Box::new(MobileChainSpace::new(MobileSpace::cifar(3, 32, 10))?),
        other => match other.strip_prefix("choices:") {
            Some(path) => Box::new(ChoiceSpace::load(Path::new(path))?),
            None => anyhow::bail!(
                "invalid setting `space`: expected nb201, darts, chain, mobile or choices:FILE, \
                 found `{other}`"
            ),
        },
    };
    Ok(space)
}

/// The supernet `nas spos` saved in `dir`, of either space.
pub fn load_any_supernet(dir: &Path, device: &burn::prelude::Device) -> anyhow::Result<Supernet> {
    if dir.join("cell_supernet.json").is_file() {
        let (model, info) = load_cell_supernet(dir, device)?;
        return Ok(Supernet::Cell(Box::new(model), info));
    }
    if !dir.join("supernet.json").is_file() {
        anyhow::bail!(
            "invalid setting `estimator`: {} holds no supernet (supernet.json or \
             cell_supernet.json from `nas spos`)",
            dir.display()
        );
    }
    let (model, info) = load_supernet(dir, device)?;
    Ok(Supernet::Mobile(Box::new(model), info))
}

/// The estimator scoring architectures with the supernet trained in `dir`: on the data
/// it was trained with (dataset, subset and held-out part follow from its settings and seed).
fn supernet_estimator(
    args: &MultiArgs,
    space: &dyn Space,
    dir: &Path,
    data: &DataArgs,
    device: &DeviceArgs,
) -> anyhow::Result<SupernetEstimator> {
    let device_name = nasrs::device::resolved_name(&device.device);
    let device = device.device()?;
    let supernet = load_any_supernet(dir, &device)?;
    let mut probe = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let probe = nasrs::multi::space::sample(space, &mut probe);
    let fits = match &supernet {
        Supernet::Mobile(..) => space.mobile_blocks(&probe).is_some(),
        Supernet::Cell(..) => space.genotype(&probe).is_some(),
    };
    if !fits {
        let wanted = match &supernet {
            Supernet::Mobile(..) => "mobile",
            Supernet::Cell(..) => "darts",
        };
        anyhow::bail!(
            "invalid setting `estimator`: the supernet in {} scores --space {wanted}, but --space \
             is {}",
            dir.display(),
            args.space
        );
    }
    if let (Supernet::Cell(_, info), Some(genotype)) = (&supernet, space.genotype(&probe))
        && genotype.nodes() != info.config.network.nodes
    {
        anyhow::bail!(
            "invalid setting `nodes`: the supernet in {} has {} intermediate nodes per cell, \
             --nodes is {}",
            dir.display(),
            info.config.network.nodes,
            genotype.nodes()
        );
    }
    if supernet.dataset() != data.dataset.to_string() {
        anyhow::bail!(
            "invalid setting `dataset`: the supernet in {} was trained on {}, not {}",
            dir.display(),
            supernet.dataset(),
            data.dataset
        );
    }
    let (seed, subset, valid_portion) = supernet.data_settings();
    if data.subset.is_some() && data.subset != subset {
        anyhow::bail!(
            "invalid setting `subset`: the supernet in {} was trained on {}; its held-out part \
             follows from that, so leave --subset out",
            dir.display(),
            subset.map_or_else(
                || "the whole training split".to_string(),
                |n| format!("a subset of {n} images")
            )
        );
    }
    if args.valid_portion != valid_portion {
        tracing::warn!(
            supernet_valid_portion = valid_portion,
            valid_portion = args.valid_portion,
            "--valid-portion does not apply: subnets are validated on the part the supernet held \
             out"
        );
    }
    // The supernet's own data streams: the images it held out are the ones to validate on.
    let mut supernet_data = data.clone();
    supernet_data.subset = subset;
    let prepared = supernet_data.prepare(stream_seed(seed, 1))?;
    let (train_idx, valid_idx) = split_indices(
        prepared.train.len(),
        1.0 - valid_portion,
        stream_seed(seed, 2),
    );
    tracing::info!(
        supernet = %dir.display(),
        held_out = valid_idx.len(),
        calibration_batches = args.calibration_batches,
        "scoring subnets with the supernet's weights"
    );
    let estimator = SupernetEstimator::new(
        supernet,
        Arc::clone(&prepared.train),
        train_idx,
        valid_idx,
        prepared.normalization.clone(),
        prepared.augment,
        args.calibration_batches,
        device,
    )?;
    Ok(match &args.latency_table {
        Some(path) => {
            let table = LatencyTable::load(path)?;
            warn_if_foreign(&table, path, &device_name);
            estimator.with_latency_table(table)?
        }
        None => estimator,
    })
}

/// Builds the estimator for `space`.
pub fn build_estimator(
    args: &MultiArgs,
    space: &dyn Space,
    data: &DataArgs,
    device: &DeviceArgs,
    training: &TrialTraining,
    seed: u64,
) -> anyhow::Result<Box<dyn Estimator>> {
    let estimator: Box<dyn Estimator> = match args.estimator.as_str() {
        "nb201" => {
            if space.kind() != Nb201Space::new().kind() {
                anyhow::bail!(
                    "invalid setting `estimator`: the NAS-Bench-201 table holds nb201 cells, but \
                     --space is {}",
                    args.space
                );
            }
            let dataset: Nb201Dataset = args.benchmark.parse()?;
            let path = nb201_table(args, data)?;
            Box::new(TableEstimator::nb201(&path, dataset)?)
        }
        "train" => {
            let mut probe = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
            let probe = nasrs::multi::space::sample(space, &mut probe);
            if space.genotype(&probe).is_none() && space.mobile_blocks(&probe).is_none() {
                anyhow::bail!(
                    "invalid setting `estimator`: training builds networks from DARTS cells or \
                     inverted-residual chains, but --space is {}; use --space darts or mobile, \
                     or a table estimator",
                    args.space
                );
            }
            if args.latency_table.is_some() && space.mobile_blocks(&probe).is_none() {
                anyhow::bail!(
                    "invalid setting `latency_table`: latency tables cover the inverted-residual \
                     space; --space is {}",
                    args.space
                );
            }
            if !(0.0 < args.valid_portion && args.valid_portion < 1.0) {
                anyhow::bail!(
                    "invalid setting `valid_portion`: must be strictly between 0 and 1, found {}",
                    args.valid_portion
                );
            }
            let device_name = nasrs::device::resolved_name(&device.device);
            let device = device.device()?;
            let prepared = data.prepare(stream_seed(seed, 1))?;
            let (train_idx, valid_idx) = split_indices(
                prepared.train.len(),
                1.0 - args.valid_portion,
                stream_seed(seed, 2),
            );
            let settings = TrainedSettings {
                cells: training.cells,
                channels: training.channels,
                epochs: training.epochs,
                patience: args.patience,
                batch_size: training.batch_size,
                lr: training.lr,
            };
            let estimator = TrainedEstimator::new(
                settings,
                data.dataset.name(),
                Arc::clone(&prepared.train),
                train_idx,
                valid_idx,
                Arc::clone(&prepared.test),
                prepared.normalization.clone(),
                prepared.augment,
                device,
            )?;
            match &args.latency_table {
                Some(path) => {
                    let table = LatencyTable::load(path)?;
                    warn_if_foreign(&table, path, &device_name);
                    Box::new(estimator.with_latency_table(table)?)
                }
                None => Box::new(estimator),
            }
        }
        other if other.starts_with("supernet:") => {
            let dir = Path::new(&other["supernet:".len()..]);
            Box::new(supernet_estimator(args, space, dir, data, device)?)
        }
        _ if args.latency_table.is_some() => anyhow::bail!(
            "invalid setting `latency_table`: latency comes with --estimator train or supernet:DIR \
             on --space mobile"
        ),
        other => match other.strip_prefix("table:") {
            Some(path) => {
                let options = TableOptions {
                    key_column: args.key_column.clone(),
                    selection: None,
                };
                Box::new(TableEstimator::from_csv(Path::new(path), space, &options)?)
            }
            None => anyhow::bail!(
                "invalid setting `estimator`: expected nb201, table:FILE, train or supernet:DIR, \
                 found `{other}`"
            ),
        },
    };
    Ok(estimator)
}

/// Warns when `table` was measured on another device or processor than this process runs on.
fn warn_if_foreign(table: &LatencyTable, path: &Path, device: &str) {
    let here = LatencySettings {
        device: device.to_string(),
        processor: processor_name(),
        threads: table.settings.threads,
        batch_size: table.settings.batch_size,
    };
    let differences = table.mismatches(&here, &table.space);
    if !differences.is_empty() {
        tracing::warn!(
            table = %path.display(),
            "the latency table was measured under other settings: {}",
            differences.join(", ")
        );
    }
}

/// Where the NAS-Bench-201 table is: --table, or under --data-dir.
fn nb201_table(args: &MultiArgs, data: &DataArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.table {
        return Ok(path.clone());
    }
    let Some(dir) = &data.data_dir else {
        anyhow::bail!(
            "the NAS-Bench-201 table is needed: pass --table FILE, or --data-dir DIR with \
             nas-bench-201/{NB201_FILE} under it"
        );
    };
    let candidates = [
        dir.join("nas-bench-201").join(NB201_FILE),
        dir.join(NB201_FILE),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "dataset nas-bench-201 not found: looked for {} and {}",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// Objectives and constraints from the flags, the estimator's selection metric by default.
pub fn build_scoring(args: &MultiArgs, estimator: &dyn Estimator) -> anyhow::Result<Scoring> {
    let mut objectives = args
        .objective
        .iter()
        .map(|o| o.parse::<Objective>())
        .collect::<nasrs::Result<Vec<_>>>()?;
    if objectives.is_empty() {
        objectives.push(estimator.selection_metric().0.parse()?);
    }
    let metrics = estimator.metrics();
    let constraints = args
        .constraint
        .iter()
        .map(|c| c.parse::<Constraint>())
        .collect::<nasrs::Result<Vec<_>>>()?;
    let named = objectives
        .iter()
        .map(|o| ("objective", &o.metric))
        .chain(constraints.iter().map(|c| ("constraint", &c.metric)));
    for (field, name) in named {
        if !metrics.contains(name) {
            anyhow::bail!(
                "invalid setting `{field}`: the estimator reports no metric `{name}`; it reports \
                 {}",
                metrics.join(", ")
            );
        }
    }
    Ok(Scoring {
        objectives,
        constraints,
    })
}

/// The strategy `kind` with the settings of `args`, seeded by `seed`.
pub fn build_strategy(
    kind: StrategyKind,
    args: &MultiArgs,
    seed: u64,
) -> anyhow::Result<Box<dyn Strategy>> {
    Ok(match kind {
        StrategyKind::Darts => anyhow::bail!("DARTS is not a multi-trial strategy"),
        StrategyKind::Random => Box::new(RandomSearch::new(seed)),
        StrategyKind::Evolution => Box::new(RegularizedEvolution::new(
            args.population,
            args.sample,
            seed,
        )?),
        StrategyKind::Local => Box::new(LocalSearch::new(seed)),
        StrategyKind::Predictor => {
            let config = PredictorConfig {
                initial: args.initial,
                acquisition: args.acquisition.parse()?,
                ..PredictorConfig::default()
            };
            Box::new(PredictorSearch::new(config, seed)?)
        }
        StrategyKind::Pareto => Box::new(ParetoEvolution::new(args.population, seed)?),
    })
}

/// The strategy's own seed, a stream of the run seed distinct from data and trial seeds.
pub fn strategy_seed(seed: u64) -> u64 {
    stream_seed(seed, 10)
}

/// Options of one multi-trial search run.
pub struct MultiRun<'a> {
    pub kind: StrategyKind,
    pub args: &'a MultiArgs,
    pub data: &'a DataArgs,
    pub device: &'a DeviceArgs,
    pub training: TrialTraining,
    pub seed: u64,
    pub output: &'a Path,
    pub workers: usize,
    pub resume: bool,
    pub overwrite: bool,
}

/// Runs (or resumes) a multi-trial search and writes its report.
pub fn run_search(run: MultiRun<'_>) -> anyhow::Result<()> {
    let args = run.args;
    let space = build_space(args, run.training.nodes)?;
    let estimator = build_estimator(
        args,
        space.as_ref(),
        run.data,
        run.device,
        &run.training,
        run.seed,
    )?;
    let scoring = build_scoring(args, estimator.as_ref())?;
    if run.kind == StrategyKind::Pareto && scoring.objectives.len() < 2 {
        anyhow::bail!(
            "invalid setting `objective`: the pareto strategy needs at least two, e.g. \
             --objective test_accuracy --objective params"
        );
    }
    let strategy = build_strategy(run.kind, args, strategy_seed(run.seed))?;
    let out = OutputDir::create(run.output)?;
    let root = out.root();
    if run.resume {
        if !holds_experiment(root) {
            let what = if holds_epoch_run(root) {
                "holds a DARTS search or training run, not a multi-trial experiment"
            } else {
                "holds no experiment to resume"
            };
            anyhow::bail!("invalid setting `resume`: {} {what}", root.display());
        }
    } else if holds_experiment(root) || holds_epoch_run(root) {
        if !run.overwrite {
            anyhow::bail!(
                "invalid setting `output`: {} holds a run: pass --resume to continue an \
                 experiment (or to add a worker process to it), --overwrite to replace it, or \
                 choose another --output",
                root.display()
            );
        }
        tracing::warn!(dir = %root.display(), "replacing the run in this directory");
        remove_run_files(root)?;
    }
    let spec = ExperimentSpec {
        space: space.as_ref(),
        estimator: estimator.as_ref(),
        strategy,
        scoring: scoring.clone(),
        budget: args.budget,
        seed: run.seed,
    };
    // Resuming also completes a store whose creation was interrupted.
    let experiment = if run.resume {
        Experiment::open_or_create(out.root(), spec)?
    } else {
        Experiment::create(out.root(), spec)?
    };
    out.write_json(
        "config.json",
        &serde_json::json!({
            "command": "search",
            "nasrs_version": env!("CARGO_PKG_VERSION"),
            "strategy": run.kind.name(),
            "seed": run.seed,
            "workers": run.workers,
            "experiment": experiment.config(),
        }),
    )?;
    tracing::info!(
        strategy = run.kind.name(),
        space = space.kind(),
        budget = args.budget,
        estimator = %estimator.describe(),
        "multi-trial search"
    );
    let summary = experiment.run(run.workers)?;
    let trials = experiment.trials()?;
    write_report(
        &out,
        run.kind,
        space.as_ref(),
        estimator.as_ref(),
        &scoring,
        &trials,
        run.seed,
        args.budget,
    )?;
    if summary.exhausted {
        tracing::info!("the strategy found no unseen architecture to propose: search ended early");
    }
    Ok(())
}

/// The metric reported for an incumbent: the test metric when selection is by another one.
fn report_metric(estimator: &dyn Estimator, scoring: &Scoring) -> String {
    let metrics = estimator.metrics();
    if metrics.iter().any(|m| m == "test_accuracy") {
        "test_accuracy".to_string()
    } else {
        scoring.objectives[0].metric.clone()
    }
}

/// Writes trials.csv, trajectory.csv/.svg, the Pareto front for several objectives, the best
/// genotype for cell spaces, and summary.md; prints the summary.
#[allow(clippy::too_many_arguments)]
fn write_report(
    out: &OutputDir,
    kind: StrategyKind,
    space: &dyn Space,
    estimator: &dyn Estimator,
    scoring: &Scoring,
    trials: &[Trial],
    seed: u64,
    budget: usize,
) -> anyhow::Result<()> {
    let metrics = estimator.metrics();
    // Cost columns carry a prefix: estimators may report metrics named `epochs` or `seconds`.
    let mut csv = String::from("id,status,key,seed,cost_seconds,cost_epochs");
    for m in &metrics {
        let _ = write!(csv, ",{m}");
    }
    csv.push_str(",error\n");
    for t in trials {
        let _ = write!(
            csv,
            "{},{},{},{},{},{}",
            t.id,
            t.status,
            csv_field(&t.key),
            t.seed,
            t.seconds.map(|s| format!("{s:.3}")).unwrap_or_default(),
            t.epochs.map(|e| e.to_string()).unwrap_or_default()
        );
        for m in &metrics {
            let v = t.metrics.as_ref().and_then(|x| x.get(m));
            let _ = write!(csv, ",{}", v.map(|v| v.to_string()).unwrap_or_default());
        }
        let _ = writeln!(csv, ",{}", csv_field(t.error.as_deref().unwrap_or("")));
    }
    out.write_text("trials.csv", &csv)?;

    let history = history_of(trials);
    let reported = report_metric(estimator, scoring);
    let first = &scoring.objectives[0];
    let curve = incumbents(&history, &reported);
    let mut traj = format!("evaluations,best_{},{reported},key\n", first.metric);
    for p in &curve {
        let _ = writeln!(
            traj,
            "{},{},{},{}",
            p.evaluations,
            p.fitness
                .map(|f| first.oriented(f).to_string())
                .unwrap_or_default(),
            p.reported.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(p.key.as_deref().unwrap_or(""))
        );
    }
    out.write_text("trajectory.csv", &traj)?;
    out.write_json("trajectory.json", &curve)?;
    let best_points: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|p| p.fitness.map(|f| (p.evaluations as f64, first.oriented(f))))
        .collect();
    let mut series = vec![Series {
        name: &first.metric,
        points: best_points,
    }];
    let reported_points: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|p| p.reported.map(|v| (p.evaluations as f64, v)))
        .collect();
    let reported_name = format!("{reported} of incumbent");
    if reported != first.metric {
        series.push(Series {
            name: &reported_name,
            points: reported_points,
        });
    }
    out.write_text(
        "trajectory.svg",
        &line_chart(
            &format!("{}: best so far", kind.name()),
            "evaluations",
            &first.metric,
            &series,
        ),
    )?;

    let done: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Done && t.score.is_some())
        .collect();
    let failed = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Failed)
        .count();
    let mut md = String::new();
    let _ = writeln!(md, "# Multi-trial search: {}\n", kind.name());
    let _ = writeln!(
        md,
        "- space: {} ({} genes)",
        space.kind(),
        space.genes().len()
    );
    let _ = writeln!(md, "- estimator: {}", estimator.describe());
    let objectives: Vec<String> = scoring.objectives.iter().map(|o| o.to_string()).collect();
    let _ = writeln!(md, "- objectives: {}", objectives.join(", "));
    if !scoring.constraints.is_empty() {
        let c: Vec<String> = scoring.constraints.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(md, "- constraints: {}", c.join(", "));
    }
    let _ = writeln!(md, "- seed: {seed}");
    let _ = writeln!(
        md,
        "- trials: {} done, {failed} failed, {} in all",
        done.len(),
        trials.len()
    );
    let total_seconds: f64 = trials.iter().filter_map(|t| t.seconds).sum();
    let _ = writeln!(md, "- evaluation time: {total_seconds:.1} s");
    if estimator.selection_metric().1 && first.metric == estimator.selection_metric().0 {
        let _ = writeln!(
            md,
            "- note: selection is by the test metric (the table holds no validation metric), \
             an oracle setting: these numbers are not a held-out estimate"
        );
    }
    md.push('\n');

    if let Some(best) = history.best() {
        let _ = writeln!(md, "## Best architecture\n\n`{}`\n", best.key);
        if let Some(m) = &best.metrics {
            for (k, v) in m {
                let _ = writeln!(md, "- {k}: {v}");
            }
        }
        if let Some(genotype) = space.genotype(&best.arch) {
            out.write_text(
                "best_genotype.json",
                &format!("{}\n", genotype.to_json_string()),
            )?;
            out.write_text(
                "best_genotype.txt",
                &format!("{}\n", genotype.to_darts_text()),
            )?;
            let _ = writeln!(
                md,
                "\nThe cell is in best_genotype.json; `nas train --genotype {}` trains it.",
                out.path("best_genotype.json").display()
            );
        }
        md.push('\n');
    } else {
        let why = if done.is_empty() {
            "no trial succeeded (see the errors in trials.csv)"
        } else {
            "no successful trial satisfies the constraints"
        };
        let _ = writeln!(md, "## Best architecture\n\nNone: {why}.\n");
    }
    if trials.len() < budget {
        let _ = writeln!(
            md,
            "The strategy found no unseen architecture after {} trials of a budget of {budget}: \
             the space (or the part of it the strategy explores) is exhausted.\n",
            trials.len()
        );
    }

    if scoring.objectives.len() >= 2 {
        let points: Vec<Vec<f64>> = done
            .iter()
            .map(|t| t.score.as_ref().expect("done").values.clone())
            .collect();
        let feasible: Vec<usize> = (0..done.len())
            .filter(|&i| done[i].score.as_ref().expect("done").feasible)
            .collect();
        let feasible_points: Vec<Vec<f64>> = feasible.iter().map(|&i| points[i].clone()).collect();
        let mut front: Vec<usize> = pareto_front(&feasible_points)
            .into_iter()
            .map(|k| feasible[k])
            .collect();
        let (a, b) = (&scoring.objectives[0], &scoring.objectives[1]);
        let natural = |i: usize, k: usize, o: &Objective| o.oriented(points[i][k]);
        front.sort_by(|&x, &y| natural(x, 1, b).total_cmp(&natural(y, 1, b)));
        let mut pcsv = String::from("id,key");
        for o in &scoring.objectives {
            let _ = write!(pcsv, ",{}", o.metric);
        }
        pcsv.push('\n');
        let _ = writeln!(md, "## Pareto front ({} architectures)\n", front.len());
        let _ = writeln!(md, "| {} | {} | key |\n|---|---|---|", a.metric, b.metric);
        for &i in &front {
            let _ = write!(pcsv, "{},{}", done[i].id, csv_field(&done[i].key));
            for (k, o) in scoring.objectives.iter().enumerate() {
                let _ = write!(pcsv, ",{}", natural(i, k, o));
            }
            pcsv.push('\n');
            let _ = writeln!(
                md,
                "| {} | {} | `{}` |",
                natural(i, 0, a),
                natural(i, 1, b),
                done[i].key
            );
        }
        out.write_text("pareto.csv", &pcsv)?;
        let all: Vec<(f64, f64)> = (0..done.len())
            .map(|i| (natural(i, 1, b), natural(i, 0, a)))
            .collect();
        let front_points: Vec<(f64, f64)> = front
            .iter()
            .map(|&i| (natural(i, 1, b), natural(i, 0, a)))
            .collect();
        out.write_text(
            "pareto.svg",
            &scatter_chart(
                "evaluated architectures and the Pareto front",
                &b.metric,
                &a.metric,
                &[
                    Series {
                        name: "evaluated",
                        points: all,
                    },
                    Series {
                        name: "Pareto front",
                        points: front_points,
                    },
                ],
                &[1],
            ),
        )?;
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Files: trials.csv (every trial), trajectory.csv, trajectory.json and trajectory.svg (best \
         so far against evaluations){}, experiment.sqlite (the store; `nas trials {}` lists it).",
        if scoring.objectives.len() >= 2 {
            ", pareto.csv and pareto.svg"
        } else {
            ""
        },
        out.root().display()
    );
    out.write_text("summary.md", &md)?;
    println!("{md}");
    Ok(())
}

/// Quotes a CSV field when it holds a comma, quote or line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
