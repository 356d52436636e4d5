//! Shared test support.
#![allow(dead_code)]

pub mod builders;
pub mod dumpcmp;
