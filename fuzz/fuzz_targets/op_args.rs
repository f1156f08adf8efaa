//! Fuzzes the argument checks of lapis-ops: arbitrary shapes, axes, ranges, indices and
//! scalars go through every op; each call must return `Ok` or a typed `LapisError`,
//! never panic. Run: `cd fuzz && cargo +nightly fuzz run op_args` (needs a device:
//! lavapipe is enough).
#![no_main]

use lapis_ops::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;

fn take(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}

fn shape(data: &mut &[u8]) -> Vec<usize> {
    let rank = take(data) % 5;
    (0..rank).map(|_| (take(data) % 9) as usize).collect()
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(dev) = Device::auto() else { return };
    let mut data = bytes;
    let sa = shape(&mut data);
    let sb = shape(&mut data);
    let na: usize = sa.iter().product();
    let nb: usize = sb.iter().product();
    let a = Tensor::from_slice(&dev, &sa, &vec![0.5f32; na]);
    let b = Tensor::from_slice(&dev, &sb, &vec![2.0f32; nb]);
    let axis = take(&mut data) as usize % 6;
    let (s, e) = (take(&mut data) as usize % 10, take(&mut data) as usize % 10);
    let scalar = f32::from_bits(u32::from_le_bytes([take(&mut data), take(&mut data), take(&mut data), take(&mut data)]));
    if let (Ok(a), Ok(b)) = (&a, &b) {
        let _ = lapis_ops::add(a, b);
        let _ = lapis_ops::matmul(a, b);
        let _ = lapis_ops::concat(&[a, b], axis);
        let _ = lapis_ops::broadcast_to(a, b.shape());
        let idx: Vec<u32> = (0..nb).map(|i| (i as u32).wrapping_mul(scalar.to_bits())).collect();
        if let Ok(it) = Tensor::from_slice(&dev, &sb, &idx) {
            let _ = lapis_ops::gather(a, axis, &it);
            let _ = lapis_ops::index_select(a, axis, &it);
            let _ = lapis_ops::scatter_add(a, axis, &it, b);
        }
    }
    if let Ok(a) = &a {
        let _ = lapis_ops::slice(a, axis, s, e);
        let _ = lapis_ops::sum(a, axis);
        let _ = lapis_ops::argmax(a, axis);
        let _ = lapis_ops::softmax(a, axis);
        let _ = lapis_ops::transpose(a, axis, s);
        let _ = lapis_ops::permute(a, &[axis, s, e]);
        let _ = lapis_ops::affine(a, scalar, 1.0);
        let _ = lapis_ops::to_dtype(a, DType::BF16);
        let _ = a.reshape(&sb);
    }
    let _ = lapis_ops::uniform(&dev, &sa, scalar, 1.0, 0);
    let _ = lapis_ops::fill(&dev, &sa, scalar, DType::F16);
});
