//! `nas proxyless`: a ProxylessNAS search over the inverted-residual space with a latency
//! target, the found architecture's measured latency, and an optional retraining from scratch.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{BatchLoader, split_indices};
use nasrs::latency::measure::processor_name;
use nasrs::latency::{
    LatencySettings, LatencyTable, Protocol, measure_network, measure_table, on_timing_pool,
};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, heatmap, line_chart};
use nasrs::search::Resumable;
use nasrs::search::proxyless::{
    LatencyLoss, ProxylessConfig, ProxylessData, ProxylessEpoch, search,
};
use nasrs::space::mobile::{BlockChoice, MobileSpace};
use nasrs::train::mobile_trainer::{MobileTrainConfig, MobileTrainEpoch, train_mobile};
use serde_json::json;

use super::common::{
    DataArgs, DeviceArgs, clear_experiment, eval_loader, refuse_existing_run, stream_seed,
};

/// The form of the latency term.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LossForm {
    /// `CE * (log E / log T)^beta` (ProxylessNAS's mobile setting).
    MulLog,
    /// `CE + lambda * (E - T) / T`.
    Add,
    /// `CE + lambda * max(0, E - T) / T`: no pull below the target.
    Hinge,
}

/// Options of `nas proxyless`.
#[derive(Args, Debug)]
pub struct ProxylessArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "runs/proxyless")]
    output: PathBuf,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latency table from `nas latency-table`; without one, a table is measured first (batch
    /// 1, with the current thread count) and saved in the output directory.
    #[arg(long)]
    latency_table: Option<PathBuf>,
    /// Latency target in milliseconds (per forward pass at the table's batch size). Without
    /// one, the search optimises accuracy alone.
    #[arg(long)]
    target_ms: Option<f64>,
    /// How the expected latency enters the loss. The multiplicative form takes the same
    /// architecture steps whatever the target; the additive one pulls below it too; the hinge
    /// pulls only while the expected latency is over the target.
    #[arg(long, value_enum, default_value_t = LossForm::Hinge)]
    latency_loss: LossForm,
    /// Exponent of the multiplicative-log form.
    #[arg(long, default_value_t = 0.6)]
    beta: f64,
    /// Weight of the additive and hinge forms.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Search epochs over the weight part of the data.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Epochs that train weights only, before the architecture starts to move.
    #[arg(long, default_value_t = 1)]
    warmup_epochs: usize,
    /// Batch size of both the weight and the architecture steps.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Weight learning rate (cosine per batch to --lr-min).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Final weight learning rate.
    #[arg(long, default_value_t = 0.0)]
    lr_min: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 4e-5)]
    weight_decay: f64,
    /// Global gradient-norm clip of the weights.
    #[arg(long, default_value_t = 5.0)]
    grad_clip: f64,
    /// Adam learning rate of the architecture logits.
    #[arg(long, default_value_t = 6e-3)]
    arch_lr: f64,
    /// Fraction of the training split for the weights; the rest trains the architecture.
    #[arg(long, default_value_t = 0.5)]
    train_portion: f32,
    /// After the search, train the found architecture from scratch on the whole training
    /// split for this many epochs and report its test accuracy (0: skip).
    #[arg(long, default_value_t = 0)]
    retrain_epochs: usize,
    /// Learning rate of the retraining.
    #[arg(long, default_value_t = 0.05)]
    retrain_lr: f64,
    /// Continue an interrupted search from its checkpoint.
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
    "result.json",
    "summary.md",
    "architecture.txt",
    "probabilities.svg",
    "latency.svg",
    "retrain.jsonl",
    "latency_table.json",
];

