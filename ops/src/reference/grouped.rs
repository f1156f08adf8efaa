//! Grouped linear reference (see `lapis_ops::grouped`): `y_r = x_r W[g_r] + b[g_r]` for
//! rows with `mask_r > 0`, else 0, and its gradients, by direct loops in f64.

/// `y [M, dout]` for `x [M, din]`, `w [E, din, dout]`, `b [E, dout]`.
pub fn grouped_linear(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    group: &[u32],
    mask: &[f64],
    din: usize,
    dout: usize,
) -> Vec<f64> {
    let m = group.len();
    let mut y = vec![0.0; m * dout];
    for r in 0..m {
        if mask[r] <= 0.0 {
            continue;
        }
        let e = group[r] as usize;
        for j in 0..dout {
            let mut acc = b[e * dout + j];
            for i in 0..din {
                acc += x[r * din + i] * w[(e * din + i) * dout + j];
            }
            y[r * dout + j] = acc;
        }
    }
    y
}

/// `(x̄, W̄, b̄)` for the cotangent `gy [M, dout]`; `groups` is `E`.
#[allow(clippy::too_many_arguments)]
pub fn grouped_linear_backward(
    gy: &[f64],
    x: &[f64],
    w: &[f64],
    group: &[u32],
    mask: &[f64],
    din: usize,
    dout: usize,
    groups: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = group.len();
    let (mut gx, mut gw, mut gb) = (
        vec![0.0; m * din],
        vec![0.0; groups * din * dout],
        vec![0.0; groups * dout],
    );
    for r in 0..m {
        if mask[r] <= 0.0 {
            continue;
        }
        let e = group[r] as usize;
        for j in 0..dout {
            let g = gy[r * dout + j];
            gb[e * dout + j] += g;
            for i in 0..din {
                gx[r * din + i] += g * w[(e * din + i) * dout + j];
                gw[(e * din + i) * dout + j] += x[r * din + i] * g;
            }
        }
    }
    (gx, gw, gb)
}
