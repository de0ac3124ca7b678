//! `nas rank`: how well a trained supernet orders architectures. Every finished trial of an
//! experiment that trained inverted-residual architectures from scratch is scored again with
//! the supernet's weights, with and without batch-norm recalibration, and the rank
//! correlations between the stand-alone and the supernet accuracies are reported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use nasrs::data::split_indices;
use nasrs::multi::rank::{kendall_tau, spearman_rho};
use nasrs::multi::spaces::MobileChainSpace;
use nasrs::multi::store::{Store, TrialStatus};
use nasrs::multi::supernet::{Supernet, SupernetEstimator};
use nasrs::multi::{Estimator, Space};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, scatter_chart};
use nasrs::space::mobile::MobileSpace;
use serde::Serialize;
use serde_json::json;

use super::common::{DataArgs, DeviceArgs, stream_seed};
use super::multi::load_any_supernet;

/// Options of `nas rank`.
#[derive(Args, Debug)]
pub struct RankArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory of a supernet trained by `nas spos`.
    #[arg(long)]
    supernet: PathBuf,
    /// Directory of a multi-trial experiment over --space mobile with --estimator train and the
    /// supernet's seed, dataset, subset and valid portion (so both validate on the same images).
    #[arg(long)]
    experiment: PathBuf,
    /// The stand-alone metric to rank by.
    #[arg(long, default_value = "valid_accuracy")]
    metric: String,
    /// Training batches that recompute each subnet's batch-norm statistics.
    #[arg(long, default_value_t = 50)]
    calibration_batches: usize,
    /// Output directory.
    #[arg(long, default_value = "runs/rank")]
    output: PathBuf,
}

/// One architecture scored both ways.
#[derive(Serialize)]
struct Row {
    key: String,
    standalone: f64,
    recalibrated: f64,
    running_stats: f64,
    params: f64,
}

