//! State export and import: a running swarm's quota limits and borrow
//! ceilings, budgets and `[[run.pools]]` sizes as one versioned JSON
//! document (`GET /admin/state`, `PUT /admin/state`; `nexus state export`
//! and `import` over HTTP).
//!
//! An import is checked whole before anything changes ([`StateDoc::check`]
//! lists every problem: another format or version, unknown quotas or
//! pools, limits out of range, a root quota given a borrow ceiling,
//! invalid or duplicate budgets); then budgets, quotas and pool sizes are
//! set in that order. A step the running system still refuses (a pool
//! growth the scheduler does not admit) undoes the steps before it.
//! Budgets in the swarm and not in the document are left as they are.

use std::collections::BTreeSet;

use nexus_swarm_actors::cost_ledger::Budget;
use nexus_swarm_actors::quota_keeper::MAX_QUOTA_AMOUNT;
use nexus_swarm_runtime::config::MAX_RUN_POOL_SIZE;
use serde::{Deserialize, Serialize};

use super::http::OpsState;

/// The `format` field of every state document.
pub const STATE_FORMAT: &str = "nexus-state";

/// The version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// A state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Every quota's limit and borrow ceiling, by id.
    pub quotas: Vec<QuotaState>,
    /// Every budget's definition, by id.
    pub budgets: Vec<Budget>,
    /// Every `[[run.pools]]` pool's size, by name.
    pub pools: Vec<PoolState>,
}

/// One quota's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaState {
    /// The quota.
    pub id: String,
    /// Its limit.
    pub limit: u64,
    /// How far above its limit it may borrow (0 for a root).
    pub borrow_ceiling: u64,
}

/// One pool's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolState {
    /// The pool.
    pub name: String,
    /// Its workers.
    pub size: usize,
}

/// Why an import changed nothing, or what it could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The document was refused before anything changed; every problem is listed.
    #[error("state document refused: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A step failed; the steps before it were undone (`undo_failed`
    /// lists what could not be).
    #[error("import stopped at {step}: {reason}{}", if undo_failed.is_empty() { String::new() } else { format!(" (not undone: {})", undo_failed.join("; ")) })]
    Failed {
        /// The step.
        step: String,
        /// Why.
        reason: String,
        /// Steps whose undo failed.
        undo_failed: Vec<String>,
    },
}

/// A change made by an import, to undo if a later one fails.
enum Undo {
    Budget(String, Option<Budget>),
    Limit(String, u64),
    Ceiling(String, u64),
    Pool(String, usize),
}

impl StateDoc {
    /// The swarm's state now.
    pub fn capture(state: &OpsState) -> Self {
        let mut quotas: Vec<QuotaState> = state
            .swarm()
            .quotas()
            .reports()
            .into_iter()
            .map(|r| QuotaState {
                id: r.id.to_string(),
                limit: r.limit,
                borrow_ceiling: r.borrow_ceiling,
            })
            .collect();
        quotas.sort_by(|a, b| a.id.cmp(&b.id));
        let mut budgets: Vec<Budget> = state
            .swarm()
            .ledger()
            .budget_statuses()
            .into_iter()
            .map(|s| s.budget)
            .collect();
        budgets.sort_by(|a, b| a.id.cmp(&b.id));
        let pools = state
            .pools()
            .iter()
            .map(|(name, p)| PoolState {
                name: name.clone(),
                size: p.pool.size(),
            })
            .collect();
        Self {
            format: STATE_FORMAT.to_string(),
            version: STATE_VERSION,
            quotas,
            budgets,
            pools,
        }
    }

