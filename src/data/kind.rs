//! The datasets the tool knows by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::NasError;

/// A dataset the loaders can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// UCI optical digits, 8x8 grey, embedded in the binary.
    Digits,
    /// MNIST, 28x28 grey.
    Mnist,
    /// Fashion-MNIST, 28x28 grey.
    FashionMnist,
    /// CIFAR-10, 32x32 colour.
    Cifar10,
}

impl DatasetKind {
    /// Every dataset, in the order used by help texts.
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::Digits,
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
    ];

    /// The canonical name, accepted by [`FromStr`] and used in dataset names and logs.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Digits => "digits",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = NasError;

    /// Case-insensitive; `_` and `-` are interchangeable and `cifar-10` is accepted, since those
    /// spellings are common in papers and other tools.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        let key = if key == "cifar-10" {
            "cifar10"
        } else {
            key.as_str()
        };
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name() == key)
            .ok_or_else(|| {
                let valid: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.name()).collect();
                NasError::config(
                    "dataset",
                    format!("unknown dataset `{s}`; valid names: {}", valid.join(", ")),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in DatasetKind::ALL {
            assert_eq!(kind.to_string().parse::<DatasetKind>().ok(), Some(kind));
        }
        assert_eq!(
            "CIFAR-10".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Cifar10)
        );
        assert_eq!(
            "fashion_mnist".parse::<DatasetKind>().ok(),
            Some(DatasetKind::FashionMnist)
        );
        let msg = "imagenet".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(msg.contains("`imagenet`"), "{msg}");
        assert!(
            msg.contains("digits, mnist, fashion-mnist, cifar10"),
            "{msg}"
        );
    }
}
