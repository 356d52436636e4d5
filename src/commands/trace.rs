//! `trace SERVICE`: the Service → EndpointSlices → KUBE-SERVICES → KUBE-SVC → KUBE-SEP → pod path on
//! each node checked, with drift findings, and optionally one simulated packet.

use anyhow::Context as _;

use super::diag::report::{self, Request};
use super::diag::settings::ExpectedSettings;
use super::diag::simulate::PacketSource;
use super::diag::text::{self, Paint};
use super::diag::{ClusterNeeds, gather_with};
use super::{Context, Outcome};
use crate::cli::{OutputFormat, TraceArgs};
use crate::core::model::NamespacedName;
use crate::output;

/// Runs `trace`: exit 0 when the path is clean, 1 with findings.
pub fn run(ctx: &Context, args: &TraceArgs) -> anyhow::Result<Outcome> {
    let from = args
        .from
        .as_deref()
        .map(|text| text.parse::<PacketSource>().map_err(anyhow::Error::msg))
        .transpose()?;
    // Only this Service's part of a snapshot's cluster state, plus the pod `--from` names.
    let pods = match &from {
        Some(PacketSource::Pod(name)) => name
            .split_once('/')
            .map(|(namespace, name)| NamespacedName::new(namespace, name))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let gathered = gather_with(
        ctx,
        &args.service,
        &args.source,
        ClusterNeeds::Service {
            pods,
            whole_dumps: from.is_some(),
        },
    )?;
    let settings = ExpectedSettings {
        overrides: args.expected_settings.overrides(),
    };
    let doc = report::build(Request {
        cluster: &gathered.cluster,
        service: &gathered.service,
        nodes: &gathered.nodes,
        settings: &settings,
        port: args.port.as_deref(),
        from: from.as_ref(),
        notes: gathered.notes,
    })?;
    match ctx.global.output {
        OutputFormat::Text | OutputFormat::Wide => {
            let wide = ctx.global.output == OutputFormat::Wide;
            let text = text::render(
                &doc,
                wide,
                Paint {
                    color: ctx.colors.stdout,
                },
            );
            output::print_stdout(&text).context("cannot write to stdout")?;
        }
        format => output::print_document(&ctx.command_line("trace"), format, &doc)?,
    }
    Ok(if doc.findings.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