    /// Every problem that keeps this document from being imported into
    /// `state`, or none.
    pub fn check(&self, state: &OpsState) -> Result<(), StateError> {
        let mut problems = Vec::new();
        if self.format != STATE_FORMAT {
            problems.push(format!("format is {:?}, not {STATE_FORMAT:?}", self.format));
        }
        if self.version != STATE_VERSION {
            problems.push(format!(
                "version {} is not one this build reads ({STATE_VERSION})",
                self.version
            ));
        }
        let quotas = state.swarm().quotas();
        let mut seen = BTreeSet::new();
        for q in &self.quotas {
            if !seen.insert(q.id.as_str()) {
                problems.push(format!("quota {} is listed twice", q.id));
            }
            match quotas.report(&q.id) {
                Err(e) => problems.push(e.to_string()),
                Ok(report) => {
                    if report.parent.is_none() && q.borrow_ceiling > 0 {
                        problems.push(format!("quota {} is a root: its borrow_ceiling must be 0", q.id));
                    }
                }
            }
            if q.limit == 0 || q.limit > MAX_QUOTA_AMOUNT {
                problems.push(format!(
                    "quota {}: limit {} is not 1 to {MAX_QUOTA_AMOUNT}",
                    q.id, q.limit
                ));
            }
            if q.borrow_ceiling > MAX_QUOTA_AMOUNT {
                problems.push(format!(
                    "quota {}: borrow_ceiling {} is above {MAX_QUOTA_AMOUNT}",
                    q.id, q.borrow_ceiling
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for b in &self.budgets {
            if !seen.insert(b.id.as_str()) {
                problems.push(format!("budget {} is listed twice", b.id));
            }
            if let Err(e) = b.validate() {
                problems.push(e.to_string());
            }
        }
        let mut seen = BTreeSet::new();
        for p in &self.pools {
            if !seen.insert(p.name.as_str()) {
                problems.push(format!("pool {} is listed twice", p.name));
            }
            if !state.pools().contains_key(&p.name) {
                problems.push(format!("no pool named {} in [[run.pools]]", p.name));
            }
            if p.size == 0 || p.size > MAX_RUN_POOL_SIZE as usize {
                problems.push(format!(
                    "pool {}: size {} is not 1 to {MAX_RUN_POOL_SIZE}",
                    p.name, p.size
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StateError::Invalid(problems))
        }
    }

    /// Checks the document, then sets budgets, quotas and pool sizes;
    /// undoes what it set if a step fails.
    pub async fn apply(&self, state: &OpsState) -> Result<(), StateError> {
        self.check(state)?;
        let mut done = Vec::new();
        match self.apply_steps(state, &mut done).await {
            Ok(()) => Ok(()),
            Err((step, reason)) => {
                let mut undo_failed = Vec::new();
                for undo in done.into_iter().rev() {
                    if let Err(e) = undo_step(state, undo).await {
                        undo_failed.push(e);
                    }
                }
                Err(StateError::Failed {
                    step,
                    reason,
                    undo_failed,
                })
            }
        }
    }

    async fn apply_steps(&self, state: &OpsState, done: &mut Vec<Undo>) -> Result<(), (String, String)> {
        let swarm = state.swarm();
        let ledger = swarm.ledger();
        for b in &self.budgets {
            let before = ledger.budget_status(&b.id).ok().map(|s| s.budget);
            let step = || format!("budget {}", b.id);
            ledger
                .put_budget(b.clone())
                .await
                .map_err(|e| (step(), e.to_string()))?;
            done.push(Undo::Budget(b.id.clone(), before));
        }
        let quotas = swarm.quotas();
        for q in &self.quotas {
            let step = || format!("quota {}", q.id);
            let limit = quotas
                .adjust(q.id.as_str(), q.limit)
                .await
                .map_err(|e| (step(), e.to_string()))?;
            done.push(Undo::Limit(q.id.clone(), limit));
            let ceiling = quotas
                .set_borrow_ceiling(q.id.as_str(), q.borrow_ceiling)
                .await
                .map_err(|e| (step(), e.to_string()))?;
            done.push(Undo::Ceiling(q.id.clone(), ceiling));
        }
        for p in &self.pools {
            let pool = &state.pools()[&p.name];
            let before = pool.pool.size();
            pool.resize(swarm, p.size)
                .await
                .map_err(|e| (format!("pool {}", p.name), e.to_string()))?;
            done.push(Undo::Pool(p.name.clone(), before));
        }
        Ok(())
    }
}

async fn undo_step(state: &OpsState, undo: Undo) -> Result<(), String> {
    let swarm = state.swarm();
    match undo {
        Undo::Budget(id, Some(b)) => swarm
            .ledger()
            .put_budget(b)
            .await
            .map_err(|e| format!("budget {id}: {e}")),
        Undo::Budget(id, None) => swarm
            .ledger()
            .remove_budget(&id)
            .await
            .map_err(|e| format!("budget {id}: {e}")),
        Undo::Limit(id, limit) => swarm
            .quotas()
            .adjust(id.as_str(), limit)
            .await
            .map(drop)
            .map_err(|e| format!("quota {id}: {e}")),
        Undo::Ceiling(id, c) => swarm
            .quotas()
            .set_borrow_ceiling(id.as_str(), c)
            .await
            .map(drop)
            .map_err(|e| format!("quota {id}: {e}")),
        Undo::Pool(name, size) => match state.pools().get(&name) {
            Some(p) => p
                .resize(swarm, size)
                .await
                .map(drop)
                .map_err(|e| format!("pool {name}: {e}")),
            None => Err(format!("pool {name}: gone")),
        },
    }
}
