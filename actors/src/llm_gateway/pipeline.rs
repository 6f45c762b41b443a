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

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendHold, SpendRefused, UsageMeta, UsageRecord};
use tokio::time::Instant;

use crate::llm::cache::{CacheKey, CacheTier, CachedResponse};
use crate::llm::catalogue::cost_micro_usd;
use crate::llm::error::{GatewayError, ProviderError};
use crate::llm::limiter::Demand;
use crate::llm::types::{
    LlmChunk, LlmRequest, LlmResponse, ProviderChunk, ProviderRequest, ProviderResponse, ProviderStream,
    ResponseSource, StreamInfo, ToolCall,
};

use super::grants::InFlight;
use super::per_agent::AgentSlot;
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
    /// Time in provider calls that opened streams (or failed to).
    provider_time: Duration,
}

/// A provider's answer and the deployment that gave it.
struct Answer {
    resp: ProviderResponse,
    model: usize,
    deployment: usize,
    attempts: u32,
}

/// How the caller wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// All of it at once.
    Whole,
    /// Chunk by chunk, as the provider sends it.
    Streamed,
}

/// A provider's reply, before it is settled.
enum Reply<'a> {
    /// A whole answer (its rate-limit grant already finished).
    Whole(ProviderResponse),
    /// An accepted stream and its grant, finished when the stream ends.
    Streamed(ProviderStream, InFlight<'a>),
}

/// What the pipeline produced.
enum Produced<'a> {
    /// A whole answer, settled (or a cache hit).
    Answer(LlmResponse),
    /// A stream the provider accepted, to forward and then settle.
    Stream(Box<Open<'a>>),
}

/// An accepted stream with everything its settle needs.
struct Open<'a> {
    stream: ProviderStream,
    grant: InFlight<'a>,
    key: Option<CacheKey>,
    meta: UsageMeta,
    holds: Holds<'a>,
    model: usize,
    deployment: usize,
    attempts: u32,
    input: u64,
    started: Instant,
    provider_time: Duration,
    /// The agent's slot, held until the stream is settled.
    slot: Option<AgentSlot<'a>>,
}

/// Chunks a stream reader has not taken yet, at most: a slow reader slows
/// the provider stream (and, over HTTP, its TCP window) rather than
/// growing a buffer.
const STREAM_BUFFER: usize = 16;

/// A streamed answer: its chunks as the provider sends them, then
/// [`LlmChunk::Done`] with the settled response. Dropping it stops the
/// provider stream; what was produced until then is charged.
#[derive(Debug)]
pub struct LlmStream {
    info: StreamInfo,
    rx: mpsc::Receiver<Result<LlmChunk, GatewayError>>,
}

impl LlmStream {
    /// The model and deployment answering.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The next chunk; `None` after [`LlmChunk::Done`] or an error.
    pub async fn next(&mut self) -> Option<Result<LlmChunk, GatewayError>> {
        self.rx.recv().await
    }
}

