//! The subcommands' flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{ArgAction, Args, ValueEnum};
use ipnet::IpNet;

use super::duration::parse_duration;
use crate::core::conntrack_tuning::{
    ConntrackTuning, DEFAULT_MAX_PER_CORE, DEFAULT_MIN, timeout_seconds,
};

/// Where the diagnostics read the cluster state and the node's rules from; shared by `trace`, `chains`
/// and `tui`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sources")]
pub struct SourceArgs {
    /// Read the cluster state (and node rules) from a snapshot bundle directory instead of the API server
    #[arg(long, value_name = "DIR")]
    pub snapshot: Option<PathBuf>,
    /// The node whose rules to check (default: the nodes that host the Service's endpoints)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Read the node's rules from an iptables-save dump
    #[arg(long, value_name = "FILE", conflicts_with = "local")]
    pub rules: Option<PathBuf>,
    /// Read the rules of this machine with iptables-save
    #[arg(long)]
    pub local: bool,
}

/// `trace SERVICE`.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// The Service to trace
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// Simulate one packet from SOURCE: pod/NAME, an IP address, `node` or `external`
    #[arg(long, value_name = "SOURCE")]
    pub from: Option<String>,
    /// The Service port to trace (name or number; default: every port)
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Where the cluster state and the node rules come from
    #[command(flatten)]
    pub source: SourceArgs,
    /// The proxy settings the expected rules are planned with (default: from the kube-proxy
    /// ConfigMap, else from the node's own rules)
    #[command(flatten)]
    pub expected_settings: ExpectedSettingsArgs,
}

/// `chains SERVICE`.
#[derive(Debug, Clone, Args)]
pub struct ChainsArgs {
    /// The Service whose chains to show
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// Show the chains the node should have instead of the ones it has
    #[arg(long, conflicts_with = "diff")]
    pub expected: bool,
    /// Show the difference between the chains the node has and the ones it should have
    #[arg(long)]
    pub diff: bool,
    /// Where the cluster state and the node rules come from
    #[command(flatten)]
    pub source: SourceArgs,
    /// The proxy settings the expected rules are planned with (default: from the kube-proxy
    /// ConfigMap, else from the node's own rules)
    #[command(flatten)]
    pub expected_settings: ExpectedSettingsArgs,
}

/// `tui`.
#[derive(Debug, Clone, Args)]
pub struct TuiArgs {
    /// Where the cluster state and the node rules come from
    #[command(flatten)]
    pub source: SourceArgs,
}

use crate::core::model::SettingsOverrides;
pub use crate::core::model::detect::{DetectLocalMode, NodePortAddress};

/// `--detect-local-mode` takes kube-proxy's values, case-insensitively, each with its help.
impl ValueEnum for DetectLocalMode {
    fn value_variants<'a>() -> &'a [Self] {
        &DetectLocalMode::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            DetectLocalMode::ClusterCidr => "Pod traffic has a source in --cluster-cidr",
            DetectLocalMode::NodeCidr => "Pod traffic has a source in the Node's podCIDRs",
            DetectLocalMode::BridgeInterface => {
                "Pod traffic enters through the bridge named by --pod-bridge-interface"
            }
            DetectLocalMode::InterfaceNamePrefix => {
                "Pod traffic enters through interfaces named --pod-interface-name-prefix*"
            }
        };
        Some(PossibleValue::new(self.as_str()).help(help))
    }
}

/// The proxy settings that change which rules a node gets; shared by `proxy` and `render`, with
/// kube-proxy's flag names. Boolean flags also accept kube-proxy's `--flag=true|false` spelling.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Proxy settings")]
pub struct ProxySettingsArgs {
    /// The cluster's pod CIDR(s), at most one per IP family (repeat the flag or separate with commas)
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub cluster_cidr: Vec<IpNet>,
    /// Masquerade all traffic sent to Service IPs
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true,
        default_value_t = false,
        action = ArgAction::Set,
    )]
    pub masquerade_all: bool,
    /// How to recognise traffic from local pods (default: ClusterCIDR when --cluster-cidr is given, else none)
    #[arg(long, value_enum, value_name = "MODE", ignore_case = true)]
    pub detect_local_mode: Option<DetectLocalMode>,
    /// The pod bridge, for --detect-local-mode BridgeInterface
    #[arg(long, value_name = "NAME")]
    pub pod_bridge_interface: Option<String>,
    /// The pod interface name prefix, for --detect-local-mode InterfaceNamePrefix
    #[arg(long, value_name = "PREFIX")]
    pub pod_interface_name_prefix: Option<String>,
    /// Accept NodePort traffic only on local addresses in these CIDRs, or `primary` for the node's
    /// primary IPs (default: every local address)
    #[arg(long, value_name = "CIDR|primary", value_delimiter = ',')]
    pub nodeport_addresses: Vec<NodePortAddress>,
}

