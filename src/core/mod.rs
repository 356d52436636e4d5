//! The pure core: no I/O, no clock, no randomness. The same input always gives the same output.

pub mod conntrack_tuning;
pub mod drift;
pub mod model;
pub mod parse;
pub mod path;
pub mod plan;
pub mod render;
pub mod rules;
pub mod trace;
