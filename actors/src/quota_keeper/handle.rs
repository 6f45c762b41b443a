//! The data plane: [`QuotaHandle`] charges lock-free and hands back a
//! [`QuotaCharge`] receipt, the only way to release or settle the charge;
//! it is also the quota keeper's [`SpendGate`]. Its control-plane calls
//! (to the keeper actor) are in the parent module.

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
/// Reports read the same counters. Changes of structure (defining quotas,
/// adjusting limits and ceilings) and writes to the store are calls to the
/// keeper running on the tree, whichever instance runs now
/// ([`define`](Self::define), [`adjust`](Self::adjust), [`flush`](Self::flush), ...);
/// without a keeper they are [`QuotaError::Unavailable`].
///
/// `try_consume(quota, n)` charges `n` to the quota and every ancestor up
/// to its root, or to none of them: levels are charged leaf first by
/// compare-and-swap, and if one refuses, those already charged are given
/// back before the call returns. A concurrent charge may therefore be
/// refused because of another's charge that is then rolled back; the error
/// is always on the side of refusing, never of exceeding a limit.
///
/// A charge that succeeds returns a [`QuotaCharge`]: the receipt naming the
/// quota and the period of each level it charged. Releasing or settling it
/// ([`release`](Self::release), [`settle`](Self::settle)) consumes it, so a
/// charge is given back once, at the levels it was made at, and never
/// more than it took.
///
/// ```
/// use nexus_swarm_actors::quota_keeper::{QuotaClock, QuotaSpec, QuotaTable};
/// use nexus_swarm_runtime::resources::ResourceKind::LlmRequests;
///
/// let mut table = QuotaTable::new(QuotaClock::manual().0);
/// table.define(QuotaSpec::root("all", LlmRequests, 10)).unwrap();
/// let quotas = table.handle();
/// let all = quotas.resolve("all").unwrap(); // skips the lookup by name
/// let kept = all.try_consume(4).unwrap();
/// let estimate = quotas.try_consume("all", 5).unwrap();
/// quotas.settle(estimate, 2).unwrap(); // used 2 of the 5: 3 given back
/// assert_eq!(quotas.report("all").unwrap().current, 6);
/// drop(kept); // dropping a receipt keeps its charge
/// assert_eq!(quotas.report("all").unwrap().current, 6);
/// ```
#[derive(Clone)]
pub struct QuotaHandle {
    pub(super) shared: Arc<Shared>,
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

    /// Charges `amount` to this quota and its ancestors, or to none; the
    /// receipt releases or settles it (see [`QuotaHandle::try_consume`]).
    #[inline]
    pub fn try_consume(&self, amount: u64) -> Result<QuotaCharge, QuotaError> {
        charge_path(&self.shared, &self.node, amount)
    }

    /// Gives a charge back whole (see [`QuotaHandle::release`]).
    pub fn release(&self, charge: QuotaCharge) -> Result<(), QuotaError> {
        settle_charge(&self.shared, charge, 0)
    }

    /// Settles a charge at what was used (see [`QuotaHandle::settle`]).
    pub fn settle(&self, charge: QuotaCharge, used: u64) -> Result<(), QuotaError> {
        settle_charge(&self.shared, charge, used)
    }
}

