//! `lapis cedar fit | encode | name-axes`: CEDAR on a user's embedding files (the
//! `embeddings` tensor `[N, d]`, f32 or f16, as `lapis embed` writes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use lapis_ops::{Device, LapisError, Result, Tensor};

use super::fit::{fit, FitConfig, Init, Param};
use super::model::Cedar;
use crate::data::read_embeddings;

/// The `lapis cedar …` subcommand.
pub fn command() -> Command {
    let emb = || {
        Arg::new("emb")
            .long("emb")
            .value_name("FILE.safetensors")
            .required(true)
            .value_parser(value_parser!(PathBuf))
            .help(
                "embeddings file: tensor `embeddings` [N, d] (f32 or f16), e.g. from `lapis embed`",
            )
    };
    let model = || {
        Arg::new("model")
            .long("model")
            .value_name("MODEL.safetensors")
            .required(true)
            .value_parser(value_parser!(PathBuf))
            .help("a model written by `lapis cedar fit`")
    };
    Command::new("cedar")
        .about("CEDAR: an orthogonal rotation of embeddings with a top-k bottleneck (fit, encode, name axes)")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("fit")
                .about("fit a CEDAR basis on an embeddings file")
                .arg(emb())
                .arg(
                    Arg::new("out")
                        .long("out")
                        .required(true)
                        .value_parser(value_parser!(PathBuf))
                        .help("model file to write (safetensors: q [d, d], mean [d])"),
                )
                .arg(Arg::new("k").long("k").default_value("16").value_parser(value_parser!(usize))
                    .help("non-zero coordinates per row (several, comma-separated: the loss is their mean)")
                    .value_delimiter(',').action(ArgAction::Append))
                .arg(Arg::new("steps").long("steps").default_value("2000").value_parser(value_parser!(usize)))
                .arg(Arg::new("batch").long("batch").default_value("512").value_parser(value_parser!(usize))
                    .help("rows per step (capped at N)"))
                .arg(Arg::new("lr").long("lr").default_value("0.001").value_parser(value_parser!(f32)))
                .arg(Arg::new("init").long("init").default_value("pca").help("pca, identity or random"))
                .arg(Arg::new("expm").long("expm").action(ArgAction::SetTrue)
                    .help("Q = exp(P − Pᵀ)·Q₀ in the tape instead of the Newton–Schulz retraction"))
                .arg(Arg::new("seed").long("seed").default_value("0").value_parser(value_parser!(u64)))
                .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
        )
        .subcommand(
            Command::new("encode")
                .about("sparse codes h = topk(Q(x − μ)) of an embeddings file")
                .arg(model())
                .arg(emb())
                .arg(Arg::new("out").long("out").required(true).value_parser(value_parser!(PathBuf))
                    .help("codes file to write: tensor `codes` [N, d]"))
                .arg(Arg::new("k").long("k").value_parser(value_parser!(usize))
                    .help("non-zeros per row (default: the model's k)")),
        )
        .subcommand(
            Command::new("name-axes")
                .about("label each axis by the vocabulary word most aligned with it")
                .arg(model())
                .arg(Arg::new("vocab-emb").long("vocab-emb").required(true).value_parser(value_parser!(PathBuf))
                    .help("embeddings of the vocabulary words (tensor `embeddings` [V, d])"))
                .arg(Arg::new("vocab").long("vocab").required(true).value_parser(value_parser!(PathBuf))
                    .help("the words, one per line, in the same order"))
                .arg(Arg::new("top").long("top").default_value("3").value_parser(value_parser!(usize))),
        )
}

fn path_arg(m: &ArgMatches, name: &str) -> PathBuf {
    m.get_one::<PathBuf>(name).cloned().unwrap_or_default()
}

/// Reads an embeddings file and checks its width against `d` (when given).
fn read(op: &'static str, path: &Path, d: Option<usize>) -> Result<(Vec<f32>, usize, usize)> {
    let (x, n, dim) = read_embeddings(path)?;
    if let Some(d) = d {
        if dim != d {
            return Err(LapisError::invalid(
                op,
                "emb",
                path.display(),
                format!("holds {dim}-d rows but the model is {d}-d"),
            ));
        }
    }
    Ok((x, n, dim))
}

