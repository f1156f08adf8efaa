//! [`read_csv`]: a numeric CSV file with a header row into a [`Dataset`].
//!
//! The format: comma-separated, a header row naming every column, then one row per
//! sample with the header's number of fields. Fields are trimmed of surrounding
//! whitespace; blank lines are skipped. Every column except the label column is an f32
//! feature (anything Rust's `f32` parser accepts, e.g. `3`, `-0.5`, `1e-3`, but it must
//! be finite: `nan` and `inf` are rejected). The optional label column, chosen by its
//! header name, holds non-negative integer class labels (`3` or `3.0`, below
//! [`MAX_CLASSES`]); the class count is the largest label plus one.
//!
//! Every problem is a [`LapisError::Format`] whose `what` is the file's path and whose
//! message names the line (1-based, the header is line 1), the column (1-based, with its
//! header name) and the offending text.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use lapis_ops::{LapisError, Result};

use super::{format_error, io_error, Dataset};

/// Labels must be below this (2^20): a larger label would make the class count, and
/// every one-hot batch, absurdly large, and is almost certainly not a class label.
pub const MAX_CLASSES: usize = 1 << 20;

/// Reads the CSV file at `path` (see the [module docs](self) for the format) into a
/// [`Dataset`] named after the file's stem, with per-sample shape `[features]` and the
/// feature columns' header names. If `label` is `Some(name)`, the column with that
/// header name becomes the class labels and is not a feature.
///
/// Errors: [`LapisError::Io`] naming the path if it cannot be opened or read;
/// [`LapisError::Format`] naming the file, line and column for an empty file, a missing
/// or duplicated label column, a file with no feature columns or no data rows, a row
/// with the wrong number of fields, a field that is not a finite number, or a label
/// that is negative, fractional or too large.
pub fn read_csv(path: impl AsRef<Path>, label: Option<&str>) -> Result<Dataset> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(BufReader::new(file));

    let header = reader
        .headers()
        .map_err(|e| csv_error(path, e))?
        .iter()
        .map(str::to_owned)
        .collect::<Vec<String>>();
    if header.iter().all(String::is_empty) {
        return Err(format_error(
            path,
            "line 1: the file is empty; expected a header row naming the columns",
        ));
    }
    let ncols = header.len();

    let label_col = match label {
        None => None,
        Some(name) => {
            let hits: Vec<usize> = (0..ncols).filter(|&c| header[c] == name).collect();
            match hits.as_slice() {
                [c] => Some(*c),
                [] => {
                    return Err(format_error(
                        path,
                        format!(
                            "line 1: no label column named `{name}` in the header (columns: {})",
                            header.join(", ")
                        ),
                    ))
                }
                [a, b, ..] => {
                    return Err(format_error(
                        path,
                        format!(
                            "line 1: the label column name `{name}` appears more than once \
                             (columns {} and {})",
                            a + 1,
                            b + 1
                        ),
                    ))
                }
            }
        }
    };
    let feature_names: Vec<String> = (0..ncols)
        .filter(|&c| Some(c) != label_col)
        .map(|c| header[c].clone())
        .collect();
    if feature_names.is_empty() {
        return Err(format_error(
            path,
            "line 1: the header has no feature columns (only the label column)",
        ));
    }

    let mut features: Vec<f32> = Vec::new();
    let mut labels: Vec<u32> = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        rows += 1;
        let line = record.position().map_or(rows as u64 + 1, |p| p.line());
        if record.len() != ncols {
            return Err(format_error(
                path,
                format!(
                    "line {line} (data row {rows}): {} fields, but the header has {ncols} columns; \
                     every row needs one field per column",
                    record.len()
                ),
            ));
        }
        for (c, field) in record.iter().enumerate() {
            let at = || format!("line {line}, column {} (`{}`)", c + 1, header[c]);
            if Some(c) == label_col {
                labels.push(parse_label(field).map_err(|msg| {
                    format_error(path, format!("{}: label `{field}` {msg}", at()))
                })?);
            } else {
                match field.parse::<f32>() {
                    Ok(v) if v.is_finite() => features.push(v),
                    Ok(_) => {
                        return Err(format_error(
                            path,
                            format!("{}: `{field}` is not a finite number", at()),
                        ))
                    }
                    Err(_) => {
                        return Err(format_error(
                            path,
                            format!("{}: `{field}` is not a number", at()),
                        ))
                    }
                }
            }
        }
    }
    if rows == 0 {
        return Err(format_error(path, "line 2: no data rows after the header"));
    }

    let name = path
        .file_stem()
        .map_or_else(|| "csv".to_string(), |s| s.to_string_lossy().into_owned());
    let dim = feature_names.len();
    let ds = Dataset::new(name, &[dim], features)?.with_feature_names(feature_names)?;
    match label_col {
        None => Ok(ds),
        Some(_) => {
            let classes = labels.iter().max().map_or(1, |&m| m as usize + 1);
            ds.with_labels(labels, classes)
        }
    }
}

/// Parses a class label: a non-negative integer below [`MAX_CLASSES`] (`3` or `3.0`).
/// The error completes "label `text` ...".
fn parse_label(field: &str) -> std::result::Result<u32, String> {
    if let Ok(v) = field.parse::<u64>() {
        return if (v as u128) < MAX_CLASSES as u128 {
            Ok(v as u32)
        } else {
            Err(format!("is too large (labels must be below {MAX_CLASSES})"))
        };
    }
    let v: f64 = field
        .parse()
        .map_err(|_| "is not a number; class labels must be non-negative integers".to_string())?;
    if !v.is_finite() {
        Err("is not finite; class labels must be non-negative integers".into())
    } else if v < 0.0 {
        Err("is negative; class labels must be non-negative integers".into())
    } else if v.fract() != 0.0 {
        Err("is not an integer; class labels must be non-negative integers".into())
    } else if v >= MAX_CLASSES as f64 {
        Err(format!("is too large (labels must be below {MAX_CLASSES})"))
    } else {
        Ok(v as u32)
    }
}

/// A `csv` crate error as a lapis error naming the file: I/O failures keep their kind.
fn csv_error(path: &Path, err: csv::Error) -> LapisError {
    let msg = err.to_string();
    match err.into_kind() {
        csv::ErrorKind::Io(io) => io_error(path, io),
        _ => format_error(path, msg),
    }
}
