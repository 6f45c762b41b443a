//! Crash safety of the cost ledger: a child process (`nexus ledger-stress`)
//! records usage as fast as it can and is killed with SIGKILL at a random,
//! seeded moment, several times on the same data directory. Afterwards the
//! ledger holds every record whose id the child printed (it prints only
//! after the commit), none twice, and every budget's stored spend equals the
//! sum of its records in the period.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nexus_swarm::actors::cost_ledger::{CostLedger, LedgerOptions, TimeRange};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TIMEOUT: Duration = Duration::from_secs(60);
const SEED: u64 = 0x1ed9e7;
const ROUNDS: u64 = 3;

/// Runs the child until it has acknowledged a random number of records
/// (plus a random few milliseconds), kills it, and returns every id it
/// printed.
fn run_and_kill(dir: &std::path::Path, round: u64, rng: &mut StdRng) -> Vec<u64> {
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
    lines
        .iter()
        .map(|l| {
            l.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("`{l}` is not a record id"))
        })
        .collect()
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
    let unique: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "the child acknowledged an id twice");

    let (actor, ledger) = tokio::time::timeout(TIMEOUT, CostLedger::start(LedgerOptions::new(dir.path())))
        .await
        .expect("ledger reopens in time")
        .expect("the killed store reopens");
    let records = ledger.records(TimeRange::all()).await.unwrap();
    let stored: HashSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(stored.len(), records.len(), "a record is stored twice");
    let missing: Vec<u64> = acked.iter().filter(|id| !stored.contains(id)).copied().collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");

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
