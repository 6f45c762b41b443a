//! The request pipeline (steps 1 to 9 of the [module docs](super)): cache,
//! agent slot, model choice, spend reservation, rate-limit admission, the
//! call with retries, fallbacks, settle. It runs on the caller's task;
//! every decision it takes is made by a synchronous type it calls
//! ([`FallbackChain`], [`after_failure`], the dispatcher, the agent
//! slots), and everything it holds is a guard released on drop, so a
//! caller that stops waiting leaves nothing behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendHold, SpendRefused, UsageMeta, UsageRecord};
use tokio::time::Instant;

use crate::llm::cache::{CacheKey, CacheTier, CachedResponse};
use crate::llm::catalogue::cost_micro_usd;
use crate::llm::error::{GatewayError, ProviderError};
use crate::llm::limiter::Demand;
use crate::llm::types::{LlmRequest, LlmResponse, ProviderRequest, ProviderResponse, ResponseSource};

use super::policy::{AfterFailure, FallbackChain, after_failure};
use super::shared::Core;
use super::stats::bump;

/// The spend holds of one model attempt. Released when dropped unless
/// settled, so a caller that stops waiting (a timeout, a `select!`) leaves
/// nothing reserved with the gates.
struct Holds<'a> {
    gates: &'a [Arc<dyn SpendGate>],
    // One per gate, in the gates' order.
    holds: Vec<SpendHold>,
}

impl Holds<'_> {
    /// Replaces every hold by the actual amounts.
    fn settle(mut self, actual: &ResourceVector) {
        for (g, h) in self.gates.iter().zip(std::mem::take(&mut self.holds)) {
            g.settle(h, actual);
        }
    }
}

impl Drop for Holds<'_> {
    fn drop(&mut self) {
        for (g, h) in self.gates.iter().zip(self.holds.drain(..)) {
            g.release(h);
        }
    }
}

/// Why a model did not answer.
enum ModelFailure {
    /// Every deployment of the model is cooling down.
    NoDeployment,
    /// The model failed for good with this provider error.
    Provider(ProviderError),
    /// The request cannot go on (deadline, overload, stop, too large).
    Fatal(GatewayError),
}

/// What the attempts of one request share.
struct Ctx<'a> {
    req: &'a LlmRequest,
    input: u64,
    deadline: Duration,
    attempts: u32,
}

/// A provider's answer and the deployment that gave it.
struct Answer {
    resp: ProviderResponse,
    model: usize,
    deployment: usize,
    attempts: u32,
}

impl Core {
    /// Runs a request through the whole pipeline, counting how it ended.
    pub(super) async fn complete(&self, req: LlmRequest) -> Result<LlmResponse, GatewayError> {
        bump(&self.stats.requests);
        let result = self.pipeline(&req).await;
        self.stats.ended(&result);
        result
    }

