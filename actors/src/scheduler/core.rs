//! [`SchedulerCore`]: every scheduling decision, in plain synchronous code.

use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::time::Duration;

use nexus_swarm_runtime::config::{AllocationStrategy, SchedulerConfig};
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::resources::{QosClass, ResourceKind, ResourceVector};
use tokio::time::Instant;

use super::model::{
    AllocationReport, Decision, Grant, InvalidPool, Notice, PoolId, PoolReport, PoolSpec, Preempted, RejectReason,
    RequestId, RequesterId, ResourceRequest, SchedulerError, SchedulerEvent, TenantId,
};

/// A tenant's dominant share: its largest fraction of any kind's total
/// capacity, as an exact fraction (compared by cross-multiplication, no
/// floats).
#[derive(Debug, Clone, Copy)]
pub struct Share {
    num: u64,
    den: u64,
}

impl Share {
    /// Nothing allocated.
    pub const ZERO: Share = Share { num: 0, den: 1 };

    /// The fraction `num / den` (a zero `den` counts as 1).
    pub fn new(num: u64, den: u64) -> Share {
        Share { num, den: den.max(1) }
    }

    fn of(allocated: &ResourceVector, total: &ResourceVector) -> Share {
        let mut best = Share::ZERO;
        for (kind, amount) in allocated.iter() {
            let cap = total.get(kind);
            if cap > 0 {
                best = best.max(Share { num: amount, den: cap });
            }
        }
        best
    }

    /// The share in parts per million (rounded down), for reports.
    pub fn ppm(&self) -> u64 {
        u64::try_from(u128::from(self.num) * 1_000_000 / u128::from(self.den)).unwrap_or(u64::MAX)
    }

    /// Whether `self <= a + b`, exactly, for any values (no overflow);
    /// states DRF's bound "within one request of the others".
    pub fn le_sum(&self, a: &Share, b: &Share) -> bool {
        if *self <= *a {
            return true;
        }
        // self - a = (s.n * a.d - a.n * s.d) / (s.d * a.d): each product of
        // two u64 fits in u128, and the difference is positive. Then
        // self - a <= b is compared without multiplying further.
        let num = u128::from(self.num) * u128::from(a.den) - u128::from(a.num) * u128::from(self.den);
        let den = u128::from(self.den) * u128::from(a.den);
        cmp_fractions(num, den, u128::from(b.num), u128::from(b.den)) != Ordering::Greater
    }
}

/// Compares `a / b` with `c / d` (`b`, `d` > 0) exactly, by their continued
/// fractions: integer parts first, then the reciprocals of the remainders,
/// so nothing is multiplied and nothing overflows.
fn cmp_fractions(mut a: u128, mut b: u128, mut c: u128, mut d: u128) -> Ordering {
    loop {
        let (qa, ra) = (a / b, a % b);
        let (qc, rc) = (c / d, c % d);
        if qa != qc {
            return qa.cmp(&qc);
        }
        match (ra == 0, rc == 0) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            // ra/b vs rc/d, both in (0, 1), orders as d/rc vs b/ra.
            (false, false) => (a, b, c, d) = (d, rc, b, ra),
        }
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.num) * u128::from(other.den)).cmp(&(u128::from(other.num) * u128::from(self.den)))
    }
}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Share {}

/// The order in which waiting requests are served: lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    /// The tenant's dominant share (fair share only; zero otherwise).
    share: Share,
    /// Aged priority, highest first.
    rank: Reverse<u8>,
    /// Earliest deadline first; no deadline last.
    deadline: (bool, Option<Instant>),
    /// Arrival order.
    seq: u64,
}

/// High 2, normal 1, low 0.
fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::High => 2,
        Priority::Normal => 1,
        Priority::Low => 0,
    }
}

#[derive(Debug)]
struct Pool {
    id: PoolId,
    base: ResourceVector,
    capacity: ResourceVector,
    allocated: ResourceVector,
    scaling: Option<super::model::ScalingPolicy>,
}

impl Pool {
    fn available(&self) -> ResourceVector {
        self.capacity.saturating_sub(&self.allocated)
    }

