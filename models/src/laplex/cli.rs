//! `lapis laplex-cov fit|sample`: the LAPLEX Gram covariance model ([`super::cov`],
//! `specs/laplace-methods.md` §1.3) on a user's own images.
//!
//! - `lapis laplex-cov fit photos/*.png --patch 64 --out model.safetensors` draws random
//!   `p × p` patches (training patches inside the left 75 % of each image's width, held-out
//!   patches inside the right 25 %; when some image's right strip is narrower than a patch,
//!   both are drawn from the whole images with different seeds and the held-out score is
//!   in-sample in region), fits `Σ = diag(u) + diag(w) K(a; λ) diag(w)` by MLE (default) or
//!   by the Frobenius objective, prints the held-out NLL (nats/dim) against the diagonal
//!   Gaussian's, and writes `a`, `u`, `w`, `lambda`, `mu` with metadata (patch size,
//!   channels, d, heads, fit, NLL) as safetensors.
//! - `lapis laplex-cov sample model.safetensors --n 16 --out grid.png` writes a PNG grid of
//!   `n` samples `μ + √u ε + w ⊙ ζ`.

use std::path::{Path, PathBuf};

use lapis_ops::{Device, LapisError, Result};

use super::cov::{
    common_channels, sample_patches, DiagGaussian, Fit, FitConfig, LcmModel, Region, TRAIN_FRACTION,
};
use crate::data::{read_png, Image};
use crate::plot::image_grid;

/// The largest `--n` of `sample` (a grid of 1024 patches is already large).
pub const MAX_SAMPLES: usize = 1024;

/// `lapis laplex-cov …`.
pub fn command() -> clap::Command {
    use clap::{value_parser, Arg, ArgAction, Command};
    let out = || {
        Arg::new("out")
            .long("out")
            .required(true)
            .value_parser(value_parser!(PathBuf))
    };
    let seed = || {
        Arg::new("seed")
            .long("seed")
            .default_value("0")
            .value_parser(value_parser!(u64))
    };
    Command::new("laplex-cov")
        .about("LAPLEX Gram covariance of image patches: fit Σ = diag(u) + diag(w) K(a; λ) diag(w), sample it")
        .subcommand_required(true)
        .subcommand(
            Command::new("fit")
                .about("fit the Laplace covariance model to random p×p patches of PNG images")
                .arg(
                    Arg::new("images")
                        .required(true)
                        .num_args(1..)
                        .value_parser(value_parser!(PathBuf))
                        .help("PNG images (one colour mode: all grey or all RGB)"),
                )
                .arg(Arg::new("patch").long("patch").default_value("64").value_parser(value_parser!(usize)).help("patch side p (d = p²·channels)"))
                .arg(out().help("model file to write (safetensors)"))
                .arg(Arg::new("train-patches").long("train-patches").default_value("4096").value_parser(value_parser!(usize)))
                .arg(Arg::new("test-patches").long("test-patches").default_value("1024").value_parser(value_parser!(usize)))
                .arg(Arg::new("steps").long("steps").default_value("300").value_parser(value_parser!(usize)))
                .arg(Arg::new("batch").long("batch").default_value("128").value_parser(value_parser!(usize)))
                .arg(Arg::new("fit").long("fit").default_value("mle").value_parser(["mle", "frobenius"]))
                .arg(Arg::new("heads").long("heads").default_value("1").value_parser(value_parser!(usize)).help("2 = a second head in column-major order (Frobenius only)"))
                .arg(seed())
                .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
        )
        .subcommand(
            Command::new("sample")
                .about("write a PNG grid of samples of a fitted model")
                .arg(Arg::new("model").required(true).value_parser(value_parser!(PathBuf)))
                .arg(Arg::new("n").long("n").default_value("16").value_parser(value_parser!(usize)))
                .arg(out().help("PNG file to write"))
                .arg(seed()),
        )
}

