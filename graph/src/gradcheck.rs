//! A generic gradient checker: the device gradient of any graph function against central
//! finite differences of its f64 reference.
//!
//! For a graph function `f(x₁, …, x_p)` with any output shape and an f64 reference `f̂`
//! of the same function, [`check`] draws a fixed cotangent `w` (uniform in [−1, 1],
//! seeded) and compares, for every input entry,
//!
//! ```text
//! device:     ∂/∂x_ij  Σ w ⊙ f(x)           (one backward pass on the tape, f32)
//! reference:  [L(x + h e_ij) − L(x − h e_ij)] / 2h,   L(x) = Σ w ⊙ f̂(x)   (f64)
//! ```
//!
//! with `h = h₀·max(1, |x_ij|)`. The inputs are rounded to f32 first, so both sides see the
//! same numbers; the forward values are compared too. With f64 on the reference side the
//! finite difference is accurate to `O(h²)` plus `ε₆₄/h` (≈ 1e-10 at `h₀ = 1e-5`), so the
//! comparison measures the device's f32 error and nothing else — tolerances are stated
//! per test relative to the largest reference gradient entry (an entrywise relative
//! error is meaningless for entries that are 0 up to rounding).
//!
//! Functions with kinks (relu, abs, max) must be checked at inputs farther than `h` from
//! the kink; that is the test's job.

use lapis_ops::reference::RefTensor;
use lapis_ops::{Device, Result, Tensor};

use crate::var::{backward, Tape, Var};

/// Finite-difference step and cotangent seed.
#[derive(Debug, Clone, Copy)]
pub struct GradCheck {
    /// Relative step `h₀` (`h = h₀·max(1, |x|)`).
    pub h: f64,
    /// Seed of the cotangent `w`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck { h: 1e-5, seed: 7 }
    }
}

/// The comparison for one input.
#[derive(Debug, Clone)]
pub struct InputReport {
    /// The input's name.
    pub name: String,
    /// `max_j |device_j − fd_j|`.
    pub max_err: f64,
    /// `max_j |fd_j|` (the scale the error is judged against).
    pub scale: f64,
    /// Flat index of the worst entry, and its device and finite-difference values.
    pub worst: (usize, f64, f64),
}

/// What [`check`] measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// `max |f(x) − f̂(x)|` over the output.
    pub forward_err: f64,
    /// `max |f̂(x)|`.
    pub forward_scale: f64,
    /// One entry per input, in order.
    pub inputs: Vec<InputReport>,
}

/// `err ≤ tol`, false for NaN.
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

impl Report {
    /// `Ok` when the forward error and every input's gradient error are within
    /// `atol + rtol · scale`; otherwise a table of what failed.
    pub fn verify(&self, rtol: f64, atol: f64) -> std::result::Result<(), String> {
        let mut bad = Vec::new();
        if !within(self.forward_err, atol + rtol * self.forward_scale) {
            bad.push(format!(
                "forward: max err {:.3e} vs scale {:.3e}",
                self.forward_err, self.forward_scale
            ));
        }
        for r in &self.inputs {
            if !within(r.max_err, atol + rtol * r.scale) {
                bad.push(format!(
                    "∂/∂{}: max err {:.3e} vs scale {:.3e} (worst at {}: device {:.6e}, fd {:.6e})",
                    r.name, r.max_err, r.scale, r.worst.0, r.worst.1, r.worst.2
                ));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "gradient check failed (rtol {rtol:e}, atol {atol:e}):\n  {}",
                bad.join("\n  ")
            ))
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forward {:.2e}/{:.2e}",
            self.forward_err, self.forward_scale
        )?;
        for r in &self.inputs {
            write!(f, "; ∂{} {:.2e}/{:.2e}", r.name, r.max_err, r.scale)?;
        }
        Ok(())
    }
}

/// Deterministic uniform values in `[lo, hi]`, rounded to f32 (test inputs, cotangents).
pub fn uniform_f32(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            let z = crate::rng::splitmix64(&mut s);
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            (lo + (hi - lo) * u) as f32 as f64
        })
        .collect()
}

fn to_f32(r: &RefTensor) -> RefTensor {
    RefTensor::new(&r.shape, r.data.iter().map(|&v| v as f32 as f64).collect())
}

