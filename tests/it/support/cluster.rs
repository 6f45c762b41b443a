//! Three `nexus node` processes on 127.0.0.1 for the cluster tests: each
//! started with ephemeral ports, short heartbeats, and a guard that kills
//! it if the test fails; its `/cluster` API read over HTTP.

#![allow(dead_code, unreachable_pub)] // each test file uses a subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{http, json};
use super::nexus_cli::{Guard, NEXUS, lines_of};

/// Upper bound on any wait in the cluster tests; reaching it is a failure.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// The heartbeat interval the test nodes use.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// The failure timeout the test nodes use.
pub const FAILURE_TIMEOUT: Duration = Duration::from_millis(600);
/// How long a test node waits for an ack before resending keyed work.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(200);
/// The cookie every test node shares.
pub const COOKIE: &str = "test-cookie-7f3a9c";

/// Writes the cookie file and the `[cluster]` configuration into `dir`.
pub fn cluster_files(dir: &Path) -> (PathBuf, PathBuf) {
    cluster_files_with(dir, "")
}

/// [`cluster_files`], with `extra` appended to the configuration (after
/// the `[cluster]` table: keys of it, or `[[cluster.limits]]` entries).
pub fn cluster_files_with(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let cookie = dir.join("cookie");
    std::fs::write(&cookie, format!("{COOKIE}\n")).unwrap();
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nheartbeat_interval = \"{}ms\"\nfailure_timeout = \"{}ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\nack_timeout = \"{}ms\"\n",
            HEARTBEAT.as_millis(),
            FAILURE_TIMEOUT.as_millis(),
            ACK_TIMEOUT.as_millis()
        ) + extra,
    )
    .unwrap();
    (cookie, config)
}

/// A running `nexus node`.
pub struct ClusterNode {
    pub name: String,
    pub guard: Guard,
    pub pid: u32,
    /// Where its node server listens.
    pub cluster: SocketAddr,
    /// Its HTTP API, `host:port`.
    pub http: String,
    /// Its stdout lines after the `listening` one (JSON events).
    pub events: Receiver<String>,
    /// Its stderr lines (logs).
    pub logs: Receiver<String>,
}

impl ClusterNode {
    /// Starts `nexus node --name name` with data under `dir/name`, joining `join`.
    pub fn start(dir: &Path, name: &str, cookie: &Path, config: &Path, join: &[SocketAddr]) -> ClusterNode {
        Self::start_with(dir, name, cookie, config, join, &[])
    }

    /// [`start`](Self::start) with more arguments.
    pub fn start_with(
        dir: &Path,
        name: &str,
        cookie: &Path,
        config: &Path,
        join: &[SocketAddr],
        extra: &[&str],
    ) -> ClusterNode {
        Self::start_at(dir, name, "127.0.0.1:0", cookie, config, join, extra)
    }

    /// [`start_with`](Self::start_with) listening on `listen`.
    pub fn start_at(
        dir: &Path,
        name: &str,
        listen: &str,
        cookie: &Path,
        config: &Path,
        join: &[SocketAddr],
        extra: &[&str],
    ) -> ClusterNode {
        let mut cmd = Command::new(NEXUS);
        cmd.args(["node", "--name", name, "--listen", listen, "--http", "127.0.0.1:0"])
            .arg("--cookie-file")
            .arg(cookie)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join(name));
        for peer in join {
            cmd.arg("--join").arg(peer.to_string());
        }
        cmd.args(extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nexus node starts");
        let pid = child.id();
        let events = lines_of(child.stdout.take().unwrap());
        let logs = lines_of(child.stderr.take().unwrap());
        let guard = Guard(Some(child));
        let first = events
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{name} said nothing: {:?}", logs.try_iter().collect::<Vec<_>>()));
        let listening: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(listening["event"], "listening", "{first}");
        ClusterNode {
            name: name.to_string(),
            guard,
            pid,
            cluster: listening["cluster"].as_str().unwrap().parse().unwrap(),
            http: listening["http"].as_str().unwrap().to_string(),
            events,
            logs,
        }
    }

    /// `GET /cluster`.
    pub fn status(&self) -> Value {
        let (code, body) = http(&self.http, "GET", "/cluster", None, None);
        assert_eq!(code, 200, "{body}");
        json(&body)
    }

    /// The ring's members as this node sees them.
    pub fn members(&self) -> Vec<String> {
        serde_json::from_value(self.status()["members"].clone()).unwrap()
    }

    /// The owner of each key, as this node maps them.
    pub fn owners(&self, keys: &[String]) -> Vec<String> {
        let (code, body) = http(
            &self.http,
            "GET",
            &format!("/cluster/owners?keys={}", keys.join(",")),
            None,
            None,
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_value(json(&body)["owners"].clone()).unwrap()
    }

    /// `POST /cluster/send?key=key`: (status, answer).
    pub fn send(&self, key: &str, body: &str) -> (u16, Value) {
        let (code, answer) = http(
            &self.http,
            "POST",
            &format!("/cluster/send?key={key}"),
            None,
            Some(body),
        );
        (code, json(&answer))
    }

    /// `GET /cluster/limits`: the limit `name` as this node sees it.
    pub fn limit(&self, name: &str) -> Value {
        let (code, body) = http(&self.http, "GET", "/cluster/limits", None, None);
        assert_eq!(code, 200, "{body}");
        json(&body)["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{} has no limit {name}: {body}", self.name))
            .clone()
    }

    /// `POST /cluster/limits/spend`: (status, answer).
    pub fn spend(&self, name: &str, units: u64) -> (u16, Value) {
        let (code, answer) = http(
            &self.http,
            "POST",
            &format!("/cluster/limits/spend?name={name}&units={units}"),
            None,
            None,
        );
        (code, json(&answer))
    }

    /// Sends a signal with `kill -SIG pid`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid);
    }

    /// Waits until this node's members are `expected` (sorted); returns how long it took.
    pub fn wait_members(&self, expected: &[&str]) -> Duration {
        let start = Instant::now();
        loop {
            let members = self.members();
            if members == expected {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{} sees {members:?}, not {expected:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a stdout event line containing `needle`.
    pub fn wait_event(&self, needle: &str) -> String {
        wait_line(&self.events, needle, &self.name)
    }

    /// Waits for a stderr log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_line(&self.logs, needle, &self.name)
    }
}

fn wait_line(rx: &Receiver<String>, needle: &str, name: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("{name} never printed a line with {needle:?}"),
        }
    }
}

/// Three nodes: n2 joins n1, n3 joins n1 and n2; returned once every node
/// sees all three.
pub fn three_nodes(dir: &Path) -> Vec<ClusterNode> {
    three_nodes_with(dir, "")
}

/// [`three_nodes`] with `extra` configuration (see [`cluster_files_with`]).
pub fn three_nodes_with(dir: &Path, extra: &str) -> Vec<ClusterNode> {
    let (cookie, config) = cluster_files_with(dir, extra);
    let n1 = ClusterNode::start(dir, "n1", &cookie, &config, &[]);
    let n2 = ClusterNode::start(dir, "n2", &cookie, &config, &[n1.cluster]);
    let n3 = ClusterNode::start(dir, "n3", &cookie, &config, &[n1.cluster, n2.cluster]);
    let nodes = vec![n1, n2, n3];
    for n in &nodes {
        n.wait_members(&["n1", "n2", "n3"]);
    }
    nodes
}

/// `count` distinct keys.
pub fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("conversation-{i}")).collect()
}