/// Runs `lapis laplex-cov …`.
pub fn run(m: &clap::ArgMatches) -> Result<()> {
    match m.subcommand() {
        Some(("fit", a)) => {
            let images: Vec<PathBuf> = a
                .get_many::<PathBuf>("images")
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            let opts = FitArgs {
                patch: *a.get_one::<usize>("patch").expect("default"),
                train_patches: *a.get_one::<usize>("train-patches").expect("default"),
                test_patches: *a.get_one::<usize>("test-patches").expect("default"),
                steps: *a.get_one::<usize>("steps").expect("default"),
                batch: *a.get_one::<usize>("batch").expect("default"),
                fit: Fit::parse(a.get_one::<String>("fit").expect("default"))?,
                heads: *a.get_one::<usize>("heads").expect("default"),
                seed: *a.get_one::<u64>("seed").expect("default"),
                quiet: a.get_flag("quiet"),
            };
            fit(
                &Device::auto()?,
                &images,
                a.get_one::<PathBuf>("out").expect("required"),
                &opts,
            )
        }
        Some(("sample", a)) => sample(
            &Device::auto()?,
            a.get_one::<PathBuf>("model").expect("required"),
            *a.get_one::<usize>("n").expect("default"),
            a.get_one::<PathBuf>("out").expect("required"),
            *a.get_one::<u64>("seed").expect("default"),
        ),
        _ => Err(LapisError::invalid(
            "laplex-cov",
            "command",
            "",
            "use `lapis laplex-cov fit` or `lapis laplex-cov sample`",
        )),
    }
}

/// Options of `lapis laplex-cov fit`.
#[derive(Clone, Debug)]
pub struct FitArgs {
    /// Patch side.
    pub patch: usize,
    /// Training patches.
    pub train_patches: usize,
    /// Held-out patches.
    pub test_patches: usize,
    /// Adam steps.
    pub steps: usize,
    /// Patches per step.
    pub batch: usize,
    /// MLE or Frobenius.
    pub fit: Fit,
    /// 1, or 2 (Frobenius only).
    pub heads: usize,
    /// Seed of the patches, batches and probes.
    pub seed: u64,
    /// Plain log lines.
    pub quiet: bool,
}

fn bad(name: &'static str, value: impl std::fmt::Display, msg: &str) -> LapisError {
    LapisError::invalid("laplex-cov fit", name, value.to_string(), msg)
}

