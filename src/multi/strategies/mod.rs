//! The strategies: random search, regularized evolution, local search, predictor-guided search
//! and multi-objective (Pareto) evolution.

mod evolution;
mod local;
mod pareto;
mod predictor;
mod random;

pub use evolution::RegularizedEvolution;
pub use local::LocalSearch;
pub use pareto::ParetoEvolution;
pub use predictor::{Acquisition, PredictorConfig, PredictorSearch};
pub use random::RandomSearch;

use rand::Rng;

use super::history::History;
use super::space::{self, Arch, Space};

/// How many draws a strategy makes before it concludes that no unseen architecture is left
/// where it is looking.
pub(crate) const MAX_DRAWS: usize = 10_000;

/// A uniformly drawn architecture that `history` has not seen, or `None` after [`MAX_DRAWS`]
/// draws found only seen ones.
pub(crate) fn fresh_sample(
    space: &dyn Space,
    history: &History,
    rng: &mut impl Rng,
) -> Option<Arch> {
    (0..MAX_DRAWS).find_map(|_| {
        let arch = space::sample(space, rng);
        (!history.seen(&space.key(&arch))).then_some(arch)
    })
}
