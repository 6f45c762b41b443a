//! A swarm that runs into a hard budget and halts.
//!
//! A pool of analyst agents asks the LLM gateway one question each message,
//! mostly of a cheap model and sometimes of an expensive one, many more
//! questions than the budget pays for. The gateway reserves each request's
//! worst-case cost (its prompt plus every output token it may produce, at
//! the model's catalogue price) against a hard daily budget in the cost
//! ledger before sending it, settles the actual cost after, and records the
//! usage in the ledger (a durable store in a temporary directory, or in
//! `--data-dir`). A request that does not fit only because of the worst
//! cases other requests hold in flight waits for them to settle; once the
//! spend already settled leaves no room for a request's worst case, the
//! budget halts: that request and every one after it is refused with
//! `BudgetExceeded` before it reaches the provider.
//!
//! The spend it reports is read back from the ledger (the committed records
//! of this run), so it is what was really charged: never above the budget,
//! because every request in flight holds its worst case, and less than one
//! request's worst case below it, because the budget halts only when the
//! settled spend leaves no room for one.
//!
//! It finishes by itself within a few seconds and prints a summary; with
//! `--json` stdout is exactly one line, a JSON object with
//! `spent_micro_usd`, `budget_micro_usd`, `worst_request_micro_usd`,
//! `halted`, `requests_ok` and `requests_refused`, and the summary goes to
//! stderr. Flags out of range (e.g. more than 100,000 requests, which are
//! prepared up front) are refused with a message and exit status 2.
//!
//! ```text
//! cargo run --release --example budget
//! cargo run --release --example budget -- --budget 20000 --agents 16 --requests 500 --json
//! cargo run --release --example budget -- --data-dir ./nexus-data && cargo run --release --bin nexus -- report --group-by model
//! ```

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use clap::builder::RangedU64ValueParser;
use nexus_swarm::actors::cost_ledger::{Budget, BudgetAction, BudgetPeriod, TimeRange};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, ProviderEntry};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::usage::SpendRefused;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
#[command(about = "Run a swarm of analysts against a simulated LLM until a hard budget halts it")]
struct Args {
    /// Hard budget in micro-dollars (1,000,000 = $1; at most $1,000,000).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    budget: u64,
    /// Analyst agents, each asking the LLM one question at a time (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    agents: usize,
    /// Questions the analysts would ask if money were no object (1 to
    /// 100,000; they are prepared before the run).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    requests: u64,
    /// Seed of the simulated provider and of the question mix.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Median latency of the simulated provider, in milliseconds (at most
    /// 10,000, the request timeout).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    latency_ms: u64,
    /// Keep the ledger in this directory, for `nexus report --data-dir DIR`
    /// afterwards. The daily budget then carries its spend over between
    /// runs on the same day. Default: a fresh temporary directory, removed
    /// at the end.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Print one JSON object as the only line of stdout (the summary goes
    /// to stderr).
    #[arg(long)]
    json: bool,
}

const CHEAP: &str = "swift-small";
const CHEAP_PRICES: (u64, u64) = (500_000, 1_500_000); // $0.50 / $1.50 per million tokens
const CHEAP_MAX_TOKENS: u32 = 128;
const DEAR: &str = "sage-large";
const DEAR_PRICES: (u64, u64) = (5_000_000, 15_000_000); // $5 / $15 per million tokens
const DEAR_MAX_TOKENS: u32 = 256;
/// One question in this many goes to the expensive model (on average).
const DEAR_ONE_IN: u32 = 5;
const TENANT: &str = "analysis";
const BUDGET_ID: &str = "analysis-daily";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One question for an analyst.
struct Ask {
    request: LlmRequest,
}

/// How a question ended.
enum Outcome {
    /// Answered; what the gateway charged for it.
    Answered(u64),
    /// Refused by the hard budget before it was sent.
    Refused,
    /// Failed for another reason.
    Failed(String),
}

// ---- analysts ----

struct Analyst {
    collector: AgentRef<CollectorMsg>,
}

