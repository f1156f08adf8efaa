//! # lapis-tests
//!
//! Cross-crate property tests: every op of `lapis-ops` against its f64 reference
//! (`lapis_ops::reference`), on whatever device [`device`] returns (lavapipe in CI).
//!
//! Helpers here: the shared test device (opened once, its adapter printed once so the
//! log names what the kernels ran on), conversions between device tensors and
//! reference tensors, and proptest strategies for shapes that hit the edges (size 1,
//! non-powers of two, one past a 256-unit cube).

use std::sync::Once;

use lapis_ops::reference::RefTensor;
use lapis_ops::{DType, Device, Tensor};
use proptest::prelude::*;

/// The device the tests run on: `Device::auto()` (honours `LAPIS_DEVICE`).
///
/// # Panics
/// With a clear message when no device is available: the tests need one (CI installs
/// Mesa's lavapipe); they never skip silently.
pub fn device() -> Device {
    static PRINT: Once = Once::new();
    let dev = Device::auto().unwrap_or_else(|e| {
        panic!(
            "lapis tests need a compute device and none was found: {e}\n\
             On a machine without a GPU install Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`."
        )
    });
    PRINT.call_once(|| eprintln!("lapis-tests: running kernels on {}", dev.info()));
    dev
}

/// Uploads a reference tensor as f32.
pub fn upload(dev: &Device, r: &RefTensor) -> Tensor {
    let data: Vec<f32> = r.data.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(dev, &r.shape, &data).expect("upload")
}

/// Uploads a reference tensor stored as `dtype`.
pub fn upload_as(dev: &Device, r: &RefTensor, dtype: DType) -> Tensor {
    let data: Vec<f32> = r.data.iter().map(|&v| v as f32).collect();
    Tensor::from_f32(dev, &r.shape, &data, dtype).expect("upload")
}

/// Downloads a float tensor as a reference tensor.
pub fn download(t: &Tensor) -> RefTensor {
    let data = t.to_f32_vec().expect("download");
    RefTensor::new(t.shape(), data.into_iter().map(f64::from).collect())
}

/// Rounds every value to f32, so the reference sees exactly what the device sees.
pub fn as_f32(r: &RefTensor) -> RefTensor {
    RefTensor::new(&r.shape, r.data.iter().map(|&v| v as f32 as f64).collect())
}

/// Compares shapes and values, with a failure message naming index, got, want and error.
pub fn check(
    what: &str,
    got: &Tensor,
    want: &RefTensor,
    rtol: f64,
    atol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape.as_slice(), "{}: shape", what);
    let g = download(got);
    lapis_ops::reference::assert_close(&g.data, &want.data, rtol, atol)
        .map_err(|m| TestCaseError::fail(format!("{what}: {m}")))
}

/// Dimension sizes that matter: 1, small odd, powers of two and their neighbours, one
/// past a 256-unit cube.
pub fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..=9,
        1 => prop::sample::select(vec![15usize, 16, 17, 31, 32, 33, 63, 64, 65]),
        1 => prop::sample::select(vec![255usize, 256, 257, 511, 1000]),
    ]
}

/// A shape of rank 1..=`max_rank` with at most `max_numel` elements.
pub fn shape(max_rank: usize, max_numel: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), 1..=max_rank).prop_filter("too many elements", move |s| {
        s.iter().product::<usize>() <= max_numel
    })
}

/// A reference tensor of `shape` with values uniform in `[lo, hi)`.
pub fn tensor_in(shape: Vec<usize>, lo: f64, hi: f64) -> impl Strategy<Value = RefTensor> {
    let n: usize = shape.iter().product();
    prop::collection::vec(lo..hi, n).prop_map(move |d| as_f32(&RefTensor::new(&shape, d)))
}

/// A random shape and tensor with values in `[lo, hi)`.
pub fn any_tensor(
    max_rank: usize,
    max_numel: usize,
    lo: f64,
    hi: f64,
) -> impl Strategy<Value = RefTensor> {
    shape(max_rank, max_numel).prop_flat_map(move |s| tensor_in(s, lo, hi))
}

/// Number of proptest cases per property: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The typed error of a call whose bad *device data* is checked on the device
/// ([`lapis_ops::checks`]): returned by the call itself in strict mode, otherwise by the
/// next [`Device::check`] (what the next read of device data would return). Panics when
/// the call succeeded and no check failed: bad input must never pass silently.
pub fn deferred_err<T: std::fmt::Debug>(
    dev: &Device,
    r: lapis_ops::Result<T>,
) -> lapis_ops::LapisError {
    match r {
        Err(e) => e,
        Ok(v) => match dev.check() {
            Err(e) => e,
            Ok(()) => panic!("bad input passed every check; the op returned {v:?}"),
        },
    }
}
