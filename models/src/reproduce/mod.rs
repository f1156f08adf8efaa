//! `lapis reproduce <name>`: the harness every method's reproduction runs in.
//!
//! A reproduction computes the pass/fail claims of its spec (`docs/specs/*.md`) and returns a
//! [`Report`]: the claims (each a measured value against a threshold, gating or only
//! reported), the configuration and seeds it ran with, the device, the wall time, tables
//! and the plots it wrote. The CLI prints the report as an aligned table, writes
//! `report.json` and `report.md` into the output directory (default `runs/<name>/`), and
//! exits non-zero when a gating claim fails, naming it.
//!
//! Every reproduction has three sizes ([`Size`]):
//! - `--quick`: the CI-sized run (a few minutes on a 2-core CPU with lavapipe); a test runs
//!   it. It gates only what honestly holds at that size; thresholds that depend on size
//!   are scaled with it and the report says so.
//! - default: the spec's experiment, sized as the spec says for the machine (about 10–15
//!   minutes on lavapipe); where the spec's rule cuts steps, every run of a comparison is
//!   cut by the same factor and the report says by how much.
//! - `--full`: the spec's uncut configuration and its GPU-scale variant where it names one;
//!   refused with a clear message ([`Context::require_bytes`]) on a device that cannot
//!   hold it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lapis_ops::{Device, LapisError, Result};
use serde::Serialize;

use crate::progress::Progress;

/// How big a reproduction runs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// CI-sized.
    Quick,
    /// The spec's experiment, sized for the machine.
    Default,
    /// The spec's uncut configuration (and GPU-scale variant).
    Full,
}

impl Size {
    /// `quick`, `default` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Size::Quick => "quick",
            Size::Default => "default",
            Size::Full => "full",
        }
    }

    /// Picks one of three values by size.
    pub fn pick<T>(self, quick: T, default: T, full: T) -> T {
        match self {
            Size::Quick => quick,
            Size::Default => default,
            Size::Full => full,
        }
    }
}

/// How a claim's value is compared with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Cmp {
    /// Passes when `value ≤ threshold`.
    #[serde(rename = "<=")]
    Le,
    /// Passes when `value ≥ threshold`.
    #[serde(rename = ">=")]
    Ge,
    /// Only reported: no threshold, never fails the run.
    #[serde(rename = "reported")]
    Reported,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Le => "≤",
            Cmp::Ge => "≥",
            Cmp::Reported => "",
        }
    }
}

/// One pass/fail claim of a spec, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Claim {
    /// Short id (`L1`, `M3`, …), unique in a report.
    pub id: String,
    /// What is claimed, in words, with the configuration it was measured at.
    pub text: String,
    /// The measured value (NaN when it could not be measured: then a gating claim fails).
    pub value: f64,
    /// The bar (NaN for a reported-only claim).
    pub threshold: f64,
    /// How `value` is compared with `threshold`.
    pub cmp: Cmp,
    /// Whether a failure fails the run; reported-only claims say `false`.
    pub gating: bool,
    /// Whether it holds (`true` for reported-only claims).
    pub passed: bool,
    /// Unit of value and threshold (may be empty).
    pub unit: String,
}

impl Claim {
    fn new(id: &str, text: &str, value: f64, threshold: f64, cmp: Cmp, unit: &str) -> Self {
        let passed = match cmp {
            Cmp::Le => value <= threshold,
            Cmp::Ge => value >= threshold,
            Cmp::Reported => true,
        };
        Claim {
            id: id.into(),
            text: text.into(),
            value,
            threshold,
            cmp,
            gating: cmp != Cmp::Reported,
            passed,
            unit: unit.into(),
        }
    }

    /// A gating claim `value ≤ threshold` (NaN fails).
    pub fn le(id: &str, text: &str, value: f64, threshold: f64, unit: &str) -> Self {
        Self::new(id, text, value, threshold, Cmp::Le, unit)
    }

    /// A gating claim `value ≥ threshold` (NaN fails).
    pub fn ge(id: &str, text: &str, value: f64, threshold: f64, unit: &str) -> Self {
        Self::new(id, text, value, threshold, Cmp::Ge, unit)
    }

    /// A value that is only reported (at this size the claim is not gated; say why in
    /// `text`).
    pub fn reported(id: &str, text: &str, value: f64, unit: &str) -> Self {
        Self::new(id, text, value, f64::NAN, Cmp::Reported, unit)
    }

    /// The same claim, not gating (e.g. a bar that a `--quick` size cannot honestly
    /// support); the comparison is still shown.
    pub fn not_gating(mut self) -> Self {
        self.gating = false;
        self
    }

    /// `PASS`, `FAIL` or `info`.
    pub fn verdict(&self) -> &'static str {
        if self.cmp == Cmp::Reported {
            "info"
        } else if self.passed {
            "PASS"
        } else if self.gating {
            "FAIL"
        } else {
            "fail (not gating)"
        }
    }
}

