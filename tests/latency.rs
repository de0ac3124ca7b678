//! Latency tables: the predictor is the sum of the table's medians, a table names what differs
//! from the current settings, the multi-trial training estimator reports the predicted latency
//! of inverted-residual networks, and a latency constraint rejects a candidate before any
//! training; a trained multi-trial search over the space returns feasible architectures only.

use std::sync::Arc;

use burn::prelude::*;
use nasrs::data::{Augment, Dataset, Normalization};
use nasrs::latency::{LatencySettings, LatencyTable, Protocol, measure_table};
use nasrs::multi::experiment::{ExperimentSpec, run_in_memory};
use nasrs::multi::space::{Space, sample};
use nasrs::multi::spaces::MobileChainSpace;
use nasrs::multi::store::TrialStatus;
use nasrs::multi::strategies::RandomSearch;
use nasrs::multi::trained::{TrainedEstimator, TrainedSettings};
use nasrs::multi::{Constraint, Estimator, Objective, Scoring};
use nasrs::space::mobile::{BlockChoice, MobileSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn settings() -> LatencySettings {
    LatencySettings {
        device: "flex".into(),
        processor: "test processor".into(),
        threads: 1,
        batch_size: 1,
    }
}

fn table(space: &MobileSpace) -> LatencyTable {
    let protocol = Protocol {
        warmup: 1,
        repeats: 3,
    };
    measure_table(space, settings(), protocol, &Device::flex(), |_| {}).unwrap()
}

/// The prediction of an architecture is, by hand, the stem's and head's medians plus the
/// median of each block's choice at its shape (skip: nothing).
#[test]
fn the_prediction_is_the_sum_of_the_entries() {
    let space = MobileSpace::cifar(1, 8, 10);
    let table = table(&space);
    // One entry per (op, shape): stem, head, the fixed k3e6 blocks (four distinct shapes) and
    // six convolutions at each of the four distinct searchable shapes (24->24 at 4x4, 32->32
    // at 2x2, 64->64 and 96->96 at 1x1).
    assert_eq!(table.entries.len(), 2 + 4 + 6 * 4);
    assert!(
        table
            .entries
            .iter()
            .all(|e| e.timing.median_ms > 0.0 && e.timing.runs >= 3)
    );
    let arch = space
        .parse("k3e6-skip-k3e6-k7e3-k5e6-k3e6-skip-k3e3-k3e6-k7e6")
        .unwrap();
    let median = |op: &str, block: usize| {
        let s = space.blocks()[block];
        table
            .entries
            .iter()
            .find(|e| {
                e.op == op
                    && (e.c_in, e.c_out, e.stride, e.input_size)
                        == (s.c_in, s.c_out, s.stride, s.input_size)
            })
            .unwrap()
            .timing
            .median_ms
    };
    let stem = table
        .entries
        .iter()
        .find(|e| e.op == "stem")
        .unwrap()
        .timing
        .median_ms;
    let head = table
        .entries
        .iter()
        .find(|e| e.op == "head")
        .unwrap()
        .timing
        .median_ms;
    let by_hand = stem
        + median("k3e6", 0)
        + median("k3e6", 2)
        + median("k7e3", 3)
        + median("k5e6", 4)
        + median("k3e6", 5)
        + median("k3e3", 7)
        + median("k3e6", 8)
        + median("k7e6", 9)
        + head;
    assert!((table.predict(&arch).unwrap() - by_hand).abs() < 1e-12);
    assert_eq!(
        table
            .block_ms(space.blocks()[1], BlockChoice::Skip)
            .unwrap(),
        0.0
    );

    // Saved and read back, the table is the same; another thread count and processor are
    // named.
    let path = std::env::temp_dir().join(format!("nasrs-table-{}.json", std::process::id()));
    table.save(&path).unwrap();
    let back = LatencyTable::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(back, table);
    let other = LatencySettings {
        threads: 2,
        processor: "other".into(),
        ..settings()
    };
    let differences = back.mismatches(&other, &space);
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences[0].contains("processor `test processor` (now `other`)"));
    assert!(differences[1].contains("1 threads (now 2)"));
    assert!(back.mismatches(&settings(), &space).is_empty());
    let bigger = MobileSpace::cifar(1, 16, 10);
    assert!(back.mismatches(&settings(), &bigger)[0].contains("another space"));
}

