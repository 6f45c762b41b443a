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
//! let (actor, ledger) = CostLedger::start(LedgerOptions::new(dir.path())).await?;
//! ledger.set_model_price("gpt-4o-mini", ModelRates::new(150_000, 600_000, 0)?).await?;
//! let meta = UsageMeta::default().tenant("acme").model("gpt-4o-mini");
//! let ack = ledger.track_usage(ResourceKind::InputTokens, 10_000, meta).await?;
//! assert_eq!(ack.cost_micro_usd, 1_500); // 10k tokens at $0.15 per million
//! let report = ledger.report(ReportQuery::new(TimeRange::all()).group_by([Field::Tenant])).await?;
//! assert_eq!(report.total_cost_micro_usd, 1_500);
//! actor.stop_and_wait(None, None).await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::{RateControl, UsageMeta, UsageRecord, UsageSink, UsageSinkError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod budget;
mod catalogue_prices;
mod clock;
mod error;
mod gate;
mod optimize;
mod pricing;
mod record;
mod redb_store;
mod report;
mod store;
mod writer;

pub use budget::{
    ALERT_THRESHOLDS, Budget, BudgetAction, BudgetCounters, BudgetEvent, BudgetEventKind, BudgetPeriod, BudgetScope,
    BudgetStatus, MAX_ROLLING_WINDOW, MIN_ROLLING_WINDOW, Verdict, WaitTicket,
};
pub use clock::{
    Clock, MAX_RFC3339_US, MICROS_PER_DAY, MICROS_PER_SEC, ManualClock, SystemClock, TokioClock, civil_from_days,
    day_start, days_from_civil, format_day, format_rfc3339,
};
pub use error::{Damage, Damaged, LedgerError};
pub use gate::{BudgetHandle, SpendDelta};
pub use optimize::{
    ModelPrice, Opportunity, OpportunityKind, OptimizeInput, Optimizer, PoolUsage, TARGET_PERMILLE,
    UNDERUSED_BELOW_PERMILLE,
};
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
use writer::{ChargeGuard, WriteJob};

/// Spend buckets older than this are never needed (the longest period is a
/// 31-day month or rolling window).
const SPEND_BUCKET_HORIZON_US: u64 = 32 * MICROS_PER_DAY;

/// How a ledger runs. [`LedgerOptions::from_config`] takes the node's
/// data directory and the `ledger` section.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// The data directory; the store is `<data_dir>/ledger.redb`.
    /// Default: `./nexus-data` (config `node.data_dir`).
    pub data_dir: PathBuf,
    /// How long records are kept before compaction into daily aggregates.
    /// Default: 30 days (config `ledger.retention`, seed).
    pub retention: Duration,
    /// Records per transaction at most. Default: 1024 (config `ledger.group_commit_max`).
    pub group_commit_max: u32,
    /// The clock stamping records and rolling periods. Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// How often the ledger rolls budget periods. Default: 1 s.
    pub tick: Duration,
    /// How often records past retention are compacted. Default: 1 h.
    pub compact_every: Duration,
    /// How long a settled reservation stays counted while its records are
    /// awaited. Default: 60 s (the LLM timeout).
    pub settle_grace: Duration,
    /// Write jobs queued at most before trackers wait. Default: 8192.
    pub queue_capacity: usize,
}

impl LedgerOptions {
    /// Defaults with this data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            retention: Duration::from_secs(30 * 24 * 3600),
            group_commit_max: 1024,
            clock: Arc::new(SystemClock),
            tick: Duration::from_secs(1),
            compact_every: Duration::from_secs(3600),
            settle_grace: Duration::from_secs(60),
            queue_capacity: 8192,
        }
    }

    /// The node's data directory and `ledger` section.
    pub fn from_config(config: &NexusConfig) -> Self {
        Self {
            retention: config.ledger.retention,
            group_commit_max: config.ledger.group_commit_max,
            ..Self::new(config.node.data_dir.clone())
        }
    }

    /// Builder-style: sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<(), LedgerError> {
        let bad = |what: &str| Err(LedgerError::InvalidQuery(format!("ledger option {what}")));
        if self.group_commit_max == 0 {
            return bad("group_commit_max must be at least 1");
        }
        if self.retention.is_zero() || self.tick.is_zero() || self.compact_every.is_zero() {
            return bad("durations must be longer than zero");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        Ok(())
    }
}

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
}

/// The cost-ledger actor. It holds no configuration of its own: the store,
/// budgets and options travel in [`CostLedgerArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CostLedger;