/// The receipt of one successful charge: which quota of which tree, how
/// much, and the period each level was charged in. The only way to give a
/// charge back, so it cannot be given back at another level or twice.
///
/// - Move-only: neither `Clone` nor `Copy`. [`QuotaHandle::release`] and
///   [`QuotaHandle::settle`] (or the same on a [`QuotaRef`]) consume it.
///   Any handle on the tree that made it will do: the receipt, not the
///   handle, says where the charge is. A handle on another tree refuses it
///   with [`QuotaError::ForeignCharge`] and changes nothing.
/// - **Dropping a receipt keeps its charge.** The usage happened (or is
///   committed to); only an explicit release or settle gives any of it
///   back. So `quotas.try_consume(q, n)?;` is a plain, permanent charge.
/// - A level whose period has reset since the charge has nothing to give
///   back: the reset already dropped the charge there (its ancestors
///   without a period, or still in the same period, get theirs back).
///
/// Small (40 bytes) and free of reference counts, so taking one costs the
/// charge nothing.
///
/// Giving a charge back twice does not compile:
///
/// ```compile_fail,E0382
/// use nexus_swarm_actors::quota_keeper::{QuotaClock, QuotaSpec, QuotaTable};
/// use nexus_swarm_runtime::resources::ResourceKind::LlmRequests;
///
/// let mut table = QuotaTable::new(QuotaClock::manual().0);
/// table.define(QuotaSpec::root("all", LlmRequests, 10)).unwrap();
/// let quotas = table.handle();
/// let charge = quotas.try_consume("all", 1).unwrap();
/// quotas.release(charge).unwrap();
/// quotas.release(charge).unwrap(); // use of a moved value
/// ```
#[derive(Debug)]
pub struct QuotaCharge {
    /// The tree that made the charge (`Shared::tree`).
    tree: u64,
    /// The charged quota (`QuotaNode::index`); its ancestors follow from it.
    index: usize,
    amount: u64,
    /// The period tag each level was charged in, the quota first.
    tags: [u16; MAX_QUOTA_DEPTH],
}

