//! Grouped linear maps: each row of `x` goes through its own group's weights — the expert
//! layer of a sparse mixture of experts (SoftMoE, Zasada et al. 2026: "evaluate active
//! experts only, gather/scatter"). With `x [M, din]` (a row per (token, routing slot)),
//! weights `W [E, din, dout]`, biases `b [E, dout]`, a group `g_r` (u32) and a mask
//! `m_r` per row:
//!
//! ```text
//! y_r = x_r W[g_r] + b[g_r]   if m_r > 0,    y_r = 0 otherwise
//! ```
//!
//! so an expert costs only the rows routed to it (`M·din·dout` multiply-adds in all, where
//! a dense mixture costs `E·N·din·dout`), and nothing is read back to the host: the
//! per-group row counts stay on the device. The backward (see `lapis_kernels::grouped`)
//! gives `x̄`, `W̄`, `b̄`; the weight gradients walk each group's rows through one sort of
//! the rows by group ([`GroupOrder`], made once and shared by every grouped map over the
//! same routing). f32 only.

use lapis_kernels::grouped as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

/// Rows summed per unit of the weight-gradient kernel (under llvmpipe's loop limit).
const CHUNK: usize = 32_768;

/// The rows sorted by group (rows of no group last): built once per routing by
/// [`group_order`], used by [`grouped_linear_backward`].
#[derive(Clone, Debug)]
pub struct GroupOrder {
    /// Group key of each sorted row (`E` for rows of no group), ascending, f32 `[M]`.
    pub keys: Tensor,
    /// The sorting permutation: sorted row `s` is row `perm[s]`, u32 `[M]`.
    pub perm: Tensor,
    /// The number of groups `E`.
    pub groups: usize,
}

fn check_routing(op: &'static str, group: &Tensor, mask: &Tensor, groups: usize) -> Result<usize> {
    validate::index(op, group)?;
    validate::same_device(op, group, mask)?;
    if mask.dtype() != DType::F32 {
        return Err(LapisError::invalid(
            op,
            "mask",
            format!("{:?}", mask.dtype()),
            "must be f32",
        ));
    }
    if group.rank() != 1 || mask.shape() != group.shape() {
        return Err(LapisError::ShapeMismatch {
            op,
            lhs: group.shape().to_vec(),
            rhs: mask.shape().to_vec(),
        });
    }
    if groups == 0 || groups > (1 << 24) {
        return Err(LapisError::invalid(
            op,
            "groups",
            groups,
            "must be in 1..=2^24",
        ));
    }
    crate::checks::check_index(op, "group", group, groups)?;
    Ok(group.numel())
}

/// Sorts the rows by group (`group` u32 `[M]`, each `< groups`; rows with `mask ≤ 0`
/// belong to no group and sort last).
pub fn group_order(group: &Tensor, mask: &Tensor, groups: usize) -> Result<GroupOrder> {
    const OP: &str = "group_order";
    let m = check_routing(OP, group, mask, groups)?;
    let keys = Tensor::empty(OP, group.device(), &[m], DType::F32)?;
    launch_1d!(group.device(), m, k::group_keys_kernel, |client, R| (
        arr::<R>(group),
        arr::<R>(mask),
        arr::<R>(&keys),
        m as u32,
        groups as f32,
    ));
    let (keys, perm) = crate::sort::argsort(&keys)?;
    Ok(GroupOrder { keys, perm, groups })
}

