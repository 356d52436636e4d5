//! A ctnetlink client: one `NETLINK_NETFILTER` socket that dumps the UDP entries of one family's
//! conntrack table and deletes entries by their original tuple.
//!
//! The socket belongs to the network namespace of the thread that opens it, so the proxy (which runs
//! in the node's namespace) sees the node's table and a test thread that entered a namespace sees that
//! namespace's.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use thiserror::Error;

use super::UdpFlow;
use super::wire::{self, AnswerError};
use crate::core::rules::IpFamily;

/// Large enough for any datagram the kernel sends: dump datagrams are at most 32 KiB.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// How long one receive may wait for the kernel's answer.
const RECEIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// `MSG_TRUNC`: `recv` returns the datagram's real length, so truncation is detected.
const MSG_TRUNC: i32 = 0x20;
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

/// A failed conntrack operation.
#[derive(Debug, Error)]
pub enum ConntrackError {
    /// The netlink socket could not be opened.
    #[error(
        "cannot open a netfilter netlink socket for conntrack: {0}; is the nfnetlink module loaded (modprobe nf_conntrack_netlink loads it)?"
    )]
    Open(#[source] std::io::Error),
    /// Sending on or receiving from the netlink socket failed.
    #[error("conntrack netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused to list the conntrack table.
    #[error(
        "listing the {family} conntrack table: the kernel answered error {errno} ({}){}",
        std::io::Error::from_raw_os_error(*errno),
        hint(*errno)
    )]
    Dump {
        /// The family listed.
        family: IpFamily,
        /// The errno.
        errno: i32,
    },
    /// The kernel refused to delete some entries; the others were deleted.
    #[error(
        "{failed} stale UDP conntrack entries could not be deleted ({deleted} were); the first, {flow}: the kernel answered error {errno} ({})",
        std::io::Error::from_raw_os_error(*errno)
    )]
    Delete {
        /// How many deletions failed.
        failed: usize,
        /// How many entries were deleted.
        deleted: usize,
        /// The first entry that could not be deleted.
        flow: String,
        /// Its errno.
        errno: i32,
    },
    /// An answer could not be read.
    #[error("conntrack netlink: malformed answer from the kernel: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
}

impl ConntrackError {
    /// The entries deleted although the operation failed (only a partly refused delete has any).
    pub fn deleted(&self) -> usize {
        match self {
            ConntrackError::Delete { deleted, .. } => *deleted,
            _ => 0,
        }
    }
}

fn hint(errno: i32) -> &'static str {
    match errno {
        EPERM => "; the proxy needs CAP_NET_ADMIN in the node's network namespace",
        EINVAL | EOPNOTSUPP => {
            "; is the nf_conntrack_netlink module loaded (modprobe nf_conntrack_netlink)?"
        }
        _ => "",
    }
}

/// The UDP entries of one family's conntrack table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpDump {
    /// The entries, in the kernel's order.
    pub flows: Vec<UdpFlow>,
    /// The kernel reported that the table changed while it was listed: entries may be missing (they
    /// are caught by the next cleanup) or repeated.
    pub interrupted: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Entries deleted.
    pub deleted: usize,
    /// Entries already gone (expired or deleted by someone else since they were listed).
    pub already_gone: usize,
}

