//! Multi-objective evolution: NSGA-II selection (non-dominated sorting, then crowding distance)
//! with single-gene mutation as the variation operator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{MAX_DRAWS, fresh_sample};
use crate::multi::history::{History, Observation};
use crate::multi::pareto::{crowding_distance, fronts};
use crate::multi::space::{self, Arch, Space};
use crate::multi::strategy::Strategy;
use crate::{NasError, Result};

/// NSGA-II-style search over every objective of the scoring.
///
/// The first `population` proposals are uniform draws. After that the population is the best
/// `population` of all successful evaluations, ranked by front (feasible before infeasible)
/// and, within a front, by crowding distance; a parent is the winner of a binary tournament
/// on (front, crowding) and the child is one mutation of it. The result of the search is the
/// non-dominated set of everything evaluated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParetoEvolution {
    population: usize,
    rng: ChaCha8Rng,
}

/// Front and crowding of each member of a ranked population.
struct Ranked<'h> {
    members: Vec<&'h Observation>,
    front: Vec<usize>,
    crowding: Vec<f64>,
}

impl ParetoEvolution {
    /// Pareto evolution driven by `seed`.
    pub fn new(population: usize, seed: u64) -> Result<Self> {
        if population < 2 {
            return Err(NasError::config(
                "population",
                format!("must be at least 2 for binary tournaments, found {population}"),
            ));
        }
        Ok(ParetoEvolution {
            population,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    fn rank<'h>(&self, history: &'h History) -> Ranked<'h> {
        let scored: Vec<&Observation> = history.done.iter().filter(|o| o.score.is_some()).collect();
        let points: Vec<Vec<f64>> = scored
            .iter()
            .map(|o| o.score.as_ref().expect("filtered").values.clone())
            .collect();
        let feasible: Vec<bool> = scored
            .iter()
            .map(|o| o.score.as_ref().expect("filtered").feasible)
            .collect();
        // Feasible points are sorted among themselves; infeasible ones come after all of them.
        let mut front = vec![0; scored.len()];
        for group in [true, false] {
            let idx: Vec<usize> = (0..scored.len())
                .filter(|&i| feasible[i] == group)
                .collect();
            let sub: Vec<Vec<f64>> = idx.iter().map(|&i| points[i].clone()).collect();
            let offset = if group { 0 } else { scored.len() };
            for (k, f) in fronts(&sub).into_iter().enumerate() {
                front[idx[k]] = f + offset;
            }
        }
        let mut crowding = vec![0.0; scored.len()];
        let mut levels: Vec<usize> = front.clone();
        levels.sort_unstable();
        levels.dedup();
        for level in levels {
            let members: Vec<usize> = (0..scored.len()).filter(|&i| front[i] == level).collect();
            for (k, d) in crowding_distance(&points, &members).into_iter().enumerate() {
                crowding[members[k]] = d;
            }
        }
        let mut order: Vec<usize> = (0..scored.len()).collect();
        order.sort_by(|&a, &b| {
            front[a]
                .cmp(&front[b])
                .then(crowding[b].total_cmp(&crowding[a]))
                .then(a.cmp(&b))
        });
        order.truncate(self.population);
        Ranked {
            members: order.iter().map(|&i| scored[i]).collect(),
            front: order.iter().map(|&i| front[i]).collect(),
            crowding: order.iter().map(|&i| crowding[i]).collect(),
        }
    }
}

impl Strategy for ParetoEvolution {
    fn name(&self) -> &'static str {
        "pareto"
    }

    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>> {
        let ranked = self.rank(history);
        if history.proposed() < self.population || ranked.members.is_empty() {
            return Ok(fresh_sample(space, history, &mut self.rng));
        }
        let n = ranked.members.len();
        for _ in 0..MAX_DRAWS {
            let a = self.rng.random_range(0..n);
            let b = self.rng.random_range(0..n);
            let better = |x: usize, y: usize| {
                ranked.front[x] < ranked.front[y]
                    || (ranked.front[x] == ranked.front[y]
                        && ranked.crowding[x] > ranked.crowding[y])
            };
            let winner = if better(b, a) { b } else { a };
            if let Some(child) = space::mutate(space, &ranked.members[winner].arch, &mut self.rng)
                && !history.seen(&space.key(&child))
            {
                return Ok(Some(child));
            }
        }
        Ok(fresh_sample(space, history, &mut self.rng))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("pareto state serialises")
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| NasError::config("strategy state", format!("pareto: {e}")))?;
        Ok(())
    }
}
