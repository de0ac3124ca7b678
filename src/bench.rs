//! Timing one DARTS search step, on the same network as the PyTorch peer benchmark
//! (search network, train-mode BN without affine parameters in the operations, cross-entropy
//! on a random batch), so that the two can be run side by side and compared as a ratio.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{NasError, Result};
use crate::nn::{ParamInit, SearchNetwork, SearchNetworkConfig};
use crate::search::darts::{DartsConfig, arch_optimizer, weight_optimizer};
use crate::train::clip::clip_global_norm;
use crate::train::cross_entropy;

/// What to time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Cells of the search network.
    pub cells: usize,
    /// Initial channels.
    pub channels: usize,
    /// Images per batch.
    pub batch: usize,
    /// Image side (images are `3 x size x size`).
    pub size: usize,
    /// Untimed runs before timing.
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub iters: usize,
    /// Seed of the weights and the input.
    pub seed: u64,
}

/// Medians in milliseconds and the peak memory of the process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    /// What was measured.
    pub implementation: String,
    /// CPU threads of the pool.
    pub threads: usize,
    /// Images per batch.
    pub batch: usize,
    /// Cells.
    pub cells: usize,
    /// Initial channels.
    pub channels: usize,
    /// Image side.
    pub size: usize,
    /// Parameters of the search network, architecture weights included.
    pub parameters: usize,
    /// One forward pass with train-mode BN and no autodiff graph.
    pub forward_ms: f64,
    /// Forward and backward of the cross-entropy loss (weights and alphas get gradients).
    pub step_ms: f64,
    /// A whole first-order DARTS step: architecture forward, backward and Adam update, then
    /// weight forward, backward, clipping and SGD update.
    pub darts_step_ms: f64,
    /// Peak resident memory of the process in MiB (Linux `VmHWM`; 0 where unavailable).
    pub peak_rss_mb: f64,
}

impl BenchConfig {
    /// Rejects settings no network can run with.
    pub fn check(&self) -> Result<()> {
        for (field, value) in [
            ("cells", self.cells),
            ("batch", self.batch),
            ("size", self.size),
            ("iters", self.iters),
        ] {
            if value == 0 {
                return Err(NasError::config(field, "must be at least 1, found 0"));
            }
        }
        if self.channels == 0 || !self.channels.is_multiple_of(2) {
            return Err(NasError::config(
                "channels",
                format!("must be even and positive, found {}", self.channels),
            ));
        }
        Ok(())
    }
}

/// Runs the benchmark on `device`.
pub fn run(config: &BenchConfig, device: &Device) -> Result<BenchResult> {
    config.check()?;
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    let network = SearchNetworkConfig {
        in_channels: 3,
        num_classes: 10,
        channels: config.channels,
        cells: config.cells,
        nodes: 4,
        stem_multiplier: 3,
    };
    plain.seed(config.seed);
    let shape = [config.batch, 3, config.size, config.size];
    let x_plain = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &plain);
    let labels: Vec<i64> = (0..config.batch as i64).map(|i| i % 10).collect();
    let y_data = TensorData::new(labels, [config.batch]);

    // Forward alone: a model on the plain device keeps its BN in training mode (batch
    // statistics), which is what PyTorch's `train()` under `no_grad` measures.
    let model_plain = SearchNetwork::new(&network, &mut ParamInit::new(config.seed, &plain))?;
    let parameters = crate::nn::count_parameters(&model_plain);
    let forward_ms = median_ms(config, || {
        let logits = model_plain.forward(x_plain.clone());
        let _ = logits.into_data();
    });

    let model = SearchNetwork::new(&network, &mut ParamInit::new(config.seed, &ad))?;
    let x = x_plain.clone().to_device(&ad);
    let y = Tensor::<1, Int>::from_data(y_data.clone(), &ad);
    let step_ms = median_ms(config, || {
        let loss = cross_entropy(model.forward(x.clone()), y.clone());
        let grads = loss.backward();
        drop(grads);
    });

    let darts = DartsConfig::paper(network.clone(), config.seed);
    let mut weight_opt = weight_optimizer(&darts);
    let mut arch_opt = arch_optimizer(&darts);
    let arch_ids = model.architecture_param_ids();
    let weight_ids = model.weight_param_ids();
    let mut model = Some(model);
    let darts_step_ms = median_ms(config, || {
        let mut m = model
            .take()
            .expect("the model is put back after every step");
        let loss = cross_entropy(m.forward(x.clone()), y.clone());
        let mut grads = loss.backward();
        let grads = burn::optim::GradientsParams::from_params(&mut grads, &m, &arch_ids);
        m = arch_opt.step(darts.arch_lr, m, grads);
        let loss = cross_entropy(m.forward(x.clone()), y.clone());
        let mut grads = loss.backward();
        let mut grads = burn::optim::GradientsParams::from_params(&mut grads, &m, &weight_ids);
        clip_global_norm(&m, &mut grads, darts.grad_clip);
        m = weight_opt.step(darts.lr, m, grads);
        let _ = m.alpha_normal.val().into_data();
        model = Some(m);
    });

    Ok(BenchResult {
        implementation: format!(
            "nasrs {} (burn 0.22.1, {:?})",
            env!("CARGO_PKG_VERSION"),
            plain
        ),
        threads: rayon::current_num_threads(),
        batch: config.batch,
        cells: config.cells,
        channels: config.channels,
        size: config.size,
        parameters,
        forward_ms,
        step_ms,
        darts_step_ms,
        peak_rss_mb: peak_rss_mb(),
    })
}

fn median_ms(config: &BenchConfig, mut f: impl FnMut()) -> f64 {
    for _ in 0..config.warmup {
        f();
    }
    let mut times: Vec<f64> = (0..config.iters.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status`.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
