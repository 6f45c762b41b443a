//! The dispatcher: which waiting call goes next, and to which deployment.
//!
//! Plain synchronous code on an explicit clock (a [`Duration`] since the
//! gateway's epoch), like the [`limiter`](super::limiter): the gateway
//! holds one [`Dispatcher`] under a short lock and drives it from its data
//! plane (new calls, settles) and its admission task (timers, freed
//! capacity). Everything here is unit-tested without a runtime.
//!
//! # What a call must pass
//!
//! A call to deployment `d` of provider `p` is admitted at `now` when
//! each of these admits it:
//!
//! - `p`'s configured limits and `d`'s configured limits (GCRA and sliding
//!   window, [`LimitSet`]), which may be configured at either level, both
//!   or neither;
//! - what `p` and `d` have *learned* from replies ([`Learned`]), whatever
//!   is configured: a reply's `x-ratelimit-remaining-*` with its
//!   `x-ratelimit-reset-*` is an allowance counted down until the reset
//!   (`remaining: 0` with `reset: 6m0s` holds both the deployment and its
//!   provider for six minutes), and a 429's retry-after holds the
//!   deployment that got it.
//!
//! Every caller is held, not only the one that got the reply; a caller of
//! a model with another deployment that is free goes there instead.
//!
//! A deployment that failed `allowed_fails` times in a row is cooling down
//! and not picked at all. Among the others, the routing strategy's order
//! decides ([`routing`]); the first deployment that admits
//! the call now gets it.
//!
//! # Priority across everything that shares a limit
//!
//! Waiting calls are tried in order: priority (high, normal, low), then
//! arrival, across every model ([`WaitQueue`]). A waiter that cannot be
//! admitted now because a *provider* has no room for it (that provider's
//! configured or learned limits are what hold it) holds back the provider
//! for the rest of the scan: waiters after it, of any model, are not
//! admitted to any deployment of that provider, even when a smaller
//! request would fit. So when a provider-level limit is the binding
//! constraint, the next call released for that provider is the
//! highest-priority, then oldest, one among all of its models. A waiter
//! held only by its own deployment (a retry-after, that deployment's own
//! limits) does not hold back the provider: capacity it could not use now
//! goes to the next in line. Later waiters of the same model never pass an
//! earlier one ([`WaitQueue`] skips the rest of a blocked group).
//!
//! A new call goes straight to the limits only when nobody of its priority
//! or higher waits; otherwise it queues behind them and the next scan
//! places it.

use std::time::Duration;

use nexus_swarm_runtime::config::{DeploymentRouting, LlmConfig};
use nexus_swarm_runtime::priority::Priority;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::admission::{Attempt, Scan, WaitQueue, Waiter};
use super::catalogue::cost_micro_usd;
use super::error::{GatewayError, ProviderError};
use super::learned::Learned;
use super::limiter::{Demand, LimitSet, SetGrant};
use super::routing::{self, Candidate, DeploymentHealth};
use super::types::ProviderResponse;

/// A deployment as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The model it serves (index into the model list).
    pub model: usize,
    /// The provider it is called through (index into the provider list).
    pub provider: usize,
    /// Weight in weighted-shuffle routing.
    pub weight: u32,
    /// Micro-dollars per million prompt tokens.
    pub input_price: u64,
    /// Micro-dollars per million completion tokens.
    pub output_price: u64,
    /// Its own configured limits.
    pub limits: LimitSet,
}

/// Everything a dispatcher is built from.
#[derive(Debug, Clone)]
pub struct DispatcherArgs {
    /// Model names, by index (for errors).
    pub models: Vec<String>,
    /// Each provider's configured limits, by index.
    pub provider_limits: Vec<LimitSet>,
    /// Every deployment.
    pub routes: Vec<Route>,
    /// The ordering strategy among a model's deployments.
    pub routing: DeploymentRouting,
    /// Consecutive failures that put a deployment in cooldown.
    pub allowed_fails: u32,
    /// How long a cooldown lasts.
    pub cooldown: Duration,
    /// The most calls that may wait at once.
    pub max_waiting: usize,
    /// Seed of routing shuffles (and of the caller's backoff jitter).
    pub seed: u64,
}

