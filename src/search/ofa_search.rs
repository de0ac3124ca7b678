//! Specialising a trained Once-for-All network to latency budgets (Cai et al. 2020, section
//! 3.4): measure the accuracy of a sample of subnets with the shared weights, fit an accuracy
//! predictor to them, and run an evolutionary search per budget in which the predictor scores
//! the candidates and a latency table rejects those over the budget; the winners are then
//! measured for real (accuracy with recalibrated batch norm, latency of the whole network).
//!
//! A subnet is an architecture and the image side it runs at ([`Subnet`]); its latency comes
//! from the table measured for that side ([`ResolutionTables`]).
//!
//! The predictor is ridge regression on a one-hot encoding of the subnet (one indicator per
//! block and choice, and one per resolution). The paper uses a small MLP over a similar
//! encoding fitted to 16,000 measured subnets; with the few hundred subnets a CPU budget can
//! measure, a linear model with a penalty chosen by leave-one-out error overfits less.
//!
//! The search is regularised (aging) evolution (Real et al. 2019, "Regularized Evolution for
//! Image Classifier Architecture Search"): tournament selection, one mutation per child, the
//! oldest member leaves.

use std::collections::{HashSet, VecDeque};
use std::io::Write as _;
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::latency::{LatencySettings, LatencyTable};
use crate::multi::rank::kendall_tau;
use crate::nn::elastic::{
    ElasticArch, ElasticDims, block_expands, block_kernels, min_depths, sample_arch,
    sample_resolution, smallest_arch, stage_ranges,
};
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::train::EvalResult;
use crate::{NasError, Result};

/// A subnet of a Once-for-All network: an architecture of the space and the image side it
/// runs at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subnet {
    /// One choice per block ([`crate::nn::elastic::check_arch`] holds).
    pub arch: Vec<BlockChoice>,
    /// The side images are resized to.
    pub resolution: usize,
}

impl Subnet {
    /// `arch@side`, the architecture's [`MobileSpace::key`] and the side.
    pub fn key(&self, space: &MobileSpace) -> String {
        format!("{}@{}", space.key(&self.arch), self.resolution)
    }
}

/// The one-hot encoding of `subnet`: for every block, one indicator per choice of
/// [`crate::space::mobile::BlockShape::choices`] (skip included), concatenated in block order,
/// then one indicator per side of `resolutions`.
pub fn encode(space: &MobileSpace, resolutions: &[usize], subnet: &Subnet) -> Vec<f32> {
    let mut x = Vec::new();
    for (shape, choice) in space.blocks().iter().zip(&subnet.arch) {
        x.extend(
            shape
                .choices()
                .iter()
                .map(|c| if c == choice { 1.0 } else { 0.0 }),
        );
    }
    x.extend(
        resolutions
            .iter()
            .map(|&r| if r == subnet.resolution { 1.0 } else { 0.0 }),
    );
    x
}

/// `count` distinct subnets drawn with every dimension elastic ([`sample_arch`], then a side of
/// `resolutions` uniformly) from `seed`, fewer when the space has fewer (the draw stops after
/// `100 x count` repeats; none without resolutions). A larger `count` extends the same
/// sequence: the first `count` subnets of a longer draw are this draw.
pub fn draw_subnets(
    space: &MobileSpace,
    resolutions: &[usize],
    count: usize,
    seed: u64,
) -> Vec<Subnet> {
    if resolutions.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut drawn = Vec::with_capacity(count);
    let mut repeats = 0;
    while drawn.len() < count && repeats < 100 * count.max(1) {
        let arch = sample_arch(space, &ElasticDims::ALL, &mut rng);
        let subnet = Subnet {
            arch,
            resolution: sample_resolution(resolutions, &mut rng),
        };
        if seen.insert(subnet.clone()) {
            drawn.push(subnet);
        } else {
            repeats += 1;
        }
    }
    drawn
}

