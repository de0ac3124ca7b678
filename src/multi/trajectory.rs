//! The incumbent of a search as a function of the number of evaluations, and statistics over
//! repeated searches.

use serde::{Deserialize, Serialize};

use super::history::History;

/// The incumbent after some number of evaluations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incumbent {
    /// Evaluations finished (successful or failed) so far.
    pub evaluations: usize,
    /// The incumbent's fitness (first objective, larger is better); `None` while no evaluation
    /// has succeeded.
    pub fitness: Option<f64>,
    /// The incumbent's reported metric (for example its test accuracy when selection is by
    /// validation accuracy).
    pub reported: Option<f64>,
    /// The incumbent's key.
    pub key: Option<String>,
}

/// The incumbent after each of the finished evaluations of `history`, in order: the best by
/// fitness so far (the earliest among equals), with its value of `report_metric`.
pub fn incumbents(history: &History, report_metric: &str) -> Vec<Incumbent> {
    let mut out = Vec::with_capacity(history.done.len());
    let mut best: Option<usize> = None;
    for (i, o) in history.done.iter().enumerate() {
        if let Some(f) = o.fitness()
            && best
                .and_then(|b| history.done[b].fitness())
                .is_none_or(|b| f > b)
        {
            best = Some(i);
        }
        let inc = best.map(|b| &history.done[b]);
        out.push(Incumbent {
            evaluations: i + 1,
            fitness: inc.and_then(|o| o.fitness()),
            reported: inc
                .and_then(|o| o.metrics.as_ref())
                .and_then(|m| m.get(report_metric).copied()),
            key: inc.map(|o| o.key.clone()),
        });
    }
    out
}

/// Mean and standard error of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanSe {
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean: sample standard deviation (n - 1) over sqrt(n); 0 for one
    /// value.
    pub se: f64,
    /// Sample standard deviation (n - 1).
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanSe {
    /// Statistics of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(MeanSe {
            mean,
            se: std / (n as f64).sqrt(),
            std,
            n,
        })
    }
}

/// The exact expected maximum of `n` values drawn uniformly without replacement from `values`
/// (an order statistic: the k-th smallest of N values is the maximum with probability
/// C(k-1, n-1) / C(N, n)). Random search that never repeats an architecture draws this way.
pub fn expected_max_without_replacement(values: &[f64], n: usize) -> f64 {
    let big_n = values.len();
    assert!(n >= 1 && n <= big_n, "need 1 <= n <= {big_n}, found {n}");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // p(N) = n / N; p(k - 1) = p(k) (k - n) / (k - 1), from the top down.
    let mut p = n as f64 / big_n as f64;
    let mut sum = 0.0;
    let mut k = big_n;
    while k >= n {
        sum += p * sorted[k - 1];
        if k == n {
            break;
        }
        p *= (k - n) as f64 / (k - 1) as f64;
        k -= 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_max_by_hand() {
        // Values 1..4, two draws without replacement: the six pairs have maxima 2,3,4,3,4,4,
        // mean 20/6.
        let v = [3.0, 1.0, 4.0, 2.0];
        assert!((expected_max_without_replacement(&v, 2) - 20.0 / 6.0).abs() < 1e-12);
        assert!((expected_max_without_replacement(&v, 1) - 2.5).abs() < 1e-12);
        assert!((expected_max_without_replacement(&v, 4) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn mean_and_standard_error_by_hand() {
        let s = MeanSe::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((s.mean - 2.5).abs() < 1e-12);
        // Sample variance 5/3; se = sqrt(5/3) / 2.
        assert!((s.se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
    }
}
