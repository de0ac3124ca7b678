//! `nas train`: train the network built from a genotype from scratch.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use burn::module::Module;
use clap::Args;
use nasrs::checkpoint::Checkpoint;
use nasrs::data::BatchLoader;
use nasrs::nn::NetworkConfig;
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, line_chart};
use nasrs::search::Resumable;
use nasrs::space::mobile::MobileSpace;
use nasrs::space::{Genotype, published};
use nasrs::train::mobile_trainer::{MobileTrainConfig, train_mobile};
use nasrs::train::{LrSchedule, TrainConfig, TrainEpoch, train_genotype};
use serde_json::json;

use super::common::{
    DataArgs, DeviceArgs, check_resumed_config, clear_experiment, data_settings, eval_loader,
    refuse_existing_run, stream_seed,
};

/// Options of `nas train`. Defaults fit a 2-core CPU; the paper's CIFAR-10 evaluation is
/// `--cells 20 --channels 36 --epochs 600 --batch-size 96 --drop-path 0.2 --auxiliary --cutout 16`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("network").required(true).args(["genotype", "arch"])))]
pub struct TrainArgs {
    /// Genotype file (JSON or DARTS text), or a published genotype: darts-v1, darts-v2.
    #[arg(long)]
    genotype: Option<String>,
    /// An inverted-residual architecture instead of a cell: its key as searches print it, one
    /// choice per block (k3e3 ... k7e6 or skip), e.g. from `nas search --space mobile` or
    /// `nas proxyless`. The network is sized for the dataset; --cells, --channels, drop path,
    /// the auxiliary head and --lr-schedule (it anneals after every batch) do not apply.
    #[arg(
        long,
        conflicts_with_all = ["cells", "channels", "drop_path", "auxiliary", "lr_schedule"]
    )]
    arch: Option<String>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "runs/train")]
    output: PathBuf,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cells.
    #[arg(long, default_value_t = 8)]
    cells: usize,
    /// Initial channels.
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Initial learning rate (cosine-annealed to --lr-min).
    #[arg(long, default_value_t = 0.025)]
    lr: f64,
    /// Final learning rate.
    #[arg(long, default_value_t = 0.0)]
    lr_min: f64,
    /// Whether the cosine schedule steps after every batch or once per epoch.
    #[arg(long, value_enum, default_value_t = LrSchedule::CosineStep)]
    lr_schedule: LrSchedule,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 3e-4)]
    weight_decay: f64,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 5.0)]
    grad_clip: f64,
    /// Largest drop-path probability, ramped linearly from 0 over the epochs.
    #[arg(long, default_value_t = 0.0)]
    drop_path: f64,
    /// Add the auxiliary head after the second reduction cell.
    #[arg(long)]
    auxiliary: bool,
    /// Weight of the auxiliary loss.
    #[arg(long, default_value_t = 0.4)]
    auxiliary_weight: f64,
    /// Continue an interrupted run from the checkpoint in --output (same command otherwise).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace a run already in --output.
    #[arg(long)]
    overwrite: bool,
}