/// One latency table per image side: the latency of a subnet at side `r` is the prediction of
/// the table measured for the space at image size `r`, since every layer's cost depends on the
/// size of its input.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolutionTables {
    /// Ascending by the side of their space.
    tables: Vec<LatencyTable>,
}

impl ResolutionTables {
    /// Pairs every side of `resolutions` with the one table of `tables` measured for `space`
    /// at that image size. Each table comes with where it was read from, for the messages.
    ///
    /// # Errors
    /// As [`crate::search::ofa::check_resolutions`] for `resolutions`; [`NasError::Config`] on
    /// `latency_table` naming the table at fault: a table of another space than `space` at
    /// some image size, a table whose side is not among `resolutions`, two tables for one
    /// side, a side without a table, or tables measured under different settings (device,
    /// processor, threads, batch size), which would not compare.
    pub fn new(
        space: &MobileSpace,
        resolutions: &[usize],
        tables: Vec<(String, LatencyTable)>,
    ) -> Result<Self> {
        crate::search::ofa::check_resolutions(resolutions, space.image_size)?;
        let error = |message: String| NasError::config("latency_table", message);
        let mut by_side: Vec<(usize, String, LatencyTable)> = Vec::new();
        for (origin, table) in tables {
            let side = table.space.image_size;
            if table.space != at_side(space, side) {
                return Err(error(format!(
                    "{origin} was measured for another space: {}",
                    space_differences(&table.space, space).join(", ")
                )));
            }
            if !resolutions.contains(&side) {
                return Err(error(format!(
                    "{origin} is for {side}x{side} images, which is not among the resolutions \
                     {resolutions:?}"
                )));
            }
            if let Some((_, first, _)) = by_side.iter().find(|(s, _, _)| *s == side) {
                return Err(error(format!(
                    "{origin} and {first} are both for {side}x{side} images: give one table per \
                     resolution"
                )));
            }
            if let Some((_, first, other)) = by_side.first()
                && other.settings != table.settings
            {
                return Err(error(format!(
                    "{origin} was measured under other settings than {first} ({} against {}): \
                     the latencies of different resolutions would not compare",
                    describe(&table.settings),
                    describe(&other.settings)
                )));
            }
            by_side.push((side, origin, table));
        }
        if let Some(&missing) = resolutions
            .iter()
            .find(|&&r| !by_side.iter().any(|(s, _, _)| *s == r))
        {
            return Err(error(format!(
                "no table for {missing}x{missing} images: every resolution needs a table \
                 measured at its image size (`--image-size {missing}`)"
            )));
        }
        by_side.sort_by_key(|(side, _, _)| *side);
        Ok(ResolutionTables {
            tables: by_side.into_iter().map(|(_, _, t)| t).collect(),
        })
    }

    /// The tables, ascending by image side.
    pub fn tables(&self) -> &[LatencyTable] {
        &self.tables
    }

    /// The settings every table was measured under.
    pub fn settings(&self) -> &LatencySettings {
        &self.tables[0].settings
    }

    /// The table of image side `side`, if there is one.
    pub fn table(&self, side: usize) -> Option<&LatencyTable> {
        self.tables.iter().find(|t| t.space.image_size == side)
    }

    /// The latency the table of the subnet's side predicts for its architecture.
    ///
    /// # Errors
    /// [`NasError::Config`] on `resolutions` when there is no table for the side; as
    /// [`LatencyTable::predict`].
    pub fn predict(&self, subnet: &Subnet) -> Result<f64> {
        let side = subnet.resolution;
        self.table(side)
            .ok_or_else(|| {
                NasError::config("resolutions", format!("no latency table for side {side}"))
            })?
            .predict(&subnet.arch)
    }
}

/// Settings as a reader writes them: `device flex, processor X, 1 thread(s), batch 1`.
fn describe(settings: &LatencySettings) -> String {
    format!(
        "device {}, processor {}, {} thread(s), batch {}",
        settings.device, settings.processor, settings.threads, settings.batch_size
    )
}

