//! Checkpoints: named tensors saved and loaded as [safetensors] files (the format PyTorch
//! reads with `safetensors.torch.load_file`).
//!
//! Format (from the safetensors spec, written by the `safetensors` crate): an 8-byte
//! little-endian header length `N`, then `N` bytes of JSON mapping each name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the byte buffer that
//! follows), then the raw little-endian tensor bytes. Names are written in sorted order.
//! lapis dtypes map one to one: f32 → `F32`, f16 → `F16`, bf16 → `BF16`, u32 → `U32`.
//!
//! Every failure is a typed [`LapisError`]: a missing or unreadable file is
//! [`LapisError::Io`]; a file that is not safetensors, is truncated, holds a dtype lapis
//! does not store, or (for [`load_into`]) lacks a name or has a different shape or dtype
//! is [`LapisError::Format`] naming the file and the tensor.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::collections::BTreeMap;
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

/// Saves `params` (name, tensor) to `path` as safetensors. Names must be unique.
pub fn save(path: impl AsRef<Path>, params: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut bytes: BTreeMap<String, (DType, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in params {
        let prev = bytes.insert(
            name.to_string(),
            (t.dtype(), t.shape().to_vec(), tensor_bytes(t)?),
        );
        if prev.is_some() {
            return Err(LapisError::invalid(
                "checkpoint::save",
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
    safetensors::serialize_to_file(views, None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => LapisError::Io(io),
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

/// Loads every tensor of the safetensors file at `path` onto `dev`, sorted by name.
pub fn load(path: impl AsRef<Path>, dev: &Device) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let buf = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| format_err(path, e.to_string()))?;
    let mut out = st
        .tensors()
        .iter()
        .map(|(name, v)| Ok((name.clone(), to_tensor(path, dev, name, v)?)))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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
