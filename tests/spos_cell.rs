//! Single-path one-shot on the DARTS cell space: a step on a sampled genotype moves exactly the
//! weights of its path; recalibration sets the path's batch-norm statistics to the plain
//! average of batch statistics (computed here on the host) and changes nothing else; the
//! single-path forward equals the DARTS forward with one-hot architecture weights; uniform
//! sampling covers every operation and input at the expected rates; an interrupted training
//! run resumes to the same weights; a saved supernet loads back, and bad files are named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{self, Augment, BatchLoader, Dataset, DatasetKind, Normalization};
use nasrs::nn::{ParamInit, SearchNetwork, SearchNetworkConfig, named_parameters};
use nasrs::search::Resumable;
use nasrs::search::spos_cell::{
    CellSposConfig, CellSupernetInfo, cell_path_step, load_cell_supernet, recalibrate_cell,
    save_cell_supernet, score_cell_subnet, train_cell_supernet, uniform_genotype,
};
use nasrs::space::{CellGenotype, DartsOp, GeneEdge, Genotype};
use nasrs::{NasError, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Three cells (cell 0 normal, cells 1 and 2 reductions: `cells / 3` and `2 cells / 3`), four
/// channels, 1-channel 8x8 images.
fn tiny_network(nodes: usize) -> SearchNetworkConfig {
    SearchNetworkConfig {
        in_channels: 1,
        num_classes: 3,
        channels: 4,
        cells: 3,
        nodes,
        stem_multiplier: 3,
    }
}

const REDUCTION_CELLS: [usize; 2] = [1, 2];

/// The index of the edge from state `input` into node `node`: the edges of a cell are listed
/// node after node, node `i` having `i + 2` of them (2, 3, 4, ...).
fn edge_index(node: usize, input: usize) -> usize {
    (0..node).map(|i| i + 2).sum::<usize>() + input
}

/// The module paths of the single path `genotype` in the search network: the stem, the
/// classifier, both preprocessing layers of every cell, and candidate `op.index() - 1` (the
/// candidates of an edge are the eight DARTS operations but `none`, in `DartsOp::ALL` order)
/// of each chosen edge.
fn path_prefixes(genotype: &Genotype, cells: usize) -> Vec<String> {
    let mut prefixes = vec![
        "stem_conv.".to_string(),
        "stem_bn.".to_string(),
        "classifier.".to_string(),
    ];
    for k in 0..cells {
        prefixes.push(format!("cells.{k}.preprocess0."));
        prefixes.push(format!("cells.{k}.preprocess1."));
        let cell = if REDUCTION_CELLS.contains(&k) {
            &genotype.reduce
        } else {
            &genotype.normal
        };
        for (i, gene) in cell.edges.iter().enumerate() {
            let edge = edge_index(i / 2, gene.input);
            prefixes.push(format!(
                "cells.{k}.edges.{edge}.ops.{}.",
                gene.op.index() - 1
            ));
        }
    }
    prefixes
}

fn on_path(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p.as_str()))
}

/// The parameter tensors of the path of `genotype` in the three-cell network, counted from
/// the DARTS operation definitions: a separable convolution has two depthwise and two
/// pointwise convolutions (4), a dilated one a depthwise and a pointwise (2), `skip_connect`
/// on a stride-2 edge is a factorized reduce (2 convolutions), pools and the identity none
/// (their batch norm is not affine). Fixed part: the stem convolution (1) and its affine batch
/// norm (2), the classifier weight and bias (2), one 1x1 convolution per preprocessing layer
/// except cell 2's input 0, a factorized reduce (2) since cell 1 is a reduction: 5 + 7.
fn hand_count(genotype: &Genotype) -> usize {
    let op_tensors = |gene: &GeneEdge, reduction: bool| match gene.op {
        DartsOp::SepConv3x3 | DartsOp::SepConv5x5 => 4,
        DartsOp::DilConv3x3 | DartsOp::DilConv5x5 => 2,
        DartsOp::SkipConnect if reduction && gene.input < 2 => 2,
        _ => 0,
    };
    let normal: usize = genotype
        .normal
        .edges
        .iter()
        .map(|g| op_tensors(g, false))
        .sum();
    let reduce: usize = genotype
        .reduce
        .edges
        .iter()
        .map(|g| op_tensors(g, true))
        .sum();
    5 + 7 + normal + 2 * reduce
}