/// What differs between a table's space and the dataset's, image side aside, one phrase each.
fn space_differences(table: &MobileSpace, wanted: &MobileSpace) -> Vec<String> {
    let mut found = Vec::new();
    for (name, a, b) in [
        ("in_channels", table.in_channels, wanted.in_channels),
        ("classes", table.classes, wanted.classes),
        ("stem_channels", table.stem_channels, wanted.stem_channels),
        ("head_channels", table.head_channels, wanted.head_channels),
    ] {
        if a != b {
            found.push(format!("{name} {a} (the dataset's space: {b})"));
        }
    }
    if table.stages != wanted.stages {
        found.push("other stages".to_string());
    }
    if table.search_transitions != wanted.search_transitions {
        found.push("other searched transitions".to_string());
    }
    found
}

/// `space` with images of side `side`.
pub fn at_side(space: &MobileSpace, side: usize) -> MobileSpace {
    MobileSpace {
        image_size: side,
        ..space.clone()
    }
}

/// One subnet whose accuracy was measured with the elastic network's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredSubnet {
    /// The subnet's architecture, [`MobileSpace::key`].
    pub key: String,
    /// The image side it ran at.
    pub resolution: usize,
    /// Held-out accuracy (batch norm recalibrated).
    pub accuracy: f64,
    /// Held-out cross-entropy.
    pub loss: f64,
    /// Latency the table predicts, when a table was given.
    pub predicted_latency_ms: Option<f64>,
    /// Seconds the measurement took.
    pub seconds: f64,
}

/// Reads the subnets measured so far from a JSON-lines file written by [`append_measured`];
/// none when the file does not exist. A last line cut short (a kill in the middle of a write)
/// is dropped, from the file too, since that subnet is measured again.
///
/// # Errors
/// [`NasError::Io`] when the file cannot be read; [`NasError::Format`] naming the line when a
/// complete line is not a measured subnet.
pub fn read_measured(path: &Path) -> Result<Vec<MeasuredSubnet>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut measured = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MeasuredSubnet>(line) {
            Ok(m) => measured.push(m),
            Err(_) if i + 1 == lines.len() && !complete => {
                tracing::warn!(file = %path.display(), "dropping an incomplete last line");
                // Rewritten without it, so that the next appended line starts a line of its
                // own; through a temporary file, so that a kill now loses nothing complete.
                let kept: String = lines[..i].iter().map(|l| format!("{l}\n")).collect();
                let staging = path.with_extension("jsonl.tmp");
                std::fs::write(&staging, kept).map_err(|e| NasError::io(&staging, e))?;
                std::fs::rename(&staging, path).map_err(|e| NasError::io(path, e))?;
            }
            Err(e) => {
                return Err(NasError::format(
                    path,
                    format!("line {}: not a measured subnet: {e}", i + 1),
                ));
            }
        }
    }
    Ok(measured)
}

