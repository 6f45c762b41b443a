//! A low lane spills to disk and its messages survive SIGKILL: a child
//! process (`nexus spill-stress`) sends 200 numbered low messages to a
//! one-worker pool whose low lane holds 4, so the rest spill to disk; its
//! handler records each number it handles in a file, and stops for good at
//! the 60th message (before recording it). The child is killed there with
//! SIGKILL, then started again over the same spill directory, sending 100
//! more. The file must then hold 0..300, each once, in order: the spilled
//! messages handled before the kill are not delivered again, the rest
//! (the one being handled at the kill included) are delivered after the
//! restart, before the newer messages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_RUN: u64 = 200;
const PAUSE_AT: u64 = 60;
const SECOND_RUN: u64 = 100;

/// A child process killed when dropped (a failing test leaves none behind).
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Spawned {
    fn start(dir: &Path, out: &Path, first: u64, count: u64, pause_at: Option<u64>, log: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexus"));
        cmd.arg("spill-stress")
            .arg("--dir")
            .arg(dir)
            .arg("--out")
            .arg(out)
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--capacity", "4"]);
        if let Some(k) = pause_at {
            cmd.args(["--pause-after", &k.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("nexus spill-stress starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: log.to_path_buf(),
        }
    }

    /// The next line the child prints, within the test's time bound.
    fn expect_line(&mut self, deadline: Instant, what: &str) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("no `{what}` line from the child ({e:?}); its stderr:\n{stderr}");
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Already exited or reaped in the passing case.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn number_after(line: &str, key: &str) -> u64 {
    line.strip_prefix(key)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("`{line}` is not `{key}<n>`"))
}

fn handled(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("`{l}` is not a number")))
        .collect()
}

#[test]
fn spilled_messages_are_delivered_once_in_order_across_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let spill = tmp.path().join("spill");
    let out = tmp.path().join("handled.txt");
    let deadline = Instant::now() + TIMEOUT;

    let mut first = Spawned::start(
        &spill,
        &out,
        0,
        FIRST_RUN,
        Some(PAUSE_AT),
        &tmp.path().join("first.log"),
    );
    let sent = first.expect_line(deadline, "sent");
    let spilled = number_after(&sent, "sent spilled=");
    assert!(
        spilled >= FIRST_RUN - 6,
        "past a lane of 4 (and the message in the handler) the rest spill: {spilled}"
    );
    assert_eq!(first.expect_line(deadline, "paused"), "paused");
    first.child.kill().expect("SIGKILL delivered");
    let status = first.child.wait().expect("child reaped");
    assert!(!status.success(), "the child was killed, not finished");
    let before = handled(&out);
    assert_eq!(before, (0..PAUSE_AT).collect::<Vec<_>>(), "handled before the kill");
    let on_disk = std::fs::read_dir(&spill)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(on_disk > 0, "the kill left spilled messages on disk");

    let mut second = Spawned::start(
        &spill,
        &out,
        FIRST_RUN,
        SECOND_RUN,
        None,
        &tmp.path().join("second.log"),
    );
    let sent = second.expect_line(deadline, "sent");
    assert!(
        number_after(&sent, "sent spilled=") == SECOND_RUN,
        "with older messages on disk, every new low message queues behind them: {sent}"
    );
    let drained = second.expect_line(deadline, "drained");
    // The spilled messages from the first run that were not acknowledged
    // (60..200, the one paused in the handler included), and the new ones.
    assert_eq!(
        number_after(&drained, "drained unspilled="),
        FIRST_RUN - PAUSE_AT + SECOND_RUN
    );
    let status = second.child.wait().expect("child reaped");
    assert!(status.success(), "second run exits after draining");

    let all = handled(&out);
    assert_eq!(
        all,
        (0..FIRST_RUN + SECOND_RUN).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(
        !std::fs::read_dir(&spill)
            .unwrap()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "seg")),
        "a drained spill leaves no segment behind"
    );
}
