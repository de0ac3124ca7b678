//! A latency table: the measured latency of every candidate of every block shape of the
//! inverted-residual space, with the settings it was measured under, and the predictor that
//! sums it over an architecture.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::space::mobile::{BlockChoice, BlockShape, MobileSpace};
use crate::{NasError, Result};

/// What a latency was measured under. A table holds for these settings only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySettings {
    /// Compute device as the command line names it (`flex`, `cuda:0`, ...).
    pub device: String,
    /// The processor or accelerator model, as the system reports it.
    pub processor: String,
    /// CPU threads of the backend.
    pub threads: usize,
    /// Images per forward pass.
    pub batch_size: usize,
}

/// The statistics of repeated timings of one forward pass, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Median.
    pub median_ms: f64,
    /// 10th percentile.
    pub p10_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Timed runs (after warm-up).
    pub runs: usize,
}

impl Timing {
    /// The statistics of `samples` (milliseconds); `None` when there are none.
    pub fn from_samples(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Timing {
            median_ms: quantile(&sorted, 0.5),
            p10_ms: quantile(&sorted, 0.1),
            p90_ms: quantile(&sorted, 0.9),
            runs: sorted.len(),
        })
    }
}

/// The `q` quantile of sorted values, interpolating linearly between neighbours.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    let fraction = position - low as f64;
    sorted[low] + (sorted[high] - sorted[low]) * fraction
}

/// One measured operation: `op` is `stem`, `head` or a block choice (`k5e6`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyEntry {
    /// The operation.
    pub op: String,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Stride.
    pub stride: usize,
    /// Input side (square).
    pub input_size: usize,
    /// Its timing.
    #[serde(flatten)]
    pub timing: Timing,
}

/// Latencies of every operation of a space, with when, where and how they were measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// The settings of every measurement in the table.
    pub settings: LatencySettings,
    /// Warm-up runs before timing each operation.
    pub warmup: usize,
    /// When the table was measured (seconds since the Unix epoch, UTC).
    pub measured_at: u64,
    /// The version of nasrs that measured it.
    pub nasrs_version: String,
    /// The tensor library and its version.
    pub backend_library: String,
    /// The space it covers.
    pub space: MobileSpace,
    /// One entry per operation and shape.
    pub entries: Vec<LatencyEntry>,
}

impl LatencyTable {
    /// The entry of `op` at `shape`, if measured.
    pub fn entry(&self, op: &str, shape: BlockShape) -> Option<&LatencyEntry> {
        self.entries.iter().find(|e| {
            e.op == op
                && e.c_in == shape.c_in
                && e.c_out == shape.c_out
                && e.stride == shape.stride
                && e.input_size == shape.input_size
        })
    }

    fn lookup(&self, op: &str, shape: BlockShape) -> Result<f64> {
        self.entry(op, shape)
            .map(|e| e.timing.median_ms)
            .ok_or_else(|| {
                NasError::config(
                    "latency table",
                    format!(
                        "no entry for `{op}` from {} to {} channels at stride {} on {}x{} \
                         inputs; measure a table for this space with `nas latency-table`",
                        shape.c_in, shape.c_out, shape.stride, shape.input_size, shape.input_size
                    ),
                )
            })
    }

    /// The median latency of `choice` on `shape`; the identity costs nothing.
    ///
    /// # Errors
    /// [`NasError::Config`] when the table has no such entry.
    pub fn block_ms(&self, shape: BlockShape, choice: BlockChoice) -> Result<f64> {
        match choice {
            BlockChoice::Skip => Ok(0.0),
            other => self.lookup(&other.name(), shape),
        }
    }

    /// The latency of the stem and the head together.
    ///
    /// # Errors
    /// [`NasError::Config`] when the table has no entry for them.
    pub fn fixed_ms(&self) -> Result<f64> {
        let (stem, head) = fixed_shapes(&self.space);
        Ok(self.lookup("stem", stem)? + self.lookup("head", head)?)
    }

    /// For every block, the latency of each of its choices in [`BlockShape::choices`] order.
    ///
    /// # Errors
    /// [`NasError::Config`] when an entry is missing.
    pub fn choice_ms(&self) -> Result<Vec<Vec<f64>>> {
        self.space
            .blocks()
            .into_iter()
            .map(|shape| {
                shape
                    .choices()
                    .into_iter()
                    .map(|c| self.block_ms(shape, c))
                    .collect()
            })
            .collect()
    }

    /// The predicted latency of `arch`: the sum of the medians of its stem, blocks and head.
    ///
    /// # Errors
    /// [`NasError::Config`] when `arch` does not fit the table's space or an entry is missing.
    pub fn predict(&self, arch: &[BlockChoice]) -> Result<f64> {
        self.space.validate(arch)?;
        let mut total = self.fixed_ms()?;
        for (shape, &choice) in self.space.blocks().into_iter().zip(arch) {
            total += self.block_ms(shape, choice)?;
        }
        Ok(total)
    }

