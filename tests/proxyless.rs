//! ProxylessNAS: the expected-latency term gives the logits a gradient, an architecture step
//! moves only the two sampled logits of a block and leaves every other probability as it was,
//! the move to a latency target is the cheapest in log-probability, and bad settings are
//! refused.

mod common;

use burn::prelude::*;
use burn::tensor::TensorData;
use nasrs::latency::LatencyTable;
use nasrs::nn::ParamInit;
use nasrs::nn::mobile::MobileSupernet;
use nasrs::search::proxyless::{
    ArchWeights, LatencyLoss, ProxylessConfig, arch_step, expected_latency, latency_loss,
    meet_target,
};
use nasrs::space::mobile::MobileSpace;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small space for fast steps: 1-channel 8x8 images, two stages of two blocks.
fn tiny_space() -> MobileSpace {
    common::tiny_mobile_space()
}

fn config(space: MobileSpace, target_ms: Option<f64>, form: LatencyLoss) -> ProxylessConfig {
    ProxylessConfig {
        space,
        epochs: 2,
        warmup_epochs: 1,
        lr: 0.05,
        lr_min: 0.0,
        momentum: 0.9,
        weight_decay: 4e-5,
        grad_clip: 5.0,
        arch_lr: 6e-3,
        arch_beta2: 0.999,
        arch_eps: 1e-8,
        target_ms,
        latency_loss: form,
        seed: 0,
    }
}