/// `n` random 1-channel 8x8 images of 10 classes (the digits' shape).
fn noise_dataset(n: usize) -> Arc<Dataset> {
    Arc::new(Dataset {
        name: "noise".into(),
        images: (0..n * 64).map(|i| ((i * 37) % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 10,
        pixel_max: 255.0,
    })
}

fn estimator(table: LatencyTable) -> TrainedEstimator {
    let data = noise_dataset(8);
    let settings = TrainedSettings {
        cells: 1,
        channels: 2,
        epochs: 1,
        patience: None,
        batch_size: 4,
        lr: 0.01,
    };
    TrainedEstimator::new(
        settings,
        "noise",
        data.clone(),
        vec![0, 1, 2, 3],
        vec![4, 5, 6, 7],
        data,
        Normalization::identity(1),
        Augment::none(),
        Device::flex(),
    )
    .unwrap()
    .with_latency_table(table)
    .unwrap()
}

/// The measured table with fixed latencies in place of the timings, so that which
/// architectures fall under a bound does not depend on the machine: 0.05 ms for the stem and
/// the head, `0.02 + 0.01 x kernel x expansion` for a block.
fn synthetic(mut table: LatencyTable) -> LatencyTable {
    for e in &mut table.entries {
        let ms = match BlockChoice::parse(&e.op) {
            Ok(BlockChoice::MbConv { kernel, expand }) => 0.02 + 0.01 * (kernel * expand) as f64,
            _ => 0.05,
        };
        e.timing.median_ms = ms;
        e.timing.p10_ms = ms;
        e.timing.p90_ms = ms;
    }
    table
}

/// The estimator's advance metrics carry the table's prediction; with a latency bound below
/// the cheapest architecture every trial is rejected without training; with a bound between,
/// the trained trials all satisfy it and the others are rejected naming the bound.
#[test]
fn latency_constraints_reject_before_training() {
    let space = MobileSpace::cifar(1, 8, 10);
    let table = synthetic(table(&space));
    let chain = MobileChainSpace::new(space.clone()).unwrap();
    let estimator = estimator(table.clone());
    assert!(estimator.metrics().contains(&"latency_ms".to_string()));
    let arch = sample(&chain, &mut ChaCha8Rng::seed_from_u64(3));
    let known = estimator.cost(&chain, &arch).unwrap();
    let blocks = chain.mobile_blocks(&arch).unwrap();
    assert_eq!(known["latency_ms"], table.predict(&blocks).unwrap());
    assert_eq!(
        known["params"],
        nasrs::cost::mobile_network(&space, &blocks).unwrap().params as f64
    );

    let cheapest: Vec<BlockChoice> = space
        .blocks()
        .iter()
        .map(|s| *s.choices().last().unwrap())
        .collect();
    let floor = table.predict(&cheapest).unwrap();
    let run = |bound: f64, budget: usize| {
        run_in_memory(ExperimentSpec {
            space: &chain,
            estimator: &estimator,
            strategy: Box::new(RandomSearch::new(0)),
            scoring: Scoring {
                objectives: vec!["valid_accuracy".parse::<Objective>().unwrap()],
                constraints: vec![
                    format!("latency_ms<={bound}")
                        .parse::<Constraint>()
                        .unwrap(),
                ],
            },
            budget,
            seed: 0,
        })
        .unwrap()
    };
    for trial in run(floor * 0.99, 4) {
        assert_eq!(trial.status, TrialStatus::Failed);
        let error = trial.error.unwrap();
        assert!(
            error.starts_with("rejected before evaluation: latency_ms "),
            "{error}"
        );
    }

    // Halfway between the cheapest and the dearest architecture some trials train.
    let dearest: Vec<BlockChoice> = space
        .blocks()
        .iter()
        .map(|s| {
            if s.choices().len() > 1 {
                s.choices()[5]
            } else {
                s.choices()[0]
            }
        })
        .collect();
    let bound = (floor + table.predict(&dearest).unwrap()) / 2.0;
    let trials = run(bound, 6);
    let mut trained = 0;
    for trial in &trials {
        let latency = table
            .predict(&chain.mobile_blocks(&trial.arch).unwrap())
            .unwrap();
        match trial.status {
            TrialStatus::Done => {
                trained += 1;
                assert!(latency <= bound);
                assert_eq!(trial.metrics.as_ref().unwrap()["latency_ms"], latency);
            }
            _ => assert!(
                latency > bound,
                "{} was rejected at {latency} <= {bound}",
                trial.key
            ),
        }
    }
    assert!(trained > 0, "no trial was under the bound");
}

/// A saved table edited by hand into something no measurement gives is refused when read, with
/// the file and the field at fault.
#[test]
fn impossible_tables_are_refused_when_read() {
    let space = MobileSpace::cifar(1, 8, 10);
    let good = serde_json::to_value(table(&space)).unwrap();
    let path = std::env::temp_dir().join(format!("nasrs-bad-table-{}.json", std::process::id()));
    let refused = |edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
        let mut value = good.clone();
        edit(&mut value);
        std::fs::write(&path, value.to_string()).unwrap();
        let err = LatencyTable::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("nasrs-bad-table") && err.contains(expected),
            "{err}"
        );
    };
    refused(
        &|v| v["settings"]["batch_size"] = 0.into(),
        "settings.batch_size",
    );
    refused(&|v| v["settings"]["threads"] = 0.into(), "settings.threads");
    refused(
        &|v| v["entries"][1]["p10_ms"] = 1e3.into(),
        "p10 <= median <= p90",
    );
    refused(&|v| v["entries"][1]["runs"] = 0.into(), "at least one run");
    refused(
        &|v| v["entries"][1]["median_ms"] = 0.0.into(),
        "median positive",
    );
    refused(
        &|v| {
            let first = v["entries"][1].clone();
            v["entries"][2] = first;
        },
        "repeats an earlier entry",
    );
    refused(
        &|v| {
            v["entries"].as_array_mut().unwrap().pop();
        },
        "incomplete table",
    );
    refused(&|v| v["space"]["image_size"] = 0.into(), "invalid space");
    std::fs::remove_file(&path).ok();
}

/// Timings run on a worker of a pool of the asked size (where the flex backend's operations
/// start without waiting for a worker to wake), and a pool of no thread is refused by name.
#[test]
fn timings_run_on_a_pool_worker_of_the_asked_size() {
    let (worker, threads) = nasrs::latency::on_timing_pool(3, || {
        (rayon::current_thread_index(), rayon::current_num_threads())
    })
    .unwrap();
    assert!(worker.is_some(), "ran outside the pool");
    assert_eq!(threads, 3);
    let message = nasrs::latency::on_timing_pool(0, || ())
        .unwrap_err()
        .to_string();
    assert!(message.contains("threads"), "{message}");
}