/// The settings the diagnostics plan a node's expected rules with, overriding the
/// `kube-system/kube-proxy` ConfigMap and what the node's own rules show. Flags carry kube-proxy's names;
/// an absent flag leaves the setting to those sources.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Expected proxy settings")]
pub struct ExpectedSettingsArgs {
    /// The cluster's pod CIDR(s), at most one per IP family (repeat the flag or separate with commas)
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub cluster_cidr: Option<Vec<IpNet>>,
    /// How the node's kube-proxy recognises traffic from local pods
    #[arg(long, value_enum, value_name = "MODE", ignore_case = true)]
    pub detect_local_mode: Option<DetectLocalMode>,
    /// The pod bridge, for --detect-local-mode BridgeInterface
    #[arg(long, value_name = "NAME")]
    pub pod_bridge_interface: Option<String>,
    /// The pod interface name prefix, for --detect-local-mode InterfaceNamePrefix
    #[arg(long, value_name = "PREFIX")]
    pub pod_interface_name_prefix: Option<String>,
    /// The node's kube-proxy masquerades all traffic sent to Service IPs
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_possible_values = true,
        action = ArgAction::Set,
    )]
    pub masquerade_all: Option<bool>,
    /// The bit of the packet mark that flags traffic for masquerading
    #[arg(long, value_name = "BIT", value_parser = clap::value_parser!(u8).range(0..=31))]
    pub iptables_masquerade_bit: Option<u8>,
    /// The node's kube-proxy accepts NodePort connections to 127.0.0.1
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_possible_values = true,
        action = ArgAction::Set,
    )]
    pub iptables_localhost_nodeports: Option<bool>,
    /// The node accepts NodePort traffic only on local addresses in these CIDRs, or `primary` for its
    /// primary IPs
    #[arg(long, value_name = "CIDR|primary", value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<NodePortAddress>>,
}

impl ExpectedSettingsArgs {
    /// The flags given, for [`resolve_node_context`](crate::core::model::resolve_node_context).
    pub fn overrides(&self) -> SettingsOverrides {
        SettingsOverrides {
            cluster_cidrs: self.cluster_cidr.clone(),
            detect_local_mode: self.detect_local_mode,
            pod_bridge_interface: self.pod_bridge_interface.clone(),
            pod_interface_name_prefix: self.pod_interface_name_prefix.clone(),
            masquerade_all: self.masquerade_all,
            masquerade_bit: self.iptables_masquerade_bit,
            localhost_nodeports: self.iptables_localhost_nodeports,
            nodeport_addresses: self.nodeport_addresses.clone(),
        }
    }
}

