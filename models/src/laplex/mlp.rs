//! (being written)

use lapis_ops::{LapisError, Result};

use crate::reproduce::{Context, ReportBuilder};

/// (being written)
pub fn e2_digits(_ctx: &Context, _rb: &mut ReportBuilder) -> Result<()> {
    Err(LapisError::invalid("lapis", "method", "laplex", "laplex::mlp is being written"))
}
