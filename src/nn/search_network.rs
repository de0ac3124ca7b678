//! The DARTS search network: a stack of cells whose every edge is a [`MixedOp`], with one table
//! of architecture weights shared by all normal cells and one by all reduction cells.
//! The same network is the supernet of single-path one-shot search on the cell space, where
//! [`SearchNetwork::forward_genotype`] runs one operation per chosen edge.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

use super::batch_norm::BatchNorm2d;
use super::conv::{Conv2d, ConvSpec};
use super::init::ParamInit;
use super::layout::{CellLayout, cell_layouts, edge_count};
use super::linear::Linear;
use super::mixed::MixedOp;
use super::ops::{OpSettings, Preprocess};
use crate::error::{NasError, Result};
use crate::space::{CellGenotype, DartsOp, Genotype};

/// Shape of a search network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchNetworkConfig {
    /// Image channels (3 for CIFAR, 1 for MNIST and digits).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Initial channels `C`.
    pub channels: usize,
    /// Number of cells.
    pub cells: usize,
    /// Intermediate nodes per cell.
    pub nodes: usize,
    /// The stem outputs `stem_multiplier * C` channels.
    pub stem_multiplier: usize,
}

impl SearchNetworkConfig {
    /// Rejects shapes no network can have.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("num_classes", self.num_classes),
            ("channels", self.channels),
            ("cells", self.cells),
            ("nodes", self.nodes),
            ("stem_multiplier", self.stem_multiplier),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(NasError::config(field, "must be at least 1, found 0"));
            }
        }
        if self.cells < 3 {
            return Err(NasError::config(
                "cells",
                format!(
                    "must be at least 3, found {}: with fewer, every cell is a reduction cell \
                     and the normal cell's architecture weights would never be trained",
                    self.cells
                ),
            ));
        }
        if !self.channels.is_multiple_of(2) {
            return Err(NasError::config(
                "channels",
                format!(
                    "must be even (factorized reduce splits channels in two), found {}",
                    self.channels
                ),
            ));
        }
        Ok(())
    }

    /// The channel plan of every cell.
    pub fn layouts(&self) -> Vec<CellLayout> {
        cell_layouts(self.cells, self.channels, self.stem_multiplier, |_| {
            self.nodes
        })
    }
}

/// A cell of the search network: two preprocessing layers and `edge_count(nodes)` mixed edges.
#[derive(Module, Debug)]
pub struct SearchCell {
    preprocess0: Preprocess,
    preprocess1: Preprocess,
    edges: Vec<MixedOp>,
    nodes: usize,
    reduction: bool,
}

impl SearchCell {
    fn new(layout: &CellLayout, nodes: usize, init: &mut ParamInit) -> Self {
        let settings = OpSettings {
            affine: false,
            bn_after_pool: true,
        };
        let c = layout.c;
        let preprocess0 =
            Preprocess::new(layout.c_prev_prev, c, layout.reduction_prev, false, init);
        let preprocess1 = Preprocess::new(layout.c_prev, c, false, false, init);
        let mut edges = Vec::with_capacity(edge_count(nodes));
        for node in 0..nodes {
            for input in 0..node + 2 {
                // Only edges from the two cell inputs change the resolution.
                let stride = if layout.reduction && input < 2 { 2 } else { 1 };
                edges.push(MixedOp::new(c, stride, settings, init));
            }
        }
        Self {
            preprocess0,
            preprocess1,
            edges,
            nodes,
            reduction: layout.reduction,
        }
    }

