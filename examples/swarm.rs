//! A research swarm: a planner splits each task into research questions,
//! a pool of workers asks the LLM gateway about each, a pool of reviewers
//! (one per task, by consistent hashing on the task id) has the findings
//! reviewed by a stronger model, and a collector counts finished tasks.
//!
//! Everything that costs is governed by the runtime: the gateway enforces
//! the provider's requests- and tokens-per-minute limits over every sliding
//! minute (so the simulated provider never answers 429), reserves each
//! request's worst-case cost against a hard budget in the cost ledger
//! before sending it, serves repeated questions from its cache for free,
//! and writes the actual usage into the ledger. When the budget is spent,
//! further requests are refused before they are sent and their tasks are
//! reported as halted, so spend never exceeds the budget.
//!
//! It finishes by itself (within 30 s with the defaults) and prints a
//! summary; with `--json` stdout is exactly one line, a JSON object, and
//! the summary goes to stderr. Flags out of range (e.g. a deadline past
//! one day, more than 1024 agents) are refused with a message and exit
//! status 2; if tasks fail, the first failure's reason is printed.
//!
//! ```text
//! cargo run --release --example swarm
//! cargo run --release --example swarm -- --tasks 40 --rpm 600 --tpm 20000 --budget 30000 --json
//! cargo run --release --example swarm -- --data-dir ./nexus-data && cargo run --release --bin nexus -- report --group-by model
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use hdrhistogram::Histogram;
use nexus_swarm::actors::cost_ledger::{Budget, BudgetAction, BudgetPeriod};
use nexus_swarm::actors::llm::{
    Capability, DeploymentSpec, GatewayError, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::ProviderEntry;
use nexus_swarm::actors::router::RouterHandle;
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::routing::RoutingKey;
use nexus_swarm::runtime::usage::SpendRefused;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
#[command(about = "Run a research swarm against a simulated LLM under rate limits and a budget")]
struct Args {
    /// Research tasks (1 to 1,000,000).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tasks: u64,
    /// Questions per task (1 to 100).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    fanout: u32,
    /// Worker agents, each asking the LLM one question at a time (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    agents: usize,
    /// Provider limit: requests per minute (seed default 3500; 1 to 100,000,000).
    #[arg(long, default_value_t = 3500, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    rpm: u64,
    /// Provider limit: tokens per minute (seed default 90000; 1 to 100,000,000).
    #[arg(long, default_value_t = 90_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    tpm: u64,
    /// Hard budget in micro-dollars (1,000,000 = $1; at most $1,000,000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    budget: u64,
    /// Seed of the simulated provider and of the task mix.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Median latency of the simulated provider, in milliseconds (at most 60,000).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    latency_ms: u64,
    /// Every task's deadline, in seconds from the start (1 to 86,400): LLM
    /// requests still waiting for rate-limit capacity then give up and
    /// their tasks are reported as expired, so the swarm always finishes by
    /// itself.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    deadline_secs: u64,
    /// Keep the ledger (and the LLM disk cache) in this directory, for
    /// `nexus report --data-dir DIR` afterwards. The daily budget then
    /// carries its spend over between runs on the same day. Default: a
    /// fresh temporary directory, removed at the end.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Print one JSON object as the only line of stdout (the summary goes
    /// to stderr).
    #[arg(long)]
    json: bool,
}

const WORKER_MODEL_PRICES: (u64, u64) = (500_000, 1_500_000); // $0.50 / $1.50 per million tokens
const REVIEW_MODEL_PRICES: (u64, u64) = (5_000_000, 15_000_000); // $5 / $15 per million tokens
const TENANT: &str = "research";

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    /// A request was refused by the hard budget.
    Halted,
    /// The LLM failed after retries and fallbacks (or refused the request
    /// outright, e.g. one that can never fit the tokens-per-minute limit):
    /// why.
    Failed(String),
    /// The task's deadline passed before its requests could be sent.
    Expired,
}

fn outcome_of(e: &GatewayError) -> Outcome {
    match e {
        GatewayError::SpendRefused(SpendRefused::BudgetExceeded { .. }) => Outcome::Halted,
        // The deadline passed in the rate-limit queue, or behind the
        // agent's own calls in flight.
        GatewayError::DeadlineExceeded(_) | GatewayError::AgentBusy { .. } => Outcome::Expired,
        // The deadline passed while other requests' budget holds were in flight.
        GatewayError::SpendRefused(SpendRefused::HoldsInFlight { .. }) => Outcome::Expired,
        other => Outcome::Failed(other.to_string()),
    }
}

