//! (being written)

use lapis_ops::{LapisError, Result};

use crate::reproduce::{Context, ReportBuilder};

/// (being written)
pub fn e1(_ctx: &Context, _rb: &mut ReportBuilder) -> Result<()> {
    Err(LapisError::invalid("lapis", "method", "laplex", "laplex::exact is being written"))
}
