//! Discrete DARTS cells and genotypes, their validation, and the entry points that read them.
//!
//! State numbering follows DARTS: in a cell, states 0 and 1 are the two cell inputs (the outputs
//! of the cells k-2 and k-1), and intermediate node `i` (counted from 0) produces state `i + 2`.
//! Node `i` may therefore read states `0..=i + 1`, and the cell output concatenates a subset of
//! the intermediate states `2..nodes + 2`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ops::DartsOp;
use crate::error::{NasError, Result};

/// One kept edge of a discrete cell: operation applied to an input state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
// Serialized as the `[name, input]` pair of the JSON form rather than as an object.
#[serde(from = "(DartsOp, usize)", into = "(DartsOp, usize)")]
pub struct GeneEdge {
    /// The operation applied on the edge.
    pub op: DartsOp,
    /// The state the edge reads (0 and 1 are the cell inputs, `i + 2` is node `i`).
    pub input: usize,
}

impl From<(DartsOp, usize)> for GeneEdge {
    fn from((op, input): (DartsOp, usize)) -> Self {
        GeneEdge { op, input }
    }
}

impl From<GeneEdge> for (DartsOp, usize) {
    fn from(edge: GeneEdge) -> Self {
        (edge.op, edge.input)
    }
}

/// A discrete cell as DARTS writes it: two edges per intermediate node, flat, in node order; plus
/// the concatenated states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CellGenotype {
    /// The kept edges, two per node: edges `2i` and `2i + 1` feed node `i`.
    pub edges: Vec<GeneEdge>,
    /// The states concatenated into the cell output, strictly increasing, each in `2..nodes + 2`.
    pub concat: Vec<usize>,
}

/// The part of a cell a validation problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spot {
    /// The edge list as a whole.
    Edges,
    /// One edge, by its index in the flat list.
    Edge(usize),
    /// The concat list as a whole.
    Concat,
    /// One concat entry, by its index.
    ConcatItem(usize),
}

/// Why a cell is invalid, and where; the caller turns the spot into a field path or a position.
#[derive(Clone, Debug)]
pub(crate) struct CellProblem {
    pub(crate) spot: Spot,
    pub(crate) message: String,
}

impl Spot {
    /// The field path of this spot, given the names of the edge and concat fields.
    pub(crate) fn path(self, edges_field: &str, concat_field: &str) -> String {
        match self {
            Spot::Edges => edges_field.to_string(),
            Spot::Edge(i) => format!("{edges_field}[{i}]"),
            Spot::Concat => concat_field.to_string(),
            Spot::ConcatItem(i) => format!("{concat_field}[{i}]"),
        }
    }
}

impl CellGenotype {
    /// The number of intermediate nodes (two edges each).
    pub fn nodes(&self) -> usize {
        self.edges.len() / 2
    }

    /// The two edges feeding node `node`; empty when the cell has no such node.
    pub fn node_edges(&self, node: usize) -> &[GeneEdge] {
        // An empty slice instead of a panic keeps callers that probe past the end safe.
        let start = node.saturating_mul(2);
        self.edges
            .get(start..start.saturating_add(2))
            .unwrap_or(&[])
    }

    /// How many kept edges carry a parameter-free operation (`none`, pools, `skip_connect`).
    pub fn parameter_free_ops(&self) -> usize {
        self.edges
            .iter()
            .filter(|e| e.op.is_parameter_free())
            .count()
    }

    /// Checks that the cell can be built; errors name `location` and the offending entry.
    ///
    /// # Errors
    /// [`NasError::Genotype`] for an empty or odd edge list, an input state that does not exist
    /// yet, or a concat that is empty, out of `2..nodes + 2` or not strictly increasing.
    pub fn validate(&self, location: &str) -> Result<()> {
        self.check().map_err(|p| {
            NasError::genotype(
                location,
                format!("{}: {}", p.spot.path("edges", "concat"), p.message),
            )
        })
    }

