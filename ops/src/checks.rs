//! Deferred (device-side) value checks: bad data still ends in a typed error, without a
//! host round-trip per op.
//!
//! Shapes, dtypes, devices and host scalars are checked on the host before any launch, as
//! everywhere in lapis. What is only known on the device — non-finite coordinates, a rate
//! held in a tensor that is not `> 0`, an index out of range — is checked by one small
//! kernel that raises a flag in a per-device, per-thread u32 buffer; nothing is read back.
//! The flags are read, and turned into the [`LapisError::InvalidArgument`] naming the op
//! and the argument, at the first of:
//! - the next **natural read** of device data on the same thread and device
//!   ([`Tensor::to_vec`](crate::Tensor::to_vec), `to_scalar`, …): the read returns the error
//!   instead of the data, so a result computed from bad input is never seen silently;
//! - an explicit [`Device::check`];
//! - immediately, in **strict mode** ([`set_strict_checks`], or `LAPIS_STRICT_CHECKS=1` in
//!   the environment): the op itself returns the error, at the cost of one read per check
//!   (for debugging, and for code that must fail at the offending call).
//!
//! One read of the flag buffer (counted in [`Device::counters`] as a host read) covers
//! every check pending on the thread; with none pending, a read costs nothing extra.
//! After an error is reported the pending checks are cleared. Results computed from bad
//! input are unspecified (NaN, garbage), never undefined behaviour: the kernels that use
//! an index clamp or skip it.
//!
//! Checks raised on one thread are reported on that thread: a tensor computed on thread A
//! and read on thread B reports A's failed checks on A's next read or check.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

use lapis_kernels::checks as k;

use crate::device::{Device, DeviceKind};
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::{arr, Tensor};

/// Slots in one flag buffer; when they are all used, the pending checks are resolved (one
/// read) before the next is raised.
const SLOTS: usize = 1024;

/// One pending check: what to report if its slot is raised.
struct Entry {
    op: &'static str,
    name: &'static str,
    value: &'static str,
    msg: String,
}

#[derive(Default)]
struct State {
    flags: Option<Tensor>,
    entries: Vec<Entry>,
}

thread_local! {
    static STATE: RefCell<Vec<(DeviceKind, State)>> = const { RefCell::new(Vec::new()) };
}

/// 0: not read from the environment yet; 1: off; 2: on.
static STRICT: AtomicU8 = AtomicU8::new(0);

/// Turns strict checking on or off for the whole process: every deferred check is then
/// resolved inside the op that raised it (one host read each), so the op returns the
/// error itself. Off by default; `LAPIS_STRICT_CHECKS=1` turns it on at start-up.
pub fn set_strict_checks(on: bool) {
    STRICT.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether strict checking is on (see [`set_strict_checks`]).
pub fn strict_checks() -> bool {
    match STRICT.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("LAPIS_STRICT_CHECKS").is_ok_and(|v| v == "1");
            set_strict_checks(on);
            on
        }
        v => v == 2,
    }
}

fn with_state<T>(dev: &Device, f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| {
        let mut all = s.borrow_mut();
        let kind = dev.kind();
        let i = match all.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                all.push((kind, State::default()));
                all.len() - 1
            }
        };
        f(&mut all[i].1)
    })
}

/// Number of checks pending on this thread for `dev`'s runtime.
pub(crate) fn pending(dev: &Device) -> usize {
    with_state(dev, |s| s.entries.len())
}

/// Reserves a slot for a check of argument `name` of `op` (reported as
/// `InvalidArgument { value, msg }` if raised); returns the flag buffer and the slot.
fn reserve(
    dev: &Device,
    op: &'static str,
    name: &'static str,
    value: &'static str,
    msg: String,
) -> Result<(Tensor, u32)> {
    if pending(dev) >= SLOTS {
        resolve(dev)?;
    }
    let flags = match with_state(dev, |s| s.flags.clone()) {
        Some(f) => f,
        None => {
            let f = Tensor::from_slice(dev, &[SLOTS], &vec![0u32; SLOTS])?;
            with_state(dev, |s| s.flags = Some(f.clone()));
            f
        }
    };
    let slot = with_state(dev, |s| {
        s.entries.push(Entry {
            op,
            name,
            value,
            msg,
        });
        s.entries.len() - 1
    });
    Ok((flags, slot as u32))
}

/// After a check's launch (or a fused kernel's raising of its slots): resolves at once in
/// strict mode.
pub(crate) fn after(dev: &Device) -> Result<()> {
    if strict_checks() {
        resolve(dev)
    } else {
        Ok(())
    }
}

/// Reads the flags of every check pending on this thread for `dev`'s runtime (one host
/// read, none when nothing is pending) and returns the first raised one as its typed
/// error. The pending checks are cleared either way.
pub(crate) fn resolve(dev: &Device) -> Result<()> {
    let (flags, entries) = with_state(dev, |s| (s.flags.clone(), std::mem::take(&mut s.entries)));
    let Some(flags) = flags else { return Ok(()) };
    if entries.is_empty() {
        return Ok(());
    }
    let raised = flags.read_raw::<u32>()?;
    let first = raised[..entries.len()].iter().position(|&f| f != 0);
    let Some(i) = first else { return Ok(()) };
    // Raised slots are cleared by replacing the buffer (rare: only after an error).
    let fresh = Tensor::from_slice(dev, &[SLOTS], &vec![0u32; SLOTS])?;
    with_state(dev, |s| s.flags = Some(fresh));
    let e = &entries[i];
    Err(LapisError::InvalidArgument {
        op: e.op,
        name: e.name,
        value: e.value.into(),
        msg: e.msg.clone(),
    })
}

