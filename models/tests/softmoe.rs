//! SoftMoE (specs/sparse-methods.md §1) below the reproduction: the sparse expert layer
//! against its dense path, the learned allocation's budget, causality, the checkpoint
//! round trip and sampling, and the errors users see.

use lapis_graph::nn::Params;
use lapis_graph::Tape;
use lapis_models::softmoe::{self, experiment, soft, CharLm, LmConfig, Routing};
use lapis_ops::{Device, Tensor};

fn device() -> Device {
    Device::auto().expect("a compute device (lavapipe in CI: apt-get install mesa-vulkan-drivers)")
}

/// Sparse (grouped, routed pairs only) and dense expert evaluation agree in outputs and in
/// the gradients w.r.t. tokens, router and a tracked k, for every routing. Tolerance 1e-5
/// relative: the two paths sum the same products in different orders (f32, ≤ 24 terms);
/// measured ~1e-7.
#[test]
fn sparse_experts_match_the_dense_path() {
    let gap = softmoe::sparse_dense_gap(&device(), 3).unwrap();
    eprintln!("sparse vs dense: {gap:.2e}");
    assert!(gap <= 1e-5, "sparse vs dense rel. diff {gap:e}");
}

/// `k_ℓ = 1 + (K − L) softmax(η)` sums to K and stays ≥ 1 for any η (here large ones).
/// Tolerance 1e-5: an f32 softmax of 4 entries and a sum of 4 values near 2.
#[test]
fn learned_allocation_keeps_the_budget() {
    let dev = device();
    let mut params = Params::new();
    let model = CharLm::new(&mut params, &dev, LmConfig::spec(soft(None), 0)).unwrap();
    let eta = params
        .find("eta")
        .expect("the learned allocation registers eta");
    params
        .set(
            eta,
            Tensor::from_slice(&dev, &[4], &[5.0f32, -3.0, 0.5, 9.0]).unwrap(),
        )
        .unwrap();
    let tape = Tape::new();
    let vars = params.constants_on(&tape);
    let k = model
        .allocation(&vars)
        .unwrap()
        .unwrap()
        .value()
        .to_f32_vec()
        .unwrap();
    let sum: f32 = k.iter().sum();
    assert!((sum - 8.0).abs() <= 1e-5, "Σk = {sum}");
    assert!(k.iter().all(|&v| v >= 1.0), "{k:?}");
    assert!(k[3] > 4.9 && k[1] < 1.0001, "{k:?}");
}

/// Logits at positions ≤ t do not depend on bytes after t (causal attention, per-token
/// routing), for all four routings, on untrained models: exact to 1e-5.
#[test]
fn the_lm_is_causal() {
    let dev = device();
    for (_, _, routing) in softmoe::runs() {
        let mut params = Params::new();
        let mut cfg = LmConfig::spec(routing, 1);
        cfg.context = 16;
        let model = CharLm::new(&mut params, &dev, cfg).unwrap();
        let gap = softmoe::causality_gap(&dev, &model, &params, 2).unwrap();
        assert!(gap <= 1e-5, "{routing:?}: {gap:e}");
    }
}

/// M7's check on the toy: analytic gradients of η and W_g vs central differences.
#[test]
fn eta_and_router_gradients_match_finite_differences() {
    let (err, n) = softmoe::toy_gradcheck(&device(), 7).unwrap();
    eprintln!("toy gradcheck: worst rel. err {err:.2e} over {n} directions");
    assert!(n >= 3, "only {n} directions kept the mask");
    assert!(err <= 1e-2, "rel. err {err:e}");
}

/// A saved model loads with its configuration and samples the same text for the same
/// seed; a file that is not a SoftMoE model is refused by name.
#[test]
fn checkpoint_round_trip_and_sampling() {
    let dev = device();
    let mut params = Params::new();
    let mut cfg = LmConfig::spec(Routing::TopK { k: 2 }, 4);
    cfg.context = 8;
    let model = CharLm::new(&mut params, &dev, cfg.clone()).unwrap();
    let dir = std::env::temp_dir().join(format!("lapis-softmoe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    experiment::save_model(&path, &model, &params).unwrap();
    let (m2, p2) = experiment::load_model(&dev, &path).unwrap();
    assert_eq!(m2.cfg, cfg);
    let a = experiment::sample(&dev, &model, &params, b"Hi", 12, 0.8, 5).unwrap();
    let b = experiment::sample(&dev, &m2, &p2, b"Hi", 12, 0.8, 5).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 14);
    assert!(experiment::sample(&dev, &m2, &p2, b"Hi", 1, 0.0, 5).is_err());
    let other = dir.join("other.safetensors");
    lapis_graph::checkpoint::save(
        &other,
        &[("x", &Tensor::from_slice(&dev, &[1], &[1f32]).unwrap())],
    )
    .unwrap();
    let e = experiment::load_model(&dev, &other)
        .err()
        .expect("not a SoftMoE model");
    assert!(e.to_string().contains("softmoe.config"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad configurations are refused with the argument's name.
#[test]
fn bad_configurations_are_refused() {
    let dev = device();
    let mut params = Params::new();
    let mut cfg = LmConfig::spec(Routing::TopK { k: 9 }, 0);
    let e = CharLm::new(&mut params, &dev, cfg.clone()).err().unwrap();
    assert!(e.to_string().contains("`k`"), "{e}");
    cfg.routing = Routing::Soft {
        k: None,
        budget: 20.0,
        alpha: 1.0,
        c_cap: 2.0,
        c_tau: 1.8,
    };
    let e = CharLm::new(&mut params, &dev, cfg.clone()).err().unwrap();
    assert!(e.to_string().contains("budget"), "{e}");
    cfg.routing = soft(Some(1.5));
    cfg.heads = 5;
    assert!(CharLm::new(&mut params, &dev, cfg).is_err());
}

/// The fortunes split: 90 / 10 by whole fortunes, every byte kept.
#[test]
fn fortunes_split_keeps_every_fortune() {
    let f = lapis_models::data::fortunes().unwrap();
    let (train, val) = lapis_models::data::fortunes_split().unwrap();
    let total: usize = f.iter().map(|x| x.len() + 1).sum();
    assert_eq!(train.len() + val.len(), total);
    let ratio = train.len() as f64 / total as f64;
    assert!((0.85..0.95).contains(&ratio), "train share {ratio}");
    assert!(f.len() > 5000, "{} fortunes", f.len());
}
