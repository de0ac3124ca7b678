//! A readable, multi-line rendering of a genotype for a terminal.
//!
//! Each node is shown as the sum of its two edges, with inputs named as in the DARTS paper:
//! `c_{k-2}` and `c_{k-1}` for the outputs of the two previous cells, `node i` for intermediate
//! node `i` (state `i + 2`).

use super::genotype::{CellGenotype, Genotype};

/// The name of state `state` of a cell.
fn state_name(state: usize) -> String {
    match state {
        0 => "c_{k-2}".to_string(),
        1 => "c_{k-1}".to_string(),
        _ => format!("node {}", state - 2),
    }
}

/// The lines of one cell, under the heading `title`.
fn cell_lines(title: &str, cell: &CellGenotype) -> Vec<String> {
    let nodes = cell.nodes();
    let plural = if nodes == 1 { "" } else { "s" };
    let mut lines = vec![format!("{title} cell ({nodes} node{plural})")];
    for node in 0..cell.nodes() {
        let terms: Vec<String> = cell
            .node_edges(node)
            .iter()
            .map(|e| format!("{}({})", e.op, state_name(e.input)))
            .collect();
        lines.push(format!("  node {node} = {}", terms.join(" + ")));
    }
    let concat: Vec<String> = cell.concat.iter().map(|&s| state_name(s)).collect();
    lines.push(format!("  c_{{k}} = concat({})", concat.join(", ")));
    lines.push(format!(
        "  parameter-free ops: {} of {}",
        cell.parameter_free_ops(),
        cell.edges.len()
    ));
    lines
}

impl Genotype {
    /// The normal and reduction cells as readable text, one node per line, ending in a newline.
    pub fn render(&self) -> String {
        let mut lines = cell_lines("normal", &self.normal);
        lines.extend(cell_lines("reduce", &self.reduce));
        lines.push(String::new());
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use crate::space::published;

    #[test]
    fn renders_darts_v2() {
        let expected = "\
normal cell (4 nodes)
  node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})
  node 1 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})
  node 2 = sep_conv_3x3(c_{k-1}) + skip_connect(c_{k-2})
  node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)
  c_{k} = concat(node 0, node 1, node 2, node 3)
  parameter-free ops: 2 of 8
reduce cell (4 nodes)
  node 0 = max_pool_3x3(c_{k-2}) + max_pool_3x3(c_{k-1})
  node 1 = skip_connect(node 0) + max_pool_3x3(c_{k-1})
  node 2 = max_pool_3x3(c_{k-2}) + skip_connect(node 0)
  node 3 = skip_connect(node 0) + max_pool_3x3(c_{k-1})
  c_{k} = concat(node 0, node 1, node 2, node 3)
  parameter-free ops: 8 of 8
";
        assert_eq!(published::darts_v2().render(), expected);
    }
}
