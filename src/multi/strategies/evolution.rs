//! Regularized (aging) evolution (Real et al. 2019).

use rand::SeedableRng;
use rand::seq::index::sample as sample_indices;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{MAX_DRAWS, fresh_sample};
use crate::multi::history::{History, Observation};
use crate::multi::space::{self, Arch, Space};
use crate::multi::strategy::Strategy;
use crate::{NasError, Result};

/// Aging evolution with population `population` and tournament size `sample`.
///
/// The population is a queue: the `population` most recent successful evaluations, oldest
/// first. Each child is one mutation of the best of `sample` members drawn uniformly without
/// replacement; once the child is evaluated it joins the back of the queue and the member at
/// the front, the oldest, leaves, whatever its fitness. Until `population` architectures have
/// been proposed, proposals are uniform draws.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegularizedEvolution {
    population: usize,
    sample: usize,
    rng: ChaCha8Rng,
}

impl RegularizedEvolution {
    /// Aging evolution driven by `seed`; errors if the sizes are impossible.
    pub fn new(population: usize, sample: usize, seed: u64) -> Result<Self> {
        if population == 0 {
            return Err(NasError::config("population", "must be at least 1"));
        }
        if sample == 0 || sample > population {
            return Err(NasError::config(
                "sample",
                format!("must be between 1 and the population ({population}), found {sample}"),
            ));
        }
        Ok(RegularizedEvolution {
            population,
            sample,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The current population, oldest first: the last `population` finished evaluations that
    /// have a fitness.
    pub fn members<'h>(&self, history: &'h History) -> Vec<&'h Observation> {
        let alive: Vec<&Observation> = history
            .done
            .iter()
            .filter(|o| o.fitness().is_some())
            .collect();
        let start = alive.len().saturating_sub(self.population);
        alive[start..].to_vec()
    }

    /// The parent a tournament picks: the fittest of `sample` members drawn without
    /// replacement (the first drawn among equals).
    fn tournament<'h>(&mut self, members: &[&'h Observation]) -> &'h Observation {
        let k = self.sample.min(members.len());
        let mut best: Option<&Observation> = None;
        for i in sample_indices(&mut self.rng, members.len(), k) {
            let m = members[i];
            if best.is_none_or(|b| m.fitness() > b.fitness()) {
                best = Some(m);
            }
        }
        best.expect("a tournament of at least one member")
    }
}

impl Strategy for RegularizedEvolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>> {
        let members = self.members(history);
        if history.proposed() < self.population || members.is_empty() {
            return Ok(fresh_sample(space, history, &mut self.rng));
        }
        for _ in 0..MAX_DRAWS {
            let parent = self.tournament(&members);
            if let Some(child) = space::mutate(space, &parent.arch, &mut self.rng)
                && !history.seen(&space.key(&child))
            {
                return Ok(Some(child));
            }
        }
        // Every mutation of the population was seen already: explore elsewhere.
        Ok(fresh_sample(space, history, &mut self.rng))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("evolution state serialises")
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| NasError::config("strategy state", format!("evolution: {e}")))?;
        Ok(())
    }
}