    /// The first problem found, if any, with the entry it concerns.
    pub(crate) fn check(&self) -> std::result::Result<(), CellProblem> {
        let problem = |spot, message: String| Err(CellProblem { spot, message });
        if self.edges.is_empty() {
            return problem(
                Spot::Edges,
                "no edges; a cell needs at least one intermediate node with two edges".into(),
            );
        }
        if !self.edges.len().is_multiple_of(2) {
            return problem(
                Spot::Edges,
                format!(
                    "odd number of edges ({}); each intermediate node takes exactly two",
                    self.edges.len()
                ),
            );
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let node = i / 2;
            if edge.input > node + 1 {
                return problem(
                    Spot::Edge(i),
                    format!(
                        "node {node} takes input {} but only states 0..={} exist",
                        edge.input,
                        node + 1
                    ),
                );
            }
        }
        let last_state = self.nodes() + 1;
        if self.concat.is_empty() {
            return problem(
                Spot::Concat,
                format!("concat is empty; list at least one of the states 2..={last_state}"),
            );
        }
        for (i, &state) in self.concat.iter().enumerate() {
            if !(2..=last_state).contains(&state) {
                let why = if state < 2 {
                    "is a cell input"
                } else {
                    "does not exist"
                };
                return problem(
                    Spot::ConcatItem(i),
                    format!(
                        "state {state} {why}; only the intermediate states 2..={last_state} \
                         can be concatenated"
                    ),
                );
            }
            if i > 0 && state <= self.concat[i - 1] {
                return problem(
                    Spot::ConcatItem(i),
                    format!(
                        "concat must be strictly increasing, but {state} follows {}",
                        self.concat[i - 1]
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A discrete DARTS architecture: one normal and one reduction cell with the same node count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Genotype {
    /// The cell that keeps the spatial resolution.
    pub normal: CellGenotype,
    /// The cell that halves the spatial resolution (its input edges use stride 2).
    pub reduce: CellGenotype,
}

/// Which cell of a genotype a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellKind {
    Normal,
    Reduce,
}

impl CellKind {
    /// The field names of this cell's edges and concat, as in both textual forms.
    pub(crate) fn fields(self) -> (&'static str, &'static str) {
        match self {
            CellKind::Normal => ("normal", "normal_concat"),
            CellKind::Reduce => ("reduce", "reduce_concat"),
        }
    }
}

/// Why a genotype is invalid: the cell, the entry and the explanation.
#[derive(Clone, Debug)]
pub(crate) struct GenotypeProblem {
    pub(crate) cell: CellKind,
    pub(crate) problem: CellProblem,
}

impl GenotypeProblem {
    /// `field path: message`, e.g. `reduce[5]: node 2 takes input 5 ...`.
    pub(crate) fn describe(&self) -> String {
        let (edges, concat) = self.cell.fields();
        format!(
            "{}: {}",
            self.problem.spot.path(edges, concat),
            self.problem.message
        )
    }
}

impl Genotype {
    /// The number of intermediate nodes per cell (equal in both cells once validated).
    pub fn nodes(&self) -> usize {
        self.normal.nodes()
    }

    /// Checks both cells and that they have the same number of nodes, which the network builder
    /// assumes; errors name `location` and the field path at fault.
    ///
    /// # Errors
    /// [`NasError::Genotype`] as [`CellGenotype::validate`], or when the node counts differ.
    pub fn validate(&self, location: &str) -> Result<()> {
        self.check()
            .map_err(|p| NasError::genotype(location, p.describe()))
    }

    /// The first problem found, if any.
    pub(crate) fn check(&self) -> std::result::Result<(), GenotypeProblem> {
        self.normal.check().map_err(|problem| GenotypeProblem {
            cell: CellKind::Normal,
            problem,
        })?;
        self.reduce.check().map_err(|problem| GenotypeProblem {
            cell: CellKind::Reduce,
            problem,
        })?;
        if self.reduce.nodes() != self.normal.nodes() {
            return Err(GenotypeProblem {
                cell: CellKind::Reduce,
                problem: CellProblem {
                    spot: Spot::Edges,
                    message: format!(
                        "the reduction cell has {} nodes but the normal cell has {}; both \
                         cells must have the same number of nodes",
                        self.reduce.nodes(),
                        self.normal.nodes()
                    ),
                },
            });
        }
        Ok(())
    }

    /// Reads the JSON form; `source` (usually a file name) prefixes the line and column of any
    /// error, and the message names the field path.
    ///
    /// # Errors
    /// [`NasError::Genotype`] for malformed JSON, a wrong type, an unknown or missing field, an
    /// unknown operation, or a genotype that fails [`Genotype::validate`].
    pub fn from_json_str(s: &str, source: &str) -> Result<Genotype> {
        serde_json::from_str(s).map_err(|e| {
            // serde_json appends " at line L column C" to its messages; the location carries
            // that already, so drop it from the message rather than say it twice.
            let full = e.to_string();
            if e.line() == 0 {
                return NasError::genotype(source, full);
            }
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full);
            NasError::genotype(format!("{source}:{}:{}", e.line(), e.column()), message)
        })
    }

    /// The JSON form, pretty printed with the two edges of each node on one line.
    pub fn to_json_string(&self) -> String {
        // Written by hand because serde_json's pretty printer puts every pair element on its own
        // line; operation names never need escaping, so the output is always valid JSON.
        let mut fields = Vec::with_capacity(4);
        for (kind, cell) in [
            (CellKind::Normal, &self.normal),
            (CellKind::Reduce, &self.reduce),
        ] {
            let (edges_field, concat_field) = kind.fields();
            let nodes: Vec<String> = cell
                .edges
                .chunks(2)
                .map(|pair| {
                    let pair: Vec<String> = pair
                        .iter()
                        .map(|e| format!("[\"{}\", {}]", e.op, e.input))
                        .collect();
                    format!("    {}", pair.join(", "))
                })
                .collect();
            fields.push(if nodes.is_empty() {
                format!("  \"{edges_field}\": []")
            } else {
                format!("  \"{edges_field}\": [\n{}\n  ]", nodes.join(",\n"))
            });
            let concat: Vec<String> = cell.concat.iter().map(usize::to_string).collect();
            fields.push(format!("  \"{concat_field}\": [{}]", concat.join(", ")));
        }
        format!("{{\n{}\n}}", fields.join(",\n"))
    }

    /// Reads either form: text starting with `{` is JSON, anything else DARTS text.
    ///
    /// # Errors
    /// As [`Genotype::from_json_str`] or [`Genotype::from_darts_text`].
    pub fn parse(s: &str, source: &str) -> Result<Genotype> {
        // A byte-order mark is invisible in editors, so it must not decide the format.
        let s = s.strip_prefix('\u{feff}').unwrap_or(s);
        if s.trim_start().starts_with('{') {
            Genotype::from_json_str(s, source)
        } else {
            Genotype::from_darts_text(s, source)
        }
    }

    /// Reads a genotype file in either form; errors name the file.
    ///
    /// # Errors
    /// [`NasError::Io`] when the file cannot be read, otherwise as [`Genotype::parse`].
    pub fn load(path: &Path) -> Result<Genotype> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        Genotype::parse(&text, &path.display().to_string())
    }
}

impl fmt::Display for Genotype {
    /// The DARTS text form, as [`Genotype::to_darts_text`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_darts_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::published;

    fn edge(op: DartsOp, input: usize) -> GeneEdge {
        GeneEdge { op, input }
    }

    #[test]
    fn node_accessors() {
        let g = published::darts_v2();
        assert_eq!(g.nodes(), 4);
        assert_eq!(
            g.normal.node_edges(3),
            [edge(DartsOp::SkipConnect, 0), edge(DartsOp::DilConv3x3, 2)]
        );
        assert!(g.normal.node_edges(4).is_empty());
        assert!(g.normal.node_edges(usize::MAX).is_empty());
        assert_eq!(g.normal.parameter_free_ops(), 2);
        assert_eq!(g.reduce.parameter_free_ops(), 8);
    }

    #[test]
    fn cell_validation_messages() {
        let mut cell = published::darts_v1().normal;
        cell.validate("cell").unwrap();
        cell.edges[7].input = 6;
        let err = cell.validate("cell").unwrap_err().to_string();
        assert_eq!(
            err,
            "genotype cell: edges[7]: node 3 takes input 6 but only states 0..=4 exist"
        );
        cell.edges.pop();
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("edges: odd number of edges (7)"), "{err}");
        cell.edges.clear();
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("edges: no edges"), "{err}");

        let mut cell = published::darts_v1().normal;
        cell.concat = vec![];
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("concat: concat is empty; list at least one of the states 2..=5"));
        cell.concat = vec![1, 2];
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("concat[0]: state 1 is a cell input"), "{err}");
        cell.concat = vec![2, 6];
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("concat[1]: state 6 does not exist; only the intermediate"));
        cell.concat = vec![3, 2];
        let err = cell.validate("cell").unwrap_err().to_string();
        assert!(err.contains("concat[1]: concat must be strictly increasing, but 2 follows 3"));
    }

    #[test]
    fn cells_must_agree_on_node_count() {
        let mut g = published::darts_v2();
        g.reduce.edges.truncate(6);
        g.reduce.concat = vec![2, 3, 4];
        let err = g.validate("g").unwrap_err().to_string();
        assert!(err.contains("reduce: the reduction cell has 3 nodes but the normal cell has 4"));
    }

    #[test]
    fn parse_sniffs_the_format() {
        let g = published::darts_v1();
        assert_eq!(Genotype::parse(&g.to_json_string(), "j").unwrap(), g);
        assert_eq!(
            Genotype::parse(&format!("\u{feff}\n  {g}"), "t").unwrap(),
            g
        );
        let err = Genotype::parse("  {\"normal\": 3}", "j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type: integer `3`"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("nasrs-space-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v2.txt");
        std::fs::write(&path, published::DARTS_V2).unwrap();
        assert_eq!(Genotype::load(&path).unwrap(), published::darts_v2());
        std::fs::write(&path, "Genotype(normal=[('conv', 0)])").unwrap();
        let err = Genotype::load(&path).unwrap_err().to_string();
        assert!(err.contains(&format!(
            "{}:1:19: unknown operation 'conv'",
            path.display()
        )));
        let missing = dir.join("absent.json");
        let err = Genotype::load(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
