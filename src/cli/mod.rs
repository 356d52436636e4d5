//! The command line: clap types, plus the few helpers that resolve how the program was invoked.
//!
//! Nothing here does I/O or runs a command; [`crate::commands`] does that with what these types hold.

mod args;
mod duration;
mod invocation;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub use args::{
    BundleArgs, ChainsArgs, ConntrackArgs, DetectLocalMode, ExpectedSettingsArgs, ExplicitFlags,
    IptablesBackend, NodePortAddress, ProxyArgs, ProxySettingsArgs, RenderArgs, SourceArgs,
    TraceArgs, TuiArgs,
};
pub use duration::parse_duration;
pub use invocation::{DEFAULT_BIN_NAME, display_name};

/// `kubectl svcproxy`: a kube-proxy compatible iptables service proxy and the diagnostics that trace a
/// Service to its pods on any node.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-svcproxy",
    version,
    about = "A kube-proxy compatible iptables service proxy, and diagnostics that trace a Service to its pods on any node",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The flags every subcommand accepts. kubectl does not forward its own global flags to plugins, so
/// the plugin parses them itself; they may be given before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use (overrides the KUBECONFIG variable)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// Namespace of the Service (default: the context's namespace)
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Look in every namespace (takes precedence over --namespace)
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub output: OutputFormat,
    /// When to colour human output (NO_COLOR in the environment means never, unless this flag says otherwise)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// More log output on stderr: -v info, -vv debug, -vvv trace (without -v, RUST_LOG is honoured)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text
    Text,
    /// Text with extra columns (nodes, chain names, probabilities, counters)
    Wide,
    /// JSON with a stable, versioned schema
    Json,
    /// YAML with the same schema as JSON
    Yaml,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal that supports it and NO_COLOR is unset
    Auto,
    /// Always colour
    Always,
    /// Never colour
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node service proxy (iptables mode, a drop-in replacement for kube-proxy)
    Proxy(ProxyArgs),
    /// Trace a Service to its pods through a node's iptables rules
    Trace(TraceArgs),
    /// Show a node's iptables chains for a Service
    Chains(ChainsArgs),
    /// Interactive view of Services, their rules and their pods
    Tui(TuiArgs),
    /// Print the iptables-restore input the proxy would apply on a node, from a snapshot bundle
    Render(RenderArgs),
    /// Write a snapshot bundle (cluster state and node rules) from the live cluster
    Bundle(BundleArgs),
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Proxy(_) => "proxy",
            Command::Trace(_) => "trace",
            Command::Chains(_) => "chains",
            Command::Tui(_) => "tui",
            Command::Render(_) => "render",
            Command::Bundle(_) => "bundle",
        }
    }
}

impl Cli {
    /// The clap command, with help and usage naming the program `bin_name` (see [`display_name`]).
    pub fn command_named(bin_name: &str, color: clap::ColorChoice) -> clap::Command {
        <Cli as CommandFactory>::command()
            .bin_name(bin_name.to_owned())
            .color(color)
    }

    /// Parses a full argument list (the first item is the program path, as in `std::env::args_os`).
    ///
    /// Returns the parsed command line and the name help and messages use for the program. On `--help`,
    /// `--version` or a usage error, returns clap's error, whose `exit()` prints it and exits with 0 or 2.
    pub fn parse_args<I, T>(args: I) -> Result<(Cli, String), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let bin_name = display_name(args.first().map(OsString::as_os_str));
        let color = clap_color_hint(&args);
        let matches = Cli::command_named(&bin_name, color).try_get_matches_from(&args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let (Command::Proxy(proxy), Some(("proxy", sub))) =
            (&mut cli.command, matches.subcommand())
        {
            proxy.explicit = ExplicitFlags::from_matches(sub);
        }
        Ok((cli, bin_name))
    }
}

/// clap prints help and usage errors before our own `--color` handling runs, so peek at the arguments
/// for `--color WHEN` / `--color=WHEN` to colour clap's own output the same way. Unknown or missing
/// values leave clap on `Auto`, which honours NO_COLOR and terminal detection by itself.
fn clap_color_hint(args: &[OsString]) -> clap::ColorChoice {
    let mut choice = clap::ColorChoice::Auto;
    let mut iter = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--color" {
            iter.next().map(|v| v.into_owned())
        } else {
            arg.strip_prefix("--color=").map(str::to_owned)
        };
        match value.as_deref() {
            Some("always") => choice = clap::ColorChoice::Always,
            Some("never") => choice = clap::ColorChoice::Never,
            Some("auto") => choice = clap::ColorChoice::Auto,
            _ => {}
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(args.iter().copied()).map(|(cli, _)| cli)
    }

    #[test]
    fn clap_definition_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_subcommand() {
        let cli = parse(&[
            "kubectl-svcproxy",
            "trace",
            "web",
            "-n",
            "shop",
            "-o",
            "json",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.verbose, 2);
        assert!(matches!(cli.command, Command::Trace(ref t) if t.service == "web"));
    }

    #[test]
    fn global_flags_are_accepted_before_the_subcommand() {
        let cli = parse(&[
            "kubectl-svcproxy",
            "--context",
            "prod",
            "-A",
            "--color=never",
            "chains",
            "web",
        ])
        .unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        assert!(cli.global.all_namespaces);
        assert_eq!(cli.global.color, ColorChoice::Never);
        assert_eq!(cli.command.name(), "chains");
    }

    #[test]
    fn render_requires_snapshot_and_node() {
        let err = parse(&["kubectl-svcproxy", "render", "--node", "n1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse(&["kubectl-svcproxy", "render", "--snapshot", "dir"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn bundle_takes_a_directory_and_repeated_nodes() {
        let cli = parse(&[
            "kubectl-svcproxy",
            "bundle",
            "out",
            "--node",
            "a",
            "--node",
            "b",
        ])
        .unwrap();
        let Command::Bundle(args) = cli.command else {
            panic!("not bundle");
        };
        assert_eq!(args.dir, PathBuf::from("out"));
        assert_eq!(args.nodes, ["a", "b"]);
        assert!(!args.force);
        let err = parse(&["kubectl-svcproxy", "bundle"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn usage_names_the_program_as_invoked() {
        let err = Cli::parse_args(["/usr/local/bin/kubectl-svcproxy", "--bogus"]).unwrap_err();
        assert!(err.to_string().contains("Usage: kubectl svcproxy"), "{err}");
        let err = Cli::parse_args(["/opt/svcproxy", "render", "--bogus"]).unwrap_err();
        assert!(err.to_string().contains("Usage: svcproxy render"), "{err}");
    }

    #[test]
    fn color_hint_reads_both_spellings_and_stops_at_double_dash() {
        let hint =
            |args: &[&str]| clap_color_hint(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(hint(&["x", "--color", "never"]), clap::ColorChoice::Never);
        assert_eq!(
            hint(&["x", "--color=always", "trace"]),
            clap::ColorChoice::Always
        );
        assert_eq!(
            hint(&["x", "--color=never", "--color=auto"]),
            clap::ColorChoice::Auto
        );
        assert_eq!(hint(&["x", "--", "--color=never"]), clap::ColorChoice::Auto);
        assert_eq!(hint(&["x", "--color"]), clap::ColorChoice::Auto);
    }
}
