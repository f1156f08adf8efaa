//! The fitted CEDAR map: an orthogonal basis `Q` (axes as rows) and a centre `μ`, with the
//! per-row hard top-k bottleneck, encode / decode, reconstruction error, axis naming and
//! safetensors files.

#![allow(clippy::manual_is_multiple_of)] // rust-version 1.85: no usize::is_multiple_of

use std::collections::BTreeMap;
use std::path::Path;

use lapis_graph::Var;
use lapis_ops::{self as ops, DType, Device, LapisError, Result, Tensor};

use super::linalg;

/// Rows per device chunk in [`Cedar::fvu`], [`Cedar::encode_rows`] and friends (bounds the
/// device memory of a large input).
const CHUNK: usize = 4096;

/// The `lapis.what` metadata value of a CEDAR model file.
pub const FILE_KIND: &str = "cedar";

/// A CEDAR model: `z = Q(x − μ)`, `h = z ⊙ topk_mask(|z|, k)`, `x̂ = Qᵀh + μ`.
///
/// `Q` is `d × d` orthogonal (rows = axes); with `k = d` the map is exactly invertible (up
/// to f32 rounding). Baselines are the same struct with another `Q` (identity, PCA, random
/// orthogonal).
#[derive(Clone)]
pub struct Cedar {
    dim: usize,
    /// The default sparsity (the `k` the model was fitted for).
    pub k: usize,
    q_host: Vec<f32>,
    mean_host: Vec<f32>,
    q: Tensor,
    mean: Tensor,
    /// Free-form description stored in the file (training config as JSON, or the
    /// baseline's name).
    pub info: String,
}

/// The top words of one axis (see [`Cedar::name_axes`]).
#[derive(Clone, Debug)]
pub struct AxisNames {
    /// The axis (row of `Q`).
    pub axis: usize,
    /// `(word index, signed score c_wj/‖c_w‖)`, by decreasing `|score|`.
    pub top: Vec<(usize, f32)>,
}

fn dim_err(op: &'static str, name: &'static str, shape: &[usize], d: usize) -> LapisError {
    LapisError::invalid(
        op,
        name,
        shape.to_vec(),
        format!("must be a [N, {d}] f32 tensor (N ≥ 1 rows of the model's dimension)"),
    )
}

/// The hard per-row top-k mask of `|z|` (`z` `[B, d]`): 1 at the `k` largest magnitudes
/// of each row, else 0 (ties broken by the stable sort: the later column wins). `k = d`
/// gives all ones, `k = 0` all zeros.
pub fn topk_mask(z: &Tensor, k: usize) -> Result<Tensor> {
    const OP: &str = "cedar::topk_mask";
    if z.rank() != 2 {
        return Err(LapisError::shape(OP, z.shape(), "z must be [B, d]"));
    }
    let (b, d) = (z.shape()[0], z.shape()[1]);
    if k > d {
        return Err(LapisError::invalid(
            OP,
            "k",
            k,
            format!("must be ≤ d = {d}"),
        ));
    }
    if k == d {
        return ops::ones(z.device(), &[b, d], DType::F32);
    }
    let zeros = ops::zeros(z.device(), &[b, d], DType::F32)?;
    if k == 0 {
        return Ok(zeros);
    }
    let (_, perm) = ops::argsort_rows(&ops::abs(z)?)?;
    let idx = ops::slice(&perm, 1, d - k, d)?;
    let ones = ops::ones(z.device(), &[b, k], DType::F32)?;
    ops::scatter_add(&zeros, 1, &idx, &ones)
}

/// `steps` Newton–Schulz retractions `W ← 1.5 W − 0.5 W WᵀW` on the device (matmuls only;
/// outside any tape).
pub fn newton_schulz(w: &Tensor, steps: usize) -> Result<Tensor> {
    let mut w = w.clone();
    for _ in 0..steps {
        let wtw = ops::matmul_t(&w, &w, true, false)?;
        let wwtw = ops::matmul(&w, &wtw)?;
        w = ops::sub(&ops::mul_scalar(&w, 1.5)?, &ops::mul_scalar(&wwtw, 0.5)?)?;
    }
    Ok(w)
}

