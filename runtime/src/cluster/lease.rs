//! Leases of units of one cluster-wide limit (a global budget or quota):
//! the owner's [`LeaseBook`] and a holder's [`LeaseHolder`], as plain
//! synchronous types on an explicit clock.
//!
//! One node owns the limit (the ring's owner of its id). Every node that
//! spends against it, the owner included, holds a lease: a number of units
//! it may spend locally, without asking, until the lease expires. The book
//! grants leases only out of what is left (`limit - committed -
//! outstanding`), at most [`LeasePolicy::chunk`] units per holder, so as
//! long as the book lives, `committed + outstanding <= limit`, and what
//! holders spent is at most `committed + outstanding`.
//!
//! # Rules
//!
//! - A holder presents its lease with every request ([`LeaseBook::request`])
//!   together with the units it spent from it since its last report; the
//!   book commits them, tops the lease up to what the holder wants (at
//!   most `chunk`, at most what is left), renews its expiry to `now + ttl`
//!   and gives it a new id. A request is also the renewal.
//! - A holder returns its lease when idle ([`LeaseBook::release`]): the
//!   units it reports are committed, the rest goes back.
//! - Conservative rules: a lease that expires, and a lease the holder does
//!   not present (it lost the reply that granted it, or presents an older
//!   id), is counted as wholly spent. A report against an id the book no
//!   longer holds is ignored, since its lease was already counted whole.
//!   A report of more than the lease commits the lease: a holder spends
//!   only from its leases, so the rest came out of an earlier one, counted
//!   whole already. So `committed` may exceed what was really spent, never
//!   fall below it, and `committed + outstanding` never passes the limit
//!   (unless a restored book started above it).
//! - The holder's copy of a lease expires `ttl` after it *sent* the
//!   request, which is no later than the book's expiry (granted after the
//!   request arrived), so a holder never spends from a lease the book has
//!   already counted (on one machine's clock; across machines, allow for
//!   drift by giving holders a shorter `ttl`).
//! - When the owner dies, the next owner starts a book from the committed
//!   total it can know ([`LeaseBook::restore`]). The dead owner's
//!   outstanding leases are unknown to it while holders may still spend
//!   them until they expire: the overshoot of the limit is bounded by the
//!   leases outstanding at the time of the failover (at most `chunk` per
//!   holder).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Identifies one grant of a lease; a holder presents the id of the last
/// grant it received. Books of different epochs (one per owner) never
/// give the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct LeaseId {
    /// The epoch of the book that granted it.
    pub epoch: u64,
    /// Grants of that book before this one.
    pub seq: u64,
}

/// How a [`LeaseBook`] grants leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// Most units one holder may hold at once (at least 1).
    pub chunk: u64,
    /// How long a lease lives without a request (more than zero).
    pub ttl: Duration,
}

/// A lease request refused, or a policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// `chunk` was 0.
    #[error("a lease chunk must be at least 1 unit")]
    ZeroChunk,
    /// `ttl` was zero.
    #[error("a lease ttl must be more than zero")]
    ZeroTtl,
    /// Nothing is left to lease: `committed + outstanding` has reached the
    /// limit. The holder's reported units were committed all the same.
    #[error("limit {limit} reached: {committed} committed, {outstanding} leased out")]
    Exhausted {
        /// The limit.
        limit: u64,
        /// Units committed.
        committed: u64,
        /// Units leased to other holders.
        outstanding: u64,
    },
}

/// A lease granted (or topped up, or renewed) by [`LeaseBook::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The id to present with the next request.
    pub id: LeaseId,
    /// Units the holder may spend from now (what it had left plus the top-up).
    pub units: u64,
    /// How long the lease lives.
    pub ttl: Duration,
}

/// A lease the book counted as wholly spent: expired, or not presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forfeited {
    /// Its holder.
    pub holder: String,
    /// Units it held, now committed.
    pub units: u64,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: LeaseId,
    units: u64,
    expires: Instant,
}

/// The owner's book for one limit: the committed total and the lease each
/// holder has (see the [module](self) for its rules).
#[derive(Debug, Clone)]
pub struct LeaseBook {
    limit: u64,
    policy: LeasePolicy,
    committed: u64,
    outstanding: u64,
    leases: BTreeMap<String, Lease>,
    epoch: u64,
    next_seq: u64,
    window: u64,
}

impl LeaseBook {
    /// An empty book for `limit` units, of epoch 0.
    pub fn new(limit: u64, policy: LeasePolicy) -> Result<Self, LeaseError> {
        Self::restore(limit, policy, 0, 0)
    }