/// Replaces the file of measured subnets at `path` by `measured`, one JSON line each, through
/// a temporary file renamed over it, so that a kill leaves the old file or the new one.
///
/// # Errors
/// [`NasError::Io`] naming the file.
pub fn write_measured(path: &Path, measured: &[MeasuredSubnet]) -> Result<()> {
    let mut text = String::new();
    for m in measured {
        let line = serde_json::to_string(m)
            .map_err(|e| NasError::format(path, format!("cannot serialize: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    let staging = path.with_extension("jsonl.tmp");
    std::fs::write(&staging, text).map_err(|e| NasError::io(&staging, e))?;
    std::fs::rename(&staging, path).map_err(|e| NasError::io(path, e))
}

/// Appends `measured` as one JSON line to `path`, written with a single call so that a kill
/// leaves at most one incomplete last line.
///
/// # Errors
/// [`NasError::Io`] naming the file.
pub fn append_measured(path: &Path, measured: &MeasuredSubnet) -> Result<()> {
    let mut line = serde_json::to_string(measured)
        .map_err(|e| NasError::format(path, format!("cannot serialize: {e}")))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| NasError::io(path, e))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| NasError::io(path, e))
}

/// The measurements of `subnets`, in order: those already in `done` (matched by architecture
/// and side) are taken from there (with the latency `tables` predict now), the others are measured by `score` (an [`EvalResult`] on
/// held-out data) and handed to `on_measured` (to append them to the file) as they come, so
/// that a run killed in the middle measures only what it had not.
///
/// # Errors
/// Whatever `score` or `on_measured` returns; as [`ResolutionTables::predict`].
pub fn measure_subnets(
    space: &MobileSpace,
    subnets: &[Subnet],
    done: &[MeasuredSubnet],
    tables: Option<&ResolutionTables>,
    mut score: impl FnMut(&Subnet) -> Result<EvalResult>,
    mut on_measured: impl FnMut(&MeasuredSubnet) -> Result<()>,
) -> Result<Vec<MeasuredSubnet>> {
    let bar = crate::report::progress::epoch_bar(subnets.len() as u64, 1, 1);
    bar.set_prefix("measuring subnets");
    let mut all = Vec::with_capacity(subnets.len());
    for subnet in subnets {
        let key = space.key(&subnet.arch);
        if let Some(m) = done
            .iter()
            .find(|m| m.key == key && m.resolution == subnet.resolution)
        {
            // The tables may have been measured again since.
            all.push(MeasuredSubnet {
                predicted_latency_ms: tables.map(|t| t.predict(subnet)).transpose()?,
                ..m.clone()
            });
            bar.inc(1);
            continue;
        }
        let started = std::time::Instant::now();
        let result = score(subnet)?;
        let measured = MeasuredSubnet {
            key,
            resolution: subnet.resolution,
            accuracy: result.accuracy,
            loss: result.loss,
            predicted_latency_ms: tables.map(|t| t.predict(subnet)).transpose()?,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::debug!(
            key = %measured.key,
            resolution = measured.resolution,
            accuracy = measured.accuracy,
            "subnet measured"
        );
        on_measured(&measured)?;
        all.push(measured);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(all)
}

/// Ridge regression `y = b + w . x` with the intercept unpenalised (the features and targets
/// are centred before the penalised fit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RidgePredictor {
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
    /// The penalty `lambda` the fit used.
    pub lambda: f64,
}

/// The penalties [`RidgePredictor::fit`] chooses among.
pub const RIDGE_LAMBDAS: [f64; 7] = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0];

impl RidgePredictor {
    /// Fits `ys` on `xs` with each penalty of `lambdas` and keeps the one of least
    /// leave-one-out squared error, computed in closed form as `e_i / (1 - H_ii)` with
    /// `H = Xc (Xc^T Xc + lambda I)^-1 Xc^T` on the centred features `Xc` (the centring itself
    /// is not redone per left-out point, a small approximation when there are dozens of points).
    ///
    /// # Errors
    /// [`NasError::Config`] on `predictor_samples` when there are fewer than two points or the
    /// features differ in length, or when no penalty is given.
    pub fn fit(xs: &[Vec<f32>], ys: &[f64], lambdas: &[f64]) -> Result<Self> {
        let n = xs.len();
        if n < 2 || ys.len() != n {
            return Err(NasError::config(
                "predictor_samples",
                format!("the predictor needs at least 2 measured subnets, found {n}"),
            ));
        }
        let d = xs[0].len();
        if xs.iter().any(|x| x.len() != d) {
            return Err(NasError::config(
                "predictor_samples",
                "every encoding must have the same length",
            ));
        }
        if lambdas.is_empty() {
            return Err(NasError::config("lambda", "at least one penalty is needed"));
        }
        let mean_x: Vec<f64> = (0..d)
            .map(|j| xs.iter().map(|x| f64::from(x[j])).sum::<f64>() / n as f64)
            .collect();
        let mean_y = ys.iter().sum::<f64>() / n as f64;
        // Xc: [n, d], yc: [n].
        let xc: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| {
                x.iter()
                    .zip(&mean_x)
                    .map(|(&v, m)| f64::from(v) - m)
                    .collect()
            })
            .collect();
        let yc: Vec<f64> = ys.iter().map(|y| y - mean_y).collect();
        // Gram matrix Xc^T Xc: [d, d]; Xc^T yc: [d].
        let mut gram = vec![vec![0.0; d]; d];
        let mut xty = vec![0.0; d];
        for (row, &y) in xc.iter().zip(&yc) {
            for a in 0..d {
                xty[a] += row[a] * y;
                for b in 0..d {
                    gram[a][b] += row[a] * row[b];
                }
            }
        }

        let mut best: Option<(f64, RidgePredictor)> = None;
        for &lambda in lambdas {
            let mut a = gram.clone();
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += lambda;
            }
            let Some(factor) = cholesky(&a) else {
                continue;
            };
            let weights = solve_cholesky(&factor, &xty);
            let mut loo = 0.0;
            for (row, &y) in xc.iter().zip(&yc) {
                let fitted: f64 = row.iter().zip(&weights).map(|(x, w)| x * w).sum();
                let leverage: f64 = row
                    .iter()
                    .zip(solve_cholesky(&factor, row))
                    .map(|(x, z)| x * z)
                    .sum();
                let residual = (y - fitted) / (1.0 - leverage).max(1e-9);
                loo += residual * residual;
            }
            let intercept = mean_y - weights.iter().zip(&mean_x).map(|(w, m)| w * m).sum::<f64>();
            let predictor = RidgePredictor {
                weights,
                intercept,
                lambda,
            };
            if best.as_ref().is_none_or(|(error, _)| loo < *error) {
                best = Some((loo, predictor));
            }
        }
        best.map(|(_, p)| p).ok_or_else(|| {
            NasError::Numerical("no penalty gave a positive definite system".to_string())
        })
    }

    /// The prediction for the encoding `x`.
    pub fn predict(&self, x: &[f32]) -> f64 {
        self.intercept
            + self
                .weights
                .iter()
                .zip(x)
                .map(|(w, &v)| w * f64::from(v))
                .sum::<f64>()
    }
}

