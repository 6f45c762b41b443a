//! Our data plane: agents behind bounded priority lanes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nexus_swarm_actors::router::{Router, RouterHandle};
use nexus_swarm_runtime::config::RouterConfig;
use nexus_swarm_runtime::prelude::*;

use super::raw::Tally;

/// Messages of the benchmark's agents.
#[derive(Debug)]
pub(crate) enum BenchMsg {
    /// Count one.
    Hit,
    /// Answer at once.
    Ask(Reply<()>),
    /// Ping-pong: forward to the next agent `hops` more times, then answer.
    Chat { hops: u8, reply: Reply<()> },
}

/// The peers a ping-pong agent forwards to, set once all are spawned.
type Peers = Arc<OnceLock<Vec<AgentRef<BenchMsg>>>>;

/// Counts hits on a [`Tally`] (shared by all workers of a pool, the same
/// work as the bare actor's), answers asks, and forwards chats to its peers.
#[derive(Debug)]
pub(crate) struct BenchAgent {
    tally: Arc<Tally>,
    peers: Option<Peers>,
    index: usize,
}

impl BenchAgent {
    /// An agent counting on `tally`.
    pub(crate) fn counting(tally: Arc<Tally>) -> Self {
        Self {
            tally,
            peers: None,
            index: 0,
        }
    }

    /// An agent that never reports (idle agents, latency probes).
    pub(crate) fn idle() -> Self {
        Self::counting(Tally::idle())
    }
}