fn values(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn softmax(a: &[f64]) -> Vec<f64> {
    let e: Vec<f64> = a.iter().map(|x| x.exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The expected latency `E = f + sum_b sum_i p_bi l_bi` has `dE/dalpha_bi = p_bi (l_bi - E_b)`
/// with `E_b = sum_i p_bi l_bi` (the derivative of a softmax-weighted mean): every logit of a
/// block whose candidates differ in latency gets a nonzero gradient from this term alone.
#[test]
fn the_latency_term_alone_gives_every_logit_its_hand_computed_gradient() {
    let device = Device::flex().autodiff();
    let logits = [vec![0.3, -0.2, 0.5], vec![0.0, 1.0]];
    let latencies = vec![vec![1.0, 2.0, 4.0], vec![0.5, 3.0]];
    let alphas: Vec<Tensor<1>> = logits
        .iter()
        .map(|a| {
            let v: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), &device).require_grad()
        })
        .collect();
    let expected = expected_latency(&alphas, &latencies, 0.25);
    let value = values(expected.clone().inner())[0];
    let mut hand = 0.25;
    for (a, l) in logits.iter().zip(&latencies) {
        hand += softmax(a).iter().zip(l).map(|(p, l)| p * l).sum::<f64>();
    }
    assert!(
        (value - hand).abs() < 1e-5,
        "expected latency {value}, by hand {hand}"
    );

    // Every form of the loss, with a cross-entropy that is a constant (no gradient of its own).
    for form in [
        LatencyLoss::MulLog { beta: 0.6 },
        LatencyLoss::Add { lambda: 0.2 },
        LatencyLoss::Hinge { lambda: 0.3 },
    ] {
        let ce = Tensor::<1>::from_floats([1.7], &device);
        let expected = expected_latency(&alphas, &latencies, 0.25);
        let loss = latency_loss(ce, expected, Some(2.0), form);
        let grads = loss.backward();
        // dLoss/dE for each form, by hand (latencies in microseconds for the logarithm).
        let d_loss_d_e = match form {
            LatencyLoss::MulLog { beta } => {
                let ratio = (hand * 1e3).ln() / (2.0f64 * 1e3).ln();
                1.7 * beta * ratio.powf(beta - 1.0) / (hand * (2.0f64 * 1e3).ln())
            }
            LatencyLoss::Add { lambda } => lambda / 2.0,
            // The expected latency (about 5 ms) is over the target: the hinge is linear there.
            LatencyLoss::Hinge { lambda } => {
                assert!(hand > 2.0);
                lambda / 2.0
            }
        };
        for ((alpha, a), l) in alphas.iter().zip(&logits).zip(&latencies) {
            let got = values(alpha.grad(&grads).expect("the logits take a gradient"));
            let p = softmax(a);
            let mean: f64 = p.iter().zip(l).map(|(p, l)| p * l).sum();
            for i in 0..a.len() {
                let want = d_loss_d_e * p[i] * (l[i] - mean);
                assert!(
                    want.abs() > 1e-3,
                    "the hand gradient itself is not negligible"
                );
                assert!(
                    (got[i] - want).abs() < 1e-4 * want.abs().max(1.0),
                    "{form:?}: gradient {got:?}, by hand {want} at {i}"
                );
            }
        }
    }
}

/// A step on two logits, by hand: Adam without momentum moves each by about `-lr sign(g)` on
/// its first step, then both shift so that `exp(a_i) + exp(a_j)` is what it was, which keeps
/// `sum exp` of the block and therefore every other probability.
#[test]
fn a_pair_update_keeps_the_other_probabilities() {
    let space = tiny_space();
    let cfg = config(space.clone(), None, LatencyLoss::Add { lambda: 0.2 });
    let mut arch = ArchWeights::zeros(&space);
    arch.alpha[1] = vec![0.4, -0.3, 0.1, 0.0, 0.7, -1.0, 0.2];
    let before = arch.alpha[1].clone();
    let p_before = arch.probabilities(1);
    arch.update_pair(1, [2, 5], [0.8, -0.8], &cfg);
    let after = &arch.alpha[1];
    for i in [0, 1, 3, 4, 6] {
        assert_eq!(after[i], before[i], "logit {i} moved");
    }
    let p_after = arch.probabilities(1);
    for i in [0, 1, 3, 4, 6] {
        assert!(
            (p_after[i] - p_before[i]).abs() < 1e-12,
            "probability {i} moved"
        );
    }
    // First Adam step: v = (1 - b2) g^2, corrected v = g^2, step = lr g / (|g| + eps).
    let step = 6e-3 * 0.8 / (0.8 + 1e-8);
    let raw = [before[2] - step, before[5] + step];
    let offset = (before[2].exp() + before[5].exp()).ln() - (raw[0].exp() + raw[1].exp()).ln();
    assert!((after[2] - (raw[0] + offset)).abs() < 1e-12);
    assert!((after[5] - (raw[1] + offset)).abs() < 1e-12);
    assert!(after[2] < before[2] && after[5] > before[5]);
    // The untouched blocks are untouched.
    assert!(arch.alpha[0].iter().all(|&a| a == 0.0));
}

/// A whole architecture step on real tensors: in every block exactly the two sampled logits
/// change and the other candidates' probabilities are unchanged to rounding; with a latency
/// target and no data signal worth speaking of, the pair's cheaper candidate gains.
#[test]
fn an_architecture_step_moves_only_the_sampled_pair_of_each_block() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::new(&space, &mut ParamInit::new(3, &device));
    let blocks = space.blocks();
    // Latencies that grow with the index; skip is free.
    let choice_ms: Vec<Vec<f64>> = blocks
        .iter()
        .map(|s| {
            s.choices()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if c.name() == "skip" {
                        0.0
                    } else {
                        0.2 + 0.1 * i as f64
                    }
                })
                .collect()
        })
        .collect();
    let cfg = config(space.clone(), Some(1.0), LatencyLoss::MulLog { beta: 0.6 });
    let mut arch = ArchWeights::zeros(&space);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut data_rng = ChaCha8Rng::seed_from_u64(5);
    for step in 0..5 {
        let pixels: Vec<f32> = (0..4 * 64)
            .map(|_| data_rng.random_range(-1.0..1.0))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [4, 1, 8, 8]), &device);
        let y = Tensor::<1, Int>::from_ints([0, 1, 2, 1], &device);
        let before = arch.clone();
        let (result, pairs) = arch_step(
            &model,
            &mut arch,
            x,
            y,
            Some((&choice_ms, 0.1)),
            &cfg,
            &mut rng,
        );
        assert!(result.ce.is_finite() && result.expected_ms > 0.1);
        for (b, sampled) in pairs.iter().enumerate() {
            let [i, j] = sampled.pair;
            if blocks[b].choices().len() == 1 {
                assert_eq!((i, j), (0, 0));
                assert_eq!(arch.alpha[b], before.alpha[b]);
                continue;
            }
            assert_ne!(i, j);
            let p0 = before.probabilities(b);
            let p1 = arch.probabilities(b);
            for k in 0..p0.len() {
                if k == i || k == j {
                    assert_ne!(
                        arch.alpha[b][k], before.alpha[b][k],
                        "step {step} block {b}: sampled logit {k} did not move"
                    );
                } else {
                    assert_eq!(
                        arch.alpha[b][k], before.alpha[b][k],
                        "step {step} block {b}: logit {k} moved"
                    );
                    assert!(
                        (p1[k] - p0[k]).abs() < 1e-12,
                        "step {step} block {b}: probability {k} moved"
                    );
                }
            }
            let pair_before = p0[i] + p0[j];
            let pair_after = p1[i] + p1[j];
            assert!((pair_before - pair_after).abs() < 1e-12);
        }
    }
}

