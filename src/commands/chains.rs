//! `chains SERVICE`: a Service's iptables chains on a node — as the node has them, as it should have
//! them (`--expected`), or the difference per chain (`--diff`).

use anyhow::Context as _;

use super::diag::chains_doc::{self, View};
use super::diag::gather;
use super::diag::report;
use super::diag::settings::ExpectedSettings;
use super::{Context, Outcome};
use crate::cli::{ChainsArgs, OutputFormat};
use crate::output;

/// Runs `chains`: exit 1 when `--diff` shows a difference, else 0.
pub fn run(ctx: &Context, args: &ChainsArgs) -> anyhow::Result<Outcome> {
    let gathered = gather(ctx, &args.service, &args.source)?;
    let view = if args.diff {
        View::Diff
    } else if args.expected {
        View::Expected
    } else {
        View::Actual
    };
    let settings = ExpectedSettings {
        overrides: args.expected_settings.overrides(),
    };
    let doc = chains_doc::build(
        &gathered.cluster,
        &gathered.service,
        &gathered.nodes,
        &settings,
        view,
    )?;
    let known = gathered.cluster.services.contains_key(&gathered.service)
        || doc.nodes.iter().any(|n| !n.chains.is_empty());
    if !known {
        return Err(report::service_not_found(
            &gathered.service,
            &gathered.nodes,
        ));
    }
    match ctx.global.output {
        OutputFormat::Text | OutputFormat::Wide => {
            let text = chains_doc::render_text(&doc, ctx.colors.stdout);
            output::print_stdout(&text).context("cannot write to stdout")?;
        }
        format => output::print_document(&ctx.command_line("chains"), format, &doc)?,
    }
    Ok(if view == View::Diff && chains_doc::has_differences(&doc) {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