/// A small table for a report (`report.md` renders it; `report.json` stores it).
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headers.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// The result of one reproduction run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The reproduction's name (`laplace-engine`, …).
    pub name: String,
    /// The spec it reproduces.
    pub spec: String,
    /// The device it ran on.
    pub device: String,
    /// The size it ran at.
    pub size: Size,
    /// Its configuration, seeds included: enough to repeat the run exactly.
    pub config: serde_json::Value,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// The claims, in the spec's order.
    pub claims: Vec<Claim>,
    /// Tables of measurements.
    pub tables: Vec<Table>,
    /// Plots written (file names relative to the output directory).
    pub plots: Vec<String>,
    /// Notes: what was cut and by how much, caveats.
    pub notes: Vec<String>,
    /// The date the run finished (UTC, `YYYY-MM-DD`).
    pub date: String,
    /// The lapis version.
    pub version: String,
}

/// What a reproduction gets from the CLI.
pub struct Context {
    /// The device to run on.
    pub dev: Device,
    /// The size to run at.
    pub size: Size,
    /// The output directory (created).
    pub out: PathBuf,
    /// No progress bars, plain log lines only.
    pub quiet: bool,
    /// The base seed (every seed of the run derives from it).
    pub seed: u64,
}

impl Context {
    /// A context that writes into `out` (created if missing).
    pub fn new(
        dev: Device,
        size: Size,
        out: impl Into<PathBuf>,
        quiet: bool,
        seed: u64,
    ) -> Result<Self> {
        let out = out.into();
        std::fs::create_dir_all(&out)
            .map_err(|e| file_err(&out, "create the output directory", e))?;
        Ok(Context {
            dev,
            size,
            out,
            quiet,
            seed,
        })
    }

    /// A progress display of `total` steps for this run (a bar on a terminal, log lines
    /// otherwise or with `--quiet`).
    pub fn progress(&self, label: &str, total: u64) -> Progress {
        Progress::new(label, total, self.quiet)
    }

    /// A path in the output directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.out.join(file)
    }

    /// Refuses (typed error, with what was asked and what the device holds) a run whose
    /// largest single buffer needs `bytes`: `--full` on a device that cannot hold it.
    pub fn require_bytes(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.dev.info().max_buffer_bytes;
        if bytes > max {
            return Err(LapisError::invalid(
                "reproduce",
                "size",
                self.size.name(),
                format!(
                    "{what} needs a {} MiB buffer but {} holds at most {} MiB per buffer; \
                     run it on a larger device (a GPU) or without --full",
                    bytes >> 20,
                    self.dev.info().name,
                    max >> 20
                ),
            ));
        }
        Ok(())
    }
}

fn file_err(path: &Path, what: &str, e: std::io::Error) -> LapisError {
    LapisError::Format {
        what: format!("{}", path.display()),
        msg: format!("could not {what}: {e}"),
    }
}

/// Builds a [`Report`] while a reproduction runs.
pub struct ReportBuilder {
    report: Report,
    start: Instant,
}

