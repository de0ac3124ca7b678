//! The DARTS bi-level optimisation: parameter groups stay separate, and a short real search on
//! the digits data trains both the weights and the architecture.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use nasrs::data::{self, Augment, BatchLoader, DatasetKind, Normalization, split_indices};
use nasrs::nn::{ParamInit, SearchNetwork, SearchNetworkConfig, named_parameters};
use nasrs::search::darts::{
    DartsConfig, DartsData, arch_optimizer, search, step, weight_optimizer,
};
use nasrs::train::cross_entropy;

fn tiny_network() -> SearchNetworkConfig {
    SearchNetworkConfig {
        in_channels: 1,
        num_classes: 10,
        channels: 4,
        cells: 3,
        nodes: 3,
        stem_multiplier: 3,
    }
}

/// Parameters whose values differ between two snapshots, by path.
fn changed(
    before: &[(String, burn::module::ParamId, Vec<f32>)],
    after: &[(String, burn::module::ParamId, Vec<f32>)],
) -> Vec<String> {
    assert_eq!(before.len(), after.len());
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.2 != a.2)
        .map(|(b, _)| b.0.clone())
        .collect()
}

#[test]
fn architecture_and_weight_optimisers_touch_only_their_own_group() {
    let device = Device::flex().autodiff();
    let config = DartsConfig::paper(tiny_network(), 0);
    let model = SearchNetwork::new(&config.network, &mut ParamInit::new(0, &device)).unwrap();
    let arch_ids = model.architecture_param_ids();
    let weight_ids = model.weight_param_ids();
    let x = Tensor::<4>::random([8, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new((0..8i64).collect(), [8]), &device);
    let is_alpha = |path: &str| path.starts_with("alpha_");

    let before = named_parameters(&model);
    let mut arch_opt = arch_optimizer(&config);
    let loss = cross_entropy(model.forward(x.clone()), y.clone());
    let model = step(&mut arch_opt, config.arch_lr, model, loss, &arch_ids, None);
    let after_arch = named_parameters(&model);
    let moved = changed(&before, &after_arch);
    assert_eq!(
        moved,
        vec!["alpha_normal".to_string(), "alpha_reduce".to_string()]
    );

    let mut weight_opt = weight_optimizer(&config);
    let loss = cross_entropy(model.forward(x), y);
    let model = step(
        &mut weight_opt,
        config.lr,
        model,
        loss,
        &weight_ids,
        Some(5.0),
    );
    let after_weights = named_parameters(&model);
    let moved = changed(&after_arch, &after_weights);
    assert!(
        moved.iter().all(|p| !is_alpha(p)),
        "alphas moved in the weight step: {moved:?}"
    );
    // Every convolution feeding the loss gets a gradient; at least the stem and classifier move.
    assert!(
        moved.iter().any(|p| p.starts_with("stem_conv")),
        "{moved:?}"
    );
    assert!(
        moved.iter().any(|p| p.starts_with("classifier")),
        "{moved:?}"
    );
    assert!(
        moved.len() > 20,
        "only {} weight tensors moved",
        moved.len()
    );
}

fn digits_search(seed: u64, epochs: usize) -> (nasrs::search::DartsOutcome, Vec<Vec<f32>>) {
    let splits = data::load(DatasetKind::Digits, None).unwrap();
    let train = Arc::new(splits.train);
    let norm = Normalization::from_dataset(&train);
    let (weights_half, arch_half) = split_indices(train.len(), 0.5, seed);
    let loader = |indices: Vec<usize>, shuffle: bool, s: u64| {
        BatchLoader::new(
            train.clone(),
            indices,
            64,
            shuffle,
            Augment::none(),
            norm.clone(),
            s,
        )
        .unwrap()
    };
    let mut data = DartsData {
        train: loader(weights_half, true, seed + 1),
        valid: loader(arch_half.clone(), true, seed + 2),
        valid_eval: loader(arch_half, false, 0),
    };
    let mut config = DartsConfig::paper(tiny_network(), seed);
    config.epochs = epochs;
    // A larger architecture learning rate than the paper's, so that three short epochs move
    // alpha well beyond its 1e-3 initial scale.
    config.arch_lr = 3e-3;
    let initial = {
        let device = Device::flex().autodiff();
        let net = SearchNetwork::new(&config.network, &mut ParamInit::new(seed, &device)).unwrap();
        named_parameters(&net)
            .into_iter()
            .find(|p| p.0 == "alpha_normal")
            .unwrap()
            .2
    };
    let outcome = search(&config, &mut data, &Device::flex(), None, |_| Ok(())).unwrap();
    (outcome, vec![initial])
}

/// Three epochs of search on the real digits data: the validation loss falls, the architecture
/// weights move away from their initial values, and every epoch yields a valid genotype.
#[test]
fn short_digits_search_trains_weights_and_architecture() {
    let (outcome, initial) = digits_search(0, 3);
    let records = &outcome.records;
    assert_eq!(records.len(), 3);
    assert!(
        records[2].valid_loss < 0.8 * records[0].valid_loss,
        "validation loss did not fall: {:?}",
        records.iter().map(|r| r.valid_loss).collect::<Vec<_>>()
    );
    assert!(
        records[2].valid_accuracy > 0.5,
        "accuracy {}",
        records[2].valid_accuracy
    );
    let final_alpha = named_parameters(&outcome.network)
        .into_iter()
        .find(|p| p.0 == "alpha_normal")
        .unwrap()
        .2;
    let moved = initial[0]
        .iter()
        .zip(&final_alpha)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 0.02, "alpha moved by at most {moved}");
    for r in records {
        r.genotype.validate("epoch").unwrap();
        assert_eq!(r.genotype.nodes(), 3);
        assert!(
            r.genotype
                .normal
                .edges
                .iter()
                .all(|e| e.op != nasrs::space::DartsOp::None)
        );
    }
}