/// The lower triangular `L` with `L L^T = a` for a symmetric positive definite `a`; `None`
/// when `a` is not.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let pivot = a[i][i] - dot;
                if pivot <= 0.0 || !pivot.is_finite() {
                    return None;
                }
                l[i][i] = pivot.sqrt();
            } else {
                l[i][j] = (a[i][j] - dot) / l[j][j];
            }
        }
    }
    Some(l)
}

/// `z` with `L L^T z = b`.
fn solve_cholesky(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = l.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        let dot: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - dot) / l[i][i];
    }
    let mut z = vec![0.0; n];
    for i in (0..n).rev() {
        let dot: f64 = (i + 1..n).map(|k| l[k][i] * z[k]).sum();
        z[i] = (y[i] - dot) / l[i][i];
    }
    z
}

/// How well a predictor fitted to part of the measured subnets ranks and predicts the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorQuality {
    /// Subnets the assessed predictor was fitted to.
    pub fitted: usize,
    /// Held-out subnets it was scored on.
    pub held_out: usize,
    /// Kendall's tau between predicted and measured accuracy on the held-out subnets (`None`
    /// when undefined: fewer than two, or all tied).
    pub kendall_tau: Option<f64>,
    /// Root-mean-square error of the predicted accuracy on the held-out subnets.
    pub rmse: f64,
    /// The penalty leave-one-out chose.
    pub lambda: f64,
}