/// Refuses to resume a run with another batch size, train portion or latency table than it
/// started with (the search checkpoint checks the search settings).
fn check_resumed_settings(
    out: &OutputDir,
    args: &ProxylessArgs,
    table_file: &str,
    table: Option<&LatencyTable>,
) -> anyhow::Result<()> {
    let path = out.path("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        anyhow::bail!(
            "invalid setting `resume`: {} holds no run to resume (no config.json)",
            out.root().display()
        );
    };
    let saved: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run configuration", path.display()))?;
    let mut changed = Vec::new();
    if saved["batch_size"].as_u64() != Some(args.batch_size as u64) {
        changed.push(format!("batch_size (was {})", saved["batch_size"]));
    }
    if saved["train_portion"].as_f64().map(|v| v as f32) != Some(args.train_portion) {
        changed.push(format!("train_portion (was {})", saved["train_portion"]));
    }
    // The same table is the same measurement, wherever the path points from.
    let _ = table_file;
    if table.map(|t| t.measured_at) != saved["latency_table_measured_at"].as_u64() {
        changed.push(format!(
            "latency table (was {} measured at {})",
            saved["latency_table_file"], saved["latency_table_measured_at"]
        ));
    }
    if saved["retrain_epochs"].as_u64() != Some(args.retrain_epochs as u64) {
        changed.push(format!("retrain_epochs (was {})", saved["retrain_epochs"]));
    }
    if saved["retrain_lr"].as_f64() != Some(args.retrain_lr) {
        changed.push(format!("retrain_lr (was {})", saved["retrain_lr"]));
    }
    if !changed.is_empty() {
        anyhow::bail!(
            "invalid setting `resume`: the run in {} was started with other settings: {}",
            out.root().display(),
            changed.join(", ")
        );
    }
    Ok(())
}

