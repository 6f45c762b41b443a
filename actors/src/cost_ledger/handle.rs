//! [`LedgerHandle`]: the cloneable client of a ledger. Tracking usage is
//! the data plane (straight to the writer's queue); budgets, prices and
//! reports are control-plane calls to whichever ledger actor runs now, so a
//! handle keeps working across a supervisor's restart of the actor.

use std::sync::Arc;

use futures::future::BoxFuture;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::{RateControl, UsageMeta, UsageRecord, UsageSink, UsageSinkError};
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

use super::budget::{Budget, BudgetEvent, BudgetStatus};
use super::clock::Clock;
use super::error::LedgerError;
use super::gate::BudgetHandle;
use super::optimize::{Opportunity, OptimizeInput};
use super::pricing::{ModelRates, PriceTable, Rate};
use super::record::{Ack, LedgerRecord, NewRecord, validate_meta};
use super::report::{Report, ReportQuery, TimeRange};
use super::store::CompactionStats;
use super::writer::{ChargeGuard, WriteJob};
use super::{CostLedgerMsg, LedgerShared, read_store, submit};

/// A cloneable handle on a running ledger: tracks usage (data plane, group
/// committed), defines budgets and prices, reads reports.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    pub(super) shared: Arc<LedgerShared>,
}

impl LedgerHandle {
    fn actor(&self) -> Result<Arc<ActorRef<CostLedgerMsg>>, LedgerError> {
        self.shared.actor.load_full().ok_or(LedgerError::Unavailable)
    }

    pub(super) async fn call<T: Send + 'static>(
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
            let cost = prices.cost(&r.kind, r.amount, r.meta.scope.model.as_deref())?;
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
    pub fn register_rate_control(&self, scope: Scope, control: Arc<dyn RateControl>) {
        self.budgets().register_rate_control(scope, control);
    }

    /// A typed subscription to budget events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BudgetEvent> {
        self.shared.book.subscribe()
    }

    /// Makes the ledger actor panic in its handler, as a bug would, so
    /// that a test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), LedgerError> {
        self.actor()?
            .cast(CostLedgerMsg::InjectPanic)
            .map_err(|_| LedgerError::Unavailable)
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
