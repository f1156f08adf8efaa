//! (being written)

use lapis_ops::{LapisError, Result};

use crate::reproduce::{Context, ReportBuilder};

/// (being written)
pub fn e3_photos(_ctx: &Context, _rb: &mut ReportBuilder) -> Result<()> {
    Err(LapisError::invalid("lapis", "method", "laplex", "laplex::cov is being written"))
}