impl DispatcherArgs {
    /// Routing, cooldown and queue bound from the `llm` section.
    pub fn new(llm: &LlmConfig, models: Vec<String>, provider_limits: Vec<LimitSet>, routes: Vec<Route>) -> Self {
        Self {
            models,
            provider_limits,
            routes,
            routing: llm.routing,
            allowed_fails: llm.allowed_fails,
            cooldown: llm.cooldown,
            max_waiting: llm.max_concurrent as usize,
            seed: 0,
        }
    }
}

/// A call's admission: its deployment and what it reserved.
#[derive(Debug)]
pub struct Grant {
    deployment: usize,
    provider: SetGrant,
    own: SetGrant,
}

impl Grant {
    /// The deployment the call goes to.
    pub fn deployment(&self) -> usize {
        self.deployment
    }

    /// What was reserved.
    pub fn reserved(&self) -> Demand {
        self.provider.reserved()
    }
}

/// A waiting call: its demand and the caller's payload.
#[derive(Debug)]
pub struct Job<T> {
    /// What the call needs.
    pub demand: Demand,
    /// How to hand the caller its admission.
    pub caller: T,
}

/// What settling a call changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// The provider answered 429.
    pub rate_limited: bool,
    /// The deployment started cooling down.
    pub cooled_down: bool,
}

/// Limits, learned holds, deployment health and the wait queue, which
/// change together (a multi-limit admission is atomic).
#[derive(Debug)]
pub struct Dispatcher<T> {
    book: Book,
    queue: WaitQueue<Job<T>>,
}

/// Everything but the queue, so that a scan can borrow both.
#[derive(Debug)]
struct Book {
    models: Vec<String>,
    by_model: Vec<Vec<usize>>,
    routes: Vec<Route>,
    provider_limits: Vec<LimitSet>,
    provider_learned: Vec<Learned>,
    deployment_learned: Vec<Learned>,
    health: Vec<DeploymentHealth>,
    routing: DeploymentRouting,
    allowed_fails: u32,
    cooldown: Duration,
    rng: StdRng,
}

impl<T> Dispatcher<T> {
    /// A dispatcher over `args`' deployments (each route's model and
    /// provider must index `args.models` and `args.provider_limits`).
    pub fn new(args: DispatcherArgs) -> Self {
        let mut by_model = vec![Vec::new(); args.models.len()];
        for (d, r) in args.routes.iter().enumerate() {
            by_model[r.model].push(d);
        }
        let n = args.routes.len();
        let book = Book {
            models: args.models,
            by_model,
            provider_learned: vec![Learned::new(); args.provider_limits.len()],
            provider_limits: args.provider_limits,
            deployment_learned: vec![Learned::new(); n],
            health: vec![DeploymentHealth::default(); n],
            routes: args.routes,
            routing: args.routing,
            allowed_fails: args.allowed_fails,
            cooldown: args.cooldown,
            rng: StdRng::seed_from_u64(args.seed),
        };
        Self {
            book,
            queue: WaitQueue::new(args.max_waiting),
        }
    }

    /// A new call of `model` at `priority`: `Some` with its admission or
    /// refusal when nobody of its priority or higher waits, `None` when it
    /// must queue ([`Self::enqueue`]) behind them or for capacity.
    pub fn try_admit_new(
        &mut self,
        now: Duration,
        model: usize,
        priority: Priority,
        demand: Demand,
    ) -> Option<Result<Grant, GatewayError>> {
        if self.queue.has_waiters_at_or_above(priority) {
            return None;
        }
        match self.book.try_admit(now, model, demand, None) {
            Attempt::Admitted(g) => Some(Ok(g)),
            Attempt::Refused(e) => Some(Err(e)),
            Attempt::NotBefore(_) => None,
        }
    }

    /// Queues a call of `model` until `deadline`; gives the job back when
    /// the queue is full.
    pub fn enqueue(&mut self, priority: Priority, model: usize, deadline: Duration, job: Job<T>) -> Result<(), Job<T>> {
        let waiter = Waiter {
            group: model,
            deadline,
            payload: job,
        };
        self.queue.push(priority, waiter).map_err(|w| w.payload)
    }

    /// Admits the waiting calls that may go at `now`, in order (see the
    /// module docs). `gone` says whether a caller has stopped waiting.
    pub fn scan(&mut self, now: Duration, mut gone: impl FnMut(&T) -> bool) -> Scan<Job<T>, Grant, GatewayError> {
        let mut held = vec![false; self.book.provider_limits.len()];
        let book = &mut self.book;
        self.queue.scan(
            now,
            |w| gone(&w.payload.caller),
            |w| book.try_admit(now, w.group, w.payload.demand, Some(&mut held)),
        )
    }

