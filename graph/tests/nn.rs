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
    for (v, n) in vars.iter().zip(params.names()) {
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
            other.get(i).to_vec::<f32>().unwrap(),
            params.get(i).to_vec::<f32>().unwrap()
        );
    }
    let mut wrong = Params::new();
    Linear::new(&mut wrong, "layer1", &dev, 4, 5, true, 7).unwrap();
    assert!(
        wrong.load(&path).is_err(),
        "shape mismatch is a typed error"
    );
}