impl Agent for Analyst {
    type Msg = Ask;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Ask>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<Ask>, ask: Ask, _: &mut ()) -> Result<(), HandlerError> {
        // Charged to the pool's tenant / workflow / name (see `main`).
        let outcome = match ctx.llm()?.complete(ask.request).await {
            Ok(resp) => Outcome::Answered(resp.cost_micro_usd),
            Err(GatewayError::SpendRefused(SpendRefused::BudgetExceeded { .. })) => Outcome::Refused,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.collector
            .send(CollectorMsg::Finished(outcome), Priority::Normal)
            .await
            .map_err(|e| format!("collector refused: {e}"))?;
        Ok(())
    }
}

// ---- collector ----

enum CollectorMsg {
    Finished(Outcome),
    WaitFor(u64, Reply<Tally>),
}

#[derive(Debug, Clone, Default)]
struct Tally {
    ok: u64,
    refused: u64,
    failed: u64,
    /// The sum of what the answered requests cost, as the gateway reported.
    answered_cost: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn finished(&self) -> u64 {
        self.ok + self.refused + self.failed
    }
}

struct Collector;

struct CollectorState {
    tally: Tally,
    waiter: Option<(u64, Reply<Tally>)>,
}

impl Agent for Collector {
    type Msg = CollectorMsg;
    type State = CollectorState;

