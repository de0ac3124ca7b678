//! `nas compare`: several multi-trial strategies over many seeds, side by side.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use nasrs::multi::experiment::{ExperimentSpec, history_of, run_in_memory};
use nasrs::multi::trajectory::{MeanSe, expected_max_without_replacement, incumbents};
use nasrs::multi::{Estimator, Space};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, line_chart};
use rayon::prelude::*;
use serde::Serialize;

use super::common::{DataArgs, DeviceArgs};
use super::multi::{
    MultiArgs, StrategyKind, TrialTraining, build_estimator, build_scoring, build_space,
    build_strategy, strategy_seed,
};

/// Options of `nas compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Strategies to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "random,evolution,predictor"
    )]
    strategies: Vec<StrategyKind>,
    /// Number of seeds per strategy (seeds --first-seed, --first-seed + 1, ...).
    #[arg(long, default_value_t = 100)]
    seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Evaluation counts at which the summary table reports mean +- standard error (those
    /// above --budget are left out; the budget itself is always reported).
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,500")]
    at: Vec<usize>,
    #[command(flatten)]
    multi: MultiArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// With --estimator train: cells of each trial's network.
    #[arg(long, default_value_t = 5)]
    cells: usize,
    /// With --estimator train: initial channels.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Intermediate nodes of the darts space.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// With --estimator train: the most epochs of each trial.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// With --estimator train: batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// With --estimator train: learning rate.
    #[arg(long, default_value_t = 0.025)]
    lr: f64,
    /// Output directory.
    #[arg(long, default_value = "runs/compare")]
    output: PathBuf,
    /// Replace a comparison already in --output.
    #[arg(long)]
    overwrite: bool,
}

/// One strategy's result over all seeds.
#[derive(Serialize)]
struct StrategyResult {
    strategy: &'static str,
    seconds: f64,
    /// Per seed, the reported metric of the incumbent after each evaluation.
    #[serde(skip)]
    curves: Vec<Vec<f64>>,
    /// Mean and standard error after each evaluation count.
    stats: Vec<MeanSe>,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    if args.seeds == 0 {
        anyhow::bail!("invalid setting `seeds`: must be at least 1");
    }
    if args.strategies.contains(&StrategyKind::Darts) {
        anyhow::bail!(
            "invalid setting `strategies`: darts is not a multi-trial strategy; choose among \
             random, evolution, local, predictor, pareto"
        );
    }
    let budget = args.multi.budget;
    if budget == 0 {
        anyhow::bail!("invalid setting `budget`: must be at least 1");
    }
    let training = TrialTraining {
        cells: args.cells,
        channels: args.channels,
        nodes: args.nodes,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
    };
    let space = build_space(&args.multi, args.nodes)?;
    let estimator = build_estimator(
        &args.multi,
        space.as_ref(),
        &args.data,
        &args.device,
        &training,
        args.first_seed,
    )?;
    let scoring = build_scoring(&args.multi, estimator.as_ref())?;
    let first = scoring.objectives[0].clone();
    let reported = if estimator.metrics().iter().any(|m| m == "test_accuracy") {
        "test_accuracy".to_string()
    } else {
        first.metric.clone()
    };
    if args.output.join("summary.md").exists() && !args.overwrite {
        anyhow::bail!(
            "invalid setting `output`: {} already holds results: pass --overwrite to replace \
             them, or choose another --output",
            args.output.display()
        );
    }
    let out = OutputDir::create(&args.output)?;