impl futures::Stream for LlmStream {
    type Item = Result<LlmChunk, GatewayError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Core {
    /// Runs a request through the whole pipeline, counting how it ended.
    /// `input`: its prompt's tokens, if [`Core::count_input`] counted them.
    pub(super) async fn complete(&self, req: LlmRequest, input: Option<u64>) -> Result<LlmResponse, GatewayError> {
        bump(&self.stats.requests);
        let result = match self.pipeline(&req, input, Mode::Whole).await {
            Ok(Produced::Answer(resp)) => Ok(resp),
            // A whole call never produces a stream; settled as one if it did.
            Ok(Produced::Stream(open)) => self.forward(*open, None).await,
            Err(e) => Err(e),
        };
        self.stats.ended(&result);
        result
    }

    /// Runs a request through the pipeline on a task of its own and
    /// answers once the provider has accepted the stream (or the cache
    /// answered, as one chunk); every refusal before that is an error
    /// here, as for [`Core::complete`].
    pub(super) async fn stream(
        self: &Arc<Self>,
        req: LlmRequest,
        input: Option<u64>,
    ) -> Result<LlmStream, GatewayError> {
        bump(&self.stats.requests);
        let (opened_tx, opened_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let core = Arc::clone(self);
        tokio::spawn(async move {
            let result = core.stream_task(req, input, opened_tx, tx).await;
            core.stats.ended(&result);
        });
        match opened_rx.await {
            Ok(Ok(info)) => Ok(LlmStream { info, rx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GatewayError::Stopped),
        }
    }

    async fn stream_task(
        &self,
        req: LlmRequest,
        input: Option<u64>,
        mut opened: oneshot::Sender<Result<StreamInfo, GatewayError>>,
        tx: mpsc::Sender<Result<LlmChunk, GatewayError>>,
    ) -> Result<LlmResponse, GatewayError> {
        // A caller that stops waiting (a timeout, a client hanging up) stops
        // the pipeline wherever it is, as dropping `complete` would: its
        // guards release what it held.
        let produced = tokio::select! {
            produced = self.pipeline(&req, input, Mode::Streamed) => produced,
            () = opened.closed() => return Err(GatewayError::Cancelled),
        };
        match produced {
            Err(e) => {
                let _ = opened.send(Err(e.clone())); // the caller may have left
                Err(e)
            }
            Ok(Produced::Answer(resp)) => {
                let info = StreamInfo {
                    model: resp.model.clone(),
                    deployment: resp.deployment.clone(),
                    provider_time: Duration::ZERO,
                };
                if opened.send(Ok(info)).is_ok() {
                    for chunk in resp.chunks() {
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(resp)
            }
            Ok(Produced::Stream(open)) => {
                let info = StreamInfo {
                    model: self.catalogue.models[open.model].name.clone(),
                    deployment: self.deployments[open.deployment].id.clone(),
                    provider_time: open.provider_time,
                };
                // A caller gone before the start: nothing is forwarded, and
                // the prompt is still charged (the provider counted it).
                let reader = opened.send(Ok(info)).is_ok().then_some(tx);
                self.forward(*open, reader).await
            }
        }
    }

    /// Forwards an accepted stream to `tx` (through its bounded channel)
    /// and settles it when it ends, breaks, or the reader goes away: the
    /// provider's usage when it sent one, otherwise what was produced,
    /// counted.
    async fn forward(
        &self,
        open: Open<'_>,
        mut tx: Option<mpsc::Sender<Result<LlmChunk, GatewayError>>>,
    ) -> Result<LlmResponse, GatewayError> {
        let Open {
            stream,
            grant,
            key,
            meta,
            holds,
            model,
            deployment,
            attempts,
            input,
            started,
            provider_time: _,
            slot,
        } = open;
        let ProviderStream { rate_limit, mut chunks } = stream;
        let mut text = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut finish: Option<String> = None;
        let mut usage: Option<(u64, u64)> = None;
        let mut broke: Option<ProviderError> = None;
        let idle = self.llm.timeout;
        // Without a reader nothing is read: the provider's stream is
        // dropped at once and the prompt is charged.
        while tx.is_some() {
            let next = match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => {
                    broke = Some(e);
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    broke = Some(ProviderError::Timeout(idle));
                    break;
                }
            };
            let out = match next {
                ProviderChunk::Text(t) => {
                    text.push_str(&t);
                    LlmChunk::Text(t)
                }
                ProviderChunk::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                } => {
                    let i = index as usize;
                    if i > calls.len() {
                        broke = Some(ProviderError::Malformed(format!(
                            "tool call {index} came before call {}",
                            calls.len()
                        )));
                        break;
                    }
                    if i == calls.len() {
                        calls.push(ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                    }
                    let call = &mut calls[i];
                    if let Some(id) = &id {
                        call.id.clone_from(id);
                    }
                    if let Some(name) = &name {
                        call.name.clone_from(name);
                    }
                    call.arguments.push_str(&arguments);
                    LlmChunk::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    }
                }
                ProviderChunk::Finish(reason) => {
                    finish = Some(reason);
                    continue;
                }
                ProviderChunk::Usage {
                    input_tokens,
                    output_tokens,
                } => {
                    usage = Some((input_tokens, output_tokens));
                    continue;
                }
            };
            if let Some(reader) = &tx
                && reader.send(Ok(out)).await.is_err()
            {
                // The reader went away: stop the provider's stream.
                tx = None;
                break;
            }
        }
        drop(chunks);
        let cut = broke.is_some() || finish.is_none();
        let (input_tokens, output_tokens) = usage.unwrap_or_else(|| {
            let args: u64 = calls.iter().map(|c| self.counter.count(&c.arguments)).sum();
            (input, self.counter.count(&text) + args)
        });
        let resp = ProviderResponse {
            content: text,
            input_tokens,
            output_tokens,
            finish_reason: finish.unwrap_or_else(|| "cancelled".into()),
            rate_limit,
            tool_calls: calls,
        };
        let elapsed = started.elapsed();
        match &broke {
            Some(e) => grant.finish(&Err(e.clone()), elapsed),
            None => grant.finish(&Ok(resp.clone()), elapsed),
        }
        let answer = Answer {
            resp,
            model,
            deployment,
            attempts,
        };
        // Only a whole answer is cached.
        let settled = self.settle(key.filter(|_| !cut), &meta, holds, answer).await;
        drop(slot); // last, after the settle
        if let Some(error) = broke {
            let e = GatewayError::StreamBroken {
                model: settled.model,
                error,
            };
            if let Some(reader) = tx {
                let _ = reader.send(Err(e.clone())).await; // the reader may have left
            }
            return Err(e);
        }
        if let Some(reader) = tx {
            let _ = reader.send(Ok(LlmChunk::Done(settled.clone()))).await; // the reader may have left
        }
        Ok(settled)
    }

    async fn pipeline(&self, req: &LlmRequest, input: Option<u64>, mode: Mode) -> Result<Produced<'_>, GatewayError> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(GatewayError::Stopped);
        }
        if let Some(why) = invalid(req) {
            return Err(GatewayError::InvalidRequest(why));
        }
        let deadline = self.now() + req.timeout;
        // 1. Cache.
        let key = (req.cacheable && self.cache.is_enabled()).then(|| CacheKey::of(req));
        if let Some((hit, tier)) = key.as_ref().and_then(|k| self.cache.get(k)) {
            return Ok(Produced::Answer(LlmResponse {
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
                tool_calls: Vec::new(),
                finish_reason: "stop".into(),
            }));
        }
        // Under pressure, low priority is refused before it holds anything
        // (a cache hit above costs nothing and is still served).
        if req.priority == Priority::Low && self.reject_low.load(Ordering::Relaxed) {
            return Err(GatewayError::Shed { priority: req.priority });
        }
        // 2. A slot of the agent, held until the request ends (dropped
        // last, after the settle).
        let slot = self.agent_slot(&req.meta, deadline, req.timeout).await?;
        if !self.running.load(Ordering::SeqCst) {
            return Err(GatewayError::Stopped); // stopped while it waited
        }
        // 3. Model choice.
        let input = input.unwrap_or_else(|| self.count_input(req));
        let max_out = u64::from(req.max_tokens);
        let first = self.catalogue.choose(&req.model, input, max_out)?;
        let mut ctx = Ctx {
            req,
            input,
            deadline,
            attempts: 0,
            provider_time: Duration::ZERO,
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
            match self.call_model(m, &mut ctx, mode).await {
                Ok((Reply::Whole(resp), d)) => {
                    let answer = Answer {
                        resp,
                        model: m,
                        deployment: d,
                        attempts: ctx.attempts,
                    };
                    // A whole answer with tool calls is not cached: the cache
                    // keeps text.
                    let key = key.filter(|_| answer.resp.tool_calls.is_empty());
                    return Ok(Produced::Answer(self.settle(key, &meta, holds, answer).await));
                }
                Ok((Reply::Streamed(stream, grant), d)) => {
                    return Ok(Produced::Stream(Box::new(Open {
                        stream,
                        grant,
                        key,
                        meta,
                        holds,
                        model: m,
                        deployment: d,
                        attempts: ctx.attempts,
                        input,
                        started: Instant::now(),
                        provider_time: ctx.provider_time,
                        slot,
                    })));
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
    async fn call_model(
        &self,
        model: usize,
        ctx: &mut Ctx<'_>,
        mode: Mode,
    ) -> Result<(Reply<'_>, usize), ModelFailure> {
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
                tools: req.tools.clone(),
                tool_choice: req.tool_choice.clone(),
                response_format: req.response_format.clone(),
            };
            ctx.attempts += 1;
            bump(&self.stats.provider_calls);
            let started = Instant::now();
            let limit = self.llm.timeout;
            let err = match mode {
                Mode::Whole => {
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
                    match outcome {
                        Ok(resp) => return Ok((Reply::Whole(resp), d)),
                        Err(e) => e,
                    }
                }
                // The stream's start is bounded here, its chunks by the
                // forwarder; its grant finishes when it ends.
                Mode::Streamed => {
                    let opened = tokio::time::timeout(limit, provider.stream(preq)).await;
                    ctx.provider_time += started.elapsed();
                    match opened {
                        Ok(Ok(stream)) => return Ok((Reply::Streamed(stream, grant), d)),
                        Ok(Err(e)) => {
                            grant.finish(&Err(e.clone()), started.elapsed());
                            e
                        }
                        Err(_) => {
                            let e = ProviderError::Timeout(limit);
                            grant.finish(&Err(e.clone()), started.elapsed());
                            e
                        }
                    }
                }
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
        if let Some(k) = key.filter(|_| resp.tool_calls.is_empty()) {
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
            tool_calls: resp.tool_calls,
            finish_reason: resp.finish_reason,
        }
    }

    /// The prompt's tokens: its messages and its tool definitions.
    pub(super) fn count_input(&self, req: &LlmRequest) -> u64 {
        self.counter.count_messages(&req.messages) + self.count_tools(req)
    }

    /// Tokens the tool definitions add to the prompt (their JSON, counted).
    fn count_tools(&self, req: &LlmRequest) -> u64 {
        if req.tools.is_empty() {
            return 0;
        }
        serde_json::to_string(&req.tools).map_or(0, |json| self.counter.count(&json))
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
