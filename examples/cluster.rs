//! Three cluster nodes on 127.0.0.1, keyed work routed across them, and
//! one node killed in the middle.
//!
//! The example starts three `nexus node` processes (itself, re-executed
//! with `node ...`: the same code as the `nexus node` command) sharing a
//! cookie, with 100 ms heartbeats and a 600 ms failure timeout. Two sender
//! threads send keyed messages through `POST /cluster/send` of nodes n1
//! and n2: each is handed to the key's owner, asked of an agent of its
//! `workers` pool, and answered only once that owner has handled and
//! acknowledged it; without an ack within 200 ms it
//! is sent again to the key's owner at that time. After a third of the
//! messages, n3 is killed (SIGKILL). The survivors notice (its sessions
//! close), drop it from the ring, and its keys, and only its, move.
//!
//! It prints `nodes`, `keys`, `keys_moved_on_loss` (the fraction of keys
//! whose owner changed), `only_lost_keys_moved`, `messages_sent`,
//! `messages_acknowledged`, `messages_lost` (sent but never acknowledged:
//! 0), `messages_resent` and `detection_ms` (from the kill to n1's ring
//! without n3); with `--json`, as one JSON object on stdout.
//!
//! ```text
//! cargo run --example cluster -- [--json] [--messages N]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

/// Longest wait for anything; past it the example fails.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
struct Args {
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Keyed messages to send (1..=100,000).
    #[arg(long, default_value_t = 600)]
    messages: u64,
}

/// A node process, killed when dropped.
struct NodeProc {
    child: Child,
    cluster: String,
    http: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // Gone either way after this.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let _ = argv.next();
    if argv.next().as_deref() == Some("node") {
        // Re-executed as one of the nodes: exactly `nexus node ...`.
        nexus_swarm::runtime::telemetry::init_tracing();
        let cli =
            nexus_swarm::cli::Cli::parse_from(std::iter::once("nexus".to_string()).chain(std::env::args().skip(1)));
        return match nexus_swarm::cli::run(cli) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("node: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let args = Args::parse();
    if !(1..=100_000).contains(&args.messages) {
        eprintln!("--messages {}: must be between 1 and 100000", args.messages);
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster example: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "example-cookie-0c1d\n")?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        "[cluster]\nheartbeat_interval = \"100ms\"\nfailure_timeout = \"600ms\"\nack_timeout = \"200ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"1s\"\n\n[[run.pools]]\nname = \"workers\"\nagent = \"echo\"\nsize = 4\n",
    )?;
    let exe = std::env::current_exe()?;
    let start = |name: &str, join: &[&str]| -> anyhow::Result<NodeProc> {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "node",
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--work-pool",
            "workers",
        ])
        .arg("--cookie-file")
        .arg(&cookie)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join(name));
        for peer in join {
            cmd.args(["--join", peer]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("node stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first: Value = serde_json::from_str(&lines.next().context("node said nothing")??)?;
        // Drain the node's events so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(NodeProc {
            child,
            cluster: first["cluster"].as_str().context("cluster address")?.to_string(),
            http: first["http"].as_str().context("http address")?.to_string(),
        })
    };
    let n1 = start("n1", &[])?;
    let n2 = start("n2", &[&n1.cluster])?;
    let n3 = start("n3", &[&n1.cluster, &n2.cluster])?;
    for n in [&n1, &n2, &n3] {
        wait_members(&n.http, 3)?;
    }

    let keys: Vec<String> = (0..300).map(|i| format!("conversation-{i}")).collect();
    let before = owners(&n1.http, &keys)?;

    let acked = Arc::new(AtomicU64::new(0));
    let resent = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = [n1.http.clone(), n2.http.clone()]
        .into_iter()
        .enumerate()
        .map(|(s, http)| {
            let (acked, resent, keys) = (Arc::clone(&acked), Arc::clone(&resent), keys.clone());
            let count = args.messages / 2 + u64::from(s == 0) * (args.messages % 2);
            std::thread::spawn(move || -> anyhow::Result<u64> {
                for i in 0..count {
                    let key = &keys[(i as usize * 7 + s) % keys.len()];
                    let (code, answer) = request(&http, "POST", &format!("/cluster/send?key={key}"), "work")?;
                    if code == 200 {
                        acked.fetch_add(1, Ordering::Relaxed);
                        let attempts = answer["attempts"].as_u64().unwrap_or(1);
                        resent.fetch_add(attempts.saturating_sub(1), Ordering::Relaxed);
                    }
                }
                Ok(count)
            })
        })
        .collect();

    // Kill n3 a third of the way through.
    let t = Instant::now();
    while acked.load(Ordering::Relaxed) < args.messages / 3 {
        if t.elapsed() > TIMEOUT {
            bail!("messages are not acknowledged");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = Instant::now();
    drop(n3);
    wait_members(&n1.http, 2)?;
    let detection_ms = killed.elapsed().as_millis() as u64;

    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    let after = owners(&n1.http, &keys)?;
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let only_lost = before.iter().zip(&after).all(|(b, a)| b == a || b == "n3");
    let acknowledged = acked.load(Ordering::Relaxed);
    let report = json!({
        "nodes": 3,
        "keys": keys.len(),
        "keys_moved_on_loss": moved as f64 / keys.len() as f64,
        "only_lost_keys_moved": only_lost,
        "messages_sent": sent,
        "messages_acknowledged": acknowledged,
        "messages_lost": sent - acknowledged,
        "messages_resent": resent.load(Ordering::Relaxed),
        "detection_ms": detection_ms,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("3 nodes, {} keys; n3 killed after a third of the messages", keys.len());
        println!("  detected by n1 in {detection_ms} ms");
        println!(
            "  keys moved: {moved} ({:.1} %), only n3's: {only_lost}",
            100.0 * moved as f64 / keys.len() as f64
        );
        println!(
            "  messages: {sent} sent, {acknowledged} acknowledged, {} lost, {} resent",
            sent - acknowledged,
            report["messages_resent"]
        );
    }
    Ok(())
}

fn wait_members(http: &str, count: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (_, status) = request(http, "GET", "/cluster", "")?;
        if status["members"].as_array().map(Vec::len) == Some(count) {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            bail!("{http} never saw {count} members: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn owners(http: &str, keys: &[String]) -> anyhow::Result<Vec<String>> {
    let (_, answer) = request(http, "GET", &format!("/cluster/owners?keys={}", keys.join(",")), "")?;
    Ok(serde_json::from_value(answer["owners"].clone())?)
}

/// One HTTP/1.1 request on its own connection: (status, JSON body).
fn request(addr: &str, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let (_, body) = raw.split_once("\r\n\r\n").context("end of headers")?;
    Ok((status, serde_json::from_str(body)?))
}