    async fn pipeline(&self, req: &LlmRequest) -> Result<LlmResponse, GatewayError> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(GatewayError::Stopped);
        }
        if let Some(why) = invalid(req) {
            return Err(GatewayError::InvalidRequest(why));
        }
        let deadline = self.now() + req.timeout;
        // 1. Cache.
        let key = (req.cacheable && self.cache.is_enabled())
            .then(|| CacheKey::new(&req.model, &req.messages, req.max_tokens, req.temperature_milli));
        if let Some((hit, tier)) = key.as_ref().and_then(|k| self.cache.get(k)) {
            return Ok(LlmResponse {
                content: hit.content.clone(),
                model: hit.model.clone(),
                deployment: String::new(),
                input_tokens: 0,
                output_tokens: 0,
                cost_micro_usd: 0,
                source: match tier {
                    CacheTier::Memory => ResponseSource::MemoryCache,
                    CacheTier::Disk => ResponseSource::DiskCache,
                },
                attempts: 0,
            });
        }
        // Under pressure, low priority is refused before it holds anything
        // (a cache hit above costs nothing and is still served).
        if req.priority == Priority::Low && self.reject_low.load(Ordering::Relaxed) {
            return Err(GatewayError::Shed { priority: req.priority });
        }
        // 2. A slot of the agent, held until the request ends (dropped
        // last, after the settle).
        let _slot = self.agent_slot(&req.meta, deadline, req.timeout).await?;
        if !self.running.load(Ordering::SeqCst) {
            return Err(GatewayError::Stopped); // stopped while it waited
        }
        // 3. Model choice.
        let input = self.counter.count_messages(&req.messages);
        let max_out = u64::from(req.max_tokens);
        let first = self.catalogue.choose(&req.model, input, max_out)?;
        let mut ctx = Ctx {
            req,
            input,
            deadline,
            attempts: 0,
        };
        let mut chain = FallbackChain::new(&self.catalogue, first);
        let mut last: Option<ProviderError> = None;
        let mut cooling = Vec::new();
        while let Some(m) = chain.next() {
            if chain.is_fallback() {
                bump(&self.stats.fallbacks);
            }
            let spec = &self.catalogue.models[m];
            if !spec.fits(input, max_out) {
                last = Some(ProviderError::ContextWindowExceeded {
                    limit: spec.context_window,
                    requested: input + max_out,
                });
                chain.too_large(m);
                continue;
            }
            // 4. Spend reservation.
            let estimate = ResourceVector::new()
                .with(ResourceKind::LlmRequests, 1)
                .with(ResourceKind::InputTokens, input)
                .with(ResourceKind::OutputTokens, max_out)
                .with(ResourceKind::Cost, spec.worst_cost(input, max_out));
            // Spend and usage belong to the model that serves the request,
            // priced at its prices: a fallback's own name replaces whatever
            // model the caller's metadata named.
            let mut meta = req.meta.clone();
            meta.scope.model = Some(spec.name.clone());
            let holds = self.reserve(&meta, &estimate, ctx.deadline).await?;
            // 5-7. Rate limits, batching, the call with retries.
            match self.call_model(m, &mut ctx).await {
                Ok((resp, d)) => {
                    let answer = Answer {
                        resp,
                        model: m,
                        deployment: d,
                        attempts: ctx.attempts,
                    };
                    return Ok(self.settle(key, &meta, holds, answer).await);
                }
                Err(failure) => {
                    drop(holds); // released: nothing was spent
                    match failure {
                        ModelFailure::Fatal(e) => return Err(e),
                        ModelFailure::NoDeployment => {
                            cooling.push(spec.name.clone());
                            chain.failed(m);
                        }
                        ModelFailure::Provider(e) => {
                            if matches!(e, ProviderError::ContextWindowExceeded { .. }) {
                                chain.too_large(m);
                            } else {
                                chain.failed(m);
                            }
                            last = Some(e);
                        }
                    }
                }
            }
        }
        match last {
            Some(last) => Err(GatewayError::Exhausted {
                tried: chain.into_tried(),
                last,
            }),
            None => Err(GatewayError::NoDeployment(cooling)),
        }
    }

    /// Calls `model` until it answers, fails for good, or the deadline
    /// passes: each attempt is admitted by the rate limits, sent under
    /// `llm.timeout`, and settled with the dispatcher.
    async fn call_model(&self, model: usize, ctx: &mut Ctx<'_>) -> Result<(ProviderResponse, usize), ModelFailure> {
        let req = ctx.req;
        let demand = Demand::call(ctx.input, u64::from(req.max_tokens));
        let mut retry = 0u32;
        let mut last: Option<ProviderError> = None;
        loop {
            let grant = match self.acquire(model, demand, req, ctx.deadline).await {
                Ok(g) => g,
                // Its deployments cooled down while it was retrying: the
                // model failed with its last error.
                Err(GatewayError::NoDeployment(_)) => {
                    return Err(last.map_or(ModelFailure::NoDeployment, ModelFailure::Provider));
                }
                Err(GatewayError::DeadlineExceeded(_)) => {
                    return Err(ModelFailure::Fatal(GatewayError::DeadlineExceeded(req.timeout)));
                }
                Err(e) => return Err(ModelFailure::Fatal(e)),
            };
            let d = grant.deployment;
            let dep = &self.deployments[d];
            let provider = Arc::clone(&self.providers[dep.provider].provider);
            let preq = ProviderRequest {
                model: dep.upstream.clone(),
                messages: req.messages.clone(),
                max_tokens: req.max_tokens,
                temperature_milli: req.temperature_milli,
            };
            ctx.attempts += 1;
            bump(&self.stats.provider_calls);
            let started = Instant::now();
            let limit = self.llm.timeout;
            let call = async {
                match &self.batcher {
                    Some(b) => b.submit(d, provider, preq).await,
                    None => provider.complete(preq).await,
                }
            };
            let outcome = tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(ProviderError::Timeout(limit)));
            grant.finish(&outcome, started.elapsed());
            let err = match outcome {
                Ok(resp) => return Ok((resp, d)),
                Err(e) => e,
            };
            tracing::debug!(deployment = %dep.id, error = %err, retry, "provider call failed");
            let backoff = || {
                let mut s = self.sched.lock();
                self.backoff.delay(retry, err.retry_after(), s.rng())
            };
            let delay = match after_failure(
                &err,
                retry,
                self.llm.retry.max_retries,
                self.now(),
                ctx.deadline,
                backoff,
            ) {
                AfterFailure::Retry(delay) => delay,
                AfterFailure::GiveUp => return Err(ModelFailure::Provider(err)),
                AfterFailure::Deadline => {
                    return Err(ModelFailure::Fatal(GatewayError::DeadlineExceeded(req.timeout)));
                }
            };
            retry += 1;
            bump(&self.stats.retries);
            last = Some(err);
            tokio::time::sleep(delay).await;
        }
    }

    /// Reserves `estimate` with every gate, or none (a refusal drops, and
    /// so releases, the holds made before it). A gate may wait, up to the
    /// request's `deadline`, for other requests' holds to settle.
    async fn reserve(
        &self,
        meta: &UsageMeta,
        estimate: &ResourceVector,
        deadline: Duration,
    ) -> Result<Holds<'_>, SpendRefused> {
        let until = self.instant(deadline);
        let mut holds = Holds {
            gates: &self.gates,
            holds: Vec::with_capacity(self.gates.len()),
        };
        for gate in &self.gates {
            holds.holds.push(gate.reserve_until(meta, estimate, until).await?);
        }
        Ok(holds)
    }

    /// Settles an answered call: the gates get the actual cost, the sink
    /// the tokens (awaited until committed), the cache the answer.
    async fn settle(&self, key: Option<CacheKey>, meta: &UsageMeta, holds: Holds<'_>, answer: Answer) -> LlmResponse {
        let Answer {
            resp,
            model,
            deployment: d,
            attempts,
        } = answer;
        let dep = &self.deployments[d];
        let cost = cost_micro_usd(resp.input_tokens, resp.output_tokens, dep.input_price, dep.output_price);
        let actual = ResourceVector::new()
            .with(ResourceKind::LlmRequests, 1)
            .with(ResourceKind::InputTokens, resp.input_tokens)
            .with(ResourceKind::OutputTokens, resp.output_tokens)
            .with(ResourceKind::Cost, cost);
        holds.settle(&actual);
        self.stats.spent(cost);
        let model_name = self.catalogue.models[model].name.clone();
        if let Some(sink) = &self.sink {
            // The same metadata the holds were reserved with: the ledger
            // matches settled holds to their records by it, so a record with
            // extra labels would be counted twice until the hold expired.
            // A kind with no tokens (an empty completion) gets no record: the
            // ledger refuses zero amounts as bad input, and would then refuse
            // the whole batch, leaving the prompt tokens uncharged.
            let records: Vec<UsageRecord> = [
                (ResourceKind::InputTokens, resp.input_tokens),
                (ResourceKind::OutputTokens, resp.output_tokens),
            ]
            .into_iter()
            .filter(|(_, amount)| *amount > 0)
            .map(|(kind, amount)| UsageRecord {
                kind,
                amount,
                meta: meta.clone(),
            })
            .collect();
            if let Err(e) = sink.record(records).await {
                bump(&self.stats.sink_errors);
                tracing::warn!(error = %e, deployment = %dep.id, "usage not recorded");
            }
        }
        if let Some(k) = key {
            self.cache.insert(
                k,
                CachedResponse {
                    content: resp.content.clone(),
                    model: model_name.clone(),
                },
            );
        }
        LlmResponse {
            content: resp.content,
            model: model_name,
            deployment: dep.id.clone(),
            input_tokens: resp.input_tokens,
            output_tokens: resp.output_tokens,
            cost_micro_usd: cost,
            source: ResponseSource::Provider,
            attempts,
        }
    }
}

/// What is wrong with a malformed request, if anything (checked before
/// anything is looked up or held).
fn invalid(req: &LlmRequest) -> Option<String> {
    if req.messages.is_empty() {
        return Some("no messages".into());
    }
    if req.max_tokens == 0 {
        return Some("max_tokens must be at least 1".into());
    }
    if req.timeout.is_zero() {
        return Some("timeout must be longer than zero".into());
    }
    if req.temperature_milli > 2000 {
        return Some(format!("temperature_milli {} is above 2000", req.temperature_milli));
    }
    None
}
