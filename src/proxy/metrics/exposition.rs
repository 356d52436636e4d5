//! Rewrites prometheus-client's OpenMetrics text into the Prometheus text format 0.0.4 that kube-proxy
//! serves (`text/plain; version=0.0.4`), so scrapers and dashboards see kube-proxy's exact names.
//!
//! The differences handled:
//! - a counter's `# HELP`/`# TYPE` lines name the family without `_total` in OpenMetrics, but must
//!   name the sample (`…_total`) in 0.0.4, or Prometheus treats the samples as untyped;
//! - `# EOF` and `# UNIT` lines do not exist in 0.0.4;
//! - the registry appends a full stop to every help text;
//! - `unknown` is called `untyped`;
//! - numbers (sample values and `le` bounds) are written the way Go's client does (`1`, `0.001`,
//!   `1e+06`), so `le` label values match kube-proxy's byte for byte;
//! - a histogram's `_sum` and `_count` follow its buckets, as in Go's output.

/// The content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Converts an OpenMetrics text exposition into the Prometheus text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    let mut family_type = "";
    let mut held: Vec<String> = Vec::new();

    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush(&mut out, &mut held);
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text.strip_suffix('.').unwrap_or(text)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            flush(&mut out, &mut held);
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                push_line(&mut out, &format!("# HELP {exposed} {text}"));
            }
            family_type = match kind {
                "unknown" => "untyped",
                other => other,
            };
            push_line(&mut out, &format!("# TYPE {exposed} {family_type}"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some(sample) = Sample::parse(line) else {
            push_line(&mut out, line);
            continue;
        };
        if family_type == "histogram" {
            if sample.name.ends_with("_sum") || sample.name.ends_with("_count") {
                held.push(sample.render());
                continue;
            }
            let rendered = sample.render();
            push_line(&mut out, &rendered);
            if sample.name.ends_with("_bucket") && sample.is_inf_bucket() {
                flush(&mut out, &mut held);
            }
            continue;
        }
        push_line(&mut out, &sample.render());
    }
    flush(&mut out, &mut held);
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

fn flush(out: &mut String, held: &mut Vec<String>) {
    for line in held.drain(..) {
        push_line(out, &line);
    }
}

/// One sample line: `name{labels} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    /// The label block without braces, as written (values still escaped).
    labels: Option<&'a str>,
    value: &'a str,
    timestamp: Option<&'a str>,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        // OpenMetrics exemplars (` # {…} v`) have no 0.0.4 form; none are recorded here anyway.
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            let close = label_block_end(&line[name_end + 1..])? + name_end + 1;
            (Some(&line[name_end + 1..close]), &line[close + 1..])
        } else {
            (None, &line[name_end..])
        };
        let rest = rest.split(" # ").next().unwrap_or(rest);
        let mut fields = rest.split_whitespace();
        let value = fields.next()?;
        Some(Sample {
            name,
            labels,
            value,
            timestamp: fields.next(),
        })
    }

    /// The `le` label: its value, and the label block without it.
    fn le(&self) -> Option<(&'a str, String)> {
        let labels = self.labels?;
        let start = if labels.starts_with("le=\"") {
            0
        } else {
            labels.find(",le=\"")? + 1
        };
        let value_start = start + 4;
        let value_end = value_start + labels[value_start..].find('"')?;
        let mut others = String::with_capacity(labels.len());
        let before = labels[..start].trim_end_matches(',');
        let after = labels[value_end + 1..].trim_start_matches(',');
        others.push_str(before);
        if !before.is_empty() && !after.is_empty() {
            others.push(',');
        }
        others.push_str(after);
        Some((&labels[value_start..value_end], others))
    }

    fn is_inf_bucket(&self) -> bool {
        self.le().is_some_and(|(le, _)| le == "+Inf")
    }

    fn render(&self) -> String {
        let mut line = String::from(self.name);
        if let Some(labels) = self.labels {
            line.push('{');
            match self.le() {
                Some((le, others)) => {
                    // Go writes `le` last, after the other labels.
                    let formatted = le.parse::<f64>().map_or_else(|_| le.to_string(), go_float);
                    line.push_str(&others);
                    if !others.is_empty() {
                        line.push(',');
                    }
                    line.push_str(&format!("le=\"{formatted}\""));
                }
                None => line.push_str(labels),
            }
            line.push('}');
        }
        line.push(' ');
        match self.value.parse::<f64>() {
            Ok(v) => line.push_str(&go_float(v)),
            Err(_) => line.push_str(self.value),
        }
        if let Some(ts) = self.timestamp {
            line.push(' ');
            line.push_str(ts);
        }
        line
    }
}

