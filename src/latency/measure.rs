//! Measuring latencies on the machine at hand: every operation of the inverted-residual space
//! alone (a latency table), and whole networks (to check that the table's sums predict them).
//!
//! Every timing is of a forward pass in evaluation mode (`valid()`: batch norm with running
//! statistics, no autodiff graph), after warm-up runs, repeated, with the device synchronised
//! before the clock stops; the median is what a table keeps.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::prelude::*;
use burn::tensor::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::table::{LatencyEntry, LatencySettings, LatencyTable, Timing, fixed_shapes};
use crate::nn::ParamInit;
use crate::nn::mobile::MobileNetwork;
use crate::space::mobile::{BlockChoice, BlockShape, MobileSpace};
use crate::{NasError, Result};

/// How each latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// Untimed runs first (caches, allocator, thread pool).
    pub warmup: usize,
    /// Timed runs; the median is kept.
    pub repeats: usize,
}

impl Protocol {
    /// Rejects a protocol without timed runs.
    pub fn check(&self) -> Result<()> {
        if self.repeats == 0 {
            return Err(NasError::config(
                "repeats",
                "at least one timed run is needed",
            ));
        }
        Ok(())
    }
}

/// Runs `timing` on a worker of a pool of `threads` threads: every timing of this module is
/// meant to run there, with the thread count of the table it makes or compares with.
///
/// The flex backend splits an operation over the rayon pool of the thread that calls it.
/// Called from a thread outside any pool (a program's main thread), each operation is handed
/// to the global pool's workers and waits for one to wake, tens of microseconds and more when
/// they have gone to sleep; on a pool's own worker it starts at once. Timed from the main
/// thread on the development machine, whole networks ran 1.5 (32x32 images) to 4 (8x8) times
/// slower and varied two-fold from one run to the next; on a worker they are steady. So a
/// table, its check and the networks compared with it are all timed here.
///
/// # Errors
/// [`NasError::Config`] on `threads` when it is 0 or the pool cannot be built.
pub fn on_timing_pool<R: Send>(threads: usize, timing: impl FnOnce() -> R + Send) -> Result<R> {
    if threads == 0 {
        return Err(NasError::config("threads", "must be at least 1, found 0"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| NasError::config("threads", format!("cannot build a timing pool: {e}")))?;
    Ok(pool.install(timing))
}

/// Times `forward` on `device`: `warmup` untimed runs, then `repeats` timed ones, each ending
/// with a device synchronisation.
///
/// # Errors
/// [`NasError::Numerical`] when the device reports a failed operation.
pub fn time_runs(device: &Device, protocol: Protocol, mut forward: impl FnMut()) -> Result<Timing> {
    protocol.check()?;
    let sync = || {
        device
            .sync()
            .map_err(|e| NasError::Numerical(format!("device failed while timing: {e:?}")))
    };
    for _ in 0..protocol.warmup {
        forward();
        sync()?;
    }
    let mut samples = Vec::with_capacity(protocol.repeats);
    for _ in 0..protocol.repeats {
        let start = Instant::now();
        forward();
        sync()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Timing::from_samples(&samples)
        .ok_or_else(|| NasError::config("repeats", "at least one timed run is needed"))
}

/// A deterministic input of `channels` x `side` x `side` images.
fn input(device: &Device, batch: usize, channels: usize, side: usize) -> Tensor<4> {
    Tensor::random(
        [batch, channels, side, side],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// Measures the latency table of `space`: the stem, the head, and every choice of every
/// distinct block shape, each timed in place inside a whole network.
///
/// Timing an operation alone, over and over, keeps its weights and input in the processor's
/// caches; inside a network they have been pushed out by the layers before, and at batch 1 the
/// whole network ran about a quarter slower than the sum of its isolated operations. So the
/// table times each part of a network in its forward pass instead: for each convolutional
/// choice, a network with that choice in every block runs `warmup + repeats` times with a clock
/// around the stem, each block and the head. Blocks of the same shape pool their samples; the
/// stem and head pool theirs over all the networks. `on_entry` hears each entry as it is made.
///
/// # Errors
/// [`NasError::Config`] for an invalid space or protocol; [`NasError::Numerical`] when the
/// device fails.
pub fn measure_table(
    space: &MobileSpace,
    settings: LatencySettings,
    protocol: Protocol,
    device: &Device,
    mut on_entry: impl FnMut(&LatencyEntry),
) -> Result<LatencyTable> {
    space.check()?;
    protocol.check()?;
    let batch = settings.batch_size;
    if batch == 0 {
        return Err(NasError::config(
            "batch_size",
            "must be at least 1, found 0",
        ));
    }
    let shapes = space.blocks();
    let (stem_shape, head_shape) = fixed_shapes(space);
    let x = input(device, batch, space.in_channels, space.image_size);
    let failure = std::cell::Cell::new(None);
    let sync = || {
        if let Err(e) = device.sync() {
            failure.set(Some(format!("{e:?}")));
        }
    };

    // samples[(op, shape)] in the order first seen.
    let mut samples: Vec<(String, BlockShape, Vec<f64>)> = Vec::new();
    let mut add = |op: String, shape: BlockShape, times: &[f64]| match samples
        .iter_mut()
        .find(|(o, s, _)| *o == op && *s == shape)
    {
        Some((_, _, all)) => all.extend_from_slice(times),
        None => samples.push((op, shape, times.to_vec())),
    };
    let convolutions: Vec<BlockChoice> = BlockChoice::ALL
        .into_iter()
        .filter(|c| *c != BlockChoice::Skip)
        .collect();
    for (n, &choice) in convolutions.iter().enumerate() {
        // Blocks that cannot take `choice` (fixed ones) keep their own.
        let arch: Vec<BlockChoice> = shapes
            .iter()
            .map(|s| {
                if s.choices().contains(&choice) {
                    choice
                } else {
                    s.choices()[0]
                }
            })
            .collect();
        let mut init = ParamInit::new(n as u64, &device.clone().autodiff());
        let network = MobileNetwork::new(space, &arch, &mut init).valid();
        for _ in 0..protocol.warmup {
            network.forward_timed(x.clone(), sync);
        }
        // per_part[k]: the samples of part k (stem, blocks..., head).
        let mut per_part = vec![Vec::with_capacity(protocol.repeats); shapes.len() + 2];
        for _ in 0..protocol.repeats {
            for (part, t) in per_part
                .iter_mut()
                .zip(network.forward_timed(x.clone(), sync))
            {
                part.push(t);
            }
        }
        if let Some(e) = failure.take() {
            return Err(NasError::Numerical(format!(
                "device failed while timing: {e}"
            )));
        }
        add("stem".into(), stem_shape, &per_part[0]);
        for (b, shape) in shapes.iter().enumerate() {
            add(arch[b].name(), *shape, &per_part[b + 1]);
        }
        add("head".into(), head_shape, &per_part[shapes.len() + 1]);
    }

    let mut entries = Vec::with_capacity(samples.len());
    for (op, shape, times) in samples {
        let timing = Timing::from_samples(&times)
            .ok_or_else(|| NasError::config("repeats", "at least one timed run is needed"))?;
        let entry = LatencyEntry {
            op,
            c_in: shape.c_in,
            c_out: shape.c_out,
            stride: shape.stride,
            input_size: shape.input_size,
            timing,
        };
        on_entry(&entry);
        entries.push(entry);
    }
    let measured_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(LatencyTable {
        settings,
        warmup: protocol.warmup,
        measured_at,
        nasrs_version: env!("CARGO_PKG_VERSION").to_string(),
        backend_library: "burn 0.22.1".to_string(),
        space: space.clone(),
        entries,
    })
}

/// Times the whole network of `arch` under the same protocol as a table.
///
/// # Errors
/// As [`time_runs`]; [`NasError::Config`] when `arch` does not fit `space`.
pub fn measure_network(
    space: &MobileSpace,
    arch: &[BlockChoice],
    batch: usize,
    protocol: Protocol,
    device: &Device,
) -> Result<Timing> {
    space.validate(arch)?;
    let mut init = ParamInit::new(0, &device.clone().autodiff());
    let network = MobileNetwork::new(space, arch, &mut init).valid();
    let x = input(device, batch, space.in_channels, space.image_size);
    time_runs(device, protocol, || drop(network.forward(x.clone())))
}

/// A uniformly random architecture of `space`: each block picks among its own choices.
pub fn random_arch(space: &MobileSpace, rng: &mut ChaCha8Rng) -> Vec<BlockChoice> {
    space
        .blocks()
        .into_iter()
        .map(|shape| {
            let choices = shape.choices();
            choices[rng.random_range(0..choices.len())]
        })
        .collect()
}

/// One architecture of a validation: predicted and measured latency.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Validated {
    /// The architecture's key.
    pub arch: String,
    /// Sum of the table's medians.
    pub predicted_ms: f64,
    /// The measured whole network.
    pub measured: Timing,
}

impl Validated {
    /// `(predicted - measured) / measured`.
    pub fn relative_error(&self) -> f64 {
        (self.predicted_ms - self.measured.median_ms) / self.measured.median_ms
    }
}

/// Measures `count` random architectures of the table's space (seeded) and pairs each with
/// the table's prediction. `on_arch` hears each as it is done.
///
/// # Errors
/// As [`measure_network`] and [`LatencyTable::predict`].
pub fn validate_table(
    table: &LatencyTable,
    count: usize,
    seed: u64,
    protocol: Protocol,
    device: &Device,
    mut on_arch: impl FnMut(&Validated),
) -> Result<Vec<Validated>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        let arch = random_arch(&table.space, &mut rng);
        let predicted_ms = table.predict(&arch)?;
        let measured = measure_network(
            &table.space,
            &arch,
            table.settings.batch_size,
            protocol,
            device,
        )?;
        let done = Validated {
            arch: table.space.key(&arch),
            predicted_ms,
            measured,
        };
        on_arch(&done);
        results.push(done);
    }
    Ok(results)
}

/// The processor this process runs on: the CPU model from `/proc/cpuinfo` on Linux, the
/// architecture name elsewhere.
pub fn processor_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
