//! Training a genotype end to end on the real digits data, and the settings checks.

use std::ops::ControlFlow;
use std::sync::Arc;

use burn::prelude::*;
use nasrs::data::{self, Augment, BatchLoader, DatasetKind, Normalization};
use nasrs::nn::{NetworkConfig, SearchNetworkConfig};
use nasrs::search::DartsConfig;
use nasrs::space::published;
use nasrs::train::{LrSchedule, TrainConfig, train_genotype};

fn train_config() -> TrainConfig {
    TrainConfig {
        network: NetworkConfig {
            in_channels: 1,
            num_classes: 10,
            channels: 8,
            cells: 5,
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
        drop_path: 0.3,
        auxiliary_weight: 0.4,
        seed: 0,
    }
}

/// DARTS-V2 on digits for three epochs: the drop-path rate ramps 0, 0.1, 0.2, the training loss
/// falls and the test accuracy ends far above chance (10%).
#[test]
fn darts_v2_learns_digits() {
    let splits = data::load(DatasetKind::Digits, None).unwrap();
    let norm = Normalization::from_dataset(&splits.train);
    let (train, test) = (Arc::new(splits.train), Arc::new(splits.test));
    let mut train_loader = BatchLoader::new(
        train.clone(),
        (0..train.len()).collect(),
        64,
        true,
        Augment::none(),
        norm.clone(),
        1,
    )
    .unwrap();
    let mut test_loader = BatchLoader::new(
        test.clone(),
        (0..test.len()).collect(),
        256,
        false,
        Augment::none(),
        norm,
        0,
    )
    .unwrap();
    let config = train_config();
    let outcome = train_genotype(
        &config,
        &published::darts_v2(),
        &mut train_loader,
        &mut test_loader,
        &Device::flex(),
        None,
        |_| Ok(ControlFlow::Continue(())),
    )
    .unwrap();
    let drop: Vec<f64> = outcome.epochs.iter().map(|e| e.drop_prob).collect();
    assert!(
        drop.iter()
            .zip([0.0, 0.1, 0.2])
            .all(|(a, b)| (a - b).abs() < 1e-12),
        "{drop:?}"
    );
    assert!(outcome.epochs[2].train_loss < 0.5 * outcome.epochs[0].train_loss);
    assert!(
        outcome.epochs[2].test_accuracy > 0.8,
        "{:?}",
        outcome.epochs[2]
    );
    assert!(outcome.auxiliary_parameters > 0);
}

#[test]
fn impossible_settings_name_their_field() {
    let bad_train = [
        (
            "epochs",
            TrainConfig {
                epochs: 0,
                ..train_config()
            },
        ),
        (
            "drop_path",
            TrainConfig {
                drop_path: 1.0,
                ..train_config()
            },
        ),
        (
            "auxiliary_weight",
            TrainConfig {
                auxiliary_weight: f64::NAN,
                ..train_config()
            },
        ),
        (
            "weight_decay",
            TrainConfig {
                weight_decay: -1.0,
                ..train_config()
            },
        ),
        (
            "lr",
            TrainConfig {
                lr: 0.0,
                ..train_config()
            },
        ),
    ];
    for (field, config) in bad_train {
        let message = config.check().unwrap_err().to_string();
        assert!(
            message.contains(&format!("`{field}`")),
            "{field}: {message}"
        );
    }
    let mut odd = train_config();
    odd.network.channels = 7;
    assert!(odd.check().unwrap_err().to_string().contains("`channels`"));

    let network = SearchNetworkConfig {
        in_channels: 1,
        num_classes: 10,
        channels: 4,
        cells: 3,
        nodes: 2,
        stem_multiplier: 3,
    };
    let good = DartsConfig::paper(network, 0);
    let bad_search = [
        (
            "warmup_epochs",
            DartsConfig {
                warmup_epochs: 50,
                ..good.clone()
            },
        ),
        (
            "arch_beta1",
            DartsConfig {
                arch_beta1: 1.0,
                ..good.clone()
            },
        ),
        (
            "stop_at_skip_connections",
            DartsConfig {
                stop_at_skip_connections: Some(0),
                ..good.clone()
            },
        ),
        (
            "batch_size",
            DartsConfig {
                batch_size: 0,
                ..good.clone()
            },
        ),
    ];
    for (field, config) in bad_search {
        let message = config.check().unwrap_err().to_string();
        assert!(
            message.contains(&format!("`{field}`")),
            "{field}: {message}"
        );
    }
    assert!(good.check().is_ok());
}