/// The same seed gives the same search, bit for bit.
#[test]
fn search_is_reproducible_with_a_seed() {
    let (a, _) = digits_search(7, 1);
    let (b, _) = digits_search(7, 1);
    assert_eq!(a.records[0].alpha_normal, b.records[0].alpha_normal);
    assert_eq!(a.records[0].valid_loss, b.records[0].valid_loss);
    assert_eq!(a.genotype, b.genotype);
    let (c, _) = digits_search(8, 1);
    assert_ne!(a.records[0].alpha_normal, c.records[0].alpha_normal);
}

/// With one warm-up epoch the architecture weights stay at their initial values through the
/// first epoch and move in the second.
#[test]
fn warmup_freezes_the_architecture() {
    let splits = data::load(DatasetKind::Digits, None).unwrap();
    let train = Arc::new(splits.train);
    let norm = Normalization::from_dataset(&train);
    let (w, a) = split_indices(train.len(), 0.5, 0);
    let loader = |indices: Vec<usize>, shuffle: bool| {
        BatchLoader::new(
            train.clone(),
            indices,
            64,
            shuffle,
            Augment::none(),
            norm.clone(),
            1,
        )
        .unwrap()
    };
    let mut data = DartsData {
        train: loader(w, true),
        valid: loader(a.clone(), true),
        valid_eval: loader(a, false),
    };
    let mut config = DartsConfig::paper(tiny_network(), 0);
    config.epochs = 2;
    config.warmup_epochs = 1;
    let device = Device::flex().autodiff();
    let initial = SearchNetwork::new(&config.network, &mut ParamInit::new(0, &device))
        .unwrap()
        .architecture_weights()
        .0;
    let outcome = search(&config, &mut data, &Device::flex(), None, |_| Ok(())).unwrap();
    assert!(!outcome.records[0].arch_updated && outcome.records[1].arch_updated);
    assert_eq!(outcome.records[0].alpha_normal, initial);
    assert_ne!(outcome.records[1].alpha_normal, initial);
}
