//! `nas ofa`: Once-for-All on the inverted-residual space. Trains the elastic network by
//! progressive shrinking, measures a sample of subnets with its weights, fits an accuracy
//! predictor, and for every latency budget finds a subnet (an architecture and an image side)
//! by regularised evolution under the latency tables' prediction, then measures it (accuracy
//! and latency).

use std::fmt::Write as _;
use std::path::PathBuf;

use burn::prelude::*;
use clap::Args;
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{BatchLoader, split_indices};
use nasrs::latency::measure::processor_name;
use nasrs::latency::{LatencySettings, LatencyTable, Protocol, measure_network, on_timing_pool};
use nasrs::nn::elastic::{ElasticDims, smallest_arch};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, line_chart, scatter_chart};
use nasrs::search::Resumable;
use nasrs::search::ofa::{
    ElasticInfo, OfaConfig, OfaEpoch, OfaValidation, Schedule, save_elastic, score_subnet,
    specialise, train_ofa,
};
use nasrs::search::ofa_search::{
    BudgetResult, EvolutionConfig, MeasuredSubnet, PredictorQuality, RIDGE_LAMBDAS,
    ResolutionTables, RidgePredictor, Subnet, append_measured, assess_predictor, at_side,
    draw_subnets, encode, encoded, evolve, measure_subnets, read_measured, write_measured,
};
use nasrs::space::mobile::MobileSpace;
use nasrs::train::evaluate;
use nasrs::train::tensors::{batch_tensors, resize_images};
use serde_json::json;

use super::common::{
    DataArgs, DeviceArgs, check_resumed_config, clear_experiment, data_settings, eval_loader,
    refuse_existing_run, stream_seed,
};

/// Options of `nas ofa`.
#[derive(Args, Debug)]
pub struct OfaArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "runs/ofa")]
    output: PathBuf,
    /// Seed of everything random in the run. The held-out part is the one `nas spos` and a
    /// multi-trial search with the same seed, dataset, subset and valid portion hold out.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Progressive-shrinking schedule in TOML (`[[phase]]` tables with `dims`, `epochs`, `lr`);
    /// default: full (4 epochs, lr 0.05), +kernel (2, 0.02), +depth (2, 0.01), +width (2, 0.01).
    #[arg(long)]
    schedule: Option<PathBuf>,
    /// Multiplies every phase's epochs (rounded, at least 1).
    #[arg(long, default_value_t = 1.0)]
    epochs_scale: f64,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Weight of the distillation term after the first phase (0: cross-entropy only).
    #[arg(long, default_value_t = 1.0)]
    kd_weight: f64,
    /// Softmax temperature of the distillation term.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Fraction of the training split held out for validating subnets (never trained on).
    #[arg(long, default_value_t = 0.2)]
    valid_portion: f32,
    /// Image sides of elastic resolution, comma-separated (each batch is resized to one drawn
    /// uniformly, and the search picks one per subnet); default: the dataset's own side only.
    #[arg(long, value_delimiter = ',')]
    resolutions: Vec<usize>,
    /// Latency table of this space from `nas latency-table` (the search's constraint); one per
    /// resolution (`--image-size` of the table), the flag repeated.
    #[arg(long, required = true)]
    latency_table: Vec<PathBuf>,
    /// Latency budgets in milliseconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2.0,2.5,3.0")]
    budgets: Vec<f64>,
    /// Random subnets measured to fit the accuracy predictor (a fifth is held out to assess
    /// it).
    #[arg(long, default_value_t = 60)]
    predictor_samples: usize,
    /// Training batches on which batch-norm statistics are recomputed before a subnet is
    /// scored.
    #[arg(long, default_value_t = 20)]
    calibration_batches: usize,
    /// Population of the evolutionary search.
    #[arg(long, default_value_t = 50)]
    population: usize,
    /// Children made by the evolutionary search per budget.
    #[arg(long, default_value_t = 1000)]
    cycles: usize,
    /// Continue an interrupted run.
    #[arg(long)]
    resume: bool,
    /// Replace an existing run in the output directory.
    #[arg(long)]
    overwrite: bool,
}

/// What a run writes into its output directory (besides `checkpoint/`).
const RUN_FILES: &[&str] = &[
    "config.json",
    "epochs.jsonl",
    "elastic.bpk",
    "elastic.json",
    "predictor_samples.jsonl",
    "result.json",
    "training.svg",
    "budgets.svg",
    "summary.md",
];