    /// What differs between the table's settings and `current`, one sentence each; empty when
    /// the table applies.
    pub fn mismatches(&self, current: &LatencySettings, space: &MobileSpace) -> Vec<String> {
        let t = &self.settings;
        let mut found = Vec::new();
        if t.device != current.device {
            found.push(format!("device `{}` (now `{}`)", t.device, current.device));
        }
        if t.processor != current.processor {
            found.push(format!(
                "processor `{}` (now `{}`)",
                t.processor, current.processor
            ));
        }
        if t.threads != current.threads {
            found.push(format!("{} threads (now {})", t.threads, current.threads));
        }
        if t.batch_size != current.batch_size {
            found.push(format!(
                "batch size {} (now {})",
                t.batch_size, current.batch_size
            ));
        }
        if &self.space != space {
            found.push("another space (stages, widths or image size differ)".to_string());
        }
        found
    }

    /// Writes the table as JSON.
    ///
    /// # Errors
    /// [`NasError::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| NasError::Format {
            path: path.to_path_buf(),
            message: format!("cannot encode the latency table: {e}"),
        })?;
        std::fs::write(path, text).map_err(|source| NasError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a table written by [`LatencyTable::save`] and checks it covers its own space.
    ///
    /// # Errors
    /// [`NasError::Io`] when the file cannot be read; [`NasError::Format`] when it is not such
    /// a table, a latency is not a positive finite number, or an entry is missing.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| NasError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |message: String| NasError::Format {
            path: path.to_path_buf(),
            message,
        };
        let table: LatencyTable = serde_json::from_str(&text).map_err(|e| {
            format(format!(
                "not a latency table written by `nas latency-table`: {e}"
            ))
        })?;
        let s = &table.settings;
        if s.threads == 0 || s.batch_size == 0 {
            return Err(format(format!(
                "settings.threads and settings.batch_size must be at least 1, found {} and {}",
                s.threads, s.batch_size
            )));
        }
        for (i, e) in table.entries.iter().enumerate() {
            let t = e.timing;
            let values = [t.median_ms, t.p10_ms, t.p90_ms];
            if values.iter().any(|v| !v.is_finite() || *v < 0.0) || t.median_ms <= 0.0 {
                return Err(format(format!(
                    "entries[{i}] (`{}`): latencies must be finite and the median positive, \
                     found median {} p10 {} p90 {}",
                    e.op, t.median_ms, t.p10_ms, t.p90_ms
                )));
            }
            if t.runs == 0 || !(t.p10_ms <= t.median_ms && t.median_ms <= t.p90_ms) {
                return Err(format(format!(
                    "entries[{i}] (`{}`): expected p10 <= median <= p90 over at least one run, \
                     found p10 {} median {} p90 {} over {} runs",
                    e.op, t.p10_ms, t.median_ms, t.p90_ms, t.runs
                )));
            }
            let duplicate = table.entries[..i].iter().any(|o| {
                (&o.op, o.c_in, o.c_out, o.stride, o.input_size)
                    == (&e.op, e.c_in, e.c_out, e.stride, e.input_size)
            });
            if duplicate {
                return Err(format(format!(
                    "entries[{i}] (`{}` from {} to {} channels at stride {} on {}x{}) repeats \
                     an earlier entry",
                    e.op, e.c_in, e.c_out, e.stride, e.input_size, e.input_size
                )));
            }
        }
        table
            .space
            .check()
            .map_err(|e| format(format!("invalid space: {e}")))?;
        table
            .fixed_ms()
            .and_then(|_| table.choice_ms())
            .map_err(|e| format(format!("incomplete table: {e}")))?;
        Ok(table)
    }
}

/// The shapes under which the stem and the head are recorded: the stem maps the image
/// channels to the stem width at the image size; the head maps the last width to the classes
/// (its `c_out`) at the last block's output size.
pub fn fixed_shapes(space: &MobileSpace) -> (BlockShape, BlockShape) {
    let stem = BlockShape {
        c_in: space.in_channels,
        c_out: space.stem_channels,
        stride: 1,
        input_size: space.image_size,
        fixed: None,
    };
    let head = BlockShape {
        c_in: space.final_channels(),
        c_out: space.classes,
        stride: 1,
        input_size: space.final_size(),
        fixed: None,
    };
    (stem, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_neighbours() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        // Position 0.1 x 4 = 0.4: 1 + 0.4 x (2 - 1).
        assert!((quantile(&sorted, 0.1) - 1.4).abs() < 1e-12);
        // Position 0.9 x 4 = 3.6: 4 + 0.6 x (10 - 4).
        assert!((quantile(&sorted, 0.9) - 7.6).abs() < 1e-12);
        let t = Timing::from_samples(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((t.median_ms, t.runs), (2.5, 4));
        assert!(Timing::from_samples(&[]).is_none());
    }
}
