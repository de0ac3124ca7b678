//! Search spaces as data: every space is a fixed list of genes, each a choice among named
//! options, with an optional validity rule and a canonical key.
//!
//! Strategies never see what a gene means. They sample, mutate, enumerate neighbours and encode
//! through the functions of this module, which work on any [`Space`].

use rand::Rng;

use crate::Result;

/// One decision of a space: its name and the options it chooses among.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gene {
    /// Stable name, e.g. `edge_1_0` or `layer_3`.
    pub name: String,
    /// The options, by name; a value of the gene is an index into this list.
    pub options: Vec<String>,
}

impl Gene {
    /// A gene named `name` choosing among `options`.
    pub fn new(name: impl Into<String>, options: &[&str]) -> Self {
        Gene {
            name: name.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// An architecture: one option index per gene of its space.
pub type Arch = Vec<usize>;

/// A space of architectures.
pub trait Space: Send + Sync {
    /// Short name of the space kind (`choices`, `nb201`, `darts`, `chain`).
    fn kind(&self) -> &str;

    /// The genes, in a fixed order.
    fn genes(&self) -> &[Gene];

    /// Whether `arch` is an architecture of this space. The default accepts every combination
    /// of in-range values; spaces with rules (two distinct inputs per node) override it.
    fn is_valid(&self, arch: &[usize]) -> bool {
        in_range(self.genes(), arch)
    }

    /// The representative of the class of architectures equal to `arch` (for example with the
    /// two inputs of a node in a fixed order). Equal architectures have equal canonical forms.
    fn canonical(&self, arch: &[usize]) -> Arch {
        arch.to_vec()
    }

    /// The canonical key: a string that two equal architectures share and no two different
    /// ones do. [`Space::parse`] reads it back.
    fn key(&self, arch: &[usize]) -> String;

    /// Reads a key (or any other accepted text form) into an architecture; errors say where and
    /// what is wrong.
    fn parse(&self, text: &str) -> Result<Arch>;

    /// A human-readable description; the key unless a space has a better form.
    fn describe(&self, arch: &[usize]) -> String {
        self.key(arch)
    }

    /// The cell genotype of `arch`, for spaces whose architectures are DARTS cells and can
    /// therefore be built and trained as networks; `None` for other spaces.
    fn genotype(&self, arch: &[usize]) -> Option<crate::space::Genotype> {
        let _ = arch;
        None
    }

    /// The block choices of `arch`, for spaces whose architectures are inverted-residual
    /// chains and can be built and trained as networks; `None` for other spaces.
    fn mobile_blocks(&self, arch: &[usize]) -> Option<Vec<crate::space::mobile::BlockChoice>> {
        let _ = arch;
        None
    }
}

/// Whether `arch` has one in-range value per gene.
pub fn in_range(genes: &[Gene], arch: &[usize]) -> bool {
    arch.len() == genes.len() && arch.iter().zip(genes).all(|(&v, g)| v < g.options.len())
}

/// Draws an architecture uniformly among the valid ones (rejection sampling over uniform genes,
/// which is uniform over valid architectures and, for spaces whose equal architectures come in
/// classes of one size, over classes as well).
pub fn sample(space: &dyn Space, rng: &mut impl Rng) -> Arch {
    let genes = space.genes();
    loop {
        let arch: Arch = genes
            .iter()
            .map(|g| rng.random_range(0..g.options.len()))
            .collect();
        if space.is_valid(&arch) {
            return arch;
        }
    }
}

/// Changes exactly one gene to a different value and keeps the architecture valid. The gene is
/// drawn uniformly among those that have at least one valid different value, then the new value
/// uniformly among the valid ones. `None` when no single-gene change is valid.
pub fn mutate(space: &dyn Space, arch: &[usize], rng: &mut impl Rng) -> Option<Arch> {
    let genes = space.genes();
    let choices: Vec<(usize, Vec<usize>)> = (0..genes.len())
        .map(|i| (i, alternatives(space, arch, i)))
        .filter(|(_, values)| !values.is_empty())
        .collect();
    if choices.is_empty() {
        return None;
    }
    let (gene, values) = &choices[rng.random_range(0..choices.len())];
    let mut child = arch.to_vec();
    child[*gene] = values[rng.random_range(0..values.len())];
    Some(child)
}

/// The valid values of gene `gene` other than the current one.
fn alternatives(space: &dyn Space, arch: &[usize], gene: usize) -> Vec<usize> {
    let mut child = arch.to_vec();
    (0..space.genes()[gene].options.len())
        .filter(|&v| v != arch[gene])
        .filter(|&v| {
            child[gene] = v;
            space.is_valid(&child)
        })
        .collect()
}

/// Every valid architecture that differs from `arch` in exactly one gene, gene by gene in
/// order, values ascending.
pub fn neighbours(space: &dyn Space, arch: &[usize]) -> Vec<Arch> {
    (0..space.genes().len())
        .flat_map(|gene| {
            alternatives(space, arch, gene).into_iter().map(move |v| {
                let mut child = arch.to_vec();
                child[gene] = v;
                child
            })
        })
        .collect()
}

/// Number of entries of [`encode`]'s vector: one per option of every gene.
pub fn encoding_len(space: &dyn Space) -> usize {
    space.genes().iter().map(|g| g.options.len()).sum()
}

/// One-hot encoding of the canonical form: equal architectures encode identically.
pub fn encode(space: &dyn Space, arch: &[usize]) -> Vec<f32> {
    let canonical = space.canonical(arch);
    let mut out = vec![0.0; encoding_len(space)];
    let mut offset = 0;
    for (gene, &value) in space.genes().iter().zip(&canonical) {
        out[offset + value] = 1.0;
        offset += gene.options.len();
    }
    out
}
