//! Applies a [`ConntrackTuning`] to the kernel: reads the conntrack sysctls under `/proc/sys` and the
//! `nf_conntrack` module's `hashsize` under `/sys`, then writes the values that
//! [`plan`](crate::core::conntrack_tuning::plan) says differ.
//!
//! The node-wide limits (`nf_conntrack_max`, `hashsize`) can only be raised by a privileged process in
//! the host's network namespace, with `/sys` mounted read-write. When the kernel refuses them they are
//! reported as [`Refused`] and the rest goes on, as kube-proxy long did for a read-only `/sys`: the node
//! still forwards, it only runs out of conntrack entries sooner. Every other setting belongs to the
//! writer's network namespace, and failing to write one is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::core::conntrack_tuning::{
    ConntrackTuning, Scope, Setting, TimeoutError, Write, count_cpu_list, plan,
};

/// Where the kernel's settings are: `/proc/sys` and `/sys`, or the same layout under another root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    proc_sys: PathBuf,
    sys: PathBuf,
}

/// A conntrack setting that could not be read or written.
#[derive(Debug, Error)]
pub enum ConntrackSysctlError {
    /// The `nf_conntrack` module is not loaded, so none of its settings exist yet.
    #[error("{} does not exist: the nf_conntrack kernel module is not loaded", path.display())]
    ModuleNotLoaded {
        /// The file that is missing.
        path: PathBuf,
    },
    /// A setting could not be read.
    #[error("cannot read {setting} from {}: {error}", path.display())]
    Read {
        /// The setting.
        setting: Setting,
        /// Its file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A setting of this network namespace could not be written.
    #[error("cannot set {setting} to {value} in {}: {error}", path.display())]
    Write {
        /// The setting.
        setting: Setting,
        /// The value.
        value: u64,
        /// Its file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A flag asks for a timeout the kernel cannot hold.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
}

impl ConntrackSysctlError {
    /// How to get past the error, for the message shown to the user.
    pub fn fix(&self) -> String {
        match self {
            ConntrackSysctlError::ModuleNotLoaded { .. } => {
                "load it on the node (`modprobe nf_conntrack`, or list it in /etc/modules-load.d/), \
                 or leave conntrack alone with --conntrack-max-per-core=0 \
                 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0"
                    .to_owned()
            }
            ConntrackSysctlError::Read { setting, .. }
            | ConntrackSysctlError::Write { setting, .. } => format!(
                "run the init container privileged (an unprivileged container sees /proc/sys \
                 read-only), or pass {} to leave the setting alone",
                setting.leave_alone()
            ),
            ConntrackSysctlError::Timeout(_) => "give the timeout in whole seconds, e.g. 30s".to_owned(),
        }
    }
}

/// A node-wide limit the kernel would not let this process raise.
#[derive(Debug)]
pub struct Refused {
    /// The change that was refused.
    pub write: Write,
    /// The file written.
    pub path: PathBuf,
    /// What the kernel said.
    pub error: io::Error,
}

impl fmt::Display for Refused {
    /// The warning: what stays as it is, why, and the ways to fix it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Write { setting, from, to } = self.write;
        let from = from.map_or_else(|| "its current value".to_owned(), |v| v.to_string());
        write!(
            f,
            "{setting} stays at {from}, below the {to} wanted: cannot write {}: {}. ",
            self.path.display(),
            self.error
        )?;
        match self.error.kind() {
            io::ErrorKind::ReadOnlyFilesystem => f.write_str(
                "It is on a read-only mount in this container; a privileged container gets /sys and \
                 /proc/sys read-write (some container runtimes hand out a read-only /sys while \
                 another host-network container on the node has one; restarting the pod then helps). ",
            )?,
            // EACCES/EPERM from a child namespace's read-only entry, EOPNOTSUPP from hashsize
            // outside the initial namespace.
            io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => f.write_str(
                "The limit is node-wide: only a privileged process in the host's network namespace \
                 can raise it. ",
            )?,
            _ => f.write_str("The kernel did not take the value. ")?,
        }
        let on_node = match setting {
            Setting::Hashsize => {
                format!("echo {to} > /sys/module/nf_conntrack/parameters/hashsize")
            }
            _ => format!("sysctl -w {setting}={to}"),
        };
        write!(
            f,
            "Run the init container with privileged: true and hostNetwork: true, raise it on the \
             node (`{on_node}`), or pass --conntrack-max-per-core=0 to leave the node's conntrack \
             limits alone"
        )
    }
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The settings changed.
    pub written: Vec<Write>,
    /// The node-wide limits the kernel refused to raise.
    pub refused: Vec<Refused>,
}

impl KernelFiles {
    /// This machine's `/proc/sys` and `/sys`.
    pub fn host() -> KernelFiles {
        KernelFiles::under(Path::new("/"))
    }

