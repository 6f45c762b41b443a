//! Crash safety of the cost ledger: a child process (`nexus ledger-stress`)
//! records usage as fast as it can and is killed with SIGKILL at a random,
//! seeded moment, several times on the same data directory. The child
//! prints each record only after its commit, with its id and its identity:
//! the unique `op` label of the tracking call and the record's kind.
//! Afterwards the ledger holds every printed record exactly once (under the
//! printed id, and no record of the same identity besides), and every
//! budget's stored spend equals the sum of its records in the period.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nexus_swarm::actors::cost_ledger::{CostLedger, CostLedgerArgs, LedgerOptions, TimeRange};
use nexus_swarm::cli::ledger_stress::OP_LABEL;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TIMEOUT: Duration = Duration::from_secs(60);
const SEED: u64 = 0x1ed9e7;
const ROUNDS: u64 = 3;

/// One record the child acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Acked {
    id: u64,
    /// The tracking call's unique `op` label.
    op: String,
    /// The record's kind (one record per kind per call).
    kind: String,
}

impl Acked {
    fn identity(&self) -> (String, String) {
        (self.op.clone(), self.kind.clone())
    }
}

/// Parses `<id> <op> <kind>`.
fn parse_ack(line: &str) -> Acked {
    let mut parts = line.split_whitespace();
    let (Some(id), Some(op), Some(kind), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        panic!("`{line}` is not `<id> <op> <kind>`");
    };
    Acked {
        id: id.parse().unwrap_or_else(|_| panic!("`{line}` has no record id")),
        op: op.to_string(),
        kind: kind.to_string(),
    }
}

/// Runs the child until it has acknowledged a random number of records
/// (plus a random few milliseconds), kills it, and returns every record it
/// printed.
fn run_and_kill(dir: &std::path::Path, round: u64, rng: &mut StdRng) -> Vec<Acked> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["ledger-stress", "--data-dir"])
        .arg(dir)
        .args(["--seed", &(SEED + round).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nexus ledger-stress starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let target = rng.random_range(20..=3000usize);
    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    while lines.len() < target {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("child acknowledged {} of {target} records before {e:?}", lines.len());
            }
        }
    }
    // The kill lands at a random point of the child's commit cycle.
    std::thread::sleep(Duration::from_micros(rng.random_range(0..5_000)));
    child.kill().expect("SIGKILL delivered");
    let status = child.wait().expect("child reaped");
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter());
    lines.iter().map(|l| parse_ack(l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill_once_and_budgets_match_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        let path = dir.path().to_path_buf();
        let mut r = StdRng::seed_from_u64(rng.random());
        let ids = tokio::task::spawn_blocking(move || run_and_kill(&path, round, &mut r))
            .await
            .unwrap();
        assert!(!ids.is_empty());
        acked.extend(ids);
    }
    let unique: HashSet<u64> = acked.iter().map(|a| a.id).collect();
    assert_eq!(unique.len(), acked.len(), "the child acknowledged an id twice");
    let identities: HashSet<(String, String)> = acked.iter().map(Acked::identity).collect();
    assert_eq!(identities.len(), acked.len(), "the child acknowledged a record twice");

    let args = tokio::time::timeout(TIMEOUT, CostLedgerArgs::open(LedgerOptions::new(dir.path())))
        .await
        .expect("ledger reopens in time")
        .expect("the killed store reopens");
    let (actor, ledger) = CostLedger::spawn_unsupervised(args).await.unwrap();
    let records = ledger.records(TimeRange::all()).await.unwrap();
    let stored: HashSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(stored.len(), records.len(), "two records share an id");
    // Every stored record by identity: each must be there once.
    let mut by_identity: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for r in &records {
        let op = r
            .meta
            .labels
            .get(OP_LABEL)
            .unwrap_or_else(|| panic!("record {} has no `{OP_LABEL}` label", r.id));
        by_identity
            .entry((op.clone(), r.kind.to_string()))
            .or_default()
            .push(r.id);
    }
    let twice: Vec<_> = by_identity.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "records stored more than once: {twice:?}");
    let missing: Vec<&Acked> = acked
        .iter()
        .filter(|a| by_identity.get(&a.identity()) != Some(&vec![a.id]))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost, or stored under another id: {missing:?}"
    );

    let statuses = ledger.budget_statuses();
    assert_eq!(statuses.len(), 5, "every budget of the stress run survives");
    for s in statuses {
        let b = &s.budget;
        let sum: u64 = records
            .iter()
            .filter(|r| b.scope.matches(&r.meta) && b.period.bucket_start(r.at_us) >= s.period_start_us)
            .map(|r| r.cost_micro_usd)
            .sum();
        assert_eq!(s.spent_micro_usd, sum, "budget {} spend differs from its records", b.id);
        assert_eq!((s.inflight_micro_usd, s.reserved_micro_usd), (0, 0));
    }
    actor.stop_and_wait(None, None).await.unwrap();
}
