//! The data plane: [`QuotaHandle`] charges and releases lock-free, and is
//! the quota keeper's [`SpendGate`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendHold, SpendRefused, UsageMeta};

use super::cell::{Charged, Now, QuotaNode, Refusal};
use super::model::{MAX_QUOTA_AMOUNT, MAX_QUOTA_DEPTH, QuotaError, QuotaId, QuotaReport, QuotaTreeReport};
use super::table::{Shared, Snapshot, check_amount};

/// A cloneable, lock-free handle on a quota tree: charges and releases go
/// straight to the quotas' atomic counters, never through the keeper actor.
///
/// `try_consume(quota, n)` charges `n` to the quota and every ancestor up
/// to its root, or to none of them: levels are charged leaf first by
/// compare-and-swap, and if one refuses, those already charged are given
/// back before the call returns. A concurrent charge may therefore be
/// refused because of another's charge that is then rolled back; the error
/// is always on the side of refusing, never of exceeding a limit.
///
/// ```
/// use nexus_swarm_actors::quota_keeper::{QuotaClock, QuotaSpec, QuotaTable};
/// use nexus_swarm_runtime::resources::ResourceKind::LlmRequests;
///
/// let mut table = QuotaTable::new(QuotaClock::manual().0);
/// table.define(QuotaSpec::root("all", LlmRequests, 10)).unwrap();
/// let quotas = table.handle();
/// let all = quotas.resolve("all").unwrap(); // skips the lookup by name
/// all.try_consume(4).unwrap();
/// quotas.release("all", 1).unwrap();
/// assert_eq!(quotas.report("all").unwrap().current, 3);
/// ```
#[derive(Clone)]
pub struct QuotaHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for QuotaHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaHandle").field("shared", &self.shared).finish()
    }
}

/// A quota resolved once by [`QuotaHandle::resolve`]: charges through it
/// skip the lookup by name. Quotas are never removed, so it stays valid.
#[derive(Clone)]
pub struct QuotaRef {
    node: Arc<QuotaNode>,
    shared: Arc<Shared>,
}

impl fmt::Debug for QuotaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QuotaRef").field(&self.node.id).finish()
    }
}

impl QuotaRef {
    /// The quota's id.
    pub fn id(&self) -> &QuotaId {
        &self.node.id
    }

    /// Charges `amount` to this quota and its ancestors, or to none.
    #[inline]
    pub fn try_consume(&self, amount: u64) -> Result<(), QuotaError> {
        charge_path(&self.shared, &self.node, amount)
    }

    /// Gives back `amount` (see [`QuotaHandle::release`]).
    pub fn release(&self, amount: u64) -> Result<(), QuotaError> {
        release_path(&self.shared, &self.node, amount)
    }
}

/// A spend-gate reservation in flight: what was charged, where.
#[derive(Debug)]
pub(crate) struct Hold {
    meta: UsageMeta,
    charges: Vec<HeldCharge>,
}

#[derive(Debug)]
struct HeldCharge {
    node: Arc<QuotaNode>,
    amount: u64,
    tag: u16,
    borrowing: bool,
}

