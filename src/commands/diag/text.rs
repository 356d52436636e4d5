//! Human output of `trace`: a tree per node, findings, and a summary. Colour only when asked for (the
//! caller decides: terminals, `--color`, `NO_COLOR`).

use std::fmt::Write as _;

use owo_colors::OwoColorize;

use crate::core::drift::{Finding, Severity};
use crate::core::path::{EndpointStatus, EndpointStep, PortPath};
use crate::core::rules::Counters;
use crate::core::trace::{Action, Verdict};

use super::report::{NodeReport, TraceDocument, is_drift};
use super::simulate::Simulation;

/// Colouring on or off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    /// Whether to colour.
    pub color: bool,
}

impl Paint {
    fn red(self, text: &str) -> String {
        if self.color {
            text.red().to_string()
        } else {
            text.to_string()
        }
    }
    fn green(self, text: &str) -> String {
        if self.color {
            text.green().to_string()
        } else {
            text.to_string()
        }
    }
    fn yellow(self, text: &str) -> String {
        if self.color {
            text.yellow().to_string()
        } else {
            text.to_string()
        }
    }
    fn bold(self, text: &str) -> String {
        if self.color {
            text.bold().to_string()
        } else {
            text.to_string()
        }
    }
    fn dim(self, text: &str) -> String {
        if self.color {
            text.dimmed().to_string()
        } else {
            text.to_string()
        }
    }
    fn severity(self, severity: Severity, text: &str) -> String {
        match severity {
            Severity::Error => self.red(text),
            Severity::Warning => self.yellow(text),
            Severity::Info => self.dim(text),
        }
    }
}

/// Prints `doc` as text; `wide` adds chain names, dump lines and counters.
pub fn render(doc: &TraceDocument, wide: bool, paint: Paint) -> String {
    let mut out = String::new();
    service_header(&mut out, doc, paint);
    for finding in doc.findings.iter().filter(|f| f.node.is_none()) {
        finding_line(&mut out, "", finding, paint);
    }
    for report in &doc.nodes {
        out.push('\n');
        node_section(&mut out, report, wide, paint);
    }
    for note in &doc.notes {
        let _ = writeln!(out, "{} {note}", paint.dim("note:"));
    }
    out.push('\n');
    summary(&mut out, doc, paint);
    out
}

fn service_header(out: &mut String, doc: &TraceDocument, paint: Paint) {
    let s = &doc.service;
    let id = format!("{}/{}", s.namespace, s.name);
    if !s.exists {
        let _ = writeln!(
            out,
            "Service {}  {}",
            paint.bold(&id),
            paint.red("not in the cluster (deleted?)")
        );
        return;
    }
    let mut line = format!("Service {}", paint.bold(&id));
    if let Some(kind) = &s.r#type {
        let _ = write!(line, "  {kind}");
    }
    for ip in &s.cluster_ips {
        let _ = write!(line, " {ip}");
    }
    let _ = writeln!(out, "{line}");
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| {
            let mut text = String::new();
            if !p.name.is_empty() {
                let _ = write!(text, "{} ", p.name);
            }
            let _ = write!(text, "{}/{}", p.port, p.protocol);
            if let Some(target) = &p.target_port {
                let _ = write!(text, "→{target}");
            }
            if let Some(node_port) = p.node_port {
                let _ = write!(text, " nodePort {node_port}");
            }
            text
        })
        .collect();
    if !ports.is_empty() {
        let _ = writeln!(out, "  ports: {}", ports.join(", "));
    }
    let mut extra = Vec::new();
    if let Some(selector) = &s.selector {
        extra.push(format!("selector {selector}"));
    }
    if s.external_traffic_policy.as_deref() == Some("Local") {
        extra.push("externalTrafficPolicy Local".into());
    }
    if s.internal_traffic_policy.as_deref() == Some("Local") {
        extra.push("internalTrafficPolicy Local".into());
    }
    if let Some(seconds) = s.session_affinity_seconds {
        extra.push(format!("sessionAffinity ClientIP ({seconds}s)"));
    }
    if !s.external_ips.is_empty() {
        let ips: Vec<String> = s.external_ips.iter().map(ToString::to_string).collect();
        extra.push(format!("externalIPs {}", ips.join(",")));
    }
    if !s.load_balancer_ips.is_empty() {
        let ips: Vec<String> = s
            .load_balancer_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        extra.push(format!("load balancer {}", ips.join(",")));
    }
    if !extra.is_empty() {
        let _ = writeln!(out, "  {}", extra.join("  "));
    }
    if doc.endpoint_slices.is_empty() {
        let _ = writeln!(out, "  EndpointSlices: {}", paint.yellow("none"));
    } else {
        let slices: Vec<String> = doc
            .endpoint_slices
            .iter()
            .map(|s| format!("{} ({} endpoints, {} ready)", s.name, s.endpoints, s.ready))
            .collect();
        let _ = writeln!(out, "  EndpointSlices: {}", slices.join(", "));
    }
}

