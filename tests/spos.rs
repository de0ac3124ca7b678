//! Single-path one-shot on the inverted-residual supernet: a step on a sampled path moves only
//! that path's weights (and the shared stem and head), and recalibrating a subnet's batch
//! norm changes its running statistics, to the plain average over the batches, and nothing
//! else.

mod common;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use nasrs::nn::mobile::{BlockOp, MobileSupernet};
use nasrs::nn::{ParamInit, named_parameters};
use nasrs::search::spos::{path_step, recalibrate, uniform_path};
use nasrs::space::mobile::MobileSpace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny_space() -> MobileSpace {
    common::tiny_mobile_space()
}

/// `blocks.{b}.{i}.` names candidate `i` of block `b`; `None` for the stem and head.
fn candidate(name: &str) -> Option<(usize, usize)> {
    let mut parts = name.strip_prefix("blocks.")?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn a_path_step_moves_only_the_path_and_the_shared_layers() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::with_affine(&space, false, &mut ParamInit::new(1, &device));
    let before = named_parameters(&model);
    let path = uniform_path(&space, &mut ChaCha8Rng::seed_from_u64(4));
    let x = Tensor::<4>::random([4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_ints([0, 1, 2, 0], &device);
    let mut optimizer = nasrs::train::optim::sgd(0.9, 4e-5);
    let (model, step) = path_step(model, &mut optimizer, &path, x, y, 0.1, 5.0);
    assert!(step.loss.is_finite() && step.correct <= 4);
    let after = named_parameters(&model);
    assert_eq!(before.len(), after.len());
    let (mut moved_on_path, mut moved_shared) = (0, 0);
    for ((name, _, old), (_, _, new)) in before.iter().zip(&after) {
        let moved = old != new;
        match candidate(name) {
            Some((b, i)) if i != path[b] => assert!(!moved, "{name} is off the path and moved"),
            Some(_) => moved_on_path += usize::from(moved),
            None => moved_shared += usize::from(moved),
        }
    }
    // Every parameter of the path took a gradient: 3 convolutions per inverted residual
    // (non-affine batch norm has no parameters), minus skipped blocks.
    let convs: usize = space
        .blocks()
        .iter()
        .zip(&path)
        .map(|(s, &i)| {
            if s.choices()[i].name() == "skip" {
                0
            } else {
                3
            }
        })
        .sum();
    assert_eq!(moved_on_path, convs);
    // The stem's convolution, its affine batch norm (2), the head's convolution and batch norm
    // (2) and the classifier's weight and bias.
    assert_eq!(moved_shared, 1 + 2 + 1 + 2 + 2);
}

fn stats(bn: &nasrs::nn::batch_norm::BatchNorm2d) -> (Vec<f32>, Vec<f32>) {
    let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (read(bn.running_mean.value()), read(bn.running_var.value()))
}

/// After recalibration on two batches the stem's running mean and variance are, per channel,
/// the averages of the two batch means and unbiased variances of its convolution's output
/// (computed here directly); the parameters are the supernet's, and a candidate off the path
/// keeps the statistics it had.
#[test]
fn recalibration_changes_running_statistics_only() {
    let space = tiny_space();
    let device = Device::flex().autodiff();
    let model = MobileSupernet::with_affine(&space, false, &mut ParamInit::new(2, &device));
    let path = vec![0, 3, 0, 6];
    let plain = device.clone().without_autodiff();
    let batches: Vec<Tensor<4>> = (0..2)
        .map(|k| {
            let values: Vec<f32> = (0..4 * 64)
                .map(|i| ((i * 7 + k * 13) % 17) as f32 / 4.0)
                .collect();
            Tensor::from_data(TensorData::new(values, [4, 1, 8, 8]), &plain)
        })
        .collect();
    let off_path = |m: &MobileSupernet| match &m.blocks[1][1] {
        BlockOp::MbConv(block) => stats(&block.expand.bn),
        BlockOp::Skip(_) => unreachable!("candidate 1 of block 1 is k3e6"),
    };
    let valid = model.valid();
    let off_before = off_path(&valid);
    let stem_before = stats(&valid.stem.conv.bn);

    let subnet = recalibrate(&model, &path, &batches);

    let params_before = named_parameters(&valid);
    let params_after = named_parameters(&subnet);
    assert_eq!(params_before.len(), params_after.len());
    for ((name, _, a), (_, _, b)) in params_before.iter().zip(&params_after) {
        assert_eq!(a, b, "{name} changed");
    }
    assert_eq!(
        off_path(&subnet),
        off_before,
        "an off-path candidate's statistics changed"
    );

    let conv = &valid.stem.conv.conv;
    let batch_mean = |x: &Tensor<4>| {
        let y = conv.forward(x.clone());
        y.mean_dims(&[0, 2, 3])
            .reshape([4])
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    // The unbiased variance of each channel over a batch's n x h x w values, as PyTorch's
    // batch norm records it.
    let batch_var = |x: &Tensor<4>| {
        let y = conv.forward(x.clone());
        let [n, _, h, w] = y.dims();
        let count = (n * h * w) as f32;
        let centered = y.clone() - y.mean_dims(&[0, 2, 3]);
        centered
            .square()
            .mean_dims(&[0, 2, 3])
            .reshape([4])
            .mul_scalar(count / (count - 1.0))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let (m1, m2) = (batch_mean(&batches[0]), batch_mean(&batches[1]));
    let (v1, v2) = (batch_var(&batches[0]), batch_var(&batches[1]));
    let (mean, var) = stats(&subnet.stem.conv.bn);
    assert_ne!(mean, stem_before.0);
    assert_ne!(var, stem_before.1);
    for c in 0..4 {
        let want = (m1[c] + m2[c]) / 2.0;
        assert!(
            (mean[c] - want).abs() < 1e-4,
            "channel {c}: {} vs {want}",
            mean[c]
        );
        let want = (v1[c] + v2[c]) / 2.0;
        assert!(
            (var[c] - want).abs() < 1e-4 * want.max(1.0),
            "channel {c}: variance {} vs {want}",
            var[c]
        );
    }
    // The recalibrated subnet evaluates with running statistics again.
    assert!(!subnet.stem.conv.bn.training.is_enabled());
}

mod supernet_runs {
    use std::sync::Arc;

    use burn::prelude::*;
    use nasrs::checkpoint::Checkpoint;
    use nasrs::data::{Augment, BatchLoader, Dataset, Normalization, load_digits_embedded};
    use nasrs::multi::spaces::MobileChainSpace;
    use nasrs::multi::supernet::{Supernet, SupernetEstimator};
    use nasrs::multi::{Estimator, Space};
    use nasrs::nn::named_parameters;
    use nasrs::search::Resumable;
    use nasrs::search::spos::{
        SposConfig, SupernetInfo, load_supernet, path_of, recalibrate, save_supernet, score_subnet,
        train_supernet,
    };
    use nasrs::space::mobile::MobileSpace;
    use nasrs::train::evaluate;

    fn digits() -> (Arc<Dataset>, Normalization) {
        let train = Arc::new(load_digits_embedded().unwrap().train);
        let norm = Normalization::from_dataset(&train);
        (train, norm)
    }

    fn loader(range: std::ops::Range<usize>, shuffle: bool) -> BatchLoader {
        let (train, norm) = digits();
        let batch = if shuffle { 32 } else { 128 };
        BatchLoader::new(
            train,
            range.collect(),
            batch,
            shuffle,
            Augment::none(),
            norm,
            3,
        )
        .unwrap()
    }

    fn config() -> SposConfig {
        SposConfig {
            space: MobileSpace::cifar(1, 8, 10),
            epochs: 3,
            lr: 0.05,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 4e-5,
            grad_clip: 5.0,
            seed: 5,
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nasrs-spos-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Training stopped after its second epoch (the error comes after the checkpoint) and
    /// resumed ends with the weights, batch-norm statistics and records of an uninterrupted
    /// run; a resume with other settings is refused.
    #[test]
    fn an_interrupted_training_resumes_to_the_uninterrupted_supernet() {
        let device = Device::flex();
        let cfg = config();
        let (whole, records) =
            train_supernet(&cfg, &mut loader(0..256, true), &device, None, |_| Ok(())).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records[2].train_loss < records[0].train_loss, "{records:?}");

        let dir = temp("resume");
        let resumable = |resume| Resumable {
            checkpoint: Checkpoint::in_run(&dir),
            resume,
        };
        let stopped = train_supernet(
            &cfg,
            &mut loader(0..256, true),
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
        assert!(stopped.is_err());
        let (resumed, resumed_records) = train_supernet(
            &cfg,
            &mut loader(0..256, true),
            &device,
            Some(&resumable(true)),
            |_| Ok(()),
        )
        .unwrap();
        let losses = |r: &[nasrs::search::spos::SposEpoch]| {
            r.iter().map(|e| e.train_loss).collect::<Vec<_>>()
        };
        assert_eq!(losses(&records), losses(&resumed_records));
        let (a, b) = (named_parameters(&whole), named_parameters(&resumed));
        assert_eq!(a.len(), b.len());
        for ((name, _, x), (_, _, y)) in a.iter().zip(&b) {
            assert_eq!(x, y, "{name} differs after resuming");
        }

        let mut other = cfg.clone();
        other.lr = 0.01;
        let refused = train_supernet(
            &other,
            &mut loader(0..256, true),
            &device,
            Some(&resumable(true)),
            |_| Ok(()),
        );
        std::fs::remove_dir_all(&dir).ok();
        let message = refused.err().unwrap().to_string();
        assert!(message.contains("lr"), "{message}");
    }

    fn info(cfg: &SposConfig) -> SupernetInfo {
        SupernetInfo {
            config: cfg.clone(),
            dataset: "digits".into(),
            subset: None,
            valid_portion: 0.2,
            batch_size: 32,
            epochs: Vec::new(),
        }
    }

    /// A saved supernet reloads with the same weights and batch-norm statistics (its subnets
    /// score the same), and damaged files are refused with the file named.
    #[test]
    fn a_saved_supernet_reloads_and_damage_is_named() {
        let device = Device::flex();
        let mut cfg = config();
        cfg.epochs = 1;
        let (model, _) =
            train_supernet(&cfg, &mut loader(0..128, true), &device, None, |_| Ok(())).unwrap();
        let dir = temp("save");
        save_supernet(&dir, &model, &info(&cfg)).unwrap();
        let (loaded, loaded_info) = load_supernet(&dir, &device).unwrap();
        assert_eq!(loaded_info, info(&cfg));
        let path = vec![0; cfg.space.blocks().len()];
        let before = score_subnet(&model, &path, None, &mut loader(256..512, false), &device);
        let after = score_subnet(&loaded, &path, None, &mut loader(256..512, false), &device);
        assert_eq!(before.accuracy, after.accuracy);
        assert_eq!(before.loss, after.loss);

        // Weights of another space.
        let mut bigger = cfg.clone();
        bigger.space.head_channels += 8;
        std::fs::write(
            dir.join("supernet.json"),
            serde_json::to_string(&info(&bigger)).unwrap(),
        )
        .unwrap();
        let message = load_supernet(&dir, &device).err().unwrap().to_string();
        assert!(message.contains("supernet.bpk"), "{message}");
        // A description that is not one.
        std::fs::write(dir.join("supernet.json"), "{\"config\": 3}").unwrap();
        let message = load_supernet(&dir, &device).err().unwrap().to_string();
        assert!(message.contains("supernet.json"), "{message}");
        // Missing weights.
        save_supernet(&dir, &model, &info(&cfg)).unwrap();
        std::fs::remove_file(dir.join("supernet.bpk")).unwrap();
        let message = load_supernet(&dir, &device).err().unwrap().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(message.contains("supernet.bpk"), "{message}");
    }

    /// The estimator's accuracy is the held-out accuracy of the subnet recalibrated on its
    /// fixed calibration batches (recomputed here by hand from the same batches), or of the
    /// supernet's running statistics with recalibration off; its costs are the standalone
    /// network's.
    #[test]
    fn the_supernet_estimator_scores_recalibrated_subnets() {
        let device = Device::flex();
        let mut cfg = config();
        cfg.epochs = 2;
        let (model, _) =
            train_supernet(&cfg, &mut loader(0..256, true), &device, None, |_| Ok(())).unwrap();
        let (train, norm) = digits();
        let build = |batches| {
            SupernetEstimator::new(
                Supernet::Mobile(Box::new(model.clone()), info(&cfg)),
                train.clone(),
                (0..256).collect(),
                (256..512).collect(),
                norm.clone(),
                Augment::none(),
                batches,
                device.clone(),
            )
            .unwrap()
        };
        let space = MobileChainSpace::new(cfg.space.clone()).unwrap();
        let arch = vec![1; space.genes().len()];
        let blocks = space.mobile_blocks(&arch).unwrap();
        let path = path_of(&cfg.space, &blocks).unwrap();

        let estimator = build(3);
        let evaluation = estimator.evaluate(&space, &arch, 0).unwrap();
        // The same three batches the estimator draws: the training part shuffled with the
        // calibration stream, batches of the supernet's batch size.
        let mut calibration_loader = BatchLoader::new(
            train.clone(),
            (0..256).collect(),
            32,
            true,
            Augment::none(),
            norm.clone(),
            cfg.seed ^ 0x4341_4c49_4252_4154,
        )
        .unwrap();
        let batches: Vec<Tensor<4>> = calibration_loader
            .epoch()
            .take(3)
            .map(|b| nasrs::train::tensors::batch_tensors(&b, &device).0)
            .collect();
        let by_hand = recalibrate(&model, &path, &batches);
        let expected = evaluate(&mut loader(256..512, false), &device, |x| {
            by_hand.forward_path(x, &path)
        });
        let accuracy = evaluation.metrics["valid_accuracy"];
        assert!(
            (accuracy - 100.0 * expected.accuracy).abs() < 1e-9,
            "{accuracy}"
        );

        let plain = build(0);
        let unrecalibrated = plain.evaluate(&space, &arch, 0).unwrap();
        let running = model.valid();
        let expected = evaluate(&mut loader(256..512, false), &device, |x| {
            running.forward_path(x, &path)
        });
        let accuracy = unrecalibrated.metrics["valid_accuracy"];
        assert!(
            (accuracy - 100.0 * expected.accuracy).abs() < 1e-9,
            "{accuracy}"
        );
        assert!(plain.score_with(&blocks, true).is_err());

        let cost = nasrs::cost::mobile_network(&cfg.space, &blocks).unwrap();
        assert_eq!(evaluation.metrics["params"], cost.params as f64);
        assert_eq!(
            estimator.cost(&space, &arch).unwrap()["macs"],
            cost.macs as f64
        );
    }
}

/// burn keeps the last batch-norm statistics update pending until a sync; a checkpoint written
/// right after training must hold the committed statistics, so a model loaded from it scores
/// exactly as the trained model does in evaluation mode.
#[test]
fn a_checkpoint_holds_the_last_batch_norm_update() {
    use nasrs::checkpoint::Checkpoint;
    use nasrs::data::{Augment, BatchLoader, Normalization, load_digits_embedded};
    use nasrs::search::spos::{SposConfig, score_subnet, train_supernet};

    let train = std::sync::Arc::new(load_digits_embedded().unwrap().train);
    let norm = Normalization::from_dataset(&train);
    let loader = |range: std::ops::Range<usize>, shuffle: bool| {
        BatchLoader::new(
            train.clone(),
            range.collect(),
            32,
            shuffle,
            Augment::none(),
            norm.clone(),
            1,
        )
        .unwrap()
    };
    let space = MobileSpace::cifar(1, 8, 10);
    let config = SposConfig {
        space: space.clone(),
        epochs: 1,
        lr: 0.05,
        lr_min: 0.0,
        momentum: 0.9,
        weight_decay: 4e-5,
        grad_clip: 5.0,
        seed: 2,
    };
    let device = Device::flex();
    let (model, _) = train_supernet(
        &config,
        &mut loader(0..128, true),
        &device,
        None,
        |_| Ok(()),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("nasrs-spos-pending-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoint = Checkpoint::in_run(&dir);
    let optimizer = nasrs::train::optim::sgd(0.9, 0.0);
    checkpoint
        .save(&model, &[("weights", &optimizer)], &0)
        .unwrap();
    let fresh = MobileSupernet::with_affine(
        &space,
        false,
        &mut ParamInit::new(9, &device.clone().autodiff()),
    );
    let loaded = checkpoint.load_model(fresh).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let path = vec![0; space.blocks().len()];
    let a = score_subnet(&model, &path, None, &mut loader(256..512, false), &device);
    let b = score_subnet(&loaded, &path, None, &mut loader(256..512, false), &device);
    assert_eq!((a.accuracy, a.loss), (b.accuracy, b.loss));
}
