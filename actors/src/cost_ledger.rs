//! The cost ledger: durable usage records with their cost, budgets that
//! alert, throttle or halt, reports and cost optimization.
//!
//! # Why redb
//!
//! The ledger's store is [redb](https://docs.rs/redb), an embedded,
//! pure-Rust, ACID key-value store of copy-on-write B-trees, in one file in
//! the data directory (`<node.data_dir>/ledger.redb`). It was chosen over
//! SQLite in WAL mode for these reasons:
//!
//! - **Durability.** A redb commit is durable when it returns (its default
//!   `Durability::Immediate` fsyncs), and a crash can only lose
//!   transactions that had not returned: on open, redb rolls back to the
//!   last committed root, whose pages carry checksums. SQLite gives the
//!   same only with `synchronous=FULL`, which WAL mode does not default to.
//! - **Corruption and locking are reported, not hidden.** redb refuses a
//!   file with a bad header or checksum (`Corrupted`) and holds an
//!   exclusive file lock, so a second process gets `DatabaseAlreadyOpen`;
//!   both map to typed errors ([`LedgerError::Corrupt`],
//!   [`LedgerError::Locked`]) and the file is never replaced. SQLite lets
//!   several processes share a database by design, so a second ledger on
//!   the same directory would need a lock of our own.
//! - **Reports over time ranges.** Records are keyed by (time, id), so any
//!   time range is one ordered range scan; grouping by any metadata field
//!   (including free labels, which a SQL schema would store as JSON) is a
//!   single pass over that range. Compacted usage is keyed by (day, kind +
//!   metadata) in the same way.
//! - **Group commit.** One write transaction holds a whole batch of records
//!   and the budgets' spend, committed with one fsync.
//! - **Build.** Pure Rust: no C toolchain, nothing bundled to compile.
//!
//! The store sits behind [`LedgerStore`] (append, range visits, budgets,
//! prices, compaction), small enough for a PostgreSQL implementation that
//! every node of a cluster would share.
//!
//! # Planes
//!
//! - Data plane: [`LedgerHandle::track_usage`] prices a usage with the cost
//!   models ([`PriceTable`]), stamps it with the ledger's [`Clock`], counts
//!   it in flight for the budgets in its scope, and queues it to the
//!   writer, which group-commits queued records (up to
//!   `ledger.group_commit_max` per transaction) and acknowledges each
//!   record, with its id and cost, only once committed. [`BudgetHandle`]
//!   is the [`SpendGate`](nexus_swarm_runtime::usage::SpendGate) the LLM
//!   gateway reserves with before a call and settles after, without an
//!   actor round trip; [`LedgerHandle`] is its
//!   `UsageSink`.
//! - Control plane: the [`CostLedger`] actor owns prices, budget
//!   definitions, reports, optimization and retention. Its tick rolls
//!   budget periods (restoring throttled rates, lifting halts) and compacts
//!   records older than `ledger.retention` into daily aggregates.
//!
//! # Supervision
//!
//! [`CostLedger::start`] runs the actor in a node's `system` subtree. The
//! store, the budgets, the writer and the slot through which handles find
//! the actor live in [`CostLedgerArgs`], shared by every restart, so a
//! ledger restarted after a failure resumes with the same store and
//! budgets, and every [`LedgerHandle`] reaches the new actor. ractor runs
//! no `post_stop` after a panic: the writer task is then still running,
//! and the restarted actor keeps it (one writer, queued records committed
//! in order) instead of starting a second one; the old tick timer is
//! aborted when the failed actor's state is dropped. Tracking usage never
//! goes through the actor, so it goes on during the restart, and what was
//! acknowledged is committed: a restart loses nothing acknowledged
//! (`tests/it/system_actors_restart_after_panic.rs`).
//!
//! Budget spend is stored per (budget, period bucket) in the same
//! transaction as the records it comes from, so after a crash every
//! budget's spend equals the sum of its committed records in the period.
//!
//! # Example
//!
//! ```
//! use nexus_swarm_actors::cost_ledger::*;
//! use nexus_swarm_runtime::resources::ResourceKind;
//! use nexus_swarm_runtime::usage::UsageMeta;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let args = CostLedgerArgs::open(LedgerOptions::new(dir.path())).await?;
//! // Under a node: `CostLedger::start(&node, "cost-ledger", args)`.
//! let (actor, ledger) = CostLedger::spawn_unsupervised(args).await?;
//! ledger.set_model_price("gpt-4o-mini", ModelRates::new(150_000, 600_000, 0)?).await?;
//! let meta = UsageMeta::default().tenant("acme").model("gpt-4o-mini");
//! let ack = ledger.track_usage(ResourceKind::InputTokens, 10_000, meta).await?;
//! assert_eq!(ack.cost_micro_usd, 1_500); // 10k tokens at $0.15 per million
//! let report = ledger.report(ReportQuery::new(TimeRange::all()).group_by([Field::Tenant])).await?;
//! assert_eq!(report.total_cost_micro_usd, 1_500);
//! actor.stop_and_wait(None, None).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod budget;
mod catalogue_prices;
mod clock;
mod error;
mod gate;
mod handle;
mod optimize;
mod options;
mod pricing;
mod record;
mod redb_store;
mod report;
mod store;
mod writer;