/// `exp(A)` of a square Var by scaling and squaring: `A/2^s`, Taylor series of `degree`
/// by Horner's rule (`degree` matmuls), then `s` squarings — matmuls only, so the tape
/// differentiates it. With `‖A‖/2^s ≤ 1/2` and degree 10 the truncation error is below
/// `(1/2)^11/11! ≈ 1.2e-11` relative, far under f32 rounding.
pub fn expm_taylor(a: &Var, s: u32, degree: usize) -> Result<Var> {
    const OP: &str = "cedar::expm_taylor";
    let d = match a.shape() {
        [r, c] if r == c => *r,
        other => return Err(LapisError::shape(OP, other, "A must be square [d, d]")),
    };
    if degree == 0 {
        return Err(LapisError::invalid(OP, "degree", degree, "must be ≥ 1"));
    }
    let eye = a.constant(identity(a.value().device(), d)?);
    let a = a.mul_scalar(0.5f32.powi(s as i32))?;
    // Horner: T = I + A(I + A/2(I + … (I + A/degree))).
    let mut t = eye.add(&a.mul_scalar(1.0 / degree as f32)?)?;
    for j in (1..degree).rev() {
        t = eye.add(&a.matmul(&t)?.mul_scalar(1.0 / j as f32)?)?;
    }
    for _ in 0..s {
        t = t.matmul(&t)?;
    }
    Ok(t)
}

/// The squaring count for [`expm_taylor`]: the least `s ≥ 0` with `‖A‖_F / 2^s ≤ 1/2`
/// (the Frobenius norm bounds the spectral norm).
pub fn expm_squarings(frobenius: f64) -> u32 {
    let mut s = 0u32;
    while frobenius / f64::from(1u32 << s.min(30)) > 0.5 && s < 30 {
        s += 1;
    }
    s
}

