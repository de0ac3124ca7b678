//! Genotypes published with DARTS (Liu et al., 2019), as text and as values.

use super::genotype::{CellGenotype, GeneEdge, Genotype};
use super::ops::DartsOp::{self, AvgPool3x3, DilConv3x3, MaxPool3x3, SepConv3x3, SkipConnect};

/// DARTS (first order), as written in the DARTS `genotypes.py`.
pub const DARTS_V1: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), \
('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), \
('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], \
reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), \
('max_pool_3x3', 2), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], \
reduce_concat=[2, 3, 4, 5])";

/// DARTS (second order), the paper's reported architecture, as written in `genotypes.py`.
pub const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), \
('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), \
('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], \
reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), \
('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], \
reduce_concat=[2, 3, 4, 5])";

/// A four-node cell concatenating all of its intermediate states.
fn cell(edges: [(DartsOp, usize); 8]) -> CellGenotype {
    CellGenotype {
        edges: edges.into_iter().map(GeneEdge::from).collect(),
        concat: vec![2, 3, 4, 5],
    }
}

/// [`DARTS_V1`] as a value (built directly, so it cannot fail).
pub fn darts_v1() -> Genotype {
    Genotype {
        normal: cell([
            (SepConv3x3, 1),
            (SepConv3x3, 0),
            (SkipConnect, 0),
            (SepConv3x3, 1),
            (SkipConnect, 0),
            (SepConv3x3, 1),
            (SepConv3x3, 0),
            (SkipConnect, 2),
        ]),
        reduce: cell([
            (MaxPool3x3, 0),
            (MaxPool3x3, 1),
            (SkipConnect, 2),
            (MaxPool3x3, 0),
            (MaxPool3x3, 2),
            (SkipConnect, 2),
            (SkipConnect, 2),
            (AvgPool3x3, 0),
        ]),
    }
}

/// [`DARTS_V2`] as a value (built directly, so it cannot fail).
pub fn darts_v2() -> Genotype {
    Genotype {
        normal: cell([
            (SepConv3x3, 0),
            (SepConv3x3, 1),
            (SepConv3x3, 0),
            (SepConv3x3, 1),
            (SepConv3x3, 1),
            (SkipConnect, 0),
            (SkipConnect, 0),
            (DilConv3x3, 2),
        ]),
        reduce: cell([
            (MaxPool3x3, 0),
            (MaxPool3x3, 1),
            (SkipConnect, 2),
            (MaxPool3x3, 1),
            (MaxPool3x3, 0),
            (SkipConnect, 2),
            (SkipConnect, 2),
            (MaxPool3x3, 1),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_values_agree() {
        assert_eq!(
            Genotype::from_darts_text(DARTS_V1, "DARTS_V1").unwrap(),
            darts_v1()
        );
        assert_eq!(
            Genotype::from_darts_text(DARTS_V2, "DARTS_V2").unwrap(),
            darts_v2()
        );
        darts_v1().validate("DARTS_V1").unwrap();
        darts_v2().validate("DARTS_V2").unwrap();
    }
}