    /// The most this pool may ever hold of each kind.
    fn ceiling(&self) -> ResourceVector {
        let mut out = self.capacity.clone();
        if let Some(policy) = &self.scaling {
            for (kind, max) in policy.max.iter() {
                if max > out.get(kind) {
                    out.set(kind.clone(), max);
                }
            }
        }
        out
    }

    /// The capacity to grow to so that `want` fits, if the policy allows.
    fn growth_for(&self, want: &ResourceVector) -> Option<ResourceVector> {
        let policy = self.scaling.as_ref()?;
        let mut capacity = self.capacity.clone();
        let mut grew = false;
        for (kind, need) in want.iter() {
            let have = self.capacity.get(kind).saturating_sub(self.allocated.get(kind));
            if need <= have {
                continue;
            }
            let missing = need - have;
            let step = policy.step.get(kind);
            let grow = if step == 0 {
                missing
            } else {
                missing.div_ceil(step).saturating_mul(step)
            };
            let max = policy.max.get(kind);
            let to = self.capacity.get(kind).saturating_add(grow).min(max);
            if to.saturating_sub(self.allocated.get(kind)) < need {
                return None;
            }
            capacity.set(kind.clone(), to);
            grew = true;
        }
        grew.then_some(capacity)
    }

    /// Gives back grown capacity that is idle, in whole steps, down to the
    /// registered capacity.
    fn shrink_idle(&mut self) {
        let Some(policy) = &self.scaling else { return };
        let kinds: Vec<ResourceKind> = self.capacity.iter().map(|(k, _)| k.clone()).collect();
        for kind in kinds {
            let cap = self.capacity.get(&kind);
            let grown = cap.saturating_sub(self.base.get(&kind));
            let idle = cap.saturating_sub(self.allocated.get(&kind));
            let mut give = grown.min(idle);
            let step = policy.step.get(&kind);
            if let Some(steps) = give.checked_div(step) {
                give = steps * step;
            }
            if give > 0 {
                self.capacity.set(kind, cap - give);
            }
        }
    }

    /// How little `want` leaves: the sum over the pool's kinds of what
    /// would be left, in parts per million of capacity (best-fit's score).
    fn leftover_ppm(&self, want: &ResourceVector) -> u128 {
        self.capacity
            .iter()
            .map(|(kind, cap)| {
                let left = cap
                    .saturating_sub(self.allocated.get(kind))
                    .saturating_sub(want.get(kind));
                u128::from(left) * 1_000_000 / u128::from(cap)
            })
            .sum()
    }
}

#[derive(Debug)]
struct Allocation<T> {
    req: ResourceRequest,
    pool: usize,
    granted: ResourceVector,
    /// Its priority when granted, aging included: what preemption compares.
    rank: u8,
    seq: u64,
    payload: T,
}

#[derive(Debug)]
struct Waiting<T> {
    req: ResourceRequest,
    since: Instant,
    seq: u64,
    payload: T,
}

/// Resources taken back from one allocation.
#[derive(Debug, Clone)]
struct Victim {
    id: RequestId,
    reclaim: ResourceVector,
    whole: bool,
}

/// Where and how a request can be allocated.
#[derive(Debug)]
struct Placement {
    pool: usize,
    grant: ResourceVector,
    grow_to: Option<ResourceVector>,
    victims: Vec<Victim>,
}

/// The resource scheduler's decisions: pools, allocations, the reservation
/// queue, strategies, aging, preemption. Plain synchronous code driven with
/// explicit instants; the [`Scheduler`](super::Scheduler) actor is a shell
/// around it. `T` travels with each request and comes back in the
/// [`Notice`]s meant for its requester (the actor uses a notifier).
///
/// Invariants (property-tested): every pool's allocations sum to its
/// `allocated`, which never exceeds its capacity; a release returns exactly
/// what the allocation held; waiting requests are served in order (see
/// [`AllocationStrategy`]) with no later one overtaking an earlier one that
/// could use the same pool.
#[derive(Debug)]
pub struct SchedulerCore<T> {
    strategy: AllocationStrategy,
    aging: Option<Duration>,
    max_waiting: usize,
    pools: Vec<Pool>,
    allocations: HashMap<RequestId, Allocation<T>>,
    waiting: Vec<Waiting<T>>,
    tenants: HashMap<TenantId, ResourceVector>,
    seq: u64,
}

