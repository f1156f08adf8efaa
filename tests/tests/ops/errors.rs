//! Every `LapisError` variant: triggered through the API where the device allows it,
//! and always before any launch (bad input never panics).

use lapis_ops::{DType, Device, LapisError, Tensor};
use lapis_tests::*;

fn t(dev: &Device, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_slice(dev, shape, &vec![1.0f32; n]).unwrap()
}

#[test]
fn shape_mismatch() {
    let dev = device();
    let e = lapis_ops::add(&t(&dev, &[2, 3]), &t(&dev, &[4])).unwrap_err();
    assert!(
        matches!(e, LapisError::ShapeMismatch { op: "add", .. }),
        "{e}"
    );
    let e = lapis_ops::matmul(&t(&dev, &[2, 3]), &t(&dev, &[4, 2])).unwrap_err();
    assert!(
        matches!(e, LapisError::ShapeMismatch { op: "matmul", .. }),
        "{e}"
    );
    let e = t(&dev, &[2, 3]).reshape(&[7]).unwrap_err();
    assert!(matches!(e, LapisError::ShapeMismatch { .. }), "{e}");
    let e = lapis_ops::concat(&[&t(&dev, &[2, 3]), &t(&dev, &[3, 3])], 1).unwrap_err();
    assert!(matches!(e, LapisError::ShapeMismatch { .. }), "{e}");
}

#[test]
fn shape() {
    let dev = device();
    let e = Tensor::from_slice::<f32>(&dev, &[0, 3], &[]).unwrap_err();
    assert!(matches!(e, LapisError::Shape { .. }), "{e}");
    let e = lapis_ops::matmul(&t(&dev, &[3]), &t(&dev, &[3, 1])).unwrap_err();
    assert!(matches!(e, LapisError::Shape { op: "matmul", .. }), "{e}");
    let idx = Tensor::from_slice(&dev, &[2, 1], &[0u32, 1]).unwrap();
    let e = lapis_ops::index_select(&t(&dev, &[4]), 0, &idx).unwrap_err();
    assert!(matches!(e, LapisError::Shape { .. }), "{e}");
}

#[test]
fn dtype() {
    let dev = device();
    let idx = Tensor::from_slice(&dev, &[2], &[0u32, 1]).unwrap();
    let e = lapis_ops::exp(&idx).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::DType {
                op: "exp",
                got: DType::U32,
                ..
            }
        ),
        "{e}"
    );
    let e = lapis_ops::gather(&t(&dev, &[2]), 0, &t(&dev, &[2])).unwrap_err();
    assert!(matches!(e, LapisError::DType { .. }), "{e}");
    if dev.supports(DType::F16) {
        let h = Tensor::from_f32(&dev, &[2], &[1.0, 2.0], DType::F16).unwrap();
        let e = lapis_ops::add(&t(&dev, &[2]), &h).unwrap_err();
        assert!(matches!(e, LapisError::DType { .. }), "{e}");
    }
}

#[test]
fn size_over_limit() {
    let dev = device();
    // 2^16 · 2^16 = 2^32 elements > u32::MAX: refused before any allocation.
    let e = lapis_ops::zeros(&dev, &[65536, 65536], DType::F32).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::SizeOverLimit {
                name: "elements",
                ..
            }
        ),
        "{e}"
    );
    // Over the device's buffer size (lavapipe: 128 MiB default binding size).
    let too_big = (dev.info().max_buffer_bytes / 4 + 1).min(u32::MAX as u64) as usize;
    if (too_big as u64) * 4 > dev.info().max_buffer_bytes {
        let e = lapis_ops::zeros(&dev, &[too_big], DType::F32).unwrap_err();
        assert!(matches!(e, LapisError::SizeOverLimit { .. }), "{e}");
    }
}