pub use budget::{
    ALERT_THRESHOLDS, Budget, BudgetAction, BudgetCounters, BudgetEvent, BudgetEventKind, BudgetPeriod, BudgetStatus,
    MAX_ROLLING_WINDOW, MIN_ROLLING_WINDOW, Verdict, WaitTicket,
};
pub use clock::{
    Clock, MAX_RFC3339_US, MICROS_PER_DAY, MICROS_PER_SEC, ManualClock, SystemClock, TokioClock, civil_from_days,
    day_start, days_from_civil, format_day, format_rfc3339,
};
pub use error::{Cause, Damage, Damaged, LedgerError};
pub use gate::{BudgetHandle, SpendDelta};
pub use handle::LedgerHandle;
pub use optimize::{
    ModelPrice, Opportunity, OpportunityKind, OptimizeInput, Optimizer, PoolUsage, TARGET_PERMILLE,
    UNDERUSED_BELOW_PERMILLE,
};
pub use options::LedgerOptions;
pub use pricing::{
    MAX_MICRO_USD_PER_MILLION_TOKENS, MAX_MICRO_USD_PER_UNIT, ModelRates, PriceTable, Rate, cost_of_units,
    tokens_cost_micro_usd,
};
pub use record::{
    Ack, EntryDamage, Field, LedgerRecord, MAX_META_VALUE_LEN, NONE_VALUE, NewRecord, PROMPT_HASH_LABEL, RecordCodec,
    RecordId, parse_labels, validate_meta,
};
pub use redb_store::{FORMAT_VERSION, RedbStore, SNAPSHOT_ATTEMPTS, STORE_FILE, VerifyReport, WRITER_CACHE_BYTES};
pub use report::{Report, ReportBuilder, ReportQuery, ReportRow, TimeRange, format_usd};
pub use store::{CompactionStats, LedgerStore, StoredBudget, UsageRow};

use gate::BudgetBook;
use writer::WriteJob;

/// Spend buckets older than this are never needed (the longest period is a
/// 31-day month or rolling window).
const SPEND_BUCKET_HORIZON_US: u64 = 32 * MICROS_PER_DAY;

/// State shared by the actor (across restarts) and every handle.
#[derive(Debug)]
struct LedgerShared {
    store: Arc<dyn LedgerStore>,
    book: Arc<BudgetBook>,
    options: LedgerOptions,
    // ArcSwapOption: handles read the current writer queue and actor on
    // every call; the actor replaces them when it (re)starts and clears
    // them when it stops.
    writer: ArcSwapOption<mpsc::Sender<WriteJob>>,
    actor: ArcSwapOption<ActorRef<CostLedgerMsg>>,
    // The writer task, here rather than in the actor's state so that an
    // actor restarted after a failure (no `post_stop` ran) finds it still
    // running and keeps it. A plain mutex: taken when the actor starts and
    // stops, never on a call.
    writer_task: Mutex<Option<JoinHandle<()>>>,
}

