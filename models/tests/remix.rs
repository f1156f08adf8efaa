//! REMIX (spec §2, §3 E4): the LCM correlation fit, the L_LCM term against a dense f64
//! Gaussian NLL, the inversion, and `lapis reproduce remix --quick`.

use lapis_models::remix::*;
use lapis_ops::Device;

fn dev() -> Device {
    Device::auto().expect("a device")
}

/// A known LCM with increasing, unevenly spaced anchors and varied gains (C = 24).
fn known(c: usize, seed: u64) -> LcmCorr {
    let mut rng = lapis_models::data::SplitMix64::new(seed);
    let mut a = Vec::with_capacity(c);
    let mut x = -1.0;
    for _ in 0..c {
        x += 0.02 + 0.1 * rng.next_f64();
        a.push(x);
    }
    LcmCorr {
        a,
        w: (0..c).map(|_| 0.5 + 1.5 * rng.next_f64()).collect(),
        ut: (0..c).map(|_| -1.0 + rng.next_f64()).collect(),
    }
}

#[test]
#[allow(clippy::needless_range_loop)]
fn lcm_fit_gradient_matches_finite_differences() {
    // Exact host gradient of mean((R_LCM − R)²) vs central differences (f64, h = 1e-6):
    // relative error ≤ 1e-6 of the largest gradient entry (truncation error is O(h²)).
    let c = 9;
    let target = known(c, 5).corr();
    let mut m = known(c, 11);
    m.a.iter_mut().for_each(|v| *v *= 0.7);
    let (_, g) = m.mse_grad(&target);
    let scale = g.iter().flatten().fold(0f64, |s, v| s.max(v.abs()));
    let h = 1e-6;
    for p in 0..3 {
        for k in 0..c {
            let mut plus = m.clone();
            let mut minus = m.clone();
            let (vp, vm) = match p {
                0 => (&mut plus.a[k], &mut minus.a[k]),
                1 => (&mut plus.w[k], &mut minus.w[k]),
                _ => (&mut plus.ut[k], &mut minus.ut[k]),
            };
            *vp += h;
            *vm -= h;
            let fd = (plus.mse(&target) - minus.mse(&target)) / (2.0 * h);
            assert!(
                (fd - g[p][k]).abs() <= 1e-6 * scale,
                "param {p}[{k}]: fd {fd} vs exact {}",
                g[p][k]
            );
        }
    }
}

#[test]
fn lcm_fit_recovers_known_correlation() {
    // Fit from REMIX's init (ũ = 0, w = 0.1, a = linspace) to a known LCM's correlation
    // with the spec's optimiser (Adam lr 0.01) for 1 000 steps: the MSE must fall below
    // 2 % of the diagonal model's (R = I) and below 5 % of where it started.
    let c = 24;
    let target = known(c, 7).corr();
    let mut m = LcmCorr::init(c);
    let log = m.fit(&target, 1000, 0.01);
    println!("{log:?}");
    assert!(log.mse_end <= 0.02 * log.mse_diag, "{log:?}");
    assert!(log.mse_end <= 0.05 * log.mse_start, "{log:?}");
    // The spec's 200 steps already lower it.
    let mut m2 = LcmCorr::init(c);
    let l2 = m2.fit(&target, 200, 0.01);
    assert!(l2.mse_end < l2.mse_start, "{l2:?}");
}

