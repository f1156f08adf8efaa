//! [`Standardizer`]: per-feature standardisation, `x' = (x − mean) / std`.
//!
//! Fitted on the training rows only, then applied to every split, so that test data is
//! scaled with the training statistics. The mean and the **population** standard
//! deviation (divide by `n`, not `n − 1`) are accumulated in f64 with two passes (the
//! mean first, then the squared deviations from it), so large offsets do not cancel.
//!
//! **Constant features.** A feature whose standard deviation is below [`STD_FLOOR`]
//! (`1e-6`) gets std `1`: it is only centred, so a constant column (the always-blank
//! corner pixels of the digits) becomes exactly 0 instead of `0 / 0 = NaN`.

use lapis_ops::{LapisError, Result};

/// Standard deviations below this are replaced by 1 (see the [module docs](self)).
pub const STD_FLOOR: f64 = 1e-6;

/// Per-feature mean and standard deviation. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Standardizer {
    /// Fits the per-feature mean and population standard deviation of `x`, row-major
    /// rows of `dim` features (`x.len()` a non-zero multiple of `dim`). Standard
    /// deviations below [`STD_FLOOR`] become 1. Every value must be finite.
    pub fn fit(x: &[f32], dim: usize) -> Result<Standardizer> {
        check_len("Standardizer::fit", x.len(), dim)?;
        if x.is_empty() {
            return Err(LapisError::invalid(
                "Standardizer::fit",
                "x.len()",
                0,
                "need at least one row to fit",
            ));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(LapisError::invalid(
                "Standardizer::fit",
                "x",
                x[i],
                format!("row {}, feature {} is not finite", i / dim, i % dim),
            ));
        }
        let rows = (x.len() / dim) as f64;
        let mut mean = vec![0.0f64; dim];
        for row in x.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        for m in &mut mean {
            *m /= rows;
        }
        let mut var = vec![0.0f64; dim];
        for row in x.chunks_exact(dim) {
            for ((s, &m), &v) in var.iter_mut().zip(&mean).zip(row) {
                let d = v as f64 - m;
                *s += d * d;
            }
        }
        let std = var
            .iter()
            .map(|&s| {
                let sd = (s / rows).sqrt();
                if sd < STD_FLOOR {
                    1.0
                } else {
                    sd as f32
                }
            })
            .collect();
        Ok(Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// A standardizer from saved statistics (e.g. a checkpoint): equal lengths ≥ 1,
    /// finite means, finite positive standard deviations.
    pub fn from_parts(mean: Vec<f32>, std: Vec<f32>) -> Result<Standardizer> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(LapisError::invalid(
                "Standardizer::from_parts",
                "(mean.len(), std.len())",
                (mean.len(), std.len()),
                "need one mean and one std per feature, at least one feature",
            ));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(LapisError::invalid(
                "Standardizer::from_parts",
                "mean",
                m,
                "means must be finite",
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(LapisError::invalid(
                "Standardizer::from_parts",
                "std",
                s,
                "standard deviations must be finite and positive",
            ));
        }
        Ok(Standardizer { mean, std })
    }

    /// The number of features.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The per-feature means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The per-feature standard deviations (after the [`STD_FLOOR`] rule).
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Standardises `x` in place: `x = (x − mean) / std` per feature, for row-major rows
    /// of [`dim`](Self::dim) features (`x.len()` a multiple of `dim`; empty is fine).
    pub fn apply(&self, x: &mut [f32]) -> Result<()> {
        check_len("Standardizer::apply", x.len(), self.dim())?;
        for row in x.chunks_exact_mut(self.dim()) {
            for ((v, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = ((*v as f64 - m as f64) / s as f64) as f32;
            }
        }
        Ok(())
    }

    /// Undoes [`apply`](Self::apply) in place: `x = x · std + mean` per feature.
    pub fn inverse(&self, x: &mut [f32]) -> Result<()> {
        check_len("Standardizer::inverse", x.len(), self.dim())?;
        for row in x.chunks_exact_mut(self.dim()) {
            for ((v, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v as f64 * s as f64 + m as f64) as f32;
            }
        }
        Ok(())
    }
}

fn check_len(op: &'static str, len: usize, dim: usize) -> Result<()> {
    if dim == 0 {
        return Err(LapisError::invalid(op, "dim", dim, "must be at least 1"));
    }
    if len / dim * dim != len {
        return Err(LapisError::invalid(
            op,
            "x.len()",
            len,
            format!("must be a multiple of the feature count {dim}"),
        ));
    }
    Ok(())
}
