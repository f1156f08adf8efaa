//! `scale`: one JSON line per size for the core elementwise/reduction ops, with the time,
//! the effective bandwidth (bytes that must move / time) and its ratio to the device's
//! measured copy bandwidth at the same size (`lapis_ops::copy`).
//!
//! `cargo run --release -p lapis-benches --bin scale -- --sizes 2^16,2^20,2^24`

use clap::Parser;
use lapis_benches::{parse_sizes, time_op};
use lapis_ops::{DType, Device};

#[derive(Parser)]
struct Args {
    /// Element counts, e.g. `2^16,2^20,2^24`.
    #[arg(long, default_value = "2^16,2^20,2^22")]
    sizes: String,
    /// Timed repetitions per op and size (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sizes = parse_sizes(&args.sizes)?;
    let dev = Device::auto()?;
    let name = dev.info().name.clone();
    for n in sizes {
        let a = lapis_ops::uniform(&dev, &[n], -1.0, 1.0, 1)?;
        let b = lapis_ops::uniform(&dev, &[n], -1.0, 1.0, 2)?;
        let bytes = |reads: usize, writes: usize| ((reads + writes) * n * DType::F32.size()) as f64;
        let copy = time_op(&dev, args.reps, || lapis_ops::copy(&a))?.as_secs_f64();
        let copy_gbps = bytes(1, 1) / copy / 1e9;
        let ops: Vec<(&str, f64, f64)> = vec![
            ("copy", copy, bytes(1, 1)),
            (
                "exp",
                time_op(&dev, args.reps, || lapis_ops::exp(&a))?.as_secs_f64(),
                bytes(1, 1),
            ),
            (
                "add",
                time_op(&dev, args.reps, || lapis_ops::add(&a, &b))?.as_secs_f64(),
                bytes(2, 1),
            ),
            (
                "sum_all",
                time_op(&dev, args.reps, || lapis_ops::sum_all(&a))?.as_secs_f64(),
                bytes(1, 0),
            ),
        ];
        for (op, secs, moved) in ops {
            let gbps = moved / secs / 1e9;
            println!(
                "{}",
                serde_json::json!({
                    "op": op, "n": n, "device": name, "ms": secs * 1e3,
                    "gbps": gbps, "vs_copy": gbps / copy_gbps,
                })
            );
        }
    }
    Ok(())
}
