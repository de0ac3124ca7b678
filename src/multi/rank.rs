//! Rank correlation between two ways of scoring the same architectures, the measure of how
//! well a cheap estimate (a supernet's weights, a predictor) orders architectures the way
//! training them would.

/// Kendall's tau-b of the paired scores `a[i]`, `b[i]`: concordant minus discordant pairs over
/// the geometric mean of the pairs untied in `a` and untied in `b`, so that ties neither count
/// for nor against agreement. `None` with fewer than two pairs, unequal lengths, a non-finite
/// score, or when every pair is tied in either list.
pub fn kendall_tau(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (mut concordant, mut discordant) = (0i64, 0i64);
    let (mut untied_a, mut untied_b) = (0i64, 0i64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let da = (a[i] - a[j]).signum() * f64::from(a[i] != a[j]);
            let db = (b[i] - b[j]).signum() * f64::from(b[i] != b[j]);
            untied_a += i64::from(da != 0.0);
            untied_b += i64::from(db != 0.0);
            if da * db > 0.0 {
                concordant += 1;
            } else if da * db < 0.0 {
                discordant += 1;
            }
        }
    }
    if untied_a == 0 || untied_b == 0 {
        return None;
    }
    Some((concordant - discordant) as f64 / ((untied_a as f64) * (untied_b as f64)).sqrt())
}

/// Ranks from 1, ties sharing the mean of the ranks they span.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let mean = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = mean;
        }
        start = end;
    }
    ranks
}

/// Spearman's rho of the paired scores: the Pearson correlation of their ranks (mean ranks for
/// ties). `None` under the same conditions as [`kendall_tau`].
pub fn spearman_rho(a: &[f64], b: &[f64]) -> Option<f64> {
    kendall_tau(a, b)?;
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    Some(cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_counts_pairs_by_hand() {
        // One swapped neighbour pair among 4 items: 5 concordant, 1 discordant of 6.
        let tau = kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((tau - 4.0 / 6.0).abs() < 1e-12);
        // Reversed order: every pair discordant.
        let tau = kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert!((tau + 1.0).abs() < 1e-12);
    }

    #[test]
    fn kendall_tau_b_discounts_ties() {
        // Pairs: 4 concordant, one tied in a only, one tied in b only, so
        // tau-b = 4 / sqrt(5 * 5) = 0.8 (scipy.stats.kendalltau gives 0.8 too).
        let tau = kendall_tau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap();
        assert!((tau - 0.8).abs() < 1e-12);
        assert_eq!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(kendall_tau(&[1.0], &[1.0]), None);
        assert_eq!(kendall_tau(&[1.0, f64::NAN], &[1.0, 2.0]), None);
    }

    #[test]
    fn spearman_of_ranks_by_hand() {
        // Ranks [1,2,3,4] against [1,3,2,4]: sum d^2 = 2, rho = 1 - 6*2 / (4*15) = 0.8.
        let rho = spearman_rho(&[10.0, 20.0, 30.0, 40.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((rho - 0.8).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }
}
