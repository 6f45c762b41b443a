//! A first swarm: a planner splits tasks into subtasks, a pool of workers
//! processes them, a reviewer assembles the results per task and reports to
//! a collector. Every hop goes through `AgentRef`/`PoolRef` lanes, so a slow
//! stage pushes back on the one before it instead of growing a backlog.
//!
//! It finishes by itself and prints a summary; with `--json` the last line of
//! stdout is one JSON object (`agents`, `messages_handled`, `elapsed_ms`,
//! `msgs_per_sec`, `p50_us`, `p99_us`: end-to-end subtask latency from the
//! planner to the reviewer).
//!
//! ```text
//! cargo run --release --example swarm
//! cargo run --release --example swarm -- --tasks 20000 --workers 8 --json
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use nexus_swarm::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Run a planner / workers / reviewer swarm and report throughput and latency")]
struct Args {
    /// Tasks the planner splits.
    #[arg(long, default_value_t = 20_000)]
    tasks: u64,
    /// Subtasks per task.
    #[arg(long, default_value_t = 8)]
    fanout: u32,
    /// Workers in the pool.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Hashing rounds per subtask (simulated work).
    #[arg(long, default_value_t = 64)]
    work: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    deadline_secs: u64,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// A subtask as it travels planner -> worker -> reviewer.
struct Subtask {
    task: u64,
    part: u32,
    created: Instant,
}

// ---- planner ----

enum PlannerMsg {
    Plan(u64),
}

struct Planner {
    workers: PoolRef<WorkerMsg>,
    fanout: u32,
}

impl Agent for Planner {
    type Msg = PlannerMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<PlannerMsg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<PlannerMsg>, msg: PlannerMsg, _: &mut ()) -> Result<(), HandlerError> {
        let PlannerMsg::Plan(task) = msg;
        for part in 0..self.fanout {
            let sub = Subtask {
                task,
                part,
                created: Instant::now(),
            };
            // Waits while the workers are saturated: backpressure, not loss.
            self.workers
                .send(WorkerMsg(sub), Priority::Normal)
                .await
                .map_err(|e| format!("worker pool refused a subtask: {e}"))?;
        }
        Ok(())
    }
}

// ---- workers ----

struct WorkerMsg(Subtask);

struct Worker {
    reviewer: AgentRef<ReviewerMsg>,
    work: u32,
}

impl Agent for Worker {
    type Msg = WorkerMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<WorkerMsg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<WorkerMsg>,
        WorkerMsg(sub): WorkerMsg,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        // Simulated work: a few rounds of FNV-1a over the subtask's id.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for round in 0..self.work {
            for b in (sub.task ^ u64::from(sub.part) ^ u64::from(round)).to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        self.reviewer
            .send(ReviewerMsg::Result { sub, digest: h }, Priority::Normal)
            .await
            .map_err(|e| format!("reviewer refused a result: {e}"))?;
        Ok(())
    }
}

// ---- reviewer ----

enum ReviewerMsg {
    Result { sub: Subtask, digest: u64 },
    Report(Reply<Histogram<u64>>),
}

struct Reviewer {
    fanout: u32,
    collector: AgentRef<CollectorMsg>,
}

struct ReviewerState {
    open: HashMap<u64, (u32, u64)>,
    latency: Histogram<u64>,
}

impl Agent for Reviewer {
    type Msg = ReviewerMsg;
    type State = ReviewerState;

