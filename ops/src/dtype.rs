//! Storage dtypes.
//!
//! lapis computes in f32; tensors may be *stored* as f32, f16 or bf16 (`half`). Index
//! tensors (argmax results, gather indices) are u32.

use cubecl::prelude::*;

/// The element type of a tensor's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (`half::f16`).
    F16,
    /// bfloat16 (`half::bf16`).
    BF16,
    /// 32-bit unsigned integers (indices).
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Whether this is one of the float types.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::U32)
    }

    /// The CubeCL storage type that kernels are specialised on.
    pub fn storage_type(self) -> StorageType {
        self.cube_type().storage_type()
    }

    /// The CubeCL type of one element.
    pub fn cube_type(self) -> Type {
        match self {
            DType::F32 => f32::as_type_native_unchecked(),
            DType::F16 => half::f16::as_type_native_unchecked(),
            DType::BF16 => half::bf16::as_type_native_unchecked(),
            DType::U32 => u32::as_type_native_unchecked(),
        }
    }

    /// Lower-case name (`"f32"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }
}

/// Host element types that can be uploaded to and downloaded from a [`crate::Tensor`].
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The dtype this host type maps to.
    const DTYPE: DType;
    /// Lossless (f16, bf16 → f32) or rounding (f32 → f16/bf16) conversion from f32.
    fn from_f32(v: f32) -> Self;
    /// Conversion to f32 (exact for every float storage type; u32 may round).
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
    fn from_f32(v: f32) -> Self {
        v as u32
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}
