//! kubectl-svcproxy: a kube-proxy compatible iptables service proxy and the diagnostics that trace a
//! Service to its pods on any node.
//!
//! [`core`] is pure (model, rules, plan, render, parse, trace); the adapters around it do the I/O.
//! [`cli`] holds the command line, [`commands`] runs it, [`output`] prints.
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod core;
pub mod iptables;
pub mod kube;
pub(crate) mod netlink;
pub mod output;
pub mod proxy;
pub mod synthetic;