impl QuotaHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Charges `amount` (1 to [`MAX_QUOTA_AMOUNT`]) to `quota` and every
    /// ancestor, or to none of them.
    #[inline]
    pub fn try_consume(&self, quota: &str, amount: u64) -> Result<(), QuotaError> {
        self.shared
            .with_snapshot(|snap| match snap.nodes.get(quota) {
                Some(node) => charge_boxed(&self.shared, node, amount),
                None => Err(Box::new(QuotaError::UnknownQuota(QuotaId::new(quota)))),
            })
            .map_err(|e| *e)
    }

    /// Gives back `amount` to `quota` and its ancestors. Refused, changing
    /// nothing, if the quota has less than `amount` in use in the current
    /// period (what a period reset dropped cannot be released). Ancestors
    /// reset by their own periods give back what they still count.
    pub fn release(&self, quota: &str, amount: u64) -> Result<(), QuotaError> {
        self.shared.with_snapshot(|snap| match snap.nodes.get(quota) {
            Some(node) => release_path(&self.shared, node, amount),
            None => Err(QuotaError::UnknownQuota(QuotaId::new(quota))),
        })
    }

    /// Resolves `quota` once, for charges without the lookup by name.
    pub fn resolve(&self, quota: &str) -> Result<QuotaRef, QuotaError> {
        Ok(QuotaRef {
            node: self.node(quota)?,
            shared: Arc::clone(&self.shared),
        })
    }

    /// One quota's usage, read lock-free.
    pub fn report(&self, quota: &str) -> Result<QuotaReport, QuotaError> {
        self.shared.report(quota)
    }

    /// Every quota's usage, by id.
    pub fn reports(&self) -> Vec<QuotaReport> {
        self.shared.reports()
    }

    /// Every tree's usage, roots by id.
    pub fn tree(&self) -> Vec<QuotaTreeReport> {
        self.shared.tree()
    }

    /// Spend-gate holds not yet settled or released.
    pub fn holds_in_flight(&self) -> usize {
        self.shared.holds.len()
    }

    fn node(&self, quota: &str) -> Result<Arc<QuotaNode>, QuotaError> {
        self.shared
            .snapshot
            .load()
            .nodes
            .get(quota)
            .cloned()
            .ok_or_else(|| QuotaError::UnknownQuota(QuotaId::new(quota)))
    }
}

/// What to do after a refusal was handled.
enum Next {
    /// A stale recall was lifted: try once more.
    Retry,
    Fail(QuotaError),
}

/// [`charge_boxed`] with the error unboxed.
#[inline]
fn charge_path(shared: &Shared, node: &Arc<QuotaNode>, amount: u64) -> Result<(), QuotaError> {
    charge_boxed(shared, node, amount).map_err(|e| *e)
}

/// The hot path: leaf first, then each ancestor, one CAS per level; on a
/// refusal the levels already charged are given back. The error is boxed
/// (built on the cold path only) so that the success path moves 8 bytes,
/// not a whole error, through the callers' closures.
#[inline]
fn charge_boxed(shared: &Shared, node: &Arc<QuotaNode>, amount: u64) -> Result<(), Box<QuotaError>> {
    if amount == 0 || amount > MAX_QUOTA_AMOUNT {
        return Err(Box::new(bad_amount(&node.id, amount)));
    }
    // An amount no level could ever hold changes nothing: no level is
    // charged (and rolled back), and no lender recalls its loans for it.
    if let Some(level) = std::iter::once(node)
        .chain(node.path.iter())
        .find(|l| amount > l.capacity())
    {
        return Err(Box::new(above_capacity(level, amount)));
    }
    let mut retried = false;
    loop {
        let mut now = Now::new(&shared.clock);
        let mut charged = [Charged::default(); MAX_QUOTA_DEPTH];
        let mut refused = None;
        for (i, level) in std::iter::once(node).chain(node.path.iter()).enumerate() {
            match level.try_add(amount, &mut now) {
                Ok(c) => charged[i] = c,
                Err(r) => {
                    refused = Some((i, r));
                    break;
                }
            }
        }
        let Some((at, refusal)) = refused else {
            return Ok(());
        };
        match path_refused(shared, node, amount, &charged[..at], at, refusal, &mut now) {
            Next::Retry if !retried => retried = true,
            Next::Retry => return Err(Box::new(recalled_error(node, at))),
            Next::Fail(e) => return Err(Box::new(e)),
        }
    }
}

#[cold]
#[inline(never)]
fn above_capacity(level: &QuotaNode, amount: u64) -> QuotaError {
    QuotaError::AboveCapacity {
        quota: level.id.clone(),
        kind: level.kind.clone(),
        limit: level.limit(),
        borrow_ceiling: level.ceiling(),
        requested: amount,
    }
}

#[cold]
#[inline(never)]
fn bad_amount(quota: &QuotaId, amount: u64) -> QuotaError {
    check_amount(quota, amount).expect_err("called for a bad amount only")
}

fn level_of(node: &Arc<QuotaNode>, i: usize) -> &Arc<QuotaNode> {
    if i == 0 { node } else { &node.path[i - 1] }
}

