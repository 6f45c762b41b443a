//! How `nexus run` judges its shutdown: what happened at each step goes
//! in ([`ShutdownFacts`]), the problems to report come out
//! ([`ShutdownFacts::problems`]); none means exit 0.

use std::time::Duration;

use nexus_swarm_runtime::supervisor::NodeExit;

/// What the ledger check after shutdown found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCheck {
    /// Every item's checksum holds.
    Intact {
        /// Records in the store.
        records: u64,
    },
    /// Damaged items, described.
    Damaged(Vec<String>),
    /// The store could not be checked, and why.
    Unverified(String),
}

/// What each shutdown step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownFacts {
    /// The HTTP server's end: finished its requests, or why not.
    pub http: Result<(), String>,
    /// The quota keeper's last write.
    pub quotas: Result<(), String>,
    /// How the node ended.
    pub exit: NodeExit,
    /// How long the swarm's shutdown took.
    pub took: Duration,
    /// How long it was given (`run.shutdown_timeout`).
    pub timeout: Duration,
    /// Per pool, messages admitted and never handled.
    pub unhandled: Vec<(String, usize)>,
    /// The ledger check.
    pub ledger: LedgerCheck,
}

impl ShutdownFacts {
    /// The problems to report, in the order they happened.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.http {
            out.push(format!("the HTTP server did not stop cleanly: {e}"));
        }
        if let Err(e) = &self.quotas {
            out.push(format!("quota usage not written: {e}"));
        }
        if let NodeExit::Escalated(why) = &self.exit {
            out.push(format!("a system actor gave up: {why}"));
        }
        if self.took >= self.timeout {
            out.push(format!(
                "the shutdown timed out after {}: what was still running was stopped",
                humantime::format_duration(self.timeout)
            ));
        }
        let lost: Vec<String> = self
            .unhandled
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(pool, n)| format!("{pool}: {n}"))
            .collect();
        if !lost.is_empty() {
            out.push(format!("admitted messages left unhandled: {}", lost.join(", ")));
        }
        match &self.ledger {
            LedgerCheck::Intact { .. } => {}
            LedgerCheck::Damaged(items) => out.push(format!("the ledger is damaged: {}", items.join("; "))),
            LedgerCheck::Unverified(why) => out.push(format!("the ledger could not be verified: {why}")),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> ShutdownFacts {
        ShutdownFacts {
            http: Ok(()),
            quotas: Ok(()),
            exit: NodeExit::Shutdown,
            took: Duration::from_millis(40),
            timeout: Duration::from_secs(30),
            unhandled: vec![("echoes".into(), 0), ("callers".into(), 0)],
            ledger: LedgerCheck::Intact { records: 3 },
        }
    }

    #[test]
    fn a_clean_shutdown_has_no_problem() {
        assert_eq!(clean().problems(), Vec::<String>::new());
    }

    #[test]
    fn each_loss_is_named() {
        let facts = ShutdownFacts {
            took: Duration::from_secs(30),
            unhandled: vec![("echoes".into(), 0), ("callers".into(), 7)],
            ..clean()
        };
        assert_eq!(
            facts.problems(),
            [
                "the shutdown timed out after 30s: what was still running was stopped",
                "admitted messages left unhandled: callers: 7",
            ]
        );
        let facts = ShutdownFacts {
            quotas: Err("disk full".into()),
            exit: NodeExit::Escalated("cost-ledger".into()),
            ledger: LedgerCheck::Damaged(vec!["record 4".into()]),
            ..clean()
        };
        let problems = facts.problems();
        assert_eq!(problems.len(), 3);
        assert!(problems[0].contains("disk full"));
        assert!(problems[1].contains("cost-ledger"));
        assert!(problems[2].contains("record 4"));
        let facts = ShutdownFacts {
            http: Err("requests still running".into()),
            ledger: LedgerCheck::Unverified("locked".into()),
            ..clean()
        };
        assert_eq!(facts.problems().len(), 2);
    }
}
