//! Table estimators: metrics looked up in a CSV file instead of trained.
//!
//! Two kinds of table:
//! - the NAS-Bench-201 export (`nats_bench_tss_200ep_test_acc.csv`): one row per cell, in
//!   benchmark index order, with the 200-epoch test accuracy on CIFAR-10, CIFAR-100 and
//!   ImageNet16-120. It has no validation accuracy, so selecting by it selects by test
//!   accuracy: an oracle setting that every report must state. The parameter and MAC counts
//!   of each cell are computed by [`Nb201Space::params`] and [`Nb201Space::macs`];
//! - a user table: one column holds architecture keys of some space (any form the space's
//!   `parse` accepts), every other column is a numeric metric.
//!
//! Lookups hash the canonical key, so an evaluation costs one key computation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::estimator::{Estimator, Evaluation};
use super::space::Space;
use super::spaces::Nb201Space;
use crate::{NasError, Result};

/// The file name of the NAS-Bench-201 export.
pub const NB201_FILE: &str = "nats_bench_tss_200ep_test_acc.csv";

/// The number of cells of NAS-Bench-201, hence of rows of its table.
pub const NB201_CELLS: usize = 15_625;

/// The column of the NAS-Bench-201 export that holds the cell string.
const NB201_ARCH_COLUMN: &str = "ArchitectureString";

/// A dataset of the NAS-Bench-201 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nb201Dataset {
    /// CIFAR-10, 10 classes.
    Cifar10,
    /// CIFAR-100, 100 classes.
    Cifar100,
    /// ImageNet16-120: ImageNet downsampled to 16x16, 120 classes.
    ImageNet16_120,
}

impl Nb201Dataset {
    /// Every dataset of the table.
    pub const ALL: [Nb201Dataset; 3] = [
        Nb201Dataset::Cifar10,
        Nb201Dataset::Cifar100,
        Nb201Dataset::ImageNet16_120,
    ];

    /// The command-line name: `cifar10`, `cifar100` or `imagenet16-120`.
    pub fn name(self) -> &'static str {
        match self {
            Nb201Dataset::Cifar10 => "cifar10",
            Nb201Dataset::Cifar100 => "cifar100",
            Nb201Dataset::ImageNet16_120 => "imagenet16-120",
        }
    }

    /// The number of classes, which sizes the classifier and so the parameter count.
    pub fn num_classes(self) -> u64 {
        match self {
            Nb201Dataset::Cifar10 => 10,
            Nb201Dataset::Cifar100 => 100,
            Nb201Dataset::ImageNet16_120 => 120,
        }
    }

    /// The side of the benchmark's images, which scales the MACs: 32 for CIFAR, 16 for
    /// ImageNet16-120.
    pub fn image_size(self) -> u64 {
        match self {
            Nb201Dataset::Cifar10 | Nb201Dataset::Cifar100 => 32,
            Nb201Dataset::ImageNet16_120 => 16,
        }
    }

    /// The column of the export holding this dataset's test accuracy (percent).
    pub fn column(self) -> &'static str {
        match self {
            Nb201Dataset::Cifar10 => "CIFAR10TestAccuracy200Epochs",
            Nb201Dataset::Cifar100 => "CIFAR100TestAccuracy200Epochs",
            Nb201Dataset::ImageNet16_120 => "ImageNetTestAccuracy200Epochs",
        }
    }
}

impl fmt::Display for Nb201Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Nb201Dataset {
    type Err = NasError;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name.trim())
            .ok_or_else(|| {
                NasError::config(
                    "dataset",
                    format!(
                        "`{name}` is not a NAS-Bench-201 dataset (valid: {})",
                        Self::ALL.map(Nb201Dataset::name).join(", ")
                    ),
                )
            })
    }
}

/// How to read a user table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// The column holding architecture keys.
    pub key_column: String,
    /// The metric to select by; the first metric column when `None`. A metric whose name
    /// contains `test` is reported as the test metric, so that selecting by it is flagged as an
    /// oracle setting.
    pub selection: Option<String>,
}

impl Default for TableOptions {
    /// Keys in column `arch`, selection by the first metric column.
    fn default() -> Self {
        TableOptions {
            key_column: "arch".into(),
            selection: None,
        }
    }
}

/// Where a table came from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Nb201(Nb201Dataset),
    User { key_column: String },
}

