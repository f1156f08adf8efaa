//! Checkpoints: named tensors saved and loaded as [safetensors] files (the format PyTorch
//! reads with `safetensors.torch.load_file`).
//!
//! Format (from the safetensors spec, written by the `safetensors` crate): an 8-byte
//! little-endian header length `N`, then `N` bytes of JSON mapping each name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the byte buffer that
//! follows), then the raw little-endian tensor bytes (the `safetensors` crate lays the
//! data out by dtype alignment, then name). lapis dtypes map one to one: f32 → `F32`,
//! f16 → `F16`, bf16 → `BF16`, u32 → `U32`.
//!
//! **Order and metadata.** The header's optional `__metadata__` map (string → string, as
//! the format allows) holds `lapis.order`: the tensor names as a JSON list, in the order
//! they were passed to [`save`] (a model's registration order). [`load`] returns the
//! tensors in that order; for a file without it (written by another tool), in the order of
//! their data offsets; names in the file that `lapis.order` omits follow in offset order.
//! [`save_with_metadata`] stores user entries (a training step, a config) beside it and
//! [`load_with_metadata`] returns them. Python reads the same file with
//! `safetensors.torch.load_file` (tensors) and `safe_open(path, "pt").metadata()` (the map).
//!
//! Every failure is a typed [`LapisError`]: a missing, unreadable or unwritable file is
//! [`LapisError::File`], whose message names the path and whether it was being read or
//! written; a file that is not safetensors, is truncated, holds a dtype lapis does not
//! store, has a malformed `lapis.order`, or (for [`load_into`]) lacks a name or has a
//! different shape or dtype is [`LapisError::Format`] naming the file and the tensor.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lapis_ops::{DType, Device, LapisError, Result, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

fn format_err(path: &Path, msg: impl Into<String>) -> LapisError {
    LapisError::Format {
        what: format!("checkpoint {}", path.display()),
        msg: msg.into(),
    }
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::U32 => Dtype::U32,
    }
}

/// The tensor's bytes, little-endian as stored on every supported device.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(match t.dtype() {
        DType::F32 => bytemuck::cast_slice(&t.to_vec::<f32>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(&t.to_vec::<half::f16>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(&t.to_vec::<half::bf16>()?).to_vec(),
        DType::U32 => bytemuck::cast_slice(&t.to_vec::<u32>()?).to_vec(),
    })
}

/// The `__metadata__` key holding the save order (a JSON list of the tensor names).
pub const ORDER_KEY: &str = "lapis.order";

/// Saves `params` (name, tensor) to `path` as safetensors. Names must be unique. Their
/// order is stored (`lapis.order`, see the module docs) and [`load`] returns it.
pub fn save(path: impl AsRef<Path>, params: &[(&str, &Tensor)]) -> Result<()> {
    save_with_metadata(path, params, &BTreeMap::new())
}

