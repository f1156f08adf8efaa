//! The parameter registry and Linear: names, shapes, checkpoint round trip.

use lapis_graph::nn::{Linear, Params};
use lapis_graph::{backward, Tape};
use lapis_tests::device;

#[test]
fn registry_names_and_checkpoint_round_trip() {
    let dev = device();
    let mut params = Params::new();
    let l1 = Linear::new(&mut params, "layer1", &dev, 4, 3, true, 1).unwrap();
    let l2 = Linear::new(&mut params, "layer2", &dev, 3, 2, false, 2).unwrap();
    assert_eq!(
        params.names(),
        vec!["layer1.weight", "layer1.bias", "layer2.weight"]
    );
    assert!(
        Linear::new(&mut params, "layer1", &dev, 4, 3, true, 3).is_err(),
        "duplicate names"
    );
    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    let x = tape.constant(lapis_ops::normal(&dev, &[5, 4], 0.0, 1.0, 9).unwrap());
    let y = l2
        .forward(&vars, &l1.forward(&vars, &x).unwrap().relu().unwrap())
        .unwrap();
    assert_eq!(y.value().shape(), &[5, 2]);
    let g = backward(&y.sum_all().unwrap()).unwrap();
    for (v, n) in vars.vars().iter().zip(params.names()) {
        assert_eq!(g.get(v).expect(n).shape(), v.value().shape(), "{n}");
    }
    let path = std::env::temp_dir().join(format!("lapis-nn-{}.safetensors", std::process::id()));
    params.save(&path).unwrap();
    let mut other = Params::new();
    Linear::new(&mut other, "layer1", &dev, 4, 3, true, 7).unwrap();
    Linear::new(&mut other, "layer2", &dev, 3, 2, false, 8).unwrap();
    other.load(&path).unwrap();
    for i in 0..3 {
        assert_eq!(
            other.at(i).unwrap().to_vec::<f32>().unwrap(),
            params.at(i).unwrap().to_vec::<f32>().unwrap()
        );
    }
    let mut wrong = Params::new();
    Linear::new(&mut wrong, "layer1", &dev, 4, 5, true, 7).unwrap();
    assert!(
        wrong.load(&path).is_err(),
        "shape mismatch is a typed error"
    );
}

/// Handles are tied to their registry: a layer fed another model's Vars, a handle looked
/// up in the wrong registry, and a `set` of the wrong shape are typed errors (not a
/// wrong-shaped result, not a panic).
#[test]
fn handles_belong_to_their_registry() {
    let dev = device();
    let mut a = Params::new();
    let la = Linear::new(&mut a, "l", &dev, 4, 5, true, 1).unwrap();
    let mut b = Params::new();
    let lb = Linear::new(&mut b, "l", &dev, 4, 3, true, 2).unwrap();
    let tape = Tape::new();
    let (va, vb) = (a.on_tape(&tape), b.on_tape(&tape));
    let x = tape.constant(lapis_ops::normal(&dev, &[2, 4], 0.0, 1.0, 3).unwrap());
    assert_eq!(la.forward(&va, &x).unwrap().shape(), &[2, 5]);
    assert_eq!(lb.forward(&vb, &x).unwrap().shape(), &[2, 3]);
    let err = la.forward(&vb, &x).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");
    let hb = b.handles()[0];
    assert!(a.get(hb).is_err());
    assert!(a.name(hb).is_err());
    let ha = a.find("l.weight").unwrap();
    assert_eq!(a.name(ha).unwrap(), "l.weight");
    assert!(a
        .set(
            ha,
            lapis_ops::zeros(&dev, &[4, 3], lapis_ops::DType::F32).unwrap()
        )
        .is_err());
    a.set(
        ha,
        lapis_ops::zeros(&dev, &[4, 5], lapis_ops::DType::F32).unwrap(),
    )
    .unwrap();
    assert!(a
        .get(ha)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(a.at(2).is_err());
    // A clone keeps its registry (same names, same order): its Vars fit the same layers.
    let c = a.clone();
    assert_eq!(la.forward(&c.on_tape(&tape), &x).unwrap().shape(), &[2, 5]);
}