fn check_linear(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(usize, usize, usize, usize)> {
    for (name, t) in [("x", x), ("w", w), ("b", b)] {
        if t.dtype() != DType::F32 {
            return Err(LapisError::invalid(
                op,
                name,
                format!("{:?}", t.dtype()),
                "must be f32",
            ));
        }
        validate::same_device(op, x, t)?;
    }
    match (x.shape(), w.shape(), b.shape()) {
        ([m, din], [e, din2, dout], [e2, dout2]) if din == din2 && e == e2 && dout == dout2 => {
            Ok((*m, *din, *dout, *e))
        }
        _ => Err(LapisError::shape(
            op,
            w.shape(),
            format!(
                "x {:?}, w {:?}, b {:?}: need x [M, din], w [E, din, dout], b [E, dout]",
                x.shape(),
                w.shape(),
                b.shape()
            ),
        )),
    }
}

/// `y_r = x_r W[g_r] + b[g_r]` for rows with `mask_r > 0`, else 0 (module docs):
/// `x [M, din]`, `w [E, din, dout]`, `b [E, dout]`, `group` u32 `[M]`, `mask` f32 `[M]`.
pub fn grouped_linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    group: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "grouped_linear";
    let (m, din, dout, e) = check_linear(OP, x, w, b)?;
    if check_routing(OP, group, mask, e)? != m {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: group.shape().to_vec(),
        });
    }
    let y = Tensor::empty(OP, x.device(), &[m, dout], DType::F32)?;
    launch_1d!(
        x.device(),
        m * dout,
        k::grouped_linear_kernel,
        |client, R| (
            arr::<R>(x),
            arr::<R>(w),
            arr::<R>(b),
            arr::<R>(group),
            arr::<R>(mask),
            arr::<R>(&y),
            m as u32,
            din as u32,
            dout as u32,
            e as u32,
        )
    );
    Ok(y)
}

/// The gradients of [`grouped_linear`].
pub struct GroupedLinearGrads {
    /// `x̄ [M, din]`.
    pub x: Tensor,
    /// `W̄ [E, din, dout]`.
    pub w: Tensor,
    /// `b̄ [E, dout]`.
    pub b: Tensor,
}

/// Sums the weight-gradient partials of `chunks` chunks (`[chunks, rest…]`).
fn weight_grad(
    x: &Tensor,
    gy: &Tensor,
    order: &GroupOrder,
    shape: &[usize],
    din: usize,
    bias: bool,
) -> Result<Tensor> {
    const OP: &str = "grouped_linear_backward";
    let m = gy.shape()[0];
    let dout = gy.shape()[1];
    let e = order.groups;
    let chunks = m.div_ceil(CHUNK).max(1);
    let n = chunks * e * din * dout;
    let part = Tensor::empty(OP, gy.device(), &[chunks * e * din * dout], DType::F32)?;
    launch_1d!(gy.device(), n, k::grouped_linear_dw_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(gy),
        arr::<R>(&order.keys),
        arr::<R>(&order.perm),
        arr::<R>(&part),
        m as u32,
        din as u32,
        dout as u32,
        e as u32,
        chunks as u32,
        CHUNK as u32,
        bias as u32,
    ));
    let summed = if chunks == 1 {
        part
    } else {
        crate::reduce::sum(&part.reshape(&[chunks, e * din * dout])?, 0)?
    };
    summed.reshape(shape)
}

/// The VJP of [`grouped_linear`] for `gy = ȳ [M, dout]`, with the routing's
/// [`GroupOrder`] (from [`group_order`] on the same `group` and `mask`).
pub fn grouped_linear_backward(
    gy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    group: &Tensor,
    mask: &Tensor,
    order: &GroupOrder,
) -> Result<GroupedLinearGrads> {
    const OP: &str = "grouped_linear_backward";
    let (m, din, dout, e) = (x.shape()[0], x.shape()[1], w.shape()[2], w.shape()[0]);
    if gy.shape() != [m, dout] || order.keys.shape() != [m] || order.groups != e {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: gy.shape().to_vec(),
            rhs: vec![m, dout],
        });
    }
    let gx = Tensor::empty(OP, x.device(), &[m, din], DType::F32)?;
    launch_1d!(
        x.device(),
        m * din,
        k::grouped_linear_dx_kernel,
        |client, R| (
            arr::<R>(gy),
            arr::<R>(w),
            arr::<R>(group),
            arr::<R>(mask),
            arr::<R>(&gx),
            m as u32,
            din as u32,
            dout as u32,
            e as u32,
        )
    );
    let gw = weight_grad(x, gy, order, &[e, din, dout], din, false)?;
    let gb = weight_grad(gy, gy, order, &[e, dout], 1, true)?;
    Ok(GroupedLinearGrads {
        x: gx,
        w: gw,
        b: gb,
    })
}
