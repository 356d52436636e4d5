//! When the next sync (or audit check) runs: as soon as it is asked for, but never sooner than
//! `min_period` after the previous run (kube-proxy's `--iptables-min-sync-period`).

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

/// A rate-limited deadline: requests bring it forward, runs are spaced `min_period` apart.
#[derive(Debug, Clone)]
pub struct Deadline {
    min_period: Duration,
    due: Option<Instant>,
    last_run: Option<Instant>,
}

impl Deadline {
    /// No run asked for yet, none done.
    pub fn new(min_period: Duration) -> Deadline {
        Deadline {
            min_period,
            due: None,
            last_run: None,
        }
    }

    /// Asks for a run at `at`, or `min_period` after the last run if that is later; an earlier
    /// request already pending wins.
    pub fn request(&mut self, at: Instant) {
        let earliest = self
            .last_run
            .map_or(at, |last| at.max(last + self.min_period));
        self.due = Some(self.due.map_or(earliest, |due| due.min(earliest)));
    }

    /// When the next run is due, if one was asked for.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// When the last run started.
    pub fn last_run(&self) -> Option<Instant> {
        self.last_run
    }

    /// Records that a run starts now: nothing is due any more.
    pub fn start_run(&mut self, now: Instant) {
        self.due = None;
        self.last_run = Some(now);
    }

    /// Resolves when the run is due; never, while none is asked for. It holds no borrow, so a
    /// `select!` branch can wait on it while another changes the deadline.
    pub fn wait(&self) -> impl Future<Output = ()> + use<> {
        let due = self.due;
        async move {
            match due {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_by_the_minimum_period_and_the_earliest_wins() {
        let t0 = Instant::now();
        let min = Duration::from_secs(1);
        let mut deadline = Deadline::new(min);
        assert_eq!(deadline.due(), None);
        // Nothing ran yet: due at once.
        deadline.request(t0);
        assert_eq!(deadline.due(), Some(t0));
        deadline.start_run(t0);
        assert_eq!(deadline.due(), None);
        assert_eq!(deadline.last_run(), Some(t0));
        // Asked for 100 ms later: held back to a second after the run.
        deadline.request(t0 + Duration::from_millis(100));
        assert_eq!(deadline.due(), Some(t0 + min));
        // A later request does not push it back.
        deadline.request(t0 + Duration::from_secs(5));
        assert_eq!(deadline.due(), Some(t0 + min));
        // A request past the minimum period is taken as asked.
        let mut deadline = Deadline::new(min);
        deadline.start_run(t0);
        deadline.request(t0 + Duration::from_secs(3));
        assert_eq!(deadline.due(), Some(t0 + Duration::from_secs(3)));
    }
}
