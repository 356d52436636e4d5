//! The packet tracer: where does a packet to a Service land, according to a real `iptables-save` dump?
//!
//! [`trace`] walks a [`Dump`](crate::core::rules::Dump) the way kube-proxy's own test tracer does (spec §6.2),
//! extended:
//!
//! 1. **nat.** The packet enters nat `PREROUTING` ([`Origin::Forwarded`], [`Origin::Arriving`]) or nat
//!    `OUTPUT` ([`Origin::Node`]) and follows jumps. `KUBE-MARK-MASQ` (or a `MARK` target setting the
//!    masquerade bits) marks it and the walk goes on; `DNAT` ends a path with a candidate endpoint; `RETURN`
//!    goes back to the caller. A rung with a `statistic` match sends its share of the traffic into its
//!    target and the rest on down the ladder, so every endpoint is collected with its share.
//! 2. **filter.** [`FILTER_CHAINS`] (`KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`, `KUBE-NODEPORTS`,
//!    `KUBE-PROXY-FIREWALL`, the order of kube-proxy's `tracePacket`) run directly, once per distinct DNAT
//!    destination (address and port rewritten) or once with the original destination. The first chain that
//!    ends the packet decides; a DROP or REJECT removes that candidate.
//! 3. **POSTROUTING** is represented only by [`Trace::masquerade`].
//!
//! Matching rules ([`matcher`]) treat history (`recent --rcheck`, `mark`, conntrack states other than
//! `NEW`/`DNAT`) as absent, unknown match modules as undecidable (the rule does not match and the step
//! says why), and unknown packet attributes (interfaces, source port) as "some other value". Jump loops,
//! missing chains, excessive depth and rule counts are recorded as steps; the walk never panics and always
//! ends.

pub mod dnat;
pub mod index;
pub mod matcher;
mod packet;
mod result;
mod tracer;
mod walk;

#[cfg(test)]
mod tests;

pub use matcher::{Evaluation, Mismatch, Undecidable};
pub use packet::{Origin, Packet};
pub use result::{Action, Candidate, Stage, Step, Trace, Verdict};
pub use tracer::{FILTER_CHAINS, Tracer, trace};
pub use walk::{MAX_DEPTH, MAX_RULE_EVALUATIONS};
