//! The network built from a discrete genotype, trained from scratch after a search
//! (Liu et al. 2019, section 3.3 and appendix A.2): the same skeleton as the search network with
//! one operation per kept edge, affine BN, drop path and an optional auxiliary head.

use burn::prelude::*;
use std::cell::RefCell;

use burn::tensor::TensorData;
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d};
use burn::tensor::ops::AvgPoolOptions;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch_norm::BatchNorm2d;
use super::conv::{Conv2d, ConvSpec};
use super::init::ParamInit;
use super::layout::{CellLayout, cell_layouts};
use super::linear::Linear;
use super::ops::{OpSettings, Operation, Preprocess};
use crate::error::{NasError, Result};
use crate::space::{CellGenotype, Genotype};

/// Shape of a network built from a genotype.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Initial channels `C`.
    pub channels: usize,
    /// Number of cells.
    pub cells: usize,
    /// Whether to build the auxiliary classifier after the second reduction cell.
    pub auxiliary: bool,
    /// The stem outputs `stem_multiplier * C` channels.
    pub stem_multiplier: usize,
}

impl NetworkConfig {
    /// Rejects shapes no network can have.
    pub fn check(&self) -> Result<()> {
        for (field, value) in [
            ("in_channels", self.in_channels),
            ("num_classes", self.num_classes),
            ("channels", self.channels),
            ("cells", self.cells),
            ("stem_multiplier", self.stem_multiplier),
        ] {
            if value == 0 {
                return Err(NasError::config(field, "must be at least 1, found 0"));
            }
        }
        if !self.channels.is_multiple_of(2) {
            return Err(NasError::config(
                "channels",
                format!(
                    "must be even (factorized reduce halves it), found {}",
                    self.channels
                ),
            ));
        }
        if self.auxiliary && self.cells < 3 {
            return Err(NasError::config(
                "auxiliary",
                format!(
                    "needs at least 3 cells to sit after the second reduction, found {}",
                    self.cells
                ),
            ));
        }
        Ok(())
    }

    /// The channel plan of every cell for `genotype`.
    pub fn layouts(&self, genotype: &Genotype) -> Vec<CellLayout> {
        let normal = genotype.normal.concat.len();
        let reduce = genotype.reduce.concat.len();
        cell_layouts(self.cells, self.channels, self.stem_multiplier, |r| {
            if r { reduce } else { normal }
        })
    }

    /// Index of the cell after which the auxiliary head reads (the second reduction cell).
    pub fn auxiliary_position(&self) -> usize {
        2 * self.cells / 3
    }
}

/// A discrete cell: one operation per kept edge.
#[derive(Module, Debug)]
pub struct Cell {
    preprocess0: Preprocess,
    preprocess1: Preprocess,
    ops: Vec<Operation>,
    inputs: Vec<usize>,
    concat: Vec<usize>,
    reduction: bool,
}

impl Cell {
    fn new(layout: &CellLayout, genes: &CellGenotype, init: &mut ParamInit) -> Self {
        let settings = OpSettings {
            affine: true,
            bn_after_pool: false,
        };
        let c = layout.c;
        let preprocess0 = Preprocess::new(layout.c_prev_prev, c, layout.reduction_prev, true, init);
        let preprocess1 = Preprocess::new(layout.c_prev, c, false, true, init);
        let mut ops = Vec::with_capacity(genes.edges.len());
        let mut inputs = Vec::with_capacity(genes.edges.len());
        for edge in &genes.edges {
            let stride = if layout.reduction && edge.input < 2 {
                2
            } else {
                1
            };
            ops.push(Operation::new(edge.op, c, stride, settings, init));
            inputs.push(edge.input);
        }
        Self {
            preprocess0,
            preprocess1,
            ops,
            inputs,
            concat: genes.concat.clone(),
            reduction: layout.reduction,
        }
    }

    fn forward(&self, s0: Tensor<4>, s1: Tensor<4>, drop: &DropPath) -> Tensor<4> {
        let mut states = vec![self.preprocess0.forward(s0), self.preprocess1.forward(s1)];
        let mut rectified: Vec<Option<Tensor<4>>> = vec![None, None];
        let training = states[0].device().is_autodiff();
        for node_ops in self.ops.chunks(2).zip(self.inputs.chunks(2)) {
            let (ops, inputs) = node_ops;
            let mut sum: Option<Tensor<4>> = None;
            for (op, &input) in ops.iter().zip(inputs) {
                let r = if op.needs_rectified() {
                    let cached =
                        rectified[input].get_or_insert_with(|| relu(states[input].clone()));
                    Some(cached.clone())
                } else {
                    None
                };
                let mut h = op.forward(states[input].clone(), r);
                if training && !op.is_identity() {
                    h = drop.apply(h);
                }
                sum = Some(match sum {
                    Some(s) => s + h,
                    None => h,
                });
            }
            states.push(sum.expect("a node has two edges"));
            rectified.push(None);
        }
        let outputs = self.concat.iter().map(|&i| states[i].clone()).collect();
        Tensor::cat(outputs, 1)
    }
}

