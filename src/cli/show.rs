//! `nas show`: a genotype as a readable cell graph, with the parameter and multiply-accumulate
//! counts of its network.

use clap::Args;
use nasrs::cost::{self, Resolution};
use nasrs::nn::NetworkConfig;

use super::train::load_genotype;

/// Options of `nas show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Genotype file (JSON or DARTS text), or darts-v1 / darts-v2.
    genotype: String,
    /// Cells of the network to count.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    /// Initial channels of the network to count.
    #[arg(long, default_value_t = 36)]
    channels: usize,
    /// Classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Image channels.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    /// Side of the (square) input images, which the multiply-accumulate count depends on.
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// Print the genotype as JSON instead of the cell graph.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ShowArgs) -> anyhow::Result<()> {
    let genotype = load_genotype(&args.genotype)?;
    if args.json {
        println!("{}", genotype.to_json_string());
        return Ok(());
    }
    println!("{}", genotype.to_darts_text());
    println!();
    print!("{}", genotype.render());
    let config = NetworkConfig {
        in_channels: args.in_channels,
        num_classes: args.classes,
        channels: args.channels,
        cells: args.cells,
        auxiliary: args.cells >= 3,
        stem_multiplier: 3,
    };
    // Counted from shapes: the network is never built.
    let input = Resolution::square(args.image_size)?;
    let cost = cost::network(&config, &genotype, input)?;
    let (network, total) = (cost.network, cost.total());
    println!();
    println!(
        "network of {} cells, {} initial channels, {} classes: {} parameters ({} with the auxiliary head)",
        args.cells, args.channels, args.classes, network.params, total.params
    );
    println!(
        "per {input} image: {} MACs, {} FLOPs (2 x MACs; convolutions and linear layers only); \
         {} MACs with the auxiliary head",
        network.macs,
        network.flops(),
        total.macs
    );
    Ok(())
}
