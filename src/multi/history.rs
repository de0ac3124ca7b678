//! Objectives, constraints and the record of evaluated architectures that strategies learn from.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::space::Arch;
use crate::{NasError, Result};

/// A metric to optimise and its direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// The metric name, as the estimator reports it.
    pub metric: String,
    /// True to maximise, false to minimise.
    pub maximize: bool,
}

impl Objective {
    /// The value oriented so that larger is better.
    pub fn oriented(&self, value: f64) -> f64 {
        if self.maximize { value } else { -value }
    }
}

/// Reads `max:NAME`, `min:NAME` or a bare `NAME`. A bare name is minimised when it is a cost
/// (`params`, `flops`, `macs`, `latency...`, `seconds`, `..._loss`) and maximised otherwise.
impl FromStr for Objective {
    type Err = NasError;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (maximize, metric) = match text.split_once(':') {
            Some(("max", m)) => (Some(true), m),
            Some(("min", m)) => (Some(false), m),
            Some((other, _)) => {
                return Err(NasError::config(
                    "objective",
                    format!("expected `max:NAME`, `min:NAME` or `NAME`, found prefix `{other}:`"),
                ));
            }
            None => (None, text),
        };
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NasError::config(
                "objective",
                format!("`{text}` is not a metric name (letters, digits, `_`, `-`)"),
            ));
        }
        let is_cost = matches!(metric, "params" | "flops" | "macs" | "seconds")
            || metric.starts_with("latency")
            || metric.ends_with("_loss");
        Ok(Objective {
            metric: metric.to_string(),
            maximize: maximize.unwrap_or(!is_cost),
        })
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.maximize { "max" } else { "min" };
        write!(f, "{dir}:{}", self.metric)
    }
}

/// An upper bound on a metric: `NAME<=VALUE`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// The metric name.
    pub metric: String,
    /// The largest allowed value.
    pub max: f64,
}

impl FromStr for Constraint {
    type Err = NasError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            NasError::config(
                "constraint",
                format!("expected `METRIC<=VALUE` such as `params<=500000`, found `{text}`"),
            )
        };
        let (metric, value) = text.split_once("<=").ok_or_else(bad)?;
        let metric = metric.trim();
        let max: f64 = value.trim().parse().map_err(|_| bad())?;
        if metric.is_empty() || !max.is_finite() {
            return Err(bad());
        }
        Ok(Constraint {
            metric: metric.to_string(),
            max,
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}<={}", self.metric, self.max)
    }
}

/// How metrics become what strategies compare: objectives (the first one is the fitness of
/// single-objective strategies) and constraints (an architecture that violates one has no
/// fitness and is never selected, but stays in the record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// At least one objective.
    pub objectives: Vec<Objective>,
    /// Upper bounds.
    pub constraints: Vec<Constraint>,
}

/// The scored form of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Every objective, oriented so that larger is better.
    pub values: Vec<f64>,
    /// Whether every constraint holds.
    pub feasible: bool,
}

impl Scoring {
    /// One objective, no constraints.
    pub fn single(objective: Objective) -> Self {
        Scoring {
            objectives: vec![objective],
            constraints: Vec::new(),
        }
    }

