//! Estimators: how an architecture gets its metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::space::Space;
use crate::Result;

/// What one evaluation produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Named metrics, e.g. `test_accuracy` (percent), `valid_accuracy`, `params`.
    pub metrics: BTreeMap<String, f64>,
    /// Training epochs spent (0 for a table lookup).
    pub epochs: f64,
    /// Wall-clock seconds spent.
    pub seconds: f64,
}

impl Evaluation {
    /// The metric `name`, or an error listing the metrics there are.
    pub fn metric(&self, name: &str) -> Result<f64> {
        self.metrics.get(name).copied().ok_or_else(|| {
            crate::NasError::config(
                "objective",
                format!(
                    "the estimator reports no metric `{name}`; it reports {}",
                    self.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

/// Evaluates architectures of a space.
pub trait Estimator: Send + Sync {
    /// One line saying what this estimator is (for configs and reports).
    fn describe(&self) -> String;

    /// The metrics every evaluation reports.
    fn metrics(&self) -> Vec<String>;

    /// The metric strategies select by unless told otherwise, and whether it is the test metric
    /// (an oracle setting that reports must say).
    fn selection_metric(&self) -> (String, bool);

    /// Whether the same architecture and seed always give the same evaluation.
    fn deterministic(&self) -> bool;

    /// Evaluates `arch` of `space`; `seed` drives everything random in the evaluation.
    fn evaluate(&self, space: &dyn Space, arch: &[usize], seed: u64) -> Result<Evaluation>;

    /// Metrics of `arch` that are cheap to know before evaluating it, such as parameter and MAC
    /// counts computed from shapes, with the values [`evaluate`](Self::evaluate) would report.
    /// The experiment runner checks the constraints on them first and rejects an architecture
    /// that violates one without evaluating it. `None` (the default) when the estimator knows
    /// nothing in advance, or when evaluating costs no more than this would.
    fn cost(&self, space: &dyn Space, arch: &[usize]) -> Option<BTreeMap<String, f64>> {
        let _ = (space, arch);
        None
    }
}
