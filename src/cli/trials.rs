//! `nas trials DIR`: the trials of an experiment store as a table, readable while workers are
//! still writing to it.

use std::path::PathBuf;

use clap::Args;
use nasrs::multi::experiment::{history_of, list_trials, metric_values};
use nasrs::multi::store::{Trial, TrialStatus};

/// Options of `nas trials`.
#[derive(Args, Debug)]
pub struct TrialsArgs {
    /// Experiment directory (the one holding experiment.sqlite).
    dir: PathBuf,
    /// Show only trials with this status: pending, running, done or failed.
    #[arg(long)]
    status: Option<String>,
}

pub fn run(args: TrialsArgs) -> anyhow::Result<()> {
    let status: Option<TrialStatus> = args.status.as_deref().map(str::parse).transpose()?;
    let (config, trials) = list_trials(&args.dir)?;
    let metrics: Vec<String> = config
        .scoring
        .objectives
        .iter()
        .map(|o| o.metric.clone())
        .chain(config.scoring.constraints.iter().map(|c| c.metric.clone()))
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        });

    let count = |s: TrialStatus| trials.iter().filter(|t| t.status == s).count();
    println!(
        "{}: {} on {} ({} genes), {}, budget {}, seed {}",
        args.dir.display(),
        config.strategy,
        config.space,
        config.genes.len(),
        config.estimator,
        config.budget,
        config.seed
    );
    println!(
        "{} done, {} failed, {} running, {} pending",
        count(TrialStatus::Done),
        count(TrialStatus::Failed),
        count(TrialStatus::Running),
        count(TrialStatus::Pending)
    );
    println!();

    let mut header: Vec<String> = vec!["id".into(), "status".into()];
    header.extend(metrics.iter().cloned());
    header.extend(["seconds", "seed", "key", "error"].map(String::from));
    let rows: Vec<Vec<String>> = trials
        .iter()
        .filter(|t| status.is_none_or(|s| t.status == s))
        .map(|t| row(t, &metrics))
        .collect();
    print_table(&header, &rows);

    if let Some(best) = history_of(&trials).best() {
        println!();
        println!("best by {}: {}", config.scoring.objectives[0], best.key);
    }
    Ok(())
}

fn row(trial: &Trial, metrics: &[String]) -> Vec<String> {
    let mut cells = vec![trial.id.to_string(), trial.status.to_string()];
    cells.extend(
        metric_values(trial, metrics)
            .into_iter()
            .map(|v| v.map_or_else(|| "-".to_string(), format_number)),
    );
    cells.push(
        trial
            .seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}")),
    );
    cells.push(trial.seed.to_string());
    cells.push(trial.key.clone());
    cells.push(trial.error.clone().unwrap_or_default());
    cells
}

/// Four significant digits after the point for small values, none wasted on large counts.
fn format_number(value: f64) -> String {
    if value.abs() >= 1e5 && value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

/// Columns left-aligned to their widest cell; the last column is not padded.
fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let last = cells.len() - 1;
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header);
    for row in rows {
        line(row);
    }
}