// ---- planner ----

struct Task {
    id: u64,
    topic: u32,
    started: Instant,
    deadline: Instant,
}

impl Task {
    /// Time left before the task's deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

struct Planner {
    workers: RouterHandle<WorkerMsg>,
    fanout: u32,
}

impl Agent for Planner {
    type Msg = Task;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Task>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<Task>, task: Task, _: &mut ()) -> Result<(), HandlerError> {
        let task = Arc::new(task);
        for aspect in 0..self.fanout {
            let question = format!(
                "Summarize what is known about topic {} from angle {} in three sentences.",
                task.topic, aspect
            );
            let msg = WorkerMsg {
                task: Arc::clone(&task),
                question,
            };
            // Waits while the workers are saturated: backpressure, not loss.
            self.workers
                .send(msg, Priority::Normal, None)
                .await
                .map_err(|e| format!("workers refused a question: {e}"))?;
        }
        Ok(())
    }
}

// ---- workers ----

struct WorkerMsg {
    task: Arc<Task>,
    question: String,
}

struct Worker {
    reviewers: RouterHandle<ReviewerMsg>,
}

impl Agent for Worker {
    type Msg = WorkerMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<WorkerMsg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<WorkerMsg>, msg: WorkerMsg, _: &mut ()) -> Result<(), HandlerError> {
        let finding = if msg.task.left().is_zero() {
            Err(Outcome::Expired)
        } else {
            // Charged to the pool's tenant / workflow / name (see `main`).
            let request = LlmRequest::user(msg.question).max_tokens(64).timeout(msg.task.left());
            match ctx.llm()?.complete(request).await {
                Ok(resp) => Ok(resp.content),
                Err(e) => Err(outcome_of(&e)),
            }
        };
        let key = RoutingKey::from_id(msg.task.id);
        self.reviewers
            .send(
                ReviewerMsg::Finding {
                    task: msg.task,
                    finding,
                },
                Priority::Normal,
                Some(&key),
            )
            .await
            .map_err(|e| format!("reviewers refused a finding: {e}"))?;
        Ok(())
    }
}

// ---- reviewers ----

enum ReviewerMsg {
    Finding {
        task: Arc<Task>,
        finding: Result<String, Outcome>,
    },
}

struct Reviewer {
    collector: AgentRef<CollectorMsg>,
    fanout: u32,
}

/// Findings gathered per task: (answers so far, first problem).
type Open = HashMap<u64, (u32, Vec<String>, Option<Outcome>)>;

impl Agent for Reviewer {
    type Msg = ReviewerMsg;
    type State = Open;

    async fn init(&self, _ctx: &AgentContext<ReviewerMsg>) -> Result<Open, HandlerError> {
        Ok(HashMap::new())
    }

    async fn handle(
        &self,
        ctx: &AgentContext<ReviewerMsg>,
        msg: ReviewerMsg,
        open: &mut Open,
    ) -> Result<(), HandlerError> {
        let ReviewerMsg::Finding { task, finding } = msg;
        let entry = open.entry(task.id).or_insert_with(|| (0, Vec::new(), None));
        entry.0 += 1;
        match finding {
            Ok(text) => entry.1.push(text),
            Err(outcome) => {
                entry.2.get_or_insert(outcome);
            }
        }
        if entry.0 < self.fanout {
            return Ok(());
        }
        let (_, findings, problem) = open.remove(&task.id).unwrap_or_default();
        let outcome = match problem {
            Some(outcome) => outcome,
            None if task.left().is_zero() => Outcome::Expired,
            None => {
                let prompt = format!(
                    "Review these findings for task {} and list open questions:\n{}",
                    task.id,
                    findings.join("\n")
                );
                let request = LlmRequest::user(prompt)
                    .needs([Capability::Reasoning])
                    .max_tokens(96)
                    .timeout(task.left());
                match ctx.llm()?.complete(request).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => outcome_of(&e),
                }
            }
        };
        self.collector
            .send(
                CollectorMsg::Finished {
                    outcome,
                    latency: task.started.elapsed(),
                },
                Priority::Normal,
            )
            .await
            .map_err(|e| format!("collector refused: {e}"))?;
        Ok(())
    }
}

// ---- collector ----

enum CollectorMsg {
    Finished { outcome: Outcome, latency: Duration },
    WaitFor(u64, Reply<CollectorReport>),
}

