//! Random search: uniform draws without repeating an architecture.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fresh_sample;
use crate::multi::history::History;
use crate::multi::space::{Arch, Space};
use crate::multi::strategy::Strategy;
use crate::{NasError, Result};

/// Draws architectures uniformly among those not evaluated yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RandomSearch {
    rng: ChaCha8Rng,
}

impl RandomSearch {
    /// A random search driven by `seed`.
    pub fn new(seed: u64) -> Self {
        RandomSearch {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Strategy for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }

    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>> {
        Ok(fresh_sample(space, history, &mut self.rng))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a random generator serialises")
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| NasError::config("strategy state", format!("random search: {e}")))?;
        Ok(())
    }
}