pub fn run(args: ProxylessArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let prepared = args.data.prepare(stream_seed(args.seed, 1))?;
    let train = prepared.train.clone();
    let space = MobileSpace::cifar(train.channels, train.height, train.num_classes);
    if train.height != train.width {
        anyhow::bail!(
            "invalid setting `dataset`: the inverted-residual space needs square images, found \
             {}x{}",
            train.height,
            train.width
        );
    }
    let latency_loss = match args.latency_loss {
        LossForm::MulLog => LatencyLoss::MulLog { beta: args.beta },
        LossForm::Add => LatencyLoss::Add {
            lambda: args.lambda,
        },
        LossForm::Hinge => LatencyLoss::Hinge {
            lambda: args.lambda,
        },
    };
    let config = ProxylessConfig {
        space: space.clone(),
        epochs: args.epochs,
        warmup_epochs: args.warmup_epochs,
        lr: args.lr,
        lr_min: args.lr_min,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        arch_lr: args.arch_lr,
        arch_beta2: 0.999,
        arch_eps: 1e-8,
        target_ms: args.target_ms,
        latency_loss,
        seed: args.seed,
    };
    // Every setting is checked before anything is measured, written or removed.
    config.check()?;
    if !(0.0 < args.train_portion && args.train_portion < 1.0) {
        anyhow::bail!(
            "invalid setting `train_portion`: must be strictly between 0 and 1, found {}",
            args.train_portion
        );
    }
    if args.batch_size == 0 {
        anyhow::bail!("invalid setting `batch_size`: must be at least 1, found 0");
    }
    if args.retrain_epochs > 0 && !(args.retrain_lr.is_finite() && args.retrain_lr > 0.0) {
        anyhow::bail!(
            "invalid setting `retrain_lr`: must be positive, found {}",
            args.retrain_lr
        );
    }
    if args.resume && args.overwrite {
        anyhow::bail!("invalid setting `resume`: --resume and --overwrite exclude each other");
    }
    if args.target_ms.is_none() && !matches!(args.latency_loss, LossForm::Hinge) {
        tracing::warn!("without --target-ms the latency term is off: --latency-loss has no effect");
    }
    if matches!(latency_loss, LatencyLoss::MulLog { .. }) && args.target_ms.is_some() {
        tracing::warn!(
            "the multiplicative-log form takes the same architecture steps whatever the \
             target; the target acts only in the final move of the found architecture under it \
             (use --latency-loss hinge or add to search towards it)"
        );
    }

    let out = OutputDir::create(&args.output)?;
    let checkpoint = Checkpoint::in_run(out.root());
    refuse_existing_run(&out, &checkpoint, args.resume, args.overwrite)?;
    let threads = rayon::current_num_threads();
    let here = LatencySettings {
        device: nasrs::device::resolved_name(&args.device.device),
        processor: processor_name(),
        threads,
        batch_size: 1,
    };
    let protocol = Protocol {
        warmup: 10,
        repeats: 30,
    };
    // A resumed run keeps the table it started with: one it measured itself is in the output
    // directory.
    let own_table = out.path("latency_table.json");
    let table_path = match &args.latency_table {
        Some(path) => Some(path.clone()),
        None if args.resume && own_table.is_file() => Some(own_table.clone()),
        None => None,
    };
    let loaded = match &table_path {
        Some(path) => {
            let table = LatencyTable::load(path)?;
            if table.space != space {
                anyhow::bail!(
                    "invalid setting `latency_table`: {} was measured for another space ({} \
                     channels, {} pixels, {} classes) than this dataset's ({} channels, {} \
                     pixels, {} classes)",
                    path.display(),
                    table.space.in_channels,
                    table.space.image_size,
                    table.space.classes,
                    space.in_channels,
                    space.image_size,
                    space.classes
                );
            }
            let mut differences = table.mismatches(&here, &space);
            // The thread count and batch size are the table's deployment settings; only the
            // machine must agree.
            differences.retain(|d| !d.contains("threads") && !d.contains("batch size"));
            if !differences.is_empty() {
                tracing::warn!(
                    table = %path.display(),
                    "the latency table was measured under other settings: {}",
                    differences.join(", ")
                );
            }
            Some(table)
        }
        None => None,
    };
    let table_file = table_path.as_ref().map_or_else(
        || own_table.display().to_string(),
        |p| p.display().to_string(),
    );
    if args.resume {
        check_resumed_settings(&out, &args, &table_file, loaded.as_ref())?;
    } else {
        clear_experiment(out.root(), args.overwrite)?;
        // A table in the output directory stays: it may be the one given, and a new run
        // without one measures a new table over it.
        for name in RUN_FILES.iter().filter(|n| **n != "latency_table.json") {
            out.remove(name)?;
        }
    }
    // Killed before its first checkpoint, a run has nothing to resume: it starts again.
    let resume = args.resume && checkpoint.exists();
    if args.resume && !resume {
        tracing::info!("no checkpoint yet: the search starts from the beginning");
        out.remove("epochs.jsonl")?;
    }
    checkpoint.prepare(resume, args.overwrite)?;
    let table = match loaded {
        Some(table) => table,
        None => {
            tracing::info!("measuring a latency table for this space on this machine");
            let table = on_timing_pool(here.threads, || {
                measure_table(&space, here.clone(), protocol, &device, |_| {})
            })??;
            table.save(&own_table)?;
            table
        }
    };

    let (weight_part, arch_part) =
        split_indices(train.len(), args.train_portion, stream_seed(args.seed, 2));
    if weight_part.is_empty() || arch_part.is_empty() {
        anyhow::bail!(
            "the training split ({} images) is too small to split into weight and architecture parts",
            train.len()
        );
    }
    let norm = prepared.normalization.clone();
    let loader = |indices: Vec<usize>, stream: u64| {
        BatchLoader::new(
            train.clone(),
            indices,
            args.batch_size,
            true,
            prepared.augment,
            norm.clone(),
            stream_seed(args.seed, stream),
        )
    };
    let mut data = ProxylessData {
        train: loader(weight_part, 3)?,
        valid: loader(arch_part.clone(), 4)?,
        valid_eval: eval_loader(&train, arch_part, 256, &norm)?,
    };
    if !args.resume {
        out.write_json(
            "config.json",
            &json!({
                "command": "proxyless",
                "seed": args.seed,
                "dataset": args.data.dataset.to_string(),
                "subset": args.data.subset,
                "batch_size": args.batch_size,
                "train_portion": args.train_portion,
                "retrain_epochs": args.retrain_epochs,
                "retrain_lr": args.retrain_lr,
                "latency_table_file": table_file,
                "latency_table_measured_at": table.measured_at,
                "latency_table": table.settings,
                "search": config,
            }),
        )?;
    }
    let resumable = Resumable { checkpoint, resume };
    let outcome = search(
        &config,
        &mut data,
        Some(&table),
        &device,
        Some(&resumable),
        |record| {
            out.append_jsonl("epochs.jsonl", record)?;
            Ok(())
        },
    )?;
    // A kill between a checkpoint and its record can lose a line; the checkpoint has them all.
    out.remove("epochs.jsonl")?;
    for record in &outcome.epochs {
        out.append_jsonl("epochs.jsonl", record)?;
    }

    // Measured as the table was: same protocol and batch size, this process's threads.
    if threads != table.settings.threads {
        tracing::warn!(
            table_threads = table.settings.threads,
            threads,
            "the found architecture is timed with this process's thread count, not the table's"
        );
    }
    let measured = on_timing_pool(threads, || {
        measure_network(
            &space,
            &outcome.arch,
            table.settings.batch_size,
            protocol,
            &device,
        )
    })??;
    let meets = config.target_ms.map(|t| measured.median_ms <= t);
    tracing::info!(
        arch = %space.key(&outcome.arch),
        predicted_ms = outcome.predicted_ms.map(|v| format!("{v:.3}")),
        measured_ms = format!("{:.3}", measured.median_ms),
        target_ms = ?config.target_ms,
        "architecture found"
    );

    let mut retrain = Vec::new();
    if args.retrain_epochs > 0 {
        // A resumed run whose retraining finished keeps it instead of training again.
        let finished: Vec<MobileTrainEpoch> = std::fs::read_to_string(out.path("retrain.jsonl"))
            .map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        if args.resume && finished.len() == args.retrain_epochs {
            retrain = finished;
        } else {
            out.remove("retrain.jsonl")?;
        }
    }
    if args.retrain_epochs > 0 && retrain.is_empty() {
        let all: Vec<usize> = (0..train.len()).collect();
        let mut train_loader = loader(all, 5)?;
        let mut test_loader = eval_loader(
            &prepared.test,
            (0..prepared.test.len()).collect(),
            256,
            &norm,
        )?;
        let retrain_config = MobileTrainConfig {
            space: space.clone(),
            epochs: args.retrain_epochs,
            lr: args.retrain_lr,
            lr_min: 0.0,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            grad_clip: args.grad_clip,
            seed: stream_seed(args.seed, 6),
        };
        let (records, _) = train_mobile(
            &retrain_config,
            &outcome.arch,
            &mut train_loader,
            &mut test_loader,
            &device,
            None,
            |r| {
                if let Err(e) = out.append_jsonl("retrain.jsonl", r) {
                    tracing::warn!("cannot record the retraining epoch: {e}");
                }
                std::ops::ControlFlow::Continue(())
            },
        )
        .context("retraining the found architecture")?;
        retrain = records;
    }

    let cost = nasrs::cost::mobile_network(&space, &outcome.arch)?;
    let result = json!({
        "seed": args.seed,
        "architecture": space.key(&outcome.arch),
        "most_probable_architecture": space.key(&outcome.argmax),
        "blocks_moved_to_meet_target": outcome.moved_blocks,
        "target_ms": config.target_ms,
        "predicted_ms": outcome.predicted_ms,
        "measured_ms": measured,
        "meets_target": meets,
        "params": cost.params,
        "macs": cost.macs,
        "search_valid_accuracy": outcome.epochs.last().map(|e| e.valid_accuracy),
        "retrain": retrain,
    });
    out.write_json("result.json", &result)?;
    out.write_text(
        "architecture.txt",
        &format!("{}\n", space.key(&outcome.arch)),
    )?;
    write_charts(&out, &space, &outcome.epochs, config.target_ms)?;

    let mut md = String::new();
    let _ = writeln!(md, "# ProxylessNAS search\n");
    let _ = writeln!(md, "- architecture: `{}`", space.key(&outcome.arch));
    if outcome.moved_blocks > 0 {
        let _ = writeln!(
            md,
            "- the most probable architecture `{}` was predicted over the target; {} block(s) \
             moved to cheaper candidates",
            space.key(&outcome.argmax),
            outcome.moved_blocks
        );
    }
    let _ = writeln!(
        md,
        "- seed {}, {} epochs ({} warm-up)",
        args.seed, config.epochs, config.warmup_epochs
    );
    if let (Some(t), Some(p)) = (config.target_ms, outcome.predicted_ms)
        && p > t
    {
        let _ = writeln!(
            md,
            "- the target is below every architecture the table predicts: the cheapest found \
             is predicted at {p:.3} ms"
        );
    }
    if let Some(t) = config.target_ms {
        let verdict = if measured.median_ms <= t {
            "meets"
        } else {
            "misses"
        };
        let _ = writeln!(
            md,
            "- latency target {t:.3} ms: measured {:.3} ms ({verdict} it)",
            measured.median_ms
        );
    }
    let _ = writeln!(
        md,
        "- latency: predicted {:.3} ms, measured {:.3} ms (median of {}; p10 {:.3}, p90 {:.3}), \
         batch {}, {} thread(s)",
        outcome.predicted_ms.unwrap_or(f64::NAN),
        measured.median_ms,
        measured.runs,
        measured.p10_ms,
        measured.p90_ms,
        table.settings.batch_size,
        threads
    );
    let _ = writeln!(
        md,
        "- {} parameters, {} MACs per image",
        cost.params, cost.macs
    );
    if let Some(last) = outcome.epochs.last() {
        let _ = writeln!(
            md,
            "- supernet validation accuracy of the most probable path: {:.2}%",
            100.0 * last.valid_accuracy
        );
    }
    if let Some(last) = retrain.last() {
        let _ = writeln!(
            md,
            "- retrained from scratch for {} epoch(s): test accuracy {:.2}%",
            last.epoch,
            100.0 * last.test_accuracy
        );
    }
    out.write_text("summary.md", &md)?;
    println!("{md}");
    Ok(())
}

