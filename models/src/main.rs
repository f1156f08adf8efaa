//! The `lapis` command-line tool.
//!
//! `lapis info` lists the compute devices lapis can see, the one [`Device::auto`] picks,
//! its adapter/driver and limits, and runs one small kernel on it to prove launches work.

mod bench;

use clap::{Parser, Subcommand};
use lapis_ops::{Device, Tensor};

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
    /// Benchmarks, one JSON line per size.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Bench {
            what: BenchWhat::Laplace { sizes, c, reps },
        } => with_sizes(&sizes, |dev, s| bench::laplace(dev, s, c, reps)),
        Command::Bench {
            what: BenchWhat::Covariance { sizes, c, reps },
        } => with_sizes(&sizes, |dev, s| bench::covariance(dev, s, c, reps)),
        Command::Bench {
            what: BenchWhat::Softtopk { rows, n, reps },
        } => with_sizes(&n, |dev, s| bench::softtopk(dev, rows, s, reps)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