    /// Removes every waiter (the gateway stopped).
    pub fn drain(&mut self) -> Vec<Job<T>> {
        let far = Duration::MAX;
        let scan = self.queue.scan(far, |_| true, |_| Attempt::<(), ()>::NotBefore(far));
        scan.expired.into_iter().map(|w| w.payload).collect()
    }

    /// Calls waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Calls under way, on every deployment.
    pub fn in_flight(&self) -> u64 {
        self.book.health.iter().map(|h| h.in_flight).sum()
    }

    /// The seeded generator (routing shuffles, backoff jitter).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.book.rng
    }

    /// When deployment `d` next admits a call of `demand` as far as its
    /// provider's and its own limits and learned holds go (cooldown and
    /// the wait queue aside).
    pub fn earliest_on(&mut self, now: Duration, d: usize, demand: &Demand) -> Option<Duration> {
        let (tp, td) = self.book.times(now, d, demand);
        Some(tp.ok()?.max(td.ok()?))
    }

    /// Gives back a grant whose call never happened.
    pub fn cancel(&mut self, grant: Grant) {
        self.book.cancel(grant);
    }

    /// Gives up a grant whose call may have reached the provider (its
    /// caller stopped waiting): the deployment no longer counts it in
    /// flight, and its whole estimate stays in the limits, as for a timeout,
    /// since the provider may count the call anyway.
    pub fn abandon(&mut self, grant: Grant) {
        let h = &mut self.book.health[grant.deployment];
        h.in_flight = h.in_flight.saturating_sub(1);
    }

    /// Settles a grant after its call, at `now`: the limits get what the
    /// provider may have counted, replies' rate-limit reports are learned
    /// by the deployment and its provider, a 429's retry-after holds the
    /// deployment, and failures count towards its cooldown.
    pub fn finish(
        &mut self,
        now: Duration,
        grant: Grant,
        outcome: &Result<ProviderResponse, ProviderError>,
        latency: Duration,
    ) -> Finished {
        self.book.finish(now, grant, outcome, latency)
    }
}

impl Book {
    fn times(
        &mut self,
        now: Duration,
        d: usize,
        demand: &Demand,
    ) -> (
        Result<Duration, super::error::RateLimitError>,
        Result<Duration, super::error::RateLimitError>,
    ) {
        let p = self.routes[d].provider;
        let tp = self.provider_limits[p]
            .earliest(now, demand)
            .map(|t| t.max(self.provider_learned[p].earliest(now, demand)));
        let td = self.routes[d]
            .limits
            .earliest(now, demand)
            .map(|t| t.max(self.deployment_learned[d].earliest(now, demand)));
        (tp, td)
    }