    /// `ROOT/proc/sys` and `ROOT/sys`.
    pub fn under(root: &Path) -> KernelFiles {
        KernelFiles {
            proc_sys: root.join("proc/sys"),
            sys: root.join("sys"),
        }
    }

    /// The file that holds `setting`.
    pub fn path(&self, setting: Setting) -> PathBuf {
        let netfilter = |name: &str| self.proc_sys.join("net/netfilter").join(name);
        match setting {
            Setting::Max => netfilter("nf_conntrack_max"),
            Setting::Hashsize => self.sys.join("module/nf_conntrack/parameters/hashsize"),
            Setting::TcpTimeoutEstablished => netfilter("nf_conntrack_tcp_timeout_established"),
            Setting::TcpTimeoutCloseWait => netfilter("nf_conntrack_tcp_timeout_close_wait"),
            Setting::TcpBeLiberal => netfilter("nf_conntrack_tcp_be_liberal"),
            Setting::UdpTimeout => netfilter("nf_conntrack_udp_timeout"),
            Setting::UdpTimeoutStream => netfilter("nf_conntrack_udp_timeout_stream"),
        }
    }

    /// The node's online CPUs (`devices/system/cpu/online`), as kube-proxy counts them: all of the
    /// machine's, whatever this process's CPU affinity. Falls back to the CPUs this process may use.
    pub fn online_cpus(&self) -> u32 {
        let path = self.sys.join("devices/system/cpu/online");
        let counted = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| count_cpu_list(&text).map_err(|e| e.to_string()));
        match counted {
            Ok(cpus) if cpus > 0 => cpus,
            other => {
                let fallback = std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
                tracing::debug!(path = %path.display(), result = ?other, fallback, "online CPUs unknown; counting the usable ones");
                fallback
            }
        }
    }

    /// The current value of `setting`.
    pub fn read(&self, setting: Setting) -> Result<u64, ConntrackSysctlError> {
        let path = self.path(setting);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.module_present() => {
                return Err(ConntrackSysctlError::ModuleNotLoaded { path });
            }
            Err(error) => {
                return Err(ConntrackSysctlError::Read {
                    setting,
                    path,
                    error,
                });
            }
        };
        text.trim().parse().map_err(|e| ConntrackSysctlError::Read {
            setting,
            path,
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{:?} is not a number: {e}", text.trim()),
            ),
        })
    }

    fn write(&self, setting: Setting, value: u64) -> io::Result<()> {
        std::fs::write(self.path(setting), format!("{value}\n"))
    }

    /// Whether the `nf_conntrack` module is loaded (or built in): its sysctls exist, or it has a
    /// `/sys/module` entry. (A container without `/sys` still sees the sysctls.)
    fn module_present(&self) -> bool {
        self.path(Setting::Max).exists() || self.sys.join("module/nf_conntrack").is_dir()
    }
}