impl<T: Clone> SchedulerCore<T> {
    /// An empty scheduler. `aging`: a waiting request rises one priority
    /// level per this much waiting (`None`: never). `max_waiting` bounds the
    /// reservation queue.
    pub fn new(strategy: AllocationStrategy, aging: Option<Duration>, max_waiting: usize) -> Self {
        Self {
            strategy,
            aging,
            max_waiting,
            pools: Vec::new(),
            allocations: HashMap::new(),
            waiting: Vec::new(),
            tenants: HashMap::new(),
            seq: 0,
        }
    }

    /// A scheduler configured by the `[scheduler]` section, its pools
    /// registered. The section is validated first
    /// ([`SchedulerError::InvalidConfig`] names the field): a zero aging
    /// interval, for one, is refused rather than taken as "never age".
    pub fn from_config(config: &SchedulerConfig, now: Instant) -> Result<Self, SchedulerError> {
        config.validate().map_err(|e| SchedulerError::InvalidConfig {
            field: e.field().to_string(),
            message: e.to_string(),
        })?;
        let mut core = Self::new(
            config.strategy,
            Some(config.aging_interval),
            usize::try_from(config.max_waiting).unwrap_or(usize::MAX),
        );
        for pool in &config.pools {
            core.register_pool(PoolSpec::from(pool), now)?;
        }
        Ok(core)
    }

    /// The allocation strategy.
    pub fn strategy(&self) -> AllocationStrategy {
        self.strategy
    }

    /// Changes the strategy; waiting requests the new order lets through
    /// are served.
    pub fn set_strategy(&mut self, strategy: AllocationStrategy, now: Instant) -> Vec<Notice<T>> {
        self.strategy = strategy;
        self.serve_waiting(now)
    }

    /// Registers a pool; waiting requests it can hold are served.
    pub fn register_pool(&mut self, spec: PoolSpec, now: Instant) -> Result<Vec<Notice<T>>, SchedulerError> {
        let invalid = |reason| SchedulerError::InvalidPool {
            pool: spec.id.clone(),
            reason,
        };
        if spec.id.as_str().trim().is_empty() {
            return Err(invalid(InvalidPool::EmptyId));
        }
        if self.pools.iter().any(|p| p.id == spec.id) {
            return Err(SchedulerError::PoolExists(spec.id));
        }
        if spec.capacity.is_empty() {
            return Err(invalid(InvalidPool::EmptyCapacity));
        }
        if let Some(policy) = &spec.scaling {
            for (kind, max) in policy.max.iter() {
                if max < spec.capacity.get(kind) {
                    return Err(invalid(InvalidPool::MaxBelowCapacity { kind: kind.clone() }));
                }
            }
        }
        let pool = Pool {
            id: spec.id,
            base: spec.capacity.clone(),
            capacity: spec.capacity,
            allocated: ResourceVector::new(),
            scaling: spec.scaling,
        };
        // Every sum the scheduler keeps (per tenant, totals for fair share)
        // is bounded by the sum of the pools' ceilings: it must fit in u64.
        let ceiling = pool.ceiling();
        for (kind, amount) in ceiling.iter() {
            self.pools
                .iter()
                .try_fold(amount, |sum, p| sum.checked_add(p.ceiling().get(kind)))
                .ok_or_else(|| SchedulerError::Overflow { kind: kind.clone() })?;
        }
        self.pools.push(pool);
        Ok(self.serve_waiting(now))
    }

    /// Answers a request: allocated now, reserved until its deadline, or
    /// rejected. The notices are for other requesters: allocations
    /// preempted for this one, and reservations whose deadline had passed
    /// (answered `Expired`) with any that their removal let through.
    pub fn request(
        &mut self,
        req: ResourceRequest,
        payload: T,
        now: Instant,
    ) -> Result<(Decision, Vec<Notice<T>>), SchedulerError> {
        self.validate(&req)?;
        // Reservations past their deadline are answered first, so that none
        // is ahead of this request nor served after its deadline.
        let mut notices = self.expire_due(now);
        if !notices.is_empty() {
            notices.extend(self.serve_waiting(now));
        }
        let (decision, more) = self.decide(req, payload, now);
        notices.extend(more);
        Ok((decision, notices))
    }