/// What the search (after training and measuring) writes; a resumed run rewrites it.
const SEARCH_FILES: &[&str] = &["result.json", "budgets.svg", "summary.md"];

/// The settings (as `config.json` paths) a resumed run must share with the run it continues,
/// besides the training settings its checkpoint compares. The search's own settings (budgets,
/// population, cycles) are free: a finished run resumed with other budgets specialises the
/// trained network to them without training or measuring anything again. So is the number of
/// predictor samples: their draw is the same sequence whatever the count, so a larger count
/// measures only the subnets added at its end. So are the latency tables, measured again
/// (they drift) or for other threads: every subnet's latency is predicted anew.
const RESUMED_FIELDS: &[&str] = &[
    "/data",
    "/batch_size",
    "/valid_portion",
    "/calibration_batches",
];

pub fn run(args: OfaArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let plain = device.clone().without_autodiff();
    check_args(&args)?;
    let mut schedule = match &args.schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the schedule {}: {e}", path.display()))?;
            Schedule::from_toml_str(&text)
                .map_err(|e| anyhow::anyhow!("in the schedule {}: {e}", path.display()))?
        }
        None => Schedule::default(),
    };
    for phase in &mut schedule.phases {
        phase.epochs = ((phase.epochs as f64 * args.epochs_scale).round() as usize).max(1);
    }

    let prepared = args.data.prepare(stream_seed(args.seed, 1))?;
    let train = prepared.train.clone();
    if train.height != train.width {
        anyhow::bail!(
            "invalid setting `dataset`: the inverted-residual space needs square images, found \
             {}x{}",
            train.height,
            train.width
        );
    }
    let space = MobileSpace::cifar(train.channels, train.height, train.num_classes);
    let resolutions = if args.resolutions.is_empty() {
        vec![space.image_size]
    } else {
        args.resolutions.clone()
    };
    nasrs::search::ofa::check_resolutions(&resolutions, space.image_size)?;
    let loaded = args
        .latency_table
        .iter()
        .map(|path| Ok((path.display().to_string(), LatencyTable::load(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tables = ResolutionTables::new(&space, &resolutions, loaded).map_err(|e| {
        anyhow::anyhow!(
            "{e}; for {} measure one table per side with `nas latency-table --in-channels {} \
             --classes {} --image-size SIDE --output DIR`",
            args.data.dataset,
            space.in_channels,
            space.classes,
        )
    })?;
    let here = LatencySettings {
        device: nasrs::device::resolved_name(&args.device.device),
        processor: processor_name(),
        threads: tables.settings().threads,
        batch_size: tables.settings().batch_size,
    };
    for (path, table) in args.latency_table.iter().zip(tables.tables()) {
        let differences = table.mismatches(&here, &table.space);
        if !differences.is_empty() {
            tracing::warn!(
                table = %path.display(),
                "the latency table was measured on another machine: {}; its latencies may \
                 not hold here",
                differences.join(", ")
            );
        }
    }
    // Every budget must admit a subnet; found out now rather than after the training.
    let fastest = resolutions
        .iter()
        .map(|&resolution| {
            let subnet = Subnet {
                arch: smallest_arch(&space),
                resolution,
            };
            tables.predict(&subnet).map(|ms| (ms, resolution))
        })
        .collect::<nasrs::Result<Vec<_>>>()?
        .into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((least_ms, side)) = fastest
        && let Some(budget) = args.budgets.iter().find(|&&b| b < least_ms)
    {
        anyhow::bail!(
            "invalid setting `budgets`: {budget} ms is below the predicted latency of the \
             smallest subnet at its fastest side ({least_ms:.3} ms at {side}x{side}): no subnet \
             fits it"
        );
    }
    if let Some(last) = schedule.phases.last()
        && last.dims != ElasticDims::ALL
    {
        tracing::warn!(
            dims = %last.dims,
            "the schedule ends before every dimension is elastic: the predictor and the search \
             still draw subnets along all of them, including the ones never trained"
        );
    }
    let config = OfaConfig {
        kd_weight: args.kd_weight,
        temperature: args.temperature,
        resolutions: resolutions.clone(),
        ..OfaConfig::new(space.clone(), args.seed)
    };
    config.check(&schedule)?;

    let out = OutputDir::create(&args.output)?;
    let checkpoint = Checkpoint::in_run(out.root());
    refuse_existing_run(&out, &checkpoint, args.resume, args.overwrite)?;
    let described = json!({
        "command": "ofa",
        "seed": args.seed,
        "dataset": args.data.dataset.to_string(),
        "subset": args.data.subset,
        "data": data_settings(&args.data),
        "batch_size": args.batch_size,
        "valid_portion": args.valid_portion,
        "predictor_samples": args.predictor_samples,
        "calibration_batches": args.calibration_batches,
        "latency_table_files": args
            .latency_table
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
        "latency_tables_measured_at": tables
            .tables()
            .iter()
            .map(|t| t.measured_at)
            .collect::<Vec<_>>(),
        "latency_table": tables.settings(),
        "budgets_ms": args.budgets,
        "population": args.population,
        "cycles": args.cycles,
        "training": config,
        "schedule": schedule,
    });
    if args.resume {
        // The checkpoint compares the training settings; the data and search settings live
        // here.
        check_resumed_config(out.root(), &described, RESUMED_FIELDS, checkpoint.exists())?;
    } else {
        clear_experiment(out.root(), args.overwrite)?;
        for name in RUN_FILES {
            out.remove(name)?;
        }
        remove_subnet_files(&out)?;
    }
    let resume = args.resume && checkpoint.exists();
    if args.resume && !resume {
        tracing::info!("no checkpoint yet: the training starts from the beginning");
        out.remove("epochs.jsonl")?;
        out.remove("predictor_samples.jsonl")?;
    }
    checkpoint.prepare(resume, args.overwrite)?;
    if !resume {
        out.write_json("config.json", &described)?;
    }

    // The held-out part as in `nas spos`: prepared with stream 1, split with stream 2.
    let (train_part, valid_part) = split_indices(
        train.len(),
        1.0 - args.valid_portion,
        stream_seed(args.seed, 2),
    );
    if train_part.is_empty() || valid_part.is_empty() {
        anyhow::bail!(
            "the training split ({} images) is too small to hold out a validation part",
            train.len()
        );
    }
    let norm = prepared.normalization.clone();
    let mut loader = BatchLoader::new(
        train.clone(),
        train_part.clone(),
        args.batch_size,
        true,
        prepared.augment,
        norm.clone(),
        stream_seed(args.seed, 3),
    )?;
    let mut valid = eval_loader(&train, valid_part.clone(), 256, &norm)?;
    let calibration = calibration_batches(
        BatchLoader::new(
            train.clone(),
            train_part,
            args.batch_size,
            true,
            prepared.augment,
            norm.clone(),
            stream_seed(args.seed, 5),
        )?,
        args.calibration_batches,
        &plain,
    );
    if calibration.len() < args.calibration_batches {
        tracing::warn!(
            asked = args.calibration_batches,
            used = calibration.len(),
            "the training part holds fewer calibration batches than asked for: all of it is used"
        );
    }
    tracing::info!(
        train = loader.len(),
        held_out = valid.len(),
        calibration_batches = calibration.len(),
        "stage 1: progressive shrinking"
    );

    let resumable = Resumable { checkpoint, resume };
    let validation = OfaValidation {
        valid: &mut valid,
        calibration: &calibration,
    };
    let (network, records) = train_ofa(
        &config,
        &schedule,
        &mut loader,
        Some(validation),
        &device,
        Some(&resumable),
        |record| {
            out.append_jsonl("epochs.jsonl", record)?;
            Ok(())
        },
    )?;
    if resume {
        // The checkpoint accepted the training settings and the checks above the rest; what
        // differs (budgets, population, cycles, predictor samples) belongs to this run, whose
        // search replaces the earlier one's outputs.
        out.write_json("config.json", &described)?;
        for name in SEARCH_FILES {
            out.remove(name)?;
        }
        remove_subnet_files(&out)?;
    }
    // A kill between a checkpoint and its record can lose a line; the records are complete.
    out.remove("epochs.jsonl")?;
    for record in &records {
        out.append_jsonl("epochs.jsonl", record)?;
    }
    let info = ElasticInfo {
        config: config.clone(),
        schedule: schedule.clone(),
        dataset: args.data.dataset.to_string(),
        subset: args.data.subset,
        valid_portion: args.valid_portion,
        batch_size: args.batch_size,
        epochs: records.clone(),
    };
    save_elastic(out.root(), &network, &info)?;
    write_training_chart(&out, &records)?;
    let network = network.valid();

    tracing::info!(
        subnets = args.predictor_samples,
        "stage 2: measuring random subnets for the accuracy predictor"
    );
    let samples_path = out.path("predictor_samples.jsonl");
    let done = read_measured(&samples_path)?;
    if !done.is_empty() {
        tracing::info!(
            measured = done.len(),
            "skipping the subnets measured before"
        );
    }
    let subnets = draw_subnets(
        &space,
        &resolutions,
        args.predictor_samples,
        stream_seed(args.seed, 6),
    );
    let measured = measure_subnets(
        &space,
        &subnets,
        &done,
        Some(&tables),
        |subnet| {
            score_subnet(
                &network,
                &subnet.arch,
                subnet.resolution,
                &calibration,
                &mut valid,
                &plain,
            )
        },
        |m| append_measured(&samples_path, m),
    )?;
    // Subnets measured before with tables measured before: the file keeps every subnet it
    // holds (a smaller --predictor-samples uses fewer), each with the latency predicted now.
    let before = read_measured(&samples_path)?;
    let mut on_disk = before.clone();
    for m in &mut on_disk {
        let subnet = Subnet {
            arch: space.parse(&m.key)?,
            resolution: m.resolution,
        };
        m.predicted_latency_ms = Some(tables.predict(&subnet)?);
    }
    if on_disk != before {
        write_measured(&samples_path, &on_disk)?;
    }

    tracing::info!("stage 3: fitting the accuracy predictor");
    let quality = assess_predictor(&space, &resolutions, &measured, 0.2)?;
    tracing::info!(
        kendall_tau = quality.kendall_tau.map(|t| format!("{t:.3}")),
        rmse = format!("{:.4}", quality.rmse),
        held_out = quality.held_out,
        "predictor on held-out subnets"
    );
    // The search uses the predictor refitted to every measured subnet.
    let (xs, ys) = encoded(&space, &resolutions, &measured)?;
    let predictor = RidgePredictor::fit(&xs, &ys, &RIDGE_LAMBDAS)?;

    tracing::info!(budgets = ?args.budgets, "stage 4: evolutionary search per budget");
    let protocol = Protocol {
        warmup: 10,
        repeats: 30,
    };
    let mut test = eval_loader(
        &prepared.test,
        (0..prepared.test.len()).collect(),
        256,
        &norm,
    )?;
    let mut results = Vec::with_capacity(args.budgets.len());
    for (i, &budget_ms) in args.budgets.iter().enumerate() {
        let evolution = EvolutionConfig {
            population: args.population,
            sample: (args.population / 5).max(1),
            cycles: args.cycles,
            seed: stream_seed(args.seed, 10 + i as u64),
        };
        let found = match evolve(
            &space,
            &resolutions,
            &tables,
            budget_ms,
            |subnet| predictor.predict(&encode(&space, &resolutions, subnet)),
            &evolution,
        ) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(budget_ms, "no subnet for this budget: {e}");
                continue;
            }
        };
        let (arch, side) = (&found.subnet.arch, found.subnet.resolution);
        let specialised = specialise(&network, arch, side, &calibration)?;
        let score = |loader: &mut BatchLoader| {
            evaluate(loader, &plain, |x| {
                specialised.forward(resize_images(x, side))
            })
        };
        let measured_valid = score(&mut valid);
        let measured_test = score(&mut test);
        let weights = format!("subnet-{budget_ms}ms.bpk");
        let weights_path = out.path(&weights);
        specialised.save_file(&weights_path).map_err(|e| {
            anyhow::anyhow!("{}: cannot save weights: {e:?}", weights_path.display())
        })?;
        let sized = at_side(&space, side);
        // With the tables' thread count whatever --threads trained with, as tables are timed.
        let timing = on_timing_pool(tables.settings().threads, || {
            measure_network(
                &sized,
                arch,
                tables.settings().batch_size,
                protocol,
                &device,
            )
        })??;
        let cost = nasrs::cost::mobile_network(&sized, arch)?;
        let result = BudgetResult {
            budget_ms,
            key: space.key(arch),
            resolution: side,
            predicted_accuracy: found.predicted_accuracy,
            measured_accuracy: measured_valid.accuracy,
            test_accuracy: measured_test.accuracy,
            predicted_latency_ms: found.predicted_latency_ms,
            measured_latency_ms: timing.median_ms,
            params: cost.params,
            macs: cost.macs,
            scored: found.scored,
            weights,
        };
        tracing::info!(
            budget_ms,
            arch = %result.key,
            resolution = side,
            predicted_acc = format!("{:.4}", result.predicted_accuracy),
            measured_acc = format!("{:.4}", result.measured_accuracy),
            predicted_ms = format!("{:.3}", result.predicted_latency_ms),
            measured_ms = format!("{:.3}", result.measured_latency_ms),
            "subnet found"
        );
        results.push(result);
    }
    out.write_json(
        "result.json",
        &json!({
            "predictor": {
                "kind": "ridge regression on one-hot block choices and image side",
                "lambda": predictor.lambda,
                "held_out_quality": quality,
            },
            "budgets": results,
        }),
    )?;
    write_budget_chart(&out, &measured, &results)?;
    let md = summary(&args, &info, calibration.len(), &quality, &results, &tables);
    out.write_text("summary.md", &md)?;
    println!("{md}");
    Ok(())
}

/// Removes the specialised subnets (`subnet-*.bpk`) of an earlier run.
fn remove_subnet_files(out: &OutputDir) -> anyhow::Result<()> {
    let listing = std::fs::read_dir(out.root())
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", out.root().display()))?;
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("subnet-") && name.ends_with(".bpk") {
            out.remove(&name)?;
        }
    }
    Ok(())
}