    /// Scores `metrics`; a missing metric is an error naming it.
    pub fn score(&self, metrics: &BTreeMap<String, f64>) -> Result<Score> {
        let get = |name: &str| {
            metrics.get(name).copied().ok_or_else(|| {
                NasError::config(
                    "objective",
                    format!(
                        "the estimator reports no metric `{name}`; it reports {}",
                        metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        };
        let values = self
            .objectives
            .iter()
            .map(|o| get(&o.metric).map(|v| o.oriented(v)))
            .collect::<Result<Vec<_>>>()?;
        let mut feasible = true;
        for c in &self.constraints {
            feasible &= get(&c.metric)? <= c.max;
        }
        Ok(Score { values, feasible })
    }

    /// The first constraint that `metrics` violate, written `NAME VALUE > MAX`; constraints on
    /// metrics absent from `metrics` are not checked. `None` when every checked one holds.
    pub fn violation(&self, metrics: &BTreeMap<String, f64>) -> Option<String> {
        self.constraints.iter().find_map(|c| {
            let value = *metrics.get(&c.metric)?;
            (value > c.max).then(|| format!("{} {value} > {}", c.metric, c.max))
        })
    }
}

/// One finished evaluation as strategies see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The architecture as proposed.
    pub arch: Arch,
    /// Its canonical key.
    pub key: String,
    /// The metrics; `None` for a failed evaluation.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// The score; `None` for a failed evaluation.
    pub score: Option<Score>,
}

impl Observation {
    /// The first objective (larger is better) of a successful, feasible evaluation.
    pub fn fitness(&self) -> Option<f64> {
        self.score
            .as_ref()
            .filter(|s| s.feasible)
            .and_then(|s| s.values.first().copied())
    }
}

/// Everything evaluated so far, in the order results arrived, and what is being evaluated.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Finished evaluations (successful or failed), oldest first.
    pub done: Vec<Observation>,
    /// Architectures proposed and not finished yet, with their keys.
    pub pending: Vec<(Arch, String)>,
    seen: HashSet<String>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` is finished or pending.
    pub fn seen(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Records a proposal.
    pub fn add_pending(&mut self, arch: Arch, key: String) {
        self.seen.insert(key.clone());
        self.pending.push((arch, key));
    }

    /// Records a finished evaluation, removing it from the pending list.
    pub fn add_done(&mut self, observation: Observation) {
        self.pending.retain(|(_, k)| *k != observation.key);
        self.seen.insert(observation.key.clone());
        self.done.push(observation);
    }

    /// Number of proposals made (finished and pending).
    pub fn proposed(&self) -> usize {
        self.done.len() + self.pending.len()
    }

    /// The finished evaluation with the highest fitness; a tie on the first objective goes to
    /// the better value of the next objective (so that with several objectives the best is on
    /// the Pareto front), then to the earliest.
    pub fn best(&self) -> Option<&Observation> {
        let mut best: Option<&Observation> = None;
        let values = |o: &Observation| {
            o.score
                .as_ref()
                .filter(|s| s.feasible)
                .map(|s| s.values.clone())
        };
        for o in &self.done {
            let Some(v) = values(o) else { continue };
            let better = match best.and_then(values) {
                None => true,
                Some(b) => {
                    let order = v
                        .iter()
                        .zip(&b)
                        .map(|(x, y)| x.total_cmp(y))
                        .find(|c| c.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal);
                    order.is_gt()
                }
            };
            if better && !v.first().is_none_or(|f| f.is_nan()) {
                best = Some(o);
            }
        }
        best
    }
}

#[cfg(test)]
mod best_tests {
    use super::*;

    fn done(key: &str, values: Vec<f64>, feasible: bool) -> Observation {
        Observation {
            arch: vec![],
            key: key.into(),
            metrics: None,
            score: Some(Score { values, feasible }),
        }
    }

    /// Accuracy first, minus latency second: `b` ties `a` on accuracy and is faster, so it is
    /// the best although later; `c` is more accurate but infeasible; `d` ties `b` exactly and
    /// comes later, so `b` stays.
    #[test]
    fn ties_on_the_first_objective_go_to_the_next() {
        let mut history = History::default();
        history.add_done(done("a", vec![90.0, -0.43], true));
        history.add_done(done("b", vec![90.0, -0.42], true));
        history.add_done(done("c", vec![95.0, -0.10], false));
        history.add_done(done("d", vec![90.0, -0.42], true));
        history.add_done(done("e", vec![f64::NAN, 0.0], true));
        assert_eq!(history.best().unwrap().key, "b");
    }
}