fn upload(dev: &Device, r: &RefTensor) -> Result<Tensor> {
    let data: Vec<f32> = r.data.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(dev, &r.shape, &data)
}

/// Checks the device gradients of `f` against finite differences of `reference`.
///
/// `inputs` are named f64 tensors (rounded to f32 before use); `f` receives them as
/// tracked leaves on a fresh tape and returns the output Var; `reference` receives the
/// same values in f64 and returns the output of the same shape.
pub fn check<F, R>(
    dev: &Device,
    inputs: &[(&str, RefTensor)],
    f: F,
    reference: R,
    opts: &GradCheck,
) -> Result<Report>
where
    F: Fn(&[Var]) -> Result<Var>,
    R: Fn(&[RefTensor]) -> RefTensor,
{
    let xs: Vec<RefTensor> = inputs.iter().map(|(_, r)| to_f32(r)).collect();
    // Device: one forward and one backward of Σ w ⊙ f(x).
    let tape = Tape::new();
    let leaves = xs
        .iter()
        .map(|x| Ok(tape.leaf(upload(dev, x)?)))
        .collect::<Result<Vec<Var>>>()?;
    let y = f(&leaves)?;
    let y_host: Vec<f64> = y.value().to_f32_vec()?.into_iter().map(f64::from).collect();
    let w = RefTensor::new(
        y.shape(),
        uniform_f32(y.value().numel(), opts.seed, -1.0, 1.0),
    );
    let loss = y.mul(&tape.constant(upload(dev, &w)?))?.sum_all()?;
    let grads = backward(&loss)?;
    // Reference forward.
    let y_ref = reference(&xs);
    if y_ref.shape != y.shape() {
        return Err(lapis_ops::LapisError::ShapeMismatch {
            op: "gradcheck",
            lhs: y.shape().to_vec(),
            rhs: y_ref.shape.clone(),
        });
    }
    let forward_err = y_host
        .iter()
        .zip(&y_ref.data)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0,
            |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
        );
    let forward_scale = y_ref.data.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let lossf = |xs: &[RefTensor]| -> f64 {
        reference(xs)
            .data
            .iter()
            .zip(&w.data)
            .map(|(a, b)| a * b)
            .sum()
    };
    let mut reports = Vec::new();
    for (i, (name, _)) in inputs.iter().enumerate() {
        let got: Vec<f64> = match grads.get(&leaves[i]) {
            // A VJP that returns a gradient of the wrong shape is a bug in itself (and the
            // comparison below would otherwise zip over the shorter of the two).
            Some(g) if g.shape() != xs[i].shape.as_slice() => {
                return Err(lapis_ops::LapisError::ShapeMismatch {
                    op: "gradcheck: gradient vs input",
                    lhs: g.shape().to_vec(),
                    rhs: xs[i].shape.clone(),
                });
            }
            Some(g) => g.to_f32_vec()?.into_iter().map(f64::from).collect(),
            None => vec![0.0; xs[i].numel()],
        };
        let mut xp = xs.clone();
        let mut want = Vec::with_capacity(xs[i].numel());
        for j in 0..xs[i].numel() {
            let x0 = xs[i].data[j];
            let h = opts.h * x0.abs().max(1.0);
            xp[i].data[j] = x0 + h;
            let lp = lossf(&xp);
            xp[i].data[j] = x0 - h;
            let lm = lossf(&xp);
            xp[i].data[j] = x0;
            want.push((lp - lm) / (2.0 * h));
        }
        let (mut max_err, mut worst) = (0.0f64, (0, 0.0, 0.0));
        for (j, (g, fd)) in got.iter().zip(&want).enumerate() {
            let e = (g - fd).abs();
            if e > max_err || e.is_nan() {
                max_err = if e.is_nan() { f64::INFINITY } else { e };
                worst = (j, *g, *fd);
            }
        }
        reports.push(InputReport {
            name: name.to_string(),
            max_err,
            scale: want.iter().map(|v| v.abs()).fold(0.0, f64::max),
            worst,
        });
    }
    Ok(Report {
        forward_err,
        forward_scale,
        inputs: reports,
    })
}