/// The cost-ledger actor. It holds no configuration of its own: the store,
/// budgets and options travel in [`CostLedgerArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CostLedger;

/// What the ledger actor starts from: the opened store and loaded budgets.
/// Cloneable, so that a supervisor can restart the actor from it
/// ([`CostLedger::start`]); every clone shares the same store, budgets and
/// writer.
#[derive(Debug, Clone)]
pub struct CostLedgerArgs {
    shared: Arc<LedgerShared>,
}

impl CostLedgerArgs {
    /// Opens the embedded store in `options.data_dir` and loads prices and
    /// budgets.
    pub async fn open(options: LedgerOptions) -> Result<Self, LedgerError> {
        options.validate()?;
        let dir = options.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || RedbStore::open(dir))
            .await
            .map_err(|e| LedgerError::task_failed("opening the store", e))??;
        Self::with_store(Arc::new(store), options).await
    }

    /// Uses `store` (any [`LedgerStore`]) and loads prices and budgets.
    pub async fn with_store(store: Arc<dyn LedgerStore>, options: LedgerOptions) -> Result<Self, LedgerError> {
        options.validate()?;
        let s = store.clone();
        let (prices, budgets) =
            tokio::task::spawn_blocking(move || Ok::<_, LedgerError>((s.load_prices()?, s.load_budgets()?)))
                .await
                .map_err(|e| LedgerError::task_failed("loading prices and budgets", e))??;
        let grace = u64::try_from(options.settle_grace.as_micros()).unwrap_or(u64::MAX);
        let book = Arc::new(BudgetBook::new(prices, options.clock.clone(), grace));
        for (budget, buckets) in budgets {
            book.install(budget, buckets);
        }
        Ok(Self {
            shared: Arc::new(LedgerShared {
                store,
                book,
                options,
                writer: ArcSwapOption::empty(),
                actor: ArcSwapOption::empty(),
                writer_task: Mutex::new(None),
            }),
        })
    }

    /// A handle on the ledger these arguments start (usable once the actor runs).
    pub fn handle(&self) -> LedgerHandle {
        LedgerHandle {
            shared: self.shared.clone(),
        }
    }
}

/// The ledger actor's state.
#[derive(Debug)]
pub struct CostLedgerState {
    shared: Arc<LedgerShared>,
    ticker: JoinHandle<()>,
    last_compaction_us: u64,
}

impl Drop for CostLedgerState {
    fn drop(&mut self) {
        // Also after a panic, when no `post_stop` runs: the restarted actor
        // has a timer of its own.
        self.ticker.abort();
    }
}

/// Messages to the ledger actor (the control plane).
#[derive(Debug)]
pub enum CostLedgerMsg {
    /// Defines or redefines a budget.
    PutBudget(Budget, RpcReplyPort<Result<(), LedgerError>>),
    /// Removes a budget.
    RemoveBudget(String, RpcReplyPort<Result<(), LedgerError>>),
    /// Sets the price of a resource kind.
    SetKindPrice(ResourceKind, Rate, RpcReplyPort<Result<(), LedgerError>>),
    /// Sets a model's prices.
    SetModelPrice(String, ModelRates, RpcReplyPort<Result<(), LedgerError>>),
    /// Sets several models' prices in one change, all or none (see
    /// [`LedgerHandle::use_catalogue_prices`]).
    SetModelPrices(Vec<(String, ModelRates)>, RpcReplyPort<Result<(), LedgerError>>),
    /// Builds a report.
    Report(ReportQuery, RpcReplyPort<Result<Report, LedgerError>>),
    /// Finds cost-saving opportunities.
    Optimize(OptimizeInput, RpcReplyPort<Result<Vec<Opportunity>, LedgerError>>),
    /// Compacts records past retention now.
    Compact(RpcReplyPort<Result<CompactionStats, LedgerError>>),
    /// Rolls budget periods; compacts when due.
    Tick,
    /// Panics in the handler (supervision tests only; the
    /// `fault-injection` feature).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for CostLedgerMsg {}

impl CostLedger {
    /// Starts the ledger under `node`'s supervisor, in its `system`
    /// subtree, as `name` (unique among the node's system actors), and
    /// returns a handle that keeps working across restarts (see
    /// "Supervision" in the module docs).
    pub async fn start(node: &Node, name: &str, args: CostLedgerArgs) -> Result<LedgerHandle, SpawnError> {
        let handle = args.handle();
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(handle)
    }