impl ReportBuilder {
    /// Starts the clock for reproduction `name` of `spec` with its configuration.
    pub fn new(ctx: &Context, name: &str, spec: &str, config: serde_json::Value) -> Self {
        let mut config = config;
        if let Some(map) = config.as_object_mut() {
            map.insert("seed".into(), ctx.seed.into());
            map.insert("size".into(), ctx.size.name().into());
        }
        ReportBuilder {
            report: Report {
                name: name.into(),
                spec: spec.into(),
                device: ctx.dev.to_string(),
                size: ctx.size,
                config,
                wall_s: 0.0,
                claims: Vec::new(),
                tables: Vec::new(),
                plots: Vec::new(),
                notes: Vec::new(),
                date: String::new(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            start: Instant::now(),
        }
    }

    /// Adds (or replaces) one entry of the run's configuration, for parts of a reproduction
    /// that size themselves after the report was started.
    pub fn config(&mut self, key: &str, value: serde_json::Value) {
        if let Some(map) = self.report.config.as_object_mut() {
            map.insert(key.into(), value);
        }
    }

    /// Adds a claim (ids must be unique).
    pub fn claim(&mut self, c: Claim) {
        debug_assert!(self.report.claims.iter().all(|o| o.id != c.id));
        self.report.claims.push(c);
    }

    /// Adds a table.
    pub fn table(&mut self, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
        self.report.tables.push(Table {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows,
        });
    }

    /// Records a plot written into the output directory.
    pub fn plot(&mut self, file: &str) {
        self.report.plots.push(file.into());
    }

    /// Adds a note.
    pub fn note(&mut self, text: impl Into<String>) {
        self.report.notes.push(text.into());
    }

    /// Stops the clock.
    pub fn finish(mut self) -> Report {
        self.report.wall_s = self.start.elapsed().as_secs_f64();
        self.report.date = today_utc();
        self.report
    }
}

/// Today's date (UTC) from the system clock, `YYYY-MM-DD` (civil-from-days, Howard
/// Hinnant's algorithm).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A value in a table cell: 3–4 significant digits, scientific when small or large.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        return "—".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

impl Report {
    /// The gating claims that failed.
    pub fn failed(&self) -> Vec<&Claim> {
        self.claims
            .iter()
            .filter(|c| c.gating && !c.passed)
            .collect()
    }

    /// The claims as an aligned text table (what stdout shows).
    pub fn claims_table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .claims
            .iter()
            .map(|c| {
                let bar = if c.cmp == Cmp::Reported {
                    "(reported)".to_string()
                } else {
                    format!("{} {}", c.cmp.symbol(), fmt_value(c.threshold))
                };
                [
                    c.id.clone(),
                    c.verdict().to_string(),
                    format!("{} {}", fmt_value(c.value), c.unit)
                        .trim()
                        .to_string(),
                    bar,
                    c.text.clone(),
                ]
            })
            .collect();
        let head = ["id", "verdict", "value", "bar", "claim"];
        let mut w = head.map(|h| h.chars().count());
        for r in &rows {
            for (k, cell) in r.iter().enumerate().take(4) {
                w[k] = w[k].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: [&str; 5]| {
            let mut s = String::new();
            for (k, c) in cells.iter().enumerate() {
                if k < 4 {
                    s.push_str(&pad(c, w[k]));
                    s.push_str("  ");
                } else {
                    s.push_str(c);
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(head));
        for r in &rows {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
        out
    }

    /// Prints the report to stdout: header, claims, tables, notes, verdict.
    pub fn print(&self) {
        println!(
            "\n== lapis reproduce {} ({}; size {}; {:.1} s on {})",
            self.name,
            self.spec,
            self.size.name(),
            self.wall_s,
            self.device
        );
        println!("config: {}", self.config);
        print!("{}", self.claims_table());
        for t in &self.tables {
            println!("\n{}", t.title);
            print!("{}", text_table(&t.header, &t.rows));
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        let failed = self.failed();
        if failed.is_empty() {
            println!(
                "all {} gating claims passed",
                self.claims.iter().filter(|c| c.gating).count()
            );
        } else {
            let ids: Vec<&str> = failed.iter().map(|c| c.id.as_str()).collect();
            println!("FAILED gating claims: {}", ids.join(", "));
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# lapis reproduce {}\n", self.name);
        let _ = writeln!(
            s,
            "Spec: `{}`. Device: {}. Size: {}. Wall time: {:.1} s. Date: {}. lapis {}.\n",
            self.spec,
            self.device,
            self.size.name(),
            self.wall_s,
            self.date,
            self.version
        );
        let _ = writeln!(s, "Config (seeds included): `{}`\n", self.config);
        let _ = writeln!(s, "| id | verdict | value | bar | claim |");
        let _ = writeln!(s, "| --- | --- | ---: | --- | --- |");
        for c in &self.claims {
            let bar = if c.cmp == Cmp::Reported {
                "reported".to_string()
            } else {
                format!("{} {}", c.cmp.symbol(), fmt_value(c.threshold))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} |",
                c.id,
                c.verdict(),
                fmt_value(c.value),
                c.unit,
                bar,
                c.text.replace('|', "\\|")
            );
        }
        for t in &self.tables {
            let _ = writeln!(s, "\n### {}\n", t.title);
            let _ = writeln!(s, "| {} |", t.header.join(" | "));
            let _ = writeln!(s, "|{}", " --- |".repeat(t.header.len()));
            for r in &t.rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
        }
        if !self.plots.is_empty() {
            let _ = writeln!(s, "\n## Plots\n");
            for p in &self.plots {
                let _ = writeln!(s, "![{p}]({p})\n");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, "create the directory", e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| LapisError::Format {
            what: "report".into(),
            msg: e.to_string(),
        })?;
        let p = dir.join("report.json");
        std::fs::write(&p, json + "\n").map_err(|e| file_err(&p, "write", e))?;
        let p = dir.join("report.md");
        std::fs::write(&p, self.markdown()).map_err(|e| file_err(&p, "write", e))?;
        Ok(())
    }
}

/// An aligned plain-text table.
pub fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (k, c) in r.iter().enumerate().take(cols) {
            w[k] = w[k].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let fmt_row = |cells: &[String]| {
        let mut s = String::new();
        for (k, c) in cells.iter().enumerate().take(cols) {
            s.push_str(&pad(c, w[k]));
            s.push_str("  ");
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", fmt_row(header));
    for r in rows {
        let _ = writeln!(out, "{}", fmt_row(r));
    }
    out
}
