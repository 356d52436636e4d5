//! Diagnostics on stderr through `tracing`.

use tracing_subscriber::EnvFilter;

/// The log filter: `-v` sets the level (our crates at the named level, dependencies one level
/// quieter; `-vvvv` is trace for everything); without `-v`, `RUST_LOG` is used when set; else
/// warnings only. Returns the filter and, when `RUST_LOG` could not be used, why.
pub fn filter(verbose: u8, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let ours = |level: &str| format!("svcproxy={level},kubectl_svcproxy={level}");
    let directives = match verbose {
        0 => None,
        1 => Some(format!("warn,{}", ours("info"))),
        2 => Some(format!("info,{}", ours("debug"))),
        3 => Some(format!("debug,{}", ours("trace"))),
        _ => Some("trace".to_owned()),
    };
    if let Some(directives) = directives {
        return (EnvFilter::new(directives), None);
    }
    match rust_log.map(str::trim).filter(|value| !value.is_empty()) {
        None => (EnvFilter::new("warn"), None),
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new("warn"),
                Some(format!("ignoring RUST_LOG={value:?}: {err}")),
            ),
        },
    }
}

/// Sends `tracing` events to stderr, filtered per [`filter`] (reading `RUST_LOG` from the environment).
pub fn init(verbose: u8, ansi: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, problem) = filter(verbose, rust_log.as_deref());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(verbose >= 2)
        .try_init()
        .is_ok();
    if let (true, Some(problem)) = (installed, problem) {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(verbose: u8, rust_log: Option<&str>) -> String {
        filter(verbose, rust_log).0.to_string()
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(shown(0, None), "warn");
        assert!(shown(1, None).contains("svcproxy=info"));
        assert!(shown(2, None).contains("svcproxy=debug"));
        assert!(shown(3, None).contains("svcproxy=trace"));
        assert_eq!(shown(7, None), "trace");
    }

    #[test]
    fn rust_log_is_used_without_v_and_overridden_by_it() {
        assert_eq!(shown(0, Some("svcproxy=debug")), "svcproxy=debug");
        assert!(shown(1, Some("svcproxy=trace")).contains("svcproxy=info"));
        assert_eq!(shown(0, Some("  ")), "warn");
    }

    #[test]
    fn a_broken_rust_log_falls_back_with_a_reason() {
        let (filter, problem) = filter(0, Some("svcproxy=loud"));
        assert_eq!(filter.to_string(), "warn");
        assert!(problem.is_some_and(|p| p.contains("RUST_LOG")));
    }
}
