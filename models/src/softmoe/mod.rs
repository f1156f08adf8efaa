//! softmoe (`specs/sparse-methods.md`): under construction (issue 13).

use lapis_ops::{LapisError, Result};

use crate::reproduce::{Context, Report};

/// `lapis reproduce softmoe`.
pub fn reproduce(_ctx: &Context) -> Result<Report> {
    Err(LapisError::invalid("reproduce", "name", "softmoe", "not built yet (issue 13)"))
}

/// The `lapis softmoe …` subcommand.
pub fn command() -> clap::Command {
    clap::Command::new("softmoe").about("softmoe (under construction)")
}

/// Runs `lapis softmoe …`.
pub fn run(_m: &clap::ArgMatches) -> Result<()> {
    Err(LapisError::invalid("softmoe", "command", "", "not built yet (issue 13)"))
}
