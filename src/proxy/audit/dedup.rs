//! Which drift findings to announce as Kubernetes Events, and when.
//!
//! A finding is identified by its [`EventKey`] (kind, service, chain, endpoint). It is announced once
//! it has been seen in `confirmations` consecutive checks (so a change the node's proxy has not
//! applied yet does not raise an Event), then again at most every `reannounce` while it persists. A
//! finding that disappears is forgotten: if it comes back, it is announced afresh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::core::drift::{Finding, FindingKind};

/// What makes two findings "the same" for Events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    /// The finding's kind.
    pub kind: FindingKind,
    /// The service port or Service it concerns.
    pub service: Option<String>,
    /// The chain it concerns.
    pub chain: Option<String>,
    /// The endpoint it concerns.
    pub endpoint: Option<String>,
}

impl EventKey {
    /// The key of `finding`.
    pub fn of(finding: &Finding) -> EventKey {
        EventKey {
            kind: finding.kind,
            service: finding.service.clone(),
            chain: finding.chain.clone(),
            endpoint: finding.endpoint.clone(),
        }
    }
}

/// Where an announced Event lives, to update it on the next announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// The Event's namespace.
    pub namespace: String,
    /// The Event's name.
    pub name: String,
}

/// A finding to announce now.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Its key.
    pub key: EventKey,
    /// The finding, as seen in the last check.
    pub finding: Finding,
    /// How many times it will have been announced, this one included (1 for the first).
    pub count: u32,
    /// The Event of the previous announcement, if it was created.
    pub previous: Option<EventRef>,
    /// When the finding was first seen.
    pub first_seen: SystemTime,
}

#[derive(Debug, Clone)]
struct Entry {
    finding: Finding,
    checks: u32,
    first_seen: SystemTime,
    last_announced: Option<Instant>,
    count: u32,
    event: Option<EventRef>,
}

/// The announcement state of every current finding.
#[derive(Debug, Clone)]
pub struct EventDedup {
    entries: BTreeMap<EventKey, Entry>,
    reannounce: Duration,
    confirmations: u32,
}

impl EventDedup {
    /// Announces findings seen in `confirmations` consecutive checks (at least 1), again every
    /// `reannounce` while they persist.
    pub fn new(reannounce: Duration, confirmations: u32) -> EventDedup {
        EventDedup {
            entries: BTreeMap::new(),
            reannounce,
            confirmations: confirmations.max(1),
        }
    }