/// `lapis laplex-cov fit`: fits, reports the held-out NLL and writes the model to `out`.
pub fn fit(dev: &Device, images: &[PathBuf], out: &Path, o: &FitArgs) -> Result<()> {
    if images.is_empty() {
        return Err(bad("images", 0, "give at least one PNG image"));
    }
    if o.patch == 0 {
        return Err(bad("--patch", o.patch, "must be ≥ 1"));
    }
    if o.train_patches < 2 {
        return Err(bad("--train-patches", o.train_patches, "must be ≥ 2"));
    }
    if o.test_patches == 0 {
        return Err(bad("--test-patches", o.test_patches, "must be ≥ 1"));
    }
    if o.steps == 0 {
        return Err(bad("--steps", o.steps, "must be ≥ 1"));
    }
    if o.batch == 0 {
        return Err(bad("--batch", o.batch, "must be ≥ 1"));
    }
    if !(o.heads == 1 || o.heads == 2) {
        return Err(bad("--heads", o.heads, "must be 1 or 2"));
    }
    if o.heads == 2 && o.fit != Fit::Frobenius {
        return Err(bad(
            "--heads",
            o.heads,
            "two heads are fitted by --fit frobenius only (no exact two-head likelihood)",
        ));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(bad("--out", out.display(), "its folder does not exist"));
        }
    }
    let imgs: Vec<(String, Image)> = images
        .iter()
        .map(|p| Ok((p.display().to_string(), read_png(p)?)))
        .collect::<Result<_>>()?;
    let ch = common_channels("laplex-cov fit", &imgs)?;
    let d = o.patch * o.patch * ch;
    // Held-out region when every image's right strip holds a patch; else whole images.
    let split = imgs.iter().all(|(_, im)| {
        let right = im.width - (TRAIN_FRACTION * im.width as f64).ceil() as usize;
        im.height >= o.patch && right >= o.patch
    });
    let (train_region, test_region) = if split {
        (Region::Left(TRAIN_FRACTION), Region::Right(TRAIN_FRACTION))
    } else {
        (Region::Whole, Region::Whole)
    };
    // Does a patch fit every image at all (a clear error before any sizing)?
    sample_patches(&imgs, o.patch, 1, train_region, o.seed)?;
    let bytes = (d * o.batch.max(128).min(o.train_patches.max(o.test_patches)) * 4) as u64;
    let max = dev.info().max_buffer_bytes;
    if bytes > max {
        return Err(bad(
            "--patch",
            o.patch,
            &format!(
                "d = {d} needs {} MiB per batch buffer but {} holds at most {} MiB: use a \
                 smaller --patch or --batch",
                bytes >> 20,
                dev.info().name,
                max >> 20
            ),
        ));
    }
    let train = sample_patches(&imgs, o.patch, o.train_patches, train_region, o.seed)?;
    let test = sample_patches(&imgs, o.patch, o.test_patches, test_region, o.seed ^ 0x5eed)?;
    if !split {
        eprintln!(
            "note: an image's right 25 % is narrower than a {0}×{0} patch: held-out patches \
             come from the whole images (other positions), not a held-out region",
            o.patch
        );
    }
    let diag = DiagGaussian::fit(&train);
    let mu: Vec<f32> = diag.mean.iter().map(|&m| m as f32).collect();
    let cfg = FitConfig {
        batch: o.batch,
        ..FitConfig::spec(o.fit, o.heads, o.steps, o.seed)
    };
    let mut prog = crate::progress::Progress::new(
        &format!("fit {} d={d}", o.fit.name()),
        o.steps as u64,
        o.quiet,
    );
    let (model, log) = super::cov::fit_lcm(dev, &train, &mu, &cfg, Some(&mut prog))?;
    prog.finish(&format!("{:.3} s/step", log.sec_per_step));
    let dnll = diag.nll_per_dim(&test);
    let nll = if o.heads == 1 {
        Some(model.nll_per_dim(dev, &test)?)
    } else {
        None
    };
    model.save(dev, out, nll)?;
    let region = if split {
        "held-out region"
    } else {
        "whole images"
    };
    match nll {
        Some(v) => println!(
            "held-out NLL ({} patches, {region}): LCM {v:.4} nats/dim, diagonal Gaussian {dnll:.4}",
            test.n
        ),
        None => println!(
            "two-head model (no exact NLL); diagonal Gaussian held-out NLL {dnll:.4} nats/dim"
        ),
    }
    println!(
        "wrote {} (d = {d}, λ = {})",
        out.display(),
        model
            .heads
            .iter()
            .map(|h| format!("{:.4}", h.lambda))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `lapis laplex-cov sample`: `n` samples of the model at `model` as a PNG grid at `out`.
pub fn sample(dev: &Device, model: &Path, n: usize, out: &Path, seed: u64) -> Result<()> {
    if n == 0 || n > MAX_SAMPLES {
        return Err(LapisError::invalid(
            "laplex-cov sample",
            "--n",
            n,
            format!("must be in 1..={MAX_SAMPLES}"),
        ));
    }
    if !model.is_file() {
        return Err(LapisError::invalid(
            "laplex-cov sample",
            "model",
            model.display().to_string(),
            "no such file (write one with `lapis laplex-cov fit`)",
        ));
    }
    let m = LcmModel::load(dev, model)?;
    let max = dev.info().max_buffer_bytes;
    if (m.d() * n * 4) as u64 > max {
        return Err(LapisError::invalid(
            "laplex-cov sample",
            "--n",
            n,
            format!(
                "{n} samples of d = {} exceed the device's buffer limit: ask for fewer",
                m.d()
            ),
        ));
    }
    let xs = m.sample(dev, n, seed)?;
    let cells = super::cov::cells(&xs, m.p, m.channels, None);
    let cols = if n <= 8 {
        n
    } else {
        (n as f64).sqrt().ceil() as usize
    };
    let scale = (64 / m.p).max(1);
    image_grid(out, &cells, cols, scale)?;
    println!(
        "wrote {} ({n} samples of {}×{} patches)",
        out.display(),
        m.p,
        m.p
    );
    Ok(())
}