/// A netlink socket speaking ctnetlink.
pub struct ConntrackSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ConntrackSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConntrackSocket")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl ConntrackSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<ConntrackSocket, ConntrackError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Open)?;
        socket.bind_auto().map_err(ConntrackError::Open)?;
        // The kernel always answers, but a sync must never hang on this socket.
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(RECEIVE_TIMEOUT))
            .map_err(ConntrackError::Open)?;
        Ok(ConntrackSocket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECEIVE_BUFFER),
        })
    }

    /// Lists the UDP entries of `family`'s table. Entries of other protocols are dropped as they are
    /// read, so memory stays proportional to the UDP entries. An interrupted dump is not an error:
    /// what was read is returned, flagged [`UdpDump::interrupted`].
    pub fn udp_flows(&mut self, family: IpFamily) -> Result<UdpDump, ConntrackError> {
        let seq = self.next_seq();
        self.send(&wire::dump_request(family, seq))?;
        let mut dump = UdpDump::default();
        loop {
            let datagram = self.receive()?;
            let part = wire::parse_dump(datagram, seq, &mut dump.flows).map_err(|e| match e {
                AnswerError::Kernel(errno) => ConntrackError::Dump { family, errno },
                AnswerError::Malformed(what) => ConntrackError::Malformed { what },
            })?;
            dump.interrupted |= part.interrupted;
            if part.done {
                return Ok(dump);
            }
        }
    }

    /// Deletes `flows`, one request at a time on this socket. An entry that is already gone is
    /// counted in [`Deleted::already_gone`], not as a failure. When the kernel refuses some deletions,
    /// the rest are still attempted and the error says how many failed.
    pub fn delete(&mut self, flows: &[&UdpFlow]) -> Result<Deleted, ConntrackError> {
        let mut done = Deleted::default();
        let mut failed = 0;
        let mut first_failure = None;
        for flow in flows {
            match self.delete_one(flow)? {
                0 => done.deleted += 1,
                ENOENT => done.already_gone += 1,
                errno => {
                    failed += 1;
                    first_failure.get_or_insert((flow.to_string(), errno));
                }
            }
        }
        match first_failure {
            None => Ok(done),
            Some((flow, errno)) => Err(ConntrackError::Delete {
                failed,
                deleted: done.deleted,
                flow,
                errno,
            }),
        }
    }

    /// Sends one delete request and waits for its acknowledgement; returns its errno (0: deleted).
    fn delete_one(&mut self, flow: &UdpFlow) -> Result<i32, ConntrackError> {
        let seq = self.next_seq();
        self.send(&wire::delete_request(flow, seq))?;
        loop {
            let acks = wire::parse_acks(self.receive()?)
                .map_err(|what| ConntrackError::Malformed { what })?;
            if let Some(&(_, errno)) = acks.iter().find(|(s, _)| *s == seq) {
                return Ok(errno);
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, request: &[u8]) -> Result<(), ConntrackError> {
        loop {
            match self.socket.send_to(request, &SocketAddr::new(0, 0), 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConntrackError::Socket(e)),
            }
        }
    }

    /// Receives one datagram into the reused buffer.
    fn receive(&mut self) -> Result<&[u8], ConntrackError> {
        loop {
            self.buf.clear();
            match self.socket.recv_from(&mut self.buf, MSG_TRUNC) {
                Ok((len, _)) if len > self.buf.len() => {
                    return Err(ConntrackError::Malformed {
                        what: "a datagram larger than the 64 KiB receive buffer",
                    });
                }
                Ok(_) => return Ok(&self.buf),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConntrackError::Socket(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_check() {
        let refused = |errno| ConntrackError::Dump {
            family: IpFamily::V4,
            errno,
        };
        let message = refused(EPERM).to_string();
        assert!(
            message.starts_with("listing the IPv4 conntrack table: the kernel answered error 1")
                && message.ends_with("needs CAP_NET_ADMIN in the node's network namespace"),
            "{message}"
        );
        assert!(refused(EINVAL).to_string().ends_with(
            "is the nf_conntrack_netlink module loaded (modprobe nf_conntrack_netlink)?"
        ));
        let partial = ConntrackError::Delete {
            failed: 1,
            deleted: 2,
            flow: "udp 10.0.0.2:40000 -> 10.96.0.10:53 (replies from 10.244.1.5:5353)".into(),
            errno: 16,
        };
        assert_eq!(partial.deleted(), 2);
        assert!(
            partial
                .to_string()
                .starts_with("1 stale UDP conntrack entries could not be deleted (2 were); the first, udp 10.0.0.2:40000")
        );
        assert_eq!(refused(EPERM).deleted(), 0);
    }
}