/// The `d × d` identity on `dev`.
pub fn identity(dev: &Device, d: usize) -> Result<Tensor> {
    let mut v = vec![0.0f32; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    Tensor::from_slice(dev, &[d, d], &v)
}

impl Cedar {
    /// A model from a basis `q` (`d × d` row-major, rows = axes), a centre `mean` (`d`) and a
    /// default `k` (`1 ≤ k ≤ d`). Does not check orthogonality (see
    /// [`Cedar::orthogonality_error`]).
    pub fn new(dev: &Device, q: Vec<f32>, mean: Vec<f32>, k: usize) -> Result<Cedar> {
        const OP: &str = "Cedar::new";
        let d = mean.len();
        if d == 0 || q.len() != d * d {
            return Err(LapisError::invalid(
                OP,
                "q",
                q.len(),
                format!("must hold d² = {} entries for a mean of d = {d}", d * d),
            ));
        }
        if k == 0 || k > d {
            return Err(LapisError::invalid(
                OP,
                "k",
                k,
                format!("must be in 1..={d}"),
            ));
        }
        if q.iter().chain(&mean).any(|v| !v.is_finite()) {
            return Err(LapisError::invalid(
                OP,
                "q",
                "non-finite",
                "entries must be finite",
            ));
        }
        Ok(Cedar {
            dim: d,
            k,
            q: Tensor::from_slice(dev, &[d, d], &q)?,
            mean: Tensor::from_slice(dev, &[1, d], &mean)?,
            q_host: q,
            mean_host: mean,
            info: String::new(),
        })
    }

    /// A model with basis `q` given in f64 (rounded to f32).
    pub fn from_f64(dev: &Device, q: &[f64], mean: &[f64], k: usize) -> Result<Cedar> {
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Cedar::new(dev, f(q), f(mean), k)
    }

    /// The identity basis (per-row top-k of the centred coordinates).
    pub fn identity(dev: &Device, mean: &[f64], k: usize) -> Result<Cedar> {
        let d = mean.len();
        let mut q = vec![0.0f64; d * d];
        (0..d).for_each(|i| q[i * d + i] = 1.0);
        Cedar::from_f64(dev, &q, mean, k)
    }

    /// The PCA basis of `x` (`n × d`, f32): the train mean and the covariance's eigenvectors
    /// by decreasing eigenvalue (host f64 Jacobi). Also returns the eigenvalues.
    pub fn pca(dev: &Device, x: &[f32], d: usize, k: usize) -> Result<(Cedar, Vec<f64>)> {
        check_rows("Cedar::pca", x, d)?;
        let mean = linalg::column_mean(x, d);
        let cov = linalg::covariance(x, d, &mean);
        let (vals, vecs) = linalg::symmetric_eigen(&cov, d)?;
        Ok((Cedar::from_f64(dev, &vecs, &mean, k)?, vals))
    }

    /// A seeded random orthogonal basis centred at the mean of `x`.
    pub fn random(dev: &Device, x: &[f32], d: usize, k: usize, seed: u64) -> Result<Cedar> {
        check_rows("Cedar::random", x, d)?;
        let mean = linalg::column_mean(x, d);
        Cedar::from_f64(dev, &linalg::random_orthogonal(d, seed), &mean, k)
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `Q` (row-major, rows = axes).
    pub fn basis(&self) -> &[f32] {
        &self.q_host
    }

    /// `μ`.
    pub fn mean(&self) -> &[f32] {
        &self.mean_host
    }

    /// `Q` on the device.
    pub fn basis_tensor(&self) -> &Tensor {
        &self.q
    }

    /// `max |QᵀQ − I|` of the stored f32 basis (computed in f64).
    pub fn orthogonality_error(&self) -> f64 {
        let q: Vec<f64> = self.q_host.iter().map(|&v| f64::from(v)).collect();
        linalg::orthogonality_error(&q, self.dim)
    }

    fn check_input(&self, op: &'static str, x: &Tensor) -> Result<()> {
        if x.rank() != 2 || x.shape()[1] != self.dim || x.shape()[0] == 0 || x.dtype() != DType::F32
        {
            return Err(dim_err(op, "x", x.shape(), self.dim));
        }
        Ok(())
    }

    fn check_k(&self, op: &'static str, k: usize) -> Result<()> {
        if k == 0 || k > self.dim {
            return Err(LapisError::invalid(
                op,
                "k",
                k,
                format!("must be in 1..={}", self.dim),
            ));
        }
        Ok(())
    }

    /// The full code `z = Q(x − μ)` of each row of `x` (`[N, d]`), no truncation.
    pub fn code(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input("Cedar::code", x)?;
        let u = ops::sub(x, &self.mean)?;
        ops::matmul_t(&u, &self.q, false, true)
    }

    /// The sparse code `h = z ⊙ topk_mask(|z|, k)` (`[N, d]`, `k` non-zeros per row).
    pub fn encode(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        self.check_k("Cedar::encode", k)?;
        let z = self.code(x)?;
        ops::mul(&z, &topk_mask(&z, k)?)
    }

    /// `x̂ = Qᵀh + μ` for codes `h` (`[N, d]`, sparse or not).
    pub fn decode(&self, h: &Tensor) -> Result<Tensor> {
        self.check_input("Cedar::decode", h)?;
        ops::add(&ops::matmul(h, &self.q)?, &self.mean)
    }

    /// `decode(encode(x, k))`.
    pub fn reconstruct(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        self.decode(&self.encode(x, k)?)
    }

    /// [`Cedar::encode`] of host rows (`n × d`), chunked; returns the codes on the host.
    pub fn encode_rows(&self, dev: &Device, x: &[f32], k: usize) -> Result<Vec<f32>> {
        self.map_rows(dev, x, |t| self.encode(t, k))
    }

    /// [`Cedar::code`] of host rows (`n × d`), chunked; returns the codes on the host.
    pub fn code_rows(&self, dev: &Device, x: &[f32]) -> Result<Vec<f32>> {
        self.map_rows(dev, x, |t| self.code(t))
    }

    fn map_rows(
        &self,
        dev: &Device,
        x: &[f32],
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Vec<f32>> {
        check_rows("Cedar::encode_rows", x, self.dim)?;
        let d = self.dim;
        let mut out = Vec::with_capacity(x.len());
        for c in x.chunks(CHUNK * d) {
            let t = Tensor::from_slice(dev, &[c.len() / d, d], c)?;
            out.extend(f(&t)?.to_f32_vec()?);
        }
        Ok(out)
    }

    /// Fraction of variance unexplained on host rows `x` (`n × d`) with per-row top-`k`:
    /// `Σ‖x − x̂‖² / Σ‖x − x̄‖²`, `x̄` the mean of `x` itself (the §2.3 metric), computed
    /// in x-space through the decoder (two scalars read back per chunk).
    pub fn fvu(&self, dev: &Device, x: &[f32], k: usize) -> Result<f64> {
        check_rows("Cedar::fvu", x, self.dim)?;
        self.check_k("Cedar::fvu", k)?;
        let d = self.dim;
        let mean = linalg::column_mean(x, d);
        let mean_f: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
        let mean_t = Tensor::from_slice(dev, &[1, d], &mean_f)?;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for c in x.chunks(CHUNK * d) {
            let t = Tensor::from_slice(dev, &[c.len() / d, d], c)?;
            let r = ops::sub(&t, &self.reconstruct(&t, k)?)?;
            num += f64::from(ops::sum_all(&ops::mul(&r, &r)?)?.to_scalar()?);
            let c0 = ops::sub(&t, &mean_t)?;
            den += f64::from(ops::sum_all(&ops::mul(&c0, &c0)?)?.to_scalar()?);
        }
        if den <= 0.0 {
            return Err(LapisError::invalid(
                "Cedar::fvu",
                "x",
                x.len() / d,
                "has zero variance (FVU undefined)",
            ));
        }
        Ok(num / den)
    }

    /// `max_rows ‖x − x̂‖/‖x‖` with `k = d` (the exact inverse), on host rows.
    pub fn max_inverse_error(&self, dev: &Device, x: &[f32]) -> Result<f64> {
        check_rows("Cedar::max_inverse_error", x, self.dim)?;
        let d = self.dim;
        let mut worst = 0.0f64;
        for c in x.chunks(CHUNK * d) {
            let t = Tensor::from_slice(dev, &[c.len() / d, d], c)?;
            let xh = self.decode(&self.code(&t)?)?.to_f32_vec()?;
            for (row, rh) in c.chunks(d).zip(xh.chunks(d)) {
                let (mut e, mut n) = (0.0f64, 0.0f64);
                for (a, b) in row.iter().zip(rh) {
                    e += (f64::from(*a) - f64::from(*b)).powi(2);
                    n += f64::from(*a).powi(2);
                }
                if n > 0.0 {
                    worst = worst.max((e / n).sqrt());
                }
            }
        }
        Ok(worst)
    }

    /// Normalized codes of a vocabulary: row `w` is `c_w/‖c_w‖`, `c_w = Q(e_w − μ)`
    /// (`vocab` `V × d` host rows).
    pub fn vocab_scores(&self, dev: &Device, vocab: &[f32]) -> Result<Vec<f32>> {
        let mut c = self.code_rows(dev, vocab)?;
        for row in c.chunks_mut(self.dim) {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-30);
            row.iter_mut().for_each(|v| *v /= n);
        }
        Ok(c)
    }

    /// Names every axis against a vocabulary (`vocab` `V × d` host rows, the words'
    /// embeddings in the same space as the model's input): axis `j` gets the `top` words by
    /// `|c_wj|/‖c_w‖`, `c_w = Q(e_w − μ)`, each with its signed score (the sign says which
    /// end of the axis the word sits on).
    pub fn name_axes(&self, dev: &Device, vocab: &[f32], top: usize) -> Result<Vec<AxisNames>> {
        if top == 0 {
            return Err(LapisError::invalid(
                "Cedar::name_axes",
                "top",
                top,
                "must be ≥ 1",
            ));
        }
        let s = self.vocab_scores(dev, vocab)?;
        let (d, v) = (self.dim, vocab.len() / self.dim);
        Ok((0..d)
            .map(|j| {
                let mut w: Vec<(usize, f32)> = (0..v).map(|i| (i, s[i * d + j])).collect();
                w.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
                w.truncate(top);
                AxisNames { axis: j, top: w }
            })
            .collect())
    }

    /// Writes the model as safetensors: `q` `[d, d]`, `mean` `[d]`, metadata `lapis.what =
    /// cedar`, `k`, `dim` and `info`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mean = self.mean.reshape(&[self.dim])?;
        let mut meta = BTreeMap::new();
        meta.insert("lapis.what".to_string(), FILE_KIND.to_string());
        meta.insert("k".to_string(), self.k.to_string());
        meta.insert("dim".to_string(), self.dim.to_string());
        meta.insert("info".to_string(), self.info.clone());
        lapis_graph::checkpoint::save_with_metadata(path, &[("q", &self.q), ("mean", &mean)], &meta)
    }

    /// Reads a model written by [`Cedar::save`] (typed errors for another kind of file,
    /// missing tensors or inconsistent shapes).
    pub fn load(dev: &Device, path: impl AsRef<Path>) -> Result<Cedar> {
        let path = path.as_ref();
        let bad = |msg: String| LapisError::Format {
            what: path.display().to_string(),
            msg,
        };
        let (tensors, meta) = lapis_graph::checkpoint::load_with_metadata(path, dev)?;
        if meta.get("lapis.what").map(String::as_str) != Some(FILE_KIND) {
            return Err(bad(
                "not a CEDAR model (metadata `lapis.what` is not `cedar`; write one with \
                 `lapis cedar fit`)"
                    .into(),
            ));
        }
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| bad(format!("no tensor `{name}`")))
        };
        let (q, mean) = (get("q")?, get("mean")?);
        let d = mean.numel();
        if q.shape() != [d, d] || mean.rank() != 1 {
            return Err(bad(format!(
                "`q` is {:?} and `mean` {:?}; expected [d, d] and [d]",
                q.shape(),
                mean.shape()
            )));
        }
        let k: usize = meta
            .get("k")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("metadata `k` missing or not an integer".into()))?;
        let mut m = Cedar::new(dev, q.to_f32_vec()?, mean.to_f32_vec()?, k.clamp(1, d))?;
        m.info = meta.get("info").cloned().unwrap_or_default();
        Ok(m)
    }
}

/// `x.len()` is a positive multiple of `d`.
pub(crate) fn check_rows(op: &'static str, x: &[f32], d: usize) -> Result<()> {
    if d == 0 || x.is_empty() || x.len() % d != 0 {
        return Err(LapisError::invalid(
            op,
            "x",
            x.len(),
            format!("must hold N ≥ 1 rows of d = {d} values (length a positive multiple of d)"),
        ));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(LapisError::invalid(
            op,
            "x",
            "non-finite",
            "entries must be finite",
        ));
    }
    Ok(())
}
