//! The concrete search spaces of multi-trial search, each a [`Space`](super::Space):
//! - [`ChoiceSpace`]: named choices read from a JSON or TOML file;
//! - [`Nb201Space`]: the NAS-Bench-201 cell (six edges, five operations);
//! - [`DartsCellSpace`]: DARTS normal and reduction cells, two (operation, input) pairs per node;
//! - [`ChainSpace`]: a plain chain of layers, one operation each;
//! - [`MobileChainSpace`]: the inverted-residual blocks of ProxylessNAS.

mod chain;
mod choices;
mod darts;
mod mobile;
mod nb201;

pub use chain::ChainSpace;
pub use choices::ChoiceSpace;
pub use darts::DartsCellSpace;
pub use mobile::MobileChainSpace;
pub use nb201::{NB201_EDGES, NB201_OPS, Nb201Space};
