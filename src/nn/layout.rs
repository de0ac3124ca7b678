//! Channel and resolution bookkeeping shared by the search network and networks built from a
//! genotype (Liu et al. 2019, section 3 and appendix A.1).
//!
//! A stem maps the image to `stem_multiplier * C` channels. Cells follow; reduction cells sit at
//! 1/3 and 2/3 of the depth, halve the resolution and double `C`. Every cell reads the outputs
//! of the two cells before it: its preprocessing maps `c_prev_prev` and `c_prev` channels to
//! `C`, using a factorized reduce on input 0 when the cell before was a reduction (input 0 is
//! then at twice the resolution of input 1). A cell outputs the concatenation of its
//! intermediate nodes: `multiplier * C` channels.

/// The channel plan of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellLayout {
    /// Whether this cell halves the resolution.
    pub reduction: bool,
    /// Whether the cell before it was a reduction cell.
    pub reduction_prev: bool,
    /// Channels of input 0 (output of the cell two back, or the stem).
    pub c_prev_prev: usize,
    /// Channels of input 1 (output of the previous cell, or the stem).
    pub c_prev: usize,
    /// Channels of every node inside the cell.
    pub c: usize,
    /// Channels of the cell output (`multiplier * c`).
    pub c_out: usize,
}

/// Whether cell `index` of `cells` is a reduction cell.
pub fn is_reduction(index: usize, cells: usize) -> bool {
    index == cells / 3 || index == 2 * cells / 3
}

/// The layouts of `cells` cells starting from `channels` initial channels.
///
/// `multiplier(reduction)` is the number of concatenated nodes of a normal or a reduction cell.
pub fn cell_layouts(
    cells: usize,
    channels: usize,
    stem_multiplier: usize,
    multiplier: impl Fn(bool) -> usize,
) -> Vec<CellLayout> {
    let mut c_prev_prev = stem_multiplier * channels;
    let mut c_prev = stem_multiplier * channels;
    let mut c = channels;
    let mut reduction_prev = false;
    let mut layouts = Vec::with_capacity(cells);
    for index in 0..cells {
        let reduction = is_reduction(index, cells);
        if reduction {
            c *= 2;
        }
        let c_out = multiplier(reduction) * c;
        layouts.push(CellLayout {
            reduction,
            reduction_prev,
            c_prev_prev,
            c_prev,
            c,
            c_out,
        });
        reduction_prev = reduction;
        c_prev_prev = c_prev;
        c_prev = c_out;
    }
    layouts
}

/// Number of mixed edges of a cell with `nodes` intermediate nodes: node `i` reads the two cell
/// inputs and the `i` nodes before it.
pub fn edge_count(nodes: usize) -> usize {
    (0..nodes).map(|i| i + 2).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reduction positions and channels worked out by hand from the rules in the module doc.
    #[test]
    fn five_cells_of_sixteen_channels() {
        let layouts = cell_layouts(5, 16, 3, |_| 4);
        let plan: Vec<_> = layouts
            .iter()
            .map(|l| {
                (
                    l.reduction,
                    l.reduction_prev,
                    l.c_prev_prev,
                    l.c_prev,
                    l.c,
                    l.c_out,
                )
            })
            .collect();
        assert_eq!(
            plan,
            vec![
                (false, false, 48, 48, 16, 64),
                (true, false, 48, 64, 32, 128),
                (false, true, 64, 128, 32, 128),
                (true, false, 128, 128, 64, 256),
                (false, true, 128, 256, 64, 256),
            ]
        );
    }

    #[test]
    fn eight_cells_reduce_at_two_and_five() {
        let layouts = cell_layouts(8, 16, 3, |_| 4);
        let reductions: Vec<_> = (0..8).filter(|&i| layouts[i].reduction).collect();
        assert_eq!(reductions, vec![2, 5]);
        // After the second reduction C is 64 and the cell output 4 x 64.
        assert_eq!(layouts[7].c, 64);
        assert_eq!(layouts[7].c_out, 256);
        // The cell after a reduction reads the reduction output as input 1 and the cell before
        // it (half the channels of the reduction output) as input 0.
        assert_eq!((layouts[3].c_prev_prev, layouts[3].c_prev), (64, 128));
        assert!(layouts[3].reduction_prev);
    }

    #[test]
    fn edge_counts() {
        assert_eq!(edge_count(4), 14);
        assert_eq!(edge_count(3), 9);
        assert_eq!(edge_count(1), 2);
    }
}
