//! Non-dominated sorting and crowding distance (Deb et al. 2002), for objectives that are all
//! maximised (orient costs first, see [`super::Objective::oriented`]).

/// Whether `a` dominates `b`: at least as good in every objective and better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return false;
        }
        better |= x > y;
    }
    better
}

/// The front of every point: 0 for the non-dominated ones, 1 for those dominated only by front
/// 0, and so on. Equal points share a front.
pub fn fronts(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            }
        }
    }
    let mut rank = vec![usize::MAX; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    let mut level = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            rank[i] = level;
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        current = next;
        level += 1;
    }
    rank
}

/// Indices of the non-dominated points, in input order.
pub fn pareto_front(points: &[Vec<f64>]) -> Vec<usize> {
    fronts(points)
        .into_iter()
        .enumerate()
        .filter(|&(_, r)| r == 0)
        .map(|(i, _)| i)
        .collect()
}

/// Crowding distance of each point of `members` (indices into `points`, usually one front):
/// for every objective, the points with the smallest and largest value get infinity, the others
/// the gap between their two neighbours divided by the objective's range; the distances of
/// all objectives are summed. Returned in the order of `members`.
pub fn crowding_distance(points: &[Vec<f64>], members: &[usize]) -> Vec<f64> {
    let m = members.len();
    let mut distance = vec![0.0; m];
    if m == 0 {
        return distance;
    }
    let objectives = points[members[0]].len();
    // Objective k of every member is read through two levels of indices; a range is clearest.
    #[allow(clippy::needless_range_loop)]
    for k in 0..objectives {
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| points[members[a]][k].total_cmp(&points[members[b]][k]));
        let low = points[members[order[0]]][k];
        let high = points[members[order[m - 1]]][k];
        distance[order[0]] = f64::INFINITY;
        distance[order[m - 1]] = f64::INFINITY;
        let range = high - low;
        if range <= 0.0 {
            continue;
        }
        for w in 1..m.saturating_sub(1) {
            let gap = points[members[order[w + 1]]][k] - points[members[order[w - 1]]][k];
            distance[order[w]] += gap / range;
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(raw: &[(f64, f64)]) -> Vec<Vec<f64>> {
        raw.iter().map(|&(a, b)| vec![a, b]).collect()
    }

    #[test]
    fn dominance_needs_one_strict_improvement() {
        assert!(dominates(&[2.0, 1.0], &[1.0, 1.0]));
        assert!(!dominates(&[1.0, 1.0], &[1.0, 1.0]));
        assert!(!dominates(&[2.0, 0.0], &[1.0, 1.0]));
    }

    #[test]
    fn fronts_of_a_hand_made_set() {
        // Front 0: (5,1), (4,3) twice (equal points do not dominate each other), (1,5).
        // Front 1: (3,2) (dominated by (4,3)) and (1,4) (by (1,5)). Front 2: (2,1), whose
        // best dominator (3,2) is in front 1. Front 3: (1,1), dominated by (2,1).
        let points = pts(&[
            (5.0, 1.0),
            (4.0, 3.0),
            (1.0, 5.0),
            (3.0, 2.0),
            (1.0, 4.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (4.0, 3.0),
        ]);
        assert_eq!(fronts(&points), vec![0, 0, 0, 1, 1, 2, 3, 0]);
        assert_eq!(pareto_front(&points), vec![0, 1, 2, 7]);
    }

    #[test]
    fn crowding_by_hand() {
        // One front sorted by the first objective: (0,10) (1,6) (3,3) (10,0). Ranges are 10
        // and 10. (1,6): (3-0)/10 + (10-3)/10 = 1.0; (3,3): (10-1)/10 + (6-0)/10 = 1.5.
        let points = pts(&[(3.0, 3.0), (0.0, 10.0), (10.0, 0.0), (1.0, 6.0)]);
        let d = crowding_distance(&points, &[0, 1, 2, 3]);
        assert!((d[0] - 1.5).abs() < 1e-12);
        assert!(d[1].is_infinite() && d[2].is_infinite());
        assert!((d[3] - 1.0).abs() < 1e-12);
    }
}
