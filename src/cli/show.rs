//! `nas show`: a genotype as a readable cell graph, with the parameter count of its network.

use clap::Args;
use nasrs::nn::{Network, NetworkConfig, ParamInit};

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
    // Counting needs only shapes; building on the plain CPU device keeps it cheap.
    let device = nasrs::device::select("auto")?.without_autodiff();
    let network = Network::new(&config, &genotype, &mut ParamInit::new(0, &device))?;
    let auxiliary = network.auxiliary_params();
    let total = nasrs::nn::count_parameters(&network);
    println!();
    println!(
        "network of {} cells, {} initial channels, {} classes: {} parameters ({} with the auxiliary head)",
        args.cells,
        args.channels,
        args.classes,
        total - auxiliary,
        total
    );
    Ok(())
}