fn write_charts(
    out: &OutputDir,
    space: &MobileSpace,
    epochs: &[ProxylessEpoch],
    target_ms: Option<f64>,
) -> anyhow::Result<()> {
    let Some(last) = epochs.last() else {
        return Ok(());
    };
    let rows: Vec<String> = space
        .blocks()
        .iter()
        .enumerate()
        .map(|(b, s)| format!("block {b} ({}->{}, s{})", s.c_in, s.c_out, s.stride))
        .collect();
    let names: Vec<String> = BlockChoice::ALL.iter().map(|c| c.name()).collect();
    let columns: Vec<&str> = names.iter().map(String::as_str).collect();
    // Each probability in the column of its choice; columns a block lacks stay empty.
    let values: Vec<Vec<f32>> = last
        .probabilities
        .iter()
        .zip(space.blocks())
        .map(|(p, shape)| {
            let mut row = vec![0.0f32; BlockChoice::ALL.len()];
            for (choice, &v) in shape.choices().iter().zip(p) {
                if let Some(column) = BlockChoice::ALL.iter().position(|c| c == choice) {
                    row[column] = v as f32;
                }
            }
            row
        })
        .collect();
    out.write_text(
        "probabilities.svg",
        &heatmap(
            "Candidate probabilities after the search",
            &rows,
            &columns,
            &values,
            &[],
        ),
    )?;
    let mut series = vec![
        Series {
            name: "expected latency (ms)",
            points: epochs
                .iter()
                .filter_map(|e| Some((e.epoch as f64, e.expected_ms?)))
                .collect(),
        },
        Series {
            name: "most probable architecture (ms)",
            points: epochs
                .iter()
                .filter_map(|e| Some((e.epoch as f64, e.arch_predicted_ms?)))
                .collect(),
        },
    ];
    if let Some(t) = target_ms {
        series.push(Series {
            name: "target",
            points: vec![(1.0, t), (epochs.len() as f64, t)],
        });
    }
    out.write_text(
        "latency.svg",
        &line_chart("Latency during the search", "epoch", "ms", &series),
    )?;
    Ok(())
}