    /// A book of `epoch` (distinct for each owner in turn, so that a lease
    /// of an earlier owner is never taken for one of this book) that
    /// starts from `committed` units already spent (what a new owner knows
    /// of the limit), with no lease outstanding.
    pub fn restore(limit: u64, policy: LeasePolicy, committed: u64, epoch: u64) -> Result<Self, LeaseError> {
        if policy.chunk == 0 {
            return Err(LeaseError::ZeroChunk);
        }
        if policy.ttl.is_zero() {
            return Err(LeaseError::ZeroTtl);
        }
        Ok(Self {
            limit,
            policy,
            committed,
            outstanding: 0,
            leases: BTreeMap::new(),
            epoch,
            next_seq: 0,
            window: 0,
        })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units committed (reported spent, or counted spent).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Units held in leases.
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// The book's epoch (its leases' ids carry it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The book, counting window `window` (what it was restored with is
    /// committed in that window).
    pub fn with_window(mut self, window: u64) -> Self {
        self.window = window;
        self
    }

    /// The window the book counts (0 for a limit without windows).
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Starts window `window` if it is later than the book's (a limit per
    /// window of time, such as tokens per minute): nothing is committed in
    /// it yet, and the leases outstanding stay, so what their holders spend
    /// from them from now on counts in the new window. An earlier window is
    /// ignored.
    pub fn roll(&mut self, window: u64) {
        if window > self.window {
            self.window = window;
            self.committed = 0;
        }
    }

    /// Units committed or leased out: what the book has given away.
    pub fn reserved(&self) -> u64 {
        self.committed.saturating_add(self.outstanding)
    }

    /// Units neither committed nor leased.
    pub fn available(&self) -> u64 {
        self.limit
            .saturating_sub(self.committed.saturating_add(self.outstanding))
    }

    /// Units `holder` holds (0 without a lease).
    pub fn held_by(&self, holder: &str) -> u64 {
        self.leases.get(holder).map_or(0, |l| l.units)
    }

    /// Counts every lease expired at `now` as wholly spent.
    pub fn expire(&mut self, now: Instant) -> Vec<Forfeited> {
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(h, _)| h.clone())
            .collect();
        expired.into_iter().filter_map(|h| self.forfeit(&h)).collect()
    }

    fn forfeit(&mut self, holder: &str) -> Option<Forfeited> {
        let lease = self.leases.remove(holder)?;
        self.outstanding -= lease.units;
        self.committed = self.committed.saturating_add(lease.units);
        Some(Forfeited {
            holder: holder.to_string(),
            units: lease.units,
        })
    }

    /// Commits what `holder` reports spent from its lease `held` (`used`),
    /// then gives it a lease of `want` units (at most `chunk`, at most
    /// what is available, at least what it still had), renewed to
    /// `now + ttl`.
    ///
    /// A lease of the holder other than `held` is counted as wholly spent,
    /// and `used` is then ignored (see the [module](self)). Refused with
    /// [`LeaseError::Exhausted`] (the report committed all the same, and
    /// the holder left without a lease) when the lease would be empty.
    pub fn request(
        &mut self,
        holder: &str,
        held: Option<LeaseId>,
        used: u64,
        want: u64,
        now: Instant,
    ) -> Result<Grant, LeaseError> {
        self.expire(now);
        let kept = match self.leases.get(holder).copied() {
            Some(lease) if Some(lease.id) == held => {
                self.leases.remove(holder);
                self.outstanding -= lease.units;
                self.committed = self.committed.saturating_add(used.min(lease.units));
                lease.units.saturating_sub(used)
            }
            Some(_) => {
                self.forfeit(holder);
                0
            }
            None => 0,
        };
        // The units kept are available again (to this holder, as nothing
        // else happens in between). A lease is never cut below them: the
        // holder may have spent them while its request travelled.
        let units = want.min(self.policy.chunk).min(self.available()).max(kept);
        if units == 0 {
            return Err(LeaseError::Exhausted {
                limit: self.limit,
                committed: self.committed,
                outstanding: self.outstanding,
            });
        }
        let id = LeaseId {
            epoch: self.epoch,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.outstanding += units;
        self.leases.insert(
            holder.to_string(),
            Lease {
                id,
                units,
                expires: now + self.policy.ttl,
            },
        );
        Ok(Grant {
            id,
            units,
            ttl: self.policy.ttl,
        })
    }

    /// Ends `holder`'s lease `held`, committing the `used` units it
    /// reports; the rest is available again. Returns the units committed
    /// (0 for a report against a lease the book no longer holds, which was
    /// counted whole already; a different lease of the holder is counted
    /// whole).
    pub fn release(&mut self, holder: &str, held: LeaseId, used: u64, now: Instant) -> u64 {
        self.expire(now);
        match self.leases.get(holder).copied() {
            Some(lease) if lease.id == held => {
                self.leases.remove(holder);
                self.outstanding -= lease.units;
                self.committed = self.committed.saturating_add(used.min(lease.units));
                used.min(lease.units)
            }
            Some(_) => self.forfeit(holder).map_or(0, |f| f.units),
            None => 0,
        }
    }
}

/// When a [`LeaseHolder`] asks for more and gives its lease back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderPolicy {
    /// Units to ask for in each request (at least 1: 0 is taken as 1).
    pub want: u64,
    /// Ask for more when fewer units than this are left.
    pub low_water: u64,
    /// Ask for a renewal when the lease has less than this to live.
    pub renew_before: Duration,
    /// Give the lease back after this long without a spend.
    pub idle_after: Duration,
}