/// Metrics of architectures read from a table.
#[derive(Clone, Debug)]
pub struct TableEstimator {
    path: PathBuf,
    source: Source,
    /// The `kind` of the space whose keys the table holds.
    space_kind: String,
    metrics: Vec<String>,
    /// Row-major values, `metrics.len()` per row.
    values: Vec<f64>,
    /// The canonical key of every row, in file order.
    keys: Vec<String>,
    /// The file line of every row, for error messages.
    lines: Vec<usize>,
    rows: HashMap<String, usize>,
    selection: String,
    selection_is_test: bool,
}

impl TableEstimator {
    /// The NAS-Bench-201 table at `path` for `dataset`. Metrics: `test_accuracy` (percent, as in
    /// the file), `params` and `macs` (computed from the cell, MACs per image at the dataset's
    /// image size).
    ///
    /// # Errors
    /// [`NasError::Io`] when the file cannot be read; [`NasError::Format`] naming the line and
    /// column for a missing column, a row of the wrong width, a value that is not a finite
    /// number, a cell string that is malformed or not in standard form, a repeated cell, or a
    /// row count other than 15,625.
    pub fn nb201(path: &Path, dataset: Nb201Dataset) -> Result<Self> {
        let csv = Csv::read(path)?;
        let arch_column = csv.column(NB201_ARCH_COLUMN)?;
        let accuracy_column = csv.column(dataset.column())?;
        if csv.records.len() != NB201_CELLS {
            return Err(NasError::format(
                path,
                format!(
                    "expected {NB201_CELLS} data rows (one per NAS-Bench-201 cell), found {}",
                    csv.records.len()
                ),
            ));
        }

        let space = Nb201Space::new();
        let mut table = TableEstimator {
            path: path.to_path_buf(),
            source: Source::Nb201(dataset),
            space_kind: space.kind().to_string(),
            metrics: vec!["test_accuracy".into(), "params".into(), "macs".into()],
            values: Vec::with_capacity(3 * NB201_CELLS),
            keys: Vec::with_capacity(NB201_CELLS),
            lines: Vec::with_capacity(NB201_CELLS),
            rows: HashMap::with_capacity(NB201_CELLS),
            selection: "test_accuracy".into(),
            selection_is_test: true,
        };
        for (row, (line, record)) in csv.records.iter().enumerate() {
            let text = &record[arch_column];
            let at = format!("line {line} (row {row}), column `{NB201_ARCH_COLUMN}`");
            let arch = space
                .parse(text)
                .map_err(|e| NasError::format(path, format!("{at}: {e}")))?;
            let key = space.key(&arch);
            if key != *text {
                return Err(NasError::format(
                    path,
                    format!("{at}: `{text}` is not in standard form, which is `{key}`"),
                ));
            }
            let accuracy = csv.number(*line, record, accuracy_column)?;
            let cost = Nb201Space::cost(&arch, dataset.num_classes(), dataset.image_size());
            table.push(
                *line,
                key,
                &[accuracy, cost.params as f64, cost.macs as f64],
            )?;
        }
        Ok(table)
    }