/// `proxy`: the node service proxy. Flags carry kube-proxy's names so a kube-proxy DaemonSet's arguments
/// can be reused.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Settings that change the rules
    #[command(flatten)]
    pub settings: ProxySettingsArgs,
    /// The name of this node (default: the host name)
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// Accept NodePort connections to 127.0.0.1 (IPv4 only)
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true,
        default_value_t = true,
        action = ArgAction::Set,
    )]
    pub iptables_localhost_nodeports: bool,
    /// Longest time between two full syncs of the rules
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub iptables_sync_period: Duration,
    /// Shortest time between two syncs of the rules
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub iptables_min_sync_period: Duration,
    /// Address and port of the health check server (/healthz, /livez)
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// Address and port of the metrics server (/metrics)
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// Remove every rule the proxy owns, then exit
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true,
        default_value_t = false,
        action = ArgAction::Set,
    )]
    pub cleanup: bool,
    /// Do the one-time node set-up, then exit
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true,
        default_value_t = false,
        action = ArgAction::Set,
    )]
    pub init_only: bool,
    /// Never write rules: compare the node's rules with the expected ones and report drift
    #[arg(long)]
    pub audit: bool,
    /// Which iptables backend to program: detect it as kube-proxy's image does, or force one
    #[arg(long, value_enum, value_name = "BACKEND", default_value = "auto")]
    pub iptables_backend: IptablesBackend,
    /// The bit of the packet mark that flags traffic for masquerading
    #[arg(long, value_name = "BIT", default_value_t = 14, value_parser = clap::value_parser!(u8).range(0..=31))]
    pub iptables_masquerade_bit: u8,
    /// kube-proxy's conntrack settings, applied by `--init-only`
    #[command(flatten)]
    pub conntrack: ConntrackArgs,
    /// Which flags with a default were typed on the command line (set by
    /// [`Cli::parse_args`](crate::cli::Cli::parse_args)); `--audit` overrides only those.
    #[arg(skip)]
    pub explicit: ExplicitFlags,
}

/// kube-proxy's conntrack flags, with its names, defaults and meaning. The node-wide settings need a
/// privileged process in the host's network namespace, so `--init-only` applies them (the DaemonSet's
/// init container); the long-running proxy only accepts them, so that both containers take one set of
/// flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Conntrack (applied by --init-only)")]
pub struct ConntrackArgs {
    /// Maximum number of NAT connections to track per CPU core (0 to leave the limit as-is and
    /// ignore --conntrack-min)
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_PER_CORE,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(i32::MAX)),
    )]
    pub conntrack_max_per_core: u32,
    /// Minimum number of conntrack entries to allocate, regardless of --conntrack-max-per-core
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MIN,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(i32::MAX)),
    )]
    pub conntrack_min: u32,
    /// Idle timeout for established TCP connections (0 to leave as-is)
    #[arg(long, value_name = "DURATION", default_value = "24h0m0s", value_parser = parse_conntrack_timeout)]
    pub conntrack_tcp_timeout_established: Duration,
    /// NAT timeout for TCP connections in the CLOSE_WAIT state (0 to leave as-is)
    #[arg(long, value_name = "DURATION", default_value = "1h0m0s", value_parser = parse_conntrack_timeout)]
    pub conntrack_tcp_timeout_close_wait: Duration,
    /// Accept out-of-window TCP packets: set nf_conntrack_tcp_be_liberal to 1 (false leaves it as-is)
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true,
        default_value_t = false,
        action = ArgAction::Set,
    )]
    pub conntrack_tcp_be_liberal: bool,
    /// Idle timeout for UNREPLIED UDP connections (0 to leave as-is)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_conntrack_timeout)]
    pub conntrack_udp_timeout: Duration,
    /// Idle timeout for ASSURED UDP connections (0 to leave as-is)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_conntrack_timeout)]
    pub conntrack_udp_timeout_stream: Duration,
}

impl ConntrackArgs {
    /// The settings these flags ask for.
    pub fn tuning(&self) -> ConntrackTuning {
        ConntrackTuning {
            max_per_core: self.conntrack_max_per_core,
            min: self.conntrack_min,
            tcp_established_timeout: self.conntrack_tcp_timeout_established,
            tcp_close_wait_timeout: self.conntrack_tcp_timeout_close_wait,
            tcp_be_liberal: self.conntrack_tcp_be_liberal,
            udp_timeout: self.conntrack_udp_timeout,
            udp_stream_timeout: self.conntrack_udp_timeout_stream,
        }
    }
}

/// A conntrack timeout: a Go-style duration (`24h0m0s`, `45s`, `0`), 0 or at least a second.
fn parse_conntrack_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    timeout_seconds(timeout).map_err(|e| e.to_string())?;
    Ok(timeout)
}

/// Which `proxy` flags that have a default value were given explicitly. A flag left at its default
/// must not override what `--audit` reads from the kube-proxy ConfigMap or the node's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplicitFlags {
    /// `--masquerade-all` was given.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` was given.
    pub iptables_masquerade_bit: bool,
    /// `--iptables-localhost-nodeports` was given.
    pub iptables_localhost_nodeports: bool,
}