/// Reads `--genotype`: a published name or a file.
pub fn load_genotype(spec: &str) -> anyhow::Result<Genotype> {
    match spec.to_ascii_lowercase().as_str() {
        "darts-v1" | "darts_v1" => Ok(published::darts_v1()),
        "darts-v2" | "darts_v2" | "darts" => Ok(published::darts_v2()),
        _ if !std::path::Path::new(spec).exists() => anyhow::bail!(
            "genotype {spec}: no such file, and not a published genotype (darts-v1, darts-v2)"
        ),
        _ => Genotype::load(std::path::Path::new(spec))
            .with_context(|| format!("reading genotype {spec}")),
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(key) = &args.arch {
        return run_mobile(&args, key);
    }
    let source = args.genotype.clone().unwrap_or_default();
    let genotype = load_genotype(&source)?;
    let device = args.device.device()?;
    let out = OutputDir::create(&args.output)?;
    let prepared = args.data.prepare(stream_seed(args.seed, 1))?;
    let config = TrainConfig {
        network: NetworkConfig {
            in_channels: prepared.train.channels,
            num_classes: prepared.train.num_classes,
            channels: args.channels,
            cells: args.cells,
            auxiliary: args.auxiliary,
            stem_multiplier: 3,
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        lr_min: args.lr_min,
        lr_schedule: args.lr_schedule,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        drop_path: args.drop_path,
        auxiliary_weight: args.auxiliary_weight,
        seed: args.seed,
    };
    config.check()?;

    let norm = prepared.normalization.clone();
    let mut train = BatchLoader::new(
        prepared.train.clone(),
        (0..prepared.train.len()).collect(),
        args.batch_size,
        true,
        prepared.augment,
        norm.clone(),
        stream_seed(args.seed, 3),
    )?;
    let mut test = eval_loader(
        &prepared.test,
        (0..prepared.test.len()).collect(),
        256,
        &norm,
    )?;

    let resumable = Resumable {
        checkpoint: Checkpoint::in_run(out.root()),
        resume: args.resume,
    };
    clear_experiment(out.root(), args.overwrite)?;
    resumable.checkpoint.prepare(args.resume, args.overwrite)?;
    out.write_json(
        "config.json",
        &json!({
            "command": "train",
            "nasrs_version": env!("CARGO_PKG_VERSION"),
            "genotype_source": source,
            "dataset": args.data.dataset.to_string(),
            "data_dir": args.data.data_dir,
            "subset": args.data.subset,
            "augment": {
                "crop_padding": prepared.augment.crop_padding,
                "horizontal_flip": prepared.augment.horizontal_flip,
                "cutout": prepared.augment.cutout,
            },
            "normalization": { "mean": norm.mean, "std": norm.std },
            "device": format!("{device:?}"),
            "threads": rayon::current_num_threads(),
            "seed": args.seed,
            "train": config,
        }),
    )?;
    out.write_text("genotype.json", &(genotype.to_json_string() + "\n"))?;
    out.write_text("genotype.txt", &(genotype.to_darts_text() + "\n"))?;
    if !args.resume {
        out.remove("epochs.jsonl")?;
    }

    let outcome = train_genotype(
        &config,
        &genotype,
        &mut train,
        &mut test,
        &device,
        Some(&resumable),
        |r| {
            out.append_jsonl("epochs.jsonl", r)?;
            Ok(ControlFlow::Continue(()))
        },
    )?;
    let lines: Vec<String> = outcome
        .epochs
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    out.write_text("epochs.jsonl", &(lines.join("\n") + "\n"))?;
    let weights = out.path("model.bpk");
    outcome
        .network
        .clone()
        .valid()
        .save_file(&weights)
        .map_err(|e| anyhow::anyhow!("{}: cannot save weights: {e:?}", weights.display()))?;

    let last = outcome.epochs.last().context("training ran no epoch")?;
    let summary = summary(
        &args,
        &config,
        &genotype,
        &outcome.epochs,
        outcome.parameters,
        outcome.auxiliary_parameters,
    );
    out.write_text("summary.md", &summary)?;
    nasrs::report::html::write_train_report(
        &out,
        &config,
        &genotype,
        &outcome.epochs,
        outcome.parameters,
    )?;
    println!(
        "test accuracy {:.2}% after {} epoch{} ({} parameters without the auxiliary head)",
        100.0 * last.test_accuracy,
        last.epoch,
        if last.epoch == 1 { "" } else { "s" },
        outcome.parameters
    );
    println!("results in {}", out.root().display());
    Ok(())
}

fn summary(
    args: &TrainArgs,
    config: &TrainConfig,
    genotype: &Genotype,
    epochs: &[TrainEpoch],
    parameters: usize,
    auxiliary_parameters: usize,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Training a genotype from scratch\n");
    let _ = writeln!(
        s,
        "dataset {}, seed {}, {} cells, {} channels, {} epochs, batch {}, drop path {}, auxiliary {}, cutout {}\n",
        args.data.dataset,
        config.seed,
        config.network.cells,
        config.network.channels,
        config.epochs,
        config.batch_size,
        config.drop_path,
        config.network.auxiliary,
        args.data.cutout
    );
    let _ = writeln!(
        s,
        "parameters: {parameters} (auxiliary head: {auxiliary_parameters} more, training only)\n"
    );
    let _ = writeln!(
        s,
        "| epoch | lr | drop path | train loss | train acc | test loss | test acc | s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in epochs {
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} |",
            r.epoch,
            r.lr,
            r.drop_prob,
            r.train_loss,
            r.train_accuracy,
            r.test_loss,
            r.test_accuracy,
            r.seconds
        );
    }
    let _ = writeln!(
        s,
        "\n## Genotype\n\n```\n{}\n```\n\n```\n{}```",
        genotype.to_darts_text(),
        genotype.render()
    );
    s
}

/// What a training run of an inverted-residual architecture writes (besides `checkpoint/`).
const MOBILE_FILES: &[&str] = &[
    "config.json",
    "epochs.jsonl",
    "architecture.txt",
    "model.bpk",
    "summary.md",
    "accuracy.svg",
];