fn cell(pairs: &[(DartsOp, usize)]) -> CellGenotype {
    CellGenotype {
        edges: pairs
            .iter()
            .map(|&(op, input)| GeneEdge { op, input })
            .collect(),
        concat: (2..pairs.len() / 2 + 2).collect(),
    }
}

/// Two nodes per cell, with every kind of candidate: separable and dilated convolutions,
/// both pools, the identity, and a factorized reduce (skip on a reduction input edge).
fn handpicked_genotype() -> Genotype {
    use DartsOp::*;
    Genotype {
        normal: cell(&[
            (SepConv3x3, 0),
            (MaxPool3x3, 1),
            (SkipConnect, 1),
            (DilConv3x3, 2),
        ]),
        reduce: cell(&[
            (SkipConnect, 0),
            (AvgPool3x3, 1),
            (SepConv5x5, 0),
            (DilConv5x5, 2),
        ]),
    }
}

fn random_batch(n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::<4>::random([n, 1, 8, 8], Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    (x, y)
}

#[test]
fn a_step_moves_exactly_the_weights_of_the_path() {
    let device = Device::flex().autodiff();
    let sampled = uniform_genotype(3, &mut ChaCha8Rng::seed_from_u64(11));
    for (genotype, nodes) in [(handpicked_genotype(), 2), (sampled, 3)] {
        let config = tiny_network(nodes);
        let model = SearchNetwork::new(&config, &mut ParamInit::new(3, &device)).unwrap();
        model.check_genotype(&genotype).unwrap();
        let before = named_parameters(&model);
        let (x, y) = random_batch(6, &device);
        let mut optimizer = nasrs::train::optim::sgd(0.9, 3e-4);
        let (model, step) = cell_path_step(model, &mut optimizer, &genotype, x, y, 0.1, 5.0);
        assert!(step.loss.is_finite() && step.correct <= 6, "{step:?}");
        let after = named_parameters(&model);
        assert_eq!(before.len(), after.len());

        let prefixes = path_prefixes(&genotype, config.cells);
        let changed: BTreeSet<&str> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.2 != a.2)
            .map(|(b, _)| b.0.as_str())
            .collect();
        let expected: BTreeSet<&str> = before
            .iter()
            .map(|(name, _, _)| name.as_str())
            .filter(|name| on_path(name, &prefixes))
            .collect();
        assert!(
            !changed.iter().any(|name| name.starts_with("alpha_")),
            "an architecture weight moved: {changed:?}"
        );
        assert_eq!(changed, expected, "genotype {genotype}");
        assert_eq!(changed.len(), hand_count(&genotype), "genotype {genotype}");
    }
    // The handpicked genotype by hand: normal 4 + 2, reduce 2 + 4 + 2 in each of two cells,
    // plus the 12 fixed tensors.
    assert_eq!(hand_count(&handpicked_genotype()), 6 + 2 * 8 + 12);
}

/// Batch-norm running statistics of a module by path (`...bn.running_mean`).
#[derive(Default)]
struct RunningStats {
    path: Vec<String>,
    stats: BTreeMap<String, Vec<f32>>,
}

impl ModuleVisitor for RunningStats {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if matches!(
            self.path.last().map(String::as_str),
            Some("running_mean" | "running_var")
        ) {
            let values = param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            self.stats.insert(self.path.join("."), values);
        }
    }
}

fn running_stats(model: &SearchNetwork) -> BTreeMap<String, Vec<f32>> {
    let mut visitor = RunningStats::default();
    model.visit(&mut visitor);
    visitor.stats
}

/// Parameter values by path; ids are left out, since a network loaded from a file or a
/// checkpoint may carry other ids for the same weights.
fn weights(model: &SearchNetwork) -> Vec<(String, Vec<f32>)> {
    named_parameters(model)
        .into_iter()
        .map(|(name, _, values)| (name, values))
        .collect()
}

fn param<'a>(params: &'a [(String, burn::module::ParamId, Vec<f32>)], name: &str) -> &'a [f32] {
    &params.iter().find(|p| p.0 == name).unwrap().2
}

