//! The UCI optical digits (8x8, values 0..16), as shipped by scikit-learn, embedded in the binary
//! so that the tool runs without any download.
//!
//! The set has no official test split. [`split_digits`] makes one with a fixed rule that does
//! not depend on any seed: within each class, in file order, every fifth image (class-local
//! positions 4, 9, 14, ...) is a test image. That is 20% per class (rounded down), stratified,
//! and identical across runs and machines, so test accuracies stay comparable.

use std::path::Path;
use std::time::Instant;

use crate::data::dataset::{Dataset, Splits};
use crate::data::source::{find_first, maybe_gunzip};
use crate::error::{NasError, Result};

/// The gzip CSV compiled into the binary.
static EMBEDDED_DIGITS: &[u8] = include_bytes!("../../data/digits.csv.gz");

const SIDE: usize = 8;
const PIXELS: usize = SIDE * SIDE;
const MAX_VALUE: u8 = 16;
const CLASSES: usize = 10;
/// One image in this many per class goes to the test split.
const TEST_EVERY: usize = 5;

/// Loads the embedded copy and splits it with the fixed rule of this module.
pub fn load_digits_embedded() -> Result<Splits> {
    let start = Instant::now();
    let all = parse_digits_csv(EMBEDDED_DIGITS, Path::new("<embedded>/digits.csv.gz"))?;
    let splits = split_digits(&all);
    tracing::info!(
        train = splits.train.len(),
        test = splits.test.len(),
        ms = start.elapsed().as_millis() as u64,
        "loaded digits from the copy embedded in the binary"
    );
    Ok(splits)
}

/// Loads `digits.csv` or `digits.csv.gz` (plain first) from `dir` and splits it like
/// [`load_digits_embedded`].
pub fn load_digits(dir: &Path) -> Result<Splits> {
    let path = find_first(
        "digits",
        &[dir.join("digits.csv"), dir.join("digits.csv.gz")],
    )?;
    let bytes = std::fs::read(&path).map_err(|e| NasError::io(&path, e))?;
    let all = parse_digits_csv(&bytes, &path)?;
    let splits = split_digits(&all);
    tracing::info!(
        path = %path.display(),
        train = splits.train.len(),
        test = splits.test.len(),
        "loaded digits"
    );
    Ok(splits)
}

/// Parses the digits CSV (plain or gzip bytes) into one dataset holding every row.
///
/// Each row is 64 pixel values in `0..=16` (8x8, row-major) and then the label in `0..=9`. A
/// first line that does not start with a number is taken as a header and skipped; blank lines
/// are ignored. `source` only names the data in error messages.
pub fn parse_digits_csv(bytes: &[u8], source: &Path) -> Result<Dataset> {
    let raw = maybe_gunzip(bytes, source)?;
    let text = std::str::from_utf8(&raw)
        .map_err(|e| NasError::format(source, format!("not UTF-8 text: {e}")))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || (index == 0 && looks_like_header(line)) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(NasError::format(
                source,
                format!(
                    "line {line_no}: expected {} comma-separated values (64 pixels then the \
                     label), found {}",
                    PIXELS + 1,
                    fields.len()
                ),
            ));
        }
        for (col, field) in fields[..PIXELS].iter().enumerate() {
            images.push(parse_value(field, MAX_VALUE, source, line_no, col + 1)?);
        }
        labels.push(parse_value(
            fields[PIXELS],
            (CLASSES - 1) as u8,
            source,
            line_no,
            PIXELS + 1,
        )?);
    }
    if labels.is_empty() {
        return Err(NasError::format(source, "no data rows"));
    }
    Ok(Dataset {
        name: "digits".to_string(),
        images,
        labels,
        channels: 1,
        height: SIDE,
        width: SIDE,
        num_classes: CLASSES,
        pixel_max: f32::from(MAX_VALUE),
    })
}