/// What a holder sends with a request or a release: its lease and what it
/// spent from it since its last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The lease it holds, if any.
    pub held: Option<LeaseId>,
    /// Units spent from it not yet reported.
    pub used: u64,
    sent_at: Instant,
}

/// A spend refused by a [`LeaseHolder`]: not enough units left in a live
/// lease. The caller asks the owner for more, or refuses the spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} units wanted, {left} left in the lease")]
pub struct NotLeased {
    /// Units asked for.
    pub wanted: u64,
    /// Units left in a live lease (0 without one).
    pub left: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    id: LeaseId,
    left: u64,
    expires: Instant,
}

/// A node's side of one limit: spends locally from its lease, and says
/// when to ask the owner for more or give the lease back.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    policy: HolderPolicy,
    lease: Option<Held>,
    unreported: u64,
    last_spend: Option<Instant>,
}

impl LeaseHolder {
    /// A holder without a lease.
    pub fn new(policy: HolderPolicy) -> Self {
        Self {
            policy: HolderPolicy {
                want: policy.want.max(1),
                ..policy
            },
            lease: None,
            unreported: 0,
            last_spend: None,
        }
    }

    /// Units left in a lease live at `now`.
    pub fn left(&self, now: Instant) -> u64 {
        self.lease.filter(|l| now < l.expires).map_or(0, |l| l.left)
    }

    /// Spends `amount` units from the lease, if it is live and holds them.
    pub fn spend(&mut self, amount: u64, now: Instant) -> Result<(), NotLeased> {
        let left = self.left(now);
        match &mut self.lease {
            Some(lease) if amount <= left => {
                lease.left -= amount;
                self.unreported += amount;
                self.last_spend = Some(now);
                Ok(())
            }
            _ => Err(NotLeased { wanted: amount, left }),
        }
    }

    /// Puts back up to `amount` units spent from the current lease and not
    /// yet reported (a hold settled for less than it reserved); returns the
    /// units put back. Units already reported stay committed.
    pub fn refund(&mut self, amount: u64) -> u64 {
        let Some(lease) = &mut self.lease else {
            return 0;
        };
        let back = amount.min(self.unreported);
        lease.left += back;
        self.unreported -= back;
        back
    }

    /// Whether to ask the owner now: no live lease, fewer than `low_water`
    /// units left, or less than `renew_before` to live.
    pub fn wants_more(&self, now: Instant) -> bool {
        match self.lease {
            Some(l) if now < l.expires => {
                l.left < self.policy.low_water || l.expires.saturating_duration_since(now) < self.policy.renew_before
            }
            _ => true,
        }
    }

    /// Whether to give the lease back: it holds one and spent nothing for
    /// `idle_after`.
    pub fn idle(&self, now: Instant) -> bool {
        self.lease.is_some()
            && self
                .last_spend
                .is_none_or(|t| now.saturating_duration_since(t) >= self.policy.idle_after)
    }

    /// Units to ask for in a request.
    pub fn want(&self) -> u64 {
        self.policy.want
    }

    /// What to send with a request or release sent at `now`.
    pub fn report(&self, now: Instant) -> Report {
        Report {
            held: self.lease.map(|l| l.id),
            used: self.unreported,
            sent_at: now,
        }
    }

    /// The owner granted `grant` in answer to `report`. Units spent since
    /// the report came out of the old lease, which the grant carries over,
    /// so they come out of the new one; it lives `ttl` from when the
    /// report was sent.
    pub fn granted(&mut self, report: Report, grant: Grant) {
        self.unreported -= report.used.min(self.unreported);
        let left = grant.units.saturating_sub(self.unreported);
        self.lease = Some(Held {
            id: grant.id,
            left,
            expires: report.sent_at + grant.ttl,
        });
    }

    /// The owner refused the request sent with `report`: its units were
    /// committed and the lease is gone.
    pub fn refused(&mut self, report: Report) {
        self.unreported -= report.used.min(self.unreported);
        self.lease = None;
    }

    /// Gives the lease back: the holder stops spending from it at once and
    /// sends the returned report with [`LeaseBook::release`] (`None`
    /// without a lease).
    pub fn give_back(&mut self, now: Instant) -> Option<(LeaseId, u64)> {
        let lease = self.lease.take()?;
        let used = std::mem::take(&mut self.unreported);
        self.last_spend = Some(now);
        Some((lease.id, used))
    }
}

#[cfg(test)]
#[path = "lease/tests.rs"]
mod tests;
