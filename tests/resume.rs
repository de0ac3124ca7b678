//! An interrupted run resumed from its checkpoint ends exactly where an uninterrupted run with
//! the same seed ends: same architecture weights, same records, same genotype.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use burn::prelude::*;
use nasrs::checkpoint::Checkpoint;
use nasrs::data::{self, Augment, BatchLoader, Dataset, DatasetKind, Normalization, split_indices};
use nasrs::nn::{NetworkConfig, SearchNetworkConfig, named_parameters};
use nasrs::search::{DartsConfig, DartsData, Resumable, search};
use nasrs::space::published;
use nasrs::train::{LrSchedule, TrainConfig, train_genotype};
use nasrs::{NasError, Result};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrs-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn digits() -> (Arc<Dataset>, Arc<Dataset>, Normalization) {
    let splits = data::load(DatasetKind::Digits, None).unwrap();
    let norm = Normalization::from_dataset(&splits.train);
    (Arc::new(splits.train), Arc::new(splits.test), norm)
}

fn loader(
    d: &Arc<Dataset>,
    idx: Vec<usize>,
    shuffle: bool,
    seed: u64,
    n: &Normalization,
) -> BatchLoader {
    BatchLoader::new(
        d.clone(),
        idx,
        64,
        shuffle,
        Augment::none(),
        n.clone(),
        seed,
    )
    .unwrap()
}

fn search_data(train: &Arc<Dataset>, norm: &Normalization) -> DartsData {
    let (w, a) = split_indices(train.len(), 0.5, 1);
    DartsData {
        train: loader(train, w, true, 2, norm),
        valid: loader(train, a.clone(), true, 3, norm),
        valid_eval: loader(train, a, false, 0, norm),
    }
}

fn search_config() -> DartsConfig {
    let network = SearchNetworkConfig {
        in_channels: 1,
        num_classes: 10,
        channels: 4,
        cells: 3,
        nodes: 2,
        stem_multiplier: 3,
    };
    let mut config = DartsConfig::paper(network, 5);
    config.epochs = 3;
    config
}

/// Stands for a crash: the run stops right after the checkpoint of `epoch` was written.
fn interrupt_after(epoch: usize) -> impl FnMut(usize) -> Result<()> {
    move |done| {
        if done == epoch {
            Err(NasError::Numerical("interrupted".into()))
        } else {
            Ok(())
        }
    }
}

#[test]
fn resumed_search_equals_uninterrupted_search() {
    let (train, _, norm) = digits();
    let config = search_config();
    let device = Device::flex();

    let full = search(
        &config,
        &mut search_data(&train, &norm),
        &device,
        None,
        |_| Ok(()),
    )
    .unwrap();

    for stop in [1, 2] {
        let dir = temp_dir(&format!("search-{stop}"));
        let resumable = Resumable {
            checkpoint: Checkpoint::in_run(&dir),
            resume: false,
        };
        let mut stop_at = interrupt_after(stop);
        let interrupted = search(
            &config,
            &mut search_data(&train, &norm),
            &device,
            Some(&resumable),
            |r| stop_at(r.epoch),
        );
        assert!(interrupted.is_err());
        assert!(resumable.checkpoint.exists());

        let resumed = search(
            &config,
            &mut search_data(&train, &norm),
            &device,
            Some(&Resumable {
                resume: true,
                ..resumable.clone()
            }),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(resumed.records.len(), 3);
        for (a, b) in full.records.iter().zip(&resumed.records) {
            assert_eq!(
                a.alpha_normal, b.alpha_normal,
                "epoch {} after stop {stop}",
                a.epoch
            );
            assert_eq!(a.valid_loss, b.valid_loss);
            assert_eq!(a.train_loss, b.train_loss);
        }
        assert_eq!(full.genotype, resumed.genotype);
        let (p, q) = (
            named_parameters(&full.network),
            named_parameters(&resumed.network),
        );
        assert!(p.iter().zip(&q).all(|(a, b)| a.0 == b.0 && a.2 == b.2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn resume_refuses_other_settings_and_a_missing_checkpoint() {
    let (train, _, norm) = digits();
    let config = search_config();
    let device = Device::flex();
    let dir = temp_dir("settings");
    let resumable = Resumable {
        checkpoint: Checkpoint::in_run(&dir),
        resume: true,
    };
    let missing = search(
        &config,
        &mut search_data(&train, &norm),
        &device,
        Some(&resumable),
        |_| Ok(()),
    );
    let message = missing.err().unwrap().to_string();
    assert!(message.contains("no checkpoint"), "{message}");

    let fresh = Resumable {
        resume: false,
        ..resumable.clone()
    };
    let mut stop_at = interrupt_after(1);
    let _ = search(
        &config,
        &mut search_data(&train, &norm),
        &device,
        Some(&fresh),
        |r| stop_at(r.epoch),
    );
    let mut other = config.clone();
    other.lr = 0.05;
    let refused = search(
        &other,
        &mut search_data(&train, &norm),
        &device,
        Some(&resumable),
        |_| Ok(()),
    );
    let message = refused.err().unwrap().to_string();
    assert!(message.contains("lr"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let (train, test, norm) = digits();
    let config = TrainConfig {
        network: NetworkConfig {
            in_channels: 1,
            num_classes: 10,
            channels: 4,
            cells: 3,
            auxiliary: true,
            stem_multiplier: 3,
        },
        epochs: 3,
        batch_size: 64,
        lr: 0.025,
        lr_min: 0.0,
        lr_schedule: LrSchedule::CosineStep,
        momentum: 0.9,
        weight_decay: 3e-4,
        grad_clip: 5.0,
        // Drop path draws random masks: resuming must reproduce them too.
        drop_path: 0.3,
        auxiliary_weight: 0.4,
        seed: 9,
    };
    let genotype = published::darts_v2();
    let device = Device::flex();
    let all = |d: &Arc<Dataset>| (0..d.len()).collect::<Vec<_>>();
    let run = |resumable: Option<&Resumable>, stop: Option<usize>| {
        let mut train_loader = loader(&train, all(&train), true, 4, &norm);
        let mut test_loader = loader(&test, all(&test), false, 0, &norm);
        let mut stop_at = interrupt_after(stop.unwrap_or(usize::MAX));
        train_genotype(
            &config,
            &genotype,
            &mut train_loader,
            &mut test_loader,
            &device,
            resumable,
            |r| stop_at(r.epoch).map(|()| ControlFlow::Continue(())),
        )
    };
    let full = run(None, None).unwrap();
    let dir = temp_dir("train");
    let fresh = Resumable {
        checkpoint: Checkpoint::in_run(&dir),
        resume: false,
    };
    assert!(run(Some(&fresh), Some(2)).is_err());
    let resumed = run(
        Some(&Resumable {
            resume: true,
            ..fresh.clone()
        }),
        None,
    )
    .unwrap();
    let accuracies = |o: &nasrs::train::TrainOutcome| -> Vec<(f64, f64)> {
        o.epochs
            .iter()
            .map(|e| (e.train_loss, e.test_accuracy))
            .collect()
    };
    assert_eq!(accuracies(&full), accuracies(&resumed));
    let (p, q) = (
        named_parameters(&full.network),
        named_parameters(&resumed.network),
    );
    assert!(p.iter().zip(&q).all(|(a, b)| a.2 == b.2));
    std::fs::remove_dir_all(&dir).unwrap();
}
