//! (being written)

use lapis_ops::{LapisError, Result};

use crate::reproduce::{Context, Report};

/// (being written)
pub fn reproduce(_ctx: &Context) -> Result<Report> {
    Err(LapisError::invalid("lapis", "method", "laplex", "remix is being written"))
}
