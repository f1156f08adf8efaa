//! # lapis-kernels
//!
//! The CubeCL kernels of lapis and their launch functions, generic over the CubeCL
//! runtime (`wgpu` on any Vulkan/Metal/DX12 device, lavapipe included; `cuda` through
//! NVRTC). This crate knows nothing of tensors, autodiff or models: `lapis-ops`
//! validates every argument and then calls the launch functions here.
//!
//! Families (one module each):
//! - [`elementwise`]: unary maps `y = f(x)` and binary maps `z = f(a, b)` with
//!   numpy broadcasting through per-operand strides (stride 0 on a broadcast axis);
//! - [`layout`]: one strided-copy kernel that implements permute/transpose, slice,
//!   concat and broadcast-expand; fill, arange and dtype casts;
//! - [`softmax`]: softmax / log-softmax along an axis, max-subtracted;
//! - [`index`]: gather, index-select and a deterministic scatter-add.
//! - [`scan`]: first-order linear-recurrence scans `h_k = d_k h_{k−1} + u_k` (Laplace engine).
//! - [`sort`]: stable LSD radix argsort of f32 keys with a u32 payload.
//! - [`sort_rows`]: stable argsort of rows of ≤ 4096 keys, one cube per row (bitonic
//!   network in shared memory).
//! - [`laplace`]: the exact O(N log N) Laplace-kernel operator by sweeps, with gradients.
//! - [`covariance`]: the Laplace/OU covariance in O(d) after the sort (AR(1) factor).
//!
//! Matmul, reductions, random numbers and FFT come from `cubek`, called by `lapis-ops`.
//!
//! ## Conventions
//! - Storage element `F` is chosen at launch (`#[define(F)]`): f32, f16 or bf16 where the
//!   device supports it. Math is done in f32: values are cast in, computed, cast out.
//! - Every kernel starts with a bounds guard on `ABSOLUTE_POS`; grids come from
//!   [`elementwise_cube_count`], which spreads cubes over the grid's axes so that
//!   10^9 elements fit under wgpu's 65 535-cubes-per-axis cap.
//! - Sizes are passed as runtime `u32` values (not comptime) so one compiled shader
//!   serves every shape: on lavapipe each shader compile costs seconds.
//! - Indices are u32: one buffer holds at most `u32::MAX` elements; `lapis-ops`
//!   checks this before any launch.

pub mod checks;
pub mod complex;
pub mod covariance;
pub mod decay_scan;
pub mod elementwise;
pub mod grouped;
pub mod index;
pub mod laplace;
pub mod layout;
pub mod optim;
pub mod scan;
pub mod softmax;
pub mod softtopk;
pub mod sort;
pub mod sort_rows;

pub use cubecl;

use cubecl::prelude::*;

/// Threads per cube for 1-D elementwise launches.
pub const CUBE_SIZE: u32 = 256;

/// The cube dimension used by every 1-D elementwise launch.
pub fn elementwise_cube_dim() -> CubeDim {
    CubeDim::new_1d(CUBE_SIZE)
}

/// A grid with at least `num_elems` units of [`elementwise_cube_dim`], spread over the
/// grid's axes when one axis would exceed the device's per-axis limit.
pub fn elementwise_cube_count<R: Runtime>(
    client: &ComputeClient<R>,
    num_elems: usize,
) -> CubeCount {
    cubecl::calculate_cube_count_elemwise(client, num_elems, elementwise_cube_dim())
}
