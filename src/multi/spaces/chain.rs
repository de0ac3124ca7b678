//! A chain of layers, each choosing one operation: the simplest macro space, where an
//! architecture is a sequence such as `sep_conv_3x3-max_pool_3x3-dil_conv_5x5`.

use crate::multi::space::{Arch, Gene, Space};
use crate::space::DartsOp;
use crate::{NasError, Result};

/// `layers` genes `layer_{i}`, each choosing among the same operation names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpace {
    genes: Vec<Gene>,
}

impl ChainSpace {
    /// A chain of `layers` layers choosing among `ops`.
    ///
    /// # Errors
    /// [`NasError::Config`] when `layers` is 0, `ops` is empty, or an operation name is empty,
    /// repeated, or contains `-` or whitespace (the key joins names with `-`).
    pub fn new(layers: usize, ops: &[&str]) -> Result<Self> {
        if layers == 0 {
            return Err(NasError::config(
                "layers",
                "a chain needs at least one layer, found 0",
            ));
        }
        if ops.is_empty() {
            return Err(NasError::config(
                "ops",
                "no operations; a layer needs at least one to choose",
            ));
        }
        for (i, op) in ops.iter().enumerate() {
            if op.is_empty() || op.contains('-') || op.contains(char::is_whitespace) {
                return Err(NasError::config(
                    "ops",
                    format!(
                        "operation {i} (`{op}`) must be non-empty without `-` or spaces, since \
                         a key joins the operations with `-`"
                    ),
                ));
            }
            if ops[..i].contains(op) {
                return Err(NasError::config(
                    "ops",
                    format!("operation `{op}` is listed twice"),
                ));
            }
        }
        let genes = (0..layers)
            .map(|i| Gene::new(format!("layer_{i}"), ops))
            .collect();
        Ok(ChainSpace { genes })
    }

    /// A chain of `layers` layers choosing among the seven DARTS operations other than `none`.
    ///
    /// # Errors
    /// As [`ChainSpace::new`] (only when `layers` is 0).
    pub fn with_darts_ops(layers: usize) -> Result<Self> {
        let ops: Vec<&str> = DartsOp::ALL
            .into_iter()
            .filter(|&op| op != DartsOp::None)
            .map(DartsOp::name)
            .collect();
        Self::new(layers, &ops)
    }

    /// The number of layers.
    pub fn layers(&self) -> usize {
        self.genes.len()
    }
}

impl Space for ChainSpace {
    fn kind(&self) -> &str {
        "chain"
    }

    fn genes(&self) -> &[Gene] {
        &self.genes
    }

    fn key(&self, arch: &[usize]) -> String {
        self.genes
            .iter()
            .zip(arch)
            .map(|(g, &v)| g.options[v].as_str())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Reads `op-op-...`, one operation per layer.
    fn parse(&self, text: &str) -> Result<Arch> {
        let fail =
            |message: String| NasError::config("architecture", format!("`{text}`: {message}"));
        let parts: Vec<&str> = text.trim().split('-').map(str::trim).collect();
        if parts.len() != self.genes.len() {
            return Err(fail(format!(
                "expected {} operations joined by `-`, one per layer, found {}",
                self.genes.len(),
                parts.len()
            )));
        }
        parts
            .iter()
            .zip(&self.genes)
            .enumerate()
            .map(|(i, (part, gene))| {
                gene.options.iter().position(|o| o == part).ok_or_else(|| {
                    fail(format!(
                        "layer {i}: unknown operation `{part}` (options: {})",
                        gene.options.join(", ")
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_errors() {
        let s = ChainSpace::with_darts_ops(3).unwrap();
        assert_eq!(s.genes()[0].options.len(), 7);
        let key = s.key(&[3, 0, 6]);
        assert_eq!(key, "sep_conv_3x3-max_pool_3x3-dil_conv_5x5");
        assert_eq!(s.parse(&key).unwrap(), vec![3, 0, 6]);
        let err = s
            .parse("sep_conv_3x3-max_pool_3x3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 3 operations"), "{err}");
        let err = s
            .parse("sep_conv_3x3-none-max_pool_3x3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer 1: unknown operation `none`"), "{err}");
        assert!(ChainSpace::new(0, &["a"]).is_err());
        assert!(
            ChainSpace::new(2, &["a", "a"])
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(ChainSpace::new(2, &["a-b"]).is_err());
    }
}
