//! `lapis reproduce <engine> --quick` through the real CLI binary, as CI and a user run it:
//! exit code 0, the claims table on stdout, `report.json` with the fields the harness
//! promises and at least 5 gating claims, all passed, `report.md`, and at least 2 non-empty
//! PNG plots that decode. A claim made to fail on purpose (`--bar L1=0`: a zero tolerance
//! on the operator's error) turns the exit code to 1 and the output names it. Unknown and
//! planned names are refused with a message.

use std::path::Path;
use std::process::Command;

/// One CLI run at a time: the reproductions time their kernels (the speed claims are
/// ratios measured in one run), and two runs sharing the CPU would skew them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lapis(args: &[&str]) -> std::process::Output {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Command::new(env!("CARGO_BIN_EXE_lapis"))
        .args(args)
        .output()
        .expect("run the lapis binary")
}

fn check_report(dir: &Path, name: &str) {
    let json = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("{}/report.json: {e}", dir.display()));
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["name"], name);
    for key in ["device", "config", "wall_s", "claims", "size", "spec"] {
        assert!(!r[key].is_null(), "report.json lacks `{key}`");
    }
    assert_eq!(r["size"], "quick");
    assert!(r["config"]["seed"].is_u64(), "the seed is stored");
    let claims = r["claims"].as_array().unwrap();
    let gating: Vec<_> = claims.iter().filter(|c| c["gating"] == true).collect();
    assert!(gating.len() >= 5, "{name}: {} gating claims", gating.len());
    for c in claims {
        for key in ["id", "text", "value", "threshold", "passed"] {
            assert!(c.get(key).is_some(), "claim lacks `{key}`: {c}");
        }
    }
    for c in &gating {
        assert_eq!(c["passed"], true, "{name}: gating claim failed: {c}");
    }
    assert!(std::fs::metadata(dir.join("report.md")).unwrap().len() > 0);
    let plots = r["plots"].as_array().unwrap();
    assert!(plots.len() >= 2, "{name}: {} plots", plots.len());
    for p in plots {
        let path = dir.join(p.as_str().unwrap());
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(img.width() > 100 && img.height() > 100);
    }
}

fn run_quick(name: &str) {
    let dir = std::env::temp_dir().join(format!("lapis-repro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = lapis(&[
        "reproduce",
        name,
        "--quick",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{name} --quick exited {:?}",
        out.status
    );
    assert!(stdout.contains("gating claims passed"));
    check_report(&dir, name);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn laplace_engine_quick() {
    run_quick("laplace-engine");
}

#[test]
fn softtopk_engine_quick() {
    run_quick("softtopk-engine");
}

#[test]
fn a_failing_claim_fails_the_run() {
    let dir = std::env::temp_dir().join(format!("lapis-repro-fail-{}", std::process::id()));
    let out = lapis(&[
        "reproduce",
        "softtopk-engine",
        "--quick",
        "--quiet",
        "--bar",
        "T2=0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED gating claims: T2"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let t2 = r["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "T2")
        .unwrap()
        .clone();
    assert_eq!(t2["passed"], false);
    assert!(r["notes"].to_string().contains("overridden"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn softmoe_quick() {
    run_quick("softmoe");
}

/// LAPLEX `--quick`: E1 in full (claims 1a–1g), E2 digits and scale, E3 photos at p = 16;
/// every part's claims are in the report.
#[test]
fn laplex_quick() {
    run_quick("laplex");
}

#[test]
fn unknown_and_planned_names_are_refused() {
    let out = lapis(&["reproduce", "no-such-method", "--quick"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("laplace-engine"), "{err}");
    let out = lapis(&["reproduce", "dave", "--quick"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("planned"));
    let out = lapis(&["methods"]);
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    for m in ["softmoe", "laplex", "cec-mmr", "softtopk-engine"] {
        assert!(list.contains(m), "{list}");
    }
}

/// `--full` on a device that cannot hold a run's buffers is refused with a message that
/// names the need, the device's limit and what to do.
#[test]
fn runs_too_big_for_the_device_are_refused() {
    use lapis_models::reproduce::{Context, Size};
    let dev = lapis_ops::Device::auto().expect("a compute device (lavapipe in CI)");
    let max = dev.info().max_buffer_bytes;
    let dir = std::env::temp_dir().join(format!("lapis-repro-big-{}", std::process::id()));
    let ctx = Context::new(dev, Size::Full, &dir, true, 0).unwrap();
    assert!(ctx.require_bytes("a buffer that fits", max).is_ok());
    let err = ctx
        .require_bytes("the 10^9-point operator", max + 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10^9-point operator") && err.contains("--full"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
