//! End to end: an MLP (64 → 128 → 10, ReLU) trained with the tape and Adam on the shipped
//! digits (`data/images/digits8x8.csv`; fixed split: first 1500 rows train, the remaining
//! 297 test) reaches ≥ 90 % test accuracy on the test device.

use lapis_graph::optim::{clip_grad_norm, warmup_cosine, Adam};
use lapis_graph::{backward, Tape};
use lapis_ops::{Device, Tensor};
use lapis_tests::{device, digits};

fn one_hot(dev: &Device, y: &[usize]) -> Tensor {
    let mut v = vec![0.0f32; y.len() * 10];
    for (r, &c) in y.iter().enumerate() {
        v[r * 10 + c] = 1.0;
    }
    Tensor::from_slice(dev, &[y.len(), 10], &v).unwrap()
}

#[test]
fn mlp_learns_digits() {
    let dev = device();
    let (x, y) = digits();
    assert_eq!(y.len(), 1797);
    let (ntr, batch, epochs) = (1500usize, 100usize, 25usize);
    let batches: Vec<(Tensor, Tensor)> = (0..ntr / batch)
        .map(|b| {
            let r = b * batch..(b + 1) * batch;
            (
                Tensor::from_slice(&dev, &[batch, 64], &x[r.start * 64..r.end * 64]).unwrap(),
                one_hot(&dev, &y[r]),
            )
        })
        .collect();
    let xte = Tensor::from_slice(&dev, &[y.len() - ntr, 64], &x[ntr * 64..]).unwrap();
    // He-style init with fixed seeds.
    let mut params = [
        lapis_ops::normal(&dev, &[64, 128], 0.0, (2.0f32 / 64.0).sqrt(), 11).unwrap(),
        lapis_ops::zeros(&dev, &[128], lapis_ops::DType::F32).unwrap(),
        lapis_ops::normal(&dev, &[128, 10], 0.0, (2.0f32 / 128.0).sqrt(), 12).unwrap(),
        lapis_ops::zeros(&dev, &[10], lapis_ops::DType::F32).unwrap(),
    ];
    let mut opt = Adam::adamw(0.01, 1e-2);
    let total = epochs * batches.len();
    let (mut first, mut last) = (None, 0.0);
    for step in 0..total {
        let (xb, yb) = &batches[step % batches.len()];
        let tape = Tape::new();
        let vars: Vec<_> = params.iter().map(|p| tape.leaf(p.clone())).collect();
        let h = tape
            .constant(xb.clone())
            .matmul(&vars[0])
            .unwrap()
            .add(&vars[1])
            .unwrap()
            .relu()
            .unwrap();
        let z = h.matmul(&vars[2]).unwrap().add(&vars[3]).unwrap();
        let loss = z
            .log_softmax(1)
            .unwrap()
            .mul(&tape.constant(yb.clone()))
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(-1.0 / batch as f32, 0.0)
            .unwrap();
        let l = loss.value().to_scalar().unwrap();
        first.get_or_insert(l);
        last = l;
        let g = backward(&loss).unwrap();
        let mut grads: Vec<Tensor> = vars.iter().map(|v| g.get(v).unwrap().clone()).collect();
        clip_grad_norm(&mut grads, 5.0).unwrap();
        opt.lr = warmup_cosine(step, 20, total, 0.01, 0.1);
        let mut refs: Vec<&mut Tensor> = params.iter_mut().collect();
        opt.step(&mut refs, &grads).unwrap();
    }
    let h = lapis_ops::relu(
        &lapis_ops::add(&lapis_ops::matmul(&xte, &params[0]).unwrap(), &params[1]).unwrap(),
    )
    .unwrap();
    let z = lapis_ops::add(&lapis_ops::matmul(&h, &params[2]).unwrap(), &params[3]).unwrap();
    let pred = z.to_vec::<f32>().unwrap();
    let correct = (0..y.len() - ntr)
        .filter(|&r| {
            let row = &pred[r * 10..(r + 1) * 10];
            let arg = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            arg == y[ntr + r]
        })
        .count();
    let acc = correct as f64 / (y.len() - ntr) as f64;
    eprintln!(
        "digits MLP: loss {:.3} → {last:.3}, test accuracy {:.1} % ({correct}/{})",
        first.unwrap(),
        100.0 * acc,
        y.len() - ntr
    );
    assert!(acc >= 0.90, "test accuracy {acc} < 0.90");
}
