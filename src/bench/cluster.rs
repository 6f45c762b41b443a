//! Cross-node messaging over loopback: `nexus bench --scenario cluster`.
//!
//! Two processes, as the cluster layer is used (ractor's registry and
//! process groups are global to a process, so a process holds one cluster
//! member): this one is node `a`, and it starts a copy of its own binary
//! with [`PEER_ENV`] set as node `b`. Each runs a [`ClusterMember`] on
//! 127.0.0.1; `a` dials `b`, so one ractor_cluster session carries every
//! message below. Node `b` also runs a bare ractor actor (a hand-written
//! serializable message: a cast of bytes, or a call answered with an empty
//! reply) in the process group [`BARE_GROUP`], which that session makes
//! visible in `a`.
//!
//! For each payload size (64 B, and 4 KiB, above the envelope's 1 KiB
//! compression threshold), in one run, with the same counts:
//!
//! - **bare cast**: `a` casts N messages to the bare actor on `b`;
//! - **ours, cast**: `a` casts N [`Work`] frames (our envelope, LZ4 above
//!   `cluster.compress_above`) to `b`'s member, which decodes each, checks
//!   it against its dedup window, records it and acknowledges it as the
//!   protocol does; `a` does not wait for the acks;
//! - **bare call**: M sequential `call`s of the bare actor, round trip;
//! - **ours, ask**: M sequential [`ClusterHandle::send_keyed`] to a key `b`
//!   owns, from the send until its ack is back.
//!
//! Throughput counts messages as received on `b`: the clock stops when
//! `b` says it has them all (`b` answers `a` on a pipe; its polling adds at
//! most a millisecond). Payloads are text, pseudo-random words and
//! spaces; the report gives each size's frame length and whether the
//! envelope compressed it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nexus_swarm_actors::cluster_member::{
    ClusterHandle, ClusterMember, ClusterMsg, ClusterSettings, Cookie, node_group,
};
use nexus_swarm_runtime::cluster::Work;
use nexus_swarm_runtime::cluster::envelope::{self, FrameKind};
use nexus_swarm_runtime::config::{ClusterConfig, NexusConfig};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::routing::RoutingKey;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Value, json};

use super::pipeline::TempDir;

/// Set on the peer process: the directory holding the cookie file.
pub const PEER_ENV: &str = "NEXUS_BENCH_CLUSTER_PEER";
/// The process group of the bare actor on `b`.
pub(crate) const BARE_GROUP: &str = "nexus.bench.bare";
/// Payload sizes, in bytes.
const SIZES: [usize; 2] = [64, 4096];
/// The seeds' message router targets (seeds 000 and 002, `messageRouter`:
/// 1000 messages/s, latency under 50 ms). They are not stated for
/// cross-node messages; they are printed beside the figures as the only
/// messaging targets the seeds give.
const SEED_MSGS_PER_S: f64 = 1000.0;
const SEED_LATENCY_MS: f64 = 50.0;
/// How long `b` may take to report every message.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Work ids of the casts start here, far from `send_keyed`'s own ids.
const CAST_ID_BASE: u64 = 1 << 40;