    /// [`request`](Self::request) once the input is valid and expired
    /// reservations are gone.
    fn decide(&mut self, req: ResourceRequest, payload: T, now: Instant) -> (Decision, Vec<Notice<T>>) {
        let id = req.id;
        let reject = |reason| (Decision::Rejected { id, reason }, Vec::new());
        if req.deadline.is_some_and(|d| d <= now) {
            return reject(RejectReason::DeadlinePassed);
        }
        let candidates = self.candidates(&req);
        if !candidates
            .iter()
            .any(|&p| req.resources.fits_within(&self.pools[p].ceiling()))
        {
            return reject(RejectReason::NeverFits);
        }

        // Strict order: pools that a reservation ordered before this one
        // waits for are not this request's to take.
        self.seq += 1;
        let seq = self.seq;
        let mut shares = HashMap::new();
        let key = self.key(&req, now, seq, now, &mut shares);
        let mut blocked = vec![false; self.pools.len()];
        let mut ahead = 0;
        for w in &self.waiting {
            if self.key(&w.req, w.since, w.seq, now, &mut shares) < key {
                ahead += 1;
                for p in self.candidates(&w.req) {
                    blocked[p] = true;
                }
            }
        }
        let open: Vec<usize> = candidates.iter().copied().filter(|&p| !blocked[p]).collect();
        let rank = self.aged(&req, now, now);
        if let Some(placement) = self.place(&req, rank, &open) {
            let (grant, notices) = self.apply(req, rank, placement, payload, seq);
            return (Decision::Allocated(grant), notices);
        }
        match req.deadline {
            None if open.len() < candidates.len() => reject(RejectReason::WaitingAhead { ahead }),
            None => reject(RejectReason::Insufficient),
            Some(_) if self.waiting.len() >= self.max_waiting => {
                reject(RejectReason::QueueFull { max: self.max_waiting })
            }
            Some(_) => {
                self.waiting.push(Waiting {
                    req,
                    since: now,
                    seq,
                    payload,
                });
                (Decision::Reserved { id }, Vec::new())
            }
        }
    }

    /// Releases an allocation held by `requester`: returns exactly what it
    /// held, then serves waiting requests.
    pub fn release(
        &mut self,
        id: RequestId,
        requester: &RequesterId,
        now: Instant,
    ) -> Result<(ResourceVector, Vec<Notice<T>>), SchedulerError> {
        self.held_by(id, requester)?;
        let alloc = self.allocations.remove(&id).expect("checked above");
        self.give_back(alloc.pool, &alloc.req.tenant, &alloc.granted);
        let notices = self.serve_waiting(now);
        self.pools[alloc.pool].shrink_idle();
        Ok((alloc.granted, notices))
    }

    /// Gives back `part` of an allocation and keeps the rest (a pool that
    /// shrinks); releases it whole when nothing is left. Returns what it
    /// still holds. Giving back more than it holds (of any kind) is
    /// [`SchedulerError::ReleaseExceedsHeld`] and changes nothing.
    pub fn release_part(
        &mut self,
        id: RequestId,
        requester: &RequesterId,
        part: &ResourceVector,
        now: Instant,
    ) -> Result<(ResourceVector, Vec<Notice<T>>), SchedulerError> {
        let alloc = self.held_by(id, requester)?;
        let rest = alloc
            .granted
            .checked_sub(part)
            .map_err(|_| SchedulerError::ReleaseExceedsHeld {
                id,
                held: alloc.granted.clone(),
                part: part.clone(),
            })?;
        if rest.is_empty() {
            let (_, notices) = self.release(id, requester, now)?;
            return Ok((rest, notices));
        }
        let alloc = self.allocations.get_mut(&id).expect("checked above");
        alloc.granted = rest.clone();
        // What it asked for shrinks with it, so that its burst (granted above
        // its request) stays what preemption may reclaim.
        alloc.req.resources = alloc.req.resources.saturating_sub(part);
        if let Some(limits) = &mut alloc.req.limits {
            *limits = limits.saturating_sub(part);
        }
        let (pool, tenant) = (alloc.pool, alloc.req.tenant.clone());
        self.give_back(pool, &tenant, part);
        let notices = self.serve_waiting(now);
        self.pools[pool].shrink_idle();
        Ok((rest, notices))
    }

