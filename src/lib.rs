//! nasrs: neural architecture search.
//!
//! The parts of NAS, one module each:
//! - [`space`]: search spaces without tensors: the DARTS operations, genotypes in JSON and the
//!   DARTS text form, derivation of a discrete cell from architecture weights;
//! - [`nn`]: operations and networks as burn modules: the search network with mixed edges and
//!   the network built from a genotype;
//! - [`search`]: differentiable search (DARTS);
//! - [`multi`]: multi-trial search: spaces as data, estimators, strategies, experiment store;
//! - [`cost`]: hardware cost from shapes alone: parameters and multiply-accumulates (MACs) of
//!   every network the project builds;
//! - [`latency`]: latency tables measured on the user's machine and the predictor summing
//!   them over an architecture;
//! - [`train`]: training and evaluating a network built from a genotype;
//! - [`data`]: dataset readers, normalisation, augmentation and batching;
//! - [`bench`]: timing a search step;
//! - [`report`]: the output directory of a run;
//! - [`checkpoint`]: per-epoch checkpoints for resuming interrupted runs.

pub mod bench;
pub mod checkpoint;
pub mod cost;
pub mod data;
pub mod device;
pub mod error;
pub mod latency;
pub mod multi;
pub mod nn;
pub mod report;
pub mod search;
pub mod space;
pub mod train;

pub use error::{NasError, Result};
