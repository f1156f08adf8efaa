//! Strict checking (`lapis_ops::set_strict_checks`): every deferred device check is
//! resolved inside the op that raised it, so the op itself returns the typed error. Its
//! own test binary: the setting is process-wide.

use lapis_ops::{LapisError, Tensor};
use lapis_tests::device;

#[test]
fn strict_mode_fails_at_the_offending_call() {
    let dev = device();
    lapis_ops::set_strict_checks(true);
    assert!(lapis_ops::strict_checks());
    let s = Tensor::from_slice(&dev, &[3], &[0.0f32, 1.0, 2.0]).unwrap();
    let bad = Tensor::from_slice(&dev, &[3], &[0.0f32, f32::NAN, 2.0]).unwrap();
    let v = Tensor::from_slice(&dev, &[3], &[1.0f32, 1.0, 1.0]).unwrap();
    let e = lapis_ops::laplace_apply(&s, &bad, &v, 1.0).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "laplace_apply",
                name: "targets",
                ..
            }
        ),
        "{e}"
    );
    let neg = Tensor::from_slice(&dev, &[1], &[-2.0f32]).unwrap();
    let e = lapis_ops::laplace_apply_phased(&s, &s, &v, &neg, 0.5).unwrap_err();
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "a", .. }),
        "{e}"
    );
    let idx = Tensor::from_slice(&dev, &[2], &[0u32, 3]).unwrap();
    let e = lapis_ops::index_select(&v, 0, &idx).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "index_select",
                name: "index",
                ..
            }
        ),
        "{e}"
    );
    let x = Tensor::from_slice(&dev, &[1, 3], &[1.0f32, 2.0, 3.0]).unwrap();
    let k = Tensor::from_slice(&dev, &[1], &[3.0f32]).unwrap();
    let e = lapis_ops::soft_topk(&x, &k, 0.5).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "soft_topk",
                name: "k",
                ..
            }
        ),
        "{e}"
    );
    // Good input passes and nothing stays pending.
    let y = lapis_ops::laplace_apply(&s, &s, &v, 1.0).unwrap();
    assert_eq!(dev.pending_checks(), 0);
    assert_eq!(y.to_vec::<f32>().unwrap().len(), 3);
    lapis_ops::set_strict_checks(false);
    // Off again: the same bad call returns Ok and the check waits for the next read.
    let y = lapis_ops::laplace_apply(&s, &bad, &v, 1.0).unwrap();
    assert!(dev.pending_checks() > 0);
    assert!(matches!(
        y.to_vec::<f32>(),
        Err(LapisError::InvalidArgument {
            name: "targets",
            ..
        })
    ));
    assert_eq!(dev.pending_checks(), 0);
}