fn recalled_error(node: &Arc<QuotaNode>, at: usize) -> QuotaError {
    let level = level_of(node, at);
    QuotaError::BorrowRecalled {
        quota: level.id.clone(),
        lender: level.path.first().map_or_else(|| level.id.clone(), |p| p.id.clone()),
    }
}

#[cold]
#[inline(never)]
fn path_refused(
    shared: &Shared,
    node: &Arc<QuotaNode>,
    amount: u64,
    charged: &[Charged],
    at: usize,
    refusal: Refusal,
    now: &mut Now<'_>,
) -> Next {
    for (i, c) in charged.iter().enumerate() {
        level_of(node, i).rollback(amount, c.tag);
    }
    let level = level_of(node, at);
    let snap = shared.snapshot.load();
    match refusal {
        Refusal::Exhausted { used, limit, ceiling } => {
            let own_share = at == 0 || !charged[at - 1].borrowing;
            recall_if_lent(&snap, level, own_share, now);
            Next::Fail(QuotaError::Exhausted {
                quota: level.id.clone(),
                kind: level.kind.clone(),
                limit,
                borrow_ceiling: ceiling,
                used,
                requested: amount,
            })
        }
        Refusal::Recalled => {
            if lift_recall_if_repaid(&snap, level, now) {
                Next::Retry
            } else {
                Next::Fail(recalled_error(node, at))
            }
        }
    }
}

/// The lender needs its capacity: a charge within its own share (not
/// borrowing at the level below) was refused at `level` while some child of
/// `level` is above its limit. Those loans are recalled: no child may borrow
/// from `level` until every loan is repaid (by releases or period resets).
fn recall_if_lent(snap: &Snapshot, level: &QuotaNode, own_share: bool, now: &mut Now<'_>) {
    if own_share && !level.recalling() && snap.has_borrowing_child(&level.id, now) {
        tracing::debug!(quota = %level.id, "recalling capacity lent to children");
        level.set_recalling(true);
    }
}

/// A borrow was refused by the parent's recall: if no child borrows any
/// more, the recall is over. Returns whether it was lifted.
fn lift_recall_if_repaid(snap: &Snapshot, borrower: &QuotaNode, now: &mut Now<'_>) -> bool {
    let Some(lender) = borrower.path.first() else {
        return false;
    };
    if snap.has_borrowing_child(&lender.id, now) {
        return false;
    }
    lender.set_recalling(false);
    true
}

fn release_path(shared: &Shared, node: &Arc<QuotaNode>, amount: u64) -> Result<(), QuotaError> {
    check_amount(&node.id, amount)?;
    let mut now = Now::new(&shared.clock);
    node.release_checked(amount, &mut now)
        .map_err(|used| QuotaError::ReleaseExceedsUsage {
            quota: node.id.clone(),
            used,
            amount,
        })?;
    for level in node.path.iter() {
        level.release_saturating(amount, &mut now);
    }
    Ok(())
}

/// The quotas a spend of `amounts` by `meta` charges: for each kind, the
/// most specific quotas whose selectors match, plus their ancestors, each
/// once; deepest first.
fn plan<'a>(
    snap: &Snapshot,
    meta: &UsageMeta,
    amounts: impl Iterator<Item = (&'a ResourceKind, u64)>,
) -> Vec<(Arc<QuotaNode>, u64)> {
    let mut plan: Vec<(Arc<QuotaNode>, u64)> = Vec::new();
    for (kind, amount) in amounts {
        for target in snap.matching(kind, meta) {
            for level in std::iter::once(&target).chain(target.path.iter()) {
                if !plan.iter().any(|(n, _)| Arc::ptr_eq(n, level)) {
                    plan.push((Arc::clone(level), amount));
                }
            }
        }
    }
    plan.sort_by_key(|(n, _)| std::cmp::Reverse(n.depth()));
    plan
}

fn refused_spend(node: &QuotaNode, requested: u64, now: &mut Now<'_>) -> SpendRefused {
    SpendRefused::QuotaExceeded {
        quota: node.id.to_string(),
        kind: node.kind.clone(),
        limit: node.limit(),
        used: node.used(now),
        requested,
    }
}

