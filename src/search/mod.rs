//! Search strategies. DARTS: differentiable search by gradient descent on a continuous
//! relaxation of the cell space.

pub mod darts;
pub mod derive_capped;
pub mod ofa;
pub mod ofa_search;
pub mod proxyless;
pub mod spos;
pub mod spos_cell;

pub use darts::{DartsConfig, DartsData, DartsOutcome, EpochRecord, Resumable, search};
pub use derive_capped::derive_with_skip_cap;