impl Agent for BenchAgent {
    type Msg = BenchMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<BenchMsg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<BenchMsg>, msg: BenchMsg, _: &mut ()) -> Result<(), HandlerError> {
        match msg {
            BenchMsg::Hit => self.tally.hit(),
            BenchMsg::Ask(reply) => reply.send(()),
            BenchMsg::Chat { hops, reply } => {
                if hops == 0 {
                    reply.send(());
                } else {
                    let peers = self.peers.as_ref().and_then(|p| p.get()).ok_or("peers not set")?;
                    let next = &peers[(self.index + 1) % peers.len()];
                    next.send(BenchMsg::Chat { hops: hops - 1, reply }, Priority::Normal)
                        .await
                        .map_err(|e| format!("peer refused: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

fn node_config() -> NexusConfig {
    // Deep lanes so that producers measure throughput, not lane hand-off.
    let mut mailbox = MailboxConfig::default().with_capacity(4096);
    mailbox.drain_batch = 256;
    NexusConfig {
        mailbox,
        ..NexusConfig::default()
    }
}

/// A round-robin router over a pool of `workers` agents, with admission
/// enabled at a rate far above what the benchmark can offer: every message
/// pays for the admission decision, none is refused or delayed by it.
async fn routed_pool(node: &Node, agent: BenchAgent, workers: usize) -> anyhow::Result<RouterHandle<BenchMsg>> {
    let pool = node.spawn_pool("bench", workers, agent).await?;
    let mut cfg = RouterConfig::default();
    cfg.admission.rate_per_sec = 1_000_000_000;
    cfg.admission.burst = 1_000_000;
    let router = Router::start(node, "bench-router", cfg).await?;
    router.add_pool(&pool).await?;
    Ok(router)
}

/// Sends `n` messages from one task to one agent the way a user would:
/// `AgentRef::try_send`, and `send` (waiting for room) when the lane is
/// full; msgs/s until all are handled.
pub(crate) async fn agent_send_throughput(n: u64) -> anyhow::Result<f64> {
    let node = Node::start(node_config()).await?;
    let (tally, done) = Tally::new(n);
    let agent = node.spawn_agent("bench", BenchAgent::counting(tally)).await?;
    let started = Instant::now();
    for _ in 0..n {
        if let Err(e) = agent.try_send(BenchMsg::Hit, Priority::Normal) {
            agent
                .send(e.into_inner(), Priority::Normal)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    done.await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    node.shutdown(Duration::from_secs(10)).await;
    Ok(rate)
}

/// Sends `n` messages from one task through a router (admission, pick)
/// into a pool of `workers` agents' lanes; msgs/s until all are handled.
/// (No quota charge: the bare baseline has none; the charge is measured on
/// its own and inside the LLM scenario.)
pub(crate) async fn routed_cast_throughput(n: u64, workers: usize) -> anyhow::Result<f64> {
    let node = Node::start(node_config()).await?;
    let (tally, done) = Tally::new(n);
    let router = routed_pool(&node, BenchAgent::counting(tally), workers).await?;
    let started = Instant::now();
    for _ in 0..n {
        router
            .send(BenchMsg::Hit, Priority::Normal, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    done.await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    node.shutdown(Duration::from_secs(10)).await;
    Ok(rate)
}

/// Asks through the router while a paced load of `rate` msgs/s runs
/// through it too.
pub(crate) async fn ask_under_steady_load(
    rate: f64,
    duration: Duration,
    workers: usize,
) -> anyhow::Result<Histogram<u64>> {
    let node = Node::start(node_config()).await?;
    let router = routed_pool(&node, BenchAgent::idle(), workers).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (router, stop) = (router.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            // Paced in small chunks: send what the rate allows since the
            // start, at most 32 at a time, then yield. (Timer ticks are 1 ms,
            // which at millions of messages per second would send bursts of
            // thousands and measure the burst, not the load.)
            let started = Instant::now();
            let mut sent: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
                let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(sent + 32);
                while sent < due {
                    if router.send(BenchMsg::Hit, Priority::Normal, None).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
            }
        })
    };
    let mut hist = super::histogram();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        router
            .ask(BenchMsg::Ask, Priority::Normal, None, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        super::record(&mut hist, t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    load.await?;
    node.shutdown(Duration::from_secs(10)).await;
    Ok(hist)
}

/// High-priority asks to one agent while producers flood its normal lane
/// with `flood` messages.
pub(crate) async fn high_ask_under_flood(flood: u64, asks: u64, gap: Duration) -> anyhow::Result<Histogram<u64>> {
    let node = Node::start(node_config()).await?;
    let agent = node.spawn_agent("flooded", BenchAgent::idle()).await?;
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move {
                for _ in 0..flood / 2 {
                    if let Err(e) = agent.try_send(BenchMsg::Hit, Priority::Normal) {
                        if agent.send(e.into_inner(), Priority::Normal).await.is_err() {
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let mut hist = super::histogram();
    for _ in 0..asks {
        let t = Instant::now();
        agent
            .ask(BenchMsg::Ask, Priority::High, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        super::record(&mut hist, t.elapsed());
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    for p in producers {
        p.await?;
    }
    node.shutdown(Duration::from_secs(10)).await;
    Ok(hist)
}

/// Agent ping-pong: `agents` agents and `chats` concurrent chats, each
/// chat a closed loop of asks that hop agent -> peer agent -> reply (no
/// router, quota, gateway or ledger: message passing only; the seeds'
/// scenario through the real path is [`super::pipeline`]).
/// Returns (agent messages per second, latency of each exchange).
pub(crate) async fn pingpong(agents: usize, chats: usize, duration: Duration) -> anyhow::Result<(f64, Histogram<u64>)> {
    let node = Node::start(node_config()).await?;
    let peers = Arc::new(OnceLock::new());
    let mut refs = Vec::with_capacity(agents);
    for index in 0..agents {
        let agent = BenchAgent {
            peers: Some(Arc::clone(&peers)),
            index,
            ..BenchAgent::idle()
        };
        refs.push(node.spawn_agent(&format!("agent-{index}"), agent).await?);
    }
    peers
        .set(refs.clone())
        .map_err(|_| anyhow::anyhow!("peers already set"))?;
    let refs = Arc::new(refs);
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..chats)
        .map(|chat| {
            let refs = Arc::clone(&refs);
            tokio::spawn(async move {
                let mut hist = super::histogram();
                let mut exchanges: u64 = 0;
                // Each chat sticks to its own agent, as a conversation would.
                let home = &refs[chat * refs.len() / chats.max(1) % refs.len()];
                while Instant::now() < end {
                    let t = Instant::now();
                    home.ask(
                        |reply| BenchMsg::Chat { hops: 1, reply },
                        Priority::Normal,
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    super::record(&mut hist, t.elapsed());
                    exchanges += 1;
                }
                anyhow::Ok((exchanges, hist))
            })
        })
        .collect();
    let mut hist = super::histogram();
    let mut exchanges = 0;
    for t in tasks {
        let (n, h) = t.await??;
        exchanges += n;
        hist.add(&h)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    node.shutdown(Duration::from_secs(10)).await;
    // Two agent messages per exchange: the chat's request and its forward.
    Ok((2.0 * exchanges as f64 / elapsed, hist))
}

/// Spawns `n` idle supervised agents named `{prefix}-{i}` (the memory
/// probe's workload), all counting on one shared tally, as the bare probe's
/// actors do.
pub(crate) async fn spawn_idle_agents(node: &Node, prefix: &str, n: usize) -> anyhow::Result<Vec<AgentRef<BenchMsg>>> {
    let tally = Tally::idle();
    let mut refs = Vec::with_capacity(n);
    for i in 0..n {
        refs.push(
            node.spawn_agent(&format!("{prefix}-{i}"), BenchAgent::counting(Arc::clone(&tally)))
                .await?,
        );
    }
    Ok(refs)
}

/// Milliseconds to spawn `n` separate agents with `Node::spawn_agent`, on
/// a fresh node.
pub(crate) async fn spawn_agents_ms(n: usize) -> anyhow::Result<f64> {
    let node = Node::start(NexusConfig::default()).await?;
    let started = Instant::now();
    let refs = spawn_idle_agents(&node, "idle", n).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(refs);
    node.shutdown(Duration::from_secs(30)).await;
    Ok(ms)
}

/// Milliseconds for one `Node::spawn_pool` of `n` workers, on a fresh node.
pub(crate) async fn pool_spawn_ms(n: usize) -> anyhow::Result<f64> {
    let node = Node::start(NexusConfig::default()).await?;
    let started = Instant::now();
    let pool = node.spawn_pool("spawn-bench", n, BenchAgent::idle()).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(pool.size() == n, "pool has {} workers, asked for {n}", pool.size());
    drop(pool);
    node.shutdown(Duration::from_secs(30)).await;
    Ok(ms)
}