    /// A user table at `path` whose key column holds architectures of `space`; every other
    /// column is a metric.
    ///
    /// # Errors
    /// [`NasError::Io`] when the file cannot be read; [`NasError::Format`] naming the line and
    /// column for a missing key column, no metric column, a row of the wrong width, a value
    /// that is not a finite number, a key `space` cannot read or that is not valid, or two rows
    /// with equal architectures; [`NasError::Config`] when `options.selection` is not a metric
    /// column.
    pub fn from_csv(path: &Path, space: &dyn Space, options: &TableOptions) -> Result<Self> {
        let csv = Csv::read(path)?;
        let key_column = csv.column(&options.key_column)?;
        let metric_columns: Vec<usize> =
            (0..csv.header.len()).filter(|&c| c != key_column).collect();
        if metric_columns.is_empty() {
            return Err(NasError::format(
                path,
                format!(
                    "no metric columns: every column besides `{}` should hold a metric",
                    options.key_column
                ),
            ));
        }
        let metrics: Vec<String> = metric_columns
            .iter()
            .map(|&c| csv.header[c].clone())
            .collect();
        let selection = match &options.selection {
            None => metrics[0].clone(),
            Some(name) if metrics.contains(name) => name.clone(),
            Some(name) => {
                return Err(NasError::config(
                    "selection metric",
                    format!(
                        "{} has no metric column `{name}` (metrics: {})",
                        path.display(),
                        metrics.join(", ")
                    ),
                ));
            }
        };

        let mut table = TableEstimator {
            path: path.to_path_buf(),
            source: Source::User {
                key_column: options.key_column.clone(),
            },
            space_kind: space.kind().to_string(),
            values: Vec::with_capacity(csv.records.len() * metrics.len()),
            keys: Vec::with_capacity(csv.records.len()),
            lines: Vec::with_capacity(csv.records.len()),
            rows: HashMap::with_capacity(csv.records.len()),
            selection_is_test: selection.contains("test"),
            selection,
            metrics,
        };
        let mut row = Vec::with_capacity(metric_columns.len());
        for (line, record) in &csv.records {
            let text = &record[key_column];
            let at = format!("line {line}, column `{}`", options.key_column);
            let arch = space
                .parse(text)
                .map_err(|e| NasError::format(path, format!("{at}: {e}")))?;
            if !space.is_valid(&arch) {
                return Err(NasError::format(
                    path,
                    format!(
                        "{at}: `{text}` is not a valid {} architecture",
                        space.kind()
                    ),
                ));
            }
            row.clear();
            for &c in &metric_columns {
                row.push(csv.number(*line, record, c)?);
            }
            table.push(*line, space.key(&arch), &row)?;
        }
        Ok(table)
    }

    /// Adds a row, refusing a key seen before.
    fn push(&mut self, line: usize, key: String, values: &[f64]) -> Result<()> {
        if let Some(&earlier) = self.rows.get(&key) {
            return Err(NasError::format(
                &self.path,
                format!(
                    "line {line}: architecture `{key}` repeats data row {earlier} (line {})",
                    self.lines[earlier]
                ),
            ));
        }
        self.rows.insert(key.clone(), self.keys.len());
        self.keys.push(key);
        self.lines.push(line);
        self.values.extend_from_slice(values);
        Ok(())
    }

    /// The file the table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of rows (architectures).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The row of `arch` of `space`: for NAS-Bench-201, the benchmark's architecture index.
    /// `None` when the table does not list it.
    pub fn index(&self, space: &dyn Space, arch: &[usize]) -> Option<usize> {
        self.index_of_key(&space.key(arch))
    }

    /// The row whose canonical key is `key`.
    pub fn index_of_key(&self, key: &str) -> Option<usize> {
        self.rows.get(key).copied()
    }

    /// The canonical key of row `index`.
    pub fn key_at(&self, index: usize) -> Option<&str> {
        self.keys.get(index).map(String::as_str)
    }

    /// The value of `metric` in row `index`.
    pub fn value(&self, index: usize, metric: &str) -> Option<f64> {
        let column = self.metrics.iter().position(|m| m == metric)?;
        self.values
            .get(index * self.metrics.len() + column)
            .copied()
    }

    /// The evaluation of row `index`.
    pub fn evaluation_at(&self, index: usize) -> Option<Evaluation> {
        let start = index.checked_mul(self.metrics.len())?;
        let row = self.values.get(start..start + self.metrics.len())?;
        Some(Evaluation {
            metrics: self
                .metrics
                .iter()
                .cloned()
                .zip(row.iter().copied())
                .collect::<BTreeMap<_, _>>(),
            epochs: 0.0,
            seconds: 0.0,
        })
    }
}

impl Estimator for TableEstimator {
    fn describe(&self) -> String {
        match &self.source {
            Source::Nb201(dataset) => format!(
                "NAS-Bench-201 table {} on {dataset}: 200-epoch test accuracy (selecting by it \
                 is an oracle setting), parameters and MACs computed from the cell",
                self.path.display()
            ),
            Source::User { key_column } => format!(
                "table {} of {} architectures (keys in column `{key_column}`), metrics {}",
                self.path.display(),
                self.space_kind,
                self.metrics.join(", ")
            ),
        }
    }

    fn metrics(&self) -> Vec<String> {
        self.metrics.clone()
    }

