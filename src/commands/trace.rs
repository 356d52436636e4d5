//! `trace`: tracing a Service to its pods.

use super::{Context, Outcome, not_available};
use crate::cli::TraceArgs;

/// Runs `trace`. This version does not include it: it reports so and fails.
pub fn run(ctx: &Context, _args: &TraceArgs) -> anyhow::Result<Outcome> {
    Err(not_available(ctx, "trace"))
}
