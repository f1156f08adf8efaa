//! The loss functions every method shares, composed from [`lapis_graph::Var`] ops so their
//! gradients come from the tape.
//!
//! Every loss returns a scalar Var of shape `[1]` (what [`Var::sum_all`] returns and
//! [`lapis_graph::backward`] accepts). Batch-first layouts: `B` is the batch (axis 0),
//! `C` the number of classes, `D` the features of one sample.
//!
//! | function | math |
//! |---|---|
//! | [`cross_entropy`] | `−(1/B) Σ_b log softmax(z_b)[y_b]` |
//! | [`cross_entropy_smoothed`] | `−(1/B) Σ_b Σ_c q_bc log softmax(z_b)_c`, `q_b = (1−ε)·onehot(y_b) + ε/C` |
//! | [`soft_cross_entropy`] | `−(1/B) Σ_b Σ_c t_bc log softmax(z_b)_c` |
//! | [`nll`] | `−(1/B) Σ_b ℓ_b[y_b]` (PyTorch's `NLLLoss`, mean) |
//! | [`mse`] | `(1/N) Σ_i (p_i − t_i)²` over all `N` elements |
//! | [`mse_sum_rows`] | `(1/B) Σ_b Σ_j (p_bj − t_bj)²` (summed per sample, averaged over the batch) |
//! | [`bce_with_logits`] | `(1/N) Σ_i max(z_i, 0) − z_i y_i + log(1 + e^{−|z_i|})` |
//! | [`gaussian_nll_diag`] | `(1/B) Σ_b ½ Σ_j [log 2π + s_bj + (x_bj − μ_bj)² e^{−s_bj}]`, `s = log σ²` |
//! | [`accuracy`] | `(1/B) #{b : argmax_c z_bc = y_b}` (host-side metric, not a Var) |
//!
//! Softmax-based losses use [`Var::log_softmax`] (max-shifted, no overflow); the binary
//! cross-entropy uses [`Var::softplus`], which computes `log(1 + e^z)` as
//! `max(z, 0) + log(1 + e^{−|z|})`, so `softplus(z) − z·y` is exactly the stable form above.
//!
//! # Validation
//!
//! Every argument is checked before anything is launched, and a problem is a typed
//! [`LapisError`] whose message names the argument: logits/predictions must be float
//! tensors of the documented rank with a non-empty batch, targets must have the
//! prediction's shape and dtype and live on its device, labels must be u32 of shape `[B]`
//! with every label `< C`. The label range check **reads the label tensor back to the
//! host** (one small synchronous download of `B` u32 values); the lapis `gather` would
//! catch an out-of-range label too, but only after `log_softmax` had been launched and
//! without naming the argument. Targets of [`soft_cross_entropy`] and
//! [`bce_with_logits`] are not read back: their values are not checked (any real weights
//! are accepted, so non-normalised or out-of-`[0, 1]` targets silently give a different
//! objective).

use std::rc::Rc;

use lapis_graph::lapis_ops::{broadcast_shape, DType, LapisError, Result, Tensor};
use lapis_graph::Var;

/// `log 2π`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

// ------------------------------------------------------------------------- validation

/// `v` holds floats.
fn check_float(op: &'static str, name: &str, dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(LapisError::DType {
            op,
            got: dtype,
            msg: format!("`{name}` must be a float tensor (f32, f16 or bf16)"),
        })
    }
}

/// `[B, C]` with `B, C ≥ 1`; returns `(B, C)`.
fn check_logits(op: &'static str, name: &str, v: &Var) -> Result<(usize, usize)> {
    check_float(op, name, v.value().dtype())?;
    match *v.shape() {
        [b, c] if b > 0 && c > 0 => Ok((b, c)),
        _ => Err(LapisError::shape(
            op,
            v.shape(),
            format!("`{name}` must be [B, C] with B ≥ 1 and C ≥ 1"),
        )),
    }
}

/// `t` lives on `v`'s device.
fn check_device(op: &'static str, v: &Var, vname: &str, t: &Tensor, tname: &str) -> Result<()> {
    if v.value().device() == t.device() {
        Ok(())
    } else {
        Err(LapisError::DeviceMismatch {
            op,
            lhs: format!("`{vname}` on {}", v.value().device().kind().name()),
            rhs: format!("`{tname}` on {}", t.device().kind().name()),
        })
    }
}