/// [`save`] with user metadata: `metadata` is stored in the header's `__metadata__` map
/// beside `lapis.order` (string values; encode numbers and configs as text, JSON for
/// instance) and comes back from [`load_with_metadata`]. The key `lapis.order` is reserved
/// (an [`LapisError::InvalidArgument`] if given).
pub fn save_with_metadata(
    path: impl AsRef<Path>,
    params: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    const OP: &str = "checkpoint::save";
    let path = path.as_ref();
    if metadata.contains_key(ORDER_KEY) {
        return Err(LapisError::invalid(
            OP,
            "metadata",
            ORDER_KEY,
            "this key is reserved for the save order",
        ));
    }
    let mut bytes: BTreeMap<String, (DType, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in params {
        let prev = bytes.insert(
            name.to_string(),
            (t.dtype(), t.shape().to_vec(), tensor_bytes(t)?),
        );
        if prev.is_some() {
            return Err(LapisError::invalid(
                OP,
                "params",
                name.to_string(),
                "names must be unique",
            ));
        }
    }
    let views = bytes
        .iter()
        .map(|(name, (d, shape, data))| {
            TensorView::new(st_dtype(*d), shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| format_err(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let order: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    let mut info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.insert(
        ORDER_KEY.to_string(),
        serde_json::to_string(&order).map_err(|e| format_err(path, e.to_string()))?,
    );
    safetensors::serialize_to_file(views, Some(info), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => LapisError::file("write checkpoint", path, io),
        other => format_err(path, other.to_string()),
    })
}

fn to_tensor(path: &Path, dev: &Device, name: &str, v: &TensorView<'_>) -> Result<Tensor> {
    let data = v.data();
    let shape = v.shape().to_vec();
    // Copy into aligned storage before casting (the file buffer has no alignment).
    match v.dtype() {
        Dtype::F32 => {
            Tensor::from_slice(dev, &shape, &bytemuck::pod_collect_to_vec::<u8, f32>(data))
        }
        Dtype::F16 => Tensor::from_slice(
            dev,
            &shape,
            &bytemuck::pod_collect_to_vec::<u8, half::f16>(data),
        ),
        Dtype::BF16 => Tensor::from_slice(
            dev,
            &shape,
            &bytemuck::pod_collect_to_vec::<u8, half::bf16>(data),
        ),
        Dtype::U32 => {
            Tensor::from_slice(dev, &shape, &bytemuck::pod_collect_to_vec::<u8, u32>(data))
        }
        other => Err(format_err(
            path,
            format!("tensor `{name}` has dtype {other:?}; lapis stores F32, F16, BF16 and U32"),
        )),
    }
}

/// Loads every tensor of the safetensors file at `path` onto `dev`, in the order they were
/// saved (`lapis.order`; for files without it, the order of their data offsets).
pub fn load(path: impl AsRef<Path>, dev: &Device) -> Result<Vec<(String, Tensor)>> {
    Ok(load_with_metadata(path, dev)?.0)
}

/// [`load`] and the file's user metadata: the header's `__metadata__` map without the
/// `lapis.order` entry (empty when the file has none).
#[allow(clippy::type_complexity)]
pub fn load_with_metadata(
    path: impl AsRef<Path>,
    dev: &Device,
) -> Result<(Vec<(String, Tensor)>, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let buf = std::fs::read(path).map_err(|e| LapisError::file("read checkpoint", path, e))?;
    let (_, header) =
        SafeTensors::read_metadata(&buf).map_err(|e| format_err(path, e.to_string()))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| format_err(path, e.to_string()))?;
    let mut meta: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let saved = match meta.remove(ORDER_KEY) {
        Some(json) => serde_json::from_str::<Vec<String>>(&json).map_err(|e| {
            format_err(
                path,
                format!("`{ORDER_KEY}` in __metadata__ is not a JSON list of names: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    // The saved order first (names the file holds, each once), then the rest by offset.
    let by_offset = header.offset_keys();
    let mut seen = std::collections::HashSet::new();
    let names: Vec<String> = saved
        .into_iter()
        .filter(|n| header.info(n).is_some())
        .chain(by_offset)
        .filter(|n| seen.insert(n.clone()))
        .collect();
    let out = names
        .into_iter()
        .map(|name| {
            let v = st
                .tensor(&name)
                .map_err(|e| format_err(path, e.to_string()))?;
            let t = to_tensor(path, dev, &name, &v)?;
            Ok((name, t))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, meta))
}

/// Loads the file at `path` into existing parameters: every `(name, tensor)` of `params` must
/// be in the file with the same shape and dtype (typed error naming the first that is not);
/// on success each tensor is replaced by the file's values. Extra names in the file are
/// ignored.
pub fn load_into(path: impl AsRef<Path>, params: &mut [(&str, &mut Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let Some(dev) = params.first().map(|(_, t)| t.device().clone()) else {
        return Ok(());
    };
    let loaded: BTreeMap<String, Tensor> = load(path, &dev)?.into_iter().collect();
    for (name, t) in params.iter() {
        let Some(v) = loaded.get(*name) else {
            return Err(format_err(path, format!("no tensor named `{name}`")));
        };
        if v.shape() != t.shape() || v.dtype() != t.dtype() {
            return Err(format_err(
                path,
                format!(
                    "`{name}` is {} {:?} in the file but {} {:?} in the model",
                    v.dtype().name(),
                    v.shape(),
                    t.dtype().name(),
                    t.shape()
                ),
            ));
        }
    }
    for (name, t) in params.iter_mut() {
        **t = loaded[*name].clone();
    }
    Ok(())
}