/// Per-channel mean and unbiased variance of `y[n][c][pixel]`.
fn channel_stats(y: &[Vec<Vec<f64>>]) -> Vec<(f64, f64)> {
    let channels = y[0].len();
    (0..channels)
        .map(|c| {
            let values: Vec<f64> = y
                .iter()
                .flat_map(|image| image[c].iter().copied())
                .collect();
            let count = values.len() as f64;
            let mean = values.iter().sum::<f64>() / count;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
            (mean, var)
        })
        .collect()
}

/// Activations on the host, `[image][channel][pixel]`.
type HostMaps = Vec<Vec<Vec<f64>>>;

/// The host reference of the first layers of the path: the stem's 3x3 convolution (padding
/// 1, no bias) of 1-channel 8x8 images, its batch norm in training mode (population variance,
/// epsilon 1e-5, then the affine scale and shift), ReLU, and cell 0's input-1 preprocessing
/// 1x1 convolution. Returns the stem convolution output and the preprocessing convolution
/// output, `[n][channel][pixel]`, whose batch statistics the two batch norms see.
fn host_reference(
    images: &[f32],
    n: usize,
    params: &[(String, burn::module::ParamId, Vec<f32>)],
) -> (HostMaps, HostMaps) {
    let stem_w = param(params, "stem_conv.weight");
    let stem_channels = stem_w.len() / 9;
    let stem: HostMaps = (0..n)
        .map(|b| {
            (0..stem_channels)
                .map(|o| {
                    let mut out = vec![0.0; 64];
                    for (pixel, value) in out.iter_mut().enumerate() {
                        let (i, j) = ((pixel / 8) as isize, (pixel % 8) as isize);
                        for di in 0..3isize {
                            for dj in 0..3isize {
                                let (r, c) = (i + di - 1, j + dj - 1);
                                if (0..8).contains(&r) && (0..8).contains(&c) {
                                    let w = stem_w[o * 9 + (di * 3 + dj) as usize];
                                    let x = images[b * 64 + (r * 8 + c) as usize];
                                    *value += f64::from(w) * f64::from(x);
                                }
                            }
                        }
                    }
                    out
                })
                .collect()
        })
        .collect();

    let stats = channel_stats(&stem);
    let count = (n * 64) as f64;
    let (gamma, beta) = (
        param(params, "stem_bn.gamma"),
        param(params, "stem_bn.beta"),
    );
    let pre_w = param(params, "cells.0.preprocess1.Conv.conv.weight");
    let pre_channels = pre_w.len() / stem_channels;
    let preprocess = stem
        .iter()
        .map(|image| {
            let rectified: Vec<Vec<f64>> = image
                .iter()
                .enumerate()
                .map(|(c, values)| {
                    let (mean, unbiased) = stats[c];
                    let population = unbiased * (count - 1.0) / count;
                    values
                        .iter()
                        .map(|v| {
                            let normed = (v - mean) / (population + 1e-5).sqrt();
                            (normed * f64::from(gamma[c]) + f64::from(beta[c])).max(0.0)
                        })
                        .collect()
                })
                .collect();
            (0..pre_channels)
                .map(|o| {
                    (0..64)
                        .map(|pixel| {
                            (0..stem_channels)
                                .map(|c| {
                                    f64::from(pre_w[o * stem_channels + c]) * rectified[c][pixel]
                                })
                                .sum()
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    (stem, preprocess)
}

fn assert_average(got_mean: &[f32], got_var: &[f32], per_batch: &[Vec<(f64, f64)>], what: &str) {
    for c in 0..got_mean.len() {
        let k = per_batch.len() as f64;
        let mean = per_batch.iter().map(|s| s[c].0).sum::<f64>() / k;
        let var = per_batch.iter().map(|s| s[c].1).sum::<f64>() / k;
        // f32 arithmetic in the network against f64 on the host: a relative 1e-4 is far
        // below any difference a wrong path or weighting would make.
        let close =
            |got: f32, want: f64| (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs());
        assert!(
            close(got_mean[c], mean),
            "{what} channel {c}: mean {} vs {mean}",
            got_mean[c]
        );
        assert!(
            close(got_var[c], var),
            "{what} channel {c}: variance {} vs {var}",
            got_var[c]
        );
    }
}

/// The supernet's statistics are first moved off their initial values by a full DARTS
/// forward pass (every operation runs), so that "unchanged" means something off the path.
/// After recalibration on two batches, the stem's and cell 0's input-1 preprocessing running
/// statistics equal the average of the two batches' statistics computed on the host; every
/// statistic of the path changed, every other statistic and every parameter is as before, the
/// supernet itself is untouched, and the result evaluates with running statistics (a forward
/// pass changes no statistic).
#[test]
fn recalibration_sets_the_path_statistics_to_the_batch_average_and_nothing_else() {
    let device = Device::flex().autodiff();
    let config = tiny_network(2);
    let model = SearchNetwork::new(&config, &mut ParamInit::new(5, &device)).unwrap();
    drop(model.forward(random_batch(5, &device).0));
    let genotype = handpicked_genotype();

    let plain = device.clone().without_autodiff();
    let n = 4;
    let images: Vec<Vec<f32>> = (0..2)
        .map(|k| {
            (0..n * 64)
                .map(|i| ((i * 7 + k * 13) % 17) as f32 / 4.0 - 2.0)
                .collect()
        })
        .collect();
    let batches: Vec<Tensor<4>> = images
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [n, 1, 8, 8]), &plain))
        .collect();

    let stats_before = running_stats(&model.valid());
    let params_before = named_parameters(&model.valid());
    let subnet = recalibrate_cell(&model, &genotype, &batches);
    let stats_after = running_stats(&subnet);

    assert_eq!(
        named_parameters(&subnet),
        params_before,
        "a parameter changed"
    );
    assert_eq!(
        running_stats(&model.valid()),
        stats_before,
        "the supernet's own statistics changed"
    );
    let prefixes = path_prefixes(&genotype, config.cells);
    let mut path_stats = 0;
    for (name, before) in &stats_before {
        let after = &stats_after[name];
        if on_path(name, &prefixes) {
            path_stats += 1;
            assert_ne!(
                after, before,
                "{name} is on the path and was not recalibrated"
            );
        } else {
            assert_eq!(after, before, "{name} is off the path and changed");
        }
    }
    // Batch norms of the path, each with a mean and a variance: the stem, six preprocessing
    // layers, and in the normal cell sep (2) + max pool (1) + dil (1), in each reduction cell
    // factorized reduce (1) + avg pool (1) + sep (2) + dil (1).
    assert_eq!(path_stats, 2 * (1 + 6 + 4 + 2 * 5));

    let per_batch: Vec<_> = images
        .iter()
        .map(|v| host_reference(v, n, &params_before))
        .collect();
    let stem: Vec<_> = per_batch.iter().map(|(s, _)| channel_stats(s)).collect();
    let pre: Vec<_> = per_batch.iter().map(|(_, p)| channel_stats(p)).collect();
    assert_average(
        &stats_after["stem_bn.running_mean"],
        &stats_after["stem_bn.running_var"],
        &stem,
        "stem",
    );
    assert_average(
        &stats_after["cells.0.preprocess1.Conv.bn.running_mean"],
        &stats_after["cells.0.preprocess1.Conv.bn.running_var"],
        &pre,
        "cell 0 preprocessing",
    );

    drop(subnet.forward_genotype(batches[0].clone(), &genotype));
    assert_eq!(
        running_stats(&subnet),
        stats_after,
        "evaluation changed statistics"
    );
}

/// Architecture weights that make DARTS's mixed edges select `genotype`: on a chosen edge
/// the chosen operation's column holds +100 and the others -100, so that softmax gives
/// exactly 1 and 0 in f32 (exp(-200) underflows to 0); on an unchosen edge the `none` column
/// holds +100, so the edge contributes `none`, i.e. nothing.
fn one_hot_alpha(cell: &CellGenotype, device: &Device) -> Param<Tensor<2>> {
    let nodes = cell.nodes();
    let edges = edge_index(nodes, 0);
    let mut values = vec![-100.0f32; edges * 8];
    for e in 0..edges {
        values[e * 8 + DartsOp::None.index()] = 100.0;
    }
    for (i, gene) in cell.edges.iter().enumerate() {
        let e = edge_index(i / 2, gene.input);
        values[e * 8 + DartsOp::None.index()] = -100.0;
        values[e * 8 + gene.op.index()] = 100.0;
    }
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [edges, 8]),
        device,
    ))
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// The reference is DARTS's continuous relaxation, equation 2 of Liu et al. 2019: with
/// one-hot architecture weights every mixed edge outputs its chosen operation and every
/// unchosen edge outputs zero, so the search network's own forward pass computes the single
/// path. Checked in training mode (batch statistics) and in evaluation mode (running ones).
#[test]
fn the_single_path_forward_equals_darts_with_one_hot_architecture_weights() {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (x, _) = random_batch(4, &device);
    for seed in 0..3 {
        let genotype = uniform_genotype(3, &mut rng);
        let mut model =
            SearchNetwork::new(&tiny_network(3), &mut ParamInit::new(seed, &device)).unwrap();
        let single = model.forward_genotype(x.clone(), &genotype);
        model.alpha_normal = one_hot_alpha(&genotype.normal, &device);
        model.alpha_reduce = one_hot_alpha(&genotype.reduce, &device);
        let darts = model.forward(x.clone());
        // Adding exact zeros and multiplying by exactly 1 changes no bit; the bound only
        // leaves room for a different summation order.
        let diff = max_abs_diff(single.clone(), darts);
        assert!(diff <= 1e-5, "genotype {genotype}: {diff}");

        let eval = model.valid();
        let diff = max_abs_diff(
            eval.forward_genotype(x.clone(), &genotype),
            eval.forward(x.clone()),
        );
        assert!(
            diff <= 1e-5,
            "genotype {genotype} in evaluation mode: {diff}"
        );

        // The comparison can fail: another path gives other logits.
        let other = uniform_genotype(3, &mut ChaCha8Rng::seed_from_u64(100 + seed));
        assert_ne!(other, genotype);
        let diff = max_abs_diff(model.forward_genotype(x.clone(), &other), single);
        assert!(diff > 1e-3, "another genotype gave the same logits: {diff}");
    }
}

/// A binomial count of `trials` with probability `p` is within five standard deviations of
/// `trials * p` except with probability below 1e-6; the draws are seeded, so the test is
/// deterministic, and the bound only says that the rates are right.
fn assert_rate(count: usize, trials: usize, p: f64, what: &str) {
    let expected = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - expected).abs() <= 5.0 * sd,
        "{what}: {count} of {trials}, expected {expected:.0} +- {:.0}",
        5.0 * sd
    );
}

