//! The continuous relaxation of one edge: every candidate operation, weighted by
//! `softmax(alpha)` (Liu et al. 2019, equation 2).

use burn::prelude::*;

use super::batch_norm::BatchNorm2d;
use super::init::ParamInit;
use super::ops::{OpSettings, Operation};
use crate::space::DartsOp;

/// All candidate operations of one edge except `none`, whose output is exactly zero and is
/// therefore never computed; its architecture weight still takes part in the softmax.
#[derive(Module, Debug)]
pub struct MixedOp {
    ops: Vec<Operation>,
    /// Column of each entry of `ops` in the architecture weight table.
    columns: Vec<usize>,
}

impl MixedOp {
    /// All operations on `c` channels at `stride`, with search-network settings.
    pub fn new(c: usize, stride: usize, settings: OpSettings, init: &mut ParamInit) -> Self {
        let mut ops = Vec::new();
        let mut columns = Vec::new();
        for op in DartsOp::ALL {
            if op == DartsOp::None {
                continue;
            }
            ops.push(Operation::new(op, c, stride, settings, init));
            columns.push(op.index());
        }
        Self { ops, columns }
    }

    /// `sum_k w_k op_k(x)`, with `weights` the edge's row `[1, 8]` of `softmax(alpha)` and
    /// `rectified = relu(x)` shared with the other edges reading the same state.
    pub fn forward(&self, x: Tensor<4>, rectified: Tensor<4>, weights: Tensor<2>) -> Tensor<4> {
        let mut sum: Option<Tensor<4>> = None;
        for (op, &column) in self.ops.iter().zip(&self.columns) {
            let w = weights
                .clone()
                .slice([0..1, column..column + 1])
                .reshape([1, 1, 1, 1]);
            let r = op.needs_rectified().then(|| rectified.clone());
            let y = op.forward(x.clone(), r) * w;
            sum = Some(match sum {
                Some(s) => s + y,
                None => y,
            });
        }
        sum.expect("a mixed edge has at least one operation")
    }

    /// The candidate `op` alone, for single-path training (Guo et al. 2020), which runs one
    /// operation of an edge instead of the weighted sum; `None` for `none`, which has no module.
    pub fn candidate(&self, op: DartsOp) -> Option<&Operation> {
        let position = self.columns.iter().position(|&c| c == op.index())?;
        self.ops.get(position)
    }

    /// The edge with `f` applied to the batch-norm layers of candidate `op` only; the other
    /// candidates are left as they are.
    pub fn map_candidate_bn(
        mut self,
        op: DartsOp,
        f: &impl Fn(BatchNorm2d) -> BatchNorm2d,
    ) -> Self {
        self.ops = self
            .ops
            .into_iter()
            .zip(&self.columns)
            .map(|(candidate, &column)| {
                if column == op.index() {
                    candidate.map_bn(f)
                } else {
                    candidate
                }
            })
            .collect();
        self
    }
}