/// The bare actor's message: hand-written serialization, as
/// `#[derive(RactorClusterMessage)]` would write it.
#[derive(Debug)]
pub(crate) enum BareMsg {
    /// Counted on arrival.
    Cast(Vec<u8>),
    /// Answered with an empty reply.
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl ractor::Message for BareMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(match self {
            BareMsg::Cast(args) => SerializedMessage::Cast {
                variant: "cast".into(),
                args,
                metadata: None,
            },
            BareMsg::Call(args, reply) => SerializedMessage::Call {
                variant: "call".into(),
                args,
                reply,
                metadata: None,
            },
        })
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { args, .. } => Ok(BareMsg::Cast(args)),
            SerializedMessage::Call { args, reply, .. } => Ok(BareMsg::Call(args, reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// The bare actor on `b`: counts casts, answers calls.
struct BareSink;

impl Actor for BareSink {
    type Msg = BareMsg;
    type State = Arc<AtomicU64>;
    type Arguments = Arc<AtomicU64>;

    async fn pre_start(
        &self,
        myself: ActorRef<BareMsg>,
        count: Arc<AtomicU64>,
    ) -> Result<Arc<AtomicU64>, ActorProcessingErr> {
        ractor::pg::join(BARE_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(count)
    }

    async fn handle(
        &self,
        _: ActorRef<BareMsg>,
        msg: BareMsg,
        count: &mut Arc<AtomicU64>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BareMsg::Cast(_) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            BareMsg::Call(_, reply) => {
                // The caller may have given up.
                let _ = reply.send(Vec::new());
            }
        }
        Ok(())
    }
}

fn settings(dir: &Path, name: &str, join: Vec<SocketAddr>) -> anyhow::Result<ClusterSettings> {
    Ok(ClusterSettings {
        name: name.into(),
        listen: ([127, 0, 0, 1], 0).into(),
        cookie: Cookie::from_file(&dir.join("cookie"))?,
        join,
        config: ClusterConfig::default(),
        handler: None,
    })
}

async fn start_node(dir: &Path) -> anyhow::Result<Node> {
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.to_path_buf();
    config.scaling.enabled = false;
    Ok(Node::start(config).await?)
}

/// If this process was started as the peer `b`, runs it and exits. Call
/// first thing in `main`.
pub fn run_peer_if_requested() {
    let Ok(dir) = std::env::var(PEER_ENV) else {
        return;
    };
    let code = match run_peer(Path::new(&dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cluster bench peer failed: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Node `b`: prints its address, then answers `wait bare|ours N` on stdin
/// with the count received once it reaches N; ends at stdin's end.
fn run_peer(dir: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let data = dir.join("b");
        std::fs::create_dir_all(&data)?;
        let node = start_node(&data).await?;
        let handle = ClusterMember::start(&node, "cluster-member", settings(dir, "b", Vec::new())?).await?;
        let bare = Arc::new(AtomicU64::new(0));
        let (sink, _) = Actor::spawn(None, BareSink, Arc::clone(&bare)).await?;
        println!("{}", handle.listen_addr());
        std::io::stdout().flush()?;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin());
        loop {
            let mut line = String::new();
            if tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await? == 0 {
                break;
            }
            let mut words = line.split_whitespace();
            let (what, target) = (words.next(), words.next().and_then(|n| n.parse::<u64>().ok()));
            let count = || match what {
                Some("bare") => Some(bare.load(Ordering::Relaxed)),
                Some("ours") => Some(handle.work_handled()),
                _ => None,
            };
            let (Some(mut now), Some(target)) = (count(), target) else {
                anyhow::bail!("the peer takes `bare N` or `ours N`, not {line:?}");
            };
            let started = Instant::now();
            while now < target && started.elapsed() < WAIT_LIMIT {
                tokio::time::sleep(Duration::from_micros(200)).await;
                now = count().unwrap_or(now);
            }
            println!("{now}");
            std::io::stdout().flush()?;
        }
        sink.stop(None);
        handle.stop();
        node.shutdown(Duration::from_secs(2)).await;
        Ok(())
    })
}

/// Node `b`, seen from `a`: the child process and its pipes.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(dir: &Path) -> anyhow::Result<(Self, SocketAddr)> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(PEER_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the peer node")?;
        let stdin = child.stdin.take().context("the peer's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("the peer's stdout")?);
        let mut peer = Self {
            child,
            stdin: Some(stdin),
            stdout,
        };
        let addr = peer.line()?.parse().context("the peer's address")?;
        Ok((peer, addr))
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        anyhow::ensure!(self.stdout.read_line(&mut line)? > 0, "the peer node ended early");
        Ok(line.trim().to_string())
    }

    /// Waits (blocking) until `b` has received `target` messages of `what`
    /// (or gave up waiting); answers the count.
    fn wait(&mut self, what: &str, target: u64) -> anyhow::Result<u64> {
        let stdin = self.stdin.as_mut().context("the peer was stopped")?;
        writeln!(stdin, "{what} {target}")?;
        stdin.flush()?;
        self.line()?.parse().context("the peer's count")
    }

    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the peer node exited with {status}");
        Ok(())
    }
}

/// Words an agent's message might hold.
const WORDS: [&str; 16] = [
    "agent", "task", "reply", "tool", "call", "result", "model", "token", "budget", "pool", "route", "key", "node",
    "ask", "done", "error",
];

/// `len` bytes of text: pseudo-random words from [`WORDS`] and spaces,
/// as JSON or prose would be (so LZ4 has something to find).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// A remote actor of `group` (one whose cell is not local), within 10 s.
async fn remote_member(group: &str) -> anyhow::Result<ActorCell> {
    let started = Instant::now();
    loop {
        if let Some(cell) = ractor::pg::get_members(&group.to_string())
            .into_iter()
            .find(|c| !c.get_id().is_local())
        {
            return Ok(cell);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no remote member of {group} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Throughput as received on `b`: N messages from the first send until
/// `b` reports `before + n`.
fn received_rate(peer: &mut Peer, what: &str, before: u64, n: u64, started: Instant) -> anyhow::Result<(f64, u64)> {
    let total = peer.wait(what, before + n)?;
    let elapsed = started.elapsed();
    let received = total.saturating_sub(before);
    Ok((received as f64 / elapsed.as_secs_f64(), received))
}

/// One payload size: the four measurements.
async fn one_size(
    cluster: &ClusterHandle,
    peer: &mut Peer,
    (bare, member): (&ActorRef<BareMsg>, &ActorRef<ClusterMsg>),
    (key, size, messages, asks): (&str, usize, u64, u64),
    next_id: &mut u64,
) -> anyhow::Result<Value> {
    let body = payload(size, size as u64);
    let compress_above = ClusterConfig::default().compress_above;
    let frame_of = |id: u64| {
        let work = Work {
            from: "a".into(),
            key: key.into(),
            body: body.clone(),
            pool: None,
        };
        envelope::encode(FrameKind::Work, id, &work, compress_above)
    };
    let sample = envelope::decode(&frame_of(0)?)?;
    let frame_bytes = frame_of(0)?.len();

    let bare_before = peer.wait("bare", 0)?;
    let started = Instant::now();
    for _ in 0..messages {
        bare.cast(BareMsg::Cast(body.clone()))
            .map_err(|e| anyhow::anyhow!("bare cast: {e}"))?;
    }
    let (bare_rate, bare_received) =
        tokio::task::block_in_place(|| received_rate(peer, "bare", bare_before, messages, started))?;

    let ours_before = peer.wait("ours", 0)?;
    let started = Instant::now();
    for _ in 0..messages {
        *next_id += 1;
        member
            .cast(ClusterMsg::Frame(frame_of(*next_id)?))
            .map_err(|e| anyhow::anyhow!("cast to b's member: {e}"))?;
    }
    let (ours_rate, ours_received) =
        tokio::task::block_in_place(|| received_rate(peer, "ours", ours_before, messages, started))?;

    let mut bare_call = super::histogram();
    let mut replied = 0u64;
    for _ in 0..asks {
        let t = Instant::now();
        let reply = ractor::call_t!(bare, BareMsg::Call, 5_000, body.clone());
        if reply.is_ok() {
            super::record(&mut bare_call, t.elapsed());
            replied += 1;
        }
    }
    let mut ours_ask = super::histogram();
    let mut acked = 0u64;
    for _ in 0..asks {
        let t = Instant::now();
        let delivery = cluster.send_keyed(key, body.clone(), Duration::from_secs(5)).await;
        if delivery.is_ok_and(|d| d.owner == "b") {
            super::record(&mut ours_ask, t.elapsed());
            acked += 1;
        }
    }
    let ratio = if bare_rate > 0.0 { ours_rate / bare_rate } else { 0.0 };
    eprintln!(
        "{size} B (frame {frame_bytes} B{}): cast bare {bare_rate:.0} msgs/s, ours {ours_rate:.0} msgs/s ({ratio:.2}x) [seed messageRouter {SEED_MSGS_PER_S:.0} msgs/s]; \
         round trip bare call p50 {:.0} us p99 {:.0} us, ours ask p50 {:.0} us p99 {:.0} us [seed latency < {SEED_LATENCY_MS:.0} ms]",
        if sample.compressed { ", LZ4" } else { "" },
        super::us(&bare_call, 0.50),
        super::us(&bare_call, 0.99),
        super::us(&ours_ask, 0.50),
        super::us(&ours_ask, 0.99),
    );
    Ok(json!({
        "payload_bytes": size,
        "frame_bytes": frame_bytes,
        "compressed": sample.compressed,
        "bare_cast_msgs_per_s": bare_rate.round(),
        "bare_received": bare_received,
        "ours_cast_msgs_per_s": ours_rate.round(),
        "ours_received": ours_received,
        "ours_to_bare_ratio": (ratio * 100.0).round() / 100.0,
        "bare_call_p50_us": super::us(&bare_call, 0.50),
        "bare_call_p99_us": super::us(&bare_call, 0.99),
        "bare_replied": replied,
        "ours_ask_p50_us": super::us(&ours_ask, 0.50),
        "ours_ask_p99_us": super::us(&ours_ask, 0.99),
        "ours_acked": acked,
    }))
}

/// Runs the scenario with `messages` casts of each kind and size (and a
/// tenth as many asks, at least 10); answers its JSON line.
pub(super) async fn run(messages: u64) -> anyhow::Result<Value> {
    anyhow::ensure!(messages >= 10, "--messages {messages}: at least 10");
    let asks = (messages / 10).max(10);
    eprintln!("cluster scenario: two processes on 127.0.0.1, {messages} casts and {asks} asks per kind and size");
    let dir = TempDir::new()?;
    std::fs::write(dir.0.join("cookie"), format!("bench-{}", std::process::id()))?;
    let (mut peer, b_addr) = tokio::task::block_in_place(|| Peer::start(&dir.0))?;
    let data = dir.0.join("a");
    std::fs::create_dir_all(&data)?;
    let node = start_node(&data).await?;
    let cluster = ClusterMember::start(&node, "cluster-member", settings(&dir.0, "a", vec![b_addr])?).await?;
    let bare: ActorRef<BareMsg> = remote_member(BARE_GROUP).await?.into();
    let member: ActorRef<ClusterMsg> = remote_member(&node_group("b")).await?.into();
    let started = Instant::now();
    while !cluster.view().ring.members().iter().any(|m| m == "b") {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "b never joined a's ring");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = (0u32..)
        .map(|i| format!("key-{i}"))
        .find(|k| cluster.owner(RoutingKey::new(k)).as_deref() == Some("b"))
        .context("no key owned by b")?;
    let mut next_id = CAST_ID_BASE;
    // Warm-up: the session's buffers and both paths' first messages.
    eprintln!("warm-up, not reported: 1000 casts and 10 asks of each kind at 64 B");
    one_size(
        &cluster,
        &mut peer,
        (&bare, &member),
        (&key, 64, 1_000, 10),
        &mut next_id,
    )
    .await?;
    eprintln!("measured:");
    let mut sizes = Vec::new();
    for size in SIZES {
        sizes.push(
            one_size(
                &cluster,
                &mut peer,
                (&bare, &member),
                (&key, size, messages, asks),
                &mut next_id,
            )
            .await?,
        );
    }
    cluster.stop();
    node.shutdown(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| peer.stop())?;

    let all = |f: &dyn Fn(&Value) -> bool| sizes.iter().all(f);
    let counts_add_up = all(&|s| {
        s["bare_received"] == messages
            && s["ours_received"] == messages
            && s["bare_replied"] == asks
            && s["ours_acked"] == asks
    });
    let above_seed_rate = all(&|s| s["ours_cast_msgs_per_s"].as_f64().is_some_and(|r| r >= SEED_MSGS_PER_S));
    let below_seed_latency = all(&|s| {
        s["ours_ask_p99_us"]
            .as_f64()
            .is_some_and(|us| us < SEED_LATENCY_MS * 1e3)
    });
    let passed = counts_add_up && above_seed_rate && below_seed_latency;
    Ok(json!({
        "scenario": "cluster",
        "processes": 2,
        "transport": "one ractor_cluster session over 127.0.0.1, plain TCP",
        "messages": messages,
        "asks": asks,
        "compress_above_bytes": ClusterConfig::default().compress_above,
        "sizes": sizes,
        "seed_msgs_per_s": SEED_MSGS_PER_S,
        "seed_latency_ms": SEED_LATENCY_MS,
        "seed_note": "the seeds' messageRouter targets (1000 msgs/s, < 50 ms); the seeds state none for cross-node messages",
        "checks": {
            "every_message_received_and_every_ask_answered": counts_add_up,
            "ours_cast_at_or_above_seed_rate": above_seed_rate,
            "ours_ask_p99_below_seed_latency": below_seed_latency,
        },
        "passed": passed,
    }))
}
