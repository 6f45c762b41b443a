//! Test doubles for the spend seams: a hard money budget enforced by
//! reserve-then-settle, and a usage sink that prices tokens and keeps the
//! records. Both are honest: a refusal happens exactly when the estimate
//! would cross the limit (typed as the ledger's budgets type it:
//! `HoldsInFlight` when only holds in flight stand in the way,
//! `BudgetExceeded` when spend does), and settle replaces the hold by the
//! actual cost. The budget never waits (the `SpendGate::reserve_until`
//! default): the ledger's own budgets are the ones that wait.

#![allow(dead_code)] // each test file uses a subset

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use nexus_swarm::runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm::runtime::usage::{
    SpendGate, SpendHold, SpendRefused, UsageMeta, UsageRecord, UsageSink, UsageSinkError,
};
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct Budget {
    spent: u64,
    reserved: u64,
    holds: HashMap<u64, u64>,
    next: u64,
    refused: u64,
}

/// A hard budget in micro-dollars over the `Cost` of each request.
#[derive(Debug)]
pub(crate) struct BudgetGate {
    limit: u64,
    // One lock: reserve must check and add atomically.
    state: Mutex<Budget>,
}

impl BudgetGate {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            state: Mutex::new(Budget::default()),
        })
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn spent(&self) -> u64 {
        self.state.lock().spent
    }

    pub(crate) fn reserved(&self) -> u64 {
        self.state.lock().reserved
    }

    pub(crate) fn open_holds(&self) -> usize {
        self.state.lock().holds.len()
    }

    pub(crate) fn refused(&self) -> u64 {
        self.state.lock().refused
    }
}

impl SpendGate for BudgetGate {
    fn reserve(&self, _meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused> {
        let cost = estimate.get(&ResourceKind::Cost);
        let mut s = self.state.lock();
        if s.spent + s.reserved + cost > self.limit {
            s.refused += 1;
            let (budget, limit, spent, reserved, requested) = ("test".into(), self.limit, s.spent, s.reserved, cost);
            return Err(if spent + cost > limit {
                SpendRefused::BudgetExceeded {
                    budget,
                    limit,
                    spent,
                    reserved,
                    requested,
                }
            } else {
                SpendRefused::HoldsInFlight {
                    budget,
                    limit,
                    spent,
                    reserved,
                    requested,
                }
            });
        }
        s.reserved += cost;
        s.next += 1;
        let id = s.next;
        s.holds.insert(id, cost);
        Ok(SpendHold::new(id, estimate.clone()))
    }

    fn settle(&self, hold: SpendHold, actual: &ResourceVector) {
        let mut s = self.state.lock();
        let held = s.holds.remove(&hold.id()).expect("settled a hold twice or never made");
        s.reserved -= held;
        s.spent += actual.get(&ResourceKind::Cost);
    }

    fn release(&self, hold: SpendHold) {
        let mut s = self.state.lock();
        let held = s.holds.remove(&hold.id()).expect("released a hold twice or never made");
        s.reserved -= held;
    }
}

/// A usage sink that prices tokens per model (micro-dollars per million)
/// and keeps every record.
#[derive(Debug, Default)]
pub(crate) struct RecordingSink {
    prices: HashMap<String, (u64, u64)>,
    records: Mutex<Vec<UsageRecord>>,
}

impl RecordingSink {
    pub(crate) fn new(prices: impl IntoIterator<Item = (String, (u64, u64))>) -> Arc<Self> {
        Arc::new(Self {
            prices: prices.into_iter().collect(),
            records: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn records(&self) -> Vec<UsageRecord> {
        self.records.lock().clone()
    }
}

impl UsageSink for RecordingSink {
    fn record(&self, records: Vec<UsageRecord>) -> BoxFuture<'static, Result<Vec<u64>, UsageSinkError>> {
        let mut costs = Vec::new();
        for r in &records {
            let model = r.meta.scope.model.clone().unwrap_or_default();
            let Some((input, output)) = self.prices.get(&model) else {
                return Box::pin(async move { Err(UsageSinkError::Invalid(format!("no price for {model}"))) });
            };
            let price = match r.kind {
                ResourceKind::InputTokens => *input,
                ResourceKind::OutputTokens => *output,
                _ => 0,
            };
            costs.push((u128::from(r.amount) * u128::from(price)).div_ceil(1_000_000) as u64);
        }
        self.records.lock().extend(records);
        Box::pin(async move { Ok(costs) })
    }
}
