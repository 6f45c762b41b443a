//! `nexus ledger-stress` (hidden): records usage into a ledger as fast as it
//! can and prints every acknowledged record on stdout, one per line, only
//! after its commit: `<id> <op> <kind>`. Each tracking call labels its
//! records with a unique [`OP_LABEL`] (`s<seed>-w<worker>-<n>`) and no call
//! records one kind twice, so `(op, kind)` names one record. The crash test
//! kills the process with SIGKILL and checks that every printed record
//! survived exactly once.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::actors::Scope;
use crate::actors::cost_ledger::{
    Ack, Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerHandle, LedgerOptions, ModelRates, Rate,
};
use crate::runtime::resources::{ResourceKind, ResourceVector};
use crate::runtime::usage::{SpendGate, UsageMeta, UsageRecord};

/// The model the stress run prices and uses.
pub const STRESS_MODEL: &str = "stress-small";

/// The label naming the tracking call a record came from, unique per call
/// across runs with different seeds.
pub const OP_LABEL: &str = "op";

/// `nexus ledger-stress ...`
#[derive(Debug, Args)]
pub struct StressArgs {
    /// The data directory of the ledger.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Concurrent trackers.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u64,
    /// Seed of the trackers' choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after about this many acknowledged records (0: run until killed).
    #[arg(long, default_value_t = 0)]
    pub records: u64,
}

/// The budgets a stress run defines (if absent): one per action and period
/// kind, over different scopes.
pub fn stress_budgets() -> Vec<Budget> {
    vec![
        Budget::new("all-daily", 1 << 50, BudgetPeriod::Daily, BudgetAction::Alert),
        Budget::new("t0-hourly", 1 << 40, BudgetPeriod::Hourly, BudgetAction::Alert).scope(Scope::all().tenant("t0")),
        Budget::new(
            "t1-throttle",
            2_000_000,
            BudgetPeriod::Monthly,
            BudgetAction::Throttle { permille: 500 },
        )
        .scope(Scope::all().tenant("t1").model(STRESS_MODEL)),
        Budget::new("t2-halt", 500_000, BudgetPeriod::Daily, BudgetAction::Halt).scope(Scope::all().tenant("t2")),
        Budget::new(
            "rolling",
            1 << 40,
            BudgetPeriod::Rolling(std::time::Duration::from_secs(600)),
            BudgetAction::Alert,
        ),
    ]
}

fn print_acks(op: &str, acks: &[(Ack, ResourceKind)]) {
    let mut out = std::io::stdout().lock();
    for (a, kind) in acks {
        // Stdout closed means the test stopped listening; keep going until killed.
        let _ = writeln!(out, "{} {op} {kind}", a.id);
    }
}

/// One tracking call labelled `op`: the acknowledged records with their kinds.
async fn one(ledger: &LedgerHandle, rng: &mut StdRng, worker: u64, op: &str) -> Vec<(Ack, ResourceKind)> {
    let tenant = ["t0", "t1", "t2"][rng.random_range(0..3)];
    // The hold and its records carry the same metadata (the ledger matches
    // settled holds to records by it), so the op label is per call.
    let meta = UsageMeta::default()
        .tenant(tenant)
        .workflow("stress")
        .agent(format!("a{worker}"))
        .model(STRESS_MODEL)
        .label(OP_LABEL, op);
    let input = rng.random_range(100..2000u64);
    let output = rng.random_range(10..500u64);
    let result = match rng.random_range(0..3) {
        0 => {
            let gate = ledger.budgets();
            let estimate = ResourceVector::new()
                .with(ResourceKind::InputTokens, 2000)
                .with(ResourceKind::OutputTokens, 500);
            match gate.reserve(&meta, &estimate) {
                Ok(hold) => {
                    let actual = ResourceVector::new()
                        .with(ResourceKind::InputTokens, input)
                        .with(ResourceKind::OutputTokens, output);
                    gate.settle(hold, &actual);
                    let records = vec![
                        UsageRecord {
                            kind: ResourceKind::InputTokens,
                            amount: input,
                            meta: meta.clone(),
                        },
                        UsageRecord {
                            kind: ResourceKind::OutputTokens,
                            amount: output,
                            meta,
                        },
                    ];
                    let kinds: Vec<ResourceKind> = records.iter().map(|r| r.kind.clone()).collect();
                    ledger
                        .track_many(records)
                        .await
                        .map(|acks| acks.into_iter().zip(kinds).collect())
                }
                Err(_) => Ok(Vec::new()),
            }
        }
        1 => ledger
            .track_usage(ResourceKind::LlmRequests, 1, meta)
            .await
            .map(|a| vec![(a, ResourceKind::LlmRequests)]),
        _ => ledger
            .track_usage(ResourceKind::Cpu, rng.random_range(1..5000), meta)
            .await
            .map(|a| vec![(a, ResourceKind::Cpu)]),
    };
    result.unwrap_or_else(|e| {
        eprintln!("ledger-stress: {e}");
        Vec::new()
    })
}

/// Runs the stress loop.
pub fn run(args: StressArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (actor, ledger) =
            CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(&args.data_dir)).await?).await?;
        ledger
            .set_model_price(STRESS_MODEL, ModelRates::new(150_000, 600_000, 100)?)
            .await?;
        ledger
            .set_kind_price(ResourceKind::Cpu, Rate::per_cpu_second(20)?)
            .await?;
        for b in stress_budgets() {
            // Only define what is absent: a restart must find the stored spend.
            if ledger.budget_status(&b.id).is_err() {
                ledger.put_budget(b).await?;
            }
        }
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..args.concurrency {
            let ledger = ledger.clone();
            let done = done.clone();
            let limit = args.records;
            let seed = args.seed;
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(worker));
            tasks.spawn(async move {
                let mut n = 0u64;
                while limit == 0 || done.load(Ordering::Relaxed) < limit {
                    let op = format!("s{seed}-w{worker}-{n}");
                    n += 1;
                    let acks = one(&ledger, &mut rng, worker, &op).await;
                    print_acks(&op, &acks);
                    done.fetch_add(acks.len() as u64, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        actor.stop_and_wait(None, None).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
