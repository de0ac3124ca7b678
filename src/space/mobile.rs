//! The inverted-residual chain space of ProxylessNAS (Cai et al. 2019), sized for 32x32 images.
//!
//! A network is a stem, a chain of searchable blocks grouped into stages, and a head. Each
//! block chooses a MobileNetV2 inverted residual (Sandler et al. 2018) with kernel 3, 5 or 7 and
//! expansion 3 or 6, or `skip` (the identity). The first block of a stage changes the width or
//! the resolution, so it has no identity and cannot be skipped. An architecture is written as
//! its choices joined by `-`, one per block: `k3e6-skip-k5e3-...`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cost::Resolution;
use crate::{NasError, Result};

/// What one block computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlockChoice {
    /// Inverted residual: 1x1 expansion to `expand x c_in` channels, `kernel x kernel`
    /// depthwise convolution, 1x1 projection; each followed by batch norm, the first two by
    /// ReLU6. Residual connection when the stride is 1 and the width is kept.
    MbConv {
        /// Depthwise kernel side: 3, 5 or 7.
        kernel: usize,
        /// Expansion ratio: 3 or 6.
        expand: usize,
    },
    /// The identity: the block is left out.
    Skip,
}

impl BlockChoice {
    /// The seven choices in their fixed order: `k3e3, k3e6, k5e3, k5e6, k7e3, k7e6, skip`.
    pub const ALL: [BlockChoice; 7] = [
        BlockChoice::MbConv {
            kernel: 3,
            expand: 3,
        },
        BlockChoice::MbConv {
            kernel: 3,
            expand: 6,
        },
        BlockChoice::MbConv {
            kernel: 5,
            expand: 3,
        },
        BlockChoice::MbConv {
            kernel: 5,
            expand: 6,
        },
        BlockChoice::MbConv {
            kernel: 7,
            expand: 3,
        },
        BlockChoice::MbConv {
            kernel: 7,
            expand: 6,
        },
        BlockChoice::Skip,
    ];

    /// The short name: `k{kernel}e{expand}` or `skip`.
    pub fn name(self) -> String {
        match self {
            BlockChoice::MbConv { kernel, expand } => format!("k{kernel}e{expand}"),
            BlockChoice::Skip => "skip".to_string(),
        }
    }

