//! `chains`: a Service's iptables chains on a node.

use super::{Context, Outcome, not_available};
use crate::cli::ChainsArgs;

/// Runs `chains`. This version does not include it: it reports so and fails.
pub fn run(ctx: &Context, _args: &ChainsArgs) -> anyhow::Result<Outcome> {
    Err(not_available(ctx, "chains"))
}
