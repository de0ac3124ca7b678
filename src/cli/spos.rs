//! `nas spos`: trains a single-path one-shot supernet (of the inverted-residual space, or the
//! DARTS search network with one operation per edge) once and saves it, so that searches (`nas search --estimator supernet:DIR`) and rank studies
//! (`nas rank`) can run on it any number of times.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{BatchLoader, split_indices};
use nasrs::nn::SearchNetworkConfig;
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, line_chart};
use nasrs::search::Resumable;
use nasrs::search::spos::{SposConfig, SposEpoch, SupernetInfo, save_supernet, train_supernet};
use nasrs::search::spos_cell::{
    CellSposConfig, CellSupernetInfo, save_cell_supernet, train_cell_supernet,
};
use nasrs::space::mobile::MobileSpace;
use serde_json::json;

use super::common::{
    DataArgs, DeviceArgs, check_resumed_config, clear_experiment, data_settings,
    refuse_existing_run, stream_seed,
};

/// Options of `nas spos`.
#[derive(Args, Debug)]
pub struct SposArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// The space of the supernet: mobile (the inverted-residual chain of `nas proxyless`) or
    /// darts (the DARTS search network of --cells, --channels and --nodes, one operation on
    /// each of two input edges per node).
    #[arg(long, default_value = "mobile")]
    space: String,
    /// Cells of the darts supernet.
    #[arg(long, default_value_t = 5)]
    cells: usize,
    /// Initial channels of the darts supernet.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Intermediate nodes per cell of the darts supernet.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Output directory; the trained supernet is `supernet.bpk` with `supernet.json` there
    /// (`cell_supernet.*` for darts).
    #[arg(long, default_value = "runs/spos")]
    output: PathBuf,
    /// Seed of everything random in the run. The held-out validation part is the one a
    /// multi-trial search with `--estimator train` and the same seed, dataset, subset and
    /// valid portion holds out, so stand-alone and supernet accuracies are measured on the same
    /// images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs over the training part.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Learning rate (cosine per batch to --lr-min).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Final learning rate.
    #[arg(long, default_value_t = 0.0)]
    lr_min: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 4e-5)]
    weight_decay: f64,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 5.0)]
    grad_clip: f64,
    /// Fraction of the training split held out for validating subnets (never trained on).
    #[arg(long, default_value_t = 0.2)]
    valid_portion: f32,
    /// Continue an interrupted training from its checkpoint.
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
    "supernet.bpk",
    "supernet.json",
    "cell_supernet.bpk",
    "cell_supernet.json",
    "loss.svg",
    "summary.md",
];