#[test]
fn uniform_genotypes_are_valid_and_cover_every_operation_and_input_evenly() {
    let nodes = 4;
    let draws = 2000;
    let device = Device::flex();
    let network =
        SearchNetwork::new(&tiny_network(nodes), &mut ParamInit::new(0, &device)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut ops: BTreeMap<(usize, DartsOp), usize> = BTreeMap::new();
    let mut inputs: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    let mut pairs: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    for _ in 0..draws {
        let genotype = uniform_genotype(nodes, &mut rng);
        genotype.validate("sampled").unwrap();
        network.check_genotype(&genotype).unwrap();
        for (c, cell) in [&genotype.normal, &genotype.reduce].into_iter().enumerate() {
            assert_eq!(cell.nodes(), nodes);
            assert_eq!(cell.concat, vec![2, 3, 4, 5]);
            for node in 0..nodes {
                let [a, b] = cell.node_edges(node) else {
                    panic!("node {node} does not have two edges: {cell:?}");
                };
                assert!(a.input < b.input && b.input < node + 2, "{cell:?}");
                if node == 3 {
                    *pairs.entry((c, a.input, b.input)).or_default() += 1;
                }
                for gene in [a, b] {
                    assert_ne!(gene.op, DartsOp::None);
                    *ops.entry((c, gene.op)).or_default() += 1;
                    *inputs.entry((c, node, gene.input)).or_default() += 1;
                }
            }
        }
    }
    for c in 0..2 {
        // Seven operations on 2 * nodes edges per draw.
        for op in DartsOp::ALL.into_iter().filter(|&op| op != DartsOp::None) {
            let count = ops.get(&(c, op)).copied().unwrap_or(0);
            assert_rate(
                count,
                draws * 2 * nodes,
                1.0 / 7.0,
                &format!("cell {c} {op}"),
            );
        }
        // Node i picks 2 of its i + 2 predecessors: each is in the pair with probability
        // 2 / (i + 2).
        for node in 0..nodes {
            for input in 0..node + 2 {
                let count = inputs.get(&(c, node, input)).copied().unwrap_or(0);
                let p = 2.0 / (node + 2) as f64;
                assert_rate(
                    count,
                    draws,
                    p,
                    &format!("cell {c} node {node} input {input}"),
                );
            }
        }
        // Node 3 has five predecessors, so ten unordered pairs, each with probability 1/10.
        for a in 0..5 {
            for b in a + 1..5 {
                let count = pairs.get(&(c, a, b)).copied().unwrap_or(0);
                assert_rate(count, draws, 0.1, &format!("cell {c} node 3 pair {a},{b}"));
            }
        }
    }
}

#[test]
fn genotypes_that_are_not_a_single_path_are_refused_by_name() {
    let device = Device::flex();
    let network = SearchNetwork::new(&tiny_network(2), &mut ParamInit::new(0, &device)).unwrap();
    let message = |g: &Genotype| network.check_genotype(g).unwrap_err().to_string();

    let mut none = handpicked_genotype();
    none.reduce.edges[3].op = DartsOp::None;
    let m = message(&none);
    assert!(m.contains("reduce[3]") && m.contains("none"), "{m}");

    let mut twice = handpicked_genotype();
    twice.normal.edges[3].input = 1;
    let m = message(&twice);
    assert!(m.contains("normal[3]") && m.contains("twice"), "{m}");

    let mut partial = handpicked_genotype();
    partial.normal.concat = vec![3];
    let m = message(&partial);
    assert!(m.contains("normal_concat"), "{m}");

    let m = message(&uniform_genotype(3, &mut ChaCha8Rng::seed_from_u64(0)));
    assert!(
        m.contains("3 intermediate nodes") && m.contains("has 2"),
        "{m}"
    );

    let (train, norm) = digits();
    let mut valid = loader(&train, (0..16).collect(), false, 0, &norm);
    let err = score_cell_subnet(&network, &none, None, &mut valid, &device).unwrap_err();
    assert!(matches!(err, NasError::Genotype { .. }), "{err}");
}

fn digits() -> (Arc<Dataset>, Normalization) {
    let splits = data::load(DatasetKind::Digits, None).unwrap();
    let norm = Normalization::from_dataset(&splits.train);
    (Arc::new(splits.train), norm)
}

fn loader(
    d: &Arc<Dataset>,
    indices: Vec<usize>,
    shuffle: bool,
    seed: u64,
    norm: &Normalization,
) -> BatchLoader {
    BatchLoader::new(
        d.clone(),
        indices,
        32,
        shuffle,
        Augment::none(),
        norm.clone(),
        seed,
    )
    .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrs-spos-cell-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cell_spos_config() -> CellSposConfig {
    CellSposConfig {
        network: SearchNetworkConfig {
            num_classes: 10,
            ..tiny_network(2)
        },
        epochs: 2,
        lr: 0.05,
        lr_min: 0.001,
        momentum: 0.9,
        weight_decay: 3e-4,
        grad_clip: 5.0,
        seed: 3,
    }
}

/// Stands for a crash: the run stops right after the checkpoint of epoch 1 was written.
fn stop_after_first(record: &nasrs::search::spos::SposEpoch) -> Result<()> {
    if record.epoch == 1 {
        Err(NasError::Numerical("interrupted".into()))
    } else {
        Ok(())
    }
}

/// The reference is the uninterrupted run: the resumed one must end with the same
/// parameters, the same batch-norm statistics and the same records, bit for bit.
#[test]
fn an_interrupted_training_run_resumes_to_the_same_weights() {
    let (train, norm) = digits();
    let config = cell_spos_config();
    let device = Device::flex();
    let fresh_loader = || loader(&train, (0..96).collect(), true, 4, &norm);

    let (full, full_records) =
        train_cell_supernet(&config, &mut fresh_loader(), &device, None, |_| Ok(())).unwrap();

    let dir = temp_dir("resume");
    let fresh = Resumable {
        checkpoint: Checkpoint::in_run(&dir),
        resume: false,
    };
    let err = train_cell_supernet(
        &config,
        &mut fresh_loader(),
        &device,
        Some(&fresh),
        stop_after_first,
    )
    .unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    let resumed = Resumable {
        resume: true,
        ..fresh.clone()
    };
    let (model, records) = train_cell_supernet(
        &config,
        &mut fresh_loader(),
        &device,
        Some(&resumed),
        |_| Ok(()),
    )
    .unwrap();

    let summary = |r: &[nasrs::search::spos::SposEpoch]| -> Vec<(usize, f64, f64, f64)> {
        r.iter()
            .map(|e| (e.epoch, e.lr, e.train_loss, e.train_accuracy))
            .collect()
    };
    assert_eq!(summary(&records), summary(&full_records));
    assert_eq!(records.len(), 2);
    assert_eq!(weights(&model), weights(&full));
    assert_eq!(running_stats(&model.valid()), running_stats(&full.valid()));

    // Training moved the weights: the run is not trivially equal to an untrained network.
    let untrained =
        SearchNetwork::new(&config.network, &mut ParamInit::new(config.seed, &device)).unwrap();
    assert_ne!(weights(&untrained), weights(&full));

    // Saving and loading keeps the supernet: the same weights and statistics, and the same
    // score of a path with the supernet's statistics.
    let info = CellSupernetInfo {
        config: config.clone(),
        dataset: "digits".into(),
        subset: Some(96),
        valid_portion: 0.0,
        batch_size: 32,
        epochs: records.clone(),
    };
    save_cell_supernet(&dir, &full, &info).unwrap();
    let (loaded, loaded_info) = load_cell_supernet(&dir, &device).unwrap();
    assert_eq!(loaded_info, info);
    assert_eq!(weights(&loaded), weights(&full));
    assert_eq!(running_stats(&loaded), running_stats(&full.valid()));
    let genotype = handpicked_genotype();
    let mut valid = loader(&train, (96..160).collect(), false, 0, &norm);
    let a = score_cell_subnet(&full, &genotype, None, &mut valid, &device).unwrap();
    let b = score_cell_subnet(&loaded, &genotype, None, &mut valid, &device).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.images, 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_or_garbled_supernet_files_are_named() {
    let device = Device::flex();
    let dir = temp_dir("files");
    let err = load_cell_supernet(&dir, &device).unwrap_err().to_string();
    assert!(err.contains("cell_supernet.json"), "{err}");

    std::fs::write(dir.join("cell_supernet.json"), "{ not json").unwrap();
    let err = load_cell_supernet(&dir, &device).unwrap_err().to_string();
    assert!(
        err.contains("cell_supernet.json")
            && err.contains("not a description of a saved cell supernet"),
        "{err}"
    );

    let mut info = CellSupernetInfo {
        config: cell_spos_config(),
        dataset: "digits".into(),
        subset: None,
        valid_portion: 0.2,
        batch_size: 32,
        epochs: Vec::new(),
    };
    std::fs::write(
        dir.join("cell_supernet.json"),
        serde_json::to_string(&info).unwrap(),
    )
    .unwrap();
    let err = load_cell_supernet(&dir, &device).unwrap_err().to_string();
    assert!(
        err.contains("cell_supernet.bpk") && err.contains("missing"),
        "{err}"
    );

    info.config.epochs = 0;
    std::fs::write(
        dir.join("cell_supernet.json"),
        serde_json::to_string(&info).unwrap(),
    )
    .unwrap();
    let err = load_cell_supernet(&dir, &device).unwrap_err().to_string();
    assert!(
        err.contains("cell_supernet.json") && err.contains("epochs"),
        "{err}"
    );

    info.config.epochs = 1;
    std::fs::write(
        dir.join("cell_supernet.json"),
        serde_json::to_string(&info).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("cell_supernet.bpk"), b"garbage").unwrap();
    let err = load_cell_supernet(&dir, &device).unwrap_err().to_string();
    assert!(err.contains("cell_supernet.bpk"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