/// What the ledger actor starts from: the opened store and loaded budgets.
/// Cloneable, so that a supervisor can restart the actor from it
/// (`ChildSpec::for_actor("cost-ledger", CostLedger, args)`).
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
            .map_err(|e| LedgerError::Store(format!("opening the store failed: {e}")))??;
        Self::with_store(Arc::new(store), options).await
    }

    /// Uses `store` (any [`LedgerStore`]) and loads prices and budgets.
    pub async fn with_store(store: Arc<dyn LedgerStore>, options: LedgerOptions) -> Result<Self, LedgerError> {
        options.validate()?;
        let s = store.clone();
        let (prices, budgets) =
            tokio::task::spawn_blocking(move || Ok::<_, LedgerError>((s.load_prices()?, s.load_budgets()?)))
                .await
                .map_err(|e| LedgerError::Store(format!("loading the store failed: {e}")))??;
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
    writer: Option<JoinHandle<()>>,
    ticker: JoinHandle<()>,
    last_compaction_us: u64,
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
}

impl ractor::Message for CostLedgerMsg {}

impl CostLedger {
    /// Opens the store in `options.data_dir` and starts an unsupervised
    /// ledger actor; returns it and a handle.
    pub async fn start(options: LedgerOptions) -> Result<(ActorRef<CostLedgerMsg>, LedgerHandle), LedgerError> {
        let args = CostLedgerArgs::open(options).await?;
        Self::spawn(args).await
    }

    /// Starts an unsupervised ledger actor from opened arguments.
    pub async fn spawn(args: CostLedgerArgs) -> Result<(ActorRef<CostLedgerMsg>, LedgerHandle), LedgerError> {
        let handle = args.handle();
        let (actor, _) = Actor::spawn(None, CostLedger, args)
            .await
            .map_err(|e| LedgerError::Store(format!("ledger actor failed to start: {e}")))?;
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
        .map_err(|e| LedgerError::Store(format!("ledger read failed: {e}")))?
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
        let (tx, rx) = mpsc::channel(shared.options.queue_capacity);
        let writer = tokio::spawn(writer::run(
            shared.store.clone(),
            shared.book.clone(),
            rx,
            shared.options.group_commit_max as usize,
        ));
        shared.writer.store(Some(Arc::new(tx)));
        shared.actor.store(Some(Arc::new(myself.clone())));
        shared.book.refresh_throttles();
        let ticker = myself.send_interval(shared.options.tick, || CostLedgerMsg::Tick);
        let now = shared.book.now_us();
        Ok(CostLedgerState {
            shared,
            writer: Some(writer),
            ticker,
            last_compaction_us: now,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        state.shared.actor.store(None);
        // Dropping our sender lets the writer finish the queued jobs and end.
        state.shared.writer.store(None);
        if let Some(writer) = state.writer.take() {
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

/// A cloneable handle on a running ledger: tracks usage (data plane, group
/// committed), defines budgets and prices, reads reports.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    shared: Arc<LedgerShared>,
}

impl LedgerHandle {
    fn actor(&self) -> Result<Arc<ActorRef<CostLedgerMsg>>, LedgerError> {
        self.shared.actor.load_full().ok_or(LedgerError::Unavailable)
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<Result<T, LedgerError>>) -> CostLedgerMsg,
    ) -> Result<T, LedgerError> {
        let actor = self.actor()?;
        let (tx, rx) = oneshot::channel();
        actor.cast(msg(tx.into())).map_err(|_| LedgerError::Unavailable)?;
        rx.await.map_err(|_| LedgerError::Unavailable)?
    }

    /// The budgets' data-plane handle (a `SpendGate`).
    pub fn budgets(&self) -> BudgetHandle {
        BudgetHandle {
            book: self.shared.book.clone(),
        }
    }

    /// The ledger's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.shared.options.clock.clone()
    }

    /// The current price table.
    pub fn prices(&self) -> Arc<PriceTable> {
        self.shared.book.prices()
    }

    fn prepare(&self, records: Vec<UsageRecord>) -> Result<(Vec<NewRecord>, ChargeGuard), LedgerError> {
        let prices = self.shared.book.prices();
        let at_us = self.shared.book.now_us();
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            if r.amount == 0 {
                return Err(LedgerError::InvalidUsage(format!("zero amount of {}", r.kind)));
            }
            if let ResourceKind::Custom(name) = &r.kind
                && name.trim().is_empty()
            {
                return Err(LedgerError::InvalidUsage("custom kind with an empty name".into()));
            }
            validate_meta(&r.meta)?;
            let cost = prices.cost(&r.kind, r.amount, r.meta.model.as_deref())?;
            out.push(NewRecord {
                at_us,
                kind: r.kind,
                amount: r.amount,
                cost_micro_usd: cost,
                meta: r.meta,
            });
        }
        let charges = self.shared.book.charge_records(&out);
        Ok((out, ChargeGuard::new(self.shared.book.clone(), charges)))
    }

    async fn commit(
        shared: Arc<LedgerShared>,
        records: Vec<NewRecord>,
        charges: ChargeGuard,
    ) -> Result<Vec<Ack>, LedgerError> {
        submit(&shared, |reply| WriteJob::Append {
            records,
            charges,
            reply,
        })
        .await
    }

    /// Records `amount` of `kind` used by `meta`; resolves once committed,
    /// with the record's id and cost. Bad input (zero amount, unpriced
    /// kind, malformed labels) is refused before anything is stored.
    pub async fn track_usage(&self, kind: ResourceKind, amount: u64, meta: UsageMeta) -> Result<Ack, LedgerError> {
        let mut acks = self.track_many(vec![UsageRecord { kind, amount, meta }]).await?;
        acks.pop().ok_or(LedgerError::Unavailable)
    }

    /// Records several usages atomically (all or none); resolves once committed.
    pub async fn track_many(&self, records: Vec<UsageRecord>) -> Result<Vec<Ack>, LedgerError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (records, charges) = self.prepare(records)?;
        Self::commit(self.shared.clone(), records, charges).await
    }