    /// Records one check's `findings` (at `now`, wall clock `wall`): forgets the findings that are
    /// gone and returns those to announce, in key order. Call [`EventDedup::announced`] for each one
    /// actually announced; the others stay due.
    pub fn observe(&mut self, findings: &[Finding], now: Instant, wall: SystemTime) -> Vec<Due> {
        let mut current: BTreeMap<EventKey, &Finding> = BTreeMap::new();
        for finding in findings {
            current.entry(EventKey::of(finding)).or_insert(finding);
        }
        self.entries.retain(|key, _| current.contains_key(key));
        for (key, finding) in &current {
            let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
                finding: (*finding).clone(),
                checks: 0,
                first_seen: wall,
                last_announced: None,
                count: 0,
                event: None,
            });
            entry.checks = entry.checks.saturating_add(1);
            entry.finding = (*finding).clone();
        }
        self.entries
            .iter()
            .filter(|(_, e)| {
                e.checks >= self.confirmations
                    && e.last_announced
                        .is_none_or(|at| now.saturating_duration_since(at) >= self.reannounce)
            })
            .map(|(key, e)| Due {
                key: key.clone(),
                finding: e.finding.clone(),
                count: e.count.saturating_add(1),
                previous: e.event.clone(),
                first_seen: e.first_seen,
            })
            .collect()
    }

    /// `key` was announced at `now`, as `event` when the Event was written (`None` when writing it
    /// was refused: it is not retried before the next re-announcement).
    pub fn announced(&mut self, key: &EventKey, now: Instant, event: Option<EventRef>) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_announced = Some(now);
            entry.count = entry.count.saturating_add(1);
            if event.is_some() {
                entry.event = event;
            }
        }
    }

    /// How many findings are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no finding is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn stale(endpoint: &str) -> Finding {
        Finding::new(FindingKind::StaleEndpoint, "stale")
            .for_service("default/web:http")
            .in_chain("KUBE-SVC-ABC")
            .at_endpoint(endpoint)
    }

    fn keys(due: &[Due]) -> Vec<Option<String>> {
        due.iter().map(|d| d.key.endpoint.clone()).collect()
    }

    #[test]
    fn one_announcement_while_a_finding_persists_then_one_per_hour() {
        let mut dedup = EventDedup::new(HOUR, 1);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let findings = [stale("10.0.0.1:80")];
        let due = dedup.observe(&findings, t0, wall);
        assert_eq!(keys(&due), [Some("10.0.0.1:80".to_string())]);
        assert_eq!(due[0].count, 1);
        assert_eq!(due[0].previous, None);
        let event = EventRef {
            namespace: "default".into(),
            name: "web.1".into(),
        };
        dedup.announced(&due[0].key, t0, Some(event.clone()));
        for minutes in [1, 10, 59] {
            let t = t0 + Duration::from_secs(60 * minutes);
            assert!(
                dedup.observe(&findings, t, wall).is_empty(),
                "{minutes} min"
            );
        }
        let later = t0 + HOUR;
        let due = dedup.observe(&findings, later, wall);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 2);
        assert_eq!(due[0].previous, Some(event));
        assert_eq!(due[0].first_seen, wall);
    }

    #[test]
    fn duplicates_in_one_check_are_one_key() {
        let mut dedup = EventDedup::new(HOUR, 1);
        let due = dedup.observe(
            &[
                stale("10.0.0.1:80"),
                stale("10.0.0.1:80"),
                stale("10.0.0.2:80"),
            ],
            Instant::now(),
            SystemTime::now(),
        );
        assert_eq!(due.len(), 2);
        assert_eq!(dedup.len(), 2);
    }

    #[test]
    fn a_resolved_finding_is_forgotten_and_announced_afresh_when_it_returns() {
        let mut dedup = EventDedup::new(HOUR, 1);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let due = dedup.observe(&[stale("10.0.0.1:80")], t0, wall);
        dedup.announced(&due[0].key, t0, None);
        assert!(
            dedup
                .observe(&[], t0 + Duration::from_secs(30), wall)
                .is_empty()
        );
        assert!(dedup.is_empty());
        let due = dedup.observe(&[stale("10.0.0.1:80")], t0 + Duration::from_secs(60), wall);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 1);
    }

    #[test]
    fn confirmation_needs_consecutive_checks() {
        let mut dedup = EventDedup::new(HOUR, 2);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        assert!(
            dedup.observe(&[stale("a")], t0, wall).is_empty(),
            "seen once"
        );
        // Gone in between: the count starts again.
        assert!(dedup.observe(&[], t0, wall).is_empty());
        assert!(
            dedup.observe(&[stale("a")], t0, wall).is_empty(),
            "seen once again"
        );
        let due = dedup.observe(&[stale("a")], t0, wall);
        assert_eq!(keys(&due), [Some("a".to_string())], "seen twice in a row");
    }

    #[test]
    fn an_unannounced_finding_stays_due() {
        let mut dedup = EventDedup::new(HOUR, 1);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        assert_eq!(dedup.observe(&[stale("a"), stale("b")], t0, wall).len(), 2);
        let due = dedup.observe(&[stale("a"), stale("b")], t0, wall);
        dedup.announced(&due[0].key, t0, None);
        assert_eq!(
            keys(&dedup.observe(&[stale("a"), stale("b")], t0, wall)),
            [Some("b".to_string())]
        );
    }

    #[test]
    fn the_key_is_kind_service_chain_and_endpoint() {
        let a = stale("10.0.0.1:80");
        let mut other_message = a.clone();
        other_message.message = "something else".into();
        assert_eq!(EventKey::of(&a), EventKey::of(&other_message));
        let mut other_chain = a.clone();
        other_chain.chain = Some("KUBE-SEP-X".into());
        assert_ne!(EventKey::of(&a), EventKey::of(&other_chain));
        let mut other_kind = a.clone();
        other_kind.kind = FindingKind::MissingEndpoint;
        assert_ne!(EventKey::of(&a), EventKey::of(&other_kind));
    }
}