/// Fits a [`RidgePredictor`] to the first `1 - held_out_fraction` of `measured` (at least two)
/// and scores it on the rest (at least one). The subnets were drawn at random, so their order
/// is a random split.
///
/// # Errors
/// [`NasError::Config`] on `predictor_samples` when fewer than three subnets are given or a key
/// does not parse; as [`RidgePredictor::fit`].
pub fn assess_predictor(
    space: &MobileSpace,
    resolutions: &[usize],
    measured: &[MeasuredSubnet],
    held_out_fraction: f64,
) -> Result<PredictorQuality> {
    let n = measured.len();
    if n < 3 {
        return Err(NasError::config(
            "predictor_samples",
            format!("assessing the predictor needs at least 3 measured subnets, found {n}"),
        ));
    }
    let held = ((n as f64 * held_out_fraction).round() as usize).clamp(1, n - 2);
    let (fit_part, test_part) = measured.split_at(n - held);
    let (xs, ys) = encoded(space, resolutions, fit_part)?;
    let predictor = RidgePredictor::fit(&xs, &ys, &RIDGE_LAMBDAS)?;
    let (test_x, truth) = encoded(space, resolutions, test_part)?;
    let predicted: Vec<f64> = test_x.iter().map(|x| predictor.predict(x)).collect();
    let rmse = (predicted
        .iter()
        .zip(&truth)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / held as f64)
        .sqrt();
    Ok(PredictorQuality {
        fitted: fit_part.len(),
        held_out: held,
        kendall_tau: kendall_tau(&predicted, &truth),
        rmse,
        lambda: predictor.lambda,
    })
}

/// The encodings ([`encode`]) and accuracies of `measured`.
///
/// # Errors
/// [`NasError::Config`] on `predictor_samples` naming a key that is not a subnet of `space` or
/// a side not among `resolutions`.
pub fn encoded(
    space: &MobileSpace,
    resolutions: &[usize],
    measured: &[MeasuredSubnet],
) -> Result<(Vec<Vec<f32>>, Vec<f64>)> {
    measured
        .iter()
        .map(|m| {
            let arch = space.parse(&m.key).map_err(|e| {
                NasError::config("predictor_samples", format!("subnet `{}`: {e}", m.key))
            })?;
            if !resolutions.contains(&m.resolution) {
                return Err(NasError::config(
                    "predictor_samples",
                    format!(
                        "subnet `{}` ran at side {}, not among {resolutions:?}",
                        m.key, m.resolution
                    ),
                ));
            }
            let subnet = Subnet {
                arch,
                resolution: m.resolution,
            };
            Ok((encode(space, resolutions, &subnet), m.accuracy))
        })
        .collect::<Result<Vec<_>>>()
        .map(|pairs| pairs.into_iter().unzip())
}

/// Settings of regularised evolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Members of the population.
    pub population: usize,
    /// Members drawn for each tournament.
    pub sample: usize,
    /// Children made after the initial population.
    pub cycles: usize,
    /// Seed of the search.
    pub seed: u64,
}

impl Default for EvolutionConfig {
    /// A population of 50, tournaments of 10, 1000 children (predictor calls are cheap).
    fn default() -> Self {
        EvolutionConfig {
            population: 50,
            sample: 10,
            cycles: 1000,
            seed: 0,
        }
    }
}

/// A member of the population: the subnet, its predicted accuracy, its predicted latency.
type Member = (Subnet, f64, f64);

/// What an evolutionary search found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evolved {
    /// The best subnet seen: the highest predicted accuracy, then the lowest predicted latency.
    pub subnet: Subnet,
    /// Its predicted accuracy.
    pub predicted_accuracy: f64,
    /// Its predicted latency.
    pub predicted_latency_ms: f64,
    /// Subnets scored by the predictor (initial population and children).
    pub scored: usize,
}

