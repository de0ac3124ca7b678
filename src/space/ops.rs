//! The DARTS operation registry.
//!
//! Operations are identified by their DARTS names everywhere they leave the process (JSON, DARTS
//! text, logs). The position in [`DartsOp::ALL`] only orders the columns of an architecture-weight
//! row and must never be persisted: reordering the enum would silently change saved genotypes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{NasError, Result};

/// The eight DARTS operations, in the reference order of the DARTS search space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DartsOp {
    /// The zero operation: the edge contributes nothing.
    None,
    /// 3x3 max pooling.
    MaxPool3x3,
    /// 3x3 average pooling.
    AvgPool3x3,
    /// Identity (or a factorized reduction when the edge halves the resolution).
    SkipConnect,
    /// Two stacked 3x3 depthwise-separable convolutions.
    SepConv3x3,
    /// Two stacked 5x5 depthwise-separable convolutions.
    SepConv5x5,
    /// A 3x3 depthwise-separable convolution with dilation 2.
    DilConv3x3,
    /// A 5x5 depthwise-separable convolution with dilation 2.
    DilConv5x5,
}

impl DartsOp {
    /// Every operation, in the column order of an architecture-weight row.
    pub const ALL: [DartsOp; 8] = [
        DartsOp::None,
        DartsOp::MaxPool3x3,
        DartsOp::AvgPool3x3,
        DartsOp::SkipConnect,
        DartsOp::SepConv3x3,
        DartsOp::SepConv5x5,
        DartsOp::DilConv3x3,
        DartsOp::DilConv5x5,
    ];

    /// The stable serialized name, as the DARTS code spells it.
    pub fn name(self) -> &'static str {
        match self {
            DartsOp::None => "none",
            DartsOp::MaxPool3x3 => "max_pool_3x3",
            DartsOp::AvgPool3x3 => "avg_pool_3x3",
            DartsOp::SkipConnect => "skip_connect",
            DartsOp::SepConv3x3 => "sep_conv_3x3",
            DartsOp::SepConv5x5 => "sep_conv_5x5",
            DartsOp::DilConv3x3 => "dil_conv_3x3",
            DartsOp::DilConv5x5 => "dil_conv_5x5",
        }
    }

    /// The operation called `name`, if there is one (exact, case-sensitive match).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The position of this operation in [`DartsOp::ALL`], i.e. its column in a weight row.
    pub fn index(self) -> usize {
        // The discriminants follow the declaration order, which is the order of `ALL`; the
        // `index_matches_all` test keeps the two in step.
        self as usize
    }

    /// Whether the operation has no trainable parameters (`none`, the pools and `skip_connect`).
    pub fn is_parameter_free(self) -> bool {
        matches!(
            self,
            DartsOp::None | DartsOp::MaxPool3x3 | DartsOp::AvgPool3x3 | DartsOp::SkipConnect
        )
    }
}

/// The valid operation names, comma separated, for error messages.
pub(crate) fn valid_names() -> String {
    DartsOp::ALL.map(DartsOp::name).join(", ")
}

/// The message for a name that is not an operation.
pub(crate) fn unknown_op_message(name: &str) -> String {
    format!("unknown operation '{name}' (valid: {})", valid_names())
}

impl fmt::Display for DartsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DartsOp {
    type Err = NasError;

    fn from_str(s: &str) -> Result<Self> {
        DartsOp::from_name(s).ok_or_else(|| NasError::genotype("operation", unknown_op_message(s)))
    }
}

impl Serialize for DartsOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DartsOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(OpVisitor { path: None })
    }
}

/// Reads an operation name; `path` (a JSON field path) is named in errors when known.
pub(crate) struct OpVisitor<'a> {
    /// Where the name sits in the document, e.g. `normal[3][0]`.
    pub(crate) path: Option<&'a str>,
}

impl Visitor<'_> for OpVisitor<'_> {
    type Value = DartsOp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an operation name ({})", valid_names())?;
        match self.path {
            Some(path) => write!(f, " at {path}"),
            None => Ok(()),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<DartsOp, E> {
        DartsOp::from_name(v).ok_or_else(|| {
            let message = unknown_op_message(v);
            E::custom(match self.path {
                Some(path) => format!("{path}: {message}"),
                None => message,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_reference_order() {
        let reference = [
            "none",
            "max_pool_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "sep_conv_3x3",
            "sep_conv_5x5",
            "dil_conv_3x3",
            "dil_conv_5x5",
        ];
        assert_eq!(DartsOp::ALL.map(DartsOp::name), reference);
        for op in DartsOp::ALL {
            assert_eq!(DartsOp::from_name(op.name()), Some(op));
            assert_eq!(op.to_string().parse::<DartsOp>().ok(), Some(op));
        }
    }

    #[test]
    fn index_matches_all() {
        for (i, op) in DartsOp::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }

    #[test]
    fn parameter_free_set() {
        let free: Vec<&str> = DartsOp::ALL
            .into_iter()
            .filter(|op| op.is_parameter_free())
            .map(DartsOp::name)
            .collect();
        assert_eq!(
            free,
            ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"]
        );
    }

    #[test]
    fn unknown_names_are_rejected_with_the_valid_list() {
        assert_eq!(DartsOp::from_name("Sep_Conv_3x3"), None);
        let err = "sep_conv_7x7".parse::<DartsOp>().unwrap_err().to_string();
        assert!(err.contains("unknown operation 'sep_conv_7x7'"), "{err}");
        assert!(err.contains("valid: none, max_pool_3x3"), "{err}");
    }

    #[test]
    fn serde_uses_the_name() {
        let json = serde_json::to_string(&DartsOp::DilConv5x5).unwrap();
        assert_eq!(json, "\"dil_conv_5x5\"");
        let back: DartsOp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, DartsOp::DilConv5x5);
        let err = serde_json::from_str::<DartsOp>("\"conv_9x9\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown operation 'conv_9x9' (valid: none,"),
            "{err}"
        );
        let err = serde_json::from_str::<DartsOp>("3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected an operation name"), "{err}");
    }
}
