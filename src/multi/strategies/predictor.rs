//! Predictor-guided search: an ensemble of small neural networks learns fitness from the
//! encodings evaluated so far and picks, among mutations of the best architectures, those with
//! the highest acquisition value.

use std::collections::HashSet;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fresh_sample;
use crate::multi::history::{History, Observation};
use crate::multi::mlp::{Fit, Mlp};
use crate::multi::space::{self, Arch, Space};
use crate::multi::strategy::Strategy;
use crate::{NasError, Result};

/// How predicted mean and spread become one number to rank candidates by.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acquisition {
    /// Expected improvement over the best fitness so far, the ensemble's spread taken as the
    /// standard deviation of a Gaussian.
    ExpectedImprovement,
    /// Upper confidence bound `mean + kappa * spread`.
    UpperConfidenceBound(f64),
}

impl FromStr for Acquisition {
    type Err = NasError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "ei" => Ok(Acquisition::ExpectedImprovement),
            "ucb" => Ok(Acquisition::UpperConfidenceBound(1.0)),
            _ => match text.strip_prefix("ucb:").map(str::parse::<f64>) {
                Some(Ok(kappa)) if kappa.is_finite() && kappa >= 0.0 => {
                    Ok(Acquisition::UpperConfidenceBound(kappa))
                }
                _ => Err(NasError::config(
                    "acquisition",
                    format!("expected `ei`, `ucb` or `ucb:KAPPA` (KAPPA >= 0), found `{text}`"),
                )),
            },
        }
    }
}

/// Settings of [`PredictorSearch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// Uniform draws before the first fit.
    pub initial: usize,
    /// Architectures proposed per fit (more once a tenth of the evaluations exceeds it).
    pub batch: usize,
    /// Networks in the ensemble.
    pub ensemble: usize,
    /// Hidden layer widths of each network.
    pub hidden: Vec<usize>,
    /// Gradient steps per fit.
    pub steps: usize,
    /// How candidates are ranked.
    pub acquisition: Acquisition,
    /// How many of the best architectures are mutated into candidates.
    pub parents: usize,
    /// Mutation chains (of one or two single-gene changes) drawn per parent, beyond its
    /// neighbours.
    pub mutations_per_parent: usize,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            initial: 10,
            batch: 10,
            ensemble: 5,
            hidden: vec![32, 32],
            steps: 300,
            acquisition: Acquisition::ExpectedImprovement,
            parents: 10,
            mutations_per_parent: 20,
        }
    }
}

impl PredictorConfig {
    /// Rejects impossible settings.
    pub fn check(&self) -> Result<()> {
        for (field, value) in [
            ("initial", self.initial),
            ("batch", self.batch),
            ("ensemble", self.ensemble),
            ("steps", self.steps),
            ("parents", self.parents),
        ] {
            if value == 0 {
                return Err(NasError::config(field, "must be at least 1"));
            }
        }
        if self.ensemble < 2 {
            return Err(NasError::config(
                "ensemble",
                "needs at least 2 networks to measure the spread of predictions",
            ));
        }
        Ok(())
    }
}

/// Predictor-guided search (in the spirit of BANANAS, White et al. 2021): after `initial`
/// uniform draws, fit an ensemble of MLPs on the one-hot encodings of everything evaluated,
/// build candidates from all neighbours and random one- or two-gene mutations of the
/// `parents` best architectures (plus as many uniform draws, to keep exploring), and propose
/// the `batch` candidates (later a tenth of the evaluations so far) with the best acquisition
/// value before fitting again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictorSearch {
    config: PredictorConfig,
    queue: Vec<Arch>,
    rng: ChaCha8Rng,
}