/// Reads the settings `tuning` asks for on a node with `cpus` CPUs and writes those that differ.
/// Stops at the first setting of this network namespace that cannot be read or written; node-wide
/// limits the kernel refuses to raise end up in [`Applied::refused`].
pub fn apply(
    files: &KernelFiles,
    tuning: &ConntrackTuning,
    cpus: u32,
) -> Result<Applied, ConntrackSysctlError> {
    let mut current = BTreeMap::new();
    for target in tuning.targets(cpus)? {
        current.insert(target.setting, files.read(target.setting)?);
    }
    let mut applied = Applied::default();
    for write in plan(tuning, cpus, &current)? {
        let path = files.path(write.setting);
        match files.write(write.setting, write.to) {
            Ok(()) => applied.written.push(write),
            Err(error) if write.setting.scope() == Scope::Node => {
                applied.refused.push(Refused { write, path, error });
            }
            Err(error) => {
                return Err(ConntrackSysctlError::Write {
                    setting: write.setting,
                    value: write.to,
                    path,
                    error,
                });
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fake kernel under a temporary directory, with the values a fresh two-CPU machine has.
    fn fake_kernel() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temporary directory");
        let files = KernelFiles::under(root.path());
        for (setting, value) in crate::core::conntrack_tuning::FRESH_TWO_CPU_KERNEL {
            put(&files.path(setting), &format!("{value}\n"));
        }
        put(&root.path().join("sys/devices/system/cpu/online"), "0-1\n");
        root
    }

    fn put(path: &Path, text: &str) {
        let dir = path.parent().expect("a parent directory");
        std::fs::create_dir_all(dir).expect("create directories");
        std::fs::write(path, text).expect("write");
    }

    fn value(files: &KernelFiles, setting: Setting) -> u64 {
        files.read(setting).expect("readable")
    }

    #[test]
    fn applies_kube_proxy_defaults_and_then_has_nothing_left_to_do() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        let cpus = files.online_cpus();
        assert_eq!(cpus, 2);
        let tuning = ConntrackTuning::default();

        let applied = apply(&files, &tuning, cpus).expect("applied");
        assert!(applied.refused.is_empty(), "{:?}", applied.refused);
        let changed: Vec<Setting> = applied.written.iter().map(|w| w.setting).collect();
        assert_eq!(
            changed,
            vec![
                Setting::Max,
                Setting::Hashsize,
                Setting::TcpTimeoutEstablished,
                Setting::TcpTimeoutCloseWait
            ]
        );
        assert_eq!(value(&files, Setting::Max), 131_072);
        assert_eq!(value(&files, Setting::Hashsize), 32_768);
        assert_eq!(value(&files, Setting::TcpTimeoutEstablished), 86_400);
        assert_eq!(value(&files, Setting::TcpTimeoutCloseWait), 3600);
        assert_eq!(value(&files, Setting::UdpTimeout), 30, "0 leaves it alone");

        let again = apply(&files, &tuning, cpus).expect("applied again");
        assert!(again.written.is_empty(), "{:?}", again.written);
    }

    #[test]
    fn custom_flags_reach_their_files() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        let tuning = ConntrackTuning {
            max_per_core: 0,
            tcp_established_timeout: Duration::from_secs(7200),
            tcp_close_wait_timeout: Duration::ZERO,
            tcp_be_liberal: true,
            udp_timeout: Duration::from_secs(45),
            udp_stream_timeout: Duration::from_secs(180),
            ..ConntrackTuning::default()
        };
        apply(&files, &tuning, 2).expect("applied");
        assert_eq!(value(&files, Setting::Max), 65_536, "per-core 0: untouched");
        assert_eq!(value(&files, Setting::Hashsize), 16_384);
        assert_eq!(value(&files, Setting::TcpTimeoutEstablished), 7200);
        assert_eq!(value(&files, Setting::TcpTimeoutCloseWait), 60);
        assert_eq!(value(&files, Setting::TcpBeLiberal), 1);
        assert_eq!(value(&files, Setting::UdpTimeout), 45);
        assert_eq!(value(&files, Setting::UdpTimeoutStream), 180);
    }

    #[test]
    fn a_missing_module_is_named_with_its_fix() {
        let root = tempfile::tempdir().expect("temporary directory");
        let files = KernelFiles::under(root.path());
        let err = apply(&files, &ConntrackTuning::default(), 2).expect_err("no module");
        assert!(
            matches!(err, ConntrackSysctlError::ModuleNotLoaded { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nf_conntrack_max"), "{err}");
        assert!(err.fix().contains("modprobe nf_conntrack"));

        // Leaving everything alone needs no module at all.
        let nothing = ConntrackTuning {
            max_per_core: 0,
            tcp_established_timeout: Duration::ZERO,
            tcp_close_wait_timeout: Duration::ZERO,
            ..ConntrackTuning::default()
        };
        let applied = apply(&files, &nothing, 2).expect("nothing to do");
        assert!(applied.written.is_empty());
    }

    #[test]
    fn a_setting_this_kernel_lacks_is_a_read_error_not_a_missing_module() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        std::fs::remove_file(files.path(Setting::UdpTimeoutStream)).expect("remove");
        let tuning = ConntrackTuning {
            udp_stream_timeout: Duration::from_secs(60),
            ..ConntrackTuning::default()
        };
        let err = apply(&files, &tuning, 2).expect_err("missing file");
        assert!(
            matches!(
                err,
                ConntrackSysctlError::Read {
                    setting: Setting::UdpTimeoutStream,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A real kernel file that even root cannot write, and whose value (65536) is known.
    const READ_ONLY: &str = "/proc/sys/kernel/ngroups_max";

    fn link_to_read_only(path: &Path) -> bool {
        if !Path::new(READ_ONLY).is_file() {
            return false;
        }
        std::fs::remove_file(path).expect("remove");
        std::os::unix::fs::symlink(READ_ONLY, path).expect("symlink");
        true
    }

    #[test]
    fn a_refused_node_wide_limit_is_reported_and_the_rest_still_applied() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        if !link_to_read_only(&files.path(Setting::Hashsize)) {
            return;
        }
        let current = value(&files, Setting::Hashsize);
        let tuning = ConntrackTuning {
            min: u32::try_from(current * 4 + 400).expect("fits"),
            ..ConntrackTuning::default()
        };
        let applied = apply(&files, &tuning, 2).expect("applied despite the refusal");
        assert_eq!(applied.refused.len(), 1, "{:?}", applied.refused);
        let refused = &applied.refused[0];
        assert_eq!(refused.write.setting, Setting::Hashsize);
        let warning = refused.to_string();
        for needle in [
            "nf_conntrack hashsize stays at",
            "host's network namespace",
            "privileged: true",
            "/sys/module/nf_conntrack/parameters/hashsize",
            "--conntrack-max-per-core=0",
        ] {
            assert!(warning.contains(needle), "{needle:?} missing in: {warning}");
        }
        assert_eq!(value(&files, Setting::Max), current * 4 + 400);
        assert_eq!(value(&files, Setting::TcpTimeoutEstablished), 86_400);
    }

    #[test]
    fn a_refused_namespace_setting_is_an_error_naming_the_setting_and_the_fix() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        if !link_to_read_only(&files.path(Setting::TcpTimeoutCloseWait)) {
            return;
        }
        let err = apply(&files, &ConntrackTuning::default(), 2).expect_err("refused");
        assert!(
            err.to_string()
                .contains("net.netfilter.nf_conntrack_tcp_timeout_close_wait"),
            "{err}"
        );
        assert!(err.fix().contains("privileged"), "{}", err.fix());
        assert!(
            err.fix().contains("--conntrack-tcp-timeout-close-wait=0"),
            "{}",
            err.fix()
        );
    }

    #[test]
    fn a_read_only_mount_gets_its_own_explanation() {
        let refused = Refused {
            write: Write {
                setting: Setting::Max,
                from: Some(65_536),
                to: 131_072,
            },
            path: PathBuf::from("/proc/sys/net/netfilter/nf_conntrack_max"),
            error: io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
        };
        let warning = refused.to_string();
        assert!(warning.contains("read-only mount"), "{warning}");
        assert!(
            warning.contains("sysctl -w net.netfilter.nf_conntrack_max=131072"),
            "{warning}"
        );
    }

    #[test]
    fn only_permission_refusals_get_the_node_wide_explanation() {
        let refused = |kind: io::ErrorKind| {
            Refused {
                write: Write {
                    setting: Setting::Max,
                    from: Some(65_536),
                    to: 131_072,
                },
                path: PathBuf::from("/proc/sys/net/netfilter/nf_conntrack_max"),
                error: io::Error::from(kind),
            }
            .to_string()
        };
        assert!(refused(io::ErrorKind::PermissionDenied).contains("node-wide"));
        assert!(refused(io::ErrorKind::Unsupported).contains("node-wide"));
        let invalid = refused(io::ErrorKind::InvalidInput);
        assert!(!invalid.contains("node-wide"), "{invalid}");
        assert!(invalid.contains("did not take the value"), "{invalid}");
    }

    #[test]
    fn a_missing_hashsize_with_the_sysctls_present_is_not_a_missing_module() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        put(&files.path(Setting::Max), "262144\n");
        let hashsize = files.path(Setting::Hashsize);
        if hashsize.exists() {
            std::fs::remove_file(&hashsize).expect("remove hashsize");
        }
        let _ = std::fs::remove_dir_all(root.path().join("sys/module/nf_conntrack"));
        let err = files.read(Setting::Hashsize).expect_err("no hashsize");
        assert!(
            !matches!(err, ConntrackSysctlError::ModuleNotLoaded { .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_in_a_setting_is_a_read_error() {
        let root = fake_kernel();
        let files = KernelFiles::under(root.path());
        put(&files.path(Setting::Max), "lots\n");
        let err = files.read(Setting::Max).expect_err("not a number");
        assert!(err.to_string().contains("not a number"), "{err}");
    }

    #[test]
    fn cpus_fall_back_to_the_usable_ones() {
        let root = tempfile::tempdir().expect("temporary directory");
        assert!(KernelFiles::under(root.path()).online_cpus() >= 1);
        assert_eq!(
            KernelFiles::host().path(Setting::Max),
            PathBuf::from("/proc/sys/net/netfilter/nf_conntrack_max")
        );
    }
}
