//! Learning-rate schedules.

/// Cosine annealing from `lr_max` at epoch 0 to `lr_min` at epoch `epochs` (Loshchilov & Hutter
/// 2017, without restarts), evaluated once per epoch as the DARTS reference code does.
pub fn cosine_lr(lr_max: f64, lr_min: f64, epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return lr_max;
    }
    let progress = epoch as f64 / epochs as f64;
    lr_min + 0.5 * (lr_max - lr_min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_midpoint() {
        assert!((cosine_lr(0.025, 0.001, 0, 50) - 0.025).abs() < 1e-12);
        assert!((cosine_lr(0.025, 0.001, 50, 50) - 0.001).abs() < 1e-12);
        // Half way the cosine term is zero: the mean of the two ends.
        assert!((cosine_lr(0.025, 0.001, 25, 50) - 0.013).abs() < 1e-12);
    }
}