    /// The allocation `id`, if `requester` holds it.
    fn held_by(&self, id: RequestId, requester: &RequesterId) -> Result<&Allocation<T>, SchedulerError> {
        let alloc = self.allocations.get(&id).ok_or(SchedulerError::NotHeld(id))?;
        if &alloc.req.requester != requester {
            return Err(SchedulerError::WrongRequester {
                id,
                holder: alloc.req.requester.clone(),
                requester: requester.clone(),
            });
        }
        Ok(alloc)
    }

    /// Withdraws a waiting reservation of `requester`.
    pub fn cancel(
        &mut self,
        id: RequestId,
        requester: &RequesterId,
        now: Instant,
    ) -> Result<Vec<Notice<T>>, SchedulerError> {
        let pos = self
            .waiting
            .iter()
            .position(|w| w.req.id == id)
            .ok_or(SchedulerError::NotWaiting(id))?;
        let holder = &self.waiting[pos].req.requester;
        if holder != requester {
            return Err(SchedulerError::WrongRequester {
                id,
                holder: holder.clone(),
                requester: requester.clone(),
            });
        }
        self.waiting.swap_remove(pos);
        Ok(self.serve_waiting(now))
    }

    /// What the scheduler does when time passes (its timer calls it at
    /// [`next_wakeup`](Self::next_wakeup)): answers `Expired` to every
    /// reservation whose deadline is at or before `now`, then serves the
    /// waiting requests that the removals unblock or that aging has raised
    /// (an aged request may now preempt, or come before one that blocked
    /// it).
    pub fn expire(&mut self, now: Instant) -> Vec<Notice<T>> {
        self.serve_waiting(now)
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().filter_map(|w| w.req.deadline).min()
    }