/// A target tensor: same device, shape and dtype as the prediction `v`.
fn check_target(op: &'static str, v: &Var, vname: &str, t: &Tensor, tname: &str) -> Result<()> {
    check_device(op, v, vname, t, tname)?;
    if t.shape() != v.shape() {
        return Err(LapisError::shape(
            op,
            t.shape(),
            format!(
                "`{tname}` must have the shape of `{vname}`, {:?}",
                v.shape()
            ),
        ));
    }
    if t.dtype() != v.value().dtype() {
        return Err(LapisError::DType {
            op,
            got: t.dtype(),
            msg: format!(
                "`{tname}` must have the dtype of `{vname}` ({})",
                v.value().dtype().name()
            ),
        });
    }
    Ok(())
}

/// Labels: u32 of shape `[B]` on `v`'s device, every value `< C`. Reads the labels back
/// to the host for the range check. Returns them reshaped to `[B, 1]` for `gather`.
fn check_labels(
    op: &'static str,
    v: &Var,
    vname: &str,
    labels: &Tensor,
    b: usize,
    c: usize,
) -> Result<Tensor> {
    check_device(op, v, vname, labels, "labels")?;
    if labels.dtype() != DType::U32 {
        return Err(LapisError::DType {
            op,
            got: labels.dtype(),
            msg: "`labels` must be u32 class indices".into(),
        });
    }
    if labels.shape() != [b] {
        return Err(LapisError::shape(
            op,
            labels.shape(),
            format!(
                "`labels` must be [B] = [{b}] to match `{vname}` {:?}",
                v.shape()
            ),
        ));
    }
    // The range is a deferred device check: a label ≥ C surfaces at the next read.
    lapis_ops::checks::check_index(op, "labels", labels, c)?;
    labels.reshape(&[b, 1])
}

/// `a` and `b` share a tape.
fn check_same_tape(op: &'static str, a: &Var, b: &Var, bname: &'static str) -> Result<()> {
    if Rc::ptr_eq(a.tape(), b.tape()) {
        Ok(())
    } else {
        Err(LapisError::invalid(
            op,
            bname,
            "a Var of another tape",
            "all Var arguments must share one tape",
        ))
    }
}

/// Rank ≥ 1 with a non-empty batch axis and non-empty samples; returns `(B, N)`.
fn check_batched(op: &'static str, name: &str, v: &Var) -> Result<(usize, usize)> {
    check_float(op, name, v.value().dtype())?;
    let n = v.value().numel();
    match v.shape().first() {
        Some(&b) if b > 0 && n > 0 => Ok((b, n)),
        _ => Err(LapisError::shape(
            op,
            v.shape(),
            format!("`{name}` must have rank ≥ 1 and at least one element (batch first)"),
        )),
    }
}

// ----------------------------------------------------------------------------- losses

/// Mean cross-entropy of class logits against integer labels:
/// `−(1/B) Σ_b log softmax(z_b)[y_b]`.
///
/// `logits` is `[B, C]` (float), `labels` a u32 tensor `[B]` with values `< C` (read back
/// to the host for the range check, see the module docs). Returns shape `[1]`.
pub fn cross_entropy(logits: &Var, labels: &Tensor) -> Result<Var> {
    const OP: &str = "cross_entropy";
    let (b, c) = check_logits(OP, "logits", logits)?;
    let idx = check_labels(OP, logits, "logits", labels, b, c)?;
    logits
        .log_softmax(1)?
        .gather(1, &idx)?
        .sum_all()?
        .mul_scalar(-1.0 / b as f32)
}

/// Cross-entropy with label smoothing `ε ∈ [0, 1]`: the target of sample `b` is
/// `q_b = (1−ε)·onehot(y_b) + ε/C`, so
///
/// ```text
/// loss = −(1/B) Σ_b Σ_c q_bc log p_bc = (1−ε)·CE − ε·(1/(BC)) Σ_bc log p_bc
/// ```
///
/// (`p_b = softmax(z_b)`; PyTorch's `CrossEntropyLoss(label_smoothing=ε)`). `ε = 0` is
/// [`cross_entropy`]. Arguments as there; `eps` outside `[0, 1]` or non-finite is an error.
pub fn cross_entropy_smoothed(logits: &Var, labels: &Tensor, eps: f32) -> Result<Var> {
    const OP: &str = "cross_entropy_smoothed";
    if !(0.0..=1.0).contains(&eps) {
        return Err(LapisError::invalid(OP, "eps", eps, "must lie in [0, 1]"));
    }
    let (b, c) = check_logits(OP, "logits", logits)?;
    let idx = check_labels(OP, logits, "logits", labels, b, c)?;
    let lp = logits.log_softmax(1)?;
    let hard = lp
        .gather(1, &idx)?
        .sum_all()?
        .mul_scalar(-(1.0 - eps) / b as f32)?;
    let uniform = lp.mean_all()?.mul_scalar(-eps)?;
    hard.add(&uniform)
}

