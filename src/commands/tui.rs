//! `tui`: the interactive view.

use super::{Context, Outcome, not_available};
use crate::cli::TuiArgs;

/// Runs `tui`. This version does not include it: it reports so and fails.
pub fn run(ctx: &Context, _args: &TuiArgs) -> anyhow::Result<Outcome> {
    Err(not_available(ctx, "tui"))
}
