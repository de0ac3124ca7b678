//! The NAS-Bench-201 cell space (Dong and Yang, "NAS-Bench-201: Extending the Scope of
//! Reproducible Neural Architecture Search", ICLR 2020).
//!
//! A cell has four nodes: node 0 is the cell input, node 3 its output, and every node `i` sums
//! one operation on each earlier node `j < i`, which makes six edges. Each edge picks one of five
//! operations, for 5^6 = 15,625 cells. The benchmark writes a cell as
//! `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: one `|`-delimited group per node 1, 2, 3 (joined by
//! `+`), edge `op~j` of the group of node `i` being the edge from node `j` into node `i`.

use crate::cost::Cost;
use crate::multi::space::{Arch, Gene, Space};
use crate::{NasError, Result};

/// The five operations, in the benchmark's order.
pub const NB201_OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

/// The six edges as `(to, from)` node pairs, in gene order, which is the order of the standard
/// string: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
pub const NB201_EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];

/// Channels of the three stages of the benchmark's CIFAR network.
const STAGE_CHANNELS: [u64; 3] = [16, 32, 64];

/// Cells per stage.
const CELLS_PER_STAGE: u64 = 5;

/// The NAS-Bench-201 cell space: six genes `edge_{to}_{from}`, five operations each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nb201Space {
    genes: Vec<Gene>,
}

impl Default for Nb201Space {
    fn default() -> Self {
        Self::new()
    }
}

impl Nb201Space {
    /// The space.
    pub fn new() -> Self {
        let genes = NB201_EDGES
            .iter()
            .map(|(to, from)| Gene::new(format!("edge_{to}_{from}"), &NB201_OPS))
            .collect();
        Nb201Space { genes }
    }

    /// The number of trainable parameters of the benchmark's network built from cell `arch`
    /// with a `num_classes`-way classifier (batch-norm running statistics are buffers, not
    /// parameters, and are not counted).
    ///
    /// The network: a stem (3x3 convolution 3 -> 16 without bias, batch norm); three stages of
    /// five cells with 16, 32 and 64 channels; between stages a residual block (ReLU, 3x3
    /// convolution with stride 2, batch norm; ReLU, 3x3 convolution, batch norm; shortcut 2x2
    /// average pooling then 1x1 convolution without bias); then batch norm, ReLU, global
    /// average pooling and a linear classifier with bias. In a cell, `nor_conv_kxk` is ReLU, a
    /// kxk convolution without bias and an affine batch norm (k·k·C·C + 2C parameters); the
    /// other operations have none, since every cell keeps its channel count.
    ///
    /// # Panics
    /// When `arch` is not an architecture of this space (six values below five).
    pub fn params(arch: &[usize], num_classes: u64) -> u64 {
        assert!(
            arch.len() == NB201_EDGES.len() && arch.iter().all(|&op| op < NB201_OPS.len()),
            "not a NAS-Bench-201 architecture: {arch:?}"
        );
        let conv_bn = |c_in: u64, c_out: u64, k: u64| k * k * c_in * c_out + 2 * c_out;

        let stem = conv_bn(3, STAGE_CHANNELS[0], 3);
        let cells: u64 = STAGE_CHANNELS
            .iter()
            .map(|&c| {
                let cell: u64 = arch
                    .iter()
                    .map(|&op| match NB201_OPS[op] {
                        "nor_conv_1x1" => conv_bn(c, c, 1),
                        "nor_conv_3x3" => conv_bn(c, c, 3),
                        _ => 0,
                    })
                    .sum();
                CELLS_PER_STAGE * cell
            })
            .sum();
        let residual = |c_in: u64, c_out: u64| {
            conv_bn(c_in, c_out, 3) + conv_bn(c_out, c_out, 3) + c_in * c_out
        };
        let reductions: u64 = STAGE_CHANNELS
            .windows(2)
            .map(|w| residual(w[0], w[1]))
            .sum();
        let last = STAGE_CHANNELS[2];
        let head = 2 * last + last * num_classes + num_classes;
        stem + cells + reductions + head
    }

