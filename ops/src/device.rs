//! Compute devices.
//!
//! A [`Device`] is a handle on one CubeCL runtime client: `wgpu` (Vulkan, Metal, DX12;
//! on a machine with no GPU, Mesa's lavapipe runs Vulkan on the CPU) or `cuda` (NVIDIA,
//! kernels compiled at run time by NVRTC) when the crate is built with `--features cuda`.
//!
//! [`Device::auto`] picks CUDA when it is compiled in and a driver answers, else wgpu.
//! The environment variable `LAPIS_DEVICE=cuda|wgpu` forces one. When nothing is
//! available the error says what to install.
//!
//! Each runtime is opened once per process and shared: cloning a `Device` is cheap.

use std::sync::{Arc, OnceLock};

use cubecl::prelude::*;

use crate::error::{LapisError, Result};

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
compile_error!("lapis-ops needs at least one runtime feature: `wgpu` (default) or `cuda`");

#[cfg(feature = "cuda")]
use cubecl::cuda::{CudaDevice, CudaRuntime};
#[cfg(feature = "wgpu")]
use cubecl::wgpu::{WgpuDevice, WgpuRuntime};

/// The runtime behind a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// CubeCL's wgpu runtime (Vulkan / Metal / DX12; lavapipe on CPU-only machines).
    Wgpu,
    /// CubeCL's CUDA runtime.
    Cuda,
}

impl DeviceKind {
    /// `"wgpu"` or `"cuda"`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// What a device is and what it can do, for `lapis info` and for test logs.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// The runtime.
    pub kind: DeviceKind,
    /// Adapter name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H100`).
    pub name: String,
    /// Driver name and version as the driver reports them.
    pub driver: String,
    /// Graphics backend (`Vulkan`, `Metal`, ...) or `CUDA`.
    pub backend: String,
    /// Adapter type (`Cpu`, `DiscreteGpu`, ...).
    pub device_type: String,
    /// Largest storage buffer, bytes.
    pub max_buffer_bytes: u64,
    /// Shared (workgroup) memory per cube, bytes.
    pub max_shared_memory_bytes: usize,
    /// Units per cube.
    pub max_units_per_cube: u32,
    /// Cubes per grid axis.
    pub max_cube_count: (u32, u32, u32),
    /// Plane (subgroup / warp) size range.
    pub plane_size: (u32, u32),
    /// Whether plane (subgroup) operations are available.
    pub planes: bool,
    /// Whether f16 storage is supported.
    pub f16: bool,
    /// Whether bf16 storage is supported.
    pub bf16: bool,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} · {} ({}, {}) · driver {}",
            self.kind.name(),
            self.name,
            self.backend,
            self.device_type,
            self.driver
        )
    }
}

/// A wgpu client and what it runs on.
#[cfg(feature = "wgpu")]
#[derive(Clone)]
pub struct WgpuContext {
    /// The CubeCL client kernels are launched on.
    pub client: ComputeClient<WgpuRuntime>,
    /// The adapter.
    pub info: Arc<DeviceInfo>,
}

/// A CUDA client and what it runs on.
#[cfg(feature = "cuda")]
#[derive(Clone)]
pub struct CudaContext {
    /// The CubeCL client kernels are launched on.
    pub client: ComputeClient<CudaRuntime>,
    /// The GPU.
    pub info: Arc<DeviceInfo>,
}

/// A compute device: one CubeCL runtime client. Cheap to clone.
#[derive(Clone)]
pub enum Device {
    /// wgpu (Vulkan/Metal/DX12, lavapipe).
    #[cfg(feature = "wgpu")]
    Wgpu(WgpuContext),
    /// CUDA.
    #[cfg(feature = "cuda")]
    Cuda(CudaContext),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.info())
    }
}

/// `runtime · adapter (backend)`, e.g. `wgpu · llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`
/// or `cuda · CUDA device 0, 132 SMs (CUDA)`; [`DeviceInfo`]'s `Display` (via
/// [`Device::info`]) adds the adapter type and driver.
impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.info();
        write!(
            f,
            "{} · {} ({})",
            self.kind().name(),
            info.name,
            info.backend
        )
    }
}

