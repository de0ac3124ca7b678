//! `nas latency-table`: measure the latency of every operation of the inverted-residual space
//! on this machine, and check the sum-of-operations predictor on whole random networks.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nasrs::latency::measure::processor_name;
use nasrs::latency::{
    LatencySettings, LatencyTable, Protocol, Validated, measure_network, measure_table,
    on_timing_pool, quantile, validate_table,
};
use nasrs::report::OutputDir;
use nasrs::report::svg::{Series, scatter_chart};
use nasrs::space::mobile::MobileSpace;

/// Options of `nas latency-table`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Output directory.
    #[arg(long, default_value = "runs/latency")]
    output: PathBuf,
    /// Validate an existing table instead of measuring a new one.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Compute device: auto, flex (CPU), cuda, cuda:N, wgpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads of the flex backend, fixed for every measurement.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Untimed runs before timing each operation or network.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed runs of each operation or network; the median is kept.
    #[arg(long, default_value_t = 30)]
    repeats: usize,
    /// Architectures to time and compare with the table's prediction (`k3e6-skip-...`, one
    /// choice per block); repeat the flag for several. Implies no random validation unless
    /// --validate is given as well.
    #[arg(long = "arch")]
    archs: Vec<String>,
    /// Random architectures whose measured latency is compared with the prediction (default
    /// 50, or 0 when --arch is given).
    #[arg(long)]
    validate: Option<usize>,
    /// Replace a table already in the output directory.
    #[arg(long)]
    overwrite: bool,
    /// Seed of the random architectures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image channels of the space.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    /// Image side of the space.
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// Classes of the space.
    #[arg(long, default_value_t = 10)]
    classes: usize,
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