fn node_section(out: &mut String, report: &NodeReport, wide: bool, paint: Paint) {
    let family = if report.family == "IPv6" {
        " (IPv6)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "node {}{family}  {}",
        paint.bold(&report.node),
        paint.dim(&format!("rules: {}", report.source))
    );
    if wide && !report.settings.is_empty() {
        let _ = writeln!(
            out,
            "  {} {}",
            paint.dim("settings:"),
            report.settings.join("; ")
        );
    }
    if report.path.ports.is_empty() {
        let _ = writeln!(out, "  (no port of the Service to show)");
    }
    for port in &report.path.ports {
        port_tree(out, port, wide, paint);
    }
    if let Some(sim) = &report.simulation {
        simulation(out, sim, wide, paint);
    }
    for finding in &report.findings {
        finding_line(out, "  ", finding, paint);
    }
    if !report.findings.iter().any(is_drift) {
        let _ = writeln!(
            out,
            "  {}",
            paint.green("✓ the node's rules match the cluster")
        );
    }
}

fn counters(c: Option<Counters>) -> String {
    c.map(|c| format!(" [{} pkts, {} bytes]", c.packets, c.bytes))
        .unwrap_or_default()
}

fn port_tree(out: &mut String, port: &PortPath, wide: bool, paint: Paint) {
    let title = match &port.port {
        Some(p) => format!("{}  {p}", port.service_port),
        None => format!(
            "{}  {}",
            port.service_port,
            paint.red("(port no longer in the cluster)")
        ),
    };
    let _ = writeln!(out, "  {title}");
    if port.entries.is_empty() {
        let _ = writeln!(out, "  ├─ {}", paint.yellow("no entry rule on this node"));
    }
    for entry in &port.entries {
        let dest = destination(
            entry.destination.as_deref(),
            entry.destination_port.as_deref(),
        );
        let target = match entry.target.as_str() {
            "REJECT" | "DROP" => paint.red(&entry.target),
            t if wide => t.to_string(),
            t => t
                .strip_prefix("KUBE-")
                .and_then(|rest| rest.split('-').next())
                .unwrap_or(t)
                .to_string(),
        };
        let location = if wide {
            paint.dim(&format!(
                "  ({} {} line {}){}",
                entry.table,
                entry.chain,
                entry.line,
                counters(entry.counters)
            ))
        } else {
            String::new()
        };
        let _ = writeln!(out, "  ├─ {} {dest} → {target}{location}", entry.purpose);
    }
    if wide {
        for chain in &port.chains {
            let _ = writeln!(out, "  │  {} ({} rules)", chain.name, chain.rules.len());
            for rule in &chain.rules {
                let _ = writeln!(
                    out,
                    "  │    {}{}",
                    paint.dim(&rule.rule),
                    paint.dim(&counters(rule.counters))
                );
            }
        }
    }
    let count = port.endpoints.len();
    if count == 0 {
        let _ = writeln!(out, "  └─ {}", paint.yellow("no endpoints"));
    }
    for (i, endpoint) in port.endpoints.iter().enumerate() {
        let branch = if i + 1 == count { "└─" } else { "├─" };
        let _ = writeln!(out, "  {branch} {}", endpoint_line(endpoint, wide, paint));
    }
}

fn endpoint_line(e: &EndpointStep, wide: bool, paint: Paint) -> String {
    let share = match e.shares.as_slice() {
        [] => "     ".to_string(),
        [one] => format!("{:>4.1}%", one.share * 100.0),
        many => many
            .iter()
            .map(|s| format!("{:.1}%", s.share * 100.0))
            .collect::<Vec<_>>()
            .join("/"),
    };
    let mut line = format!("{share}  {:<21}", e.address);
    if let Some(pod) = &e.pod {
        let _ = write!(line, " pod {pod}");
    }
    if let Some(node) = &e.node {
        let _ = write!(line, " on {node}");
    }
    if let Some(c) = e.conditions {
        let state = if c.ready {
            "ready"
        } else if c.serving && c.terminating {
            "terminating, serving"
        } else if c.terminating {
            "terminating"
        } else {
            "not ready"
        };
        let _ = write!(line, "  {state}");
    }
    let status = match e.status {
        EndpointStatus::Active => String::new(),
        EndpointStatus::Stale => format!(
            "  {}",
            paint.red(if e.pod.is_none() {
                "STALE: not an endpoint any more (no pod has this address)"
            } else {
                "STALE: not a usable endpoint any more"
            })
        ),
        EndpointStatus::Missing => format!("  {}", paint.red("MISSING on this node")),
        EndpointStatus::Unused => format!("  {}", paint.dim("(not used by this node)")),
    };
    line.push_str(&status);
    if wide {
        if let Some(chain) = &e.chain {
            let _ = write!(line, "  {}", paint.dim(chain));
        }
        line.push_str(&paint.dim(&counters(e.counters)));
    }
    line
}

