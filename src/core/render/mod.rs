//! core::render
