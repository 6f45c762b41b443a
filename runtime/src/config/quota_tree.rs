//! The rules of a quota tree, written once and run twice: by
//! [`QuotasConfig::validate`](super::QuotasConfig::validate) when a
//! configuration is checked, and by the quota keeper when it defines quotas
//! at run time. So `nexus config check` refuses exactly the trees the keeper
//! would refuse at start.
//!
//! A batch of quotas is checked against itself and against the quotas
//! defined before it (none for a configuration): each entry alone (id,
//! limit, borrow ceiling, period), then ids unique, every parent known,
//! parents acyclic, a child of its parent's kind, and no deeper than
//! [`MAX_QUOTA_DEPTH`]. The first problem found is returned with the index
//! of the entry at fault; [`check_quota_tree`] otherwise returns the batch
//! in an order where every parent comes before its children.
//!
//! ```
//! use nexus_swarm_runtime::config::{QuotaEntry, QuotaTreeError, check_quota_tree};
//!
//! let root = QuotaEntry::new("system", None, "cost", 1000);
//! let child = QuotaEntry::new("acme", Some("system"), "cost", 300);
//! assert_eq!(check_quota_tree(&[child, root], |_| None).unwrap(), vec![1, 0]);
//!
//! let stray = QuotaEntry::new("acme", Some("nobody"), "cost", 300);
//! let err = check_quota_tree(&[stray], |_| None).unwrap_err();
//! assert!(matches!(err, QuotaTreeError::UnknownParent { index: 0, .. }));
//! assert_eq!(err.field(), "parent");
//! ```

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::scheduling::{MAX_QUOTA_AMOUNT, MIN_QUOTA_PERIOD};

/// Deepest quota tree accepted (levels from a root to a leaf, both
/// included). Charges keep per-level bookkeeping in a fixed array of this
/// size, so the hot path never allocates.
pub const MAX_QUOTA_DEPTH: usize = 8;

/// One quota of a batch, as the tree rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaEntry<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its parent's id, if any.
    pub parent: Option<&'a str>,
    /// The name of the resource kind it counts.
    pub kind: &'a str,
    /// Its limit.
    pub limit: u64,
    /// How far above its limit it may borrow from its parent.
    pub borrow_ceiling: u64,
    /// Its period, if usage resets.
    pub period: Option<Duration>,
}

impl<'a> QuotaEntry<'a> {
    /// An entry with no borrow ceiling and no period.
    pub fn new(id: &'a str, parent: Option<&'a str>, kind: &'a str, limit: u64) -> Self {
        Self {
            id,
            parent,
            kind,
            limit,
            borrow_ceiling: 0,
            period: None,
        }
    }
}

/// A quota defined before the batch, as a parent of its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinedQuota<'a> {
    /// The name of the kind it counts.
    pub kind: &'a str,
    /// Its depth (a root is at 1).
    pub depth: usize,
}

