//! Derivation of a discrete genotype from the architecture weights of a DARTS search.
//!
//! Rules (DARTS, with `none` excluded everywhere):
//! * an edge's strength is its largest weight over the operations other than `none`; `none` is
//!   left out because its weight says how little the edge matters, not which operation to keep,
//!   and would otherwise win on edges that are weak for every real operation;
//! * each node keeps the two incoming edges of greatest strength, and on each the strongest
//!   operation other than `none`, so `none` never appears in a derived genotype;
//! * ties go to the lower index: the operation earlier in [`DartsOp::ALL`], the lower input
//!   state;
//! * the kept edges of a node are listed by increasing input state (DARTS lists them by
//!   decreasing strength; input order makes equal architectures compare equal);
//! * the cell output concatenates every intermediate state, `2..nodes + 2`.
//!
//! The weights are only read; nothing is normalized or changed in place.

use super::genotype::{CellGenotype, GeneEdge, Genotype};
use super::ops::DartsOp;
use crate::error::{NasError, Result};

/// The number of mixed edges of a search cell with `nodes` nodes: node `i` has `i + 2` inputs.
fn mixed_edges(nodes: usize) -> Option<usize> {
    // nodes * (nodes + 3) / 2, checked so that an absurd node count is an error, not a wrap.
    nodes.checked_add(3)?.checked_mul(nodes).map(|n| n / 2)
}

/// The strongest operation other than `none` of one weight row, with its weight.
fn strongest_op(row: &[f32]) -> (DartsOp, f32) {
    let mut best = (DartsOp::ALL[1], row[1]);
    for op in &DartsOp::ALL[2..] {
        // Strictly greater: on a tie the earlier operation stays.
        if row[op.index()] > best.1 {
            best = (*op, row[op.index()]);
        }
    }
    best
}

/// Derives one discrete cell from its weight table; `label` names the table in errors.
fn derive_labelled(weights: &[Vec<f32>], nodes: usize, label: &str) -> Result<CellGenotype> {
    if nodes == 0 {
        return Err(NasError::genotype(
            label,
            "a cell needs at least one intermediate node",
        ));
    }
    let expected = mixed_edges(nodes)
        .ok_or_else(|| NasError::genotype(label, format!("{nodes} nodes is too many")))?;
    if weights.len() != expected {
        return Err(NasError::genotype(
            label,
            format!(
                "expected {expected} weight rows (one per mixed edge of a {nodes}-node cell), \
                 found {}",
                weights.len()
            ),
        ));
    }
    for (r, row) in weights.iter().enumerate() {
        if row.len() != DartsOp::ALL.len() {
            return Err(NasError::genotype(
                label,
                format!(
                    "row {r} has {} weights, expected {} (one per operation)",
                    row.len(),
                    DartsOp::ALL.len()
                ),
            ));
        }
        if let Some(i) = row.iter().position(|w| !w.is_finite()) {
            return Err(NasError::Numerical(format!(
                "{label}: row {r} holds {} for {}; the search diverged",
                row[i],
                DartsOp::ALL[i]
            )));
        }
    }

    let mut edges = Vec::with_capacity(2 * nodes);
    let mut first_row = 0;
    for node in 0..nodes {
        let rows = &weights[first_row..first_row + node + 2];
        first_row += node + 2;
        let candidates: Vec<(DartsOp, f32)> = rows.iter().map(|row| strongest_op(row)).collect();
        // The two strongest inputs; scanning in input order with a strict comparison keeps the
        // lower input on ties.
        let mut kept: [Option<usize>; 2] = [None, None];
        for (input, &(_, strength)) in candidates.iter().enumerate() {
            let beats = |slot: Option<usize>| slot.is_none_or(|k| strength > candidates[k].1);
            if beats(kept[0]) {
                kept = [Some(input), kept[0]];
            } else if beats(kept[1]) {
                kept[1] = Some(input);
            }
        }
        let mut inputs: Vec<usize> = kept.into_iter().flatten().collect();
        inputs.sort_unstable();
        edges.extend(inputs.into_iter().map(|input| GeneEdge {
            op: candidates[input].0,
            input,
        }));
    }
    Ok(CellGenotype {
        edges,
        concat: (2..nodes + 2).collect(),
    })
}

/// Derives a discrete cell from `weights`: one row per mixed edge in DARTS order (node 0's
/// inputs 0 and 1, then node 1's inputs 0, 1 and 2, ...), each row the softmax weights over the
/// operations in [`DartsOp::ALL`] order. See the module documentation for the rules.
///
/// # Errors
/// [`NasError::Genotype`] when `nodes` is 0 or the table does not have one row per mixed edge
/// with one weight per operation; [`NasError::Numerical`] for a NaN or infinite weight.
pub fn derive_cell(weights: &[Vec<f32>], nodes: usize) -> Result<CellGenotype> {
    derive_labelled(weights, nodes, "architecture weights")
}