impl Device {
    /// Resolves the deferred value checks pending on this thread (see [`crate::checks`]):
    /// `Err` with the first failed check's typed error (naming the op and the argument),
    /// `Ok` when all passed. One host read when checks are pending, none otherwise.
    pub fn check(&self) -> Result<()> {
        resolve(self)
    }

    /// Number of deferred value checks pending on this thread (see [`crate::checks`]).
    pub fn pending_checks(&self) -> usize {
        pending(self)
    }
}

/// What a float check ([`check_f32`]) accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accept {
    /// Finite values.
    Finite,
    /// Finite values `> 0`.
    Positive,
    /// Finite values `≥ 0`.
    NonNegative,
    /// Finite values strictly between the two bounds.
    Between(f32, f32),
}

impl Accept {
    /// `(lo, hi, lo_open, hi_open)` for the kernel.
    fn bounds(self) -> (f32, f32, u32, u32) {
        match self {
            Accept::Finite => (f32::NEG_INFINITY, f32::INFINITY, 0, 0),
            Accept::Positive => (0.0, f32::INFINITY, 1, 0),
            Accept::NonNegative => (0.0, f32::INFINITY, 0, 0),
            Accept::Between(lo, hi) => (lo, hi, 1, 1),
        }
    }

    /// Whether a host value passes.
    pub fn accepts(self, v: f32) -> bool {
        let (lo, hi, lo_open, hi_open) = self.bounds();
        v.is_finite()
            && v >= lo
            && v <= hi
            && !(lo_open == 1 && v == lo)
            && !(hi_open == 1 && v == hi)
    }

    fn value(self) -> &'static str {
        match self {
            Accept::Finite => "non-finite entries",
            Accept::Positive => "an entry that is not finite and > 0",
            Accept::NonNegative => "an entry that is not finite and ≥ 0",
            Accept::Between(..) => "an entry out of range",
        }
    }
}

/// Deferred check that every entry of the f32 tensor `x` passes `accept` (argument `name`
/// of `op`, with `msg` saying what is accepted). One launch, no read.
pub fn check_f32(
    op: &'static str,
    name: &'static str,
    x: &Tensor,
    accept: Accept,
    msg: &str,
) -> Result<()> {
    check_f32_split(op, (name, name), x, x.numel(), accept, msg)
}

/// [`check_f32`] for two arguments stored back to back in `x`: entries before `split` are
/// argument `names.0`, the rest `names.1` (one launch for both).
pub fn check_f32_split(
    op: &'static str,
    names: (&'static str, &'static str),
    x: &Tensor,
    split: usize,
    accept: Accept,
    msg: &str,
) -> Result<()> {
    check_f32_rows(op, names, x, x.numel().max(1), split, accept, msg)
}

/// [`check_f32_split`] row by row: `x` holds rows of `seg` entries, and in each row the
/// entries before `split` are argument `names.0`, the rest `names.1` (one launch).
pub fn check_f32_rows(
    op: &'static str,
    names: (&'static str, &'static str),
    x: &Tensor,
    seg: usize,
    split: usize,
    accept: Accept,
    msg: &str,
) -> Result<()> {
    let n = x.numel();
    if n == 0 {
        return Ok(());
    }
    if x.dtype() != DType::F32 {
        return Err(LapisError::DType {
            op,
            got: x.dtype(),
            msg: format!("the value check of `{}` takes f32", names.0),
        });
    }
    let dev = x.device();
    let (flags, lo) = reserve(dev, op, names.0, accept.value(), msg.into())?;
    let hi = if names.1 == names.0 || split >= seg {
        lo
    } else {
        reserve(dev, op, names.1, accept.value(), msg.into())?.1
    };
    let (n32, s32) = (n as u32, split as u32);
    let (lo_b, hi_b, lo_open, hi_open) = accept.bounds();
    crate::launch_1d!(dev, n, k::flag_f32_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(&flags),
        s32,
        lo,
        hi,
        n32,
        lo_b,
        hi_b,
        lo_open,
        hi_open,
        seg as u32,
    ));
    after(dev)
}

/// Reserves the slots of a check that a fused kernel raises itself: `(flags, slot of
/// names.0, slot of names.1)`; call [`after`] once the kernel is launched.
pub(crate) fn reserve_pair(
    dev: &Device,
    op: &'static str,
    names: (&'static str, &'static str),
    accept: Accept,
    msg: &str,
) -> Result<(Tensor, u32, u32)> {
    let (flags, lo) = reserve(dev, op, names.0, accept.value(), msg.into())?;
    let (_, hi) = reserve(dev, op, names.1, accept.value(), msg.into())?;
    Ok((flags, lo, hi))
}

/// Deferred check that every u32 index in `idx` is `< len` (argument `name` of `op`).
/// One launch, no read.
pub fn check_index(op: &'static str, name: &'static str, idx: &Tensor, len: usize) -> Result<()> {
    let n = idx.numel();
    if idx.dtype() != DType::U32 {
        return Err(LapisError::DType {
            op,
            got: idx.dtype(),
            msg: format!("`{name}` must be u32 indices"),
        });
    }
    if n == 0 {
        return Ok(());
    }
    let dev = idx.device();
    let msg = format!("indices must be < {len}");
    let (flags, slot) = reserve(dev, op, name, "an index out of range", msg)?;
    let (n32, l32) = (n as u32, len.min(u32::MAX as usize) as u32);
    crate::launch_1d!(dev, n, k::flag_index_kernel, |client, R| (
        arr::<R>(idx),
        arr::<R>(&flags),
        l32,
        slot,
        n32,
    ));
    after(dev)
}