    /// `s0`, `s1`: outputs of the two previous cells; `weights`: `softmax(alpha)`, `[edges, 8]`.
    /// Returns the concatenated intermediate nodes, `[batch, nodes * C, h, w]`.
    fn forward(&self, s0: Tensor<4>, s1: Tensor<4>, weights: &Tensor<2>) -> Tensor<4> {
        let mut states = vec![self.preprocess0.forward(s0), self.preprocess1.forward(s1)];
        let mut rectified: Vec<Tensor<4>> = states.iter().map(|s| relu(s.clone())).collect();
        let ops = DartsOp::ALL.len();
        let mut offset = 0;
        for node in 0..self.nodes {
            let mut sum: Option<Tensor<4>> = None;
            for (input, edge) in self.edges[offset..offset + node + 2].iter().enumerate() {
                let row = weights
                    .clone()
                    .slice([offset + input..offset + input + 1, 0..ops]);
                let y = edge.forward(states[input].clone(), rectified[input].clone(), row);
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            offset += node + 2;
            let state = sum.expect("every node has at least two inputs");
            // The last node feeds no edge, so its rectified form would be wasted work.
            if node + 1 < self.nodes {
                rectified.push(relu(state.clone()));
            }
            states.push(state);
        }
        Tensor::cat(states.split_off(2), 1)
    }

    /// The single path of `cell` (checked by [`SearchNetwork::check_genotype`]): each node is
    /// the sum of the chosen operation of its two chosen edges, and nothing else runs.
    /// Returns the concatenated intermediate nodes, `[batch, nodes * C, h, w]`, as
    /// [`forward`](Self::forward) does.
    fn forward_genotype(&self, s0: Tensor<4>, s1: Tensor<4>, cell: &CellGenotype) -> Tensor<4> {
        let mut states = vec![self.preprocess0.forward(s0), self.preprocess1.forward(s1)];
        // `relu(state)` is computed at most once per state, and only if a chosen operation
        // starts with a ReLU.
        let mut rectified: Vec<Option<Tensor<4>>> = vec![None, None];
        for node in 0..self.nodes {
            // The edges of the earlier nodes come first in `edges`: `edge_count(node)` of them.
            let first = edge_count(node);
            let mut sum: Option<Tensor<4>> = None;
            for gene in cell.node_edges(node) {
                let op = self.edges[first + gene.input]
                    .candidate(gene.op)
                    .expect("a checked genotype names no `none` edge");
                let r = op.needs_rectified().then(|| {
                    rectified[gene.input]
                        .get_or_insert_with(|| relu(states[gene.input].clone()))
                        .clone()
                });
                let y = op.forward(states[gene.input].clone(), r);
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            states.push(sum.expect("a checked genotype has two edges per node"));
            rectified.push(None);
        }
        Tensor::cat(states.split_off(2), 1)
    }

    /// The cell with `f` applied to the batch norm of both preprocessing layers and of the
    /// chosen operation of every chosen edge of `cell`.
    fn map_genotype_bn(
        mut self,
        cell: &CellGenotype,
        f: &impl Fn(BatchNorm2d) -> BatchNorm2d,
    ) -> Self {
        self.preprocess0 = self.preprocess0.map_bn(f);
        self.preprocess1 = self.preprocess1.map_bn(f);
        let chosen: Vec<(usize, DartsOp)> = (0..self.nodes)
            .flat_map(|node| {
                cell.node_edges(node)
                    .iter()
                    .map(move |gene| (edge_count(node) + gene.input, gene.op))
            })
            .collect();
        self.edges = self
            .edges
            .into_iter()
            .enumerate()
            .map(
                |(e, edge)| match chosen.iter().find(|(index, _)| *index == e) {
                    Some(&(_, op)) => edge.map_candidate_bn(op, f),
                    None => edge,
                },
            )
            .collect();
        self
    }
}

/// The DARTS search network with its architecture weights.
#[derive(Module, Debug)]
pub struct SearchNetwork {
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    cells: Vec<SearchCell>,
    classifier: Linear,
    /// Architecture weights of normal cells, `[edges, 8]`, columns in [`DartsOp::ALL`] order.
    pub alpha_normal: Param<Tensor<2>>,
    /// Architecture weights of reduction cells, `[edges, 8]`.
    pub alpha_reduce: Param<Tensor<2>>,
    nodes: usize,
}

impl SearchNetwork {
    /// Builds the network with weights and architecture weights drawn from `init`.
    /// Architecture weights start at `1e-3 * N(0, 1)`, as in the reference code.
    pub fn new(config: &SearchNetworkConfig, init: &mut ParamInit) -> Result<Self> {
        config.check()?;
        let stem_channels = config.stem_multiplier * config.channels;
        let stem_conv = Conv2d::new(
            config.in_channels,
            stem_channels,
            ConvSpec::new(3, 1, 1),
            false,
            init,
        );
        // The stem BN is affine in the reference search network; only the cell operations are not.
        let stem_bn = BatchNorm2d::new(stem_channels, true, init);
        let layouts = config.layouts();
        let cells = layouts
            .iter()
            .map(|layout| SearchCell::new(layout, config.nodes, init))
            .collect();
        let c_last = layouts.last().map(|l| l.c_out).unwrap_or(stem_channels);
        let classifier = Linear::new(c_last, config.num_classes, init);
        let edges = edge_count(config.nodes);
        let ops = DartsOp::ALL.len();
        let alpha_normal = init.normal([edges, ops], 1e-3);
        let alpha_reduce = init.normal([edges, ops], 1e-3);
        Ok(Self {
            stem_conv,
            stem_bn,
            cells,
            classifier,
            alpha_normal,
            alpha_reduce,
            nodes: config.nodes,
        })
    }

    /// Logits `[batch, classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let w_normal = softmax(self.alpha_normal.val(), 1);
        let w_reduce = softmax(self.alpha_reduce.val(), 1);
        self.forward_cells(x, |cell, s0, s1| {
            let weights = if cell.reduction { &w_reduce } else { &w_normal };
            cell.forward(s0, s1, weights)
        })
    }

    /// Logits `[batch, classes]` of the single path `genotype` through the supernet, as in
    /// single-path one-shot training (Guo et al. 2020): in every cell only the chosen
    /// operation of each chosen edge runs, so only the stem, the preprocessing layers, those
    /// operations and the classifier take part (and receive gradients); the architecture
    /// weights are not used.
    ///
    /// # Panics
    /// When `genotype` fails [`check_genotype`](Self::check_genotype).
    pub fn forward_genotype(&self, x: Tensor<4>, genotype: &Genotype) -> Tensor<2> {
        self.forward_cells(x, |cell, s0, s1| {
            let chosen = if cell.reduction {
                &genotype.reduce
            } else {
                &genotype.normal
            };
            cell.forward_genotype(s0, s1, chosen)
        })
    }

    /// The stem, the cells (each through `cell_forward(cell, s0, s1)`, returning its
    /// `[batch, nodes * C, h, w]` output), global pooling and the classifier.
    fn forward_cells(
        &self,
        x: Tensor<4>,
        cell_forward: impl Fn(&SearchCell, Tensor<4>, Tensor<4>) -> Tensor<4>,
    ) -> Tensor<2> {
        let stem = self.stem_bn.forward(self.stem_conv.forward(x));
        let mut s0 = stem.clone();
        let mut s1 = stem;
        for cell in &self.cells {
            let out = cell_forward(cell, s0, s1.clone());
            s0 = s1;
            s1 = out;
        }
        let [n, c, _, _] = s1.dims();
        let pooled = adaptive_avg_pool2d(s1, [1, 1]).reshape([n, c]);
        self.classifier.forward(pooled)
    }

    /// Checks that `genotype` is a single path of this supernet: a valid genotype with this
    /// network's node count, no `none` edge (the supernet holds no module for it), two
    /// different inputs per node (there is one edge per pair of node and input) and every
    /// intermediate node concatenated (the channel plan of the next cells assumes it).
    ///
    /// # Errors
    /// [`NasError::Genotype`] naming the cell and the edge or concat at fault.
    pub fn check_genotype(&self, genotype: &Genotype) -> Result<()> {
        genotype.validate("cells")?;
        if genotype.nodes() != self.nodes {
            return Err(NasError::genotype(
                "cells",
                format!(
                    "{} intermediate nodes per cell, but the supernet has {}",
                    genotype.nodes(),
                    self.nodes
                ),
            ));
        }
        for (name, cell) in [("normal", &genotype.normal), ("reduce", &genotype.reduce)] {
            for (i, gene) in cell.edges.iter().enumerate() {
                if gene.op == DartsOp::None {
                    return Err(NasError::genotype(
                        format!("{name}[{i}]"),
                        "operation `none` is not a single path: every chosen edge needs one \
                         of the seven other operations",
                    ));
                }
            }
            for node in 0..self.nodes {
                if let [a, b] = cell.node_edges(node)
                    && a.input == b.input
                {
                    return Err(NasError::genotype(
                        format!("{name}[{}]", 2 * node + 1),
                        format!(
                            "node {node} reads state {} twice; its two edges need different \
                             inputs",
                            a.input
                        ),
                    ));
                }
            }
            let all: Vec<usize> = (2..self.nodes + 2).collect();
            if cell.concat != all {
                return Err(NasError::genotype(
                    format!("{name}_concat"),
                    format!(
                        "the supernet concatenates every intermediate node {all:?}, found {:?}",
                        cell.concat
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The network with `f` applied to every batch-norm layer of the single path `genotype`:
    /// the stem's, both preprocessing layers of every cell and those of the chosen operation
    /// of each chosen edge. Every other layer is left as it is.
    pub fn map_genotype_bn(
        mut self,
        genotype: &Genotype,
        f: impl Fn(BatchNorm2d) -> BatchNorm2d,
    ) -> Self {
        self.stem_bn = f(self.stem_bn);
        self.cells = self
            .cells
            .into_iter()
            .map(|cell| {
                let chosen = if cell.reduction {
                    &genotype.reduce
                } else {
                    &genotype.normal
                };
                cell.map_genotype_bn(chosen, &f)
            })
            .collect();
        self
    }

    /// Intermediate nodes per cell.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// `softmax(alpha)` of normal and reduction cells, read back to the host, one row per edge.
    pub fn architecture_weights(&self) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        (
            softmax_rows(self.alpha_normal.val()),
            softmax_rows(self.alpha_reduce.val()),
        )
    }

    /// The parameter ids of the architecture weights.
    pub fn architecture_param_ids(&self) -> Vec<ParamId> {
        vec![self.alpha_normal.id, self.alpha_reduce.id]
    }

    /// The parameter ids of every network weight (everything but the architecture weights).
    pub fn weight_param_ids(&self) -> Vec<ParamId> {
        let arch = self.architecture_param_ids();
        let mut collector = ParamIds::default();
        self.visit(&mut collector);
        collector
            .ids
            .into_iter()
            .filter(|id| !arch.contains(id))
            .collect()
    }
}

fn softmax_rows(alpha: Tensor<2>) -> Vec<Vec<f32>> {
    let [rows, cols] = alpha.dims();
    let values: Vec<f32> = softmax(alpha, 1)
        .into_data()
        .try_into_vec()
        .expect("architecture weights are f32");
    (0..rows)
        .map(|r| values[r * cols..(r + 1) * cols].to_vec())
        .collect()
}

/// Collects the ids of all float parameters of a module.
#[derive(Default)]
pub struct ParamIds {
    /// Ids in visiting order.
    pub ids: Vec<ParamId>,
}

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.push(param.id);
    }
}