/// Rejects settings that cannot run.
fn check_args(args: &OfaArgs) -> anyhow::Result<()> {
    if !(0.0 < args.valid_portion && args.valid_portion < 1.0) {
        anyhow::bail!(
            "invalid setting `valid_portion`: must be strictly between 0 and 1, found {}",
            args.valid_portion
        );
    }
    if args.batch_size == 0 {
        anyhow::bail!("invalid setting `batch_size`: must be at least 1, found 0");
    }
    if args.resume && args.overwrite {
        anyhow::bail!("invalid setting `resume`: --resume and --overwrite exclude each other");
    }
    if !(args.epochs_scale.is_finite() && args.epochs_scale > 0.0 && args.epochs_scale <= 1000.0) {
        anyhow::bail!(
            "invalid setting `epochs_scale`: must be positive and at most 1000, found {}",
            args.epochs_scale
        );
    }
    if args.predictor_samples < 5 {
        anyhow::bail!(
            "invalid setting `predictor_samples`: at least 5 subnets are needed to fit and \
             assess the predictor, found {}",
            args.predictor_samples
        );
    }
    if args.calibration_batches == 0 {
        anyhow::bail!(
            "invalid setting `calibration_batches`: at least 1 batch is needed to recompute \
             batch-norm statistics, found 0"
        );
    }
    if args.budgets.is_empty() || args.budgets.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
        anyhow::bail!(
            "invalid setting `budgets`: expected positive milliseconds separated by commas, \
             found {:?}",
            args.budgets
        );
    }
    let mut sorted = args.budgets.clone();
    sorted.sort_by(f64::total_cmp);
    if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!(
            "invalid setting `budgets`: {} ms is given twice; each budget gets one subnet and \
             one file",
            pair[0]
        );
    }
    if args.population == 0 {
        anyhow::bail!("invalid setting `population`: must be at least 1, found 0");
    }
    Ok(())
}