pub fn run(args: LatencyArgs) -> anyhow::Result<()> {
    nasrs::device::set_threads(args.threads)?;
    let device = nasrs::device::select(&args.device)?;
    let protocol = Protocol {
        warmup: args.warmup,
        repeats: args.repeats,
    };
    protocol.check()?;
    let settings = LatencySettings {
        device: nasrs::device::resolved_name(&args.device),
        processor: processor_name(),
        threads: args.threads,
        batch_size: args.batch_size,
    };
    let space = MobileSpace::cifar(args.in_channels, args.image_size, args.classes);
    space.check()?;
    if args.table.is_none() {
        // Bad keys fail before the table is measured.
        for key in &args.archs {
            space.parse(key)?;
        }
    }
    let out = OutputDir::create(&args.output)?;
    if args.table.is_none() && out.path("latency_table.json").exists() && !args.overwrite {
        anyhow::bail!(
            "invalid setting `output`: {} holds a latency table (runs may depend on it): pass \
             --overwrite to replace it, or choose another --output",
            out.root().display()
        );
    }

    let table = match &args.table {
        Some(path) => {
            let table = LatencyTable::load(path)?;
            // The table's space and batch size are used; the run's threads and protocol.
            let differences = table.mismatches(&settings, &table.space);
            if !differences.is_empty() {
                tracing::warn!(
                    table = %path.display(),
                    "the table was measured under other settings: {}; networks are timed at \
                     the table's batch size and image shape (--batch-size and the space flags \
                     do not apply to an existing table) with this run's threads",
                    differences.join(", ")
                );
            }
            table
        }
        None => {
            let shapes = space.blocks().len();
            let progress = bar(shapes * 6 + 2, "latency table entries");
            let table = on_timing_pool(args.threads, || {
                measure_table(&space, settings.clone(), protocol, &device, |e| {
                    progress.set_message(format!("{} {}->{}", e.op, e.c_in, e.c_out));
                    progress.inc(1);
                })
            })??;
            progress.finish_and_clear();
            let path = out.path("latency_table.json");
            table.save(&path)?;
            out.write_text("latency_table.csv", &entries_csv(&table))?;
            tracing::info!(
                entries = table.entries.len(),
                table = %path.display(),
                "latency table written"
            );
            table
        }
    };

    let archs = args
        .archs
        .iter()
        .map(|key| Ok((key.trim().to_string(), table.space.parse(key)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !archs.is_empty() {
        let mut text =
            String::from("arch,predicted_ms,measured_ms,measured_p10_ms,measured_p90_ms\n");
        for (key, arch) in &archs {
            let predicted = table.predict(arch)?;
            let measured = on_timing_pool(args.threads, || {
                measure_network(
                    &table.space,
                    arch,
                    table.settings.batch_size,
                    protocol,
                    &device,
                )
            })??;
            println!(
                "{key}: predicted {predicted:.3} ms, measured {:.3} ms (p10 {:.3}, p90 {:.3})",
                measured.median_ms, measured.p10_ms, measured.p90_ms
            );
            let _ = writeln!(
                text,
                "{key},{predicted:.6},{:.6},{:.6},{:.6}",
                measured.median_ms, measured.p10_ms, measured.p90_ms
            );
        }
        out.write_text("latency_archs.csv", &text)?;
    }
    let validate = args
        .validate
        .unwrap_or(if args.archs.is_empty() { 50 } else { 0 });
    if validate > 0 {
        let progress = bar(validate, "timing networks");
        let results = on_timing_pool(args.threads, || {
            validate_table(&table, validate, args.seed, protocol, &device, |v| {
                progress.set_message(format!("{:+.1}%", 100.0 * v.relative_error()));
                progress.inc(1);
            })
        })?
        .context("validating the latency table")?;
        progress.finish_and_clear();
        write_validation(&out, &table, &results, args.seed, protocol, args.threads)?;
    }
    Ok(())
}

fn entries_csv(table: &LatencyTable) -> String {
    let mut text = String::from("op,c_in,c_out,stride,input_size,median_ms,p10_ms,p90_ms,runs\n");
    for e in &table.entries {
        let t = e.timing;
        let _ = writeln!(
            text,
            "{},{},{},{},{},{:.6},{:.6},{:.6},{}",
            e.op, e.c_in, e.c_out, e.stride, e.input_size, t.median_ms, t.p10_ms, t.p90_ms, t.runs
        );
    }
    text
}

/// Median and 90th percentile of the absolute relative errors, in percent.
pub fn error_summary(results: &[Validated]) -> (f64, f64) {
    let mut errors: Vec<f64> = results.iter().map(|v| v.relative_error().abs()).collect();
    errors.sort_by(f64::total_cmp);
    (
        100.0 * quantile(&errors, 0.5),
        100.0 * quantile(&errors, 0.9),
    )
}

fn write_validation(
    out: &OutputDir,
    table: &LatencyTable,
    results: &[Validated],
    seed: u64,
    protocol: Protocol,
    threads: usize,
) -> anyhow::Result<()> {
    let mut csv = String::from(
        "arch,predicted_ms,measured_ms,measured_p10_ms,measured_p90_ms,relative_error\n",
    );
    for v in results {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6}",
            v.arch,
            v.predicted_ms,
            v.measured.median_ms,
            v.measured.p10_ms,
            v.measured.p90_ms,
            v.relative_error()
        );
    }
    out.write_text("latency_validation.csv", &csv)?;

    let (median, p90) = error_summary(results);
    let bias = {
        let mut signed: Vec<f64> = results.iter().map(Validated::relative_error).collect();
        signed.sort_by(f64::total_cmp);
        100.0 * quantile(&signed, 0.5)
    };
    let measured = |f: fn(f64, f64) -> f64, start: f64| {
        results.iter().map(|v| v.measured.median_ms).fold(start, f)
    };
    let (measured_low, measured_high) =
        (measured(f64::min, f64::MAX), measured(f64::max, f64::MIN));
    let low = results
        .iter()
        .map(|v| v.predicted_ms)
        .fold(measured_low, f64::min);
    let high = results
        .iter()
        .map(|v| v.predicted_ms)
        .fold(measured_high, f64::max);
    let svg = scatter_chart(
        "Predicted against measured latency",
        "measured (ms)",
        "predicted (ms)",
        &[
            Series {
                name: "random architectures",
                points: results
                    .iter()
                    .map(|v| (v.measured.median_ms, v.predicted_ms))
                    .collect(),
            },
            Series {
                name: "predicted = measured",
                points: vec![(low, low), (high, high)],
            },
        ],
        &[1],
    );
    out.write_text("latency_validation.svg", &svg)?;

    let s = &table.settings;
    let mut md = String::new();
    let _ = writeln!(md, "# Latency table check\n");
    let _ = writeln!(
        md,
        "{} random architectures (seed {seed}) of the inverted-residual space, each timed as a \
         whole network ({} warm-up runs, median of {} runs) and predicted as the sum of the \
         table's medians.\n",
        results.len(),
        protocol.warmup,
        protocol.repeats
    );
    let _ = writeln!(md, "- device `{}`, processor {}", s.device, s.processor);
    let _ = writeln!(
        md,
        "- threads {threads} (the table: {}), batch size {}",
        s.threads, s.batch_size
    );
    let _ = writeln!(md, "- median absolute relative error: {median:.2}%");
    let _ = writeln!(
        md,
        "- 90th percentile of the absolute relative error: {p90:.2}%"
    );
    let _ = writeln!(
        md,
        "- median signed error (prediction minus measurement): {bias:+.2}%"
    );
    let _ = writeln!(
        md,
        "- measured latencies from {measured_low:.3} to {measured_high:.3} ms"
    );
    out.write_text("latency_summary.md", &md)?;
    tracing::info!(
        architectures = results.len(),
        median_error_percent = format!("{median:.2}"),
        p90_error_percent = format!("{p90:.2}"),
        "latency predictor checked; see latency_summary.md and latency_validation.svg"
    );
    Ok(())
}
