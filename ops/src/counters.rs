//! Device counters: kernel launches, host reads (every download of device data), uploads,
//! and the bytes of live tensors (current and peak), per runtime.
//!
//! They are process-wide atomics per runtime kind (every [`Device`] of one runtime shares
//! the CubeCL client, so they share the counters), cheap enough to stay on: one relaxed
//! atomic add per launch, per read and per allocation, and one per tensor buffer freed.
//!
//! - **launches**: every lapis kernel launch counts one. An op that calls into cubek
//!   (matmul, reduce, random, fft) counts one per cubek call, although cubek may issue
//!   more than one kernel for it: the figure is a lower bound there.
//! - **host reads**: every [`Tensor::to_vec`](crate::Tensor::to_vec) (and the methods built on it:
//!   `to_f32_vec`, `to_scalar`); each one waits for the device queue.
//! - **live bytes**: the bytes of tensor buffers alive now (a buffer counts until its last
//!   [`Tensor`](crate::Tensor) — reshapes share it — is dropped), and their peak since the last
//!   [`Device::reset_counters`]. Buffers cubek allocates internally are not in this figure;
//!   CubeCL's own pool figures are in [`Device::memory_usage`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::device::{Device, DeviceKind};

/// A snapshot of a runtime's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernel launches (cubek calls count one each).
    pub launches: u64,
    /// Downloads of device data to the host.
    pub host_reads: u64,
    /// Bytes downloaded.
    pub bytes_read: u64,
    /// Uploads of host data (`Tensor::from_slice` and friends).
    pub uploads: u64,
    /// Tensor buffers allocated (uploads included).
    pub allocations: u64,
    /// Bytes of tensor buffers allocated.
    pub bytes_allocated: u64,
    /// Bytes of tensor buffers alive now.
    pub live_bytes: u64,
    /// The largest `live_bytes` since the last reset.
    pub peak_live_bytes: u64,
}

impl Counters {
    /// `self − before` for the cumulative counts; `live_bytes` and `peak_live_bytes` are
    /// `self`'s (peaks do not subtract).
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            launches: self.launches - before.launches.min(self.launches),
            host_reads: self.host_reads - before.host_reads.min(self.host_reads),
            bytes_read: self.bytes_read - before.bytes_read.min(self.bytes_read),
            uploads: self.uploads - before.uploads.min(self.uploads),
            allocations: self.allocations - before.allocations.min(self.allocations),
            bytes_allocated: self.bytes_allocated
                - before.bytes_allocated.min(self.bytes_allocated),
            live_bytes: self.live_bytes,
            peak_live_bytes: self.peak_live_bytes,
        }
    }
}

#[derive(Default)]
struct Atomics {
    launches: AtomicU64,
    host_reads: AtomicU64,
    bytes_read: AtomicU64,
    uploads: AtomicU64,
    allocations: AtomicU64,
    bytes_allocated: AtomicU64,
    live_bytes: AtomicU64,
    peak_live_bytes: AtomicU64,
}

static WGPU: Atomics = Atomics::new();
static CUDA: Atomics = Atomics::new();

impl Atomics {
    const fn new() -> Self {
        Atomics {
            launches: AtomicU64::new(0),
            host_reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            peak_live_bytes: AtomicU64::new(0),
        }
    }
}

fn of(kind: DeviceKind) -> &'static Atomics {
    match kind {
        DeviceKind::Wgpu => &WGPU,
        DeviceKind::Cuda => &CUDA,
    }
}

/// Counts one kernel launch on `dev`.
#[doc(hidden)]
pub fn count_launch(dev: &Device) {
    of(dev.kind()).launches.fetch_add(1, Ordering::Relaxed);
}

/// Counts one host read of `bytes` on `dev`.
pub(crate) fn count_read(dev: &Device, bytes: u64) {
    let a = of(dev.kind());
    a.host_reads.fetch_add(1, Ordering::Relaxed);
    a.bytes_read.fetch_add(bytes, Ordering::Relaxed);
}

/// Counts one upload on `dev` (its allocation is counted by [`track_alloc`]).
pub(crate) fn count_upload(dev: &Device) {
    of(dev.kind()).uploads.fetch_add(1, Ordering::Relaxed);
}

/// Frees its bytes from the live count when the last tensor sharing a buffer drops.
pub(crate) struct LiveBuffer {
    kind: DeviceKind,
    bytes: u64,
}