/// Drop path (Larsson et al. 2017, FractalNet): zeroes each sample's output of an operation
/// with probability `prob` and scales the survivors by `1 / (1 - prob)`, so the expectation is
/// unchanged. The masks come from a host generator seeded by the trainer, independent of the
/// device, so a resumed run draws the masks an uninterrupted one would.
pub struct DropPath {
    prob: f64,
    rng: RefCell<ChaCha8Rng>,
}

impl DropPath {
    /// Drop path at rate `prob` with masks drawn from `seed`.
    pub fn new(prob: f64, seed: u64) -> Self {
        Self {
            prob,
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// No drop path.
    pub fn off() -> Self {
        Self::new(0.0, 0)
    }

    /// The drop probability.
    pub fn prob(&self) -> f64 {
        self.prob
    }

    /// Applies drop path to `x`, `[batch, channels, height, width]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob <= 0.0 {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [n, _, _, _] = x.dims();
        let mut rng = self.rng.borrow_mut();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if rng.random_bool(keep) {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [n, 1, 1, 1]), &x.device());
        x * mask
    }
}

/// The auxiliary classifier of Szegedy et al. (2015), as used by DARTS on CIFAR: it reads the
/// output of the second reduction cell (8x8 for 32x32 images) and adds a weighted loss term.
#[derive(Module, Debug)]
pub struct AuxiliaryHead {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    classifier: Linear,
}

impl AuxiliaryHead {
    fn new(c_in: usize, num_classes: usize, init: &mut ParamInit) -> Self {
        Self {
            conv1: Conv2d::new(c_in, 128, ConvSpec::new(1, 1, 0), false, init),
            bn1: BatchNorm2d::new(128, true, init),
            conv2: Conv2d::new(128, 768, ConvSpec::new(2, 1, 0), false, init),
            bn2: BatchNorm2d::new(768, true, init),
            classifier: Linear::new(768, num_classes, init),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(x);
        let [_, _, h, w] = x.dims();
        // On the 8x8 map of CIFAR this is the reference 5x5 stride-3 pooling to 2x2; other
        // resolutions are pooled adaptively to the same 2x2 so the head works on any input.
        let x = if h == 8 && w == 8 {
            let options = AvgPoolOptions::new([5, 5])
                .with_stride([3, 3])
                .with_count_include_pad(false);
            avg_pool2d(x, options)
        } else {
            adaptive_avg_pool2d(x, [2, 2])
        };
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        let [n, c, _, _] = x.dims();
        self.classifier.forward(x.reshape([n, c]))
    }
}

/// Output of [`Network::forward`].
pub struct NetworkOutput {
    /// Logits `[batch, classes]`.
    pub logits: Tensor<2>,
    /// Auxiliary logits, present while training a network that has the head.
    pub auxiliary: Option<Tensor<2>>,
}

/// A network built from a genotype.
#[derive(Module, Debug)]
pub struct Network {
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    cells: Vec<Cell>,
    auxiliary: Option<AuxiliaryHead>,
    auxiliary_position: usize,
    classifier: Linear,
}

impl Network {
    /// Builds the network for `genotype` with weights drawn from `init`.
    pub fn new(config: &NetworkConfig, genotype: &Genotype, init: &mut ParamInit) -> Result<Self> {
        config.check()?;
        genotype.normal.validate("normal")?;
        genotype.reduce.validate("reduce")?;
        let stem_channels = config.stem_multiplier * config.channels;
        let stem_conv = Conv2d::new(
            config.in_channels,
            stem_channels,
            ConvSpec::new(3, 1, 1),
            false,
            init,
        );
        let stem_bn = BatchNorm2d::new(stem_channels, true, init);
        let layouts = config.layouts(genotype);
        let mut cells = Vec::with_capacity(config.cells);
        let mut auxiliary = None;
        for (index, layout) in layouts.iter().enumerate() {
            let genes = if layout.reduction {
                &genotype.reduce
            } else {
                &genotype.normal
            };
            cells.push(Cell::new(layout, genes, init));
            if config.auxiliary && index == config.auxiliary_position() {
                auxiliary = Some(AuxiliaryHead::new(layout.c_out, config.num_classes, init));
            }
        }
        let c_last = layouts.last().map(|l| l.c_out).unwrap_or(stem_channels);
        let classifier = Linear::new(c_last, config.num_classes, init);
        Ok(Self {
            stem_conv,
            stem_bn,
            cells,
            auxiliary,
            auxiliary_position: config.auxiliary_position(),
            classifier,
        })
    }