/// The index of the `}` that closes a label block, skipping quoted values.
fn label_block_end(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Formats a float the way Go's Prometheus client does (`strconv.FormatFloat(v, 'g', -1, 64)`):
/// the shortest representation, in exponent form when the exponent is below -4 or at least 6.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return v.to_string();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return v.to_string();
    };
    if (-4..6).contains(&exp) {
        v.to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.001, "0.001"),
            (16.384, "16.384"),
            (0.25, "0.25"),
            (300.0, "300"),
            (123_456.0, "123456"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.000_01, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1_700_000_000.5, "1.7000000005e+09"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn counters_are_named_after_their_samples() {
        let om = "# HELP kubeproxy_proxy_healthz [ALPHA] Cumulative proxy healthz HTTP status.\n\
                  # TYPE kubeproxy_proxy_healthz counter\n\
                  kubeproxy_proxy_healthz_total{code=\"200\"} 3\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP kubeproxy_proxy_healthz_total [ALPHA] Cumulative proxy healthz HTTP status\n\
             # TYPE kubeproxy_proxy_healthz_total counter\n\
             kubeproxy_proxy_healthz_total{code=\"200\"} 3\n"
        );
    }

    #[test]
    fn gauges_keep_their_names_and_units_vanish() {
        let om = "# HELP a_seconds Help.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\n\
                  a_seconds 1700000000.0\n# HELP b x.\n# TYPE b unknown\nb 1.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_seconds Help\n# TYPE a_seconds gauge\na_seconds 1.7e+09\n\
             # HELP b x\n# TYPE b untyped\nb 1\n"
        );
    }

    #[test]
    fn histogram_buckets_come_first_and_le_is_go_formatted() {
        let om = "# HELP h H.\n# TYPE h histogram\n\
                  h_sum{ip_family=\"IPv4\"} 0.5\n\
                  h_count{ip_family=\"IPv4\"} 1\n\
                  h_bucket{ip_family=\"IPv4\",le=\"0.0\"} 0\n\
                  h_bucket{ip_family=\"IPv4\",le=\"1.0\"} 1\n\
                  h_bucket{ip_family=\"IPv4\",le=\"+Inf\"} 1\n\
                  h_sum{ip_family=\"IPv6\"} 0.0\n\
                  h_count{ip_family=\"IPv6\"} 0\n\
                  h_bucket{le=\"0.0\",ip_family=\"IPv6\"} 0\n\
                  h_bucket{le=\"1.0\",ip_family=\"IPv6\"} 0\n\
                  h_bucket{le=\"+Inf\",ip_family=\"IPv6\"} 0\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP h H\n# TYPE h histogram\n\
             h_bucket{ip_family=\"IPv4\",le=\"0\"} 0\n\
             h_bucket{ip_family=\"IPv4\",le=\"1\"} 1\n\
             h_bucket{ip_family=\"IPv4\",le=\"+Inf\"} 1\n\
             h_sum{ip_family=\"IPv4\"} 0.5\n\
             h_count{ip_family=\"IPv4\"} 1\n\
             h_bucket{ip_family=\"IPv6\",le=\"0\"} 0\n\
             h_bucket{ip_family=\"IPv6\",le=\"1\"} 0\n\
             h_bucket{ip_family=\"IPv6\",le=\"+Inf\"} 0\n\
             h_sum{ip_family=\"IPv6\"} 0\n\
             h_count{ip_family=\"IPv6\"} 0\n"
        );
    }

    #[test]
    fn le_moves_to_the_end_wherever_it_was() {
        let om = "# HELP h H.\n# TYPE h histogram\n\
                  h_bucket{a=\"1\",le=\"2.0\",b=\"3\"} 0\n\
                  h_bucket{le=\"+Inf\"} 0\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP h H\n# TYPE h histogram\n\
             h_bucket{a=\"1\",b=\"3\",le=\"2\"} 0\n\
             h_bucket{le=\"+Inf\"} 0\n"
        );
    }

    #[test]
    fn label_values_with_braces_quotes_and_spaces_survive() {
        let om = "# HELP d D.\n# TYPE d gauge\nd{kind=\"a } b\",severity=\"say \\\"hi\\\"\"} 2\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP d D\n# TYPE d gauge\nd{kind=\"a } b\",severity=\"say \\\"hi\\\"\"} 2\n"
        );
    }
}