    /// The multiply-accumulates of one forward pass of one `image_size` x `image_size` image
    /// through the network of [`Nb201Space::params`], counted as [`crate::cost`] does
    /// (convolutions and the classifier only). The benchmark's CIFAR images are 32x32, its
    /// ImageNet16-120 images 16x16.
    ///
    /// Stage `s` (0, 1, 2) runs at `image_size / 2^s`: the stem and the first stage at full
    /// size; each residual block outputs half its input's size, its strided 3x3 convolution,
    /// its second 3x3 convolution and its 1x1 shortcut (after 2x2 pooling) all at that half
    /// size. A `nor_conv_kxk` edge costs `side^2 * k^2 * C^2`.
    ///
    /// # Panics
    /// When `arch` is not an architecture of this space, or when `image_size` is not a
    /// positive multiple of 4 (on other sizes the strided convolution and the pooled shortcut
    /// of a residual block disagree, and the benchmark's network cannot run).
    pub fn macs(arch: &[usize], num_classes: u64, image_size: u64) -> u64 {
        assert!(
            arch.len() == NB201_EDGES.len() && arch.iter().all(|&op| op < NB201_OPS.len()),
            "not a NAS-Bench-201 architecture: {arch:?}"
        );
        assert!(
            image_size > 0 && image_size.is_multiple_of(4),
            "NAS-Bench-201 networks need images whose side is a positive multiple of 4, \
             found {image_size}"
        );
        let conv = |side: u64, c_in: u64, c_out: u64, k: u64| side * side * k * k * c_in * c_out;

        let stem = conv(image_size, 3, STAGE_CHANNELS[0], 3);
        let cells: u64 = STAGE_CHANNELS
            .iter()
            .enumerate()
            .map(|(stage, &c)| {
                let side = image_size >> stage;
                let cell: u64 = arch
                    .iter()
                    .map(|&op| match NB201_OPS[op] {
                        "nor_conv_1x1" => conv(side, c, c, 1),
                        "nor_conv_3x3" => conv(side, c, c, 3),
                        _ => 0,
                    })
                    .sum();
                CELLS_PER_STAGE * cell
            })
            .sum();
        let residual = |side: u64, c_in: u64, c_out: u64| {
            conv(side, c_in, c_out, 3) + conv(side, c_out, c_out, 3) + conv(side, c_in, c_out, 1)
        };
        let reductions: u64 = STAGE_CHANNELS
            .windows(2)
            .enumerate()
            .map(|(i, w)| residual(image_size >> (i + 1), w[0], w[1]))
            .sum();
        let classifier = STAGE_CHANNELS[2] * num_classes;
        stem + cells + reductions + classifier
    }

    /// Parameters ([`Nb201Space::params`]) and MACs ([`Nb201Space::macs`]) together.
    ///
    /// # Panics
    /// As [`Nb201Space::macs`].
    pub fn cost(arch: &[usize], num_classes: u64, image_size: u64) -> Cost {
        Cost::new(
            Self::params(arch, num_classes),
            Self::macs(arch, num_classes, image_size),
        )
    }
}

impl Space for Nb201Space {
    fn kind(&self) -> &str {
        "nb201"
    }

    fn genes(&self) -> &[Gene] {
        &self.genes
    }

    fn key(&self, arch: &[usize]) -> String {
        let op = |i: usize| NB201_OPS[arch[i]];
        format!(
            "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|",
            op(0),
            op(1),
            op(2),
            op(3),
            op(4),
            op(5)
        )
    }

    /// Reads the standard string; errors give the node, the edge and the column (from 1) where
    /// the problem is.
    fn parse(&self, text: &str) -> Result<Arch> {
        parse_cell(text).map_err(|message| {
            NasError::config(
                "architecture",
                format!("`{text}` is not a NAS-Bench-201 cell: {message}"),
            )
        })
    }
}

/// Splits `text` at `separator`, keeping each piece's byte offset from the start of `text`.
fn split_with_offsets(text: &str, separator: char) -> Vec<(usize, &str)> {
    let mut offset = 0;
    text.split(separator)
        .map(|piece| {
            let start = offset;
            offset += piece.len() + separator.len_utf8();
            (start, piece)
        })
        .collect()
}