    /// A supervisor child spec for a ledger named `name`; every restart
    /// resumes the same store, budgets and writer.
    pub fn child_spec(name: &str, args: CostLedgerArgs) -> ChildSpec {
        ChildSpec::for_actor(name, CostLedger, args)
    }

    /// Starts a ledger actor that no supervisor restarts (tests, tools
    /// that own the ledger for one run); returns it and a handle.
    pub async fn spawn_unsupervised(args: CostLedgerArgs) -> Result<(ActorRef<CostLedgerMsg>, LedgerHandle), SpawnErr> {
        let handle = args.handle();
        let (actor, _) = Actor::spawn(None, CostLedger, args).await?;
        Ok((actor, handle))
    }
}

fn send<T>(reply: RpcReplyPort<T>, value: T) {
    // The caller may have timed out; the work is done either way.
    let _ = reply.send(value);
}

async fn submit<T>(shared: &LedgerShared, job: impl FnOnce(writer::Reply<T>) -> WriteJob) -> Result<T, LedgerError> {
    let tx = shared.writer.load_full().ok_or(LedgerError::Unavailable)?;
    let (reply, rx) = oneshot::channel();
    tx.send(job(reply)).await.map_err(|_| LedgerError::Unavailable)?;
    drop(tx);
    rx.await.map_err(|_| LedgerError::Unavailable)?
}

async fn read_store<T: Send + 'static>(
    shared: &LedgerShared,
    f: impl FnOnce(&dyn LedgerStore) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| LedgerError::task_failed("reading", e))?
}

/// Builds a report from a store (what `nexus report` runs).
pub fn build_report(store: &dyn LedgerStore, query: ReportQuery) -> Result<Report, LedgerError> {
    let range = query.range;
    let mut builder = ReportBuilder::new(query);
    store.visit_usage(range.from_us, range.to_us, &mut |row| builder.add(&row))?;
    Ok(builder.finish())
}

impl CostLedger {
    async fn set_prices(
        shared: &LedgerShared,
        change: impl FnOnce(&mut PriceTable) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut prices = (*shared.book.prices()).clone();
        change(&mut prices)?;
        submit(shared, |reply| WriteJob::SetPrices { prices, reply }).await
    }

    fn compact_job(shared: &LedgerShared, reply: writer::Reply<CompactionStats>) -> WriteJob {
        let now = shared.book.now_us();
        let retention = u64::try_from(shared.options.retention.as_micros()).unwrap_or(u64::MAX);
        WriteJob::Compact {
            before_us: day_start(now.saturating_sub(retention)),
            buckets_before_us: now.saturating_sub(SPEND_BUCKET_HORIZON_US),
            reply,
        }
    }
}