/// The move to a target, by hand. Two blocks with logits (2, 0) and (1, 0.5, 0) and latencies
/// (3, 1) and (2, 1.5, 0.5), fixed part 1: the most probable architecture costs 1 + 3 + 2 = 6.
/// For a target of 5.4 the candidate moves cost, in log-probability per millisecond saved:
/// block 0 to choice 1: 2 / 2 = 1; block 1 to choice 1: 0.5 / 0.5 = 1; block 1 to choice 2:
/// 1 / 1.5 = 0.667. The cheapest is block 1 to choice 2, which gives 4.5 <= 5.4: one move.
#[test]
fn meeting_a_target_takes_the_cheapest_moves() {
    let space = tiny_space();
    let mut arch = ArchWeights::zeros(&space);
    arch.alpha = vec![vec![2.0, 0.0], vec![1.0, 0.5, 0.0]];
    let choice_ms = vec![vec![3.0, 1.0], vec![2.0, 1.5, 0.5]];
    let mut indices = vec![0, 0];
    assert_eq!(meet_target(&arch, &mut indices, &choice_ms, 1.0, 5.4), 1);
    assert_eq!(indices, vec![0, 2]);
    // A target of 2.0 needs block 0 to move as well (price 1), reaching 1 + 1 + 0.5 = 2.5,
    // still over, and nothing cheaper is left: two moves, then it stops.
    let mut indices = vec![0, 0];
    assert_eq!(meet_target(&arch, &mut indices, &choice_ms, 1.0, 2.0), 2);
    assert_eq!(indices, vec![1, 2]);
}

#[test]
fn impossible_settings_are_refused_with_the_field() {
    let space = tiny_space();
    let mut cfg = config(space.clone(), Some(2.0), LatencyLoss::MulLog { beta: 0.6 });
    cfg.warmup_epochs = 2;
    let err = cfg.check().unwrap_err().to_string();
    assert!(err.contains("warmup_epochs"), "{err}");
    let mut cfg = config(space.clone(), Some(0.0), LatencyLoss::MulLog { beta: 0.6 });
    assert!(cfg.check().unwrap_err().to_string().contains("target_ms"));
    cfg.target_ms = Some(1.0);
    cfg.latency_loss = LatencyLoss::Add { lambda: -1.0 };
    assert!(cfg.check().unwrap_err().to_string().contains("lambda"));
}