    /// Reads a short name.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `architecture` when `text` is none of the seven names.
    pub fn parse(text: &str) -> Result<Self> {
        BlockChoice::ALL
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| {
                NasError::config(
                    "architecture",
                    format!(
                        "unknown block choice `{text}` (expected one of {})",
                        BlockChoice::ALL.map(BlockChoice::name).join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for BlockChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A stage: `blocks` searchable blocks of `channels` output channels, the first with `stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Output channels of every block of the stage.
    pub channels: usize,
    /// Number of blocks.
    pub blocks: usize,
    /// Stride of the first block (1 or 2); the others have stride 1.
    pub stride: usize,
}

/// The shape of the network around the searchable blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MobileSpace {
    /// Image channels.
    pub in_channels: usize,
    /// Image side (square images).
    pub image_size: usize,
    /// Output channels of the stem (3x3 convolution, stride 1, batch norm, ReLU6).
    pub stem_channels: usize,
    /// The stages of searchable blocks.
    pub stages: Vec<Stage>,
    /// Channels of the head's 1x1 convolution before global average pooling.
    pub head_channels: usize,
    /// Classes of the classifier.
    pub classes: usize,
    /// Whether the blocks without a residual (those that change the width or the resolution:
    /// the first block of each stage in [`MobileSpace::cifar`]) are searched too. When false
    /// they are fixed to [`MobileSpace::TRANSITION`].
    #[serde(default)]
    pub search_transitions: bool,
}

/// The geometry of one searchable block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Stride of the depthwise convolution.
    pub stride: usize,
    /// Input side (square).
    pub input_size: usize,
    /// The one choice of a block the search does not change (see
    /// [`MobileSpace::search_transitions`]); `None` for a searchable block.
    pub fixed: Option<BlockChoice>,
}

impl BlockShape {
    /// Whether the identity fits this block (stride 1, width kept).
    pub fn can_skip(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out
    }

    /// The choices of this block, in [`BlockChoice::ALL`] order, `skip` only where it fits;
    /// only the fixed choice for a block the search does not change.
    pub fn choices(&self) -> Vec<BlockChoice> {
        if let Some(fixed) = self.fixed {
            return vec![fixed];
        }
        BlockChoice::ALL
            .into_iter()
            .filter(|c| *c != BlockChoice::Skip || self.can_skip())
            .collect()
    }

    /// Output side: `ceil(input / stride)`, since every kernel is padded by `kernel / 2`.
    pub fn output_size(&self) -> usize {
        self.input_size.div_ceil(self.stride)
    }
}

impl MobileSpace {
    /// The choice of a stage's first block when it is not searched: MobileNetV2's own block.
    pub const TRANSITION: BlockChoice = BlockChoice::MbConv {
        kernel: 3,
        expand: 6,
    };

    /// The space used for CIFAR-10: a 16-channel stem at 32x32, stages of 24 (2 blocks, to
    /// 16x16), 32 (3 blocks, to 8x8), 64 (3 blocks, to 4x4) and 96 channels (2 blocks), a
    /// 256-channel head. Ten blocks; MobileNetV2's stage widths shrunk to keep a search on two
    /// CPU cores within an hour.
    ///
    /// The first block of each stage is fixed to [`MobileSpace::TRANSITION`] and the six
    /// blocks with a residual are searched. Sampling the stage transitions as well left a
    /// supernet that did not train in the steps a CPU budget allows: every transition sampled
    /// independently hands the following blocks differently computed features, and on the
    /// digits 69 steps left the loss at chance (2.4-2.6), against 0.8-1.0 with the transitions
    /// fixed. Set `search_transitions` to search all ten.
    pub fn cifar(in_channels: usize, image_size: usize, classes: usize) -> Self {
        MobileSpace {
            in_channels,
            image_size,
            stem_channels: 16,
            stages: vec![
                Stage {
                    channels: 24,
                    blocks: 2,
                    stride: 2,
                },
                Stage {
                    channels: 32,
                    blocks: 3,
                    stride: 2,
                },
                Stage {
                    channels: 64,
                    blocks: 3,
                    stride: 2,
                },
                Stage {
                    channels: 96,
                    blocks: 2,
                    stride: 1,
                },
            ],
            head_channels: 256,
            classes,
            search_transitions: false,
        }
    }

    /// Rejects impossible shapes with the name of the offending field.
    pub fn check(&self) -> Result<()> {
        for (field, value) in [
            ("in_channels", self.in_channels),
            ("image_size", self.image_size),
            ("stem_channels", self.stem_channels),
            ("head_channels", self.head_channels),
        ] {
            if value == 0 {
                return Err(NasError::config(field, "must be at least 1, found 0"));
            }
        }
        if self.classes < 2 {
            return Err(NasError::config(
                "classes",
                format!(
                    "a classifier needs at least 2 classes, found {}",
                    self.classes
                ),
            ));
        }
        if self.stages.is_empty() {
            return Err(NasError::config("stages", "at least one stage is needed"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.channels == 0 || s.blocks == 0 || !(1..=2).contains(&s.stride) {
                return Err(NasError::config(
                    format!("stages[{i}]"),
                    format!(
                        "channels and blocks must be at least 1 and stride 1 or 2, found {s:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every searchable block's geometry, in order.
    pub fn blocks(&self) -> Vec<BlockShape> {
        let mut shapes = Vec::new();
        let mut c_in = self.stem_channels;
        let mut size = self.image_size;
        for stage in &self.stages {
            for b in 0..stage.blocks {
                let stride = if b == 0 { stage.stride } else { 1 };
                let mut shape = BlockShape {
                    c_in,
                    c_out: stage.channels,
                    stride,
                    input_size: size,
                    fixed: None,
                };
                if !self.search_transitions && !shape.can_skip() {
                    shape.fixed = Some(Self::TRANSITION);
                }
                size = shape.output_size();
                c_in = stage.channels;
                shapes.push(shape);
            }
        }
        shapes
    }

    /// The side of the last block's output, where the head runs.
    pub fn final_size(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.image_size, BlockShape::output_size)
    }

    /// Input channels of the head: the last stage's width.
    pub fn final_channels(&self) -> usize {
        self.stages
            .last()
            .map_or(self.stem_channels, |s| s.channels)
    }

    /// The resolution of the image.
    ///
    /// # Errors
    /// As [`Resolution::square`].
    pub fn resolution(&self) -> Result<Resolution> {
        Resolution::square(self.image_size)
    }

    /// Writes an architecture as its choices joined by `-`.
    pub fn key(&self, arch: &[BlockChoice]) -> String {
        arch.iter().map(|c| c.name()).collect::<Vec<_>>().join("-")
    }

    /// Reads `choice-choice-...`, one per block, and checks it fits the space.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `architecture` when the count is wrong, a name is unknown,
    /// a block that cannot be the identity is `skip`, or a fixed block has another choice.
    pub fn parse(&self, text: &str) -> Result<Vec<BlockChoice>> {
        let parts: Vec<&str> = text.trim().split('-').map(str::trim).collect();
        // The inner errors are on `architecture` already: keep their message, add the text.
        let with_text = |e: NasError| match e {
            NasError::Config { message, .. } => {
                NasError::config("architecture", format!("`{}`: {message}", text.trim()))
            }
            other => other,
        };
        let arch = parts
            .iter()
            .map(|p| BlockChoice::parse(p))
            .collect::<Result<Vec<_>>>()
            .map_err(with_text)?;
        self.validate(&arch).map_err(with_text)?;
        Ok(arch)
    }

    /// Checks that `arch` has one choice per block, skips only where the identity fits and
    /// keeps the fixed blocks' choice.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `architecture` naming the block at fault.
    pub fn validate(&self, arch: &[BlockChoice]) -> Result<()> {
        let blocks = self.blocks();
        if arch.len() != blocks.len() {
            return Err(NasError::config(
                "architecture",
                format!(
                    "expected {} block choices joined by `-`, found {}",
                    blocks.len(),
                    arch.len()
                ),
            ));
        }
        for (i, (choice, shape)) in arch.iter().zip(&blocks).enumerate() {
            if *choice == BlockChoice::Skip && !shape.can_skip() {
                return Err(NasError::config(
                    "architecture",
                    format!(
                        "block {i} cannot be `skip`: it maps {} to {} channels at stride {}, \
                         which the identity cannot",
                        shape.c_in, shape.c_out, shape.stride
                    ),
                ));
            }
            if let Some(fixed) = shape.fixed
                && *choice != fixed
            {
                return Err(NasError::config(
                    "architecture",
                    format!(
                        "block {i} starts a stage and is fixed to `{fixed}` in this space, \
                         found `{choice}`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_space_has_ten_blocks_and_skips_only_inside_stages() {
        let space = MobileSpace::cifar(3, 32, 10);
        space.check().unwrap();
        let blocks = space.blocks();
        assert_eq!(blocks.len(), 10);
        let skippable: Vec<bool> = blocks.iter().map(BlockShape::can_skip).collect();
        let expected = [
            false, true, false, true, true, false, true, true, false, true,
        ];
        assert_eq!(skippable, expected);
        let transition = Some(MobileSpace::TRANSITION);
        let first = BlockShape {
            c_in: 16,
            c_out: 24,
            stride: 2,
            input_size: 32,
            fixed: transition,
        };
        assert_eq!(blocks[0], first);
        assert_eq!(space.final_size(), 4);
        assert_eq!(blocks[0].choices(), vec![MobileSpace::TRANSITION]);
        assert_eq!(blocks[1].choices().len(), 7);
        let all = MobileSpace {
            search_transitions: true,
            ..space
        };
        assert_eq!(all.blocks()[0].choices().len(), 6);
    }

    #[test]
    fn keys_round_trip_and_bad_keys_are_explained() {
        let space = MobileSpace::cifar(3, 32, 10);
        let text = "k3e6-skip-k3e6-k7e3-skip-k3e6-k5e3-k7e6-k3e6-skip";
        let arch = space.parse(text).unwrap();
        assert_eq!(space.key(&arch), text);
        let err = space.parse("k3e3-skip").unwrap_err().to_string();
        assert!(err.contains("expected 10 block choices"), "{err}");
        let err = space
            .parse("skip-skip-k3e6-k7e3-skip-k3e6-k5e3-k7e6-k3e6-skip")
            .unwrap_err()
            .to_string();
        assert!(err.contains("block 0 cannot be `skip`"), "{err}");
        let err = space
            .parse("k9e3-skip-k3e6-k7e3-skip-k3e6-k5e3-k7e6-k3e6-skip")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown block choice `k9e3`"), "{err}");
        let err = space
            .parse("k5e6-skip-k3e6-k7e3-skip-k3e6-k5e3-k7e6-k3e6-skip")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("block 0 starts a stage and is fixed to `k3e6`"),
            "{err}"
        );
    }
}
