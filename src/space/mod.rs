//! The DARTS search space: the operation registry, discrete genotypes in their JSON and DARTS
//! text forms, derivation of a genotype from architecture weights, and a readable rendering.
//!
//! Cells follow DARTS: states 0 and 1 are the cell inputs (outputs of cells k-2 and k-1),
//! intermediate node `i` produces state `i + 2` from two kept edges, and the cell output
//! concatenates a subset of the intermediate states.

mod darts_text;
mod derive;
mod genotype;
mod json;
pub mod mobile;
mod ops;
pub mod published;
mod render;

pub use derive::{derive_cell, derive_genotype};
pub use genotype::{CellGenotype, GeneEdge, Genotype};
pub use ops::DartsOp;
