//! core::plan
