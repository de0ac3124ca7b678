//! Command-line parsing and the subcommands.

mod bench;
mod common;
mod compare;
mod latency;
mod multi;
mod ofa;
mod proxyless;
mod rank;
mod search;
mod show;
mod spos;
mod train;
mod trials;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Neural architecture search: find a cell with DARTS, train it, inspect genotypes.
#[derive(Parser, Debug)]
#[command(name = "nas", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Search: a cell with first-order DARTS (default), or whole architectures with a
    /// multi-trial strategy (random, evolution, local, predictor, pareto).
    #[command(allow_negative_numbers = true)]
    Search(search::SearchArgs),
    /// Run several multi-trial strategies over many seeds and compare their best-so-far curves.
    #[command(allow_negative_numbers = true)]
    Compare(compare::CompareArgs),
    /// Train the network built from a genotype from scratch and report its test accuracy.
    #[command(allow_negative_numbers = true)]
    Train(train::TrainArgs),
    /// Print a genotype as a cell graph with the parameter count of its network.
    Show(show::ShowArgs),
    /// Time one DARTS search step (forward, forward + backward, full bi-level step).
    #[command(allow_negative_numbers = true)]
    Bench(bench::BenchArgs),
    /// ProxylessNAS: search the inverted-residual space for an accurate network within a
    /// latency target, time the result, optionally retrain it from scratch.
    #[command(allow_negative_numbers = true)]
    Proxyless(proxyless::ProxylessArgs),
    /// Single-path one-shot: train a supernet (inverted-residual chain or DARTS cells) once
    /// with one uniformly sampled path per batch, for searches with `--estimator supernet:DIR`.
    #[command(allow_negative_numbers = true)]
    Spos(spos::SposArgs),
    /// Once-for-All: train an elastic network by progressive shrinking, then find a subnet for
    /// each latency budget with an accuracy predictor and evolution, and measure it.
    #[command(allow_negative_numbers = true)]
    Ofa(ofa::OfaArgs),
    /// Score the trials of a stand-alone experiment with a supernet (with and without batch-norm
    /// recalibration) and report the rank correlations.
    Rank(rank::RankArgs),
    /// Measure the latency of every operation of the inverted-residual space on this machine
    /// and check the summed prediction against whole random networks.
    LatencyTable(latency::LatencyArgs),
    /// List the trials of an experiment directory: status, objective metrics, seconds, seed,
    /// key and error of each.
    Trials(trials::TrialsArgs),
}

/// Logs to stderr at `info` by default.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Search(args) => search::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Train(args) => train::run(args),
        Command::Show(args) => show::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Trials(args) => trials::run(args),
        Command::LatencyTable(args) => latency::run(args),
        Command::Proxyless(args) => proxyless::run(args),
        Command::Spos(args) => spos::run(args),
        Command::Ofa(args) => ofa::run(args),
        Command::Rank(args) => rank::run(args),
    }
}