    async fn init(&self, _ctx: &AgentContext<ReviewerMsg>) -> Result<ReviewerState, HandlerError> {
        Ok(ReviewerState {
            open: HashMap::new(),
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<ReviewerMsg>,
        msg: ReviewerMsg,
        st: &mut ReviewerState,
    ) -> Result<(), HandlerError> {
        match msg {
            ReviewerMsg::Result { sub, digest } => {
                let micros = sub.created.elapsed().as_micros().max(1);
                st.latency.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                let entry = st.open.entry(sub.task).or_insert((0, 0));
                entry.0 += 1;
                entry.1 ^= digest;
                if entry.0 == self.fanout {
                    let (_, digest) = st.open.remove(&sub.task).unwrap_or_default();
                    self.collector
                        .send(CollectorMsg::Done { task: sub.task, digest }, Priority::Normal)
                        .await
                        .map_err(|e| format!("collector refused: {e}"))?;
                }
            }
            ReviewerMsg::Report(reply) => reply.send(st.latency.clone()),
        }
        Ok(())
    }
}

// ---- collector ----

enum CollectorMsg {
    Done { task: u64, digest: u64 },
    WaitFor(u64, Reply<u64>),
}

struct Collector;

#[derive(Default)]
struct CollectorState {
    done: u64,
    checksum: u64,
    waiter: Option<(u64, Reply<u64>)>,
}

impl Agent for Collector {
    type Msg = CollectorMsg;
    type State = CollectorState;

    async fn init(&self, _ctx: &AgentContext<CollectorMsg>) -> Result<CollectorState, HandlerError> {
        Ok(CollectorState::default())
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<CollectorMsg>,
        msg: CollectorMsg,
        st: &mut CollectorState,
    ) -> Result<(), HandlerError> {
        match msg {
            CollectorMsg::Done { task, digest } => {
                st.done += 1;
                st.checksum ^= digest.rotate_left((task % 64) as u32);
            }
            CollectorMsg::WaitFor(n, reply) => st.waiter = Some((n, reply)),
        }
        if st.waiter.as_ref().is_some_and(|(n, _)| st.done >= *n) {
            if let Some((_, reply)) = st.waiter.take() {
                reply.send(st.checksum);
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nexus_swarm::runtime::telemetry::init_tracing();
    let args = Args::parse();
    anyhow::ensure!(
        args.tasks > 0 && args.fanout > 0 && args.workers > 0,
        "tasks, fanout and workers must be positive"
    );

    let node = Node::start(NexusConfig::default()).await?;
    let collector = node.spawn_agent("collector", Collector).await?;
    let reviewer = node
        .spawn_agent(
            "reviewer",
            Reviewer {
                fanout: args.fanout,
                collector: collector.clone(),
            },
        )
        .await?;
    let workers = node
        .spawn_pool(
            "workers",
            args.workers,
            Worker {
                reviewer: reviewer.clone(),
                work: args.work,
            },
        )
        .await?;
    let planner = node
        .spawn_agent(
            "planner",
            Planner {
                workers: workers.clone(),
                fanout: args.fanout,
            },
        )
        .await?;
    let agents = 3 + args.workers;

    let deadline = Duration::from_secs(args.deadline_secs);
    let started = Instant::now();
    let done = tokio::time::timeout(deadline, async {
        for task in 0..args.tasks {
            planner.send(PlannerMsg::Plan(task), Priority::Normal).await?;
        }
        let checksum = collector
            .ask(|r| CollectorMsg::WaitFor(args.tasks, r), Priority::High, deadline)
            .await?;
        anyhow::Ok(checksum)
    })
    .await;
    let elapsed = started.elapsed();
    let checksum = match done {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("swarm did not finish within {deadline:?}"),
    };

    let latency = reviewer
        .ask(ReviewerMsg::Report, Priority::High, Duration::from_secs(5))
        .await?;
    let handled = planner.handled() + workers.handled() + reviewer.handled() + collector.handled();
    node.shutdown(Duration::from_secs(10)).await;

    let msgs_per_sec = handled as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (latency.value_at_quantile(0.50), latency.value_at_quantile(0.99));
    println!(
        "swarm: {agents} agents ({} workers), {} tasks x {} subtasks",
        args.workers, args.tasks, args.fanout
    );
    println!("  messages handled  {handled}");
    println!("  elapsed           {:.1} ms", elapsed.as_secs_f64() * 1e3);
    println!("  throughput        {msgs_per_sec:.0} msgs/s");
    println!("  subtask latency   p50 {p50} us, p99 {p99} us (planner -> worker -> reviewer)");
    println!("  result checksum   {checksum:016x}");
    if args.json {
        let json = serde_json::json!({
            "agents": agents,
            "tasks": args.tasks,
            "messages_handled": handled,
            "elapsed_ms": elapsed.as_millis() as u64,
            "msgs_per_sec": msgs_per_sec.round() as u64,
            "p50_us": p50,
            "p99_us": p99,
        });
        println!("{json}");
    }
    Ok(())
}