    /// For NAS-Bench-201, `test_accuracy`, which is the test metric: an oracle setting. For a
    /// user table, the chosen metric, flagged as a test metric when its name contains `test`.
    fn selection_metric(&self) -> (String, bool) {
        (self.selection.clone(), self.selection_is_test)
    }

    fn deterministic(&self) -> bool {
        true
    }

    fn evaluate(&self, space: &dyn Space, arch: &[usize], _seed: u64) -> Result<Evaluation> {
        if space.kind() != self.space_kind {
            return Err(NasError::config(
                "estimator",
                format!(
                    "the table {} lists {} architectures, but the search space is {}",
                    self.path.display(),
                    self.space_kind,
                    space.kind()
                ),
            ));
        }
        let key = space.key(arch);
        let index = self.index_of_key(&key).ok_or_else(|| {
            let column = match &self.source {
                Source::Nb201(_) => NB201_ARCH_COLUMN,
                Source::User { key_column } => key_column,
            };
            NasError::format(
                &self.path,
                format!(
                    "no row for architecture `{key}` (column `{column}`); a table estimator \
                     evaluates only the architectures its table lists"
                ),
            )
        })?;
        Ok(self
            .evaluation_at(index)
            .expect("every indexed row has its values"))
    }
}

/// A CSV file read whole: the header and every non-blank record with its line number (from 1).
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    records: Vec<(usize, Vec<String>)>,
}

impl Csv {
    /// Reads and splits `path`; every record must have as many fields as the header.
    fn read(path: &Path) -> Result<Csv> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((header_line, header)) = lines.next() else {
            return Err(NasError::format(
                path,
                "the file is empty; expected a header line",
            ));
        };
        let header: Vec<String> = split_record(header)
            .map_err(|e| NasError::format(path, format!("line {header_line}: {e}")))?
            .into_iter()
            .map(|h| h.trim().to_string())
            .collect();
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(NasError::format(
                    path,
                    format!("line {header_line}: column `{name}` appears twice in the header"),
                ));
            }
        }
        let mut records = Vec::new();
        for (line, text) in lines {
            let record = split_record(text)
                .map_err(|e| NasError::format(path, format!("line {line}: {e}")))?;
            if record.len() != header.len() {
                return Err(NasError::format(
                    path,
                    format!(
                        "line {line}: expected {} fields as in the header, found {}",
                        header.len(),
                        record.len()
                    ),
                ));
            }
            records.push((line, record));
        }
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            records,
        })
    }

    /// The index of column `name`, or an error listing the columns there are.
    fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            NasError::format(
                &self.path,
                format!(
                    "no column `{name}` in the header (columns: {})",
                    self.header.join(", ")
                ),
            )
        })
    }

    /// Field `column` of `record` as a finite number.
    fn number(&self, line: usize, record: &[String], column: usize) -> Result<f64> {
        let text = record[column].trim();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(NasError::format(
                &self.path,
                format!(
                    "line {line}, column `{}`: `{text}` is not a finite number",
                    self.header[column]
                ),
            )),
        }
    }
}

/// The fields of one CSV record. A field may be double-quoted (a quote inside written `""`) so
/// that it can hold commas, as architecture keys often do.
fn split_record(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(format!(
                            "field {} opens a quote it never closes",
                            fields.len() + 1
                        ));
                    }
                }
            }
            fields.push(field);
            match chars.next() {
                None => return Ok(fields),
                Some(',') => {}
                Some(c) => {
                    return Err(format!(
                        "field {}: unexpected `{c}` after the closing quote",
                        fields.len()
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(split_record("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_record(r#""x,y",1.5,"say ""hi""""#).unwrap(),
            ["x,y", "1.5", r#"say "hi""#]
        );
        assert_eq!(split_record("a,").unwrap(), ["a", ""]);
        assert!(
            split_record(r#""open,1"#)
                .unwrap_err()
                .contains("never closes")
        );
        assert!(
            split_record(r#""a"b,1"#)
                .unwrap_err()
                .contains("unexpected `b`")
        );
    }

    #[test]
    fn dataset_names() {
        for d in Nb201Dataset::ALL {
            assert_eq!(d.name().parse::<Nb201Dataset>().unwrap(), d);
        }
        let err = "imagenet".parse::<Nb201Dataset>().unwrap_err().to_string();
        assert!(err.contains("cifar10, cifar100, imagenet16-120"), "{err}");
    }
}