/// # Mapping usage to quotas
///
/// A reservation for a request described by a [`UsageMeta`] charges, for
/// each kind in the estimate, the quotas of that kind whose
/// [`QuotaSelector`](super::QuotaSelector) matches the meta, keeping only
/// the most specific ones (a matching quota that is an ancestor of another
/// match is charged through it), and every ancestor of those, each quota
/// once. Quotas without a selector are never charged by the gate. Kinds
/// that no quota selects are not limited here. All or nothing: a refusal
/// anywhere gives back everything charged for the reservation.
///
/// `settle` gives back what the actual amounts leave unused, charges what
/// they exceed without a limit check (the spend already happened; the
/// overshoot is bounded by the estimate's error), and charges kinds that
/// were not estimated to the quotas the meta selects. A hold made in a
/// period that has since reset gives nothing back to the new period.
impl SpendGate for QuotaHandle {
    fn reserve(&self, meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused> {
        let shared = &self.shared;
        let mut retried = false;
        'attempt: loop {
            let snap = shared.snapshot.load();
            let mut now = Now::new(&shared.clock);
            let plan = plan(&snap, meta, estimate.iter());
            // An estimate that some quota could never hold is refused before
            // anything is charged: no rollback, no peak, no recall.
            if let Some((node, amount)) = plan.iter().find(|(n, a)| *a > n.capacity()) {
                return Err(refused_spend(node, *amount, &mut now));
            }
            let mut held: Vec<HeldCharge> = Vec::with_capacity(plan.len());
            for (node, amount) in &plan {
                let refusal = match node.try_add(*amount, &mut now) {
                    Ok(c) => {
                        held.push(HeldCharge {
                            node: Arc::clone(node),
                            amount: *amount,
                            tag: c.tag,
                            borrowing: c.borrowing,
                        });
                        continue;
                    }
                    Err(r) => r,
                };
                for h in &held {
                    h.node.rollback(h.amount, h.tag);
                }
                match refusal {
                    Refusal::Exhausted { .. } => {
                        let own_share = !held
                            .iter()
                            .any(|h| h.borrowing && h.node.parent.as_ref() == Some(&node.id));
                        recall_if_lent(&snap, node, own_share, &mut now);
                    }
                    Refusal::Recalled => {
                        if !retried && lift_recall_if_repaid(&snap, node, &mut now) {
                            retried = true;
                            continue 'attempt;
                        }
                    }
                }
                return Err(refused_spend(node, *amount, &mut now));
            }
            let id = shared.next_hold.fetch_add(1, Ordering::Relaxed);
            shared.holds.insert(
                id,
                Hold {
                    meta: meta.clone(),
                    charges: held,
                },
            );
            return Ok(SpendHold::new(id, estimate.clone()));
        }
    }

    fn settle(&self, hold: SpendHold, actual: &ResourceVector) {
        let Some((_, record)) = self.shared.holds.remove(&hold.id()) else {
            tracing::warn!(hold = hold.id(), "settle of a hold this gate does not hold");
            return;
        };
        let mut now = Now::new(&self.shared.clock);
        for c in &record.charges {
            let used = actual.get(&c.node.kind);
            if used < c.amount {
                c.node.undo(c.amount - used, c.tag);
            } else if used > c.amount {
                c.node.force_add(used - c.amount, &mut now);
            }
        }
        let unestimated = actual.iter().filter(|(k, _)| hold.estimate().get(k) == 0);
        let snap = self.shared.snapshot.load();
        for (node, amount) in plan(&snap, &record.meta, unestimated) {
            node.force_add(amount, &mut now);
        }
    }

    fn release(&self, hold: SpendHold) {
        let Some((_, record)) = self.shared.holds.remove(&hold.id()) else {
            tracing::warn!(hold = hold.id(), "release of a hold this gate does not hold");
            return;
        };
        for c in &record.charges {
            c.node.undo(c.amount, c.tag);
        }
    }
}