impl PredictorSearch {
    /// A predictor-guided search driven by `seed`.
    pub fn new(config: PredictorConfig, seed: u64) -> Result<Self> {
        config.check()?;
        Ok(PredictorSearch {
            config,
            queue: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Proposals made from one fit: `batch`, or a tenth of the evaluations so far once that is
    /// more, so that the cost of fitting stays proportional to the budget's logarithm rather
    /// than to the budget.
    fn proposals_per_fit(&self, evaluated: usize) -> usize {
        self.config.batch.max(evaluated.div_ceil(10))
    }

    /// Fits the ensemble and fills the queue with the best candidates.
    fn refill(&mut self, space: &dyn Space, history: &History, scored: &[&Observation]) {
        let xs: Vec<Vec<f32>> = scored
            .iter()
            .map(|o| space::encode(space, &o.arch))
            .collect();
        let raw: Vec<f64> = scored
            .iter()
            .map(|o| o.fitness().expect("scored"))
            .collect();
        let mean = raw.iter().sum::<f64>() / raw.len() as f64;
        let std = (raw.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / raw.len() as f64)
            .sqrt()
            .max(1e-9);
        let ys: Vec<f32> = raw.iter().map(|y| ((y - mean) / std) as f32).collect();
        let best = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let best = ((best - mean) / std) as f32;

        let fit = Fit {
            steps: self.config.steps,
            batch: 32,
            lr: 0.01,
            weight_decay: 1e-4,
        };
        let inputs = space::encoding_len(space);
        let ensemble: Vec<Mlp> = (0..self.config.ensemble)
            .map(|_| {
                let mut net = Mlp::new(inputs, &self.config.hidden, &mut self.rng);
                net.fit(&xs, &ys, fit, &mut self.rng);
                net
            })
            .collect();

        let candidates = self.candidates(space, history, scored);
        let mut ranked: Vec<(f64, Arch)> = candidates
            .into_iter()
            .map(|arch| {
                let x = space::encode(space, &arch);
                let preds: Vec<f32> = ensemble.iter().map(|n| n.predict(&x)).collect();
                let mu = preds.iter().sum::<f32>() / preds.len() as f32;
                let sd = (preds.iter().map(|p| (p - mu).powi(2)).sum::<f32>()
                    / (preds.len() - 1) as f32)
                    .sqrt();
                let value = match self.config.acquisition {
                    Acquisition::ExpectedImprovement => expected_improvement(mu, sd, best),
                    Acquisition::UpperConfidenceBound(kappa) => {
                        f64::from(mu) + kappa * f64::from(sd)
                    }
                };
                (value, arch)
            })
            .collect();
        // Stable: among equal values the earlier candidate (closer to the best parents) wins.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.truncate(self.proposals_per_fit(scored.len()));
        // The queue is popped from the back: store the best last.
        self.queue = ranked.into_iter().rev().map(|(_, a)| a).collect();
    }

    /// Unseen, distinct candidates from the best architectures, then uniform draws.
    fn candidates(
        &mut self,
        space: &dyn Space,
        history: &History,
        scored: &[&Observation],
    ) -> Vec<Arch> {
        let mut by_fitness: Vec<&Observation> = scored.to_vec();
        by_fitness.sort_by(|a, b| b.fitness().partial_cmp(&a.fitness()).expect("finite"));
        let mut keys = HashSet::new();
        let mut out = Vec::new();
        let mut push = |arch: Arch, keys: &mut HashSet<String>| {
            let key = space.key(&arch);
            if !history.seen(&key) && keys.insert(key) {
                out.push(arch);
            }
        };
        for parent in by_fitness.iter().take(self.config.parents) {
            for n in space::neighbours(space, &parent.arch) {
                push(n, &mut keys);
            }
            for _ in 0..self.config.mutations_per_parent {
                let Some(mut child) = space::mutate(space, &parent.arch, &mut self.rng) else {
                    break;
                };
                if self.rng.random_bool(0.5)
                    && let Some(again) = space::mutate(space, &child, &mut self.rng)
                {
                    child = again;
                }
                push(child, &mut keys);
            }
        }
        let extra = self.config.parents * self.config.mutations_per_parent;
        for _ in 0..extra {
            let arch = space::sample(space, &mut self.rng);
            push(arch, &mut keys);
        }
        out
    }
}

/// Expected improvement of a Gaussian(`mu`, `sd`) over `best`, for maximisation.
fn expected_improvement(mu: f32, sd: f32, best: f32) -> f64 {
    let (mu, sd, best) = (f64::from(mu), f64::from(sd), f64::from(best));
    if sd <= 1e-12 {
        return (mu - best).max(0.0);
    }
    let z = (mu - best) / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = 0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2));
    (mu - best) * cdf + sd * pdf
}

/// The error function, to about 1e-7 (Abramowitz and Stegun 7.1.26).
fn erf(x: f64) -> f64 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    sign * (1.0 - poly * (-x * x).exp())
}

impl Strategy for PredictorSearch {
    fn name(&self) -> &'static str {
        "predictor"
    }

    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>> {
        while let Some(arch) = self.queue.pop() {
            if !history.seen(&space.key(&arch)) {
                return Ok(Some(arch));
            }
        }
        let scored: Vec<&Observation> = history
            .done
            .iter()
            .filter(|o| o.fitness().is_some())
            .collect();
        if history.proposed() < self.config.initial || scored.len() < 2 {
            return Ok(fresh_sample(space, history, &mut self.rng));
        }
        self.refill(space, history, &scored);
        match self.queue.pop() {
            Some(arch) => Ok(Some(arch)),
            None => Ok(fresh_sample(space, history, &mut self.rng)),
        }
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("predictor state serialises")
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| NasError::config("strategy state", format!("predictor: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_expected_improvement_by_hand() {
        // erf(0.5) = 0.5204998778, erf(1) = 0.8427007929 (tables).
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 2e-7);
        assert!((erf(-1.0) + 0.842_700_792_9).abs() < 2e-7);
        // At mu = best, EI = sd * pdf(0) = sd / sqrt(2 pi).
        let ei = expected_improvement(1.0, 2.0, 1.0);
        assert!((ei - 2.0 / (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-6);
        // No spread: the plain improvement.
        assert!((expected_improvement(3.0, 0.0, 1.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn acquisition_parses() {
        assert_eq!(
            "ei".parse::<Acquisition>().unwrap(),
            Acquisition::ExpectedImprovement
        );
        assert_eq!(
            "ucb:0.5".parse::<Acquisition>().unwrap(),
            Acquisition::UpperConfidenceBound(0.5)
        );
        let err = "ucb:-1".parse::<Acquisition>().unwrap_err().to_string();
        assert!(
            err.contains("acquisition") && err.contains("ucb:-1"),
            "{err}"
        );
    }
}
