//! Quota usage survives SIGKILL: a child process (`nexus quota-stress`)
//! starts a quota keeper from a configuration whose data directory is a
//! temporary one, charges an hourly quota (a child of an unperiodic root)
//! and prints the quota's usage after each write to the store. It is killed
//! with SIGKILL at a random, seeded moment, several times on the same data
//! directory, in the same period. Every restart resumes the last usage
//! printed (or the one charge after it, written just before the kill), not
//! zero; so does a keeper opened afterwards in this process, at both levels.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nexus_swarm::actors::quota_keeper::QuotaKeeperArgs;
use nexus_swarm::runtime::config::NexusConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TIMEOUT: Duration = Duration::from_secs(60);
const SEED: u64 = 0x9_07a5;
const ROUNDS: u64 = 3;
const AMOUNT: u64 = 3;

/// The keeper writes on its timer only once an hour: what survives a kill
/// is what the child wrote itself (and printed).
fn config(data_dir: &Path) -> String {
    format!(
        "[node]\ndata_dir = {data_dir:?}\n\
         [quotas]\nflush_interval = \"1h\"\n\
         [[quotas.quotas]]\nid = \"system\"\nkind = \"llm_requests\"\nlimit = 1000000\n\
         [[quotas.quotas]]\nid = \"hourly\"\nparent = \"system\"\nkind = \"llm_requests\"\nlimit = 500000\nperiod = \"1h\"\n"
    )
}

/// Runs the child until it has printed a random number of usages (plus a
/// random few milliseconds), kills it, and returns every usage it printed.
fn run_and_kill(config: &Path, log: &Path, rng: &mut StdRng) -> Vec<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args([
            "quota-stress",
            "--quota",
            "hourly",
            "--amount",
            &AMOUNT.to_string(),
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("nexus quota-stress starts");
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
    let target = rng.random_range(5..=60usize);
    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    while lines.len() < target {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(log).unwrap_or_default();
                panic!(
                    "child printed {} of {target} usages before {e:?}; its stderr:\n{stderr}",
                    lines.len()
                );
            }
        }
    }
    // The kill lands at a random point of the charge, write, print cycle.
    std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
    child.kill().expect("SIGKILL delivered");
    let status = child.wait().expect("child reaped");
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter());
    lines
        .iter()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("`{l}` is not a usage")))
        .collect()
}

#[test]
fn quota_usage_survives_sigkill_in_the_same_period() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("nexus.toml");
    std::fs::write(&config_path, config(&dir.path().join("data"))).unwrap();
    let mut rng = StdRng::seed_from_u64(SEED);
    // What the store may hold after each kill: the last usage printed, or
    // one more charge whose write landed before the kill and its print not.
    let mut stored: Option<(u64, u64)> = None;
    for round in 0..ROUNDS {
        let log = dir.path().join(format!("round-{round}.log"));
        let usages = run_and_kill(&config_path, &log, &mut rng);
        assert!(!usages.is_empty(), "round {round} printed nothing");
        if let Some((low, high)) = stored {
            let resumed = usages[0] - AMOUNT;
            assert!(
                resumed == low || resumed == high,
                "round {round} resumed from {resumed}, not the {low} (or {high}) stored before the kill"
            );
        } else {
            assert_eq!(usages[0], AMOUNT, "the first run starts from zero");
        }
        for pair in usages.windows(2) {
            assert_eq!(pair[1], pair[0] + AMOUNT, "round {round}: {usages:?}");
        }
        let last = *usages.last().unwrap();
        stored = Some((last, last + AMOUNT));
    }

    let config = NexusConfig::from_file(&config_path).unwrap();
    let args = QuotaKeeperArgs::from_config(&config).expect("the killed store reopens");
    let quotas = args.handle();
    let (low, high) = stored.unwrap();
    let hourly = quotas.report("hourly").unwrap();
    assert!(
        hourly.current == low || hourly.current == high,
        "hourly holds {}, not the {low} (or {high}) printed before the last kill",
        hourly.current
    );
    assert!(hourly.current > 0 && hourly.resets_in.is_some());
    assert_eq!(quotas.report("system").unwrap().current, hourly.current);
}
