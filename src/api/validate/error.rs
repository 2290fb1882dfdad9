//! What validation reports: [`FieldError`] (one broken rule, by JSON field path) and
//! [`PoolErrors`] (every broken rule of one pool, displayed as one bounded line).
//!
//! Owns: the two error types and [`MAX_SHOWN_ERRORS`]. Must not: hold rules (see `validate`).

use std::fmt;

use crate::api::PoolType;

/// One broken rule: the JSON path of the field and what is wrong with it / what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Most broken rules one message lists; the rest are counted. A list of 65,536 bad entries
/// (`api::MAX_LIST_ITEMS`) would otherwise make a message of megabytes, in a webhook answer, a
/// pool condition or an Event; 16 is more than a person fixes before trying again.
pub const MAX_SHOWN_ERRORS: usize = 16;

/// Every broken rule of one pool. Displays as one line, at most [`MAX_SHOWN_ERRORS`] of them:
/// `ippool "blue": spec.perNodeBlockSize: must be at least 1; spec.gateway: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolErrors {
    pub pool_type: PoolType,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for PoolErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: ", self.pool_type, self.name)?;
        for (i, e) in self.errors.iter().take(MAX_SHOWN_ERRORS).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        if let Some(more) = self.errors.len().checked_sub(MAX_SHOWN_ERRORS).filter(|n| *n > 0) {
            write!(f, "; and {more} more")?;
        }
        Ok(())
    }
}

impl std::error::Error for PoolErrors {}
