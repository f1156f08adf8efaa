//! [`Tensor`]: a contiguous, row-major buffer on a [`Device`], with a shape and a dtype.
//!
//! lapis's tensor is not generic over the runtime (candle's choice, not Burn's): the
//! [`Device`] enum holds the runtime client (one variant per compiled runtime: this is the
//! storage enum), and every op dispatches once, with [`dispatch!`](crate::dispatch), to
//! the generic kernel launch. Models and graph code never carry a runtime type parameter.
//!
//! Layout is always contiguous row-major: view ops that need another layout
//! (permute, transpose, slice) materialise a copy; `reshape` is free. Host transfer goes
//! through `bytemuck`; f16/bf16 through `half`.

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{LapisError, Result};

/// Dispatches once on a [`Device`]: binds `$client` to the runtime's
/// `&ComputeClient<$R>` and the type alias `$R` to the runtime, then evaluates `$body`.
#[macro_export]
macro_rules! dispatch {
    ($device:expr, |$client:ident, $R:ident| $body:expr) => {
        match $device {
            #[cfg(feature = "wgpu")]
            $crate::Device::Wgpu(ctx) => {
                #[allow(dead_code)]
                type $R = $crate::cubecl::wgpu::WgpuRuntime;
                let $client = &ctx.client;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::Device::Cuda(ctx) => {
                #[allow(dead_code)]
                type $R = $crate::cubecl::cuda::CudaRuntime;
                let $client = &ctx.client;
                $body
            }
        }
    };
}

/// Launches a 1-D elementwise kernel over `n` units on a [`Device`]:
/// `launch_1d!(device, n, kernel_module::kernel_fn, |client, R| (args...))` dispatches once,
/// builds the grid with `lapis_kernels::elementwise_cube_count` and passes `args` after
/// the client, grid and cube dim. `client` and `R` are bound for use inside `args`.
#[macro_export]
macro_rules! launch_1d {
    ($device:expr, $n:expr, $($kernel:ident)::+, |$client:ident, $R:ident| ($($arg:expr),* $(,)?)) => {{
        $crate::counters::count_launch($device);
        let __t0 = $crate::counters::profile_start($device);
        let __res = $crate::dispatch!($device, |$client, $R| $($kernel)::+::launch::<$R>(
            $client,
            $crate::lapis_kernels::elementwise_cube_count($client, $n),
            $crate::lapis_kernels::elementwise_cube_dim(),
            $($arg),*
        ));
        $crate::counters::profile_end($device, stringify!($($kernel)::+), __t0);
        __res
    }};
}

/// A dense tensor on a device. Cheap to clone (the buffer is reference-counted).
#[derive(Clone)]
pub struct Tensor {
    device: Device,
    handle: Handle,
    shape: Vec<usize>,
    dtype: DType,
    /// Counts the buffer's bytes as live until the last tensor sharing it drops.
    live: std::sync::Arc<crate::counters::LiveBuffer>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {})",
            self.shape,
            self.dtype.name(),
            self.device.kind().name()
        )
    }
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Checks that `shape` describes a non-empty tensor lapis can address (every dim ≥ 1,
/// at most `u32::MAX` elements) and returns its element count.
pub fn check_shape(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Err(LapisError::shape(
            op,
            shape,
            "every dimension must be at least 1 (empty tensors are not supported)",
        ));
    }
    let mut n: u64 = 1;
    for &d in shape {
        n = n.saturating_mul(d as u64);
    }
    if n > u32::MAX as u64 {
        return Err(LapisError::SizeOverLimit {
            op,
            name: "elements",
            size: n,
            limit: u32::MAX as u64,
        });
    }
    Ok(n as usize)
}

impl Tensor {
    /// Wraps an existing device buffer. `handle` must hold `Π shape` elements of `dtype`.
    pub(crate) fn from_parts(
        device: Device,
        handle: Handle,
        shape: Vec<usize>,
        dtype: DType,
        live: std::sync::Arc<crate::counters::LiveBuffer>,
    ) -> Self {
        Tensor {
            device,
            handle,
            shape,
            dtype,
            live,
        }
    }

