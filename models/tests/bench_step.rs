//! `lapis bench step` through the CLI: one JSON line per workload with the per-step figures
//! the throughput work is measured by (ms, launches, host reads, uploads, peak bytes).
//! Each run is its own process, so the process-wide device counters see only its work.

/// One full training step (tape, loss, backward, AdamW; the loss is not read) of the MLP,
/// the LAPLEX-headed digits model (phased, H = 4), the byte-level transformer and the
/// SoftMoE char LM (learned allocation: a tracked k per layer, sparse experts) reads
/// nothing back to the host: every scalar parameter stays on the device and every value
/// check is a deferred device check.
#[test]
fn training_steps_do_not_read_back() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args([
            "bench",
            "step",
            "--workloads",
            "digits-mlp,laplex-digits,transformer,softmoe",
            "--steps",
            "1",
        ])
        .output()
        .expect("run lapis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for l in &lines {
        assert_eq!(l["host_reads_per_step"].as_f64(), Some(0.0), "{l}");
    }
}

#[test]
fn bench_step_reports_counters() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args([
            "bench",
            "step",
            "--workloads",
            "digits-mlp,laplex-digits",
            "--steps",
            "1",
        ])
        .output()
        .expect("run lapis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        for key in [
            "ms_per_step",
            "launches_per_step",
            "host_reads_per_step",
            "peak_live_bytes",
        ] {
            assert!(l[key].as_f64().is_some(), "{key} missing in {l}");
        }
        assert!(l["launches_per_step"].as_f64().unwrap() >= 10.0, "{l}");
        assert!(l["loss_after"].as_f64().unwrap().is_finite());
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args(["bench", "step", "--workloads", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("digits-mlp"));
}

/// `lapis bench memory`: a JSON line per op with bytes per point; the Laplace operator's
/// inputs and output alone are 16 bytes per point at c = 1 (s, t, V, Y in f32), so its
/// peak cannot be below that.
#[test]
fn bench_memory_reports_bytes_per_point() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args(["bench", "memory", "--sizes", "2^12"])
        .output()
        .expect("run lapis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let lap = lines
        .iter()
        .find(|l| l["op"] == "laplace_apply" && l["config"] == "n = m, c = 1")
        .unwrap();
    let per = lap["bytes_per_point"].as_f64().unwrap();
    assert!((16.0..1000.0).contains(&per), "{lap}");
}
