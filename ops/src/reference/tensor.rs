//! [`RefTensor`], the dense row-major f64 tensor the references work on, and the shape
//! arithmetic they share.
//!
//! * `numel(shape) = Π_d shape[d]` (1 for the scalar shape `[]`).
//! * Contiguous row-major strides: `stride[r-1] = 1`, `stride[d] = stride[d+1] · shape[d+1]`;
//!   index `i` sits at flat offset `Σ_d i[d] · stride[d]`.
//! * numpy broadcasting of shapes `a`, `b`: align on the right, pad the shorter with
//!   leading 1s; each pair of dims must be equal or contain a 1, and the result takes the
//!   non-1 one (so `1` against `0` gives `0`).
//! * [`fill`]: `y[p] = value`; [`arange`]: `y[i] = start + i · step`.

/// Row-major dense f64 tensor.
///
/// Invariant (assumed by every reference function): `data.len()` equals the product of
/// `shape` (1 for the scalar shape `[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RefTensor {
    /// Length of each axis, outermost first; `[]` is a scalar holding one element.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<f64>,
}

impl RefTensor {
    /// A tensor of the given shape over `data` (row-major).
    ///
    /// # Panics
    ///
    /// If `data.len()` is not the product of `shape`.
    pub fn new(shape: &[usize], data: Vec<f64>) -> Self {
        let n = numel_of(shape);
        assert!(
            n == data.len(),
            "RefTensor::new: shape {shape:?} has {n} elements but data has {}",
            data.len()
        );
        RefTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A tensor of the given shape over `data` widened exactly to f64.
    ///
    /// # Panics
    ///
    /// If `data.len()` is not the product of `shape`.
    pub fn from_f32(shape: &[usize], data: &[f32]) -> Self {
        Self::new(shape, data.iter().map(|&v| f64::from(v)).collect())
    }

    /// Number of elements: the product of the shape (1 for a scalar).
    pub fn numel(&self) -> usize {
        numel_of(&self.shape)
    }

    /// Contiguous row-major strides of this tensor's shape (see [`contiguous_strides`]).
    pub fn strides(&self) -> Vec<usize> {
        contiguous_strides(&self.shape)
    }

    /// The element at multi-index `idx`.
    ///
    /// # Panics
    ///
    /// If `idx.len()` is not the rank or some `idx[d] >= shape[d]`.
    pub fn get(&self, idx: &[usize]) -> f64 {
        assert!(
            idx.len() == self.shape.len(),
            "RefTensor::get: index {idx:?} has rank {} but the shape {:?} has rank {}",
            idx.len(),
            self.shape,
            self.shape.len()
        );
        assert!(
            idx.iter().zip(&self.shape).all(|(&i, &d)| i < d),
            "RefTensor::get: index {idx:?} is out of bounds for shape {:?}",
            self.shape
        );
        self.data[ravel(idx, &self.shape)]
    }
}

/// Contiguous row-major strides of `shape`: `stride[r-1] = 1`,
/// `stride[d] = stride[d+1] · shape[d+1]`; `[]` for a scalar.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// numpy broadcasting of two shapes (align right; dims equal or one of them 1).
/// `None` if incompatible.
///
/// The result has rank `max(a.len(), b.len())`; a missing leading dim counts as 1.
/// A 1 against a 0 gives 0, as in numpy.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    // Dim `d` of the result, counting from the right, pairs `a`'s and `b`'s dims at the
    // same distance from the right (1 where a shape is too short).
    let dim_from_right = |s: &[usize], d: usize| {
        if d < s.len() {
            s[s.len() - 1 - d]
        } else {
            1
        }
    };
    let mut out = vec![0; rank];
    for d in 0..rank {
        let (x, y) = (dim_from_right(a, d), dim_from_right(b, d));
        out[rank - 1 - d] = if x == y || y == 1 {
            x
        } else if x == 1 {
            y
        } else {
            return None;
        };
    }
    Some(out)
}

/// A tensor of the given shape with every element `value`.
pub fn fill(shape: &[usize], value: f64) -> RefTensor {
    RefTensor::new(shape, vec![value; numel_of(shape)])
}

/// arange: values `start + i · step` for `i` in `0..n`, shape `[n]`.
pub fn arange(start: f64, step: f64, n: usize) -> RefTensor {
    RefTensor::new(&[n], (0..n).map(|i| start + i as f64 * step).collect())
}

/// Product of the dims of `shape` (1 for `[]`, 0 if any dim is 0).
///
/// # Panics
///
/// If the product of a shape without zero dims overflows `usize`.
pub(crate) fn numel_of(shape: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or_else(|| panic!("shape {shape:?}: element count overflows usize"))
}

/// Flat row-major offset of multi-index `idx` in `shape` (same rank, in bounds).
pub(crate) fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Multi-index of flat row-major offset `flat` in `shape` (inverse of [`ravel`]).
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    idx
}

/// Flat offset in `src_shape` of the element that numpy broadcasting maps to the
/// multi-index `out_idx` of the (broadcast) output: `src_shape` is aligned to the right
/// of `out_idx`, and along a dim of length 1 the source index is 0.
///
/// Precondition: `src_shape` broadcasts to the output shape `out_idx` indexes.
pub(crate) fn broadcast_source(out_idx: &[usize], src_shape: &[usize]) -> usize {
    let offset = out_idx.len() - src_shape.len();
    let src_idx: Vec<usize> = src_shape
        .iter()
        .enumerate()
        .map(|(d, &len)| if len == 1 { 0 } else { out_idx[offset + d] })
        .collect();
    ravel(&src_idx, src_shape)
}

/// Splits `shape` around `axis` into `(outer, len, inner)`: the product of the dims
/// before `axis`, `shape[axis]`, and the product of the dims after it. Element
/// `(o, i, n)` of that 3-d view sits at flat offset `(o · len + i) · inner + n`.
///
/// Precondition: `axis < shape.len()`.
pub(crate) fn lanes(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel_of(&shape[..axis]),
        shape[axis],
        numel_of(&shape[axis + 1..]),
    )
}

/// Asserts `axis < x.shape.len()`, naming `op` in the message.
pub(crate) fn check_axis(op: &str, shape: &[usize], axis: usize) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} is out of range for shape {shape:?} (rank {})",
        shape.len()
    );
}