/// Mean cross-entropy against soft targets (distillation, mixup):
/// `−(1/B) Σ_b Σ_c t_bc log softmax(z_b)_c`.
///
/// `logits` is `[B, C]`, `target_probs` a tensor of the same shape and dtype on the same
/// device. Rows are meant to be probability vectors but are not checked (not read back).
pub fn soft_cross_entropy(logits: &Var, target_probs: &Tensor) -> Result<Var> {
    const OP: &str = "soft_cross_entropy";
    let (b, _) = check_logits(OP, "logits", logits)?;
    check_target(OP, logits, "logits", target_probs, "target_probs")?;
    logits
        .log_softmax(1)?
        .mul(&logits.constant(target_probs.clone()))?
        .sum_all()?
        .mul_scalar(-1.0 / b as f32)
}

/// Mean negative log-likelihood of log-probabilities (PyTorch's `NLLLoss`, mean):
/// `−(1/B) Σ_b ℓ_b[y_b]`.
///
/// `log_probs` is `[B, C]` (typically a [`Var::log_softmax`] output; not checked),
/// `labels` u32 `[B]` with values `< C` (read back to the host for the range check).
pub fn nll(log_probs: &Var, labels: &Tensor) -> Result<Var> {
    const OP: &str = "nll";
    let (b, c) = check_logits(OP, "log_probs", log_probs)?;
    let idx = check_labels(OP, log_probs, "log_probs", labels, b, c)?;
    log_probs
        .gather(1, &idx)?
        .sum_all()?
        .mul_scalar(-1.0 / b as f32)
}

/// Mean squared error over all `N` elements: `(1/N) Σ_i (p_i − t_i)²`.
///
/// `target` must have `pred`'s shape (no broadcasting: a silently broadcast target is a
/// classic bug), dtype and device; `pred` must be non-empty.
pub fn mse(pred: &Var, target: &Tensor) -> Result<Var> {
    const OP: &str = "mse";
    check_batched(OP, "pred", pred)?;
    check_target(OP, pred, "pred", target, "target")?;
    let r = pred.sub(&pred.constant(target.clone()))?;
    r.mul(&r)?.mean_all()
}

/// Squared error summed over each sample and averaged over the batch (axis 0):
/// `(1/B) Σ_b Σ_j (p_bj − t_bj)²` — a Gaussian reconstruction term with unit variance, up
/// to the factor ½ and a constant. Arguments as [`mse`]; `pred` is `[B, …]`.
pub fn mse_sum_rows(pred: &Var, target: &Tensor) -> Result<Var> {
    const OP: &str = "mse_sum_rows";
    let (b, _) = check_batched(OP, "pred", pred)?;
    check_target(OP, pred, "pred", target, "target")?;
    let r = pred.sub(&pred.constant(target.clone()))?;
    r.mul(&r)?.sum_all()?.mul_scalar(1.0 / b as f32)
}

/// Mean binary cross-entropy of logits `z` against targets `y` over all `N` elements, in
/// the numerically stable form
///
/// ```text
/// loss = (1/N) Σ_i max(z_i, 0) − z_i y_i + log(1 + e^{−|z_i|})
/// ```
///
/// (equal to `−y log σ(z) − (1−y) log(1−σ(z))`; PyTorch's `BCEWithLogitsLoss`). `targets`
/// has `logits`' shape, dtype and device; values in `[0, 1]` (soft targets allowed; not
/// checked).
pub fn bce_with_logits(logits: &Var, targets: &Tensor) -> Result<Var> {
    const OP: &str = "bce_with_logits";
    check_batched(OP, "logits", logits)?;
    check_target(OP, logits, "logits", targets, "targets")?;
    let zy = logits.mul(&logits.constant(targets.clone()))?;
    logits.softplus()?.sub(&zy)?.mean_all()
}