    /// Allocates an uninitialised tensor after checking shape, size and dtype support.
    pub(crate) fn empty(
        op: &'static str,
        device: &Device,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let n = check_shape(op, shape)?;
        check_dtype_supported(op, device, dtype)?;
        let bytes = (n * dtype.size()) as u64;
        if bytes > device.info().max_buffer_bytes {
            return Err(LapisError::SizeOverLimit {
                op,
                name: "buffer bytes",
                size: bytes,
                limit: device.info().max_buffer_bytes,
            });
        }
        let handle = alloc(op, bytes, || {
            dispatch!(device, |client, R| client.empty(bytes as usize))
        })?;
        Ok(Tensor::from_parts(
            device.clone(),
            handle,
            shape.to_vec(),
            dtype,
            crate::counters::track_alloc(device, bytes),
        ))
    }

    /// Uploads `data` (row-major, `Π shape` elements) as a tensor of `T`'s dtype.
    pub fn from_slice<T: Element>(device: &Device, shape: &[usize], data: &[T]) -> Result<Tensor> {
        let n = check_shape("from_slice", shape)?;
        if data.len() != n {
            return Err(LapisError::invalid(
                "from_slice",
                "data.len()",
                data.len(),
                format!("shape {shape:?} needs {n} elements"),
            ));
        }
        check_dtype_supported("from_slice", device, T::DTYPE)?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > device.info().max_buffer_bytes {
            return Err(LapisError::SizeOverLimit {
                op: "from_slice",
                name: "buffer bytes",
                size: bytes.len() as u64,
                limit: device.info().max_buffer_bytes,
            });
        }
        let handle = alloc("from_slice", bytes.len() as u64, || {
            dispatch!(device, |client, R| client.create_from_slice(bytes))
        })?;
        crate::counters::count_upload(device);
        Ok(Tensor::from_parts(
            device.clone(),
            handle,
            shape.to_vec(),
            T::DTYPE,
            crate::counters::track_alloc(device, bytes.len() as u64),
        ))
    }

    /// Uploads f32 data and stores it as `dtype` (converted on the host).
    pub fn from_f32(
        device: &Device,
        shape: &[usize],
        data: &[f32],
        dtype: DType,
    ) -> Result<Tensor> {
        match dtype {
            DType::F32 => Tensor::from_slice(device, shape, data),
            DType::F16 => {
                let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                Tensor::from_slice(device, shape, &h)
            }
            DType::BF16 => {
                let h: Vec<half::bf16> = data.iter().map(|&v| half::bf16::from_f32(v)).collect();
                Tensor::from_slice(device, shape, &h)
            }
            DType::U32 => Err(LapisError::DType {
                op: "from_f32",
                got: dtype,
                msg: "use Tensor::from_slice::<u32> for index tensors".into(),
            }),
        }
    }

