//! The optimiser of network weights shared by search and training.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};

/// SGD with momentum and L2 weight decay with PyTorch's semantics, which the DARTS reference
/// code relies on: no dampening (burn's default dampens by 0.1).
pub fn sgd(momentum: f64, weight_decay: f64) -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(momentum)
                .with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)))
        .init()
}
