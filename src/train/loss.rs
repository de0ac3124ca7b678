//! Classification loss and accuracy.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean cross-entropy of `logits` `[batch, classes]` against class indices `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let picked = log_p.gather(1, targets.reshape([n, 1]));
    picked.mean().neg()
}

/// Number of rows of `logits` whose largest entry is at the target index.
pub fn correct_count(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let [n, _] = logits.dims();
    let predicted = logits.argmax(1).reshape([n]);
    predicted
        .equal(targets)
        .int()
        .sum()
        .into_scalar::<i64>()
        .max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits `[[0, ln 3], [0, 0]]` with targets `[1, 0]`: probabilities 3/4 and 1/2, so the
    /// loss is `-(ln 0.75 + ln 0.5) / 2` by hand.
    #[test]
    fn cross_entropy_matches_hand_computation() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.0, 3f32.ln()], [0.0, 0.0]], &device);
        let targets = Tensor::<1, Int>::from_ints([1, 0], &device);
        let loss: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        let expected = -(0.75f32.ln() + 0.5f32.ln()) / 2.0;
        assert!(
            (loss - expected).abs() < 1e-6,
            "loss {loss}, expected {expected}"
        );
        // Row 0 predicts class 1 (correct); row 1 ties and argmax takes index 0 (correct).
        assert_eq!(correct_count(logits, targets), 2);
    }
}
