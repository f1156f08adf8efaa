//! The one error type of lapis.
//!
//! Every op validates its arguments before launching anything and returns one of these
//! variants instead of panicking. Variants are grouped by kind, as in candle's
//! `Error`: shape and dtype problems, device problems, resource limits, bad arguments,
//! and I/O / format errors for checkpoints and data files. Each names the op.

use crate::dtype::DType;

/// `Result` with [`LapisError`].
pub type Result<T> = std::result::Result<T, LapisError>;

/// Everything that can go wrong in lapis.
#[derive(Debug, thiserror::Error)]
pub enum LapisError {
    // ---- shapes -------------------------------------------------------------------
    /// Two shapes that must agree (or broadcast) do not.
    #[error("{op}: shape mismatch: lhs {lhs:?} vs rhs {rhs:?}")]
    ShapeMismatch {
        /// The op that checked.
        op: &'static str,
        /// The first shape.
        lhs: Vec<usize>,
        /// The second shape.
        rhs: Vec<usize>,
    },
    /// A shape is not what the op needs (wrong rank, wrong length, bad axis...).
    #[error("{op}: bad shape {shape:?}: {msg}")]
    Shape {
        /// The op that checked.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// What was expected.
        msg: String,
    },

    // ---- dtypes -------------------------------------------------------------------
    /// A dtype is not accepted here (mixed dtypes, or a type the device lacks).
    #[error("{op}: dtype {got:?} not supported: {msg}")]
    DType {
        /// The op that checked.
        op: &'static str,
        /// The dtype that was given.
        got: DType,
        /// What is accepted, and how to convert.
        msg: String,
    },

    // ---- devices ------------------------------------------------------------------
    /// No device of the requested kind could be opened.
    #[error("no compute device available: {msg}")]
    DeviceUnavailable {
        /// What was tried and what to install.
        msg: String,
    },
    /// Tensors on different devices were combined.
    #[error("{op}: tensors live on different devices ({lhs} vs {rhs})")]
    DeviceMismatch {
        /// The op that checked.
        op: &'static str,
        /// The first device.
        lhs: String,
        /// The second device.
        rhs: String,
    },
    /// The device reported an error while running or reading back a kernel.
    #[error("{op}: device error: {msg}")]
    Kernel {
        /// The op that was running.
        op: &'static str,
        /// The runtime's message.
        msg: String,
    },

    // ---- resources ----------------------------------------------------------------
    /// A tensor or buffer is larger than lapis or the device can address.
    #[error("{op}: size {size} of `{name}` is over the limit {limit}")]
    SizeOverLimit {
        /// The op that checked.
        op: &'static str,
        /// What is too large.
        name: &'static str,
        /// The requested size (elements or bytes, as `name` says).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The device ran out of memory.
    #[error("{op}: out of device memory ({bytes} bytes requested): {msg}")]
    OutOfMemory {
        /// The op that allocated.
        op: &'static str,
        /// Bytes requested.
        bytes: u64,
        /// The runtime's message.
        msg: String,
    },

    // ---- arguments ----------------------------------------------------------------
    /// An argument has a value the op does not accept.
    #[error("{op}: invalid argument `{name}` = {value}: {msg}")]
    InvalidArgument {
        /// The op that checked.
        op: &'static str,
        /// The argument's name.
        name: &'static str,
        /// The argument's value, printed.
        value: String,
        /// What is accepted.
        msg: String,
    },

    // ---- I/O and formats ----------------------------------------------------------
    /// Reading or writing a file failed (an I/O error with no file to name; file
    /// operations report [`LapisError::File`]).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading or writing the file at `path` failed: the message names the file and what
    /// was being done (`cannot read checkpoint /runs/a/model.safetensors: No such file or
    /// directory (os error 2)`).
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done, as a verb phrase (`read checkpoint`, `write checkpoint`).
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file or buffer is not in the expected format.
    #[error("format error in {what}: {msg}")]
    Format {
        /// What was being parsed.
        what: String,
        /// What is wrong.
        msg: String,
    },
}

impl LapisError {
    /// Shorthand for [`LapisError::InvalidArgument`].
    pub fn invalid(
        op: &'static str,
        name: &'static str,
        value: impl std::fmt::Debug,
        msg: impl Into<String>,
    ) -> Self {
        LapisError::InvalidArgument {
            op,
            name,
            value: format!("{value:?}"),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`LapisError::Shape`].
    pub fn shape(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Self {
        LapisError::Shape {
            op,
            shape: shape.to_vec(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`LapisError::File`]: `action` (a verb phrase such as
    /// `"read checkpoint"`) on `path` failed with `source`.
    pub fn file(
        action: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        LapisError::File {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`LapisError::Kernel`] from any displayable runtime error.
    pub fn kernel(op: &'static str, err: impl std::fmt::Display) -> Self {
        LapisError::Kernel {
            op,
            msg: err.to_string(),
        }
    }
}
