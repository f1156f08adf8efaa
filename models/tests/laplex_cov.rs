//! LAPLEX E3 (the Laplace covariance model of image patches) and `lapis laplex-cov
//! fit|sample`: the lag-1 correlation against hand-built cases, the fit on a shipped photo
//! against the diagonal Gaussian, the two-head Frobenius fit, the CLI round trip and its
//! argument errors, and the `--full` refusal on a small device.

use std::path::{Path, PathBuf};
use std::process::Command;

use lapis_models::data::{read_png, write_png, Image};
use lapis_models::laplex::cov::{
    fit_lcm, lag1_correlation, photos, raster_anchors, sample_patches, DenseGaussian, DiagGaussian,
    Fit, FitConfig, LcmModel, Region, TRAIN_FRACTION,
};
use lapis_ops::Device;

fn device() -> Device {
    Device::auto().expect("a compute device (lavapipe in CI: apt-get install mesa-vulkan-drivers)")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lapis_laplex_cov_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Hand-computed cases: pairs are `(r[y, x, c], r[y, x+1, c])` of residuals about `mean`.
#[test]
fn lag1_correlation_hand_built() {
    // p = 2, one channel, mean 0: pairs (1, 1), (2, 2), (−1, −1), (−2, −2) → +1.
    let x = [1.0, 1.0, 2.0, 2.0, -1.0, -1.0, -2.0, -2.0];
    let m = [0.0f32; 4];
    assert!((lag1_correlation(&x, 2, 1, &m) - 1.0).abs() < 1e-12);
    // Pairs (1, −1), (2, −2), (−1, 1), (−2, 2) → −1.
    let x = [1.0, -1.0, 2.0, -2.0, -1.0, 1.0, -2.0, 2.0];
    assert!((lag1_correlation(&x, 2, 1, &m) + 1.0).abs() < 1e-12);
    // Pairs (1, 1), (1, −1), (−1, 1), (−1, −1): covariance 0 → 0.
    let x = [1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0];
    assert!(lag1_correlation(&x, 2, 1, &m).abs() < 1e-12);
    // The mean is subtracted: x = mean + the first case's residuals gives +1 whatever the mean.
    let mean = [5.0f32, -3.0, 0.5, 7.0];
    let x: Vec<f32> = [1.0f32, 1.0, 2.0, 2.0, -1.0, -1.0, -2.0, -2.0]
        .iter()
        .enumerate()
        .map(|(i, r)| r + mean[i % 4])
        .collect();
    assert!((lag1_correlation(&x, 2, 1, &mean) - 1.0).abs() < 1e-6);
    // Channels pair with themselves only: channel 0 pairs (1, 1), (−1, −1); channel 1 pairs
    // (1, −1), (−1, 1) (same variance) → pooled covariance 0. Layout (y, x, c), p = 2.
    let x = [
        1.0, 1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0, // patch 1, row 0 then row 1 (zeros)
        -1.0, -1.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0,
    ];
    let m = [0.0f32; 8];
    let c = lag1_correlation(&x, 2, 2, &m);
    // Pairs over both rows: row 1 adds four (0, 0) pairs; all means are 0, so cov = 0.
    assert!(c.abs() < 1e-12, "{c}");
    // Degenerate: zero variance → NaN; p = 1 has no pairs → NaN.
    assert!(lag1_correlation(&[0.0; 4], 2, 1, &[0.0; 4]).is_nan());
    assert!(lag1_correlation(&[1.0], 1, 1, &[0.0]).is_nan());
}

/// Anchors: a permutation of `linspace(−1, 1, d)`; column-major ranks pixels by column.
#[test]
fn raster_anchor_orders() {
    let a = raster_anchors(3, 2, false);
    let b = raster_anchors(3, 2, true);
    let step = 2.0 / 17.0;
    for (i, v) in a.iter().enumerate() {
        assert!((v - (-1.0 + step * i as f32)).abs() < 1e-6);
    }
    // Pixel (y = 1, x = 0), channel 1: row-major index (1·3 + 0)·2 + 1 = 7, column-major
    // rank (0·3 + 1)·2 + 1 = 3.
    assert!((b[7] - (-1.0 + step * 3.0)).abs() < 1e-6);
    let mut s = b.clone();
    s.sort_by(f32::total_cmp);
    for (x, y) in s.iter().zip(&a) {
        assert!((x - y).abs() < 1e-6);
    }
}

/// On 8×8 patches of the shipped photos (d = 192, the spec's 300 steps on 1024 patches),
/// the MLE-fitted LCM beats the diagonal Gaussian on the held-out region by the spec's 0.5
/// nats/dim (measured ≈ 1.5 at p = 16 in the reproduce run; a model that learned no
/// correlation scores ≈ 0), and the dense Gaussian (the best Gaussian) beats the LCM.
/// Sample bar 0.6: well above the diagonal's 0 and below the claim's 0.8, which the
/// reproduce run gates at p = 16.
#[test]
fn mle_fit_beats_diagonal_on_a_photo() {
    let dev = device();
    let images = photos().unwrap();
    let train = sample_patches(&images, 8, 1024, Region::Left(TRAIN_FRACTION), 1).unwrap();
    let test = sample_patches(&images, 8, 256, Region::Right(TRAIN_FRACTION), 2).unwrap();
    let diag = DiagGaussian::fit(&train);
    let mu: Vec<f32> = diag.mean.iter().map(|&m| m as f32).collect();
    let cfg = FitConfig::spec(Fit::Mle, 1, 300, 3);
    let (model, log) = fit_lcm(&dev, &train, &mu, &cfg, None).unwrap();
    let lcm = model.nll_per_dim(&dev, &test).unwrap();
    let dnll = diag.nll_per_dim(&test);
    let dense = DenseGaussian::fit(&train, 1e-3).unwrap().nll_per_dim(&test);
    assert!(lcm <= dnll - 0.5, "LCM {lcm} vs diagonal {dnll}");
    assert!(dense < lcm, "dense {dense} vs LCM {lcm}");
    // The training loss went down.
    let (first, last) = (log.losses[0].1, log.losses.last().unwrap().1);
    assert!(last < first, "{first} → {last}");
    // Samples keep spatial structure: residual lag-1 correlation well above the diagonal's 0.
    let xs = model.sample(&dev, 64, 4).unwrap();
    let c = lag1_correlation(&xs, 8, 3, &mu);
    println!("p = 8: diagonal {dnll:.3}, LCM {lcm:.3}, dense {dense:.3} nats/dim; LCM samples' lag-1 {c:.3}");
    assert!(c > 0.6, "lag-1 correlation of LCM samples {c}");
    let cd = lag1_correlation(&diag.sample(64, 5), 8, 3, &mu);
    assert!(cd.abs() < 0.1, "diagonal samples {cd}");
}

/// The Frobenius fits run (one head: exact objective; two heads: Hutchinson cross term),
/// lower their objective, and give finite samples with positive lag-1 correlation.
#[test]
fn frobenius_fits_one_and_two_heads() {
    let dev = device();
    let images = photos().unwrap();
    let train = sample_patches(&images, 6, 512, Region::Left(TRAIN_FRACTION), 7).unwrap();
    let diag = DiagGaussian::fit(&train);
    let mu: Vec<f32> = diag.mean.iter().map(|&m| m as f32).collect();
    for heads in [1, 2] {
        let cfg = FitConfig::spec(Fit::Frobenius, heads, 60, 8);
        let (model, log) = fit_lcm(&dev, &train, &mu, &cfg, None).unwrap();
        let (first, last) = (log.losses[0].1, log.losses.last().unwrap().1);
        assert!(last < first, "H = {heads}: {first} → {last}");
        assert_eq!(model.heads.len(), heads);
        let xs = model.sample(&dev, 32, 9).unwrap();
        assert!(xs.iter().all(|v| v.is_finite()));
        let c = lag1_correlation(&xs, 6, 3, &mu);
        assert!(c > 0.2, "H = {heads}: lag-1 correlation {c}");
    }
    // Two heads have no exact likelihood: a typed error, not a panic; MLE with two heads
    // is refused.
    let cfg = FitConfig::spec(Fit::Mle, 2, 1, 0);
    assert!(fit_lcm(&dev, &train, &mu, &cfg, None).is_err());
}

fn lapis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .expect("run lapis")
}

