//! Text embeddings on the host: the shipped MiniLM cache of the sparse methods' data and
//! the files `lapis embed` writes.
//!
//! The cache (`data/minilm/sentences.{txt,safetensors}`, `data/minilm/words.{txt,safetensors}`)
//! holds all-MiniLM-L6-v2 embeddings (384-d, unit rows) of the fortunes-corpus sentences and
//! vocabulary words of [`super::text`], computed once by lapis itself (`lapis embed`, the
//! MiniLM forward on lapis ops that the parity test checks against the original model) and
//! stored as f16 (relative rounding ≤ 2⁻¹¹ per entry), so a clone without the MiniLM
//! weights runs the sparse methods' tests and `--quick` runs. `data/minilm/make_cache.sh`
//! regenerates it.
//!
//! Preprocessing ([`Preprocess`], SoftSAE's official CLIP code, spec §2.3): subtract the
//! training mean `μ` and divide by `s = √(mean_b ‖x_b‖²)`, with `s` taken on the raw
//! training rows (before centering).

use std::path::Path;

use lapis_ops::{LapisError, Result};
use safetensors::{Dtype, SafeTensors};

use super::batches::SplitMix64;
use super::shipped::data_path;
use crate::minilm::Tokenizer;

/// Texts with their embeddings, on the host.
#[derive(Clone, Debug)]
pub struct TextEmbeddings {
    /// The texts, one per row.
    pub texts: Vec<String>,
    /// Embeddings, `len × dim` row-major.
    pub x: Vec<f32>,
    /// Embedding width.
    pub dim: usize,
    /// MiniLM word-pieces per text, without `[CLS]`/`[SEP]`.
    pub pieces: Vec<u32>,
    /// Whitespace-separated words per text.
    pub words: Vec<u32>,
}

impl TextEmbeddings {
    /// Rows.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Row `i` (panics when `i ≥ len`, like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows `idx`, in that order (panics on an index ≥ len, like slice indexing).
    pub fn subset(&self, idx: &[usize]) -> TextEmbeddings {
        TextEmbeddings {
            texts: idx.iter().map(|&i| self.texts[i].clone()).collect(),
            x: idx
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            dim: self.dim,
            pieces: idx.iter().map(|&i| self.pieces[i]).collect(),
            words: idx.iter().map(|&i| self.words[i]).collect(),
        }
    }

    /// Reads `texts` (one per non-empty line) and the `embeddings` tensor (f32 or f16,
    /// `[N, d]`) of `emb` (as `lapis embed` writes it); word-pieces are counted with
    /// MiniLM's tokenizer (the shipped `data/minilm/tokenizer.json`).
    pub fn from_files(texts: &Path, emb: &Path) -> Result<TextEmbeddings> {
        let t = std::fs::read_to_string(texts).map_err(|e| super::io_error(texts, e))?;
        let texts_v: Vec<String> = t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let (x, rows, dim) = read_embeddings(emb)?;
        if rows != texts_v.len() {
            return Err(super::format_error(
                emb,
                format!(
                    "has {rows} embeddings but {} has {} texts",
                    texts.display(),
                    texts_v.len()
                ),
            ));
        }
        let tok = Tokenizer::load(&data_path("minilm/tokenizer.json")?)?;
        let pieces = texts_v
            .iter()
            .map(|s| Ok(tok.encode(s)?.len().saturating_sub(2) as u32))
            .collect::<Result<Vec<_>>>()?;
        let words = texts_v
            .iter()
            .map(|s| s.split_whitespace().count() as u32)
            .collect();
        Ok(TextEmbeddings {
            texts: texts_v,
            x,
            dim,
            pieces,
            words,
        })
    }
}

/// The `embeddings` tensor of a safetensors file (f32 or f16, `[N, d]`) as f32 on the host:
/// `(values, N, d)`. Non-finite values are an error naming the file.
pub fn read_embeddings(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).map_err(|e| super::io_error(path, e))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| super::format_error(path, e.to_string()))?;
    let t = st.tensor("embeddings").map_err(|_| {
        super::format_error(
            path,
            "has no tensor `embeddings` (write one with `lapis embed`)",
        )
    })?;
    let (rows, dim) = match t.shape() {
        [r, d] if *r > 0 && *d > 0 => (*r, *d),
        s => {
            return Err(super::format_error(
                path,
                format!("`embeddings` has shape {s:?}; expected [N, d] with N, d ≥ 1"),
            ))
        }
    };
    let data = t.data();
    let x: Vec<f32> = match t.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        d => {
            return Err(super::format_error(
                path,
                format!("`embeddings` is {d:?}; expected F32 or F16"),
            ))
        }
    };
    if x.len() != rows * dim {
        return Err(super::format_error(path, "`embeddings` data is truncated"));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(super::format_error(
            path,
            format!("`embeddings` has a non-finite value at row {}", i / dim),
        ));
    }
    Ok((x, rows, dim))
}

