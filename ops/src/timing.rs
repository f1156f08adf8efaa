//! Timing helpers shared by the `lapis bench` subcommands and the `lapis-benches` crate.

use std::time::{Duration, Instant};

use crate::{Device, Result};

/// Median wall time of `f` over `reps` runs after one warm-up, each run followed by a
/// device sync so that the time covers the kernels, not just their submission.
pub fn time_op<T>(dev: &Device, reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<Duration> {
    f()?;
    dev.sync()?;
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let out = f()?;
        dev.sync()?;
        times.push(t0.elapsed());
        drop(out);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Parses sizes such as `2^10,2^14,1000000`.
pub fn parse_sizes(s: &str) -> std::result::Result<Vec<usize>, String> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            if let Some((b, e)) = p.split_once('^') {
                let b: usize = b.parse().map_err(|_| format!("bad base in {p}"))?;
                let e: u32 = e.parse().map_err(|_| format!("bad exponent in {p}"))?;
                b.checked_pow(e).ok_or_else(|| format!("{p} overflows"))
            } else {
                p.parse().map_err(|_| format!("bad size {p}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_powers_and_plain_sizes() {
        assert_eq!(
            super::parse_sizes("2^10, 3,1000").unwrap(),
            vec![1024, 3, 1000]
        );
        assert!(super::parse_sizes("2^x").is_err());
    }
}