fn photo(name: &str) -> String {
    lapis_models::data::data_path(&format!("images/{name}"))
        .unwrap()
        .display()
        .to_string()
}

/// `fit` → safetensors with the metadata → `sample` → a decodable PNG grid.
#[test]
fn cli_fit_then_sample_round_trip() {
    let dir = tmp("cli");
    let model = dir.join("model.safetensors");
    let grid = dir.join("grid.png");
    let (china, flower) = (photo("china.png"), photo("flower.png"));
    let out = lapis(&[
        "laplex-cov",
        "fit",
        &china,
        &flower,
        "--patch",
        "8",
        "--steps",
        "20",
        "--train-patches",
        "256",
        "--test-patches",
        "64",
        "--quiet",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("held-out NLL"), "{stdout}");
    let m = LcmModel::load(&device(), &model).unwrap();
    assert_eq!((m.p, m.channels, m.d(), m.heads.len()), (8, 3, 192, 1));
    let (_, meta) = lapis_graph::checkpoint::load_with_metadata(&model, &device()).unwrap();
    assert_eq!(
        meta.get("lapis.laplex_cov.fit").map(String::as_str),
        Some("mle")
    );
    assert!(meta["lapis.laplex_cov.nll_per_dim"]
        .parse::<f64>()
        .unwrap()
        .is_finite());
    let out = lapis(&[
        "laplex-cov",
        "sample",
        model.to_str().unwrap(),
        "--n",
        "6",
        "--seed",
        "3",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = read_png(&grid).unwrap();
    assert_eq!(img.channels, 3);
    // 6 cells in one row, each 8 px × scale 8 = 64 px, plus padding.
    assert!(
        img.width > 6 * 64 && img.height > 64,
        "{}x{}",
        img.width,
        img.height
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn fails_naming(args: &[&str], needles: &[&str]) {
    let out = lapis(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
    }
}

/// Bad arguments give errors that name the argument, never a panic.
#[test]
fn cli_bad_arguments_name_the_argument() {
    let dir = tmp("bad");
    let out = dir.join("m.safetensors");
    let o = out.to_str().unwrap();
    let china = photo("china.png");
    fails_naming(
        &["laplex-cov", "fit", &china, "--patch", "0", "--out", o],
        &["--patch", "≥ 1"],
    );
    fails_naming(
        &[
            "laplex-cov",
            "fit",
            &china,
            "--patch",
            "500",
            "--steps",
            "1",
            "--out",
            o,
        ],
        &["patch", "does not fit"],
    );
    fails_naming(
        &["laplex-cov", "fit", "/nonexistent/x.png", "--out", o],
        &["/nonexistent/x.png"],
    );
    fails_naming(
        &["laplex-cov", "fit", &china, "--heads", "2", "--out", o],
        &["--heads", "frobenius"],
    );
    fails_naming(
        &["laplex-cov", "fit", &china, "--steps", "0", "--out", o],
        &["--steps"],
    );
    fails_naming(
        &["laplex-cov", "fit", &china, "--fit", "ml", "--out", o],
        &["--fit"],
    );
    // Mixed channel counts: a grey PNG beside a colour photo.
    let grey = dir.join("grey.png");
    write_png(&grey, &Image::new(40, 40, 1, vec![0.5; 1600]).unwrap()).unwrap();
    fails_naming(
        &[
            "laplex-cov",
            "fit",
            &china,
            grey.to_str().unwrap(),
            "--patch",
            "8",
            "--out",
            o,
        ],
        &["mixed channel counts"],
    );
    // sample: missing model, --n out of range, a file that is not a model.
    let g = dir.join("g.png");
    let gs = g.to_str().unwrap();
    fails_naming(
        &[
            "laplex-cov",
            "sample",
            "/nonexistent/m.safetensors",
            "--out",
            gs,
        ],
        &["model"],
    );
    fails_naming(
        &["laplex-cov", "sample", &china, "--n", "0", "--out", gs],
        &["--n"],
    );
    fails_naming(
        &["laplex-cov", "sample", &china, "--out", gs],
        &["china.png"],
    );
    assert!(!Path::new(o).exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The LAPLEX-scale variant runs at a small side (here 32²·3, 3 steps) and reports time,
/// memory and NLL; at 1024²·3 it is refused on a device whose buffers cannot hold the batch.
#[test]
fn gram_scale_small_and_refusal() {
    use lapis_models::laplex::cov::gram_scale;
    use lapis_models::reproduce::{Context, ReportBuilder, Size};
    let dev = device();
    let dir = tmp("scale");
    let ctx = Context::new(dev.clone(), Size::Full, &dir, true, 0).unwrap();
    let mut rb = ReportBuilder::new(&ctx, "laplex", "test", serde_json::json!({}));
    let images = photos().unwrap();
    gram_scale(&ctx, &mut rb, &images, 32, 3, 4).unwrap();
    let big = (1024usize * 1024 * 3 * 16 * 4) as u64;
    if dev.info().max_buffer_bytes < big {
        let e = gram_scale(&ctx, &mut rb, &images, 1024, 200, 16).unwrap_err();
        assert!(e.to_string().contains("MiB"), "{e}");
    }
    let rep = rb.finish();
    for id in ["4s.time", "4s.mem", "4s.nll"] {
        let c = rep.claims.iter().find(|c| c.id == id).unwrap();
        assert!(c.value.is_finite(), "{id}: {}", c.value);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Claim 4 at p = 100 with the spec's uncut 300 steps for the LCM-MLE (the default run
/// cuts p ≥ 64 to 20 steps): held-out NLL ≤ diagonal − 0.5 nats/dim and samples' lag-1
/// correlation ≥ 0.8, the reproduce run's patches and seeds. ≈ 15–30 min on lavapipe:
/// `cargo test --release -p lapis-models --test laplex_cov -- --ignored --nocapture`.
#[test]
#[ignore]
fn claim4_p100_uncut_mle() {
    let dev = device();
    let images = photos().unwrap();
    let p = 100;
    let seed = 100; // as `lapis reproduce laplex` with --seed 0: 0·1000 + p
    let train = sample_patches(&images, p, 4096, Region::Left(TRAIN_FRACTION), seed).unwrap();
    let test = sample_patches(&images, p, 1024, Region::Right(TRAIN_FRACTION), seed + 1).unwrap();
    let diag = DiagGaussian::fit(&train);
    let mu: Vec<f32> = diag.mean.iter().map(|&m| m as f32).collect();
    let cfg = FitConfig::spec(Fit::Mle, 1, 300, seed + 10);
    let t = std::time::Instant::now();
    let mut prog = lapis_models::progress::Progress::new("p=100 MLE", 300, true);
    let (model, log) = fit_lcm(&dev, &train, &mu, &cfg, Some(&mut prog)).unwrap();
    let lcm = model.nll_per_dim(&dev, &test).unwrap();
    let dnll = diag.nll_per_dim(&test);
    let c = lag1_correlation(&model.sample(&dev, 128, seed + 20).unwrap(), p, 3, &mu);
    println!(
        "p = 100, 300 steps ({:.0} s, {:.2} s/step): diagonal {dnll:.4}, LCM {lcm:.4} \
         (gap {:.4}) nats/dim; LCM samples' lag-1 {c:.4}; λ {}",
        t.elapsed().as_secs_f64(),
        log.sec_per_step,
        lcm - dnll,
        model.heads[0].lambda
    );
    assert!(lcm - dnll <= -0.5, "gap {}", lcm - dnll);
    assert!(c >= 0.8, "lag-1 {c}");
}