pub fn run(args: RankArgs) -> anyhow::Result<()> {
    if args.calibration_batches == 0 {
        anyhow::bail!(
            "invalid setting `calibration_batches`: the comparison needs at least 1 batch to \
             recalibrate with"
        );
    }
    let store = Store::open(&args.experiment)?;
    let space = MobileChainSpace::new(MobileSpace::cifar(3, 32, 10))?;
    let trials: Vec<_> = store
        .trials()?
        .into_iter()
        .filter(|t| t.status == TrialStatus::Done)
        .collect();
    let mut pairs = Vec::new();
    for trial in &trials {
        let value = trial
            .metrics
            .as_ref()
            .and_then(|m| m.get(&args.metric).copied())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid setting `metric`: trial {} of {} has no metric `{}`",
                    trial.id,
                    args.experiment.display(),
                    args.metric
                )
            })?;
        let arch = space.parse(&trial.key).map_err(|e| {
            anyhow::anyhow!(
                "trial {} of {} is not an inverted-residual architecture ({e}); rank needs an \
                 experiment over --space mobile",
                trial.id,
                args.experiment.display()
            )
        })?;
        pairs.push((trial.key.clone(), arch, value));
    }
    if pairs.len() < 2 {
        anyhow::bail!(
            "{} holds {} finished trial(s); a rank correlation needs at least 2",
            args.experiment.display(),
            pairs.len()
        );
    }

    let device = args.device.device()?;
    let Supernet::Mobile(supernet, info) = load_any_supernet(&args.supernet, &device)? else {
        anyhow::bail!(
            "invalid setting `supernet`: {} holds a DARTS cell supernet; rank compares \
             inverted-residual supernets only",
            args.supernet.display()
        );
    };
    if space.space() != &info.config.space {
        let same_blocks = space.space().blocks().len() == info.config.space.blocks().len();
        if !same_blocks {
            anyhow::bail!(
                "invalid setting `supernet`: its space has another block structure than the \
                 experiment's"
            );
        }
    }
    if info.dataset != args.data.dataset.to_string() {
        anyhow::bail!(
            "invalid setting `dataset`: the supernet in {} was trained on {}, not {}",
            args.supernet.display(),
            info.dataset,
            args.data.dataset
        );
    }
    let seed = info.config.seed;
    let mut data = args.data.clone();
    data.subset = info.subset;
    let prepared = data.prepare(stream_seed(seed, 1))?;
    let (train_idx, valid_idx) = split_indices(
        prepared.train.len(),
        1.0 - info.valid_portion,
        stream_seed(seed, 2),
    );
    check_same_images(
        &args.experiment,
        &info.dataset,
        seed,
        train_idx.len(),
        valid_idx.len(),
    )?;
    let estimator = SupernetEstimator::new(
        Supernet::Mobile(supernet, info),
        Arc::clone(&prepared.train),
        train_idx,
        valid_idx,
        prepared.normalization.clone(),
        prepared.augment,
        args.calibration_batches,
        device,
    )?;

    let bar = indicatif::ProgressBar::new(pairs.len() as u64);
    let mut rows = Vec::with_capacity(pairs.len());
    for (key, arch, standalone) in pairs {
        let blocks = space
            .mobile_blocks(&arch)
            .ok_or_else(|| anyhow::anyhow!("trial {key} is not an inverted-residual chain"))?;
        let (recalibrated, _) = estimator.score_with(&blocks, true)?;
        let (running_stats, _) = estimator.score_with(&blocks, false)?;
        let params = estimator
            .cost(&space, &arch)
            .and_then(|c| c.get("params").copied())
            .unwrap_or(f64::NAN);
        tracing::info!(
            arch = %key,
            standalone = format!("{standalone:.2}"),
            recalibrated = format!("{:.2}", 100.0 * recalibrated),
            running_stats = format!("{:.2}", 100.0 * running_stats),
            "subnet scored"
        );
        rows.push(Row {
            key,
            standalone,
            recalibrated: 100.0 * recalibrated,
            running_stats: 100.0 * running_stats,
            params,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let standalone: Vec<f64> = rows.iter().map(|r| r.standalone).collect();
    let recalibrated: Vec<f64> = rows.iter().map(|r| r.recalibrated).collect();
    let running: Vec<f64> = rows.iter().map(|r| r.running_stats).collect();
    let params: Vec<f64> = rows.iter().map(|r| r.params).collect();
    let result = json!({
        "supernet": args.supernet.display().to_string(),
        "experiment": args.experiment.display().to_string(),
        "metric": args.metric,
        "seed": seed,
        "calibration_batches": args.calibration_batches,
        "architectures": rows.len(),
        "kendall_tau_recalibrated": kendall_tau(&standalone, &recalibrated),
        "kendall_tau_running_stats": kendall_tau(&standalone, &running),
        "kendall_tau_params": kendall_tau(&standalone, &params),
        "spearman_recalibrated": spearman_rho(&standalone, &recalibrated),
        "spearman_running_stats": spearman_rho(&standalone, &running),
        "rows": rows,
    });
    let out = OutputDir::create(&args.output)?;
    out.write_json("rank.json", &result)?;
    let mut csv = String::from("key,standalone,recalibrated,running_stats,params\n");
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            r.key, r.standalone, r.recalibrated, r.running_stats, r.params
        );
    }
    out.write_text("rank.csv", &csv)?;
    out.write_text(
        "rank.svg",
        &scatter_chart(
            "Supernet accuracy against stand-alone accuracy",
            &format!("stand-alone {} (%)", args.metric),
            "supernet validation accuracy (%)",
            &[
                Series {
                    name: "BN recalibrated",
                    points: rows
                        .iter()
                        .map(|r| (r.standalone, r.recalibrated))
                        .collect(),
                },
                Series {
                    name: "supernet running stats",
                    points: rows
                        .iter()
                        .map(|r| (r.standalone, r.running_stats))
                        .collect(),
                },
            ],
            &[],
        ),
    )?;

    let show = |v: Option<f64>| v.map_or_else(|| "undefined".to_string(), |v| format!("{v:.3}"));
    let mut md = String::new();
    let _ = writeln!(md, "# Supernet ranking against stand-alone training\n");
    let _ = writeln!(
        md,
        "- {} architectures of {} ({}), supernet {} (seed {seed})",
        rows.len(),
        args.experiment.display(),
        args.metric,
        args.supernet.display()
    );
    let _ = writeln!(
        md,
        "- Kendall tau, batch norm recalibrated on {} batches: {} (Spearman {})",
        args.calibration_batches,
        show(kendall_tau(&standalone, &recalibrated)),
        show(spearman_rho(&standalone, &recalibrated))
    );
    let _ = writeln!(
        md,
        "- Kendall tau, the supernet's running statistics: {} (Spearman {})",
        show(kendall_tau(&standalone, &running)),
        show(spearman_rho(&standalone, &running))
    );
    let _ = writeln!(
        md,
        "- for comparison, Kendall tau of the parameter count: {}",
        show(kendall_tau(&standalone, &params))
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let _ = writeln!(
        md,
        "- mean accuracy: stand-alone {:.2}%, recalibrated {:.2}%, running statistics {:.2}%",
        mean(&standalone),
        mean(&recalibrated),
        mean(&running)
    );
    let _ = writeln!(md, "\nFiles: rank.csv, rank.json, rank.svg.");
    out.write_text("summary.md", &md)?;
    println!("{md}");
    Ok(())
}

/// Fails unless the experiment trained with the supernet's seed on a training part and a
/// held-out part of the same sizes, which its estimator description records: otherwise the
/// two accuracies come from different images, and the supernet may have trained on the
/// experiment's validation images.
fn check_same_images(
    experiment: &Path,
    dataset: &str,
    seed: u64,
    train: usize,
    valid: usize,
) -> anyhow::Result<()> {
    let path = experiment.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{} is not an experiment configuration: {e}", path.display())
    })?;
    let their_seed = config.get("seed").and_then(serde_json::Value::as_u64);
    let estimator = config
        .pointer("/experiment/estimator")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let expected =
        format!("training from scratch on {dataset} ({train} train / {valid} validation");
    if their_seed != Some(seed) || !estimator.starts_with(&expected) {
        anyhow::bail!(
            "invalid setting `experiment`: {} was not trained on the supernet's data (seed {seed}, \
             `{expected} ...`); it says seed {:?}, `{estimator}`. Run the experiment with \
             --estimator train and the supernet's --seed, --dataset, --subset and --valid-portion",
            experiment.display(),
            their_seed
        );
    }
    Ok(())
}
