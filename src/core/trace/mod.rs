//! core::trace