    /// Defines a budget (or redefines one with the same id). Its spend
    /// starts at the committed usage in scope in the current period.
    pub async fn put_budget(&self, budget: Budget) -> Result<(), LedgerError> {
        budget.validate()?;
        self.call(|r| CostLedgerMsg::PutBudget(budget, r)).await
    }

    /// Removes a budget ([`LedgerError::UnknownBudget`] if there is none).
    pub async fn remove_budget(&self, id: &str) -> Result<(), LedgerError> {
        let id = id.to_string();
        self.call(|r| CostLedgerMsg::RemoveBudget(id, r)).await
    }

    /// The state of a budget.
    pub fn budget_status(&self, id: &str) -> Result<BudgetStatus, LedgerError> {
        self.shared.book.status(id)
    }

    /// The state of every budget.
    pub fn budget_statuses(&self) -> Vec<BudgetStatus> {
        self.shared.book.statuses()
    }

    /// Sets the price of a resource kind.
    pub async fn set_kind_price(&self, kind: ResourceKind, rate: Rate) -> Result<(), LedgerError> {
        self.call(|r| CostLedgerMsg::SetKindPrice(kind, rate, r)).await
    }

    /// Sets a model's prices.
    pub async fn set_model_price(&self, model: impl Into<String>, rates: ModelRates) -> Result<(), LedgerError> {
        let model = model.into();
        self.call(|r| CostLedgerMsg::SetModelPrice(model, rates, r)).await
    }

    /// A report over a time range, grouped by metadata fields.
    pub async fn report(&self, query: ReportQuery) -> Result<Report, LedgerError> {
        self.call(|r| CostLedgerMsg::Report(query, r)).await
    }

    /// Cost-saving opportunities over a time range.
    pub async fn optimize(&self, input: OptimizeInput) -> Result<Vec<Opportunity>, LedgerError> {
        self.call(|r| CostLedgerMsg::Optimize(input, r)).await
    }

    /// Compacts records past retention into daily aggregates now.
    pub async fn compact(&self) -> Result<CompactionStats, LedgerError> {
        self.call(CostLedgerMsg::Compact).await
    }

    /// Every committed (not yet compacted) record in `range`, in time order.
    pub async fn records(&self, range: TimeRange) -> Result<Vec<LedgerRecord>, LedgerError> {
        read_store(&self.shared, move |s| {
            let mut out = Vec::new();
            s.visit_records(range.from_us, range.to_us, &mut |r| {
                out.push(r);
                Ok(())
            })?;
            Ok(out)
        })
        .await
    }

    /// Registers an admission rate to throttle (see
    /// [`BudgetHandle::register_rate_control`]).
    pub fn register_rate_control(&self, scope: BudgetScope, control: Arc<dyn RateControl>) {
        self.budgets().register_rate_control(scope, control);
    }

    /// A typed subscription to budget events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BudgetEvent> {
        self.shared.book.subscribe()
    }
}

impl UsageSink for LedgerHandle {
    /// Prices and counts the records at once (so a settled reservation is
    /// never uncounted), then resolves with each record's cost once committed.
    fn record(&self, records: Vec<UsageRecord>) -> BoxFuture<'static, Result<Vec<u64>, UsageSinkError>> {
        if records.is_empty() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        let prepared = self.prepare(records);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (records, charges) = prepared?;
            let acks = Self::commit(shared, records, charges).await?;
            Ok(acks.into_iter().map(|a| a.cost_micro_usd).collect())
        })
    }
}

#[cfg(test)]
mod tests;