#[test]
fn lcm_term_matches_dense_gaussian_nll() {
    // L_LCM of one layer (lapis_graph::Lcm::nll, f32, O(C) per vector) against the dense
    // f64 Gaussian NLL per dimension with Σ = diag(σ) R_LCM diag(σ) + 1e-5·I (Cholesky), and
    // its gradient w.r.t. h against Σ⁻¹(h − μ)/(N·C). Tolerance 1e-4 relative: the f32 bar
    // of spec claim 1.
    let dev = dev();
    let (c, n) = (12usize, 7usize);
    let lcm = known(c, 3);
    let mut rng = lapis_models::data::SplitMix64::new(9);
    let var: Vec<f64> = (0..c).map(|_| 0.3 + 2.0 * rng.next_f64()).collect();
    let mu: Vec<f64> = (0..c).map(|_| rng.next_f64() - 0.5).collect();
    let h: Vec<f32> = (0..n * c)
        .map(|_| (3.0 * rng.next_f64() - 1.5) as f32)
        .collect();
    let (a, u, w) = lcm.scaled(&var);
    let t = |v: &[f32]| lapis_ops::Tensor::from_slice(&dev, &[v.len()], v).unwrap();
    let lc = [t(&a), t(&u), t(&w)];
    let mut mf = Vec::new();
    for _ in 0..n {
        mf.extend(mu.iter().map(|&m| m as f32));
    }
    let mean_full = lapis_ops::Tensor::from_slice(&dev, &[n, c], &mf).unwrap();
    let tape = lapis_graph::Tape::new();
    let hv = tape.leaf(lapis_ops::Tensor::from_slice(&dev, &[n, c], &h).unwrap());
    let term = lcm_nll_term(&hv, &mean_full, &lc).unwrap();
    let got = term.value().to_scalar().unwrap() as f64;
    let cov = lcm.covariance(&var);
    let want = -gaussian_ll_per_dim(&h, c, &mu, &cov).unwrap();
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "L_LCM {got} vs dense {want}"
    );
    // Gradient: ∂/∂h_b = Σ⁻¹(h_b − μ)/(N·C).
    let g = lapis_graph::backward(&term).unwrap();
    let gh = g.get(&hv).unwrap().to_vec::<f32>().unwrap();
    let l = cholesky(&cov, c).unwrap();
    let mut worst = 0f64;
    let mut scale = 0f64;
    for b in 0..n {
        let r: Vec<f64> = (0..c).map(|i| h[b * c + i] as f64 - mu[i]).collect();
        // Solve L Lᵀ s = r.
        let mut z = vec![0.0; c];
        for i in 0..c {
            let mut s = r[i];
            for k in 0..i {
                s -= l[i * c + k] * z[k];
            }
            z[i] = s / l[i * c + i];
        }
        let mut s = vec![0.0; c];
        for i in (0..c).rev() {
            let mut v = z[i];
            for k in i + 1..c {
                v -= l[k * c + i] * s[k];
            }
            s[i] = v / l[i * c + i];
        }
        for i in 0..c {
            let want = s[i] / (n * c) as f64;
            worst = worst.max((gh[b * c + i] as f64 - want).abs());
            scale = scale.max(want.abs());
        }
    }
    assert!(
        worst <= 1e-4 * scale,
        "gradient error {worst} (scale {scale})"
    );
}

#[test]
fn inversion_reduces_its_loss() {
    // A teacher trained 3 epochs on task 1, inverted for 40 steps (Adam lr 0.05, 40
    // samples per class, α_frob = 0.1 with its task-1 LCM fit): the loss must fall to at
    // most half its first value (the quick run sees ≈ 0.16), and the teacher must label
    // its synthetic digits better than chance (0.5).
    let dev = dev();
    let data = task_data(1, false).unwrap();
    let mut cfg = lapis_models::remix::repro_config(5, 20);
    cfg.epochs = 3;
    cfg.lcm_steps = 50;
    let start = task1(&dev, &data, &cfg, 1).unwrap();
    assert!(start.acc > 0.9, "task-1 accuracy {}", start.acc);
    let targets = teacher_targets(&dev, &start.net, Some(&start.lcm)).unwrap();
    let inv_cfg = InvConfig {
        steps: 40,
        lr: 0.05,
        per_class: 40,
        alpha: 0.1,
        tv: 0.01,
    };
    let inv = invert(&dev, &start.net, 2, &targets, &inv_cfg, 4, || {}).unwrap();
    println!(
        "{} -> {} (teacher acc {})",
        inv.loss_start, inv.loss_end, inv.teacher_acc
    );
    assert!(inv.loss_end <= 0.5 * inv.loss_start);
    assert!(inv.teacher_acc > 0.5);
    assert_eq!(inv.x.len(), 80 * D_IN);
}

