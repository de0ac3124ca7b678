//! Multi-trial search: strategies propose whole architectures of a [`space::Space`], an
//! [`estimator::Estimator`] evaluates each one, and the results feed the next proposals.

pub mod estimator;
pub mod experiment;
pub mod history;
pub mod mlp;
pub mod pareto;
pub mod rank;
pub mod space;
pub mod spaces;
pub mod store;
pub mod strategies;
pub mod strategy;
pub mod supernet;
pub mod tabular;
pub mod trained;
pub mod trajectory;
mod worker;

pub use estimator::{Estimator, Evaluation};
pub use history::{Constraint, History, Objective, Observation, Score, Scoring};
pub use space::{Arch, Gene, Space};
pub use strategy::Strategy;
