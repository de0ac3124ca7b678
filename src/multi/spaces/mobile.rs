//! The inverted-residual chain of ProxylessNAS ([`crate::space::mobile`]) as a multi-trial
//! space: one gene per searchable block, its options the block's choices. Blocks fixed by the
//! space have no gene; keys still name every block (`k3e6-skip-...`).

use crate::multi::space::{Arch, Gene, Space};
use crate::space::mobile::{BlockChoice, MobileSpace};
use crate::{NasError, Result};

/// The searchable blocks of a [`MobileSpace`], one gene each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MobileChainSpace {
    space: MobileSpace,
    genes: Vec<Gene>,
    /// The block index of each gene.
    searchable: Vec<usize>,
}

impl MobileChainSpace {
    /// The genes of `space`.
    ///
    /// # Errors
    /// [`NasError::Config`] when `space` is invalid or has no searchable block.
    pub fn new(space: MobileSpace) -> Result<Self> {
        space.check()?;
        let mut genes = Vec::new();
        let mut searchable = Vec::new();
        for (b, shape) in space.blocks().iter().enumerate() {
            let choices = shape.choices();
            if choices.len() > 1 {
                let names: Vec<String> = choices.iter().map(|c| c.name()).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                genes.push(Gene::new(format!("block_{b}"), &names));
                searchable.push(b);
            }
        }
        if genes.is_empty() {
            return Err(NasError::config(
                "space",
                "no block of the space has a choice to search",
            ));
        }
        Ok(MobileChainSpace {
            space,
            genes,
            searchable,
        })
    }

    /// The underlying space.
    pub fn space(&self) -> &MobileSpace {
        &self.space
    }

    /// The choice of every block (fixed ones included) of `arch`.
    pub fn choices(&self, arch: &[usize]) -> Vec<BlockChoice> {
        let mut gene = 0;
        self.space
            .blocks()
            .iter()
            .enumerate()
            .map(|(b, shape)| {
                let choices = shape.choices();
                if self.searchable.get(gene) == Some(&b) {
                    let choice = choices[arch[gene]];
                    gene += 1;
                    choice
                } else {
                    choices[0]
                }
            })
            .collect()
    }
}

impl Space for MobileChainSpace {
    fn kind(&self) -> &str {
        "mobile"
    }

    fn genes(&self) -> &[Gene] {
        &self.genes
    }

    fn key(&self, arch: &[usize]) -> String {
        self.space.key(&self.choices(arch))
    }

    /// Reads `choice-choice-...`, one per block, fixed blocks included.
    fn parse(&self, text: &str) -> Result<Arch> {
        let choices = self.space.parse(text)?;
        let blocks = self.space.blocks();
        Ok(self
            .searchable
            .iter()
            .map(|&b| {
                let options = blocks[b].choices();
                options.iter().position(|c| *c == choices[b]).unwrap_or(0)
            })
            .collect())
    }

    fn mobile_blocks(&self, arch: &[usize]) -> Option<Vec<BlockChoice>> {
        Some(self.choices(arch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genes_are_the_searchable_blocks_and_keys_name_every_block() {
        let space = MobileChainSpace::new(MobileSpace::cifar(3, 32, 10)).unwrap();
        assert_eq!(space.genes().len(), 6);
        assert!(space.genes().iter().all(|g| g.options.len() == 7));
        let arch = vec![6, 0, 1, 5, 3, 2];
        let key = space.key(&arch);
        assert_eq!(key, "k3e6-skip-k3e6-k3e3-k3e6-k3e6-k7e6-k5e6-k3e6-k5e3");
        assert_eq!(space.parse(&key).unwrap(), arch);
    }
}