#[derive(Debug, Clone)]
struct CollectorReport {
    done: u64,
    halted: u64,
    failed: u64,
    expired: u64,
    /// Why the first failed task failed.
    first_failure: Option<String>,
    latency: Histogram<u64>,
}

impl CollectorReport {
    fn finished(&self) -> u64 {
        self.done + self.halted + self.failed + self.expired
    }
}

struct Collector;

struct CollectorState {
    report: CollectorReport,
    waiter: Option<(u64, Reply<CollectorReport>)>,
}

impl Agent for Collector {
    type Msg = CollectorMsg;
    type State = CollectorState;

    async fn init(&self, _ctx: &AgentContext<CollectorMsg>) -> Result<CollectorState, HandlerError> {
        Ok(CollectorState {
            report: CollectorReport {
                done: 0,
                halted: 0,
                failed: 0,
                expired: 0,
                first_failure: None,
                latency: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            },
            waiter: None,
        })
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<CollectorMsg>,
        msg: CollectorMsg,
        st: &mut CollectorState,
    ) -> Result<(), HandlerError> {
        match msg {
            CollectorMsg::Finished { outcome, latency } => {
                let r = &mut st.report;
                match outcome {
                    Outcome::Done => r.done += 1,
                    Outcome::Halted => r.halted += 1,
                    Outcome::Failed(why) => {
                        r.failed += 1;
                        r.first_failure.get_or_insert(why);
                    }
                    Outcome::Expired => r.expired += 1,
                }
                r.latency
                    .saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            CollectorMsg::WaitFor(n, reply) => st.waiter = Some((n, reply)),
        }
        let r = &st.report;
        if st.waiter.as_ref().is_some_and(|(n, _)| r.finished() >= *n) {
            if let Some((_, reply)) = st.waiter.take() {
                reply.send(r.clone());
            }
        }
        Ok(())
    }
}

fn catalogue() -> anyhow::Result<ModelCatalogue> {
    Ok(ModelCatalogue::new(vec![
        ModelSpec::new("swift-small", 16_000, WORKER_MODEL_PRICES.0, WORKER_MODEL_PRICES.1)
            .deployment(DeploymentSpec::new("swift-small@sim", "sim")),
        ModelSpec::new("sage-large", 128_000, REVIEW_MODEL_PRICES.0, REVIEW_MODEL_PRICES.1)
            .capabilities([Capability::Reasoning])
            .deployment(DeploymentSpec::new("sage-large@sim", "sim")),
    ])?)
}

/// The routers in front of the pools, started by the swarm when each pool
/// is spawned; no router admission limit (the gateway paces the LLM calls).
const ROUTERS: &str = r#"
[router.admission]
enabled = false

[[routers]]
name = "reviewers"
pool = "reviewers"
strategy = "consistent_hash"

[[routers]]
name = "workers"
pool = "workers"
strategy = "least_connections"
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nexus_swarm::runtime::telemetry::init_tracing();
    // Out-of-range flags are refused here, with a message and status 2.
    let args = Args::parse();