/// The shipped sentence cache: MiniLM embeddings of the corpus sentences
/// (`data/minilm/sentences.*`).
pub fn sentence_embeddings() -> Result<TextEmbeddings> {
    TextEmbeddings::from_files(
        &data_path("minilm/sentences.txt")?,
        &data_path("minilm/sentences.safetensors")?,
    )
}

/// The shipped vocabulary cache: MiniLM embeddings of the corpus words
/// (`data/minilm/words.*`).
pub fn word_embeddings() -> Result<TextEmbeddings> {
    TextEmbeddings::from_files(
        &data_path("minilm/words.txt")?,
        &data_path("minilm/words.safetensors")?,
    )
}

/// A seeded 90/10 split of `0..n`: `(train, held_out)`, each sorted; `held_out` has
/// `⌈n/10⌉` rows.
pub fn split_90_10(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut idx);
    let n_test = n.div_ceil(10);
    let mut test = idx[..n_test].to_vec();
    let mut train = idx[n_test..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

/// SoftSAE's input normalisation (module docs): `x ← (x − μ) / s`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Training mean `μ`.
    pub mean: Vec<f32>,
    /// `s = √(mean ‖x‖²)` of the raw training rows.
    pub scale: f32,
}

impl Preprocess {
    /// Fits `μ` and `s` on `x` (`N × dim`, row-major, N ≥ 1), in f64.
    // `usize::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    pub fn fit(x: &[f32], dim: usize) -> Result<Preprocess> {
        if dim == 0 || x.is_empty() || x.len() % dim != 0 {
            return Err(LapisError::invalid(
                "Preprocess::fit",
                "x",
                format!("{} values, dim {dim}", x.len()),
                "needs ≥ 1 row of `dim` values",
            ));
        }
        let n = x.len() / dim;
        let mut mean = vec![0f64; dim];
        let mut sq = 0f64;
        for r in x.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
                sq += (v as f64) * (v as f64);
            }
        }
        let scale = (sq / n as f64).sqrt();
        if !(scale.is_finite() && scale > 0.0) {
            return Err(LapisError::invalid(
                "Preprocess::fit",
                "x",
                format!("mean squared norm {}", sq / n as f64),
                "must be finite and > 0",
            ));
        }
        Ok(Preprocess {
            mean: mean.iter().map(|m| (m / n as f64) as f32).collect(),
            scale: scale as f32,
        })
    }

    /// Applies `x ← (x − μ)/s` to every row of `x` in place.
    pub fn apply(&self, x: &mut [f32]) {
        for r in x.chunks_exact_mut(self.mean.len()) {
            for (v, m) in r.iter_mut().zip(&self.mean) {
                *v = (*v - m) / self.scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_and_covers() {
        let (a, b) = split_90_10(101, 3);
        assert_eq!(b.len(), 11);
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(split_90_10(101, 3), (a, b), "seeded");
    }

    #[test]
    fn preprocess_centers_and_scales() {
        // rows (3, 4) and (-3, -4) + 1: mean (1, 1) after the shift… use exact numbers.
        let x = [4.0f32, 5.0, -2.0, -3.0];
        let p = Preprocess::fit(&x, 2).unwrap();
        assert_eq!(p.mean, vec![1.0, 1.0]);
        let s = ((16.0 + 25.0 + 4.0 + 9.0) / 2.0f64).sqrt() as f32;
        assert!((p.scale - s).abs() < 1e-6);
        let mut y = x;
        p.apply(&mut y);
        assert!((y[0] - 3.0 / s).abs() < 1e-6 && (y[3] + 4.0 / s).abs() < 1e-6);
        assert!(Preprocess::fit(&[0.0; 4], 2).is_err());
        assert!(Preprocess::fit(&[1.0; 3], 2).is_err());
    }
}