#[test]
fn invalid_argument() {
    let dev = device();
    let x = t(&dev, &[4, 5]);
    let cases = [
        lapis_ops::slice(&x, 1, 3, 3).unwrap_err(),
        lapis_ops::slice(&x, 1, 0, 6).unwrap_err(),
        lapis_ops::sum(&x, 2).unwrap_err(),
        lapis_ops::softmax(&x, 9).unwrap_err(),
        lapis_ops::permute(&x, &[0, 0]).unwrap_err(),
        lapis_ops::affine(&x, f32::NAN, 0.0).unwrap_err(),
        lapis_ops::uniform(&dev, &[3], 1.0, 1.0, 0).unwrap_err(),
        lapis_ops::normal(&dev, &[3], 0.0, -1.0, 0).unwrap_err(),
        lapis_ops::fill(&dev, &[3], f32::INFINITY, DType::F32).unwrap_err(),
        Tensor::from_slice(&dev, &[3], &[1.0f32]).unwrap_err(),
    ];
    for e in cases {
        assert!(matches!(e, LapisError::InvalidArgument { .. }), "{e}");
    }
    // An index out of range is a deferred device check (no read of the indices): the op
    // clamps it, and the next read returns the typed error naming the op and `index`.
    let idx = Tensor::from_slice(&dev, &[3], &[0u32, 5, 1]).unwrap();
    let e = deferred_err(&dev, lapis_ops::index_select(&x, 0, &idx));
    match e {
        LapisError::InvalidArgument {
            op: "index_select",
            name: "index",
            msg,
            ..
        } => assert!(msg.contains("must be <"), "{msg}"),
        e => panic!("{e}"),
    }
    // The natural read of the result reports it instead of returning data.
    let mut bad = vec![0u32; 15];
    bad[7] = 4;
    let idx2 = Tensor::from_slice(&dev, &[3, 5], &bad).unwrap();
    let e = match lapis_ops::gather(&x, 0, &idx2) {
        Ok(y) => y.to_vec::<f32>().unwrap_err(),
        Err(e) => e, // strict mode
    };
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "gather",
                name: "index",
                ..
            }
        ),
        "{e}"
    );
    // Cleared after the error: a good gather reads back.
    let ok = lapis_ops::gather(
        &x,
        0,
        &Tensor::from_slice(&dev, &[3, 5], &[1u32; 15]).unwrap(),
    );
    assert_eq!(ok.unwrap().to_vec::<f32>().unwrap().len(), 15);
}

#[test]
fn device_errors() {
    // An unknown LAPIS_DEVICE is an invalid argument; a runtime not compiled in or without
    // a driver is DeviceUnavailable with an install hint.
    match Device::cuda() {
        Ok(d) => eprintln!("CUDA present: {}", d.info()),
        Err(e) => {
            assert!(matches!(e, LapisError::DeviceUnavailable { .. }), "{e}");
            assert!(
                e.to_string().contains("cuda") || e.to_string().contains("CUDA"),
                "{e}"
            );
        }
    }
    // DeviceMismatch needs two runtimes at once; where both exist, check it for real.
    if let (Ok(c), Ok(w)) = (Device::cuda(), Device::wgpu()) {
        let e = lapis_ops::add(&t(&c, &[2]), &t(&w, &[2])).unwrap_err();
        assert!(matches!(e, LapisError::DeviceMismatch { .. }), "{e}");
    }
}

/// The variants that need a failing driver, file or parser are built directly here and
/// their messages checked (the checkpoint and data loaders raise them in later issues).
#[test]
fn messages_name_the_problem() {
    let io: LapisError = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file").into();
    assert!(io.to_string().contains("no such file"));
    let f = LapisError::Format {
        what: "w.safetensors".into(),
        msg: "header too short".into(),
    };
    assert!(f.to_string().contains("w.safetensors") && f.to_string().contains("header"));
    let oom = LapisError::OutOfMemory {
        op: "matmul",
        bytes: 1 << 40,
        msg: "alloc".into(),
    };
    assert!(oom.to_string().contains("1099511627776"));
    let k = LapisError::kernel("exp", "lost device");
    assert!(k.to_string().contains("exp") && k.to_string().contains("lost device"));
    let m = LapisError::DeviceMismatch {
        op: "add",
        lhs: "cuda".into(),
        rhs: "wgpu".into(),
    };
    assert!(m.to_string().contains("cuda") && m.to_string().contains("wgpu"));
    let u = LapisError::DeviceUnavailable {
        msg: "apt-get install mesa-vulkan-drivers".into(),
    };
    assert!(u.to_string().contains("mesa-vulkan-drivers"));
}