impl Drop for LiveBuffer {
    fn drop(&mut self) {
        of(self.kind)
            .live_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Counts an allocation of `bytes` on `dev` and returns its live-bytes guard.
pub(crate) fn track_alloc(dev: &Device, bytes: u64) -> Arc<LiveBuffer> {
    let a = of(dev.kind());
    a.allocations.fetch_add(1, Ordering::Relaxed);
    a.bytes_allocated.fetch_add(bytes, Ordering::Relaxed);
    let live = a.live_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
    a.peak_live_bytes.fetch_max(live, Ordering::Relaxed);
    Arc::new(LiveBuffer {
        kind: dev.kind(),
        bytes,
    })
}

/// CubeCL's memory pool figures for a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Allocations the pool tracks.
    pub allocations: u64,
    /// Bytes in use by live allocations.
    pub bytes_in_use: u64,
    /// Bytes reserved from the driver (in use, padding and free pages).
    pub bytes_reserved: u64,
}

impl Device {
    /// This runtime's counters now (see the module docs).
    pub fn counters(&self) -> Counters {
        let a = of(self.kind());
        let r = |x: &AtomicU64| x.load(Ordering::Relaxed);
        Counters {
            launches: r(&a.launches),
            host_reads: r(&a.host_reads),
            bytes_read: r(&a.bytes_read),
            uploads: r(&a.uploads),
            allocations: r(&a.allocations),
            bytes_allocated: r(&a.bytes_allocated),
            live_bytes: r(&a.live_bytes),
            peak_live_bytes: r(&a.peak_live_bytes),
        }
    }

    /// Zeroes the cumulative counts and sets the peak to the bytes live now (so the next
    /// peak is measured from here).
    pub fn reset_counters(&self) {
        let a = of(self.kind());
        for c in [
            &a.launches,
            &a.host_reads,
            &a.bytes_read,
            &a.uploads,
            &a.allocations,
            &a.bytes_allocated,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        a.peak_live_bytes
            .store(a.live_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// CubeCL's memory pool figures (`ComputeClient::memory_usage`): what the runtime holds,
    /// including buffers lapis does not see (cubek's workspaces) and freed pages it keeps.
    pub fn memory_usage(&self) -> crate::Result<PoolUsage> {
        let u = crate::dispatch!(self, |client, R| client.memory_usage())
            .map_err(|e| crate::LapisError::kernel("memory_usage", format!("{e:?}")))?;
        Ok(PoolUsage {
            allocations: u.number_allocs,
            bytes_in_use: u.bytes_in_use,
            bytes_reserved: u.bytes_reserved,
        })
    }
}

// ---- profile ------------------------------------------------------------------------

static PROFILING: AtomicBool = AtomicBool::new(false);
static PROFILE: Mutex<Option<HashMap<&'static str, (u64, Duration)>>> = Mutex::new(None);

/// One row of a [`profile`]: a kernel (or a cubek call) by name, how often it ran and the
/// wall time spent in it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    /// The kernel's path (`laplace::laplace_gather_kernel`) or the cubek call (`cubek::matmul`).
    pub name: &'static str,
    /// Launches.
    pub count: u64,
    /// Wall time, launch to completion.
    pub time: Duration,
}

/// Starts (`true`) or stops per-kernel profiling. While on, every launch waits for the
/// device to finish it (a sync per launch) so its time can be attributed: the totals are
/// slower than unprofiled runs, and what they show is where the time goes. Starting clears
/// the previous profile.
pub fn set_profiling(on: bool) {
    if on {
        if let Ok(mut p) = PROFILE.lock() {
            *p = Some(HashMap::new());
        }
    }
    PROFILING.store(on, Ordering::Relaxed);
}

/// The profile collected since [`set_profiling`]`(true)`, slowest first.
pub fn profile() -> Vec<ProfileRow> {
    let mut rows: Vec<ProfileRow> = match PROFILE.lock() {
        Ok(p) => p
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(name, (count, time))| ProfileRow {
                        name,
                        count: *count,
                        time: *time,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    rows.sort_by_key(|r| std::cmp::Reverse(r.time));
    rows
}

/// With profiling on, a timer for one launch (`None` when off: no cost but the flag load).
#[doc(hidden)]
pub fn profile_start(dev: &Device) -> Option<Instant> {
    if PROFILING.load(Ordering::Relaxed) {
        let _ = dev.sync();
        Some(Instant::now())
    } else {
        None
    }
}

/// Ends a launch's timer: waits for the device and adds the time under `name`.
#[doc(hidden)]
pub fn profile_end(dev: &Device, name: &'static str, start: Option<Instant>) {
    if let Some(t0) = start {
        let _ = dev.sync();
        let dt = t0.elapsed();
        if let Ok(mut p) = PROFILE.lock() {
            let e = p.get_or_insert_with(HashMap::new).entry(name).or_default();
            e.0 += 1;
            e.1 += dt;
        }
    }
}
