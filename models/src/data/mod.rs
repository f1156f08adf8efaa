//! # Data: datasets, files and batches shared by every lapis method
//!
//! Everything a method needs to get real data onto a device, written once:
//!
//! | item | what | module |
//! | --- | --- | --- |
//! | [`Dataset`] | samples as a flat `Vec<f32>` with a per-sample shape, optional class labels and regression targets; subsets, splits, and upload of a batch of rows as tensors | [`dataset`] |
//! | [`read_csv`] | a headed numeric CSV file (optionally with an integer class-label column) into a [`Dataset`] | [`csvfile`] |
//! | [`read_png`], [`write_png`], [`Image`] | PNG images as f32 in `[0, 1]`, channel-last, with [`Image::to_chw`] and [`Image::grid`] | [`png`] |
//! | [`Standardizer`] | per-feature mean / standard deviation, fitted on training data, applied and inverted in place | [`standardize`] |
//! | [`Batches`], [`SplitMix64`] | seeded, resumable shuffling into mini-batches (SplitMix64 + Fisher–Yates, no `rand`) | [`batches`] |
//! | [`TextEmbeddings`], [`sentence_embeddings`], [`word_embeddings`], [`Preprocess`], [`split_90_10`] | text embeddings on the host: the shipped MiniLM cache of the sparse methods and `lapis embed` files | [`embeddings`] |
//! | [`fortunes`], [`fortunes_split`], [`corpus_sentences`], [`corpus_words`] | the fortunes corpus: its fortunes, the char-LM split, sentences and vocabulary | [`text`] |
//! | [`data_path`], [`digits`], [`digits_split`], [`tabular`] | the real datasets shipped in the repository's `data/` folder | [`shipped`] |
//!
//! Every function returns [`lapis_ops::Result`]: a bad file is a
//! [`LapisError::Format`] naming the file, line and column; a bad argument is a
//! [`LapisError::InvalidArgument`]; a file that cannot be opened, read or written is a
//! [`LapisError::Io`] whose message names the path. Nothing here panics on user input.
//!
//! ```no_run
//! use lapis_models::data::{digits_split, Batches, Standardizer};
//! use lapis_ops::Device;
//!
//! let dev = Device::auto()?;
//! let (mut train, mut test) = digits_split()?;            // 1500 / 297 rows of 64 pixels
//! let st = Standardizer::fit(train.features(), train.dim())?;
//! st.apply(train.features_mut())?;
//! st.apply(test.features_mut())?;                          // test uses the train statistics
//! let batches = Batches::new(train.len(), 64, 42)?;
//! for rows in batches.epoch(0) {
//!     let x = train.features_tensor(&dev, &rows)?;          // f32 [B, 64]
//!     let y = train.one_hot(&dev, &rows)?;                  // f32 [B, 10]
//!     # let _ = (x, y);
//! }
//! # Ok::<(), lapis_ops::LapisError>(())
//! ```

pub mod batches;
pub mod csvfile;
pub mod dataset;
pub mod embeddings;
pub mod png;
pub mod shipped;
pub mod split;
pub mod standardize;
pub mod text;

pub use batches::{Batches, SplitMix64, Step, StepIter};
pub use csvfile::{read_csv, MAX_CLASSES};
pub use dataset::Dataset;
pub use embeddings::{
    read_embeddings, sentence_embeddings, split_90_10, word_embeddings, Preprocess, TextEmbeddings,
};
pub use png::{read_png, write_png, Image};
pub use shipped::{
    data_path, digits, digits_split, tabular, DIGITS_CLASSES, DIGITS_FILE, DIGITS_ROWS,
    DIGITS_TRAIN, TABULAR_NAMES,
};
pub use split::stratified_split;
pub use standardize::{Standardizer, STD_FLOOR};
pub use text::{corpus_sentences, corpus_words, fortunes, fortunes_split, split_fortunes};

use lapis_ops::LapisError;
use std::path::Path;

/// Wraps an I/O error so that its message names `path`; the
/// [`std::io::ErrorKind`] is kept, so callers can still match on e.g.
/// [`NotFound`](std::io::ErrorKind::NotFound).
pub fn io_error(path: &Path, err: std::io::Error) -> LapisError {
    LapisError::Io(std::io::Error::new(
        err.kind(),
        format!("{}: {err}", path.display()),
    ))
}

/// A [`LapisError::Format`] about the file at `path`.
pub(crate) fn format_error(path: &Path, msg: impl Into<String>) -> LapisError {
    LapisError::Format {
        what: path.display().to_string(),
        msg: msg.into(),
    }
}