/// A batch of quotas breaks a rule of the tree. `index` is the position of
/// the entry at fault in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaTreeError {
    /// An id is empty or only whitespace.
    #[error("a quota id must not be empty")]
    EmptyId {
        /// The entry.
        index: usize,
    },
    /// A limit of zero.
    #[error("quota {id:?} has a limit of zero")]
    ZeroLimit {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
    },
    /// A limit or borrow ceiling above [`MAX_QUOTA_AMOUNT`].
    #[error("quota {id:?} {field} {amount} is above the maximum {max}")]
    AmountTooLarge {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
        /// Which amount: `limit` or `borrow_ceiling`.
        field: &'static str,
        /// The amount given.
        amount: u64,
        /// The maximum.
        max: u64,
    },
    /// A root with a borrow ceiling: it has no parent to borrow from.
    #[error("quota {id:?} is a root and cannot borrow")]
    RootCannotBorrow {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
    },
    /// A period shorter than [`MIN_QUOTA_PERIOD`].
    #[error("quota {id:?} period {period:?} is shorter than {min:?}")]
    PeriodTooShort {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
        /// The period given.
        period: Duration,
        /// The minimum.
        min: Duration,
    },
    /// The id is defined already, or given twice in the batch.
    #[error("quota {id:?} is already defined")]
    AlreadyDefined {
        /// The entry (the second one, when the batch repeats an id).
        index: usize,
        /// Its id.
        id: String,
        /// The earlier entry of the batch with this id; `None` when it was
        /// defined before the batch.
        first: Option<usize>,
    },
    /// A parent that is neither in the batch nor defined.
    #[error("quota {id:?} names unknown parent {parent:?}")]
    UnknownParent {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
        /// The missing parent.
        parent: String,
    },
    /// Parents form a cycle (a quota its own parent is the shortest one).
    #[error("quota parents form a cycle: {}", path.join(" -> "))]
    Cycle {
        /// An entry on the cycle.
        index: usize,
        /// The ids around the cycle; the last is the first again.
        path: Vec<String>,
    },
    /// A child counts another kind than its parent.
    #[error("quota {id:?} counts {kind} but its parent {parent:?} counts {parent_kind}")]
    KindMismatch {
        /// The child.
        index: usize,
        /// Its id.
        id: String,
        /// Its kind.
        kind: String,
        /// The parent's id.
        parent: String,
        /// The parent's kind.
        parent_kind: String,
        /// The parent's entry in the batch; `None` when it was defined
        /// before the batch.
        parent_index: Option<usize>,
    },
    /// The tree would be deeper than [`MAX_QUOTA_DEPTH`].
    #[error("quota {id:?} would be at depth {depth}, deeper than {max}")]
    TooDeep {
        /// The entry.
        index: usize,
        /// Its id.
        id: String,
        /// Its depth (a root is at 1).
        depth: usize,
        /// The maximum.
        max: usize,
    },
}

impl QuotaTreeError {
    /// The index in the batch of the entry at fault.
    pub fn index(&self) -> usize {
        match self {
            Self::EmptyId { index }
            | Self::ZeroLimit { index, .. }
            | Self::AmountTooLarge { index, .. }
            | Self::RootCannotBorrow { index, .. }
            | Self::PeriodTooShort { index, .. }
            | Self::AlreadyDefined { index, .. }
            | Self::UnknownParent { index, .. }
            | Self::Cycle { index, .. }
            | Self::KindMismatch { index, .. }
            | Self::TooDeep { index, .. } => *index,
        }
    }

    /// The field of the entry at fault (`id`, `parent`, `kind`, `limit`,
    /// `borrow_ceiling` or `period`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyId { .. } | Self::AlreadyDefined { .. } => "id",
            Self::ZeroLimit { .. } => "limit",
            Self::AmountTooLarge { field, .. } => field,
            Self::RootCannotBorrow { .. } => "borrow_ceiling",
            Self::PeriodTooShort { .. } => "period",
            Self::UnknownParent { .. } | Self::Cycle { .. } | Self::TooDeep { .. } => "parent",
            Self::KindMismatch { .. } => "kind",
        }
    }
}

/// Checks one entry alone: id, limit, borrow ceiling, period.
fn check_entry(index: usize, q: &QuotaEntry<'_>) -> Result<(), QuotaTreeError> {
    let id = || q.id.to_string();
    if q.id.trim().is_empty() {
        return Err(QuotaTreeError::EmptyId { index });
    }
    if q.limit == 0 {
        return Err(QuotaTreeError::ZeroLimit { index, id: id() });
    }
    for (field, amount) in [("limit", q.limit), ("borrow_ceiling", q.borrow_ceiling)] {
        if amount > MAX_QUOTA_AMOUNT {
            return Err(QuotaTreeError::AmountTooLarge {
                index,
                id: id(),
                field,
                amount,
                max: MAX_QUOTA_AMOUNT,
            });
        }
    }
    if q.parent.is_none() && q.borrow_ceiling > 0 {
        return Err(QuotaTreeError::RootCannotBorrow { index, id: id() });
    }
    if let Some(period) = q.period.filter(|p| *p < MIN_QUOTA_PERIOD) {
        return Err(QuotaTreeError::PeriodTooShort {
            index,
            id: id(),
            period,
            min: MIN_QUOTA_PERIOD,
        });
    }
    if q.parent == Some(q.id) {
        return Err(QuotaTreeError::Cycle {
            index,
            path: vec![id(), id()],
        });
    }
    Ok(())
}

