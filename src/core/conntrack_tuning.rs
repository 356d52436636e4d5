//! kube-proxy's conntrack tuning, planned without touching the kernel: which settings the
//! `--conntrack-*` flags ask for on a machine with a given number of CPUs, and which of them differ
//! from the values the kernel has now.
//!
//! The semantics are kube-proxy's (`pkg/proxy/conntrack/sysctls.go`):
//! - `nf_conntrack_max` is `--conntrack-max-per-core` × CPUs, at least `--conntrack-min`; the scaled
//!   value is capped at [`SCALED_MAX_CAP`] (kube-proxy 1.36+). `--conntrack-max-per-core=0` leaves
//!   the limit, and the hash table size, alone. The limit is only ever raised: a node already allowing
//!   more entries keeps its value.
//! - the conntrack module's `hashsize` is raised to a quarter of that limit when it is smaller.
//! - each timeout is written in whole seconds when it is not 0; `--conntrack-tcp-be-liberal` sets
//!   `nf_conntrack_tcp_be_liberal` to 1 and leaves it alone when false. These are written when the
//!   current value differs, in either direction.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// kube-proxy's default `--conntrack-max-per-core`.
pub const DEFAULT_MAX_PER_CORE: u32 = 32 * 1024;
/// kube-proxy's default `--conntrack-min`.
pub const DEFAULT_MIN: u32 = 128 * 1024;
/// kube-proxy's default `--conntrack-tcp-timeout-established` (one day; the kernel's is five).
pub const DEFAULT_TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// kube-proxy's default `--conntrack-tcp-timeout-close-wait` (one hour; the kernel's is a minute).
pub const DEFAULT_TCP_CLOSE_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most entries `--conntrack-max-per-core` × CPUs asks for, however many CPUs the node has.
pub const SCALED_MAX_CAP: u64 = 1024 * 1024;

/// The conntrack settings the `--conntrack-*` flags ask for. Zero (or `false`) leaves a setting alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackTuning {
    /// Entries to allow per CPU (`--conntrack-max-per-core`); 0 leaves the limit alone.
    pub max_per_core: u32,
    /// The least number of entries to allow (`--conntrack-min`).
    pub min: u32,
    /// Idle timeout of established TCP connections (`--conntrack-tcp-timeout-established`).
    pub tcp_established_timeout: Duration,
    /// Timeout of TCP connections in CLOSE_WAIT (`--conntrack-tcp-timeout-close-wait`).
    pub tcp_close_wait_timeout: Duration,
    /// Accept out-of-window TCP packets (`--conntrack-tcp-be-liberal`).
    pub tcp_be_liberal: bool,
    /// Idle timeout of UDP flows that saw no reply (`--conntrack-udp-timeout`).
    pub udp_timeout: Duration,
    /// Idle timeout of UDP flows that saw replies (`--conntrack-udp-timeout-stream`).
    pub udp_stream_timeout: Duration,
}

impl Default for ConntrackTuning {
    /// kube-proxy's defaults.
    fn default() -> Self {
        ConntrackTuning {
            max_per_core: DEFAULT_MAX_PER_CORE,
            min: DEFAULT_MIN,
            tcp_established_timeout: DEFAULT_TCP_ESTABLISHED_TIMEOUT,
            tcp_close_wait_timeout: DEFAULT_TCP_CLOSE_WAIT_TIMEOUT,
            tcp_be_liberal: false,
            udp_timeout: Duration::ZERO,
            udp_stream_timeout: Duration::ZERO,
        }
    }
}