fn check_report(dir: &std::path::Path) {
    let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["name"], "remix");
    assert_eq!(r["size"], "quick");
    let claims = r["claims"].as_array().unwrap();
    let gating: Vec<_> = claims.iter().filter(|c| c["gating"] == true).collect();
    assert!(gating.len() >= 5, "{} gating claims", gating.len());
    for c in &gating {
        assert_eq!(c["passed"], true, "gating claim failed: {c}");
    }
    let plots = r["plots"].as_array().unwrap();
    assert!(plots.len() >= 2, "{} plots", plots.len());
    for p in plots {
        let path = dir.join(p.as_str().unwrap());
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(img.width() > 100 && img.height() > 100);
    }
}

#[test]
fn reproduce_remix_quick_cli() {
    let dir = std::env::temp_dir().join(format!("lapis-remix-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args(["reproduce", "remix", "--quick", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit {:?}", out.status);
    check_report(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn task_data_splits_and_orders() {
    // 70/30 stratified split (1258/539), the validation variant 80/20 of the 70 % side,
    // standardised train features (mean 0 per pixel with spread), a class-order permutation,
    // and positions consistent with the order.
    let d = task_data(2, false).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (1258, 539));
    let mut o = d.order.clone();
    o.sort_unstable();
    assert_eq!(o, (0..10).collect::<Vec<u32>>());
    assert_ne!(d.order, task_data(3, false).unwrap().order);
    let v = task_data(0, true).unwrap();
    assert_eq!(v.train.len() + v.test.len(), 1258);
    assert_eq!(v.train.len(), 1006);
    for p in 0..10u32 {
        assert!(v.test.y.iter().filter(|&&y| y == p).count() >= 20);
    }
    let m: f64 = (0..d.train.len())
        .map(|i| d.train.x[i * D_IN + 20] as f64)
        .sum::<f64>()
        / d.train.len() as f64;
    assert!(m.abs() < 1e-4, "pixel 20 mean {m}");
    // Positions follow the order: class position p holds digit order[p].
    let raw = lapis_models::data::digits().unwrap();
    assert_eq!(raw.labels().unwrap().len(), 1797);
    assert_eq!(
        d.train.classes(0, 2).y.iter().filter(|&&y| y > 1).count(),
        0
    );
}

/// Claim 6 uncut on one seed (the default run's seed 1 and its selected α_frob = 0.01): 60
/// epochs per task and 1 000 inversion steps, REMIX against its α_frob = 0 baseline from one
/// shared task-1 model. Prints both final accuracies and their difference; the claim's bar
/// (≥ 1 point, mean of 3 seeds) is for the report, so this only checks that both runs learn
/// (≥ 3× chance). About 1 h on 2-core lavapipe:
/// `cargo test --release -p lapis-models --test remix -- --ignored claim6_uncut_one_seed --nocapture`.
#[test]
#[ignore = "uncut E4 on one seed: about an hour on lavapipe"]
fn claim6_uncut_one_seed() {
    let dev = dev();
    let cfg = repro_config(5, 1);
    let seed = 1;
    let data = task_data(seed, false).expect("digits");
    let start = task1(&dev, &data, &cfg, seed).expect("task 1");
    let t0 = std::time::Instant::now();
    let mut finals = Vec::new();
    for (name, kind) in [
        ("REMIX α=0.01", Kind::Remix(0.01)),
        ("baseline α=0", Kind::Remix(0.0)),
    ] {
        let (mut n, mut next) = (0usize, 500usize);
        let r = run(&dev, &data, &start, kind, &cfg, seed, &mut |_m: &str| {
            n += 1;
            if n == next {
                next += 500;
                eprintln!("[{name}] {n} units, {:.0} s", t0.elapsed().as_secs_f64());
            }
        })
        .expect("run");
        let acc = 100.0 * r.avg.last().copied().unwrap();
        println!(
            "uncut seed {seed}: {name} final average accuracy {acc:.2} % (per task after 5: {:?})",
            r.acc.last()
        );
        assert!(acc >= 30.0, "{name} did not learn: {acc} %");
        finals.push(acc);
    }
    println!(
        "uncut seed {seed}: REMIX − baseline = {:+.2} points ({:.0} s)",
        finals[0] - finals[1],
        t0.elapsed().as_secs_f64()
    );
}
