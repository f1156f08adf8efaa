//! (being written)

use lapis_ops::{LapisError, Result};

/// `lapis laplex-cov …` (being written).
pub fn command() -> clap::Command {
    clap::Command::new("laplex-cov").about("(being written)")
}

/// Runs `lapis laplex-cov …` (being written).
pub fn run(_m: &clap::ArgMatches) -> Result<()> {
    Err(LapisError::invalid("lapis", "method", "laplex", "laplex-cov is being written"))
}