/// One kernel setting the tuning may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// `net.netfilter.nf_conntrack_max`: how many connections the node tracks at most.
    Max,
    /// The `nf_conntrack` module parameter `hashsize`: buckets of the connection hash table.
    Hashsize,
    /// `net.netfilter.nf_conntrack_tcp_timeout_established`, in seconds.
    TcpTimeoutEstablished,
    /// `net.netfilter.nf_conntrack_tcp_timeout_close_wait`, in seconds.
    TcpTimeoutCloseWait,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal`, 0 or 1.
    TcpBeLiberal,
    /// `net.netfilter.nf_conntrack_udp_timeout`, in seconds.
    UdpTimeout,
    /// `net.netfilter.nf_conntrack_udp_timeout_stream`, in seconds.
    UdpTimeoutStream,
}

/// Whom a setting affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole node: only a privileged process in the host's network namespace can change it.
    Node,
    /// The network namespace the writer runs in.
    Namespace,
}

impl Setting {
    /// Every setting, in the order kube-proxy applies them.
    pub const ALL: [Setting; 7] = [
        Setting::Max,
        Setting::Hashsize,
        Setting::TcpTimeoutEstablished,
        Setting::TcpTimeoutCloseWait,
        Setting::TcpBeLiberal,
        Setting::UdpTimeout,
        Setting::UdpTimeoutStream,
    ];

    /// The name users know it by: the `sysctl` key, or the module parameter.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Max => "net.netfilter.nf_conntrack_max",
            Setting::Hashsize => "nf_conntrack hashsize",
            Setting::TcpTimeoutEstablished => "net.netfilter.nf_conntrack_tcp_timeout_established",
            Setting::TcpTimeoutCloseWait => "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
            Setting::TcpBeLiberal => "net.netfilter.nf_conntrack_tcp_be_liberal",
            Setting::UdpTimeout => "net.netfilter.nf_conntrack_udp_timeout",
            Setting::UdpTimeoutStream => "net.netfilter.nf_conntrack_udp_timeout_stream",
        }
    }

    /// The flag and value that leave this setting alone.
    pub fn leave_alone(self) -> &'static str {
        match self {
            Setting::Max | Setting::Hashsize => "--conntrack-max-per-core=0",
            Setting::TcpTimeoutEstablished => "--conntrack-tcp-timeout-established=0",
            Setting::TcpTimeoutCloseWait => "--conntrack-tcp-timeout-close-wait=0",
            Setting::TcpBeLiberal => "--conntrack-tcp-be-liberal=false",
            Setting::UdpTimeout => "--conntrack-udp-timeout=0",
            Setting::UdpTimeoutStream => "--conntrack-udp-timeout-stream=0",
        }
    }

    /// Whether the setting is node-wide or per network namespace.
    pub fn scope(self) -> Scope {
        match self {
            Setting::Max | Setting::Hashsize => Scope::Node,
            _ => Scope::Namespace,
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When the current value already satisfies a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Only the exact value does.
    Exact,
    /// Any value at least as large does (limits are raised, never lowered).
    AtLeast,
}

/// A value the tuning asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The setting.
    pub setting: Setting,
    /// The value asked for.
    pub value: u64,
    /// Which current values already satisfy it.
    pub rule: Rule,
}

impl Target {
    /// Whether the current value (`None`: unknown) must be overwritten.
    pub fn needs_write(&self, current: Option<u64>) -> bool {
        match (current, self.rule) {
            (None, _) => true,
            (Some(now), Rule::Exact) => now != self.value,
            (Some(now), Rule::AtLeast) => now < self.value,
        }
    }
}

/// One change to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The setting.
    pub setting: Setting,
    /// Its current value, when known.
    pub from: Option<u64>,
    /// The value to write.
    pub to: u64,
}

/// A conntrack timeout the kernel cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimeoutError {
    /// Positive but shorter than a second: the kernel counts these timeouts in whole seconds, and
    /// rounding down would write 0.
    #[error(
        "{0:?} is shorter than a second; conntrack timeouts are whole seconds (give 0 to leave the setting alone)"
    )]
    SubSecond(Duration),
}

/// A timeout in the kernel's whole seconds: `None` for 0 (leave the setting alone); fractions of a
/// second are dropped, as kube-proxy does.
pub fn timeout_seconds(timeout: Duration) -> Result<Option<u64>, TimeoutError> {
    match timeout.as_secs() {
        0 if timeout.is_zero() => Ok(None),
        0 => Err(TimeoutError::SubSecond(timeout)),
        seconds => Ok(Some(seconds)),
    }
}

impl ConntrackTuning {
    /// The `nf_conntrack_max` asked for on a node with `cpus` CPUs; `None` when
    /// `--conntrack-max-per-core` is 0. As in kube-proxy, a scaled value above [`SCALED_MAX_CAP`]
    /// is cut to the cap and `--conntrack-min` only lifts values below it.
    pub fn conntrack_max(&self, cpus: u32) -> Option<u64> {
        if self.max_per_core == 0 {
            return None;
        }
        let scaled = u64::from(self.max_per_core) * u64::from(cpus.max(1));
        if scaled > SCALED_MAX_CAP {
            return Some(SCALED_MAX_CAP);
        }
        Some(scaled.max(u64::from(self.min)))
    }

    /// Every value the flags ask for, in the order kube-proxy applies them. Fails on a timeout
    /// shorter than a second.
    pub fn targets(&self, cpus: u32) -> Result<Vec<Target>, TimeoutError> {
        let mut targets = Vec::new();
        if let Some(max) = self.conntrack_max(cpus) {
            targets.push(Target {
                setting: Setting::Max,
                value: max,
                rule: Rule::AtLeast,
            });
            targets.push(Target {
                setting: Setting::Hashsize,
                value: max / 4,
                rule: Rule::AtLeast,
            });
        }
        let timeouts = [
            (Setting::TcpTimeoutEstablished, self.tcp_established_timeout),
            (Setting::TcpTimeoutCloseWait, self.tcp_close_wait_timeout),
        ];
        for (setting, timeout) in timeouts {
            if let Some(seconds) = timeout_seconds(timeout)? {
                targets.push(exact(setting, seconds));
            }
        }
        if self.tcp_be_liberal {
            targets.push(exact(Setting::TcpBeLiberal, 1));
        }
        let timeouts = [
            (Setting::UdpTimeout, self.udp_timeout),
            (Setting::UdpTimeoutStream, self.udp_stream_timeout),
        ];
        for (setting, timeout) in timeouts {
            if let Some(seconds) = timeout_seconds(timeout)? {
                targets.push(exact(setting, seconds));
            }
        }
        Ok(targets)
    }
}

fn exact(setting: Setting, value: u64) -> Target {
    Target {
        setting,
        value,
        rule: Rule::Exact,
    }
}

/// The writes that bring the kernel from `current` (the values read; a setting missing from the map
/// is unknown and gets written) to what `tuning` asks for on a node with `cpus` CPUs. Settings that
/// already satisfy their target are not written.
pub fn plan(
    tuning: &ConntrackTuning,
    cpus: u32,
    current: &BTreeMap<Setting, u64>,
) -> Result<Vec<Write>, TimeoutError> {
    Ok(tuning
        .targets(cpus)?
        .into_iter()
        .filter_map(|target| {
            let now = current.get(&target.setting).copied();
            target.needs_write(now).then_some(Write {
                setting: target.setting,
                from: now,
                to: target.value,
            })
        })
        .collect())
}

/// A CPU list (`/sys/devices/system/cpu/online`) that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid CPU list {text:?}: expected e.g. 0-3,8-11")]
pub struct CpuListError {
    /// The text given.
    pub text: String,
}

/// How many CPUs a kernel CPU list such as `0-3,8-11` names.
pub fn count_cpu_list(text: &str) -> Result<u32, CpuListError> {
    let invalid = || CpuListError {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut count: u32 = 0;
    for part in trimmed.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first, last),
            None => (part, part),
        };
        let first: u32 = first.parse().map_err(|_| invalid())?;
        let last: u32 = last.parse().map_err(|_| invalid())?;
        if last < first {
            return Err(invalid());
        }
        count = count.checked_add(last - first + 1).ok_or_else(invalid)?;
    }
    Ok(count)
}

/// The values of a fresh two-CPU kernel, for tests.
#[cfg(test)]
pub(crate) const FRESH_TWO_CPU_KERNEL: [(Setting, u64); 7] = [
    (Setting::Max, 65_536),
    (Setting::Hashsize, 16_384),
    (Setting::TcpTimeoutEstablished, 432_000),
    (Setting::TcpTimeoutCloseWait, 60),
    (Setting::TcpBeLiberal, 0),
    (Setting::UdpTimeout, 30),
    (Setting::UdpTimeoutStream, 120),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> ConntrackTuning {
        ConntrackTuning::default()
    }

    fn current(values: &[(Setting, u64)]) -> BTreeMap<Setting, u64> {
        values.iter().copied().collect()
    }

    fn planned(tuning: &ConntrackTuning, cpus: u32, now: &[(Setting, u64)]) -> Vec<Write> {
        match plan(tuning, cpus, &current(now)) {
            Ok(writes) => writes,
            Err(err) => panic!("{err}"),
        }
    }

    fn write(setting: Setting, from: Option<u64>, to: u64) -> Write {
        Write { setting, from, to }
    }

    #[test]
    fn max_is_per_core_times_cpus_but_at_least_min() {
        let t = tuning();
        // 2 × 32768 = 65536 < 131072: the floor wins.
        assert_eq!(t.conntrack_max(2), Some(131_072));
        assert_eq!(t.conntrack_max(4), Some(131_072));
        // 8 × 32768 = 262144 > 131072: the scaled value wins.
        assert_eq!(t.conntrack_max(8), Some(262_144));
        let custom = ConntrackTuning {
            max_per_core: 1000,
            min: 0,
            ..tuning()
        };
        assert_eq!(custom.conntrack_max(3), Some(3000));
        // A CPU count of 0 (unknown) counts as one CPU.
        assert_eq!(custom.conntrack_max(0), Some(1000));
    }

    #[test]
    fn the_scaled_max_is_capped_as_in_kube_proxy() {
        let t = tuning();
        assert_eq!(t.conntrack_max(32), Some(SCALED_MAX_CAP));
        assert_eq!(t.conntrack_max(192), Some(SCALED_MAX_CAP));
        // The floor lifts values below the cap, even above it…
        let big_floor = ConntrackTuning {
            min: 2_000_000,
            ..tuning()
        };
        assert_eq!(big_floor.conntrack_max(2), Some(2_000_000));
        // …but a scaled value over the cap is cut to the cap, as kube-proxy does.
        assert_eq!(big_floor.conntrack_max(64), Some(SCALED_MAX_CAP));
    }

    #[test]
    fn zero_per_core_leaves_the_limit_and_the_hash_table_alone() {
        let t = ConntrackTuning {
            max_per_core: 0,
            min: 999_999,
            ..tuning()
        };
        assert_eq!(t.conntrack_max(16), None);
        let writes = planned(&t, 16, &[]);
        assert!(
            writes.iter().all(|w| w.setting.scope() == Scope::Namespace),
            "{writes:?}"
        );
    }

    #[test]
    fn zero_timeouts_and_false_liberal_leave_everything_alone() {
        let t = ConntrackTuning {
            max_per_core: 0,
            tcp_established_timeout: Duration::ZERO,
            tcp_close_wait_timeout: Duration::ZERO,
            tcp_be_liberal: false,
            udp_timeout: Duration::ZERO,
            udp_stream_timeout: Duration::ZERO,
            ..tuning()
        };
        assert_eq!(t.targets(4), Ok(Vec::new()));
        assert_eq!(planned(&t, 4, &[]), Vec::new());
    }

    #[test]
    fn defaults_on_a_fresh_two_cpu_kernel() {
        let now = FRESH_TWO_CPU_KERNEL;
        assert_eq!(
            planned(&tuning(), 2, &now),
            vec![
                write(Setting::Max, Some(65_536), 131_072),
                write(Setting::Hashsize, Some(16_384), 32_768),
                write(Setting::TcpTimeoutEstablished, Some(432_000), 86_400),
                write(Setting::TcpTimeoutCloseWait, Some(60), 3600),
            ]
        );
    }

    #[test]
    fn values_already_in_place_are_not_rewritten() {
        let now = [
            (Setting::Max, 131_072),
            (Setting::Hashsize, 32_768),
            (Setting::TcpTimeoutEstablished, 86_400),
            (Setting::TcpTimeoutCloseWait, 3600),
        ];
        assert_eq!(planned(&tuning(), 2, &now), Vec::new());
    }

    #[test]
    fn limits_are_only_raised_but_timeouts_follow_the_flags_both_ways() {
        let now = [
            (Setting::Max, 1_000_000),
            (Setting::Hashsize, 262_144),
            (Setting::TcpTimeoutEstablished, 999_999),
            (Setting::TcpTimeoutCloseWait, 7200),
        ];
        assert_eq!(
            planned(&tuning(), 2, &now),
            vec![
                write(Setting::TcpTimeoutEstablished, Some(999_999), 86_400),
                write(Setting::TcpTimeoutCloseWait, Some(7200), 3600),
            ]
        );
        // A hash table smaller than a quarter of the limit grows even when the limit is high enough.
        let now = [
            (Setting::Max, 1_000_000),
            (Setting::Hashsize, 1024),
            (Setting::TcpTimeoutEstablished, 86_400),
            (Setting::TcpTimeoutCloseWait, 3600),
        ];
        assert_eq!(
            planned(&tuning(), 2, &now),
            vec![write(Setting::Hashsize, Some(1024), 32_768)]
        );
    }

    #[test]
    fn unknown_current_values_are_written() {
        let writes = planned(&tuning(), 2, &[]);
        assert_eq!(writes.len(), 4);
        assert!(writes.iter().all(|w| w.from.is_none()));
    }

    #[test]
    fn durations_become_whole_seconds() {
        let t = ConntrackTuning {
            max_per_core: 0,
            tcp_established_timeout: Duration::from_secs(2 * 3600),
            tcp_close_wait_timeout: Duration::from_millis(90_500),
            tcp_be_liberal: true,
            udp_timeout: Duration::from_secs(45),
            udp_stream_timeout: Duration::from_secs(180),
            ..tuning()
        };
        assert_eq!(
            planned(&t, 1, &[(Setting::TcpBeLiberal, 0)]),
            vec![
                write(Setting::TcpTimeoutEstablished, None, 7200),
                write(Setting::TcpTimeoutCloseWait, None, 90),
                write(Setting::TcpBeLiberal, Some(0), 1),
                write(Setting::UdpTimeout, None, 45),
                write(Setting::UdpTimeoutStream, None, 180),
            ]
        );
    }

    #[test]
    fn a_positive_timeout_under_a_second_is_refused_rather_than_written_as_zero() {
        assert_eq!(timeout_seconds(Duration::ZERO), Ok(None));
        assert_eq!(timeout_seconds(Duration::from_secs(1)), Ok(Some(1)));
        assert_eq!(
            timeout_seconds(Duration::from_millis(500)),
            Err(TimeoutError::SubSecond(Duration::from_millis(500)))
        );
        let t = ConntrackTuning {
            udp_timeout: Duration::from_millis(250),
            ..tuning()
        };
        assert!(plan(&t, 2, &BTreeMap::new()).is_err());
    }

    #[test]
    fn settings_know_their_scope_and_how_to_leave_them_alone() {
        assert_eq!(Setting::Max.scope(), Scope::Node);
        assert_eq!(Setting::Hashsize.scope(), Scope::Node);
        assert_eq!(Setting::UdpTimeout.scope(), Scope::Namespace);
        assert_eq!(
            Setting::Hashsize.leave_alone(),
            "--conntrack-max-per-core=0"
        );
        assert_eq!(
            Setting::TcpBeLiberal.leave_alone(),
            "--conntrack-tcp-be-liberal=false"
        );
        assert_eq!(
            Setting::TcpTimeoutCloseWait.to_string(),
            "net.netfilter.nf_conntrack_tcp_timeout_close_wait"
        );
    }

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list("0-1\n"), Ok(2));
        assert_eq!(count_cpu_list("0"), Ok(1));
        assert_eq!(count_cpu_list("0-3,8-11"), Ok(8));
        assert_eq!(count_cpu_list("0,2,4-5"), Ok(4));
        for bad in ["", " ", "a", "3-1", "0-", "-1", "0,,1"] {
            assert!(count_cpu_list(bad).is_err(), "{bad:?}");
        }
    }
}
