//! `nas bench`: time one DARTS search step.

use clap::Args;
use nasrs::bench::{BenchConfig, run as run_bench};

use super::common::DeviceArgs;

/// Options of `nas bench`. The defaults are the network of the PyTorch peer benchmark.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Cells.
    #[arg(long, default_value_t = 5)]
    cells: usize,
    /// Initial channels.
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let config = BenchConfig {
        cells: args.cells,
        channels: args.channels,
        batch: args.batch,
        size: args.size,
        warmup: args.warmup,
        iters: args.iters,
        seed: args.seed,
    };
    let result = run_bench(&config, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