    async fn init(&self, _ctx: &AgentContext<CollectorMsg>) -> Result<CollectorState, HandlerError> {
        Ok(CollectorState {
            tally: Tally::default(),
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
            CollectorMsg::Finished(outcome) => {
                let t = &mut st.tally;
                match outcome {
                    Outcome::Answered(cost) => {
                        t.ok += 1;
                        t.answered_cost += cost;
                    }
                    Outcome::Refused => t.refused += 1,
                    Outcome::Failed(e) => {
                        t.failed += 1;
                        t.first_failure.get_or_insert(e);
                    }
                }
            }
            CollectorMsg::WaitFor(n, reply) => st.waiter = Some((n, reply)),
        }
        if st.waiter.as_ref().is_some_and(|(n, _)| st.tally.finished() >= *n) {
            if let Some((_, reply)) = st.waiter.take() {
                reply.send(st.tally.clone());
            }
        }
        Ok(())
    }
}

fn catalogue() -> anyhow::Result<ModelCatalogue> {
    Ok(ModelCatalogue::new(vec![
        ModelSpec::new(CHEAP, 16_000, CHEAP_PRICES.0, CHEAP_PRICES.1)
            .deployment(DeploymentSpec::new("swift-small@sim", "sim")),
        ModelSpec::new(DEAR, 128_000, DEAR_PRICES.0, DEAR_PRICES.1)
            .deployment(DeploymentSpec::new("sage-large@sim", "sim")),
    ])?)
}

/// The questions, each with the worst case the gateway will reserve for it.
fn questions(args: &Args, gateway: &GatewayHandle) -> anyhow::Result<Vec<(LlmRequest, u64)>> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    (0..args.requests)
        .map(|id| {
            let (model, max_tokens) = if rng.random_ratio(1, DEAR_ONE_IN) {
                (DEAR, DEAR_MAX_TOKENS)
            } else {
                (CHEAP, CHEAP_MAX_TOKENS)
            };
            let topic = rng.random_range(0..1000u32);
            let request = LlmRequest::user(format!(
                "Question {id}: what do the quarterly figures of segment {topic} say about demand?"
            ))
            .model(model)
            .max_tokens(max_tokens)
            .timeout(REQUEST_TIMEOUT);
            let input = gateway.count_tokens(&request.messages);
            let worst = gateway.catalogue().get(model)?.worst_cost(input, u64::from(max_tokens));
            Ok((request, worst))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nexus_swarm::runtime::telemetry::init_tracing();
    // Out-of-range flags are refused here, with a message and status 2.
    let args = Args::parse();

    let temp = tempfile::tempdir()?;
    let mut config = NexusConfig::default();
    config.node.data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let sim = SimulatedProvider::new(
        "sim",
        SimulatedConfig {
            latency_median: Duration::from_millis(args.latency_ms),
            ..SimulatedConfig::instant(args.seed)
        },
    );
    let provider = ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::unlimited());
    // Quota keeper, scheduler, ledger (priced from the catalogue) and gateway, supervised.
    let swarm = Swarm::builder(config)
        .llm(catalogue()?, vec![provider])
        .gateway_seed(args.seed)
        .start()
        .await?;
    let ledger = swarm.ledger().clone();
    let hard =
        Budget::new(BUDGET_ID, args.budget, BudgetPeriod::Daily, BudgetAction::Halt).scope(Scope::all().tenant(TENANT));
    ledger.put_budget(hard).await?;
    let run_started_us = ledger.clock().now_us();
    let gateway = swarm.gateway().cloned().context("the swarm has a gateway")?;

    let questions = questions(&args, &gateway)?;
    let worst = questions.iter().map(|(_, w)| *w).max().unwrap_or(0);

    let collector = swarm.spawn_agent("collector", Collector).await?;
    let analyst = Analyst {
        collector: collector.clone(),
    };
    let analysis = Identity::new("analysts").tenant(TENANT).workflow("analysis");
    let analysts = swarm.spawn_pool_as(analysis, args.agents, analyst).await?;

    let started = Instant::now();
    let limit = REQUEST_TIMEOUT * 3;
    let finished = tokio::time::timeout(limit, async {
        for (request, _) in questions {
            // Waits while the analysts are saturated: backpressure, not loss.
            analysts
                .send(Ask { request }, Priority::Normal)
                .await
                .map_err(|e| anyhow::anyhow!("analysts refused a question: {e}"))?;
        }
        let tally = collector
            .ask(|r| CollectorMsg::WaitFor(args.requests, r), Priority::High, limit)
            .await?;
        anyhow::Ok(tally)
    })
    .await;
    let elapsed = started.elapsed();
    let tally = match finished {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the swarm did not finish within {limit:?}"),
    };

    // What was really charged: this run's committed records in the budget's
    // scope (the sink is awaited, so every answered request's records are in).
    let records: Vec<_> = ledger
        .records(TimeRange {
            from_us: run_started_us,
            to_us: u64::MAX,
        })
        .await?
        .into_iter()
        .filter(|r| r.meta.scope.tenant.as_deref() == Some(TENANT))
        .collect();
    let spent: u64 = records.iter().map(|r| r.cost_micro_usd).sum();
    let status = ledger.budget_status(BUDGET_ID)?;
    let stats = gateway.stats();
    let sim_counts = sim.counters();
    let halted = tally.refused > 0;
    swarm.shutdown(Duration::from_secs(10)).await;

    // With --json, stdout carries the JSON line alone.
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    writeln!(
        out,
        "budget swarm: {} analysts, {} questions ({}% to {DEAR}), hard budget {} micro-dollars",
        args.agents,
        args.requests,
        100 / DEAR_ONE_IN,
        args.budget
    )?;
    writeln!(
        out,
        "  requests          {} answered, {} refused by the budget, {} failed in {:.2} s",
        tally.ok,
        tally.refused,
        tally.failed,
        elapsed.as_secs_f64()
    )?;
    writeln!(
        out,
        "  budget            {}; {} provider calls, {} x 429 from the provider",
        if status.halted {
            "halted: refused requests never reached the provider"
        } else {
            "not halted (raise --requests or lower --budget)"
        },
        sim_counts.requests,
        sim_counts.rate_limited
    )?;
    writeln!(
        out,
        "  spend             {spent} of {} micro-dollars committed in {} ledger records (worst request {worst})",
        args.budget,
        records.len()
    )?;
    writeln!(
        out,
        "  answered          {} micro-dollars as the gateway reported the answers' costs",
        tally.answered_cost
    )?;
    if let Some(e) = &tally.first_failure {
        writeln!(out, "  first failure     {e}")?;
    }
    drop(out);
    if args.json {
        let json = serde_json::json!({
            "agents": args.agents,
            "requests": args.requests,
            "requests_ok": tally.ok,
            "requests_refused": tally.refused,
            "requests_failed": tally.failed,
            "first_failure": tally.first_failure,
            "halted": halted,
            "spent_micro_usd": spent,
            "budget_micro_usd": args.budget,
            "worst_request_micro_usd": worst,
            "answered_cost_micro_usd": tally.answered_cost,
            "ledger_records": records.len(),
            "provider_calls": sim_counts.requests,
            "provider_429s": sim_counts.rate_limited,
            "sink_errors": stats.sink_errors,
            "elapsed_ms": elapsed.as_millis() as u64,
        });
        println!("{json}");
    }
    Ok(())
}
