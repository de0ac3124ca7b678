//! DARTS cells as genes (Liu et al., "DARTS: Differentiable Architecture Search", ICLR 2019).
//!
//! An architecture is a normal and a reduction cell. Intermediate node `i` of a cell (state
//! `i + 2`) keeps two edges, each an (operation, input) pair with input among the states
//! `0..=i + 1`, and the cell output concatenates every intermediate node. Each pair is two genes,
//! `{cell}_n{i}_op{a|b}` and `{cell}_n{i}_in{a|b}`; the operations are the seven DARTS operations
//! other than `none`, which a discrete cell does not keep.
//!
//! The two pairs of a node are unordered, so swapping them gives the same cell: the canonical
//! form sorts them by (input, operation), and the key is the DARTS text of the canonical form.

use crate::multi::space::{Arch, Gene, Space, in_range};
use crate::space::{CellGenotype, DartsOp, GeneEdge, Genotype};
use crate::{NasError, Result};

/// The two cells of a genotype, in gene order.
const CELLS: [&str; 2] = ["normal", "reduce"];

/// The two pairs of a node.
const SLOTS: [&str; 2] = ["a", "b"];

/// Genes per node: an operation and an input for each of the two pairs.
const GENES_PER_NODE: usize = 4;

/// DARTS normal and reduction cells with `nodes` intermediate nodes each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DartsCellSpace {
    nodes: usize,
    ops: Vec<DartsOp>,
    genes: Vec<Gene>,
}

impl Default for DartsCellSpace {
    /// Four intermediate nodes, as in DARTS.
    fn default() -> Self {
        Self::with_nodes(4)
    }
}

impl DartsCellSpace {
    /// Cells with `nodes` intermediate nodes.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `nodes` when `nodes` is 0.
    pub fn new(nodes: usize) -> Result<Self> {
        if nodes == 0 {
            return Err(NasError::config(
                "nodes",
                "a DARTS cell needs at least one intermediate node, found 0",
            ));
        }
        Ok(Self::with_nodes(nodes))
    }

    fn with_nodes(nodes: usize) -> Self {
        let ops: Vec<DartsOp> = DartsOp::ALL
            .into_iter()
            .filter(|&op| op != DartsOp::None)
            .collect();
        let op_names: Vec<&str> = ops.iter().map(|op| op.name()).collect();
        let mut genes = Vec::with_capacity(CELLS.len() * nodes * GENES_PER_NODE);
        for cell in CELLS {
            for i in 0..nodes {
                let inputs: Vec<String> = (0..i + 2).map(|s| s.to_string()).collect();
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                for slot in SLOTS {
                    genes.push(Gene::new(format!("{cell}_n{i}_op{slot}"), &op_names));
                    genes.push(Gene::new(format!("{cell}_n{i}_in{slot}"), &inputs));
                }
            }
        }
        DartsCellSpace { nodes, ops, genes }
    }

    /// The number of intermediate nodes per cell.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The operations an edge chooses among, in the order of its option indices.
    pub fn ops(&self) -> &[DartsOp] {
        &self.ops
    }

    /// The index of the operation gene of pair `slot` (0 or 1) of node `node` in cell `cell`
    /// (0 normal, 1 reduce); the input gene follows it.
    fn gene_index(&self, cell: usize, node: usize, slot: usize) -> usize {
        (cell * self.nodes + node) * GENES_PER_NODE + slot * 2
    }

    /// The genotype of `arch` (in canonical form, so equal architectures give equal genotypes),
    /// every intermediate node concatenated; this is what the trainer builds.
    ///
    /// # Panics
    /// When `arch` is not an architecture of this space.
    pub fn genotype(&self, arch: &[usize]) -> Genotype {
        assert!(
            self.is_valid(arch),
            "not an architecture of this DARTS space: {arch:?}"
        );
        let arch = self.canonical(arch);
        let cell = |c: usize| CellGenotype {
            edges: (0..self.nodes)
                .flat_map(|node| (0..2).map(move |slot| (node, slot)))
                .map(|(node, slot)| {
                    let g = self.gene_index(c, node, slot);
                    GeneEdge {
                        op: self.ops[arch[g]],
                        input: arch[g + 1],
                    }
                })
                .collect(),
            concat: (2..self.nodes + 2).collect(),
        };
        Genotype {
            normal: cell(0),
            reduce: cell(1),
        }
    }
}

impl Space for DartsCellSpace {
    fn kind(&self) -> &str {
        "darts"
    }

    fn genotype(&self, arch: &[usize]) -> Option<Genotype> {
        Some(DartsCellSpace::genotype(self, arch))
    }

    fn genes(&self) -> &[Gene] {
        &self.genes
    }

    /// In range, and the two pairs of every node read different inputs (DARTS keeps the two
    /// strongest edges from distinct predecessors).
    fn is_valid(&self, arch: &[usize]) -> bool {
        in_range(&self.genes, arch)
            && (0..CELLS.len()).all(|c| {
                (0..self.nodes).all(|n| {
                    arch[self.gene_index(c, n, 0) + 1] != arch[self.gene_index(c, n, 1) + 1]
                })
            })
    }

    /// Within each node, the two pairs sorted by (input, operation).
    fn canonical(&self, arch: &[usize]) -> Arch {
        let mut out = arch.to_vec();
        for c in 0..CELLS.len() {
            for n in 0..self.nodes {
                let (a, b) = (self.gene_index(c, n, 0), self.gene_index(c, n, 1));
                if (arch[b + 1], arch[b]) < (arch[a + 1], arch[a]) {
                    out[a..a + 2].copy_from_slice(&arch[b..b + 2]);
                    out[b..b + 2].copy_from_slice(&arch[a..a + 2]);
                }
            }
        }
        out
    }

    fn key(&self, arch: &[usize]) -> String {
        self.genotype(arch).to_darts_text()
    }

    /// Reads a genotype in DARTS text or JSON; it must have this space's node count, no `none`
    /// edge, distinct inputs in each node and every intermediate node concatenated.
    fn parse(&self, text: &str) -> Result<Arch> {
        let genotype = Genotype::parse(text, "architecture")?;
        let fail = |message: String| NasError::genotype("architecture", message);
        if genotype.nodes() != self.nodes {
            return Err(fail(format!(
                "the cells have {} intermediate nodes; this space has {}",
                genotype.nodes(),
                self.nodes
            )));
        }
        let all: Vec<usize> = (2..self.nodes + 2).collect();
        let mut arch = Vec::with_capacity(self.genes.len());
        for (name, cell) in CELLS.iter().zip([&genotype.normal, &genotype.reduce]) {
            if cell.concat != all {
                return Err(fail(format!(
                    "{name}_concat is {:?}; this space concatenates every intermediate node \
                     ({all:?})",
                    cell.concat
                )));
            }
            for (e, edge) in cell.edges.iter().enumerate() {
                let Some(op) = self.ops.iter().position(|&op| op == edge.op) else {
                    return Err(fail(format!(
                        "{name}[{e}]: `{}` is not an operation of this space (it keeps {})",
                        edge.op,
                        self.ops
                            .iter()
                            .map(|op| op.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                arch.extend([op, edge.input]);
            }
            for node in 0..self.nodes {
                let pair = cell.node_edges(node);
                if pair[0].input == pair[1].input {
                    return Err(fail(format!(
                        "{name}[{}] and {name}[{}]: both edges of node {node} read state {}; \
                         the two inputs of a node must differ",
                        2 * node,
                        2 * node + 1,
                        pair[0].input
                    )));
                }
            }
        }
        Ok(arch)
    }
}
