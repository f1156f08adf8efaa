//! The one complex-multiply helper of the phased kernels (planar `re`/`im` values).

use cubecl::prelude::*;

/// Real part of `(ar + i·ai)(br + i·bi)`.
#[cube]
pub fn cmul_re(ar: f32, ai: f32, br: f32, bi: f32) -> f32 {
    ar * br - ai * bi
}

/// Imaginary part of `(ar + i·ai)(br + i·bi)`.
#[cube]
pub fn cmul_im(ar: f32, ai: f32, br: f32, bi: f32) -> f32 {
    ar * bi + ai * br
}