    let mut results = Vec::new();
    for &kind in &args.strategies {
        let started = Instant::now();
        let bar = indicatif::ProgressBar::new(args.seeds as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} seeds {eta}")
                .expect("valid template"),
        );
        bar.set_message(kind.name());
        let curves = (0..args.seeds as u64)
            .into_par_iter()
            .map(|i| {
                let seed = args.first_seed + i;
                let curve = one_seed(
                    kind,
                    &args.multi,
                    space.as_ref(),
                    estimator.as_ref(),
                    &scoring,
                    &reported,
                    seed,
                );
                bar.inc(1);
                curve
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let stats = (0..budget)
            .map(|e| {
                let values: Vec<f64> = curves
                    .iter()
                    .map(|c| c[e])
                    .filter(|v| v.is_finite())
                    .collect();
                MeanSe::of(&values).unwrap_or(MeanSe {
                    mean: f64::NAN,
                    se: f64::NAN,
                    std: f64::NAN,
                    n: 0,
                })
            })
            .collect();
        tracing::info!(
            strategy = kind.name(),
            seeds = args.seeds,
            budget,
            seconds = format!("{seconds:.2}"),
            "strategy done"
        );
        results.push(StrategyResult {
            strategy: kind.name(),
            seconds,
            curves,
            stats,
        });
    }

    let exact_random = exact_random_expectation(&args, &reported, &first.metric, budget)?;
    let mut at: Vec<usize> = args
        .at
        .iter()
        .copied()
        .filter(|&a| a >= 1 && a <= budget)
        .collect();
    at.push(budget);
    at.sort_unstable();
    at.dedup();
    write_outputs(
        &out,
        &args,
        &results,
        &at,
        exact_random.as_deref(),
        &reported,
        estimator.as_ref(),
    )?;
    Ok(())
}

/// The reported metric of the incumbent after each evaluation of one run (the last value
/// repeated when the strategy stops early; NaN before the first success).
fn one_seed(
    kind: StrategyKind,
    args: &MultiArgs,
    space: &dyn Space,
    estimator: &dyn Estimator,
    scoring: &nasrs::multi::Scoring,
    reported: &str,
    seed: u64,
) -> anyhow::Result<Vec<f64>> {
    let strategy = build_strategy(kind, args, strategy_seed(seed))?;
    let trials = run_in_memory(ExperimentSpec {
        space,
        estimator,
        strategy,
        scoring: scoring.clone(),
        budget: args.budget,
        seed,
    })?;
    let history = history_of(&trials);
    let mut curve: Vec<f64> = incumbents(&history, reported)
        .into_iter()
        .map(|p| p.reported.unwrap_or(f64::NAN))
        .collect();
    let last = curve.last().copied().unwrap_or(f64::NAN);
    curve.resize(args.budget, last);
    Ok(curve)
}

/// For a NAS-Bench-201 table whose selection metric is the reported one, the exact expected
/// best of n uniform draws without repeats, for every n up to the budget.
fn exact_random_expectation(
    args: &CompareArgs,
    reported: &str,
    selection: &str,
    budget: usize,
) -> anyhow::Result<Option<Vec<f64>>> {
    if args.multi.estimator != "nb201" || reported != selection {
        return Ok(None);
    }
    let path = match &args.multi.table {
        Some(p) => p.clone(),
        None => {
            let dir = args.data.data_dir.clone().unwrap_or_default();
            let nested = dir
                .join("nas-bench-201")
                .join("nats_bench_tss_200ep_test_acc.csv");
            if nested.is_file() {
                nested
            } else {
                dir.join("nats_bench_tss_200ep_test_acc.csv")
            }
        }
    };
    let table = nasrs::multi::tabular::TableEstimator::nb201(&path, args.multi.benchmark.parse()?)?;
    let values: Vec<f64> = (0..table.len())
        .filter_map(|i| table.value(i, reported))
        .collect();
    Ok(Some(
        (1..=budget.min(values.len()))
            .map(|n| expected_max_without_replacement(&values, n))
            .collect(),
    ))
}

fn write_outputs(
    out: &OutputDir,
    args: &CompareArgs,
    results: &[StrategyResult],
    at: &[usize],
    exact_random: Option<&[f64]>,
    reported: &str,
    estimator: &dyn Estimator,
) -> anyhow::Result<()> {
    let mut csv = String::from("strategy,evaluations,mean,se,std,seeds\n");
    for r in results {
        for (e, s) in r.stats.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{}",
                r.strategy,
                e + 1,
                s.mean,
                s.se,
                s.std,
                s.n
            );
        }
    }
    if let Some(exact) = exact_random {
        for (e, v) in exact.iter().enumerate() {
            let _ = writeln!(csv, "random-exact,{},{v},0,0,0", e + 1);
        }
    }
    out.write_text("trajectory.csv", &csv)?;
    let json: Vec<serde_json::Value> = results
        .iter()
        .map(|r| serde_json::json!({ "strategy": r.strategy, "seconds": r.seconds, "stats": r.stats }))
        .collect();
    out.write_json("trajectory.json", &json)?;

    let mut finals = String::from("strategy,seed");
    for a in at {
        let _ = write!(finals, ",at_{a}");
    }
    finals.push('\n');
    for r in results {
        for (i, c) in r.curves.iter().enumerate() {
            let _ = write!(finals, "{},{}", r.strategy, args.first_seed + i as u64);
            for &a in at {
                let _ = write!(finals, ",{}", c[a - 1]);
            }
            finals.push('\n');
        }
    }
    out.write_text("finals.csv", &finals)?;

    let mut series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.strategy,
            points: r
                .stats
                .iter()
                .enumerate()
                .map(|(e, s)| ((e + 1) as f64, s.mean))
                .collect(),
        })
        .collect();
    if let Some(exact) = exact_random {
        series.push(Series {
            name: "random, exact expectation",
            points: exact
                .iter()
                .enumerate()
                .map(|(e, &v)| ((e + 1) as f64, v))
                .collect(),
        });
    }
    out.write_text(
        "trajectory.svg",
        &line_chart(
            &format!("mean best {reported} over {} seeds", args.seeds),
            "evaluations",
            reported,
            &series,
        ),
    )?;

    let mut md = String::new();
    let _ = writeln!(md, "# Strategy comparison\n");
    let _ = writeln!(md, "- space: {}", args.multi.space);
    let _ = writeln!(md, "- estimator: {}", estimator.describe());
    let _ = writeln!(
        md,
        "- seeds: {} (from {}), budget {} evaluations each",
        args.seeds, args.first_seed, args.multi.budget
    );
    let _ = writeln!(
        md,
        "- value: {reported} of the incumbent (best by the first objective)"
    );
    if estimator.selection_metric().1 {
        let _ = writeln!(
            md,
            "- selection is by test accuracy because the table holds no validation accuracy: an \
             oracle setting, not a held-out estimate"
        );
    }
    md.push('\n');
    let _ = write!(md, "| strategy |");
    for a in at {
        let _ = write!(md, " {a} evaluations |");
    }
    let _ = write!(md, " time (s) |\n|---|");
    for _ in at {
        md.push_str("---|");
    }
    md.push_str("---|\n");
    for r in results {
        let _ = write!(md, "| {} |", r.strategy);
        for &a in at {
            let s = r.stats[a - 1];
            let _ = write!(md, " {:.3} ± {:.3} (sd {:.2}) |", s.mean, s.se, s.std);
        }
        let _ = writeln!(md, " {:.2} |", r.seconds);
    }
    if let Some(exact) = exact_random {
        let _ = write!(md, "| random, exact expectation |");
        for &a in at {
            match exact.get(a - 1) {
                Some(v) => {
                    let _ = write!(md, " {v:.3} |");
                }
                None => md.push_str(" - |"),
            }
        }
        md.push_str(" |\n");
    }
    let _ = writeln!(
        md,
        "\nmean ± standard error of the mean over seeds (sd: standard deviation across seeds). \
         Files: trajectory.csv and trajectory.json (mean curve per strategy), finals.csv (every seed at the reported \
         counts), trajectory.svg."
    );
    out.write_text("summary.md", &md)?;
    out.write_json(
        "config.json",
        &serde_json::json!({
            "command": "compare",
            "nasrs_version": env!("CARGO_PKG_VERSION"),
            "strategies": results.iter().map(|r| r.strategy).collect::<Vec<_>>(),
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "budget": args.multi.budget,
            "space": args.multi.space,
            "estimator": estimator.describe(),
            "population": args.multi.population,
            "sample": args.multi.sample,
            "initial": args.multi.initial,
            "acquisition": args.multi.acquisition,
            "seconds": results.iter().map(|r| (r.strategy, r.seconds)).collect::<Vec<_>>(),
        }),
    )?;
    println!("{md}");
    Ok(())
}