/// Runs `lapis cedar …`.
pub fn run(m: &ArgMatches) -> Result<()> {
    match m.subcommand() {
        Some(("fit", a)) => run_fit(a),
        Some(("encode", a)) => run_encode(a),
        Some(("name-axes", a)) => run_name_axes(a),
        _ => Err(LapisError::invalid(
            "cedar",
            "command",
            "",
            "expected fit, encode or name-axes",
        )),
    }
}

fn run_fit(a: &ArgMatches) -> Result<()> {
    let (emb, out) = (path_arg(a, "emb"), path_arg(a, "out"));
    let (x, n, d) = read("cedar fit", &emb, None)?;
    let ks: Vec<usize> = a
        .get_many::<usize>("k")
        .map(|v| v.copied().collect())
        .unwrap_or_default();
    let cfg = FitConfig {
        ks,
        steps: *a.get_one::<usize>("steps").unwrap_or(&2000),
        batch: (*a.get_one::<usize>("batch").unwrap_or(&512)).min(n),
        lr: *a.get_one::<f32>("lr").unwrap_or(&1e-3),
        init: Init::parse(
            a.get_one::<String>("init")
                .map(String::as_str)
                .unwrap_or("pca"),
        )?,
        param: if a.get_flag("expm") {
            Param::Expm
        } else {
            Param::NewtonSchulz
        },
        seed: *a.get_one::<u64>("seed").unwrap_or(&0),
        quiet: a.get_flag("quiet"),
        ..FitConfig::default()
    };
    let dev = Device::auto()?;
    println!(
        "cedar fit: {n} rows of {d}-d from {} on {dev}",
        emb.display()
    );
    let (model, log) = fit(&dev, &x, d, &cfg, None)?;
    let fvu = model.fvu(&dev, &x, model.k)?;
    model.save(&out)?;
    println!(
        "wrote {} (k = {}); training FVU at k = {}: {fvu:.4}; {} steps in {:.1} s; max|QᵀQ − I| = {:.1e}",
        out.display(),
        model.k,
        model.k,
        cfg.steps,
        log.wall_s,
        model.orthogonality_error()
    );
    Ok(())
}

fn run_encode(a: &ArgMatches) -> Result<()> {
    let dev = Device::auto()?;
    let model = Cedar::load(&dev, path_arg(a, "model"))?;
    let (emb, out) = (path_arg(a, "emb"), path_arg(a, "out"));
    let (x, n, d) = read("cedar encode", &emb, Some(model.dim()))?;
    let k = a.get_one::<usize>("k").copied().unwrap_or(model.k);
    let codes = model.encode_rows(&dev, &x, k)?;
    let t = Tensor::from_slice(&dev, &[n, d], &codes)?;
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), k.to_string());
    meta.insert("source".to_string(), emb.display().to_string());
    meta.insert(
        "what".to_string(),
        "CEDAR sparse codes h = topk_k(Q(x − μ)); decode with x̂ = Qᵀh + μ".to_string(),
    );
    lapis_graph::checkpoint::save_with_metadata(&out, &[("codes", &t)], &meta)?;
    println!("wrote {} ({n} rows, {k} non-zeros each)", out.display());
    Ok(())
}

fn run_name_axes(a: &ArgMatches) -> Result<()> {
    let dev = Device::auto()?;
    let model = Cedar::load(&dev, path_arg(a, "model"))?;
    let vocab_path = path_arg(a, "vocab");
    let (e, v, _) = read(
        "cedar name-axes",
        &path_arg(a, "vocab-emb"),
        Some(model.dim()),
    )?;
    let text = std::fs::read_to_string(&vocab_path)
        .map_err(|err| LapisError::file("read the vocabulary", &vocab_path, err))?;
    let words: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if words.len() != v {
        return Err(LapisError::invalid(
            "cedar name-axes",
            "vocab",
            vocab_path.display(),
            format!(
                "has {} words but the embeddings file {v} rows (one word per line, same order)",
                words.len()
            ),
        ));
    }
    let top = *a.get_one::<usize>("top").unwrap_or(&3);
    for ax in model.name_axes(&dev, &e, top)? {
        let names: Vec<String> = ax
            .top
            .iter()
            .map(|&(w, s)| format!("{}{} ({s:+.2})", if s < 0.0 { "−" } else { "+" }, words[w]))
            .collect();
        println!("axis {:4}: {}", ax.axis, names.join(", "));
    }
    Ok(())
}
