//! The axum routes: authentication, the key's own limits, the gateway
//! call, and the response headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nexus_swarm_actors::GatewayHandle;
use nexus_swarm_actors::llm::types::LlmChunk;
use nexus_swarm_actors::llm_gateway::{CountedRequest, LlmStream};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::keys::{KeyTable, bearer};
use super::limits::{KeyGrant, KeyLimits, LimitRefusal, RateFigures};
use super::timing::measure;
use super::wire::{
    ApiError, Parsed, StreamOptions, completion_body, format_reset, gateway_error, models_body, parse_request,
    stream_error_event, stream_events,
};

/// The header carrying the time the front door and the gateway added to a
/// request, in microseconds: the whole time in the server minus the time
/// spent in provider calls.
pub const ADDED_HEADER: &str = "x-nexus-added-us";

/// What the handlers share.
#[derive(Debug)]
pub(super) struct FrontDoor {
    pub(super) gateway: GatewayHandle,
    pub(super) keys: KeyTable,
    /// One per key, by its index in `keys`. A mutex per key: admission and
    /// settlement are short synchronous steps on that key's state only, so
    /// keys never contend with each other.
    pub(super) limits: Vec<Mutex<KeyLimits>>,
    pub(super) epoch: Instant,
    pub(super) next_id: AtomicU64,
}

impl FrontDoor {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<usize, ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("You didn't provide an API key: send `Authorization: Bearer KEY`"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| ApiError::unauthorized("The Authorization header is not `Bearer KEY`"))?;
        self.keys
            .find(token)
            .ok_or_else(|| ApiError::unauthorized("Incorrect API key provided"))
    }
}

/// A key's reservation, settled with the tokens used when the request
/// ends, or with none if the caller goes away first (the handler's future
/// is dropped mid-call).
struct Settle<'a> {
    limits: &'a Mutex<KeyLimits>,
    grant: Option<KeyGrant>,
}

impl Settle<'_> {
    fn settle(mut self, tokens: u64) {
        if let Some(g) = self.grant.take() {
            self.limits.lock().settle(&g, tokens);
        }
    }
}

impl Settle<'_> {
    /// The same reservation, owned, for a stream that outlives the handler.
    fn into_owned(mut self, door: &Arc<FrontDoor>, key: usize, estimate: u64) -> StreamSettle {
        StreamSettle {
            door: Arc::clone(door),
            key,
            grant: self.grant.take(),
            estimate,
        }
    }
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.grant.take() {
            self.limits.lock().settle(&g, 0);
        }
    }
}

/// A stream's key reservation: settled with the final usage when the
/// stream ends, with nothing when it was refused before it began, and
/// with the whole estimate when the caller leaves mid-stream (the gateway
/// charged what was produced; the key's window is not told less).
struct StreamSettle {
    door: Arc<FrontDoor>,
    key: usize,
    grant: Option<KeyGrant>,
    estimate: u64,
}

impl StreamSettle {
    fn settle(&mut self, tokens: u64) {
        if let Some(g) = self.grant.take() {
            self.door.limits[self.key].lock().settle(&g, tokens);
        }
    }
}

impl Drop for StreamSettle {
    fn drop(&mut self) {
        let estimate = self.estimate;
        self.settle(estimate);
    }
}

/// The routes, with request bodies bounded to `max_body_bytes`.
pub(super) fn router(door: Arc<FrontDoor>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(door)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn rate_headers(headers: &mut HeaderMap, figures: &RateFigures) {
    if let Some((limit, remaining, reset)) = figures.requests {
        set(headers, "x-ratelimit-limit-requests", limit.to_string());
        set(headers, "x-ratelimit-remaining-requests", remaining.to_string());
        set(headers, "x-ratelimit-reset-requests", format_reset(reset));
    }
    if let Some((limit, remaining, reset)) = figures.tokens {
        set(headers, "x-ratelimit-limit-tokens", limit.to_string());
        set(headers, "x-ratelimit-remaining-tokens", remaining.to_string());
        set(headers, "x-ratelimit-reset-tokens", format_reset(reset));
    }
}

fn error_response(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(err.body())).into_response();
    if let Some(wait) = err.retry_after {
        // `retry-after` is whole seconds (rounded up); `retry-after-ms`,
        // which OpenAI's clients read first, is exact.
        let secs = wait.as_millis().div_ceil(1000).max(1);
        set(response.headers_mut(), "retry-after", secs.to_string());
        set(
            response.headers_mut(),
            "retry-after-ms",
            wait.as_millis().max(1).to_string(),
        );
    }
    response
}

fn finish(mut response: Response, started: Instant, provider: Duration) -> Response {
    let added = started.elapsed().saturating_sub(provider);
    set(response.headers_mut(), ADDED_HEADER, added.as_micros().to_string());
    response
}

async fn models(State(door): State<Arc<FrontDoor>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let response = match door.authenticate(&headers) {
        Ok(_) => axum::Json(models_body(door.gateway.catalogue())).into_response(),
        Err(e) => error_response(&e),
    };
    finish(response, started, Duration::ZERO)
}

async fn chat_completions(
    State(door): State<Arc<FrontDoor>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let (response, provider) = complete(&door, &headers, body).await;
    finish(response, started, provider)
}

