//! The real datasets shipped in the repository's `data/` folder, and how they are found.
//!
//! [`data_path`] resolves a path relative to the data folder:
//!
//! 1. if the environment variable `LAPIS_DATA` is set (non-empty), `$LAPIS_DATA/rel`
//!    and nothing else (an explicit override is never silently bypassed);
//! 2. otherwise `<workspace>/data/rel`, the workspace this crate was compiled in
//!    (`CARGO_MANIFEST_DIR/../data`), then `./data/rel` under the working directory.
//!
//! A file found in none of them is a [`LapisError::Io`] of kind
//! [`NotFound`](std::io::ErrorKind::NotFound) naming every path tried.
//!
//! | function | file | samples | classes |
//! | --- | --- | --- | --- |
//! | [`digits`], [`digits_split`] | `images/digits8x8.csv` | 1797 × `[64]` (8x8 grey, values 0..16, not rescaled) | 10 |
//! | [`tabular`]`("iris")` | `tabular/iris.csv` | 150 × `[4]` | 3 |
//! | [`tabular`]`("wine")` | `tabular/wine.csv` | 178 × `[13]` | 3 |
//! | [`tabular`]`("breast_cancer")` | `tabular/breast_cancer.csv` | 569 × `[30]` | 2 |
//!
//! Provenance and licences are in `data/README.md`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lapis_ops::{LapisError, Result};

use super::{read_csv, Dataset};

/// The digits file, relative to the data folder.
pub const DIGITS_FILE: &str = "images/digits8x8.csv";
/// Rows in the digits file.
pub const DIGITS_ROWS: usize = 1797;
/// Classes of the digits (0..9).
pub const DIGITS_CLASSES: usize = 10;
/// The fixed digits split: the first 1500 rows train, the remaining 297 test.
pub const DIGITS_TRAIN: usize = 1500;
/// The tabular datasets shipped under `data/tabular/` (see [`tabular`]).
pub const TABULAR_NAMES: [&str; 3] = ["iris", "wine", "breast_cancer"];

/// The path of the data file `rel` (relative to the data folder, e.g.
/// `"images/digits8x8.csv"`), found as the [module docs](self) say.
///
/// Errors: [`LapisError::InvalidArgument`] if `rel` is empty or absolute;
/// [`LapisError::Io`] (`NotFound`) naming every path tried if no candidate is a file.
pub fn data_path(rel: &str) -> Result<PathBuf> {
    resolve(rel, std::env::var_os("LAPIS_DATA"))
}

/// [`data_path`] with the value of `LAPIS_DATA` given.
fn resolve(rel: &str, env: Option<OsString>) -> Result<PathBuf> {
    if rel.is_empty() || Path::new(rel).is_absolute() || Path::new(rel).has_root() {
        return Err(LapisError::invalid(
            "data_path",
            "rel",
            rel,
            "must be a non-empty path relative to the data folder, e.g. `images/digits8x8.csv`",
        ));
    }
    let tried: Vec<PathBuf> = match env.filter(|v| !v.is_empty()) {
        Some(dir) => vec![PathBuf::from(dir).join(rel)],
        None => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let workspace = manifest.parent().unwrap_or(manifest);
            vec![
                workspace.join("data").join(rel),
                Path::new("data").join(rel),
            ]
        }
    };
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let list = tried
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(LapisError::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "data file `{rel}` not found (tried: {list}); it ships in the repository's `data/` \
             folder: run from a clone of the repository, or set LAPIS_DATA to a copy of that folder"
        ),
    )))
}

/// The 1797 handwritten digits (8x8 grey, values 0..16 as shipped, not rescaled) from
/// `data/images/digits8x8.csv`: per-sample shape `[64]` (row-major 8x8; use
/// [`Dataset::reshape`] for `[1, 8, 8]`), labels 0..9, name `digits`.
pub fn digits() -> Result<Dataset> {
    let ds = read_csv(data_path(DIGITS_FILE)?, Some("label"))?.with_name("digits");
    if ds.dim() != 64 || ds.len() != DIGITS_ROWS {
        return Err(LapisError::Format {
            what: DIGITS_FILE.to_string(),
            msg: format!(
                "expected {DIGITS_ROWS} rows of 64 pixels, found {} rows of {}",
                ds.len(),
                ds.dim()
            ),
        });
    }
    let labels = ds.labels().unwrap_or_default().to_vec();
    ds.with_labels(labels, DIGITS_CLASSES)
}

/// The fixed digits split of `data/README.md`: the first [`DIGITS_TRAIN`] (1500) rows
/// (`digits/train`) and the remaining 297 (`digits/test`).
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    let (train, test) = digits()?.split_at(DIGITS_TRAIN)?;
    Ok((
        train.with_name("digits/train"),
        test.with_name("digits/test"),
    ))
}

/// The labelled tabular dataset `name` from `data/tabular/<name>.csv` (numeric feature
/// columns, integer class column `label`), named `name`. The repository ships
/// [`TABULAR_NAMES`]: `iris` (150 × 4, 3 classes), `wine` (178 × 13, 3 classes) and
/// `breast_cancer` (569 × 30, 2 classes); any other file of that form placed there
/// loads too.
///
/// Errors: [`LapisError::InvalidArgument`] for a name that is not made of ASCII
/// letters, digits, `_` and `-`; otherwise those of [`data_path`] and
/// [`read_csv`].
pub fn tabular(name: &str) -> Result<Dataset> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(LapisError::invalid(
            "tabular",
            "name",
            name,
            format!(
                "expected a dataset name such as {}",
                TABULAR_NAMES.join(", ")
            ),
        ));
    }
    let path = data_path(&format!("tabular/{name}.csv")).map_err(|e| match e {
        LapisError::Io(io) => LapisError::Io(std::io::Error::new(
            io.kind(),
            format!(
                "{io} (shipped tabular datasets: {})",
                TABULAR_NAMES.join(", ")
            ),
        )),
        other => other,
    })?;
    Ok(read_csv(path, Some("label"))?.with_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_is_the_only_candidate() {
        let dir = std::env::temp_dir().join("lapis-data-path-test");
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/x.csv"), "a\n1\n").unwrap();
        let p = resolve("images/x.csv", Some(dir.clone().into_os_string())).unwrap();
        assert_eq!(p, dir.join("images/x.csv"));
        let err = resolve(DIGITS_FILE, Some(dir.clone().into_os_string())).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.join(DIGITS_FILE).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("data/"), "{msg}");
    }

    #[test]
    fn workspace_default_finds_digits_and_names_all_paths_when_missing() {
        assert!(resolve(DIGITS_FILE, None).unwrap().is_file());
        let err = resolve("images/no-such-file.csv", None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(&err, LapisError::Io(io) if io.kind() == std::io::ErrorKind::NotFound));
        assert!(
            msg.contains("tried:") && msg.matches("no-such-file.csv").count() >= 3,
            "{msg}"
        );
        assert!(resolve("/etc/passwd", None).is_err());
        assert!(resolve("", None).is_err());
    }
}
