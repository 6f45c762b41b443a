//! How `nexus run` stops its swarm ([`stop_swarm`]) and judges the
//! shutdown: what happened at each step goes in ([`ShutdownFacts`]), the
//! problems to report come out ([`ShutdownFacts::problems`]); none means
//! exit 0.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nexus_swarm_actors::cost_ledger::RedbStore;
use nexus_swarm_actors::swarm::Swarm;
use nexus_swarm_runtime::supervisor::NodeExit;

use super::agents::SpawnedPool;

/// Stops each pool's load, writes the quotas' usage, shuts the swarm down within `timeout` (every
/// pool handles what it admitted, the system actors stop, the ledger
/// writes what it holds), counts what each pool left unhandled and
/// verifies the ledger under `data_dir`. `http` is how the HTTP server
/// ended, stopped before.
pub async fn stop_swarm(
    swarm: &Swarm,
    pools: &BTreeMap<String, SpawnedPool>,
    timeout: Duration,
    data_dir: &Path,
    http: Result<(), String>,
) -> ShutdownFacts {
    for p in pools.values() {
        p.stop_load();
    }
    let quotas = swarm.quotas().flush().await.map(drop).map_err(|e| e.to_string());
    // The workers, taken before the shutdown retires them from their
    // pools. At the timeout the node kills what still runs and drops what
    // its lanes hold, so they are counted just before the kill.
    let workers: Vec<_> = pools.iter().map(|(name, p)| (name.clone(), p.pool.members())).collect();
    let queued = || -> Vec<(String, usize)> {
        workers
            .iter()
            .map(|(name, members)| {
                (
                    name.clone(),
                    members.iter().map(|w| w.depths().iter().sum::<usize>()).sum(),
                )
            })
            .collect()
    };
    let began = tokio::time::Instant::now();
    let mut at_kill = None;
    let exit = swarm.shutdown_or(timeout, || at_kill = Some(queued())).await;
    let unhandled = at_kill.unwrap_or_else(queued);
    let took = began.elapsed();
    let dir = data_dir.to_path_buf();
    let ledger = match tokio::task::spawn_blocking(move || RedbStore::verify(&dir)).await {
        Ok(Ok(v)) if v.is_intact() => LedgerCheck::Intact { records: v.records },
        Ok(Ok(v)) => LedgerCheck::Damaged(v.damage.iter().map(ToString::to_string).collect()),
        Ok(Err(e)) => LedgerCheck::Unverified(e.to_string()),
        Err(e) => LedgerCheck::Unverified(format!("the check failed: {e}")),
    };
    ShutdownFacts {
        http,
        quotas,
        exit,
        took,
        timeout,
        unhandled,
        ledger,
    }
}

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
    /// Per pool, messages admitted and still queued when the shutdown
    /// ended, or at its timeout (messages being handled then are lost
    /// too, and not counted).
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
            out.push(format!(
                "admitted messages left unhandled (queued at the timeout): {}",
                lost.join(", ")
            ));
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
                "admitted messages left unhandled (queued at the timeout): callers: 7",
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