/// The subnet `subnet` with one gene changed to another value it can take, genes being each
/// stage's depth, each running block's kernel and expansion ([`ElasticArch`]) and the image
/// side (one of `resolutions`); only genes with a choice are drawn. A stage that grows runs
/// its new blocks at a kernel and an expansion drawn uniformly. `subnet` itself when no gene
/// can change.
///
/// # Errors
/// As [`ElasticArch::from_arch`] when the architecture is not reachable by elastic depth.
pub fn mutate(
    space: &MobileSpace,
    resolutions: &[usize],
    subnet: &Subnet,
    rng: &mut ChaCha8Rng,
) -> Result<Subnet> {
    #[derive(Clone, Copy)]
    enum Gene {
        Depth(usize),
        Kernel(usize),
        Expand(usize),
        Resolution,
    }
    let blocks = space.blocks();
    let mut elastic = ElasticArch::from_arch(space, &subnet.arch)?;
    let ranges = stage_ranges(space);
    let minima = min_depths(space);
    let mut genes = Vec::new();
    for (s, range) in ranges.iter().enumerate() {
        if minima[s] < range.len() {
            genes.push(Gene::Depth(s));
        }
        for b in range.clone().take(elastic.depths[s]) {
            if block_kernels(&blocks[b]).len() > 1 {
                genes.push(Gene::Kernel(b));
            }
            if block_expands(&blocks[b]).len() > 1 {
                genes.push(Gene::Expand(b));
            }
        }
    }
    if resolutions.len() > 1 {
        genes.push(Gene::Resolution);
    }
    let Some(&gene) = genes.choose(rng) else {
        return Ok(subnet.clone());
    };
    let other = |values: Vec<usize>, current: usize, rng: &mut ChaCha8Rng| {
        let others: Vec<usize> = values.into_iter().filter(|&v| v != current).collect();
        others.choose(rng).copied().unwrap_or(current)
    };
    let mut resolution = subnet.resolution;
    match gene {
        Gene::Depth(s) => {
            let range = ranges[s].clone();
            let depth = other((minima[s]..=range.len()).collect(), elastic.depths[s], rng);
            for b in range
                .clone()
                .skip(elastic.depths[s])
                .take(depth.saturating_sub(elastic.depths[s]))
            {
                let kernels = block_kernels(&blocks[b]);
                let expands = block_expands(&blocks[b]);
                elastic.kernels[b] = kernels[rng.random_range(0..kernels.len())];
                elastic.expands[b] = expands[rng.random_range(0..expands.len())];
            }
            elastic.depths[s] = depth;
        }
        Gene::Kernel(b) => {
            elastic.kernels[b] = other(block_kernels(&blocks[b]), elastic.kernels[b], rng);
        }
        Gene::Expand(b) => {
            elastic.expands[b] = other(block_expands(&blocks[b]), elastic.expands[b], rng);
        }
        Gene::Resolution => resolution = other(resolutions.to_vec(), resolution, rng),
    }
    Ok(Subnet {
        arch: elastic.to_arch(space)?,
        resolution,
    })
}