    /// Logits for images `[batch, channels, height, width]`. Drop path and the auxiliary head are
    /// active only while training, that is on an autodiff device: `valid()` moves the network to
    /// the plain device, where both are off whatever `drop` says.
    pub fn forward(&self, x: Tensor<4>, drop: &DropPath) -> NetworkOutput {
        let training = x.device().is_autodiff();
        let stem = self.stem_bn.forward(self.stem_conv.forward(x));
        let mut s0 = stem.clone();
        let mut s1 = stem;
        let mut auxiliary = None;
        for (index, cell) in self.cells.iter().enumerate() {
            let out = cell.forward(s0, s1.clone(), drop);
            s0 = s1;
            s1 = out;
            if training && index == self.auxiliary_position {
                auxiliary = self.auxiliary.as_ref().map(|head| head.forward(s1.clone()));
            }
        }
        let [n, c, _, _] = s1.dims();
        let pooled = adaptive_avg_pool2d(s1, [1, 1]).reshape([n, c]);
        NetworkOutput {
            logits: self.classifier.forward(pooled),
            auxiliary,
        }
    }

    /// Parameters of the auxiliary head (0 without one); it is used in training only, so
    /// papers report the count without it.
    pub fn auxiliary_params(&self) -> usize {
        self.auxiliary
            .as_ref()
            .map(super::count_parameters)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample of the output is either all zero or the input divided by keep = 0.5.
    #[test]
    fn drop_path_drops_whole_samples_and_rescales_survivors() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::ones([64, 2, 3, 3], &device);
        let drop = DropPath::new(0.5, 3);
        let y: Vec<f32> = drop
            .apply(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        let mut dropped = 0;
        for sample in y.chunks(18) {
            if sample.iter().all(|&v| v == 0.0) {
                dropped += 1;
            } else {
                assert!(sample.iter().all(|&v| (v - 2.0).abs() < 1e-6), "{sample:?}");
            }
        }
        // Binomial(64, 0.5): 32 +- 4; outside 12..=52 has probability below 1e-6.
        assert!((12..=52).contains(&dropped), "{dropped} of 64 dropped");
    }

    /// A cell of identity edges only is never dropped, and a network in evaluation mode gives
    /// the same output twice whatever the drop-path rate.
    #[test]
    fn drop_path_spares_identity_and_evaluation() {
        let device = Device::flex().autodiff();
        let all_skip = Genotype::parse(
            "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), \
             ('skip_connect', 1)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), \
             ('skip_connect', 1), ('avg_pool_3x3', 0), ('skip_connect', 2)], \
             reduce_concat=[2, 3])",
            "test",
        )
        .unwrap();
        let config = NetworkConfig {
            in_channels: 1,
            num_classes: 3,
            channels: 4,
            cells: 1,
            auxiliary: false,
            stem_multiplier: 3,
        };
        // One cell at index 0 is a reduction cell (1/3 of 1 rounds to 0), so use its normal
        // cell directly.
        let layout = &config.layouts(&all_skip)[0];
        let normal_layout = CellLayout {
            reduction: false,
            ..*layout
        };
        let cell = Cell::new(
            &normal_layout,
            &all_skip.normal,
            &mut ParamInit::new(0, &device),
        );
        let s = Tensor::<4>::ones([8, 12, 4, 4], &device);
        let kept = cell.forward(s.clone(), s.clone(), &DropPath::new(0.9, 1));
        let reference = cell.forward(s.clone(), s, &DropPath::off());
        let (a, b): (Vec<f32>, Vec<f32>) = (
            kept.into_data().convert::<f32>().try_to_vec().unwrap(),
            reference.into_data().convert::<f32>().try_to_vec().unwrap(),
        );
        assert_eq!(a, b);

        let net = Network::new(&config, &all_skip, &mut ParamInit::new(0, &device)).unwrap();
        let eval = net.valid();
        let x = Tensor::<4>::ones([4, 1, 8, 8], &device.without_autodiff());
        let dropped = eval.forward(x.clone(), &DropPath::new(0.9, 1)).logits;
        let plain = eval.forward(x, &DropPath::off()).logits;
        let dropped: Vec<f32> = dropped.into_data().try_to_vec().unwrap();
        let plain: Vec<f32> = plain.into_data().try_to_vec().unwrap();
        assert_eq!(dropped, plain);
    }
}