impl QuotaCharge {
    /// The amount charged to the quota and each of its ancestors.
    pub fn amount(&self) -> u64 {
        self.amount
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
    /// ancestor, or to none of them. The receipt is the only way to give
    /// the charge back; dropping it keeps the charge (see [`QuotaCharge`]).
    ///
    /// The product's data-plane path: a lookup by name in this thread's
    /// cached snapshot of the tree, then one compare-and-swap per level.
    /// Nothing else is read on success; why a refused charge was refused
    /// (an amount some level can never hold, or one that does not fit now)
    /// is worked out only after the refusal.
    #[inline]
    pub fn try_consume(&self, quota: &str, amount: u64) -> Result<QuotaCharge, QuotaError> {
        self.shared
            .with_snapshot(|snap| match snap.nodes.get(quota) {
                Some(node) => charge_boxed(&self.shared, node, amount),
                None => Err(Box::new(QuotaError::UnknownQuota(QuotaId::new(quota)))),
            })
            .map_err(|e| *e)
    }

    /// Gives a charge back whole, at the quota and ancestors it was made
    /// at, in the periods it was made in. Refused with
    /// [`QuotaError::ForeignCharge`], changing nothing, if the charge was
    /// made on another tree.
    pub fn release(&self, charge: QuotaCharge) -> Result<(), QuotaError> {
        settle_charge(&self.shared, charge, 0)
    }

    /// Settles a charge at the amount actually `used`: what it leaves
    /// unused is given back (as [`release`](Self::release) does), and what
    /// it exceeds is charged to the same levels without a limit check (the
    /// usage already happened), saturating at [`MAX_QUOTA_AMOUNT`].
    pub fn settle(&self, charge: QuotaCharge, used: u64) -> Result<(), QuotaError> {
        settle_charge(&self.shared, charge, used)
    }

    /// The quota a charge was made to, if this handle's tree made it.
    pub fn quota_of(&self, charge: &QuotaCharge) -> Result<QuotaId, QuotaError> {
        self.shared
            .with_snapshot(|snap| charged_node(&self.shared, snap, charge).map(|n| n.id.clone()))
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
fn charge_path(shared: &Shared, node: &Arc<QuotaNode>, amount: u64) -> Result<QuotaCharge, QuotaError> {
    charge_boxed(shared, node, amount).map_err(|e| *e)
}

/// The hot path: leaf first, then each ancestor, one CAS per level; on a
/// refusal the levels already charged are given back, and only then is
/// the reason worked out (see [`path_refused`]). The error is boxed (built
/// on the cold path only) so that the success path moves the receipt, not
/// a whole error, through the callers' closures.
#[inline]
fn charge_boxed(shared: &Shared, node: &Arc<QuotaNode>, amount: u64) -> Result<QuotaCharge, Box<QuotaError>> {
    if amount == 0 || amount > MAX_QUOTA_AMOUNT {
        return Err(Box::new(bad_amount(&node.id, amount)));
    }
    let mut retried = false;
    loop {
        let mut now = Now::new(&shared.clock);
        let mut tags = [0u16; MAX_QUOTA_DEPTH];
        // Whether the level below the one being charged borrowed: what a
        // refusal needs to know to decide on a recall.
        let mut below_borrowing = false;
        let mut refused = None;
        for (i, level) in std::iter::once(node).chain(node.path.iter()).enumerate() {
            match level.try_add(amount, &mut now) {
                Ok(Charged { tag, borrowing }) => {
                    tags[i] = tag;
                    below_borrowing = borrowing;
                }
                Err(r) => {
                    refused = Some((i, r));
                    break;
                }
            }
        }
        let Some((at, refusal)) = refused else {
            return Ok(QuotaCharge {
                tree: shared.tree,
                index: node.index,
                amount,
                tags,
            });
        };
        let refusal = Refused {
            at,
            below_borrowing: at > 0 && below_borrowing,
            refusal,
        };
        match path_refused(shared, node, amount, &tags[..at], refusal, &mut now) {
            Next::Retry if !retried => retried = true,
            Next::Retry => return Err(Box::new(recalled_error(node, at))),
            Next::Fail(e) => return Err(Box::new(e)),
        }
    }
}

/// Where and why a charge was refused.
struct Refused {
    /// The level that refused (0: the quota itself).
    at: usize,
    /// Whether the level below it took the charge by borrowing.
    below_borrowing: bool,
    refusal: Refusal,
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

/// The cold path of a refused charge: gives back what the levels below
/// the refusing one took (never counted as their peak), then works out the
/// reason. An amount more than some level of the path can ever hold (its
/// limit plus its ceiling) is [`QuotaError::AboveCapacity`] and starts no
/// recall, whichever level refused first; otherwise the refusing level's
/// reason stands, and a lender refused within its own share recalls its
/// loans.
#[cold]
#[inline(never)]
fn path_refused(
    shared: &Shared,
    node: &Arc<QuotaNode>,
    amount: u64,
    charged_tags: &[u16],
    refused: Refused,
    now: &mut Now<'_>,
) -> Next {
    for (i, tag) in charged_tags.iter().enumerate() {
        level_of(node, i).rollback(amount, *tag);
    }
    if let Some(level) = std::iter::once(node)
        .chain(node.path.iter())
        .find(|l| amount > l.capacity())
    {
        return Next::Fail(above_capacity(level, amount));
    }
    let at = refused.at;
    let level = level_of(node, at);
    let snap = shared.snapshot.load();
    match refused.refusal {
        Refusal::Exhausted { used, limit, ceiling } => {
            recall_if_lent(&snap, level, !refused.below_borrowing, now);
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

/// The quota `charge` was made to, if `shared`'s tree made it. Nodes are
/// never removed and indices never reused, so a charge this tree made names
/// a node of every later snapshot.
fn charged_node<'s>(
    shared: &Shared,
    snap: &'s Snapshot,
    charge: &QuotaCharge,
) -> Result<&'s Arc<QuotaNode>, QuotaError> {
    let node = (charge.tree == shared.tree)
        .then(|| snap.by_index.get(charge.index))
        .flatten();
    node.ok_or(QuotaError::ForeignCharge {
        amount: charge.amount,
        charged_on: charge.tree,
        given_to: shared.tree,
    })
}

/// Settles `charge` at `used` (0 releases it whole): gives back what it
/// leaves unused in the periods it was charged in, charges what it exceeds
/// in the current ones.
fn settle_charge(shared: &Shared, charge: QuotaCharge, used: u64) -> Result<(), QuotaError> {
    shared.with_snapshot(|snap| {
        let node = charged_node(shared, snap, &charge)?;
        let levels = std::iter::once(node).chain(node.path.iter());
        if used < charge.amount {
            let back = charge.amount - used;
            for (level, tag) in levels.zip(charge.tags) {
                level.undo(back, tag);
            }
        } else if used > charge.amount {
            let mut now = Now::new(&shared.clock);
            for level in levels {
                level.force_add(used - charge.amount, &mut now);
            }
        }
        Ok(())
    })
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
/// [`Scope`](nexus_swarm_runtime::scope::Scope) matches the meta, keeping only
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