/// The backward functions check the gradient against the forward's shapes and return a
/// typed error (never a panic, never a silent broadcast of a wrongly shaped gradient).
#[test]
fn backward_functions_reject_bad_shapes() {
    use lapis_ops::{BinaryOp, ReduceOp, UnaryOp};
    let dev = device();
    let (x, y) = (t(&dev, &[2, 3]), t(&dev, &[2, 3]));
    let bad = t(&dev, &[1]);
    let u32s = Tensor::from_slice(&dev, &[3], &[0u32, 1, 2]).unwrap();
    let cases: Vec<(&str, lapis_ops::Result<()>)> = vec![
        (
            "unary_backward",
            lapis_ops::unary_backward(UnaryOp::Exp, &x, &y, &bad).map(drop),
        ),
        (
            "binary_backward",
            lapis_ops::binary_backward(BinaryOp::Mul, &x, &t(&dev, &[3]), &y, &bad).map(drop),
        ),
        (
            "binary_backward (operands)",
            lapis_ops::binary_backward(BinaryOp::Mul, &x, &t(&dev, &[4]), &y, &y).map(drop),
        ),
        (
            "sum_to_shape",
            lapis_ops::sum_to_shape(&x, &[2, 3, 4]).map(drop),
        ),
        (
            "sum_to_shape (size)",
            lapis_ops::sum_to_shape(&x, &[2, 2]).map(drop),
        ),
        (
            "reduce_backward",
            lapis_ops::reduce_backward(ReduceOp::Sum, &x, &t(&dev, &[2, 1]), &bad, Some(1))
                .map(drop),
        ),
        (
            "reduce_backward (axis)",
            lapis_ops::reduce_backward(ReduceOp::Max, &x, &bad, &bad, Some(5)).map(drop),
        ),
        (
            "matmul_backward",
            lapis_ops::matmul_backward(&t(&dev, &[3]), &x, &y).map(drop),
        ),
        (
            "softmax_backward",
            lapis_ops::softmax_backward(&y, &bad, 1).map(drop),
        ),
        (
            "log_softmax_backward",
            lapis_ops::log_softmax_backward(&y, &y, 2).map(drop),
        ),
        (
            "permute_backward",
            lapis_ops::permute_backward(&x, &[0, 0]).map(drop),
        ),
        (
            "slice_backward",
            lapis_ops::slice_backward(&x, &[2, 2], 1, 0).map(drop),
        ),
        (
            "linear_scan_backward",
            lapis_ops::linear_scan_backward(&bad, &x, &x, false).map(drop),
        ),
        (
            "linear_scan_complex_backward",
            lapis_ops::linear_scan_complex_backward(
                (&t(&dev, &[2]), &t(&dev, &[2])),
                (&x, &x),
                (&x, &bad),
                true,
            )
            .map(drop),
        ),
        (
            "rfft_backward",
            lapis_ops::rfft_backward(&t(&dev, &[2, 3]), &t(&dev, &[2, 3]), 8).map(drop),
        ),
        (
            "argsort_backward",
            lapis_ops::argsort_backward(&t(&dev, &[4]), &u32s).map(drop),
        ),
    ];
    for (name, r) in cases {
        assert!(r.is_err(), "{name} accepted bad shapes");
    }
}

/// `Device` implements `Display`: the runtime and the adapter (`wgpu · llvmpipe … (Vulkan)`).
#[test]
fn device_display_names_runtime_and_adapter() {
    let dev = device();
    let shown = dev.to_string();
    eprintln!("device: {shown}");
    assert!(shown.starts_with(dev.kind().name()), "{shown}");
    assert!(shown.contains(&dev.info().name), "{shown}");
    assert!(shown.contains(&dev.info().backend), "{shown}");
}

/// `LapisError::File` names the path and what was being done, and keeps the OS error as
/// its source.
#[test]
fn file_errors_name_the_path() {
    use std::error::Error as _;
    let path = std::path::Path::new("/no/such/dir/model.safetensors");
    let io = std::fs::read(path).unwrap_err();
    let e = LapisError::file("read checkpoint", path, io);
    let msg = e.to_string();
    assert!(msg.contains("/no/such/dir/model.safetensors"), "{msg}");
    assert!(msg.contains("read checkpoint"), "{msg}");
    assert!(e.source().is_some(), "the io::Error is the source");
    assert!(matches!(e, LapisError::File { ref path, .. } if path.ends_with("model.safetensors")));
}