    /// Downloads the tensor as `T`, which must match its dtype.
    ///
    /// First resolves the deferred value checks pending on this thread
    /// ([`crate::checks`]): if an op was given bad data (a non-finite coordinate, an index
    /// out of range, …), this returns that op's typed error instead of the data.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if crate::checks::pending(&self.device) > 0 {
            crate::checks::resolve(&self.device)?;
        }
        self.read_raw()
    }

    /// [`Tensor::to_vec`] without resolving the pending checks (the checks' own read).
    pub(crate) fn read_raw<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(LapisError::DType {
                op: "to_vec",
                got: self.dtype,
                msg: format!("asked for {}; use to_f32_vec() to convert", T::DTYPE.name()),
            });
        }
        let n = self.numel();
        crate::counters::count_read(&self.device, (n * self.dtype.size()) as u64);
        let bytes = dispatch!(&self.device, |client, R| client
            .read_one(self.handle.clone()))
        .map_err(|e| LapisError::kernel("to_vec", format!("{e:?}")))?;
        let bytes = &bytes[..n * self.dtype.size()];
        // The buffer may not be aligned for T: copy element-wise through pod_read_unaligned.
        Ok(bytes
            .chunks_exact(self.dtype.size())
            .map(bytemuck::pod_read_unaligned::<T>)
            .collect())
    }

    /// Downloads any float tensor as f32 (exact for f16/bf16).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        match self.dtype {
            DType::F32 => self.to_vec::<f32>(),
            DType::F16 => Ok(self
                .to_vec::<half::f16>()?
                .into_iter()
                .map(f32::from)
                .collect()),
            DType::BF16 => Ok(self
                .to_vec::<half::bf16>()?
                .into_iter()
                .map(f32::from)
                .collect()),
            DType::U32 => Ok(self
                .to_vec::<u32>()?
                .into_iter()
                .map(|v| v as f32)
                .collect()),
        }
    }

    /// The single value of a one-element tensor, as f32.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(LapisError::shape(
                "to_scalar",
                &self.shape,
                "expected exactly one element",
            ));
        }
        Ok(self.to_f32_vec()?[0])
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Storage dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Row-major strides (the layout is always contiguous).
    pub fn strides(&self) -> Vec<usize> {
        contiguous_strides(&self.shape)
    }
    /// The device buffer (for kernels launched outside lapis-ops).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
    /// Size of dimension `axis`, with a typed error when out of range.
    pub fn dim(&self, axis: usize) -> Result<usize> {
        self.shape.get(axis).copied().ok_or_else(|| {
            LapisError::invalid(
                "dim",
                "axis",
                axis,
                format!("tensor has rank {}", self.rank()),
            )
        })
    }

    /// Same buffer, new shape with the same element count (free: layout is contiguous).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = check_shape("reshape", shape)?;
        if n != self.numel() {
            return Err(LapisError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
            });
        }
        Ok(Tensor::from_parts(
            self.device.clone(),
            self.handle.clone(),
            shape.to_vec(),
            self.dtype,
            self.live.clone(),
        ))
    }
}

/// A kernel array argument over `t`'s buffer with its true length `numel()`.
pub(crate) fn arr<R: Runtime>(t: &Tensor) -> ArrayArg<R> {
    // SAFETY: the length is the buffer's element count (allocated as numel · dtype size),
    // and every lapis kernel guards its position against the count it is given.
    unsafe { ArrayArg::from_raw_parts(t.handle.clone(), t.numel()) }
}

/// Uploads a u32 metadata array (shapes/strides) for a kernel.
pub(crate) fn meta_arr<R: Runtime>(client: &ComputeClient<R>, meta: &[u32]) -> ArrayArg<R> {
    let handle = client.create_from_slice(u32::as_bytes(meta));
    // SAFETY: the handle holds exactly `meta.len()` u32 values.
    unsafe { ArrayArg::from_raw_parts(handle, meta.len()) }
}

/// Runs a runtime allocation. CubeCL's allocators panic when the device is out of
/// memory; that panic is turned into [`LapisError::OutOfMemory`] here (sizes over the
/// buffer limit never get this far: they are refused up front).
fn alloc(op: &'static str, bytes: u64, f: impl FnOnce() -> Handle) -> Result<Handle> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| LapisError::OutOfMemory {
        op,
        bytes,
        msg: e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "allocation failed".into()),
    })
}

/// Returns a `DType` error when the device cannot store `dtype`.
pub(crate) fn check_dtype_supported(op: &'static str, device: &Device, dtype: DType) -> Result<()> {
    if device.supports(dtype) {
        Ok(())
    } else {
        Err(LapisError::DType {
            op,
            got: dtype,
            msg: format!(
                "device {} cannot store {}; use F32",
                device.info().name,
                dtype.name()
            ),
        })
    }
}

/// Chunk length for kernels where one unit walks a chunk sequentially and another walks
/// the chunk totals (the scans, the radix sort): at least 32 elements per chunk, and at
/// most 65 536 chunks — 16 384 on wgpu, because llvmpipe (lavapipe) silently stops a
/// shader invocation's loops after 65 535 iterations in total; with ≤ 16 384 on both sides
/// every loop stays under that bound for `n ≤ 2^28`.
pub(crate) fn sequential_chunk_len(dev: &crate::Device, n: usize) -> usize {
    let max_chunks = match dev.kind() {
        crate::DeviceKind::Wgpu => 16_384,
        _ => 65_536,
    };
    n.div_ceil(max_chunks).max(32)
}
