//! What every training loop shares: loss and accuracy, learning-rate schedules, global gradient
//! clipping, moving batches onto a device, evaluation; and the trainer of a network built from a
//! genotype.

pub mod clip;
pub mod evaluate;
pub mod genotype_trainer;
pub mod loss;
pub mod mobile_trainer;
pub mod optim;
pub mod schedule;
pub mod tensors;

pub use evaluate::{EvalResult, evaluate};
pub use genotype_trainer::{TrainConfig, TrainEpoch, TrainOutcome, train_genotype};
pub use loss::{correct_count, cross_entropy};
pub use schedule::{LrSchedule, cosine_at, cosine_lr};
