//! `nas search`: a DARTS search on an image dataset.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{BatchLoader, split_indices};
use nasrs::nn::SearchNetworkConfig;
use nasrs::report::OutputDir;
use nasrs::search::{DartsConfig, DartsData, EpochRecord, Resumable, search};
use serde_json::json;

use super::common::{DataArgs, DeviceArgs, clear_experiment, eval_loader, stream_seed};
use super::multi::{MultiArgs, MultiRun, StrategyKind, TrialTraining, run_search};

/// Options of `nas search`. Defaults fit a 2-core CPU; the paper's CIFAR-10 search is
/// `--cells 8 --channels 16 --epochs 50 --batch-size 64`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Strategy: darts searches one weight-sharing network by gradient descent; the others
    /// propose whole architectures of --space and evaluate each with --estimator.
    #[arg(long, value_enum, default_value_t = StrategyKind::Darts)]
    strategy: StrategyKind,
    #[command(flatten)]
    multi: MultiArgs,
    /// Multi-trial search: workers evaluating trials at once in this process. More worker
    /// processes join by running the same command with --resume.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "runs/search")]
    output: PathBuf,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cells of the search network (with --estimator train: of each trial's network).
    #[arg(long, default_value_t = 5)]
    cells: usize,
    /// Initial channels.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Intermediate nodes per cell.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Epochs (default 10); with --estimator train, the most epochs of each trial (default 4).
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size of both the weight and the architecture steps.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Weight learning rate (cosine-annealed to --lr-min).
    #[arg(long, default_value_t = 0.025)]
    lr: f64,
    /// Final weight learning rate.
    #[arg(long, default_value_t = 0.001)]
    lr_min: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay of the weights.
    #[arg(long, default_value_t = 3e-4)]
    weight_decay: f64,
    /// Global gradient-norm clip of the weights.
    #[arg(long, default_value_t = 5.0)]
    grad_clip: f64,
    /// Adam learning rate of the architecture weights.
    #[arg(long, default_value_t = 3e-4)]
    arch_lr: f64,
    /// Adam weight decay of the architecture weights.
    #[arg(long, default_value_t = 1e-3)]
    arch_weight_decay: f64,
    /// Fraction of the training split used for the weights; the rest trains the architecture.
    #[arg(long, default_value_t = 0.5)]
    train_portion: f32,
    /// Epochs at the start with frozen architecture weights.
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,
    /// Cap on skip connections in the derived normal cell.
    #[arg(long)]
    max_skip: Option<usize>,
    /// Stop once the derived normal cell has this many skip connections.
    #[arg(long)]
    stop_at_skips: Option<usize>,
    /// Continue an interrupted run from the checkpoint in --output (same command otherwise).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace a run already in --output.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    if args.strategy == StrategyKind::Darts
        && (args.multi.latency_table.is_some() || args.multi.space == "mobile")
    {
        anyhow::bail!(
            "invalid setting `strategy`: darts searches DARTS cells; --space mobile and \
             --latency-table are for the multi-trial strategies (use `nas proxyless` for a \
             one-shot search of the inverted-residual space)"
        );
    }
    if args.strategy != StrategyKind::Darts {
        return run_search(MultiRun {
            kind: args.strategy,
            args: &args.multi,
            data: &args.data,
            device: &args.device,
            training: TrialTraining {
                cells: args.cells,
                channels: args.channels,
                nodes: args.nodes,
                epochs: args.epochs.unwrap_or(4),
                batch_size: args.batch_size,
                lr: args.lr,
            },
            seed: args.seed,
            output: &args.output,
            workers: args.workers,
            resume: args.resume,
            overwrite: args.overwrite,
        });
    }
    let epochs = args.epochs.unwrap_or(10);
    let device = args.device.device()?;
    let out = OutputDir::create(&args.output)?;
    let prepared = args.data.prepare(stream_seed(args.seed, 1))?;
    let train = &prepared.train;
    if !(0.0 < args.train_portion && args.train_portion < 1.0) {
        anyhow::bail!(
            "invalid setting `train_portion`: must be strictly between 0 and 1, found {}",
            args.train_portion
        );
    }

    let network = SearchNetworkConfig {
        in_channels: train.channels,
        num_classes: train.num_classes,
        channels: args.channels,
        cells: args.cells,
        nodes: args.nodes,
        stem_multiplier: 3,
    };
    let config = DartsConfig {
        network,
        epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        lr_min: args.lr_min,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        arch_lr: args.arch_lr,
        arch_beta1: 0.5,
        arch_beta2: 0.999,
        arch_weight_decay: args.arch_weight_decay,
        warmup_epochs: args.warmup_epochs,
        max_skip_connections: args.max_skip,
        stop_at_skip_connections: args.stop_at_skips,
        seed: args.seed,
    };
    config.check()?;

    // The architecture is trained on part of the training split, never on the test split.
    let (weight_half, arch_half) =
        split_indices(train.len(), args.train_portion, stream_seed(args.seed, 2));
    if weight_half.is_empty() || arch_half.is_empty() {
        anyhow::bail!(
            "the training split ({} images) is too small to split into weight and architecture parts",
            train.len()
        );
    }
    let norm = prepared.normalization.clone();
    let mut data = DartsData {
        train: BatchLoader::new(
            train.clone(),
            weight_half,
            args.batch_size,
            true,
            prepared.augment,
            norm.clone(),
            stream_seed(args.seed, 3),
        )?,
        valid: BatchLoader::new(
            train.clone(),
            arch_half.clone(),
            args.batch_size,
            true,
            prepared.augment,
            norm.clone(),
            stream_seed(args.seed, 4),
        )?,
        valid_eval: eval_loader(train, arch_half, 256, &norm)?,
    };

    let resumable = Resumable {
        checkpoint: Checkpoint::in_run(out.root()),
        resume: args.resume,
    };
    clear_experiment(out.root(), args.overwrite)?;
    resumable.checkpoint.prepare(args.resume, args.overwrite)?;
    out.write_json(
        "config.json",
        &json!({
            "command": "search",
            "strategy": "darts-first-order",
            "nasrs_version": env!("CARGO_PKG_VERSION"),
            "dataset": args.data.dataset.to_string(),
            "data_dir": args.data.data_dir,
            "subset": args.data.subset,
            "train_portion": args.train_portion,
            "augment": {
                "crop_padding": prepared.augment.crop_padding,
                "horizontal_flip": prepared.augment.horizontal_flip,
                "cutout": prepared.augment.cutout,
            },
            "normalization": { "mean": norm.mean, "std": norm.std },
            "device": format!("{device:?}"),
            "threads": rayon::current_num_threads(),
            "seed": args.seed,
            "darts": config,
        }),
    )?;
    if !args.resume {
        out.remove("epochs.jsonl")?;
    }
    let outcome = search(
        &config,
        &mut data,
        &device,
        Some(&resumable),
        |record: &EpochRecord| {
            out.append_jsonl("epochs.jsonl", record)?;
            out.write_text("genotype.txt", &(record.genotype_text.clone() + "\n"))?;
            out.write_text("genotype.json", &(record.genotype.to_json_string() + "\n"))?;
            Ok(())
        },
    )?;

    let summary = summary(
        &args,
        &config,
        &outcome.records,
        outcome.stopped_early.as_deref(),
    );
    out.write_text("summary.md", &summary)?;
    nasrs::report::html::write_search_report(
        &out,
        &config,
        &outcome.records,
        outcome.stopped_early.as_deref(),
    )?;
    println!("{}", outcome.genotype.to_darts_text());
    println!("{}", outcome.genotype.render());
    println!("results in {}", out.root().display());
    Ok(())
}

fn summary(
    args: &SearchArgs,
    config: &DartsConfig,
    records: &[EpochRecord],
    stopped_early: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# DARTS search (first order)\n");
    let _ = writeln!(
        s,
        "dataset {}, seed {}, {} cells, {} channels, {} nodes, {} epochs, batch {}\n",
        args.data.dataset,
        config.seed,
        config.network.cells,
        config.network.channels,
        config.network.nodes,
        config.epochs,
        config.batch_size
    );
    if let Some(reason) = stopped_early {
        let _ = writeln!(s, "Stopped early: {reason}.\n");
    }
    let _ = writeln!(
        s,
        "| epoch | lr | train loss | train acc | valid loss | valid acc | param-free ops (normal) | s | img/s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in records {
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.1} | {:.1} |",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.valid_loss,
            r.valid_accuracy,
            r.parameter_free_normal,
            r.seconds,
            r.images_per_second
        );
    }
    if let Some(last) = records.last() {
        let _ = writeln!(
            s,
            "\n## Final genotype\n\n```\n{}\n```\n",
            last.genotype_text
        );
        let _ = writeln!(s, "```\n{}```", last.genotype.render());
    }
    s
}
