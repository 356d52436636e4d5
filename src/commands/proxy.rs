//! `proxy`: the node service proxy.

use super::{Context, Outcome, not_available};
use crate::cli::ProxyArgs;

/// Runs `proxy`. This version does not include it: it reports so and fails.
pub fn run(ctx: &Context, _args: &ProxyArgs) -> anyhow::Result<Outcome> {
    Err(not_available(ctx, "proxy"))
}