/// Negative log-likelihood of `x` under a diagonal Gaussian `N(μ, diag(σ²))`, parametrised
/// by the log variance `s = log σ²`, summed over each sample and averaged over the batch:
///
/// ```text
/// loss = (1/B) Σ_b ½ Σ_j [log 2π + s_bj + (x_bj − μ_bj)² e^{−s_bj}]
/// ```
///
/// `mu` is `[B, …]`; `x` has `mu`'s shape, dtype and device; `log_var` has `mu`'s shape or
/// one that broadcasts to it (e.g. `[D]` for a variance shared across the batch — its
/// gradient is then summed over the broadcast axes). Both Vars must share a tape.
/// Used by the covariance methods (diagonal baseline) and Gaussian decoders.
pub fn gaussian_nll_diag(mu: &Var, log_var: &Var, x: &Tensor) -> Result<Var> {
    const OP: &str = "gaussian_nll_diag";
    let (b, n) = check_batched(OP, "mu", mu)?;
    check_same_tape(OP, mu, log_var, "log_var")?;
    check_float(OP, "log_var", log_var.value().dtype())?;
    if broadcast_shape(log_var.shape(), mu.shape()).as_deref() != Some(mu.shape()) {
        return Err(LapisError::shape(
            OP,
            log_var.shape(),
            format!(
                "`log_var` must have the shape of `mu`, {:?}, or broadcast to it",
                mu.shape()
            ),
        ));
    }
    if log_var.value().dtype() != mu.value().dtype() {
        return Err(LapisError::DType {
            op: OP,
            got: log_var.value().dtype(),
            msg: format!(
                "`log_var` must have the dtype of `mu` ({})",
                mu.value().dtype().name()
            ),
        });
    }
    if log_var.value().device() != mu.value().device() {
        return Err(LapisError::DeviceMismatch {
            op: OP,
            lhs: format!("`mu` on {}", mu.value().device().kind().name()),
            rhs: format!("`log_var` on {}", log_var.value().device().kind().name()),
        });
    }
    check_target(OP, mu, "mu", x, "x")?;
    let d = n / b; // features per sample
    let r = mu.constant(x.clone()).sub(mu)?;
    let maha = r.mul(&r)?.mul(&log_var.neg()?.exp()?)?;
    maha.add(log_var)?
        .sum_all()?
        .affine(0.5 / b as f32, (0.5 * d as f64 * LN_2PI) as f32)
}

// ---------------------------------------------------------------------------- metrics

/// Classification accuracy in `[0, 1]`: the fraction of rows whose arg-max logit is the
/// label, `(1/B) #{b : argmax_c z_bc = y_b}`.
///
/// A host-side metric, not a Var: it **reads `logits` back to the host** (one synchronous
/// download of `B·C` values) and takes the arg-max there, so ties resolve to the lowest
/// class index (as `numpy.argmax`) and a row containing NaN counts as wrong.
/// `logits` is a float `[B, C]` tensor with `B ≥ 1`; `labels.len()` must be `B` and every
/// label `< C`.
pub fn accuracy(logits: &Tensor, labels: &[u32]) -> Result<f64> {
    const OP: &str = "accuracy";
    check_float(OP, "logits", logits.dtype())?;
    let (b, c) = match *logits.shape() {
        [b, c] if b > 0 && c > 0 => (b, c),
        _ => {
            return Err(LapisError::shape(
                OP,
                logits.shape(),
                "`logits` must be [B, C] with B ≥ 1 and C ≥ 1",
            ))
        }
    };
    if labels.len() != b {
        return Err(LapisError::invalid(
            OP,
            "labels.len()",
            labels.len(),
            format!("must equal the batch size B = {b} of `logits`"),
        ));
    }
    if let Some((pos, &bad)) = labels.iter().enumerate().find(|(_, &y)| y as usize >= c) {
        return Err(LapisError::invalid(
            OP,
            "labels",
            bad,
            format!("label at position {pos} is out of range: labels must be < C = {c}"),
        ));
    }
    let z = logits.to_f32_vec()?;
    let correct = z
        .chunks_exact(c)
        .zip(labels)
        .filter(|(row, &y)| argmax_row(row) == Some(y as usize))
        .count();
    Ok(correct as f64 / b as f64)
}

/// First index of the maximum; `None` if the row holds a NaN.
fn argmax_row(row: &[f32]) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > row[best] {
            best = i;
        }
    }
    Some(best)
}