fn simulation(out: &mut String, sim: &Simulation, wide: bool, paint: Paint) {
    let mut head = format!("  packet from {}", sim.from);
    if let Some(source) = sim.source {
        let _ = write!(head, " ({source})");
    }
    if let Some(dest) = &sim.destination {
        let _ = write!(head, " to {dest}");
    }
    if let Some(origin) = sim.origin {
        let _ = write!(head, ", {origin}");
    }
    let _ = writeln!(out, "{head}:");
    for note in &sim.notes {
        let _ = writeln!(out, "    {} {note}", paint.dim("note:"));
    }
    for step in &sim.steps {
        let action = match &step.action {
            Action::Jump { chain, probability } => match probability {
                Some(p) => format!("jump {chain} (p={p:.4})"),
                None => format!("jump {chain}"),
            },
            Action::Dnat { to } => format!("DNAT to {to}"),
            Action::MarkMasquerade | Action::Mark { masquerade: true } => {
                "mark for masquerade".into()
            }
            Action::Reject => paint.red("REJECT"),
            Action::Drop => paint.red("DROP"),
            Action::Accept => "ACCEPT".into(),
            Action::Return => "return".into(),
            other => format!("{other:?}").to_lowercase(),
        };
        let line = step.line.map(|l| format!(" line {l}")).unwrap_or_default();
        let where_ = if wide {
            format!("{} {}{line}", step.table.as_str(), step.chain)
        } else {
            step.chain.clone()
        };
        let _ = writeln!(
            out,
            "    {}{where_}: {action}",
            "  ".repeat(step.depth.min(6))
        );
    }
    let verdict = match &sim.verdict {
        None => return,
        Some(Verdict::Dnat(candidates)) => candidates
            .iter()
            .map(|c| format!("{} ({:.1}%)", c.destination, c.share * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        Some(Verdict::Reject) => paint.red("REJECTED (connection refused)"),
        Some(Verdict::Drop) => paint.red("DROPPED (the client times out)"),
        Some(Verdict::Accept) => "accepted, not translated".into(),
        Some(Verdict::NoMatch) => paint.yellow("no rule matched: not translated"),
    };
    let masq = if sim.masquerade {
        "; masqueraded (source becomes the node)"
    } else {
        "; source kept"
    };
    let _ = writeln!(out, "    ⇒ {verdict}{masq}");
}

fn finding_line(out: &mut String, indent: &str, finding: &Finding, paint: Paint) {
    let mark = match finding.severity {
        Severity::Error => "✗",
        Severity::Warning => "!",
        Severity::Info => "i",
    };
    let _ = writeln!(
        out,
        "{indent}{} {}",
        paint.severity(finding.severity, &format!("{mark} {}", finding.kind)),
        finding.message
    );
}

fn summary(out: &mut String, doc: &TraceDocument, paint: Paint) {
    let nodes: std::collections::BTreeSet<&str> =
        doc.nodes.iter().map(|n| n.node.as_str()).collect();
    if nodes.is_empty() {
        let _ = writeln!(out, "{}", paint.yellow("no node's rules were checked"));
        return;
    }
    let drift = doc.findings.iter().filter(|f| is_drift(f)).count();
    if doc.disagreeing_nodes.is_empty() {
        let _ = writeln!(
            out,
            "{} node(s) checked ({}): {}",
            nodes.len(),
            nodes.iter().copied().collect::<Vec<_>>().join(", "),
            paint.green("all match the cluster")
        );
    } else {
        let _ = writeln!(
            out,
            "{} node(s) checked: {} {} from the cluster ({drift} finding(s))",
            nodes.len(),
            paint.red(&doc.disagreeing_nodes.join(", ")),
            if doc.disagreeing_nodes.len() == 1 {
                "differs"
            } else {
                "differ"
            },
        );
    }
}

/// `10.0.0.1:80`, `[fd00::1]:80`, `10.0.0.0/8 port 80`, `port 30080` or `10.0.0.1`: a rule's destination
/// as a reader writes it (host prefixes dropped).
fn destination(address: Option<&str>, port: Option<&str>) -> String {
    let host = address.map(|a| {
        a.strip_suffix("/32")
            .or_else(|| a.strip_suffix("/128"))
            .map_or_else(|| (a.to_string(), false), |h| (h.to_string(), true))
    });
    match (host, port) {
        (Some((h, true)), Some(p)) if !p.starts_with('!') && !h.starts_with('!') => {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        }
        (Some((h, _)), Some(p)) => format!("{h} port {p}"),
        (Some((h, _)), None) => h,
        (None, Some(p)) => format!("port {p}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn destinations_read_like_addresses() {
        assert_eq!(
            destination(Some("10.43.7.11/32"), Some("80")),
            "10.43.7.11:80"
        );
        assert_eq!(destination(Some("fd00::1/128"), Some("80")), "[fd00::1]:80");
        assert_eq!(
            destination(Some("10.0.0.0/8"), Some("80")),
            "10.0.0.0/8 port 80"
        );
        assert_eq!(destination(None, Some("30080")), "port 30080");
        assert_eq!(
            destination(Some("! 10.0.0.1/32"), Some("80")),
            "! 10.0.0.1 port 80"
        );
        assert_eq!(destination(None, None), "");
    }
}