/// The architecture in the standard string, or what is wrong and where.
fn parse_cell(text: &str) -> std::result::Result<Arch, String> {
    let lead = text.len() - text.trim_start().len();
    let cell = text.trim();
    let groups = split_with_offsets(cell, '+');
    if groups.len() != 3 {
        return Err(format!(
            "expected 3 nodes (groups `|...|` joined by `+`), found {}",
            groups.len()
        ));
    }
    let mut arch = Vec::with_capacity(NB201_EDGES.len());
    for (i, &(offset, group)) in groups.iter().enumerate() {
        let node = i + 1;
        let column = lead + offset + 1;
        if !group.starts_with('|') {
            return Err(format!(
                "node {node} (column {column}): expected `|` at the start of `{group}`"
            ));
        }
        if group.len() < 2 || !group.ends_with('|') {
            return Err(format!(
                "node {node} (column {column}): expected `|` at the end of `{group}`"
            ));
        }
        let edges = split_with_offsets(&group[1..group.len() - 1], '|');
        if edges.len() != node {
            return Err(format!(
                "node {node} (column {column}): expected {node} edge(s) `op~j`, one from each \
                 earlier node j, found {} in `{group}`",
                edges.len()
            ));
        }
        for (j, &(edge_offset, edge)) in edges.iter().enumerate() {
            let column = column + 1 + edge_offset;
            let at = format!("node {node}, edge {j} (column {column})");
            let Some((op, input)) = edge.split_once('~') else {
                return Err(format!("{at}: expected `op~{j}`, found `{edge}`"));
            };
            let Some(op_index) = NB201_OPS.iter().position(|&o| o == op) else {
                return Err(format!(
                    "{at}: unknown operation `{op}` (valid: {})",
                    NB201_OPS.join(", ")
                ));
            };
            match input.parse::<usize>() {
                Ok(from) if from == j => {}
                Ok(from) => {
                    return Err(format!(
                        "{at}: input must be {j} (a node lists its edges from nodes 0..{node} \
                         in order), found {from}"
                    ));
                }
                Err(_) => {
                    return Err(format!("{at}: input `{input}` is not a node number"));
                }
            }
            arch.push(op_index);
        }
    }
    Ok(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_follows_the_gene_order() {
        let s = Nb201Space::new();
        assert_eq!(
            s.key(&[0, 1, 2, 3, 4, 0]),
            "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
        );
        assert_eq!(s.genes()[5].name, "edge_3_2");
    }

    /// MACs worked out by hand for 32x32 images and a 10-way classifier:
    ///   stem: 32*32 * 9 * 3*16 = 442,368;
    ///   residual 16->32 at 16x16: 256*9*16*32 = 1,179,648 + 256*9*32*32 = 2,359,296
    ///     + 256*16*32 = 131,072 -> 3,670,016; residual 32->64 at 8x8: 64*9*32*64 = 1,179,648
    ///     + 64*9*64*64 = 2,359,296 + 64*32*64 = 131,072 -> 3,670,016;
    ///   classifier 64*10 = 640; cell-independent total 7,783,040 (all-`none` cells).
    ///   One nor_conv_3x3 edge costs 9 * side^2 * C^2 = 2,359,296 in every stage
    ///   (32^2 * 16^2 = 16^2 * 32^2 = 8^2 * 64^2 = 262,144), so all nor_conv_3x3
    ///   adds 3 stages x 5 cells x 6 edges x 2,359,296 = 212,336,640 -> 220,119,680;
    ///   all nor_conv_1x1 adds 90 x 262,144 = 23,592,960 -> 31,376,000.
    ///   At 16x16 (ImageNet16-120, 120 classes) every convolution costs a quarter:
    ///   (7,783,040 - 640) / 4 + 64*120 = 1,945,600 + 7,680 = 1,953,280 for all-`none`.
    #[test]
    fn macs_by_hand() {
        assert_eq!(Nb201Space::macs(&[0; 6], 10, 32), 7_783_040);
        assert_eq!(Nb201Space::macs(&[3; 6], 10, 32), 220_119_680);
        assert_eq!(Nb201Space::macs(&[2; 6], 10, 32), 31_376_000);
        assert_eq!(Nb201Space::macs(&[1, 4, 0, 1, 4, 1], 10, 32), 7_783_040);
        assert_eq!(Nb201Space::macs(&[0; 6], 120, 16), 1_953_280);
        assert_eq!(
            Nb201Space::cost(&[3; 6], 10, 32),
            Cost::new(1_531_546, 220_119_680)
        );
    }

    #[test]
    fn columns_point_at_the_edge() {
        let s = Nb201Space::new();
        let err = s
            .parse("|none~0|+|none~0|conv~1|+|none~0|none~1|none~2|")
            .unwrap_err()
            .to_string();
        // `conv~1` starts at byte 17 (column 18) of the string.
        assert!(
            err.contains("node 2, edge 1 (column 18): unknown operation `conv`"),
            "{err}"
        );
    }
}