/// The first `count` batches of `loader` (fewer when it has fewer), as image tensors on the
/// plain `device`.
fn calibration_batches(mut loader: BatchLoader, count: usize, device: &Device) -> Vec<Tensor<4>> {
    loader
        .epoch()
        .take(count)
        .map(|batch| batch_tensors(&batch, device).0)
        .collect()
}

fn write_training_chart(out: &OutputDir, records: &[OfaEpoch]) -> anyhow::Result<()> {
    let points = |f: &dyn Fn(&OfaEpoch) -> Option<f64>| {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let series = [
        Series {
            name: "training loss",
            points: points(&|r| Some(r.train_loss)),
        },
        Series {
            name: "largest subnet, validation accuracy",
            points: points(&|r| r.largest_accuracy),
        },
        Series {
            name: "smallest subnet, validation accuracy",
            points: points(&|r| r.smallest_accuracy),
        },
    ];
    out.write_text(
        "training.svg",
        &line_chart("Progressive shrinking", "epoch", "loss / accuracy", &series),
    )?;
    Ok(())
}

fn write_budget_chart(
    out: &OutputDir,
    measured: &[MeasuredSubnet],
    results: &[BudgetResult],
) -> anyhow::Result<()> {
    let series = [
        Series {
            name: "random subnets (measured)",
            points: measured
                .iter()
                .filter_map(|m| m.predicted_latency_ms.map(|ms| (ms, m.accuracy)))
                .collect(),
        },
        Series {
            name: "found, predicted accuracy",
            points: results
                .iter()
                .map(|r| (r.predicted_latency_ms, r.predicted_accuracy))
                .collect(),
        },
        Series {
            name: "found, measured accuracy",
            points: results
                .iter()
                .map(|r| (r.predicted_latency_ms, r.measured_accuracy))
                .collect(),
        },
    ];
    out.write_text(
        "budgets.svg",
        &scatter_chart(
            "Subnets by predicted latency",
            "predicted latency (ms)",
            "held-out accuracy",
            &series,
            &[],
        ),
    )?;
    Ok(())
}

fn summary(
    args: &OfaArgs,
    info: &ElasticInfo,
    calibration_batches: usize,
    quality: &PredictorQuality,
    results: &[BudgetResult],
    tables: &ResolutionTables,
) -> String {
    let (config, schedule, records) = (&info.config, &info.schedule, &info.epochs);
    let mut md = String::new();
    let _ = writeln!(md, "# Once-for-All\n");
    let phases: Vec<String> = schedule
        .phases
        .iter()
        .map(|p| format!("{} ({} epochs, lr {})", p.name, p.epochs, p.lr))
        .collect();
    let _ = writeln!(
        md,
        "- elastic network on {} (batch {}, seed {}), phases: {}",
        args.data.dataset,
        args.batch_size,
        args.seed,
        phases.join(" -> ")
    );
    let _ = writeln!(
        md,
        "- distillation from the full network: weight {}, temperature {}",
        args.kd_weight, args.temperature
    );
    let sides: Vec<String> = config
        .resolutions
        .iter()
        .map(|r| format!("{r}x{r}"))
        .collect();
    let _ = writeln!(
        md,
        "- image sides (one drawn per batch, one chosen per subnet): {}",
        sides.join(", ")
    );
    if let Some(last) = records.last() {
        let (small, big) = (
            config.resolutions[0],
            config.resolutions[config.resolutions.len() - 1],
        );
        let pct = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
        let _ = writeln!(
            md,
            "- after training: largest subnet at {big}x{big}: {}, smallest subnet at \
             {small}x{small}: {} on the held-out part (batch norm recalibrated on {} training \
             batches)",
            pct(last.largest_accuracy),
            pct(last.smallest_accuracy),
            calibration_batches
        );
    }
    let _ = writeln!(
        md,
        "- {:.0} s of training in all",
        records.iter().map(|r| r.seconds).sum::<f64>()
    );
    let _ = writeln!(
        md,
        "- accuracy predictor: ridge regression (lambda {}) fitted to {} measured subnets; on \
         {} held-out ones Kendall tau {}, RMSE {:.4}",
        quality.lambda,
        quality.fitted,
        quality.held_out,
        quality
            .kendall_tau
            .map_or("undefined".to_string(), |t| format!("{t:.3}")),
        quality.rmse
    );
    let files: Vec<String> = args
        .latency_table
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(
        md,
        "- latency tables {} (threads: {}, batch size: {}); measured latency is the median of \
         30 runs here with the tables' thread count\n",
        files.join(", "),
        tables.settings().threads,
        tables.settings().batch_size
    );
    let _ = writeln!(
        md,
        "| budget (ms) | subnet | side | predicted acc | held-out acc | test acc | predicted ms \
         | measured ms | params | MMACs |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {:.2}% | {:.2}% | {:.2}% | {:.3} | {:.3} | {} | {:.2} |",
            r.budget_ms,
            r.key,
            r.resolution,
            100.0 * r.predicted_accuracy,
            100.0 * r.measured_accuracy,
            100.0 * r.test_accuracy,
            r.predicted_latency_ms,
            r.measured_latency_ms,
            r.params,
            r.macs as f64 / 1e6
        );
    }
    if results.len() < args.budgets.len() {
        let _ = writeln!(
            md,
            "\n{} budget(s) had no subnet (the log says why).",
            args.budgets.len() - results.len()
        );
    }
    md
}