    // A fresh data directory per run unless one is given, so the daily
    // budget starts unspent.
    let temp = tempfile::tempdir()?;
    let mut config = NexusConfig::from_toml_str(ROUTERS)?;
    config.node.data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let sim = SimulatedProvider::new(
        "sim",
        SimulatedConfig {
            latency_median: Duration::from_millis(args.latency_ms),
            requests_per_minute: Some(args.rpm),
            tokens_per_minute: Some(args.tpm),
            ..SimulatedConfig::instant(args.seed)
        },
    );
    let provider = ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::rpm_tpm(args.rpm, args.tpm));
    // Quota keeper, scheduler, ledger (priced from the catalogue) and gateway, supervised.
    let swarm = Swarm::builder(config)
        .llm(catalogue()?, vec![provider])
        .gateway_seed(args.seed)
        .start()
        .await?;
    let hard = Budget::new("swarm-daily", args.budget, BudgetPeriod::Daily, BudgetAction::Halt)
        .scope(Scope::all().tenant(TENANT));
    swarm.ledger().put_budget(hard).await?;

    let collector = swarm.spawn_agent("collector", Collector).await?;
    let reviewer = Reviewer {
        collector: collector.clone(),
        fanout: args.fanout,
    };
    let review = Identity::new("reviewers").tenant(TENANT).workflow("review");
    let reviewer_pool = swarm.spawn_pool_as(review, 4, reviewer).await?;
    let reviewers = swarm.router("reviewers")?;

    let worker = Worker {
        reviewers: reviewers.clone(),
    };
    let research = Identity::new("workers").tenant(TENANT).workflow("research");
    let worker_pool = swarm.spawn_pool_as(research, args.agents, worker).await?;
    let workers = swarm.router("workers")?;

    let planner = Planner {
        workers: workers.clone(),
        fanout: args.fanout,
    };
    let planner = swarm.spawn_agent("planner", planner).await?;
    let reviewer_count = reviewer_pool.size();
    let agents = 2 + args.agents + reviewer_count;

    // Some topics repeat, so some questions are answered from the cache.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let topics = (args.tasks * 3 / 4).max(1) as u32;
    let deadline = Duration::from_secs(args.deadline_secs);
    let started = Instant::now();
    let ends = started + deadline;
    // Requests give up at the deadline; calls already sent finish within the
    // provider timeout, so the whole run ends within deadline + that.
    let limit = deadline + Duration::from_secs(30);
    let finished = tokio::time::timeout(limit, async {
        for id in 0..args.tasks {
            let task = Task {
                id,
                topic: rng.random_range(0..topics),
                started: Instant::now(),
                deadline: ends,
            };
            planner.send(task, Priority::Normal).await?;
        }
        let report = collector
            .ask(|r| CollectorMsg::WaitFor(args.tasks, r), Priority::High, limit)
            .await?;
        anyhow::Ok(report)
    })
    .await;
    let elapsed = started.elapsed();
    let report = match finished {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("swarm did not finish within {limit:?}"),
    };

    let stats = swarm.gateway().map(|g| g.stats()).unwrap_or_default();
    let sim_counts = sim.counters();
    let budget = swarm.ledger().budget_status("swarm-daily")?;
    let handled = planner.handled() + worker_pool.handled() + reviewer_pool.handled() + collector.handled();
    swarm.shutdown(Duration::from_secs(10)).await;

    let msgs_per_sec = handled as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (
        report.latency.value_at_quantile(0.50),
        report.latency.value_at_quantile(0.99),
    );
    let cache_hits = stats.cache.memory_hits + stats.cache.disk_hits;
    // With --json, stdout carries the JSON line alone.
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    writeln!(
        out,
        "research swarm: {agents} agents ({} workers, {} reviewers), {} tasks x {} questions",
        args.agents, reviewer_count, args.tasks, args.fanout
    )?;
    writeln!(
        out,
        "  tasks             {} done, {} halted by the budget, {} expired at the deadline, {} failed",
        report.done, report.halted, report.expired, report.failed
    )?;
    writeln!(
        out,
        "  messages handled  {handled} in {:.2} s ({msgs_per_sec:.0} msgs/s)",
        elapsed.as_secs_f64()
    )?;
    writeln!(
        out,
        "  task latency      p50 {:.1} ms, p99 {:.1} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3
    )?;
    writeln!(
        out,
        "  LLM               {} requests, {} provider calls, {} cache hits, {} x 429 from the provider (limits {} rpm / {} tpm)",
        stats.requests, sim_counts.requests, cache_hits, sim_counts.rate_limited, args.rpm, args.tpm
    )?;
    writeln!(
        out,
        "  spend             {} of {} micro-dollars committed in the ledger ({} refused before sending)",
        budget.spent_micro_usd, args.budget, stats.spend_refused
    )?;
    if let Some(why) = &report.first_failure {
        writeln!(out, "  first failure     {why}")?;
    }
    drop(out);
    if args.json {
        let json = serde_json::json!({
            "agents": agents,
            "tasks": args.tasks,
            "tasks_done": report.done,
            "tasks_halted": report.halted,
            "tasks_failed": report.failed,
            "tasks_expired": report.expired,
            "first_failure": report.first_failure,
            "messages_handled": handled,
            "elapsed_ms": elapsed.as_millis() as u64,
            "msgs_per_sec": msgs_per_sec.round() as u64,
            "p50_us": p50,
            "p99_us": p99,
            "llm_requests": stats.requests,
            "provider_calls": sim_counts.requests,
            "provider_429s": sim_counts.rate_limited,
            "spent_micro_usd": budget.spent_micro_usd,
            "budget_micro_usd": args.budget,
            "cache_hits": cache_hits,
        });
        println!("{json}");
    }
    Ok(())
}