pub fn run(args: SposArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
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
    // The same streams as a multi-trial search with this seed: the same subset and split.
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
    let cells = match args.space.as_str() {
        "mobile" => None,
        "darts" => Some(CellSposConfig {
            network: SearchNetworkConfig {
                in_channels: train.channels,
                num_classes: train.num_classes,
                channels: args.channels,
                cells: args.cells,
                nodes: args.nodes,
                stem_multiplier: 3,
            },
            epochs: args.epochs,
            lr: args.lr,
            lr_min: args.lr_min,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            grad_clip: args.grad_clip,
            seed: args.seed,
        }),
        other => {
            anyhow::bail!("invalid setting `space`: expected mobile or darts, found `{other}`")
        }
    };
    if let Some(c) = &cells {
        c.check()?;
    }
    let config = SposConfig {
        space,
        epochs: args.epochs,
        lr: args.lr,
        lr_min: args.lr_min,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        seed: args.seed,
    };
    config.check()?;

    let out = OutputDir::create(&args.output)?;
    let checkpoint = Checkpoint::in_run(out.root());
    refuse_existing_run(&out, &checkpoint, args.resume, args.overwrite)?;
    let described = json!({
        "command": "spos",
        "seed": args.seed,
        "dataset": args.data.dataset.to_string(),
        "subset": args.data.subset,
        "data": data_settings(&args.data),
        "batch_size": args.batch_size,
        "valid_portion": args.valid_portion,
        "space": args.space,
        "training": match &cells {
            Some(c) => serde_json::to_value(c)?,
            None => serde_json::to_value(&config)?,
        },
    });
    if args.resume {
        // The checkpoint compares the training settings; the data settings live here.
        check_resumed_config(
            out.root(),
            &described,
            &["/data", "/batch_size", "/valid_portion", "/space"],
            checkpoint.exists(),
        )?;
    } else {
        clear_experiment(out.root(), args.overwrite)?;
        for name in RUN_FILES {
            out.remove(name)?;
        }
    }
    let resume = args.resume && checkpoint.exists();
    if args.resume && !resume {
        tracing::info!("no checkpoint yet: the training starts from the beginning");
        out.remove("epochs.jsonl")?;
    }
    checkpoint.prepare(resume, args.overwrite)?;
    if !resume {
        out.write_json("config.json", &described)?;
    }

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
    tracing::info!(
        train = train_part.len(),
        held_out = valid_part.len(),
        "training the supernet on the training part"
    );
    let mut loader = BatchLoader::new(
        train.clone(),
        train_part,
        args.batch_size,
        true,
        prepared.augment,
        prepared.normalization.clone(),
        stream_seed(args.seed, 3),
    )?;
    let resumable = Resumable { checkpoint, resume };
    let record = |record: &SposEpoch| out.append_jsonl("epochs.jsonl", record);
    let records = match &cells {
        Some(cell_config) => {
            let (model, records) =
                train_cell_supernet(cell_config, &mut loader, &device, Some(&resumable), record)?;
            let info = CellSupernetInfo {
                config: cell_config.clone(),
                dataset: args.data.dataset.to_string(),
                subset: args.data.subset,
                valid_portion: args.valid_portion,
                batch_size: args.batch_size,
                epochs: records.clone(),
            };
            save_cell_supernet(out.root(), &model, &info)?;
            records
        }
        None => {
            let (model, records) =
                train_supernet(&config, &mut loader, &device, Some(&resumable), record)?;
            let info = SupernetInfo {
                config: config.clone(),
                dataset: args.data.dataset.to_string(),
                subset: args.data.subset,
                valid_portion: args.valid_portion,
                batch_size: args.batch_size,
                epochs: records.clone(),
            };
            save_supernet(out.root(), &model, &info)?;
            records
        }
    };
    // A kill between a checkpoint and its record can lose a line; the records are complete.
    out.remove("epochs.jsonl")?;
    for record in &records {
        out.append_jsonl("epochs.jsonl", record)?;
    }
    write_loss_chart(&out, &records)?;

    let mut md = String::new();
    let _ = writeln!(md, "# Single-path one-shot supernet\n");
    let _ = writeln!(
        md,
        "- {} supernet, batch norm without affine parameters, on {} ({} epochs, batch {}, lr {}, \
         seed {})",
        match &cells {
            Some(c) => format!(
                "DARTS cell ({} cells, {} channels, {} nodes)",
                c.network.cells, c.network.channels, c.network.nodes
            ),
            None => "inverted-residual".to_string(),
        },
        args.data.dataset,
        config.epochs,
        args.batch_size,
        config.lr,
        args.seed
    );
    if let Some(last) = records.last() {
        let _ = writeln!(
            md,
            "- last epoch: training loss {:.4}, training accuracy of the sampled paths {:.2}%",
            last.train_loss,
            100.0 * last.train_accuracy
        );
    }
    let _ = writeln!(
        md,
        "- {:.0} s of training in all",
        records.iter().map(|r| r.seconds).sum::<f64>()
    );
    let _ = writeln!(
        md,
        "- search it: `nas search --strategy evolution --space {}{} --estimator supernet:{}`",
        args.space,
        cells
            .as_ref()
            .map(|c| format!(" --nodes {}", c.network.nodes))
            .unwrap_or_default(),
        out.root().display()
    );
    out.write_text("summary.md", &md)?;
    println!("{md}");
    Ok(())
}

fn write_loss_chart(out: &OutputDir, records: &[SposEpoch]) -> anyhow::Result<()> {
    let series = [
        Series {
            name: "training loss",
            points: records
                .iter()
                .map(|r| (r.epoch as f64, r.train_loss))
                .collect(),
        },
        Series {
            name: "training accuracy",
            points: records
                .iter()
                .map(|r| (r.epoch as f64, r.train_accuracy))
                .collect(),
        },
    ];
    out.write_text(
        "loss.svg",
        &line_chart(
            "Supernet training (uniformly sampled paths)",
            "epoch",
            "loss / accuracy",
            &series,
        ),
    )?;
    Ok(())
}
