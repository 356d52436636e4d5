//! Helpers shared by the integration tests. Each test crate uses only part of them.
#![allow(dead_code)]

pub mod apiserver;
pub mod builders;
pub mod checks;
pub mod diagsrv;
pub mod dumpcmp;
pub mod netns;
pub mod testbed;
