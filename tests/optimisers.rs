//! The optimiser settings DARTS depends on, checked numerically against the update formulas of
//! PyTorch's SGD (momentum, no dampening, L2 weight decay) and Adam (L2 weight decay, eps 1e-8),
//! and clipping by the global gradient norm.

use burn::optim::GradientsParams;
use burn::prelude::*;
use nasrs::nn::linear::Linear;
use nasrs::nn::{ParamInit, SearchNetworkConfig, named_parameters};
use nasrs::search::darts::{DartsConfig, arch_optimizer, weight_optimizer};
use nasrs::train::clip::clip_global_norm;

fn config() -> DartsConfig {
    let network = SearchNetworkConfig {
        in_channels: 1,
        num_classes: 2,
        channels: 2,
        cells: 1,
        nodes: 1,
        stem_multiplier: 1,
    };
    DartsConfig::paper(network, 0)
}

/// A 1 -> 1 linear layer; the loss `w * x + b` has gradients `x` and `1`.
fn layer(device: &Device) -> Linear {
    Linear::new(1, 1, &mut ParamInit::new(1, device))
}

fn weight_and_bias(model: &Linear) -> (f64, f64) {
    let params = named_parameters(model);
    (f64::from(params[0].2[0]), f64::from(params[1].2[0]))
}

fn loss(model: &Linear, x: f32, device: &Device) -> Tensor<1> {
    model.forward(Tensor::from_floats([[x]], device)).sum()
}

/// Three SGD steps: d = g + wd w; buf = d (first step), then buf = momentum buf + d;
/// w -= lr buf. Without dampening the second step differs from burn's default (0.1).
#[test]
fn weight_optimiser_is_sgd_with_momentum_without_dampening() {
    let device = Device::flex().autodiff();
    let config = config();
    let mut model = layer(&device);
    let mut opt = weight_optimizer(&config);
    let (mut w, mut b) = weight_and_bias(&model);
    let (lr, wd, mu, x) = (0.1, config.weight_decay, config.momentum, 2.0);
    let (mut buf_w, mut buf_b) = (0.0, 0.0);
    for step in 0..3 {
        let grads = GradientsParams::from_grads(loss(&model, x as f32, &device).backward(), &model);
        model = opt.step(lr, model, grads);
        let (dw, db) = (x + wd * w, 1.0 + wd * b);
        (buf_w, buf_b) = if step == 0 {
            (dw, db)
        } else {
            (mu * buf_w + dw, mu * buf_b + db)
        };
        w -= lr * buf_w;
        b -= lr * buf_b;
        let (got_w, got_b) = weight_and_bias(&model);
        assert!(
            (got_w - w).abs() < 1e-5,
            "step {step}: w {got_w}, expected {w}"
        );
        assert!(
            (got_b - b).abs() < 1e-5,
            "step {step}: b {got_b}, expected {b}"
        );
    }
}

/// Adam with betas (0.5, 0.999), eps 1e-8 and L2 weight decay. The gradient is tiny (1e-6) and
/// decay off, so epsilon matters: with burn's default 1e-5 each step would be about 11 times
/// smaller than with 1e-8.
#[test]
fn architecture_optimiser_is_adam_with_the_reference_settings() {
    let device = Device::flex().autodiff();
    let mut config = config();
    config.arch_weight_decay = 0.0;
    let mut model = layer(&device);
    let mut opt = arch_optimizer(&config);
    let (mut w, _) = weight_and_bias(&model);
    let (lr, b1, b2, eps, x) = (config.arch_lr, 0.5f64, 0.999f64, 1e-8, 1e-6);
    let (mut m, mut v) = (0.0, 0.0);
    for t in 1..=3 {
        let grads = GradientsParams::from_grads(loss(&model, x as f32, &device).backward(), &model);
        model = opt.step(lr, model, grads);
        let g = x;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let m_hat = m / (1.0 - b1.powi(t));
        let v_hat = v / (1.0 - b2.powi(t));
        w -= lr * m_hat / (v_hat.sqrt() + eps);
        let (got_w, _) = weight_and_bias(&model);
        assert!(
            (got_w - w).abs() < 2e-6,
            "step {t}: w {got_w}, expected {w}"
        );
    }

    // With weight decay 1e-3 the decay term joins the gradient (L2, not decoupled).
    let config = self::config();
    let mut model = layer(&device);
    let mut opt = arch_optimizer(&config);
    let (w0, _) = weight_and_bias(&model);
    let grads = GradientsParams::from_grads(loss(&model, 2.0, &device).backward(), &model);
    model = opt.step(lr, model, grads);
    // First Adam step moves by lr * sign(g) (m_hat / sqrt(v_hat) = 1) with g = 2 + 1e-3 w0 > 0.
    let (w1, _) = weight_and_bias(&model);
    assert!((w0 - w1 - lr).abs() < 1e-6, "{w0} -> {w1}");
}

/// Gradients 2, 2 (weights) and 1 (bias) have global norm 3; clipping at 1 scales all three by
/// 1/3. Clipping each tensor on its own would leave the bias gradient at 1.
#[test]
fn clipping_uses_the_global_norm() {
    let device = Device::flex().autodiff();
    let model = Linear::new(2, 1, &mut ParamInit::new(0, &device));
    let loss = model
        .forward(Tensor::from_floats([[2.0, 2.0]], &device))
        .sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = clip_global_norm(&model, &mut grads, 1.0);
    assert!((norm - 3.0).abs() < 1e-6);
    let w: Vec<f32> = grads
        .get::<2>(model.weight.id)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let b: Vec<f32> = grads
        .get::<1>(model.bias.id)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    for (got, want) in w.iter().chain(&b).zip([2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0]) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    // Below the threshold nothing changes.
    let mut grads = GradientsParams::from_grads(
        model
            .forward(Tensor::from_floats([[2.0, 2.0]], &device))
            .sum()
            .backward(),
        &model,
    );
    clip_global_norm(&model, &mut grads, 5.0);
    let b: Vec<f32> = grads
        .get::<1>(model.bias.id)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(b, vec![1.0]);
}
