//! Routing micro-benchmarks: nanoseconds per pick for each strategy
//! (including a 1,000-member ring with 160 virtual nodes each), the token
//! bucket's admit, and a routed send against a direct agent send and a bare
//! ractor cast, end to end (sent and handled).
//!
//! ```text
//! cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use nexus_swarm::actors::router::Router;
use nexus_swarm::runtime::admission::{Admission, Gcra};
use nexus_swarm::runtime::config::{AdmissionConfig, MailboxConfig, RouterConfig, RoutingStrategyKind};
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::routing::{
    HashRing, LeastConnections, RoundRobin, RoutingKey, RoutingStrategy, SmoothWeighted,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys cycled through by keyed picks: enough that lookups are not all
/// served from one cache line.
const KEYS: usize = 4096;

fn keys() -> Vec<RoutingKey> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..KEYS).map(|_| RoutingKey::from_hash(rng.random())).collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn picks(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    g.throughput(Throughput::Elements(1));

    let rr = RoundRobin::new(16);
    g.bench_function("round_robin/16", |b| b.iter(|| black_box(rr.pick(None))));

    let mut rng = StdRng::seed_from_u64(1);
    for n in [16usize, 128] {
        let loads: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(rng.random_range(1..100))).collect();
        let lc = LeastConnections::new(loads.iter().collect());
        g.bench_function(BenchmarkId::new("least_connections", n), |b| {
            b.iter(|| black_box(lc.pick(None)))
        });
    }

    let weights: Vec<u32> = (1..=16).collect();
    let w = SmoothWeighted::new(&weights).unwrap();
    g.bench_function("weighted/16", |b| b.iter(|| black_box(w.pick(None))));

    let keys = keys();
    for (members, vnodes) in [(10usize, 160u32), (1000, 160)] {
        let ring = HashRing::new(&names(members), vnodes).unwrap();
        let mut i = 0usize;
        g.bench_function(
            BenchmarkId::new("consistent_hash", format!("{members}x{vnodes}")),
            |b| {
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(ring.pick(Some(&keys[i])))
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("control");
    g.sample_size(10);
    g.bench_function("ring_build/1000x160", |b| {
        let n = names(1000);
        b.iter(|| black_box(HashRing::new(&n, 160).unwrap()))
    });
    g.finish();
}

fn keys_and_admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));
    g.bench_function("routing_key/24_bytes", |b| {
        b.iter(|| black_box(RoutingKey::new(black_box("conversation-0000000042"))))
    });
    // A rate high enough never to refuse: this measures the decision itself.
    let gcra = Gcra::new(u32::MAX, u32::MAX).unwrap();
    let mut now = 0u64;
    g.bench_function("gcra_acquire", |b| {
        b.iter(|| {
            now += 1;
            black_box(gcra.acquire(now, 0))
        })
    });
    let cfg = AdmissionConfig {
        rate_per_sec: u32::MAX,
        burst: u32::MAX,
        ..AdmissionConfig::default()
    };
    let admission = Admission::new(&cfg, &MailboxConfig::default()).unwrap();
    g.bench_function("try_admit", |b| {
        b.iter(|| black_box(admission.try_admit(Priority::Normal)))
    });
    g.finish();
}

// ---- end to end: sent and handled ----

struct Sink;

impl Agent for Sink {
    type Msg = SinkMsg;
    type State = u64;

    async fn init(&self, _: &AgentContext<SinkMsg>) -> Result<u64, HandlerError> {
        Ok(0)
    }

    async fn handle(&self, _: &AgentContext<SinkMsg>, msg: SinkMsg, n: &mut u64) -> Result<(), HandlerError> {
        match msg {
            SinkMsg::Hit(x) => *n += x,
            SinkMsg::Sync(reply) => reply.send(*n),
        }
        Ok(())
    }
}

enum SinkMsg {
    Hit(u64),
    Sync(Reply<u64>),
}

struct RawSink;

enum RawMsg {
    Hit(u64),
    Sync(ractor::RpcReplyPort<u64>),
}

impl ractor::Message for RawMsg {}

impl ractor::Actor for RawSink {
    type Msg = RawMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ractor::ActorRef<RawMsg>, _: ()) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<RawMsg>,
        msg: RawMsg,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            RawMsg::Hit(x) => *n += x,
            RawMsg::Sync(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

const SYNC: Duration = Duration::from_secs(60);

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (node, agent, router, raw) = rt.block_on(async {
        let node = Node::start(NexusConfig::default()).await.unwrap();
        let agent = node.spawn_agent("sink", Sink).await.unwrap();
        let routed = node.spawn_agent("routed-sink", Sink).await.unwrap();
        // Admission on, at a rate that never refuses: its cost is measured.
        let mut cfg = RouterConfig {
            strategy: RoutingStrategyKind::RoundRobin,
            ..RouterConfig::default()
        };
        cfg.admission.rate_per_sec = u32::MAX;
        cfg.admission.burst = u32::MAX;
        let router = Router::start(&node, "bench-router", cfg).await.unwrap();
        router.add_member(routed, 1).await.unwrap();
        let (raw, _) = ractor::Actor::spawn(None, RawSink, ()).await.unwrap();
        (node, agent, router, raw)
    });

    let mut g = c.benchmark_group("send_and_handle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ractor_cast", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let raw = raw.clone();
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    raw.cast(RawMsg::Hit(i)).unwrap();
                }
                ractor::call!(raw, RawMsg::Sync).unwrap();
                start.elapsed()
            }
        })
    });
    g.bench_function("agent_send", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let agent = agent.clone();
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    agent.send(SinkMsg::Hit(i), Priority::Normal).await.unwrap();
                }
                agent.ask(SinkMsg::Sync, Priority::Normal, SYNC).await.unwrap();
                start.elapsed()
            }
        })
    });
    g.bench_function("router_send", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let router = router.clone();
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    router.send(SinkMsg::Hit(i), Priority::Normal, None).await.unwrap();
                }
                router.ask(SinkMsg::Sync, Priority::Normal, None, SYNC).await.unwrap();
                start.elapsed()
            }
        })
    });
    g.finish();
    rt.block_on(async {
        raw.stop(None);
        node.shutdown(Duration::from_secs(5)).await;
    });
}

/// The generated group function is public; it documents nothing more.
#[allow(missing_docs)]
mod group {
    use super::{end_to_end, keys_and_admission, picks};
    criterion::criterion_group!(benches, picks, keys_and_admission, end_to_end);
}

criterion_main!(group::benches);
