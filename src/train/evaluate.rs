//! Loss and accuracy of a model over a whole split, without gradients.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::loss::{correct_count, cross_entropy};
use super::tensors::batch_tensors;
use crate::data::BatchLoader;
use crate::error::{NasError, Result};

/// Mean loss and accuracy over a split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy per image.
    pub loss: f64,
    /// Fraction of correctly classified images, in [0, 1].
    pub accuracy: f64,
    /// Number of images evaluated.
    pub images: usize,
}

impl EvalResult {
    /// Fails when the loss on `split` after `epoch` is not finite although training went on
    /// (the training loop stops on a non-finite training loss itself): evaluation uses the
    /// batch-norm running statistics, and those diverged.
    pub fn ensure_finite(&self, split: &str, epoch: usize) -> Result<()> {
        if self.loss.is_finite() {
            return Ok(());
        }
        Err(NasError::Numerical(format!(
            "{split} loss became {} after epoch {epoch} although the training loss is finite: \
             batch-norm statistics diverged; lower --lr or check the data settings",
            self.loss
        )))
    }
}

/// Evaluates `forward` (a model already put in evaluation mode with `valid()`, so that no
/// autodiff graph grows) on every batch of `loader`, on the plain `device`.
pub fn evaluate(
    loader: &mut BatchLoader,
    device: &Device,
    forward: impl Fn(Tensor<4>) -> Tensor<2>,
) -> EvalResult {
    let mut loss_sum = 0.0;
    let mut correct = 0;
    let mut images = 0;
    for batch in loader.epoch() {
        let (x, y) = batch_tensors(&batch, device);
        let logits = forward(x);
        let loss: f32 = cross_entropy(logits.clone(), y.clone()).into_scalar();
        loss_sum += f64::from(loss) * batch.n as f64;
        correct += correct_count(logits, y);
        images += batch.n;
    }
    let denominator = images.max(1) as f64;
    EvalResult {
        loss: loss_sum / denominator,
        accuracy: correct as f64 / denominator,
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_evaluation_loss_is_an_error_naming_split_and_epoch() {
        let ok = EvalResult {
            loss: 0.5,
            accuracy: 0.9,
            images: 10,
        };
        assert!(ok.ensure_finite("test", 1).is_ok());
        let bad = EvalResult {
            loss: f64::NAN,
            ..ok
        };
        let message = bad.ensure_finite("validation", 3).unwrap_err().to_string();
        assert!(
            message.contains("validation loss became NaN after epoch 3"),
            "{message}"
        );
    }
}