/// Checks a batch of quotas against the rules of the tree. `defined` looks
/// up a quota defined before the batch (return `None` for every id when
/// there is none). Returns the batch's indices ordered parents first, or
/// the first problem found.
pub fn check_quota_tree<'d>(
    batch: &[QuotaEntry<'_>],
    defined: impl Fn(&str) -> Option<DefinedQuota<'d>>,
) -> Result<Vec<usize>, QuotaTreeError> {
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    for (index, q) in batch.iter().enumerate() {
        check_entry(index, q)?;
        let first = by_id.get(q.id).copied();
        if first.is_some() || defined(q.id).is_some() {
            return Err(QuotaTreeError::AlreadyDefined {
                index,
                id: q.id.to_string(),
                first,
            });
        }
        by_id.insert(q.id, index);
    }
    for (index, q) in batch.iter().enumerate() {
        let Some(parent) = q.parent else { continue };
        if !by_id.contains_key(parent) && defined(parent).is_none() {
            return Err(QuotaTreeError::UnknownParent {
                index,
                id: q.id.to_string(),
                parent: parent.to_string(),
            });
        }
    }
    let order = topological(batch, &by_id)?;

    // Depth and kind, parents first.
    let mut depth = vec![0usize; batch.len()];
    for &index in &order {
        let q = &batch[index];
        let Some(parent) = q.parent else {
            depth[index] = 1;
            continue;
        };
        let (parent_kind, parent_depth, parent_index) = match by_id.get(parent) {
            Some(&p) => (batch[p].kind, depth[p], Some(p)),
            None => {
                let d = defined(parent).expect("parents are known: checked above");
                (d.kind, d.depth, None)
            }
        };
        if parent_kind != q.kind {
            return Err(QuotaTreeError::KindMismatch {
                index,
                id: q.id.to_string(),
                kind: q.kind.to_string(),
                parent: parent.to_string(),
                parent_kind: parent_kind.to_string(),
                parent_index,
            });
        }
        depth[index] = parent_depth + 1;
        if depth[index] > MAX_QUOTA_DEPTH {
            return Err(QuotaTreeError::TooDeep {
                index,
                id: q.id.to_string(),
                depth: depth[index],
                max: MAX_QUOTA_DEPTH,
            });
        }
    }
    Ok(order)
}

/// The batch's indices ordered parents first, or the first cycle found.
fn topological(batch: &[QuotaEntry<'_>], by_id: &HashMap<&str, usize>) -> Result<Vec<usize>, QuotaTreeError> {
    let mut done: HashSet<usize> = HashSet::with_capacity(batch.len());
    let mut order = Vec::with_capacity(batch.len());
    for start in 0..batch.len() {
        // Walk up through parents in this batch until one is done or
        // outside the batch; a repeat on the walk is a cycle.
        let mut chain: Vec<usize> = Vec::new();
        let mut cur = Some(start);
        while let Some(i) = cur {
            if done.contains(&i) {
                break;
            }
            if let Some(pos) = chain.iter().position(|&c| c == i) {
                let mut path: Vec<String> = chain[pos..].iter().map(|&c| batch[c].id.to_string()).collect();
                path.push(batch[i].id.to_string());
                return Err(QuotaTreeError::Cycle { index: i, path });
            }
            chain.push(i);
            cur = batch[i].parent.and_then(|p| by_id.get(p).copied());
        }
        for i in chain.into_iter().rev() {
            done.insert(i);
            order.push(i);
        }
    }
    Ok(order)
}