/// Splits all rows into train and test with the fixed per-class rule of this module.
pub fn split_digits(all: &Dataset) -> Splits {
    let mut seen = vec![0usize; all.num_classes];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &label) in all.labels.iter().enumerate() {
        // A hand-built dataset may carry a stray label; it has no class quota, so it trains.
        let Some(slot) = seen.get_mut(label as usize) else {
            train.push(i);
            continue;
        };
        if *slot % TEST_EVERY == TEST_EVERY - 1 {
            test.push(i);
        } else {
            train.push(i);
        }
        *slot += 1;
    }
    let named = |indices: &[usize], split: &str| Dataset {
        name: format!("digits/{split}"),
        ..all.subset(indices)
    };
    Splits {
        train: named(&train, "train"),
        test: named(&test, "test"),
    }
}

fn looks_like_header(line: &str) -> bool {
    let first = line.split(',').next().unwrap_or("").trim();
    first.parse::<f64>().is_err()
}

/// Parses an integer value in `0..=max`; `3.0`-style floats are accepted because some exports
/// of this set write every value as a float.
fn parse_value(field: &str, max: u8, source: &Path, line: usize, col: usize) -> Result<u8> {
    let field = field.trim();
    let value = field
        .parse::<u8>()
        .ok()
        .or_else(|| {
            field
                .parse::<f64>()
                .ok()
                .filter(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v))
                .map(|v| v as u8)
        })
        .filter(|&v| v <= max);
    value.ok_or_else(|| {
        NasError::format(
            source,
            format!("line {line}, column {col}: expected an integer in 0..={max}, found `{field}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pixel: u8, label: u8) -> String {
        let mut fields = vec![pixel.to_string(); PIXELS];
        fields.push(label.to_string());
        fields.join(",")
    }

    #[test]
    fn header_and_blank_lines_are_skipped() {
        let header: Vec<String> = (0..=PIXELS).map(|i| format!("c{i}")).collect();
        let floats = format!("{},0", vec!["16.0"; PIXELS].join(","));
        let csv = format!("{}\n{}\r\n\n{floats}\n", header.join(","), row(3, 7));
        let d = parse_digits_csv(csv.as_bytes(), Path::new("t.csv")).expect("valid csv");
        assert_eq!(d.labels, vec![7, 0]);
        assert_eq!(d.image(0), &[3u8; PIXELS][..]);
        assert_eq!(d.image(1), &[16u8; PIXELS][..]);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let short = format!("{}\n1,2,3\n", row(0, 1));
        let err = parse_digits_csv(short.as_bytes(), Path::new("t.csv")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2") && msg.contains("found 3"), "{msg}");

        let big = format!("{}\n{}\n", row(0, 1), row(17, 1));
        let msg = parse_digits_csv(big.as_bytes(), Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 2, column 1") && msg.contains("`17`"),
            "{msg}"
        );

        let label = row(0, 10);
        let msg = parse_digits_csv(label.as_bytes(), Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 1, column 65") && msg.contains("0..=9"),
            "{msg}"
        );

        let msg = parse_digits_csv(b"", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no data rows"), "{msg}");
    }

    #[test]
    fn split_takes_every_fifth_per_class() {
        // 12 rows of class 0 then 3 of class 1: class 0 positions 4 and 9 go to test.
        let rows: Vec<String> = (0..15)
            .map(|i| row(i as u8 % 17, u8::from(i >= 12)))
            .collect();
        let all = parse_digits_csv(rows.join("\n").as_bytes(), Path::new("t.csv")).expect("csv");
        let splits = split_digits(&all);
        assert_eq!(splits.test.len(), 2);
        assert_eq!(splits.test.image(0)[0], 4);
        assert_eq!(splits.test.image(1)[0], 9);
        assert_eq!(splits.train.len(), 13);
        assert_eq!(splits.train.class_counts()[..2], [10, 3]);
        assert_eq!(splits.test.name, "digits/test");
    }
}