impl PartialEq for Device {
    /// Two handles are the same device when they share the runtime (lapis opens device 0
    /// of each runtime).
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
    }
}

/// Message for a machine where nothing answers.
const INSTALL_HINT: &str =
    "install a GPU driver with Vulkan support, or, on a machine with no GPU, \
Mesa's software Vulkan driver lavapipe (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)";

/// Runs `f`, turning a panic inside a runtime's initialisation into an error message
/// (runtimes panic when a driver library is missing), without printing the panic.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    out.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "runtime initialisation panicked".into())
    })
}

/// Adapters wgpu can see: `(name, backend, device type, driver)`.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters() -> Vec<(String, String, String, String)> {
    quietly(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::all(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        cubecl::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .map(|a| {
                let i = a.get_info();
                (
                    i.name,
                    format!("{:?}", i.backend),
                    format!("{:?}", i.device_type),
                    format!("{} {}", i.driver, i.driver_info),
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(feature = "wgpu")]
fn open_wgpu() -> std::result::Result<WgpuContext, String> {
    use cubecl::wgpu::{init_setup, AutoGraphicsApi, RuntimeOptions};
    if wgpu_adapters().is_empty() {
        return Err(format!("wgpu found no adapter; {INSTALL_HINT}"));
    }
    let device = WgpuDevice::DefaultDevice;
    let setup = quietly(|| init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default()))
        .map_err(|e| format!("wgpu could not open its default adapter ({e}); {INSTALL_HINT}"))?;
    let client = WgpuRuntime::client(&device);
    let ai = setup.adapter.get_info();
    let limits = setup.device.limits();
    let info = describe(
        &client,
        DeviceKind::Wgpu,
        ai.name,
        format!("{} {}", ai.driver, ai.driver_info)
            .trim()
            .to_string(),
        format!("{:?}", ai.backend),
        format!("{:?}", ai.device_type),
        limits.max_storage_buffer_binding_size,
    );
    Ok(WgpuContext {
        client,
        info: Arc::new(info),
    })
}

#[cfg(feature = "cuda")]
fn open_cuda() -> std::result::Result<CudaContext, String> {
    let client = quietly(|| {
        let c = CudaRuntime::client(&CudaDevice::new(0));
        // Touch the device so a missing driver fails here, inside `quietly`.
        let _ = c.properties().hardware.max_units_per_cube;
        c
    })
    .map_err(|e| {
        format!("CUDA runtime unavailable ({e}); install the NVIDIA driver (libcuda) and NVRTC")
    })?;
    let hw = &client.properties().hardware;
    let sms = hw
        .num_streaming_multiprocessors
        .map(|n| format!(", {n} SMs"))
        .unwrap_or_default();
    let info = describe(
        &client,
        DeviceKind::Cuda,
        format!("CUDA device 0{sms}"),
        "NVIDIA (libcuda + NVRTC, loaded at run time)".into(),
        "CUDA".into(),
        "DiscreteGpu".into(),
        u32::MAX as u64 * 4,
    );
    Ok(CudaContext {
        client,
        info: Arc::new(info),
    })
}

fn describe<R: Runtime>(
    client: &ComputeClient<R>,
    kind: DeviceKind,
    name: String,
    driver: String,
    backend: String,
    device_type: String,
    max_buffer_bytes: u64,
) -> DeviceInfo {
    let props = client.properties();
    let hw = &props.hardware;
    DeviceInfo {
        kind,
        name,
        driver,
        backend,
        device_type,
        max_buffer_bytes,
        max_shared_memory_bytes: hw.max_shared_memory_size,
        max_units_per_cube: hw.max_units_per_cube,
        max_cube_count: hw.max_cube_count,
        plane_size: (hw.plane_size_min, hw.plane_size_max),
        planes: !props.features.plane.is_empty(),
        f16: props.supports_type(half::f16::as_type_native_unchecked()),
        bf16: props.supports_type(half::bf16::as_type_native_unchecked()),
    }
}

#[cfg(feature = "wgpu")]
static WGPU: OnceLock<std::result::Result<WgpuContext, String>> = OnceLock::new();
#[cfg(feature = "cuda")]
static CUDA: OnceLock<std::result::Result<CudaContext, String>> = OnceLock::new();

impl Device {
    /// The wgpu device (opened once per process).
    pub fn wgpu() -> Result<Device> {
        #[cfg(feature = "wgpu")]
        {
            WGPU.get_or_init(open_wgpu)
                .clone()
                .map(Device::Wgpu)
                .map_err(|msg| LapisError::DeviceUnavailable { msg })
        }
        #[cfg(not(feature = "wgpu"))]
        Err(LapisError::DeviceUnavailable {
            msg: "lapis was built without the `wgpu` feature".into(),
        })
    }

    /// The CUDA device 0 (opened once per process).
    pub fn cuda() -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            CUDA.get_or_init(open_cuda)
                .clone()
                .map(Device::Cuda)
                .map_err(|msg| LapisError::DeviceUnavailable { msg })
        }
        #[cfg(not(feature = "cuda"))]
        Err(LapisError::DeviceUnavailable {
            msg: "lapis was built without the `cuda` feature; rebuild with `--features cuda`"
                .into(),
        })
    }

    /// The device of the given kind.
    pub fn of_kind(kind: DeviceKind) -> Result<Device> {
        match kind {
            DeviceKind::Wgpu => Device::wgpu(),
            DeviceKind::Cuda => Device::cuda(),
        }
    }

    /// `LAPIS_DEVICE` if set (`cuda` or `wgpu`), else CUDA when built in and a driver
    /// answers, else wgpu.
    pub fn auto() -> Result<Device> {
        match std::env::var("LAPIS_DEVICE").ok().as_deref().map(str::trim) {
            Some("cuda") => return Device::cuda(),
            Some("wgpu") => return Device::wgpu(),
            Some("") | None => {}
            Some(other) => {
                return Err(LapisError::invalid(
                    "Device::auto",
                    "LAPIS_DEVICE",
                    other,
                    "expected `cuda` or `wgpu`",
                ))
            }
        }
        let cuda_err = match Device::cuda() {
            Ok(d) => return Ok(d),
            Err(e) => e,
        };
        Device::wgpu().map_err(|e| LapisError::DeviceUnavailable {
            msg: format!("{e}; also tried CUDA: {cuda_err}"),
        })
    }

    /// The runtime.
    pub fn kind(&self) -> DeviceKind {
        match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu(_) => DeviceKind::Wgpu,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => DeviceKind::Cuda,
        }
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu(c) => &c.info,
            #[cfg(feature = "cuda")]
            Device::Cuda(c) => &c.info,
        }
    }

    /// Waits for every launched kernel to finish; surfaces asynchronous device errors.
    pub fn sync(&self) -> Result<()> {
        let r = match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu(c) => cubecl::future::block_on(c.client.sync()),
            #[cfg(feature = "cuda")]
            Device::Cuda(c) => cubecl::future::block_on(c.client.sync()),
        };
        r.map_err(|e| LapisError::kernel("sync", format!("{e:?}")))
    }

    /// Whether tensors of `dtype` can be stored on this device.
    pub fn supports(&self, dtype: crate::DType) -> bool {
        match dtype {
            crate::DType::F32 | crate::DType::U32 => true,
            crate::DType::F16 => self.info().f16,
            crate::DType::BF16 => self.info().bf16,
        }
    }
}

/// One line per runtime that lapis was built with: whether it opens and on what.
pub fn list_devices() -> Vec<String> {
    let mut out = Vec::new();
    #[cfg(feature = "wgpu")]
    {
        let adapters = wgpu_adapters();
        if adapters.is_empty() {
            out.push(format!("wgpu: no adapter found; {INSTALL_HINT}"));
        }
        for (name, backend, ty, driver) in adapters {
            out.push(format!(
                "wgpu adapter: {name} ({backend}, {ty}) driver {driver}"
            ));
        }
    }
    #[cfg(not(feature = "wgpu"))]
    out.push("wgpu: not compiled in".into());
    match Device::cuda() {
        Ok(d) => out.push(format!("cuda: {}", d.info())),
        Err(e) => out.push(format!("cuda: {e}")),
    }
    out
}
