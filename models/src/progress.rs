//! Progress of long work: an `indicatif` bar (step, loss or metric, ETA) when stdout is a
//! terminal, plain log lines otherwise or with `--quiet` (CI logs, pipes, files).
//!
//! Log lines are printed at most every [`LINE_EVERY`] of the total (and at the end), so a
//! long run's log stays short.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Fraction of the total between two plain log lines.
pub const LINE_EVERY: f64 = 0.1;

/// A progress display (see the module docs).
pub struct Progress {
    label: String,
    total: u64,
    pos: u64,
    bar: Option<ProgressBar>,
    next_line: u64,
    start: Instant,
}

impl Progress {
    /// A display of `total` steps named `label`; `quiet` forces plain lines.
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let bar = if !quiet && std::io::stdout().is_terminal() {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(label.to_string());
            Some(b)
        } else {
            None
        };
        Progress {
            label: label.into(),
            total,
            pos: 0,
            bar,
            next_line: 0,
            start: Instant::now(),
        }
    }

    /// Moves to step `pos` with a status message (e.g. `loss 0.412`).
    pub fn set(&mut self, pos: u64, msg: &str) {
        self.pos = pos.min(self.total);
        match &self.bar {
            Some(b) => {
                b.set_position(self.pos);
                b.set_message(msg.to_string());
            }
            None => {
                if self.pos >= self.next_line || self.pos == self.total {
                    self.line(msg);
                    let step = ((self.total as f64 * LINE_EVERY).ceil() as u64).max(1);
                    self.next_line = self.pos + step;
                }
            }
        }
    }

    /// Advances one step.
    pub fn inc(&mut self, msg: &str) {
        self.set(self.pos + 1, msg);
    }

    fn line(&self, msg: &str) {
        let el = self.start.elapsed().as_secs_f64();
        let eta = if self.pos > 0 && self.pos < self.total {
            format!(
                ", eta {:.0} s",
                el / self.pos as f64 * (self.total - self.pos) as f64
            )
        } else {
            String::new()
        };
        println!(
            "[{}] {}/{} {msg} ({el:.1} s{eta})",
            self.label, self.pos, self.total
        );
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => println!("{msg}"),
        }
    }

    /// Ends the display (the bar is cleared; plain mode prints a last line if needed).
    pub fn finish(&mut self, msg: &str) {
        match self.bar.take() {
            Some(b) => {
                b.finish_and_clear();
                println!(
                    "[{}] done: {msg} ({:.1} s)",
                    self.label,
                    self.start.elapsed().as_secs_f64()
                );
            }
            None => {
                if self.pos < self.total || self.next_line <= self.pos {
                    self.line(msg);
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
