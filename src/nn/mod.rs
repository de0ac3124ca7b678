//! Operations and networks as burn modules: layers with seeded initialisation, the eight DARTS
//! operations, the search network with mixed edges and the network built from a genotype.

pub mod batch_norm;
pub mod conv;
pub mod elastic;
pub mod init;
pub mod layout;
pub mod linear;
pub mod mixed;
pub mod mobile;
pub mod network;
pub mod ops;
pub mod saved;
pub mod search_network;

pub use init::ParamInit;
pub use network::{Network, NetworkConfig, NetworkOutput};
pub use search_network::{SearchNetwork, SearchNetworkConfig};

/// Number of trainable parameters of `module`: every float parameter except batch-norm running
/// statistics, which burn stores as module state next to the parameters but which no optimiser
/// updates and no paper counts.
pub fn count_parameters<M: burn::module::Module>(module: &M) -> usize {
    let mut counter = ParameterCounter::default();
    module.visit(&mut counter);
    counter.count
}

#[derive(Default)]
struct ParameterCounter {
    path: Vec<String>,
    count: usize,
}

impl burn::module::ModuleVisitor for ParameterCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::prelude::Tensor<D>>,
    ) {
        let running = matches!(
            self.path.last().map(String::as_str),
            Some("running_mean" | "running_var")
        );
        if !running {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

/// Reads every tensor of `module` (parameters and running statistics) into memory. burn's
/// file records are read lazily, on a tensor's first use; a module loaded from a checkpoint
/// that is then replaced or removed would fail at the first use of a tensor not touched before.
pub fn read_into_memory<M: burn::module::Module>(module: &M) {
    module.visit(&mut TouchEveryTensor);
}

struct TouchEveryTensor;

impl burn::module::ModuleVisitor for TouchEveryTensor {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::prelude::Tensor<D>>,
    ) {
        drop(param.val().into_data());
    }
}

/// Every trainable parameter of `module` (batch-norm running statistics excluded) with its path
/// (`cells.0.edges.3...`), id and values read back to the host; for tests and inspection.
pub fn named_parameters<M: burn::module::Module>(
    module: &M,
) -> Vec<(String, burn::module::ParamId, Vec<f32>)> {
    let mut collector = NamedParameters::default();
    module.visit(&mut collector);
    collector.params
}

#[derive(Default)]
struct NamedParameters {
    path: Vec<String>,
    params: Vec<(String, burn::module::ParamId, Vec<f32>)>,
}

impl burn::module::ModuleVisitor for NamedParameters {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::prelude::Tensor<D>>,
    ) {
        if matches!(
            self.path.last().map(String::as_str),
            Some("running_mean" | "running_var")
        ) {
            return;
        }
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        self.params.push((self.path.join("."), param.id, values));
    }
}