async fn complete(
    door: &Arc<FrontDoor>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (Response, Duration) {
    let key = match door.authenticate(headers) {
        Ok(k) => k,
        Err(e) => return (error_response(&e), Duration::ZERO),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let mut err = ApiError::bad_request(None, format!("the request body could not be read: {rejection}"));
            err.status = rejection.status().as_u16();
            return (error_response(&err), Duration::ZERO);
        }
    };
    let entry = &door.keys.keys()[key];
    let Parsed { request, stream } = match parse_request(&body, door.gateway.catalogue(), entry.meta()) {
        Ok(r) => r,
        Err(e) => return (error_response(&e), Duration::ZERO),
    };
    let limits = &door.limits[key];
    // Counted once: the gateway takes the count with the request.
    let request = door.gateway.count(request);
    let estimate = request
        .input_tokens()
        .saturating_add(u64::from(request.request().max_tokens));
    let admitted = limits.lock().admit(door.now(), estimate);
    let grant = match admitted {
        Ok(g) => Settle { limits, grant: Some(g) },
        Err(refusal) => {
            let err = match refusal {
                LimitRefusal::Later { retry_after, limit } => ApiError {
                    status: 429,
                    message: format!(
                        "Rate limit reached for key `{}` on {limit} per minute: try again in {}",
                        entry.name,
                        format_reset(retry_after)
                    ),
                    kind: "rate_limit_error",
                    param: None,
                    code: Some("rate_limit_exceeded"),
                    retry_after: Some(retry_after),
                },
                LimitRefusal::TooLarge { requested, limit } => ApiError::bad_request(
                    Some("max_tokens"),
                    format!(
                        "Request too large for key `{}`: {requested} tokens (prompt plus max_tokens) exceed its limit of {limit} tokens per minute",
                        entry.name
                    ),
                ),
            };
            let mut response = error_response(&err);
            let figures = limits.lock().figures(door.now());
            rate_headers(response.headers_mut(), &figures);
            return (response, Duration::ZERO);
        }
    };
    let max_tokens = request.request().max_tokens;
    if let Some(options) = stream {
        return open_stream(door, key, grant.into_owned(door, key, estimate), request, options).await;
    }
    let (result, provider) = measure(door.gateway.complete_counted(request)).await;
    let used = result.as_ref().map_or(0, |a| a.input_tokens + a.output_tokens);
    grant.settle(used);
    let figures = limits.lock().figures(door.now());
    let mut response = match result {
        Ok(answer) => {
            let n = door.next_id.fetch_add(1, Ordering::Relaxed);
            let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let id = format!("chatcmpl-{created:x}{n:08x}");
            axum::Json(completion_body(&id, created, max_tokens, &answer)).into_response()
        }
        Err(e) => {
            tracing::debug!(key = %entry.name, error = %e, "completion refused");
            error_response(&gateway_error(&e))
        }
    };
    rate_headers(response.headers_mut(), &figures);
    (response, provider)
}

/// Opens a gateway stream and answers with its server-sent events; the
/// added-time header counts the time to the stream's start, less the time
/// the provider took to accept it.
async fn open_stream(
    door: &Arc<FrontDoor>,
    key: usize,
    mut settle: StreamSettle,
    request: CountedRequest,
    options: StreamOptions,
) -> (Response, Duration) {
    let max_tokens = request.request().max_tokens;
    let stream = match door.gateway.stream_counted(request).await {
        Ok(s) => s,
        Err(e) => {
            settle.settle(0);
            tracing::debug!(key = %door.keys.keys()[key].name, error = %e, "stream refused");
            let mut response = error_response(&gateway_error(&e));
            let figures = door.limits[key].lock().figures(door.now());
            rate_headers(response.headers_mut(), &figures);
            return (response, Duration::ZERO);
        }
    };
    let provider = stream.info().provider_time;
    let n = door.next_id.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let state = Sse {
        id: format!("chatcmpl-{created:x}{n:08x}"),
        created,
        model: stream.info().model.clone(),
        stream,
        max_tokens,
        options,
        settle,
        first: true,
        ended: false,
    };
    let figures = door.limits[key].lock().figures(door.now());
    // The body is pulled by the connection: a reader that does not keep up
    // leaves chunks in the gateway's bounded channel, which holds the
    // provider stream back.
    let events = futures::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        let event = match st.stream.next().await? {
            Ok(chunk) => {
                if let LlmChunk::Done(answer) = &chunk {
                    st.settle.settle(answer.input_tokens + answer.output_tokens);
                    st.ended = true;
                }
                let event = stream_events(
                    &st.id,
                    st.created,
                    &st.model,
                    &chunk,
                    st.first,
                    st.max_tokens,
                    st.options,
                );
                st.first = false;
                event
            }
            Err(e) => {
                st.ended = true;
                stream_error_event(&gateway_error(&e))
            }
        };
        Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(event)), st))
    });
    let mut response = Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    rate_headers(headers, &figures);
    (response, provider)
}

/// A stream being answered.
struct Sse {
    id: String,
    created: u64,
    model: String,
    stream: LlmStream,
    max_tokens: u32,
    options: StreamOptions,
    settle: StreamSettle,
    first: bool,
    ended: bool,
}