/// A table file that is not a table, or whose latencies are not positive, names the file and
/// what is wrong.
#[test]
fn bad_latency_tables_are_explained() {
    let dir = std::env::temp_dir().join(format!("nasrs-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("table.json");
    std::fs::write(&path, "{\"entries\": 3}").unwrap();
    let err = LatencyTable::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("table.json") && err.contains("not a latency table"),
        "{err}"
    );
    let missing = LatencyTable::load(&dir.join("absent.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.json"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}

mod search_runs {
    use std::sync::Arc;

    use burn::prelude::*;
    use nasrs::checkpoint::Checkpoint;
    use nasrs::data::{Augment, BatchLoader, Normalization, load_digits_embedded};
    use nasrs::latency::{LatencySettings, Protocol, measure_table};
    use nasrs::search::Resumable;
    use nasrs::search::proxyless::{
        LatencyLoss, ProxylessConfig, ProxylessData, ProxylessOutcome, search,
    };
    use nasrs::space::mobile::MobileSpace;

    fn data() -> ProxylessData {
        let splits = load_digits_embedded().unwrap();
        let train = Arc::new(splits.train);
        let norm = Normalization::from_dataset(&train);
        let loader = |range: std::ops::Range<usize>, shuffle: bool, seed: u64| {
            let batch = if shuffle { 32 } else { 128 };
            BatchLoader::new(
                train.clone(),
                range.collect(),
                batch,
                shuffle,
                Augment::none(),
                norm.clone(),
                seed,
            )
            .unwrap()
        };
        ProxylessData {
            train: loader(0..192, true, 1),
            valid: loader(192..384, true, 2),
            valid_eval: loader(192..384, false, 0),
        }
    }

    fn config(space: MobileSpace, target_ms: f64) -> ProxylessConfig {
        ProxylessConfig {
            space,
            epochs: 3,
            warmup_epochs: 1,
            lr: 0.05,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 4e-5,
            grad_clip: 5.0,
            arch_lr: 0.05,
            arch_beta2: 0.999,
            arch_eps: 1e-8,
            target_ms: Some(target_ms),
            latency_loss: LatencyLoss::MulLog { beta: 0.6 },
            seed: 7,
        }
    }

    fn same(a: &ProxylessOutcome, b: &ProxylessOutcome) {
        assert_eq!(a.arch_weights, b.arch_weights);
        assert_eq!(a.arch, b.arch);
        let losses =
            |o: &ProxylessOutcome| o.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>();
        assert_eq!(losses(a), losses(b));
    }

    /// A search stopped after its second epoch (the error comes after the checkpoint is
    /// written) and resumed ends exactly where an uninterrupted one does; the architecture
    /// found meets the target by the table's prediction, and only the searchable blocks moved.
    #[test]
    fn an_interrupted_search_resumes_to_the_uninterrupted_result() {
        let space = MobileSpace::cifar(1, 8, 10);
        let device = Device::flex();
        let settings = LatencySettings {
            device: "flex".into(),
            processor: "test".into(),
            threads: 1,
            batch_size: 1,
        };
        let table = measure_table(
            &space,
            settings,
            Protocol {
                warmup: 1,
                repeats: 3,
            },
            &device,
            |_| {},
        )
        .unwrap();
        let smallest: Vec<_> = space
            .blocks()
            .iter()
            .map(|s| *s.choices().last().unwrap())
            .collect();
        let target = table.predict(&smallest).unwrap() * 1.05;
        let cfg = config(space.clone(), target);

        let whole = search(&cfg, &mut data(), Some(&table), &device, None, |_| Ok(())).unwrap();
        assert_eq!(whole.epochs.len(), 3);
        let predicted = whole.predicted_ms.unwrap();
        assert!(predicted <= target, "{predicted} > {target}");
        assert!((table.predict(&whole.arch).unwrap() - predicted).abs() < 1e-9);
        for (b, shape) in space.blocks().iter().enumerate() {
            if shape.choices().len() == 1 {
                assert_eq!(
                    whole.arch_weights.alpha[b],
                    vec![0.0],
                    "fixed block {b} moved"
                );
            } else {
                assert!(
                    whole.arch_weights.alpha[b].iter().any(|&a| a != 0.0),
                    "block {b} never moved"
                );
            }
        }

        let dir =
            std::env::temp_dir().join(format!("nasrs-proxyless-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let resumable = |resume| Resumable {
            checkpoint: Checkpoint::in_run(&dir),
            resume,
        };
        let mut stopped = data();
        let err = search(
            &cfg,
            &mut stopped,
            Some(&table),
            &device,
            Some(&resumable(false)),
            |e| {
                if e.epoch == 2 {
                    Err(nasrs::NasError::Numerical("stop here".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(err.is_err());
        let resumed = search(
            &cfg,
            &mut data(),
            Some(&table),
            &device,
            Some(&resumable(true)),
            |_| Ok(()),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        same(&whole, &resumed);

        // Resuming with other settings is refused.
        let mut other = cfg.clone();
        other.arch_lr = 0.01;
        std::fs::create_dir_all(&dir).unwrap();
        search(
            &cfg,
            &mut data(),
            Some(&table),
            &device,
            Some(&resumable(false)),
            |_| Ok(()),
        )
        .unwrap();
        let refused = search(
            &other,
            &mut data(),
            Some(&table),
            &device,
            Some(&resumable(true)),
            |_| Ok(()),
        );
        std::fs::remove_dir_all(&dir).ok();
        assert!(refused.is_err());
    }

    /// A target needs a table, and a table of another space is refused.
    #[test]
    fn a_target_needs_a_table_of_the_same_space() {
        let space = MobileSpace::cifar(1, 8, 10);
        let device = Device::flex();
        let cfg = config(space.clone(), 1.0);
        let err = search(&cfg, &mut data(), None, &device, None, |_| Ok(()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("a latency target needs a latency table"),
            "{err}"
        );
        let settings = LatencySettings {
            device: "flex".into(),
            processor: "test".into(),
            threads: 1,
            batch_size: 1,
        };
        let other = MobileSpace::cifar(1, 16, 10);
        let table = measure_table(
            &other,
            settings,
            Protocol {
                warmup: 0,
                repeats: 1,
            },
            &device,
            |_| {},
        )
        .unwrap();
        let err = search(&cfg, &mut data(), Some(&table), &device, None, |_| Ok(()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another space"), "{err}");
    }
}

/// The multiplicative-log loss has the target only as a positive factor of its gradient, so
/// Adam's steps do not depend on it: two targets give the same logits after several steps
/// (to rounding of the factor through `eps`). The additive form weights the latency by
/// `lambda / T`, and two targets give different logits.
#[test]
fn only_the_additive_form_responds_to_the_target() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::new(&space, &mut ParamInit::new(3, &device));
    let choice_ms: Vec<Vec<f64>> = space
        .blocks()
        .iter()
        .map(|s| {
            (0..s.choices().len())
                .map(|i| 0.2 + 0.1 * i as f64)
                .collect()
        })
        .collect();
    let run = |target: f64, form: LatencyLoss| {
        let cfg = config(space.clone(), Some(target), form);
        let mut arch = ArchWeights::zeros(&space);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut data_rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4 {
            let pixels: Vec<f32> = (0..4 * 64)
                .map(|_| data_rng.random_range(-1.0..1.0))
                .collect();
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [4, 1, 8, 8]), &device);
            let y = Tensor::<1, Int>::from_ints([0, 1, 2, 1], &device);
            arch_step(
                &model,
                &mut arch,
                x,
                y,
                Some((&choice_ms, 0.1)),
                &cfg,
                &mut rng,
            );
        }
        arch.alpha
    };
    let largest_gap = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let mul = LatencyLoss::MulLog { beta: 0.6 };
    let gap = largest_gap(&run(1.0, mul), &run(5.0, mul));
    assert!(
        gap < 1e-6,
        "the multiplicative form moved differently: {gap}"
    );
    let add = LatencyLoss::Add { lambda: 1.0 };
    let gap = largest_gap(&run(1.0, add), &run(5.0, add));
    assert!(gap > 1e-4, "the additive form ignored the target: {gap}");

    // The hinge: with a target above every architecture (100 ms) the latency term is zero and
    // the steps are those of the cross-entropy alone (a zero weight); below the expected
    // latency (0.5 ms here, every network costing at least 0.1 + 4 x 0.2) it pulls.
    let hinge = LatencyLoss::Hinge { lambda: 1.0 };
    let none = LatencyLoss::Add { lambda: 0.0 };
    let gap = largest_gap(&run(100.0, hinge), &run(100.0, none));
    assert_eq!(gap, 0.0, "the hinge pulled below its target");
    let gap = largest_gap(&run(0.5, hinge), &run(100.0, none));
    assert!(gap > 1e-4, "the hinge ignored an excess: {gap}");
}