/// Trains the inverted-residual network of `key` from scratch on the whole training split and
/// evaluates it on the test split after every epoch.
fn run_mobile(args: &TrainArgs, key: &str) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let prepared = args.data.prepare(stream_seed(args.seed, 1))?;
    let train = &prepared.train;
    if train.height != train.width {
        anyhow::bail!(
            "invalid setting `dataset`: the inverted-residual space needs square images, found \
             {}x{}",
            train.height,
            train.width
        );
    }
    let space = MobileSpace::cifar(train.channels, train.height, train.num_classes);
    let arch = space.parse(key)?;
    if args.batch_size == 0 {
        anyhow::bail!("invalid setting `batch_size`: must be at least 1, found 0");
    }
    let config = MobileTrainConfig {
        space: space.clone(),
        epochs: args.epochs,
        lr: args.lr,
        lr_min: args.lr_min,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        seed: args.seed,
    };
    let out = OutputDir::create(&args.output)?;
    let checkpoint = Checkpoint::in_run(out.root());
    refuse_existing_run(&out, &checkpoint, args.resume, args.overwrite)?;
    let described = json!({
        "command": "train",
        "nasrs_version": env!("CARGO_PKG_VERSION"),
        "architecture": space.key(&arch),
        "dataset": args.data.dataset.to_string(),
        "data_dir": args.data.data_dir,
        "subset": args.data.subset,
        "data": data_settings(&args.data),
        "batch_size": args.batch_size,
        "threads": rayon::current_num_threads(),
        "seed": args.seed,
        "train": config,
    });
    if args.resume {
        // The checkpoint compares the training settings; the data settings live here.
        check_resumed_config(
            out.root(),
            &described,
            &["/data", "/batch_size"],
            checkpoint.exists(),
        )?;
    }
    clear_experiment(out.root(), args.overwrite)?;
    let resume = args.resume && checkpoint.exists();
    if !resume {
        for name in MOBILE_FILES {
            out.remove(name)?;
        }
    }
    checkpoint.prepare(resume, args.overwrite)?;
    let norm = prepared.normalization.clone();
    let mut train_loader = BatchLoader::new(
        train.clone(),
        (0..train.len()).collect(),
        args.batch_size,
        true,
        prepared.augment,
        norm.clone(),
        stream_seed(args.seed, 3),
    )?;
    let mut test = eval_loader(
        &prepared.test,
        (0..prepared.test.len()).collect(),
        256,
        &norm,
    )?;
    if !resume {
        out.write_json("config.json", &described)?;
    }
    out.write_text("architecture.txt", &format!("{}\n", space.key(&arch)))?;
    let resumable = Resumable { checkpoint, resume };
    let (epochs, network) = train_mobile(
        &config,
        &arch,
        &mut train_loader,
        &mut test,
        &device,
        Some(&resumable),
        |r| {
            if let Err(e) = out.append_jsonl("epochs.jsonl", r) {
                tracing::warn!("cannot record the epoch: {e}");
            }
            ControlFlow::Continue(())
        },
    )?;
    // A kill between a checkpoint and its record can lose a line; the records are complete.
    out.remove("epochs.jsonl")?;
    for record in &epochs {
        out.append_jsonl("epochs.jsonl", record)?;
    }
    let weights = out.path("model.bpk");
    network
        .valid()
        .save_file(&weights)
        .map_err(|e| anyhow::anyhow!("{}: cannot save weights: {e:?}", weights.display()))?;
    out.write_text(
        "accuracy.svg",
        &line_chart(
            "Training from scratch",
            "epoch",
            "accuracy",
            &[
                Series {
                    name: "train (augmented)",
                    points: epochs
                        .iter()
                        .map(|r| (r.epoch as f64, r.train_accuracy))
                        .collect(),
                },
                Series {
                    name: "test",
                    points: epochs
                        .iter()
                        .map(|r| (r.epoch as f64, r.test_accuracy))
                        .collect(),
                },
            ],
        ),
    )?;
    let cost = nasrs::cost::mobile_network(&space, &arch)?;
    let last = epochs.last().context("training ran no epoch")?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Training an inverted-residual architecture from scratch\n"
    );
    let _ = writeln!(s, "architecture `{}`\n", space.key(&arch));
    let _ = writeln!(
        s,
        "dataset {}, seed {}, {} epochs, batch {}, lr {}; {} parameters, {} MACs per image\n",
        args.data.dataset,
        args.seed,
        config.epochs,
        args.batch_size,
        config.lr,
        cost.params,
        cost.macs
    );
    let _ = writeln!(
        s,
        "| epoch | train loss | train acc | test loss | test acc | s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in &epochs {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} |",
            r.epoch, r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy, r.seconds
        );
    }
    out.write_text("summary.md", &s)?;
    println!(
        "test accuracy {:.2}% after {} epoch{} ({} parameters)",
        100.0 * last.test_accuracy,
        last.epoch,
        if last.epoch == 1 { "" } else { "s" },
        cost.params
    );
    println!("results in {}", out.root().display());
    Ok(())
}