impl Actor for CostLedger {
    type Msg = CostLedgerMsg;
    type State = CostLedgerState;
    type Arguments = CostLedgerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CostLedgerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let shared = args.shared;
        {
            let mut task = shared.writer_task.lock();
            // A predecessor that failed left its writer running, with the
            // queue every handle sends to: keep it. Start one on a first
            // start, after a clean stop, or if the writer itself ended.
            let running = task.as_ref().is_some_and(|t| !t.is_finished()) && shared.writer.load().is_some();
            if !running {
                let (tx, rx) = mpsc::channel(shared.options.queue_capacity);
                *task = Some(tokio::spawn(writer::run(
                    shared.store.clone(),
                    shared.book.clone(),
                    rx,
                    shared.options.group_commit_max as usize,
                )));
                shared.writer.store(Some(Arc::new(tx)));
            }
        }
        shared.actor.store(Some(Arc::new(myself.clone())));
        shared.book.refresh_throttles();
        let ticker = myself.send_interval(shared.options.tick, || CostLedgerMsg::Tick);
        let now = shared.book.now_us();
        Ok(CostLedgerState {
            shared,
            ticker,
            last_compaction_us: now,
        })
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        let shared = &state.shared;
        if shared
            .actor
            .load()
            .as_ref()
            .is_some_and(|a| a.get_id() == myself.get_id())
        {
            shared.actor.store(None);
        }
        // Dropping our sender lets the writer finish the queued jobs and end.
        shared.writer.store(None);
        let writer = shared.writer_task.lock().take();
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = state.shared.clone();
        match msg {
            CostLedgerMsg::PutBudget(budget, reply) => {
                let r = match budget.validate() {
                    Ok(()) => submit(&shared, |reply| WriteJob::PutBudget { budget, reply }).await,
                    Err(e) => Err(e),
                };
                send(reply, r);
            }
            CostLedgerMsg::RemoveBudget(id, reply) => {
                let r = if shared.book.contains(&id) {
                    submit(&shared, |reply| WriteJob::RemoveBudget { id, reply }).await
                } else {
                    Err(LedgerError::UnknownBudget(id))
                };
                send(reply, r);
            }
            CostLedgerMsg::SetKindPrice(kind, rate, reply) => {
                send(reply, Self::set_prices(&shared, |p| p.set_kind(kind, rate)).await);
            }
            CostLedgerMsg::SetModelPrice(model, rates, reply) => {
                send(reply, Self::set_prices(&shared, |p| p.set_model(model, rates)).await);
            }
            CostLedgerMsg::SetModelPrices(rates, reply) => {
                send(reply, Self::set_prices(&shared, |p| p.set_models(rates)).await);
            }
            CostLedgerMsg::Report(query, reply) => {
                tokio::spawn(async move {
                    send(reply, read_store(&shared, move |s| build_report(s, query)).await);
                });
            }
            CostLedgerMsg::Optimize(input, reply) => {
                tokio::spawn(async move {
                    let r = read_store(&shared, move |s| {
                        let range = input.range;
                        let mut opt = Optimizer::new(input)?;
                        s.visit_usage(range.from_us, range.to_us, &mut |row| {
                            opt.add(&row);
                            Ok(())
                        })?;
                        Ok(opt.finish())
                    })
                    .await;
                    send(reply, r);
                });
            }
            CostLedgerMsg::Compact(reply) => {
                state.last_compaction_us = shared.book.now_us();
                let r = submit(&shared, |reply| Self::compact_job(&shared, reply)).await;
                send(reply, r);
            }
            #[cfg(any(test, feature = "fault-injection"))]
            CostLedgerMsg::InjectPanic => panic!("fault injected into the cost ledger"),
            CostLedgerMsg::Tick => {
                shared.book.tick();
                let now = shared.book.now_us();
                let every = u64::try_from(shared.options.compact_every.as_micros()).unwrap_or(u64::MAX);
                if now.saturating_sub(state.last_compaction_us) >= every {
                    state.last_compaction_us = now;
                    tokio::spawn(async move {
                        match submit(&shared, |reply| Self::compact_job(&shared, reply)).await {
                            Ok(stats) => tracing::info!(?stats, "ledger compaction"),
                            Err(e) => tracing::warn!(error = %e, "ledger compaction failed"),
                        }
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