    /// When [`expire`](Self::expire) next has something to do: the earliest
    /// deadline of a waiting request, or the earliest instant after `now`
    /// at which a waiting request rises one priority level by aging.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let aging = self.waiting.iter().filter_map(|w| self.next_aging_step(w, now)).min();
        match (self.next_deadline(), aging) {
            (Some(d), Some(a)) => Some(d.min(a)),
            (d, a) => d.or(a),
        }
    }

    /// When `w` next rises a level by aging, if it still can.
    fn next_aging_step(&self, w: &Waiting<T>, now: Instant) -> Option<Instant> {
        let every = self.aging.filter(|e| !e.is_zero())?;
        let aged = self.aged(&w.req, w.since, now);
        if aged >= 2 {
            return None;
        }
        let steps = aged - rank(w.req.priority);
        w.since.checked_add(every.checked_mul(u32::from(steps) + 1)?)
    }

    /// Removes every reservation whose deadline is at or before `now`,
    /// answering each `Expired`.
    fn expire_due(&mut self, now: Instant) -> Vec<Notice<T>> {
        let mut notices = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].req.deadline.is_some_and(|d| d <= now) {
                let w = self.waiting.swap_remove(i);
                tracing::debug!(request = %w.req.id, "reservation expired");
                notices.push(Notice {
                    to: w.payload,
                    event: SchedulerEvent::Expired { id: w.req.id },
                });
            } else {
                i += 1;
            }
        }
        notices
    }

    /// Every pool, in registration order.
    pub fn pools(&self) -> Vec<PoolReport> {
        self.pools
            .iter()
            .map(|p| PoolReport {
                id: p.id.clone(),
                base: p.base.clone(),
                capacity: p.capacity.clone(),
                allocated: p.allocated.clone(),
                available: p.available(),
                max: p.scaling.as_ref().map(|s| s.max.clone()),
            })
            .collect()
    }

    /// Every allocation, by id.
    pub fn allocations(&self) -> Vec<AllocationReport> {
        let mut out: Vec<AllocationReport> = self
            .allocations
            .values()
            .map(|a| AllocationReport {
                id: a.req.id,
                requester: a.req.requester.clone(),
                tenant: a.req.tenant.clone(),
                pool: self.pools[a.pool].id.clone(),
                granted: a.granted.clone(),
                priority: a.req.priority,
                qos: a.req.qos,
            })
            .collect();
        out.sort_by_key(|a| a.id);
        out
    }

    /// Waiting requests in the order they would be served at `now`.
    pub fn waiting(&self, now: Instant) -> Vec<RequestId> {
        self.order(now).into_iter().map(|i| self.waiting[i].req.id).collect()
    }

    /// A tenant's dominant share of the total capacity of every pool.
    pub fn dominant_share(&self, tenant: &TenantId) -> Share {
        self.tenants
            .get(tenant)
            .map_or(Share::ZERO, |a| Share::of(a, &self.total_capacity()))
    }

    fn validate(&self, req: &ResourceRequest) -> Result<(), SchedulerError> {
        if req.resources.is_empty() {
            return Err(SchedulerError::EmptyRequest(req.id));
        }
        if self.allocations.contains_key(&req.id) || self.waiting.iter().any(|w| w.req.id == req.id) {
            return Err(SchedulerError::DuplicateRequest(req.id));
        }
        if let Some(pool) = req.pool.as_ref().filter(|id| !self.pools.iter().any(|p| &p.id == *id)) {
            return Err(SchedulerError::UnknownPool(pool.clone()));
        }
        let bad_limits = req
            .limits
            .as_ref()
            .is_some_and(|l| req.qos != QosClass::Burstable || !req.resources.fits_within(l));
        if bad_limits {
            return Err(SchedulerError::InvalidLimits(req.id));
        }
        Ok(())
    }

    fn candidates(&self, req: &ResourceRequest) -> Vec<usize> {
        match &req.pool {
            Some(id) => self.pools.iter().position(|p| &p.id == id).into_iter().collect(),
            None => (0..self.pools.len()).collect(),
        }
    }

    fn total_capacity(&self) -> ResourceVector {
        self.pools.iter().fold(ResourceVector::new(), |acc, p| {
            acc.checked_add(&p.capacity).expect("pool ceilings sum within u64")
        })
    }

    fn aged(&self, req: &ResourceRequest, since: Instant, now: Instant) -> u8 {
        let base = rank(req.priority);
        let steps = match self.aging {
            Some(every) if !every.is_zero() => {
                let waited = now.saturating_duration_since(since).as_nanos() / every.as_nanos();
                u8::try_from(waited.min(2)).unwrap_or(2)
            }
            _ => 0,
        };
        (base + steps).min(2)
    }

    fn key(
        &self,
        req: &ResourceRequest,
        since: Instant,
        seq: u64,
        now: Instant,
        shares: &mut HashMap<TenantId, Share>,
    ) -> OrderKey {
        let share = if self.strategy == AllocationStrategy::FairShare {
            *shares
                .entry(req.tenant.clone())
                .or_insert_with(|| self.dominant_share(&req.tenant))
        } else {
            Share::ZERO
        };
        OrderKey {
            share,
            rank: Reverse(self.aged(req, since, now)),
            deadline: (req.deadline.is_none(), req.deadline),
            seq,
        }
    }

    /// Waiting indices in service order at `now` (without reservations
    /// past their deadline: those are never served).
    fn order(&self, now: Instant) -> Vec<usize> {
        let mut shares = HashMap::new();
        let mut keyed: Vec<(OrderKey, usize)> = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.req.deadline.is_none_or(|d| d > now))
            .map(|(i, w)| (self.key(&w.req, w.since, w.seq, now, &mut shares), i))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Where `req` can go among `candidates`: a pool it fits, a pool that
    /// can grow, or a pool where preemption makes room.
    fn place(&self, req: &ResourceRequest, rank: u8, candidates: &[usize]) -> Option<Placement> {
        let fitting = candidates
            .iter()
            .copied()
            .filter(|&p| req.resources.fits_within(&self.pools[p].available()));
        let chosen = if self.strategy == AllocationStrategy::BestFit {
            fitting.min_by_key(|&p| self.pools[p].leftover_ppm(&req.resources))
        } else {
            fitting.into_iter().next()
        };
        if let Some(pool) = chosen {
            let available = self.pools[pool].available();
            let grant = match &req.limits {
                Some(limits) if limits.fits_within(&available) => limits.clone(),
                _ => req.resources.clone(),
            };
            return Some(Placement {
                pool,
                grant,
                grow_to: None,
                victims: Vec::new(),
            });
        }
        for &pool in candidates {
            if let Some(grow_to) = self.pools[pool].growth_for(&req.resources) {
                return Some(Placement {
                    pool,
                    grant: req.resources.clone(),
                    grow_to: Some(grow_to),
                    victims: Vec::new(),
                });
            }
        }
        candidates
            .iter()
            .filter_map(|&pool| {
                self.victims_for(req, rank, pool).map(|victims| Placement {
                    pool,
                    grant: req.resources.clone(),
                    grow_to: None,
                    victims,
                })
            })
            .min_by_key(|p| p.victims.len())
    }

    /// The fewest allocations (best-effort first, then burstable bursts;
    /// lowest priority, then most recent, first) whose preemption lets `req`
    /// (of aged priority `rank`) fit in `pool`; none if it cannot. Holders
    /// are compared by their priority when granted, aging included, so a
    /// request served because it aged is not preempted at once by the
    /// younger ones it overtook.
    fn victims_for(&self, req: &ResourceRequest, rank: u8, pool: usize) -> Option<Vec<Victim>> {
        let may_preempt = |a: &Allocation<T>| {
            a.pool == pool && a.req.qos != QosClass::Guaranteed && (req.qos == QosClass::Guaranteed || rank > a.rank)
        };
        let mut best_effort: Vec<&Allocation<T>> = self
            .allocations
            .values()
            .filter(|a| may_preempt(a) && a.req.qos == QosClass::BestEffort)
            .collect();
        let mut bursts: Vec<&Allocation<T>> = self
            .allocations
            .values()
            .filter(|a| may_preempt(a) && a.req.qos == QosClass::Burstable && a.granted != a.req.resources)
            .collect();
        let victim_order = |a: &&Allocation<T>| (a.rank, Reverse(a.seq));
        best_effort.sort_by_key(victim_order);
        bursts.sort_by_key(victim_order);
        let candidates = best_effort
            .into_iter()
            .map(|a| Victim {
                id: a.req.id,
                reclaim: a.granted.clone(),
                whole: true,
            })
            .chain(bursts.into_iter().map(|a| Victim {
                id: a.req.id,
                reclaim: a.granted.saturating_sub(&a.req.resources),
                whole: false,
            }));

        let need = &req.resources;
        let available = self.pools[pool].available();
        let with = |freed: &ResourceVector| {
            available
                .checked_add(freed)
                .expect("freed is allocated, within capacity")
        };
        let mut freed = ResourceVector::new();
        let mut chosen: Vec<Victim> = Vec::new();
        for victim in candidates {
            let have = with(&freed);
            if need.fits_within(&have) {
                break;
            }
            let useful = need
                .iter()
                .any(|(kind, amount)| amount > have.get(kind) && victim.reclaim.get(kind) > 0);
            if useful {
                freed = freed.checked_add(&victim.reclaim).expect("within capacity");
                chosen.push(victim);
            }
        }
        if !need.fits_within(&with(&freed)) {
            return None;
        }
        // Keep exactly the needed ones: drop any the others already cover.
        let mut i = chosen.len();
        while i > 0 {
            i -= 1;
            let without = freed.saturating_sub(&chosen[i].reclaim);
            if need.fits_within(&with(&without)) {
                freed = without;
                chosen.remove(i);
            }
        }
        Some(chosen)
    }

    /// Allocates `req` as placed, preempting its victims.
    fn apply(
        &mut self,
        req: ResourceRequest,
        rank: u8,
        placement: Placement,
        payload: T,
        seq: u64,
    ) -> (Grant, Vec<Notice<T>>) {
        let pool = placement.pool;
        if let Some(grow_to) = placement.grow_to {
            tracing::info!(pool = %self.pools[pool].id, capacity = ?grow_to, "pool grown");
            self.pools[pool].capacity = grow_to;
        }
        let mut notices = Vec::with_capacity(placement.victims.len());
        let mut preempted = Vec::with_capacity(placement.victims.len());
        for victim in placement.victims {
            let (tenant, to, remaining) = if victim.whole {
                let a = self.allocations.remove(&victim.id).expect("victims are allocations");
                (a.req.tenant, a.payload, ResourceVector::new())
            } else {
                let a = self.allocations.get_mut(&victim.id).expect("victims are allocations");
                a.granted = a.req.resources.clone();
                (a.req.tenant.clone(), a.payload.clone(), a.granted.clone())
            };
            self.give_back(pool, &tenant, &victim.reclaim);
            tracing::info!(victim = %victim.id, by = %req.id, reclaimed = ?victim.reclaim, "allocation preempted");
            preempted.push(victim.id);
            notices.push(Notice {
                to,
                event: SchedulerEvent::Preempted(Preempted {
                    id: victim.id,
                    pool: self.pools[pool].id.clone(),
                    reclaimed: victim.reclaim,
                    remaining,
                    by: req.id,
                }),
            });
        }
        let p = &mut self.pools[pool];
        p.allocated = p.allocated.checked_add(&placement.grant).expect("grant fits the pool");
        debug_assert!(p.allocated.fits_within(&p.capacity));
        let tenant = self.tenants.entry(req.tenant.clone()).or_default();
        *tenant = tenant
            .checked_add(&placement.grant)
            .expect("tenant sums stay within u64");
        let grant = Grant {
            id: req.id,
            pool: self.pools[pool].id.clone(),
            resources: placement.grant.clone(),
            preempted,
        };
        self.allocations.insert(
            req.id,
            Allocation {
                req,
                pool,
                granted: placement.grant,
                rank,
                seq,
                payload,
            },
        );
        (grant, notices)
    }

    fn give_back(&mut self, pool: usize, tenant: &TenantId, amount: &ResourceVector) {
        let p = &mut self.pools[pool];
        p.allocated = p
            .allocated
            .checked_sub(amount)
            .expect("only allocated amounts are given back");
        if let Some(t) = self.tenants.get_mut(tenant) {
            *t = t.checked_sub(amount).expect("a tenant gives back what it holds");
            if t.is_empty() {
                self.tenants.remove(tenant);
            }
        }
    }

    /// Answers reservations past their deadline (never serving one late),
    /// then serves waiting requests in order; a request that cannot be
    /// placed blocks the pools it could use for every request after it.
    fn serve_waiting(&mut self, now: Instant) -> Vec<Notice<T>> {
        let mut notices = self.expire_due(now);
        loop {
            let order = self.order(now);
            let mut blocked = vec![false; self.pools.len()];
            let mut served: Vec<usize> = Vec::new();
            for i in order {
                let open: Vec<usize> = self
                    .candidates(&self.waiting[i].req)
                    .into_iter()
                    .filter(|&p| !blocked[p])
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let w = &self.waiting[i];
                let rank = self.aged(&w.req, w.since, now);
                match self.place(&w.req, rank, &open) {
                    Some(placement) => {
                        let (req, payload, seq) = (w.req.clone(), w.payload.clone(), w.seq);
                        let (grant, preempted) = self.apply(req, rank, placement, payload.clone(), seq);
                        notices.push(Notice {
                            to: payload,
                            event: SchedulerEvent::Allocated(grant),
                        });
                        notices.extend(preempted);
                        served.push(i);
                        // Shares changed: fair share re-sorts.
                        if self.strategy == AllocationStrategy::FairShare {
                            break;
                        }
                    }
                    None => {
                        for p in open {
                            blocked[p] = true;
                        }
                    }
                }
            }
            let again = self.strategy == AllocationStrategy::FairShare && !served.is_empty();
            served.sort_unstable_by(|a, b| b.cmp(a));
            for i in served {
                self.waiting.swap_remove(i);
            }
            if !again {
                return notices;
            }
        }
    }
}
