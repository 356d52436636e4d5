//! core::parse