impl ExplicitFlags {
    /// Reads the flags' sources from the `proxy` subcommand's matches.
    pub fn from_matches(matches: &clap::ArgMatches) -> ExplicitFlags {
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        ExplicitFlags {
            masquerade_all: given("masquerade_all"),
            iptables_masquerade_bit: given("iptables_masquerade_bit"),
            iptables_localhost_nodeports: given("iptables_localhost_nodeports"),
        }
    }
}

impl ProxyArgs {
    /// The settings `--audit` plans the node's expected rules with, over the kube-proxy ConfigMap and
    /// the node's own rules: only flags given on the command line. List flags count when non-empty,
    /// optional flags when set, and flags with a default value only when typed ([`ExplicitFlags`]).
    pub fn audit_overrides(&self) -> SettingsOverrides {
        let s = &self.settings;
        SettingsOverrides {
            cluster_cidrs: (!s.cluster_cidr.is_empty()).then(|| s.cluster_cidr.clone()),
            detect_local_mode: s.detect_local_mode,
            pod_bridge_interface: s.pod_bridge_interface.clone(),
            pod_interface_name_prefix: s.pod_interface_name_prefix.clone(),
            masquerade_all: self.explicit.masquerade_all.then_some(s.masquerade_all),
            masquerade_bit: self
                .explicit
                .iptables_masquerade_bit
                .then_some(self.iptables_masquerade_bit),
            localhost_nodeports: self
                .explicit
                .iptables_localhost_nodeports
                .then_some(self.iptables_localhost_nodeports),
            nodeport_addresses: (!s.nodeport_addresses.is_empty())
                .then(|| s.nodeport_addresses.clone()),
        }
    }
}

/// `--iptables-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IptablesBackend {
    /// The backend kubelet uses (its hint chains), else the one with more rules, else nft.
    Auto,
    /// iptables-nft.
    Nft,
    /// iptables-legacy.
    Legacy,
}

/// `render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The snapshot bundle directory (its cluster.json is read)
    #[arg(long, value_name = "DIR")]
    pub snapshot: PathBuf,
    /// The node to render the rules for (a Node in the bundle)
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Render the IPv6 rules (ip6tables-restore input) instead of the IPv4 ones
    #[arg(long)]
    pub ipv6: bool,
    /// Settings that change the rules
    #[command(flatten)]
    pub settings: ProxySettingsArgs,
    /// Do not accept NodePort connections to 127.0.0.1 (kube-proxy's --iptables-localhost-nodeports=false)
    #[arg(long)]
    pub no_localhost_nodeports: bool,
}

