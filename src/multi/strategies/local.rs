//! Local search: hill climbing by single-gene changes with random restarts.

use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fresh_sample;
use crate::multi::history::History;
use crate::multi::space::{self, Arch, Space};
use crate::multi::strategy::Strategy;
use crate::{NasError, Result};

/// Hill climbing: the current point is the best architecture found since the last restart;
/// each proposal is a uniformly chosen unseen neighbour of it (one gene changed). When every
/// neighbour of the current point has been evaluated and none was better, the climb has reached
/// a local optimum and restarts from a uniform draw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalSearch {
    /// Index into the finished evaluations where the current climb began.
    climb_start: usize,
    rng: ChaCha8Rng,
}

impl LocalSearch {
    /// A local search driven by `seed`.
    pub fn new(seed: u64) -> Self {
        LocalSearch {
            climb_start: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Strategy for LocalSearch {
    fn name(&self) -> &'static str {
        "local"
    }

    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>> {
        let start = self.climb_start.min(history.done.len());
        let current = history.done[start..]
            .iter()
            .filter(|o| o.fitness().is_some())
            .max_by(|a, b| {
                a.fitness()
                    .partial_cmp(&b.fitness())
                    .expect("finite fitness")
            });
        let Some(current) = current else {
            return Ok(fresh_sample(space, history, &mut self.rng));
        };
        let unseen: Vec<Arch> = space::neighbours(space, &current.arch)
            .into_iter()
            .filter(|n| !history.seen(&space.key(n)))
            .collect();
        if let Some(next) = unseen.choose(&mut self.rng) {
            return Ok(Some(next.clone()));
        }
        if history.pending.is_empty() {
            // A local optimum: every neighbour is evaluated and none improved on it.
            self.climb_start = history.done.len();
        }
        Ok(fresh_sample(space, history, &mut self.rng))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("local search state serialises")
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| NasError::config("strategy state", format!("local search: {e}")))?;
        Ok(())
    }
}