/// Derives a genotype from the normal and reduction weight tables, as [`derive_cell`].
///
/// # Errors
/// As [`derive_cell`], naming the table (normal or reduce) at fault.
pub fn derive_genotype(normal: &[Vec<f32>], reduce: &[Vec<f32>], nodes: usize) -> Result<Genotype> {
    Ok(Genotype {
        normal: derive_labelled(normal, nodes, "architecture weights (normal)")?,
        reduce: derive_labelled(reduce, nodes, "architecture weights (reduce)")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DartsOp::{
        AvgPool3x3, DilConv3x3, DilConv5x5, MaxPool3x3, SepConv3x3, SepConv5x5, SkipConnect,
    };

    /// A weight row: `none` gets `none_weight`, the listed operations their weights, the other
    /// operations 0.01.
    fn row(none_weight: f32, ops: &[(DartsOp, f32)]) -> Vec<f32> {
        let mut row = vec![0.01; 8];
        row[0] = none_weight;
        for &(op, w) in ops {
            row[op.index()] = w;
        }
        row
    }

    fn edge(op: DartsOp, input: usize) -> GeneEdge {
        GeneEdge { op, input }
    }

    #[test]
    fn none_never_wins_even_when_largest_everywhere() {
        // `none` holds 0.9 on every edge. Real operations, per edge:
        //   node 0: input 0 sep_conv_3x3 0.05 | input 1 skip_connect 0.04
        //           -> keeps both: sep_conv_3x3(0), skip_connect(1)
        //   node 1: input 0 max_pool 0.02 | input 1 dil_conv_5x5 0.06 | input 2 sep_conv_5x5 0.03
        //           -> strengths 0.02, 0.06, 0.03: keeps inputs 1 and 2, listed by input
        //   node 2: input 0 avg_pool 0.07 | 1 only the 0.01 background | 2 dil_conv_3x3 0.07
        //           | 3 skip_connect 0.02
        //           -> 0.07 ties between inputs 0 and 2, both kept; input 3 (0.02) loses
        let weights = vec![
            row(0.9, &[(SepConv3x3, 0.05)]),
            row(0.9, &[(SkipConnect, 0.04)]),
            row(0.9, &[(MaxPool3x3, 0.02)]),
            row(0.9, &[(DilConv5x5, 0.06)]),
            row(0.9, &[(SepConv5x5, 0.03)]),
            row(0.9, &[(AvgPool3x3, 0.07)]),
            row(0.9, &[]),
            row(0.9, &[(DilConv3x3, 0.07)]),
            row(0.9, &[(SkipConnect, 0.02)]),
        ];
        let before = weights.clone();
        let cell = derive_cell(&weights, 3).unwrap();
        assert_eq!(weights, before, "derivation must not touch its input");
        let expected = vec![
            edge(SepConv3x3, 0),
            edge(SkipConnect, 1),
            edge(DilConv5x5, 1),
            edge(SepConv5x5, 2),
            edge(AvgPool3x3, 0),
            edge(DilConv3x3, 2),
        ];
        assert_eq!(cell.edges, expected);
        assert_eq!(cell.concat, vec![2, 3, 4]);
        assert!(cell.edges.iter().all(|e| e.op != DartsOp::None));
    }

    #[test]
    fn strong_none_does_not_make_an_edge_strong() {
        // Node 1: input 0 has none 0.97 but its best real op is 0.01 (the background);
        // input 1 has sep_conv_3x3 0.3, input 2 has max_pool 0.2. With `none` counted, input 0
        // would win; without it, inputs 1 and 2 are kept.
        let weights = vec![
            row(0.1, &[(SkipConnect, 0.5)]),
            row(0.1, &[(SepConv5x5, 0.5)]),
            row(0.97, &[]),
            row(0.1, &[(SepConv3x3, 0.3)]),
            row(0.1, &[(MaxPool3x3, 0.2)]),
        ];
        let cell = derive_cell(&weights, 2).unwrap();
        assert_eq!(
            cell.edges,
            vec![
                edge(SkipConnect, 0),
                edge(SepConv5x5, 1),
                edge(SepConv3x3, 1),
                edge(MaxPool3x3, 2)
            ]
        );
    }

    #[test]
    fn operation_ties_go_to_the_earlier_operation() {
        // All real operations equal: the first after `none` (max_pool_3x3) is kept; both
        // inputs tie too, and with only two inputs both are kept.
        let weights = vec![vec![0.125; 8], vec![0.125; 8]];
        let cell = derive_cell(&weights, 1).unwrap();
        assert_eq!(cell.edges, vec![edge(MaxPool3x3, 0), edge(MaxPool3x3, 1)]);
    }

    #[test]
    fn genotype_from_two_tables() {
        let normal = vec![row(0.0, &[(SepConv3x3, 0.5)]); 5];
        let reduce = vec![row(0.0, &[(MaxPool3x3, 0.5)]); 5];
        let g = derive_genotype(&normal, &reduce, 2).unwrap();
        assert_eq!(g.normal.edges[3], edge(SepConv3x3, 1));
        assert_eq!(g.reduce.edges[2], edge(MaxPool3x3, 0));
        g.validate("derived").unwrap();
    }

    #[test]
    fn shape_errors() {
        let err = derive_cell(&vec![vec![0.1; 8]; 13], 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 14 weight rows"), "{err}");
        assert!(err.contains("found 13"), "{err}");
        let mut weights = vec![vec![0.1; 8]; 14];
        weights[3].pop();
        let err = derive_cell(&weights, 4).unwrap_err().to_string();
        assert!(err.contains("row 3 has 7 weights, expected 8"), "{err}");
        weights[3].push(f32::NAN);
        let err = derive_cell(&weights, 4).unwrap_err().to_string();
        assert!(err.contains("row 3 holds NaN for dil_conv_5x5"), "{err}");
        let err = derive_genotype(&[], &[], 0).unwrap_err().to_string();
        assert!(err.contains("at least one intermediate node"), "{err}");
        let reduce = vec![vec![0.1; 8]; 2];
        let err = derive_genotype(&reduce.clone(), &reduce[..1], 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("architecture weights (reduce): expected 2 weight rows"),
            "{err}"
        );
        assert!(derive_cell(&[], usize::MAX).is_err());
    }
}