/// `bundle DIR`.
#[derive(Debug, Clone, Args)]
pub struct BundleArgs {
    /// The directory to write the bundle to (created if missing; must be empty unless --force)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Store the rules of this node (repeatable; default: every node)
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Write into a non-empty DIR, replacing its cluster.json and nodes/
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["kubectl-svcproxy"];
        argv.extend_from_slice(args);
        match Cli::parse_args(argv) {
            Ok((cli, _)) => cli,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn kube_proxy_flag_spellings_are_accepted() {
        let cli = parse(&[
            "proxy",
            "--hostname-override=node1",
            "--cluster-cidr=10.244.0.0/16,fd00:10:244::/48",
            "--masquerade-all=true",
            "--iptables-localhost-nodeports=false",
            "--iptables-sync-period=1m",
            "--iptables-min-sync-period=0",
            "--healthz-bind-address=[::]:10256",
            "--detect-local-mode=NodeCIDR",
            "--nodeport-addresses=primary,192.168.0.0/16",
            "--cleanup",
        ]);
        let Command::Proxy(proxy) = cli.command else {
            panic!("not proxy")
        };
        assert_eq!(proxy.hostname_override.as_deref(), Some("node1"));
        assert_eq!(proxy.settings.cluster_cidr.len(), 2);
        assert!(proxy.settings.masquerade_all);
        assert!(!proxy.iptables_localhost_nodeports);
        assert_eq!(proxy.iptables_sync_period, Duration::from_secs(60));
        assert_eq!(proxy.iptables_min_sync_period, Duration::ZERO);
        assert_eq!(proxy.healthz_bind_address.port(), 10256);
        assert_eq!(proxy.metrics_bind_address.to_string(), "127.0.0.1:10249");
        assert_eq!(
            proxy.settings.detect_local_mode,
            Some(DetectLocalMode::NodeCidr)
        );
        assert_eq!(
            proxy.settings.nodeport_addresses,
            vec![
                NodePortAddress::Primary,
                NodePortAddress::Cidr("192.168.0.0/16".parse().unwrap())
            ]
        );
        assert!(proxy.cleanup);
        assert!(!proxy.init_only);
    }

    #[test]
    fn a_boolean_flag_does_not_swallow_the_next_argument() {
        let cli = parse(&[
            "render",
            "--masquerade-all",
            "--snapshot",
            "dir",
            "--node",
            "n",
        ]);
        let Command::Render(render) = cli.command else {
            panic!("not render")
        };
        assert!(render.settings.masquerade_all);
        assert_eq!(render.snapshot, PathBuf::from("dir"));
    }

    #[test]
    fn cluster_cidr_is_repeatable_and_comma_separated() {
        let cli = parse(&[
            "render",
            "--snapshot=d",
            "--node=n",
            "--cluster-cidr",
            "10.244.0.0/16",
            "--cluster-cidr=fd00::/48",
            "--ipv6",
        ]);
        let Command::Render(render) = cli.command else {
            panic!("not render")
        };
        assert_eq!(render.settings.cluster_cidr.len(), 2);
        assert!(render.ipv6);
    }

    #[derive(Debug, clap::Parser)]
    struct ExpectedOnly {
        #[command(flatten)]
        expected: ExpectedSettingsArgs,
    }

    fn expected(args: &[&str]) -> SettingsOverrides {
        use clap::Parser;
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        match ExpectedOnly::try_parse_from(argv) {
            Ok(parsed) => parsed.expected.overrides(),
            Err(err) => panic!("{err}"),
        }
    }

    fn proxy(args: &[&str]) -> ProxyArgs {
        let mut argv = vec!["kubectl-svcproxy", "proxy"];
        argv.extend_from_slice(args);
        match Cli::parse_args(argv) {
            Ok((
                Cli {
                    command: Command::Proxy(args),
                    ..
                },
                _,
            )) => args,
            Ok(_) => panic!("not proxy"),
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn audit_overrides_only_flags_typed_on_the_command_line() {
        assert_eq!(
            proxy(&["--audit"]).audit_overrides(),
            SettingsOverrides::default()
        );
        let args = proxy(&[
            "--audit",
            "--masquerade-all=false",
            "--iptables-masquerade-bit=14",
            "--cluster-cidr=10.244.0.0/16",
        ]);
        let overrides = args.audit_overrides();
        assert_eq!(overrides.masquerade_all, Some(false));
        assert_eq!(overrides.masquerade_bit, Some(14));
        assert_eq!(overrides.localhost_nodeports, None);
        assert_eq!(overrides.nodeport_addresses, None);
        assert_eq!(
            overrides.cluster_cidrs,
            Some(vec!["10.244.0.0/16".parse().unwrap()])
        );
        let args = proxy(&["--audit", "--iptables-localhost-nodeports=false"]);
        assert_eq!(args.audit_overrides().localhost_nodeports, Some(false));
    }

    #[test]
    fn expected_settings_are_unset_unless_given() {
        assert_eq!(expected(&[]), SettingsOverrides::default());
        let overrides = expected(&[
            "--cluster-cidr=10.244.0.0/16,fd00::/48",
            "--detect-local-mode=interfacenameprefix",
            "--pod-interface-name-prefix=veth",
            "--pod-bridge-interface",
            "cbr0",
            "--masquerade-all",
            "--iptables-masquerade-bit=13",
            "--iptables-localhost-nodeports=false",
            "--nodeport-addresses=primary,10.0.0.0/8",
        ]);
        assert_eq!(
            overrides,
            SettingsOverrides {
                cluster_cidrs: Some(vec![
                    "10.244.0.0/16".parse().unwrap(),
                    "fd00::/48".parse().unwrap()
                ]),
                detect_local_mode: Some(DetectLocalMode::InterfaceNamePrefix),
                pod_bridge_interface: Some("cbr0".into()),
                pod_interface_name_prefix: Some("veth".into()),
                masquerade_all: Some(true),
                masquerade_bit: Some(13),
                localhost_nodeports: Some(false),
                nodeport_addresses: Some(vec![
                    NodePortAddress::Primary,
                    NodePortAddress::Cidr("10.0.0.0/8".parse().unwrap())
                ]),
            }
        );
        assert_eq!(
            expected(&["--masquerade-all=false"]).masquerade_all,
            Some(false)
        );
        let mut argv = vec!["test", "--iptables-masquerade-bit=32"];
        assert!(<ExpectedOnly as clap::Parser>::try_parse_from(argv.drain(..)).is_err());
    }

    fn proxy_error(args: &[&str]) -> String {
        let mut argv = vec!["kubectl-svcproxy", "proxy"];
        argv.extend_from_slice(args);
        match Cli::parse_args(argv) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn conntrack_flags_default_to_kube_proxys_values() {
        let conntrack = proxy(&[]).conntrack;
        assert_eq!(conntrack.conntrack_max_per_core, 32_768);
        assert_eq!(conntrack.conntrack_min, 131_072);
        assert_eq!(
            conntrack.conntrack_tcp_timeout_established,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            conntrack.conntrack_tcp_timeout_close_wait,
            Duration::from_secs(3600)
        );
        assert!(!conntrack.conntrack_tcp_be_liberal);
        assert_eq!(conntrack.conntrack_udp_timeout, Duration::ZERO);
        assert_eq!(conntrack.conntrack_udp_timeout_stream, Duration::ZERO);
        assert_eq!(conntrack.tuning(), ConntrackTuning::default());
    }

    #[test]
    fn conntrack_flags_take_kube_proxys_spellings() {
        let conntrack = proxy(&[
            "--init-only",
            "--conntrack-max-per-core=0",
            "--conntrack-min",
            "262144",
            "--conntrack-tcp-timeout-established=2h",
            "--conntrack-tcp-timeout-close-wait=0",
            "--conntrack-tcp-be-liberal",
            "--conntrack-udp-timeout=45s",
            "--conntrack-udp-timeout-stream=1m30s",
        ])
        .conntrack;
        assert_eq!(
            conntrack.tuning(),
            ConntrackTuning {
                max_per_core: 0,
                min: 262_144,
                tcp_established_timeout: Duration::from_secs(7200),
                tcp_close_wait_timeout: Duration::ZERO,
                tcp_be_liberal: true,
                udp_timeout: Duration::from_secs(45),
                udp_stream_timeout: Duration::from_secs(90),
            }
        );
        // What kube-proxy --write-config-to prints, and the explicit false.
        let conntrack = proxy(&[
            "--conntrack-tcp-timeout-established=24h0m0s",
            "--conntrack-tcp-be-liberal=false",
            "--conntrack-udp-timeout=0",
        ])
        .conntrack;
        assert_eq!(conntrack.tuning(), ConntrackTuning::default());
    }

    #[test]
    fn bad_conntrack_values_are_refused_with_the_reason() {
        let err = proxy_error(&["--conntrack-udp-timeout=45"]);
        assert!(err.contains("--conntrack-udp-timeout"), "{err}");
        assert!(err.contains("invalid duration \"45\""), "{err}");
        let err = proxy_error(&["--conntrack-tcp-timeout-established=500ms"]);
        assert!(err.contains("shorter than a second"), "{err}");
        let err = proxy_error(&["--conntrack-tcp-timeout-close-wait=-1h"]);
        assert!(err.contains("invalid duration"), "{err}");
        let err = proxy_error(&["--conntrack-max-per-core=-1"]);
        assert!(err.contains("--conntrack-max-per-core"), "{err}");
        let err = proxy_error(&["--conntrack-min=2147483648"]);
        assert!(err.contains("--conntrack-min"), "{err}");
    }

    #[test]
    fn nodeport_addresses_reject_garbage() {
        assert!("10.0.0.0/8".parse::<NodePortAddress>().is_ok());
        assert!("PRIMARY".parse::<NodePortAddress>().is_ok());
        assert!("10.0.0.1".parse::<NodePortAddress>().is_err());
        assert!("eth0".parse::<NodePortAddress>().is_err());
    }
}
