//! Derivation with a cap on skip connections in the normal cell, a remedy for the collapse of
//! DARTS toward parameter-free cells (Chen et al. 2019, P-DARTS, section 3.3).

use crate::error::Result;
use crate::space::{DartsOp, Genotype, derive_genotype};

/// Derives the genotype from `softmax(alpha)` tables; while the normal cell holds more than
/// `cap` skip connections, the weakest kept skip connection has its weight set to zero (in a
/// copy) and the cell is derived again, so another operation or edge takes its place.
pub fn derive_with_skip_cap(
    normal: &[Vec<f32>],
    reduce: &[Vec<f32>],
    nodes: usize,
    cap: Option<usize>,
) -> Result<Genotype> {
    let mut normal = normal.to_vec();
    let skip = DartsOp::SkipConnect.index();
    loop {
        let genotype = derive_genotype(&normal, reduce, nodes)?;
        let Some(cap) = cap else {
            return Ok(genotype);
        };
        let kept_skips: Vec<usize> = edge_rows(&genotype, nodes)
            .into_iter()
            .filter(|&(_, op)| op == DartsOp::SkipConnect)
            .map(|(row, _)| row)
            .collect();
        if kept_skips.len() <= cap {
            return Ok(genotype);
        }
        let weakest = kept_skips
            .into_iter()
            .min_by(|&a, &b| normal[a][skip].total_cmp(&normal[b][skip]))
            .expect("more skips than the cap means at least one");
        normal[weakest][skip] = 0.0;
    }
}

/// For each kept edge of the normal cell: its row in the weight table and its operation.
fn edge_rows(genotype: &Genotype, nodes: usize) -> Vec<(usize, DartsOp)> {
    let mut rows = Vec::new();
    let mut offset = 0;
    for node in 0..nodes {
        for edge in genotype.normal.node_edges(node) {
            rows.push((offset + edge.input, edge.op));
        }
        offset += node + 2;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes (5 edges); every edge prefers skip_connect, with sep_conv_3x3 second.
    /// Uncapped, all four kept edges are skips. With cap 2, the two weakest skips (rows with the
    /// smallest skip weight) are zeroed in turn and those edges fall back to sep_conv_3x3.
    #[test]
    fn cap_replaces_weakest_skips() {
        let row = |skip: f32| {
            let mut r = vec![0.01; 8];
            r[DartsOp::SkipConnect.index()] = skip;
            r[DartsOp::SepConv3x3.index()] = 0.2;
            r
        };
        // Node 0: rows 0, 1. Node 1: rows 2, 3, 4 (row 4 weakest, dropped by top-2).
        let normal = vec![row(0.9), row(0.5), row(0.8), row(0.4), row(0.3)];
        let reduce = normal.clone();
        let uncapped = derive_with_skip_cap(&normal, &reduce, 2, None).unwrap();
        assert_eq!(uncapped.normal.parameter_free_ops(), 4);

        let capped = derive_with_skip_cap(&normal, &reduce, 2, Some(2)).unwrap();
        let ops: Vec<_> = capped
            .normal
            .edges
            .iter()
            .map(|e| (e.op, e.input))
            .collect();
        // Worked by hand: zero row 3's skip (0.4): node 1 now keeps rows 2 and 4, still four
        // skips. Zero row 4's skip (0.3): rows 3 and 4 both offer sep_conv_3x3 at 0.2 and the
        // tie goes to the lower index, row 3; three skips. Zero row 1's skip (0.5): node 0
        // keeps sep_conv_3x3 on input 1; two skips, within the cap.
        assert_eq!(
            ops,
            vec![
                (DartsOp::SkipConnect, 0),
                (DartsOp::SepConv3x3, 1),
                (DartsOp::SkipConnect, 0),
                (DartsOp::SepConv3x3, 1),
            ]
        );
        assert_eq!(capped.normal.parameter_free_ops(), 2);
    }
}