    /// Tries to admit a call of `demand` to a deployment of `model` that
    /// is not cooling down, skipping providers in `held` (held back by an
    /// earlier waiter); a waiter that a provider cannot serve now holds
    /// that provider in turn.
    fn try_admit(
        &mut self,
        now: Duration,
        model: usize,
        demand: Demand,
        held: Option<&mut Vec<bool>>,
    ) -> Attempt<Grant, GatewayError> {
        let available: Vec<usize> = self.by_model[model]
            .iter()
            .copied()
            .filter(|&d| self.health[d].available(now))
            .collect();
        if available.is_empty() {
            return Attempt::Refused(GatewayError::NoDeployment(vec![self.models[model].clone()]));
        }
        let open: Vec<usize> = available
            .into_iter()
            .filter(|&d| held.as_ref().is_none_or(|h| !h[self.routes[d].provider]))
            .collect();
        if open.is_empty() {
            // Rescanned when whoever holds the providers back moves.
            return Attempt::NotBefore(Duration::MAX);
        }
        let candidates: Vec<Candidate> = open
            .iter()
            .map(|&d| {
                let p = self.routes[d].provider;
                let usage = self.routes[d].limits.usage_permille(now);
                let r = &self.routes[d];
                Candidate {
                    index: d,
                    weight: r.weight,
                    in_flight: self.health[d].in_flight,
                    latency_micros: self.health[d].latency_micros(),
                    usage_permille: usage.max(self.provider_limits[p].usage_permille(now)),
                    cost_micro_usd: cost_micro_usd(
                        demand.input_tokens,
                        demand.output_tokens,
                        r.input_price,
                        r.output_price,
                    ),
                }
            })
            .collect();
        let order = routing::order(self.routing, &candidates, &mut self.rng);
        let mut earliest: Option<Duration> = None;
        let mut too_large = None;
        let mut full_providers = Vec::new();
        for d in order {
            let p = self.routes[d].provider;
            match self.times(now, d, &demand) {
                (Ok(tp), Ok(td)) if tp.max(td) <= now => {
                    let provider = self.provider_limits[p].commit(now, demand);
                    let own = self.routes[d].limits.commit(now, demand);
                    self.provider_learned[p].commit(now, &demand);
                    self.deployment_learned[d].commit(now, &demand);
                    self.health[d].in_flight += 1;
                    return Attempt::Admitted(Grant {
                        deployment: d,
                        provider,
                        own,
                    });
                }
                (Ok(tp), Ok(td)) => {
                    let t = tp.max(td);
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                    if tp > now {
                        full_providers.push(p);
                    }
                }
                (Err(e), _) | (_, Err(e)) => too_large = Some(e),
            }
        }
        match (earliest, too_large) {
            (Some(t), _) => {
                if let Some(h) = held {
                    for p in full_providers {
                        h[p] = true;
                    }
                }
                Attempt::NotBefore(t)
            }
            (None, Some(e)) => Attempt::Refused(GatewayError::RateLimit(e)),
            (None, None) => Attempt::NotBefore(now),
        }
    }

    fn cancel(&mut self, grant: Grant) {
        let d = grant.deployment;
        let p = self.routes[d].provider;
        self.provider_limits[p].settle(&grant.provider, &Demand::default());
        self.routes[d].limits.settle(&grant.own, &Demand::default());
        self.health[d].in_flight -= 1;
    }

    fn finish(
        &mut self,
        now: Duration,
        grant: Grant,
        outcome: &Result<ProviderResponse, ProviderError>,
        latency: Duration,
    ) -> Finished {
        let d = grant.deployment;
        let p = self.routes[d].provider;
        let mut done = Finished::default();
        self.health[d].in_flight -= 1;
        match outcome {
            Ok(resp) => {
                let actual = Demand::call(resp.input_tokens, resp.output_tokens);
                self.provider_limits[p].settle(&grant.provider, &actual);
                self.routes[d].limits.settle(&grant.own, &actual);
                if !resp.rate_limit.is_empty() {
                    self.routes[d].limits.resync(now, &resp.rate_limit);
                    self.provider_learned[p].learn(now, &resp.rate_limit);
                    self.deployment_learned[d].learn(now, &resp.rate_limit);
                }
                self.health[d].on_success(latency);
            }
            Err(e) => {
                // What the provider may have counted stays counted. A
                // refusal before any work (429, window, rejected, auth)
                // costs the request and its prompt; anything else (a
                // timeout, a 5xx, a garbled reply) may have produced the
                // whole completion, so the whole estimate stays.
                let reserved = grant.provider.reserved();
                let refused_early = matches!(
                    e,
                    ProviderError::RateLimited { .. }
                        | ProviderError::ContextWindowExceeded { .. }
                        | ProviderError::Rejected { .. }
                        | ProviderError::Auth { .. }
                );
                let kept = Demand {
                    requests: 1,
                    input_tokens: reserved.input_tokens,
                    output_tokens: if refused_early { 0 } else { reserved.output_tokens },
                };
                self.provider_limits[p].settle(&grant.provider, &kept);
                self.routes[d].limits.settle(&grant.own, &kept);
                if let ProviderError::RateLimited { retry_after, snapshot } = e {
                    done.rate_limited = true;
                    if let Some(ra) = retry_after {
                        self.deployment_learned[d].hold_until(now.saturating_add(*ra));
                    }
                    self.routes[d].limits.resync(now, snapshot);
                    self.provider_learned[p].learn(now, snapshot);
                    self.deployment_learned[d].learn(now, snapshot);
                }
                if e.counts_against_deployment() && self.health[d].on_failure(now, self.allowed_fails, self.cooldown) {
                    done.cooled_down = true;
                }
            }
        }
        done
    }
}

#[cfg(test)]
mod tests;