/// Regularised evolution under a latency budget: the subnet with the best `predict`ed accuracy
/// among those whose latency by `tables` is at most `budget_ms`, which is a hard constraint (a
/// candidate over it is never scored or kept).
///
/// The initial population is drawn with [`sample_arch`] and a uniform side of `resolutions`
/// among the subnets within the budget (the fastest smallest subnet is the fallback when 1000
/// draws per member find none). Each cycle draws `sample` members, mutates the best of them
/// ([`mutate`], redrawn up to 100 times until the child is within the budget) and appends the
/// child as the oldest member leaves.
///
/// # Errors
/// [`NasError::Config`] on `budgets` when even the smallest subnet is over the budget at every
/// side, on `resolutions` when there are none, and on `population` / `sample` when they are 0
/// or the sample exceeds the population; as [`ResolutionTables::predict`].
pub fn evolve(
    space: &MobileSpace,
    resolutions: &[usize],
    tables: &ResolutionTables,
    budget_ms: f64,
    predict: impl Fn(&Subnet) -> f64,
    config: &EvolutionConfig,
) -> Result<Evolved> {
    if config.population == 0 || config.sample == 0 || config.sample > config.population {
        return Err(NasError::config(
            "population",
            format!(
                "need 1 <= sample <= population, found sample {} and population {}",
                config.sample, config.population
            ),
        ));
    }
    let mut fastest: Option<(Subnet, f64)> = None;
    for &resolution in resolutions {
        let subnet = Subnet {
            arch: smallest_arch(space),
            resolution,
        };
        let ms = tables.predict(&subnet)?;
        if fastest.as_ref().is_none_or(|(_, least)| ms < *least) {
            fastest = Some((subnet, ms));
        }
    }
    let Some((smallest, least_ms)) = fastest else {
        return Err(NasError::config(
            "resolutions",
            "at least one side is needed",
        ));
    };
    if least_ms > budget_ms {
        return Err(NasError::config(
            "budgets",
            format!(
                "the budget {budget_ms} ms is below the predicted latency of the smallest subnet \
                 at the fastest resolution ({least_ms:.4} ms): no subnet fits"
            ),
        ));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut population: VecDeque<Member> = VecDeque::new();
    let mut best: Option<Member> = None;
    let mut scored = 0;
    let consider = |subnet: Subnet, latency: f64, best: &mut Option<Member>| {
        let accuracy = predict(&subnet);
        let better = match best {
            None => true,
            Some((b, acc, ms)) => {
                (accuracy, -latency, b.key(space)) > (*acc, -*ms, subnet.key(space))
            }
        };
        if better {
            *best = Some((subnet.clone(), accuracy, latency));
        }
        (subnet, accuracy, latency)
    };

    let mut draws = 0;
    while population.len() < config.population && draws < 1000 * config.population {
        draws += 1;
        let subnet = Subnet {
            arch: sample_arch(space, &ElasticDims::ALL, &mut rng),
            resolution: sample_resolution(resolutions, &mut rng),
        };
        let latency = tables.predict(&subnet)?;
        if latency <= budget_ms {
            population.push_back(consider(subnet, latency, &mut best));
            scored += 1;
        }
    }
    if population.is_empty() {
        population.push_back(consider(smallest, least_ms, &mut best));
        scored += 1;
    }

    for _ in 0..config.cycles {
        let parent = (0..config.sample.min(population.len()))
            .map(|_| &population[rng.random_range(0..population.len())])
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|m| m.0.clone())
            .expect("the population is never empty");
        let mut child = None;
        for _ in 0..100 {
            let candidate = mutate(space, resolutions, &parent, &mut rng)?;
            let latency = tables.predict(&candidate)?;
            if latency <= budget_ms {
                child = Some((candidate, latency));
                break;
            }
        }
        let Some((subnet, latency)) = child else {
            continue;
        };
        population.push_back(consider(subnet, latency, &mut best));
        scored += 1;
        if population.len() > config.population {
            population.pop_front();
        }
    }
    let (subnet, predicted_accuracy, predicted_latency_ms) =
        best.expect("the initial population scored at least one subnet");
    Ok(Evolved {
        subnet,
        predicted_accuracy,
        predicted_latency_ms,
        scored,
    })
}

/// The outcome for one latency budget: the subnet evolution found, predicted and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetResult {
    /// The budget in milliseconds (per forward pass at the table's batch size).
    pub budget_ms: f64,
    /// The subnet's architecture, [`MobileSpace::key`].
    pub key: String,
    /// The image side it runs at.
    pub resolution: usize,
    /// Accuracy the predictor gave it.
    pub predicted_accuracy: f64,
    /// Held-out accuracy measured with the elastic network's weights (batch norm recalibrated).
    pub measured_accuracy: f64,
    /// Test-split accuracy, measured the same way.
    pub test_accuracy: f64,
    /// Latency the table of its side predicts.
    pub predicted_latency_ms: f64,
    /// Median latency of the whole network at its side measured on this machine.
    pub measured_latency_ms: f64,
    /// Parameters of the standalone network.
    pub params: u64,
    /// Multiply-accumulates of one forward pass of one image at its side.
    pub macs: u64,
    /// Subnets the predictor scored during the search.
    pub scored: usize,
    /// The file in the output directory holding the specialised subnet (extracted, batch
    /// norm recalibrated at its side; [`crate::search::ofa::load_specialised`] reads it).
    pub weights: String,
}
