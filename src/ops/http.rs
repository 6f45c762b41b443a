//! The HTTP server of `nexus run` (axum): status, metrics, health and the
//! admin API.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /` | none² | the dashboard: one self-contained page ([`DASHBOARD_HTML`]) |
//! | `GET /health` | none | `200` while the process serves |
//! | `GET /ready` | none | `200` once every pool is spawned, `503` while shutting down |
//! | `GET /metrics` | viewer¹ | the monitor's Prometheus text |
//! | `GET /status` | viewer¹ | pools, lanes, routers, pressure, quotas, budgets (JSON) |
//! | `GET /report` | viewer¹ | the ledger's cost report (JSON), see [`ReportParams`] |
//! | `GET /status/history` | viewer¹ | the last minutes as series ([`HistoryDoc`]) |
//! | `POST /admin/quotas/{id}` | operator | `{"limit": N}`: a quota's new limit |
//! | `PUT /admin/budgets/{id}` | operator | a budget: `limit_micro_usd`, `period`, `action`, optional `scope` |
//! | `POST /admin/pools/{name}/size` | operator | `{"size": N}`: resize a pool of `[[run.pools]]` |
//! | `POST /admin/routers/{router}/members/{member}/weight` | operator | `{"weight": N}`: a declared router's member (by name) |
//! | `POST /admin/shutdown` | admin | shut down as SIGTERM would |
//! | `GET /admin/state` | viewer¹ | quotas, budgets and pool sizes as a [`StateDoc`] |
//! | `PUT /admin/state` | admin | a [`StateDoc`], checked whole before anything changes |
//!
//! ¹ Only when a tokens file is configured; without one, reads are open
//! (the server then listens on loopback only) and every admin call is
//! refused with `401`.
//!
//! ² The page holds no data: it is served to anyone, and its scripts read
//! `/status` and `/status/history` under the rule above, sending the
//! viewer token the user gives them (a `#token=` fragment of the page's
//! address, or its token field) as `Authorization: Bearer`. Its
//! `Content-Security-Policy` lets it reach this server only.
//!
//! A token is sent as `Authorization: Bearer <token>`. Missing or unknown
//! token: `401`; a role too low: `403`; a body that is not the expected
//! JSON: `400`; larger than [`MAX_BODY_BYTES`]: `413`; an unknown quota or
//! pool: `404`; a change the system refuses (a limit the quota tree does
//! not allow, a pool growth the scheduler does not admit): `409` or `422`.
//! Every error is `{"error": "<code>", "message": "..."}` and changes
//! nothing. Every admin call, accepted or refused, is written to the audit
//! log ([`super::audit`]) before it is answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use nexus_swarm_actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, Field, LedgerError, Report, ReportQuery, TimeRange,
};
use nexus_swarm_actors::monitor::ExportFormat;
use nexus_swarm_actors::quota_keeper::QuotaError;
use nexus_swarm_actors::router::RouterError;
use nexus_swarm_actors::swarm::{Swarm, SwarmError};
use nexus_swarm_runtime::config::{DeclaredRouter, MAX_RUN_POOL_SIZE, MonitorConfig, RunAgentKind};
use nexus_swarm_runtime::scope::Scope;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::agents::{SpawnedPool, TextMsg};
use super::audit::{AuditEntry, AuditLog, Outcome};
use super::history::{BudgetPoint, HistoryDoc, MonitorView, Trail, TrailPoint, series};
use super::state::{StateDoc, StateError};
use super::tokens::{Role, Tokens};

#[cfg(test)]
mod tests;

/// How long `nexus run` waits for in-flight HTTP requests at shutdown.
pub const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Largest request body read; a larger one is refused with `413`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The dashboard `GET /` serves: inline HTML, CSS and JavaScript that
/// polls `/status` and `/status/history` and draws them on canvases.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// What the dashboard's scripts may do: reach this server, nothing else.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                             frame-ancestors 'none'";

/// What the handlers share.
#[derive(Debug)]
pub struct OpsState {
    swarm: Swarm,
    pools: BTreeMap<String, SpawnedPool>,
    routers: Vec<DeclaredRouter>,
    tokens: Tokens,
    audit: Arc<AuditLog>,
    /// Set once the pools are up, cleared when shutdown begins; read by
    /// `/ready` without a lock (a flag, nothing else depends on it).
    ready: AtomicBool,
    /// Serializes admin calls, so that each one's `before` and `after` in
    /// the audit log are its own (an async lock: held across the change).
    admin: tokio::sync::Mutex<()>,
    /// Where `POST /admin/shutdown` asks the runner to stop.
    shutdown: watch::Sender<bool>,
    started: tokio::time::Instant,
    /// Pressure and budgets over time ([`OpsState::record_trail`]); a
    /// mutex held for one push or one read, never across an await.
    trail: parking_lot::Mutex<Trail>,
    /// How often the trail is recorded (`monitor.interval`).
    trail_interval: Duration,
}

impl OpsState {
    /// The state of a server over `swarm` and the pools `nexus run`
    /// spawned; its trail of pressure and budgets keeps as many points as
    /// `monitor` keeps samples (`history`), one per `interval`.
    pub fn new(
        swarm: Swarm,
        pools: BTreeMap<String, SpawnedPool>,
        routers: Vec<DeclaredRouter>,
        tokens: Tokens,
        audit: Arc<AuditLog>,
        monitor: &MonitorConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            swarm,
            pools,
            routers,
            tokens,
            audit,
            ready: AtomicBool::new(false),
            admin: tokio::sync::Mutex::new(()),
            shutdown: watch::channel(false).0,
            started: tokio::time::Instant::now(),
            trail: parking_lot::Mutex::new(Trail::new(monitor.history)),
            trail_interval: monitor.interval,
        })
    }

    /// How often [`OpsState::record_trail`] is meant to be called.
    pub fn trail_interval(&self) -> Duration {
        self.trail_interval
    }

    /// Records the overall pressure level and every budget's spend now
    /// (`nexus run` calls it every `monitor.interval`).
    pub async fn record_trail(&self) {
        let pressure = match self.swarm.pressure() {
            Some(p) => p.report().await.map(|r| r.overall),
            None => None,
        };
        let budgets = self
            .swarm
            .ledger()
            .budget_statuses()
            .into_iter()
            .map(|s| BudgetPoint {
                spent_micro_usd: s.spent_micro_usd.saturating_add(s.inflight_micro_usd),
                limit_micro_usd: s.budget.limit_micro_usd,
                id: s.budget.id,
            })
            .collect();
        let point = TrailPoint {
            at: self.started.elapsed(),
            pressure,
            budgets,
        };
        self.trail.lock().push(point);
    }

    /// The document `GET /status/history` serves.
    pub fn history(&self) -> HistoryDoc {
        let monitor = self.swarm.monitor();
        let view = monitor.map(|m| MonitorView {
            samples: m.history(),
            minutes: m.minutes(),
            now: m.clock(),
        });
        let interval = monitor.map_or(self.trail_interval, |m| m.interval());
        let trail = self.trail.lock();
        series(view, &trail, self.started.elapsed(), interval)
    }

    /// Marks the process ready (`true`) or shutting down (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The swarm it serves.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// The pools `nexus run` spawned, by name.
    pub fn pools(&self) -> &BTreeMap<String, SpawnedPool> {
        &self.pools
    }

    /// Turns `true` once `POST /admin/shutdown` was accepted.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The status document `GET /status` serves.
    pub async fn status(&self) -> Value {
        let pools: Vec<Value> = self
            .pools
            .iter()
            .map(|(name, p)| {
                let [high, normal, low] = p.pool.depths();
                let [high_cap, normal_cap, low_cap] = p.pool.lane_capacities();
                json!({
                    "name": name,
                    "agent": agent_name(p.kind),
                    "size": p.pool.size(),
                    "lanes": {
                        "high": {"depth": high, "capacity": high_cap},
                        "normal": {"depth": normal, "capacity": normal_cap},
                        "low": {"depth": low, "capacity": low_cap},
                    },
                    "handled": p.pool.handled(),
                    "restarts": p.pool.restarts(),
                    "load": p.load.as_ref().map(|l| json!({
                        "per_second": l.per_second(),
                        "sent": l.sent(),
                        "refused": l.refused(),
                    })),
                })
            })
            .collect();
        let routers: Vec<Value> = self
            .routers
            .iter()
            .map(|r| {
                let members = self.swarm.router::<TextMsg>(&r.name).ok().map(|h| h.members());
                let weights: Option<Vec<Value>> = members.as_ref().map(|ms| {
                    ms.iter()
                        .map(|m| json!({"name": m.name, "weight": m.weight, "healthy": m.healthy}))
                        .collect()
                });
                json!({
                    "name": r.name,
                    "pool": r.pool,
                    "started": members.is_some(),
                    "members": members.map(|m| m.len()),
                    "member_weights": weights,
                })
            })
            .collect();
        let pressure = match self.swarm.pressure() {
            Some(p) => match p.report().await {
                Some(report) => json!({
                    "overall": format!("{:?}", report.overall).to_lowercase(),
                    "resources": report.resources.iter().map(|(name, r)| json!({
                        "resource": name,
                        "level": format!("{:?}", r.level).to_lowercase(),
                        "utilization_permille": r.utilization,
                    })).collect::<Vec<_>>(),
                    "responses_engaged": report.engaged.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
                None => Value::Null,
            },
            None => Value::Null,
        };
        json!({
            "ready": self.ready.load(Ordering::Acquire),
            "uptime_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "pools": pools,
            "routers": routers,
            "pressure": pressure,
            "quotas": self.swarm.quotas().tree(),
            "budgets": self.swarm.ledger().budget_statuses(),
        })
    }
}

fn agent_name(kind: RunAgentKind) -> &'static str {
    match kind {
        RunAgentKind::Echo => "echo",
        RunAgentKind::LlmCaller => "llm-caller",
    }
}

/// The server's routes over `state`, bodies bounded to [`MAX_BODY_BYTES`].
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/report", get(report))
        .route("/status/history", get(history))
        .route("/admin/quotas/{id}", post(adjust_quota))
        .route("/admin/budgets/{id}", put(put_budget))
        .route("/admin/pools/{name}/size", post(resize_pool))
        .route("/admin/routers/{router}/members/{member}/weight", post(set_weight))
        .route("/admin/shutdown", post(shutdown))
        .route("/admin/state", get(export_state).put(import_state))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A refused request: its status and a JSON body that says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No token, or one that is not listed.
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role may not do this.
    #[error("role {have} may not do this; it needs {need}")]
    Forbidden {
        /// The caller's role.
        have: Role,
        /// The role needed.
        need: Role,
    },
    /// The body is not the expected JSON, or a value is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// No quota, budget, pool or route of that name.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the system's state (e.g. a pool growth
    /// the scheduler does not admit).
    #[error("{0}")]
    Conflict(String),
    /// The system refused the values (e.g. a quota limit its tree does not allow).
    #[error("{0}")]
    Unprocessable(String),
    /// What was asked for is not running (e.g. the monitor is disabled).
    #[error("{0}")]
    Unavailable(String),
    /// The change was made but could not be written to the audit log, or
    /// a system actor did not answer.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(json!({"error": self.code(), "message": self.to_string()})),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Who is calling: a listed token's name and role.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    role: Role,
}

/// The caller of a request, or why it has none.
fn caller(tokens: &Tokens, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::Unauthorized(
            "no tokens are configured (nexus run --tokens FILE)".into(),
        ));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header is not `Bearer <token>`".into()))?;
    let (name, role) = tokens
        .authenticate(token)
        .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
    Ok(Caller {
        name: name.to_string(),
        role,
    })
}

/// A reader's check: open without tokens, else a viewer at least.
fn may_read(state: &OpsState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.tokens.is_empty() {
        return Ok(());
    }
    caller(&state.tokens, headers).map(|_| ())
}

async fn ready(State(state): State<Arc<OpsState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(json!({"ready": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false}))).into_response()
    }
}

async fn metrics(State(state): State<Arc<OpsState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    may_read(&state, &headers)?;
    let monitor = state
        .swarm
        .monitor()
        .ok_or_else(|| ApiError::Unavailable("the monitor is disabled (monitor.enabled = false)".into()))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        monitor.export(ExportFormat::Prometheus),
    )
        .into_response())
}

async fn status(State(state): State<Arc<OpsState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    may_read(&state, &headers)?;
    Ok(Json(state.status().await))
}

/// The query of `GET /report`; every parameter is optional.
///
/// `group_by` is a comma-separated list of `tenant`, `workflow`, `agent`,
/// `model`, `kind`, `day` or `label:KEY` (default: one total row);
/// `tenant`, `workflow`, `agent` and `model` keep only that scope's usage;
/// `from` and `to` are RFC 3339 times (default: all time up to now, `to`
/// exclusive) and `last` a span up to now (`24h`, `7days`) instead of
/// `from`. The answer is the ledger's [`Report`] as JSON; an unknown field
/// or a bad time is a `400`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Grouping fields, comma-separated, outermost first.
    pub group_by: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Start of the range, RFC 3339.
    pub from: Option<String>,
    /// End of the range (exclusive), RFC 3339.
    pub to: Option<String>,
    /// The span up to now, instead of `from`.
    pub last: Option<String>,
}

impl ReportParams {
    /// The ledger query these parameters ask for, `now_us` being the
    /// ledger clock's now; the reason in words if they are not valid.
    pub fn query(&self, now_us: u64) -> Result<ReportQuery, String> {
        fn time(name: &str, text: &str) -> Result<u64, String> {
            let t = humantime::parse_rfc3339_weak(text)
                .map_err(|e| format!("{name}: `{text}` is not an RFC 3339 time ({e})"))?;
            let since = t
                .duration_since(UNIX_EPOCH)
                .map_err(|_| format!("{name}: times before 1970 are not supported"))?;
            u64::try_from(since.as_micros()).map_err(|_| format!("{name}: `{text}` is out of range"))
        }
        let to_us = match &self.to {
            Some(t) => time("to", t)?,
            None => now_us.saturating_add(1),
        };
        let from_us = match (&self.from, &self.last) {
            (Some(_), Some(_)) => return Err("give `from` or `last`, not both".into()),
            (Some(f), None) => time("from", f)?,
            (None, Some(span)) => {
                let span =
                    humantime::parse_duration(span).map_err(|e| format!("last: `{span}` is not a duration ({e})"))?;
                to_us.saturating_sub(u64::try_from(span.as_micros()).unwrap_or(u64::MAX))
            }
            (None, None) => 0,
        };
        let range = TimeRange::new(from_us, to_us).map_err(|e| e.to_string())?;
        let group_by = match &self.group_by {
            Some(fields) => fields
                .split(',')
                .filter(|f| !f.trim().is_empty())
                .map(|f| f.parse::<Field>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let filter = Scope {
            tenant: self.tenant.clone(),
            workflow: self.workflow.clone(),
            agent: self.agent.clone(),
            model: self.model.clone(),
        };
        Ok(ReportQuery::new(range).filter(filter).group_by(group_by))
    }
}

async fn report(
    State(state): State<Arc<OpsState>>,
    headers: HeaderMap,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Report>, ApiError> {
    may_read(&state, &headers)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let ledger = state.swarm.ledger();
    let query = params.query(ledger.clock().now_us()).map_err(ApiError::BadRequest)?;
    match ledger.report(query).await {
        Ok(report) => Ok(Json(report)),
        Err(e @ (LedgerError::InvalidQuery(_) | LedgerError::TimeOutOfRange { .. })) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

async fn history(State(state): State<Arc<OpsState>>, headers: HeaderMap) -> Result<Json<HistoryDoc>, ApiError> {
    may_read(&state, &headers)?;
    Ok(Json(state.history()))
}

async fn dashboard() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(DASHBOARD_HTML),
    )
        .into_response()
}

/// `POST /admin/quotas/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaChange {
    limit: u64,
}

/// `PUT /admin/budgets/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetChange {
    limit_micro_usd: u64,
    period: BudgetPeriod,
    action: BudgetAction,
    #[serde(default)]
    scope: Scope,
}

/// `POST /admin/pools/{name}/size`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeChange {
    size: usize,
}

fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

/// What an accepted change reports: its state before and after.
type Change = (Value, Value);

/// Runs one admin call: checks the caller's role, parses the body, makes
/// the change under the admin lock, writes the audit entry, then answers.
async fn audited<T, F>(
    state: &OpsState,
    headers: &HeaderMap,
    action: String,
    need: Role,
    body: Result<Bytes, BytesRejection>,
    change: F,
) -> Response
where
    T: serde::de::DeserializeOwned,
    F: AsyncFnOnce(&OpsState, T) -> Result<Change, (Value, ApiError)>,
{
    let who = caller(&state.tokens, headers);
    let outcome = match &who {
        Err(_) => Err((Value::Null, None)),
        Ok(c) if c.role < need => Err((Value::Null, None)),
        Ok(_) => match parse::<T>(body) {
            Err(e) => Err((Value::Null, Some(e))),
            Ok(input) => {
                let _serial = state.admin.lock().await;
                change(state, input).await.map_err(|(before, e)| (before, Some(e)))
            }
        },
    };
    let (name, role) = match &who {
        Ok(c) => (c.name.clone(), Some(c.role)),
        Err(_) => ("anonymous".to_string(), None),
    };
    let (result, before, after): (Result<Value, ApiError>, Value, Value) = match (outcome, who) {
        (Ok((before, after)), _) => (Ok(after.clone()), before, after),
        (Err((before, Some(e))), _) => (Err(e), before, Value::Null),
        (Err((before, None)), Err(e)) => (Err(e), before, Value::Null),
        (Err((before, None)), Ok(c)) => (Err(ApiError::Forbidden { have: c.role, need }), before, Value::Null),
    };
    let (status, reason) = match &result {
        Ok(_) => (StatusCode::OK, None),
        Err(e) => (e.status(), Some(e.to_string())),
    };
    let entry = AuditEntry {
        seq: 0,
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        who: name,
        role,
        action,
        before,
        after,
        outcome: if result.is_ok() {
            Outcome::Accepted
        } else {
            Outcome::Refused
        },
        status: status.as_u16(),
        reason,
    };
    let log = Arc::clone(&state.audit);
    let written = tokio::task::spawn_blocking(move || log.append(entry)).await;
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit entry not written");
            return ApiError::Internal(format!("the call was {} but not audited: {e}", outcome_word(&result)))
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "audit writer failed");
            return ApiError::Internal(format!("the call was {} but not audited", outcome_word(&result)))
                .into_response();
        }
    }
    match result {
        Ok(after) => Json(after).into_response(),
        Err(e) => e.into_response(),
    }
}

fn outcome_word(result: &Result<Value, ApiError>) -> &'static str {
    if result.is_ok() { "accepted" } else { "refused" }
}

fn action(method: Method, path: &str) -> String {
    format!("{method} {path}")
}

async fn adjust_quota(
    State(state): State<Arc<OpsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(Method::POST, &format!("/admin/quotas/{id}"));
    audited(
        &state,
        &headers,
        act,
        Role::Operator,
        body,
        async |state: &OpsState, c: QuotaChange| {
            let quotas = state.swarm.quotas();
            let before = quotas
                .report(&id)
                .map_err(|e| (Value::Null, ApiError::NotFound(e.to_string())))?;
            let before = json!({"id": id, "limit": before.limit});
            match quotas.adjust(id.as_str(), c.limit).await {
                Ok(_) => {
                    let now = quotas.report(&id).map(|r| r.limit).unwrap_or(c.limit);
                    Ok((before, json!({"id": id, "limit": now})))
                }
                Err(e @ QuotaError::UnknownQuota(_)) => Err((before, ApiError::NotFound(e.to_string()))),
                Err(e) => Err((before, ApiError::Unprocessable(e.to_string()))),
            }
        },
    )
    .await
}

async fn put_budget(
    State(state): State<Arc<OpsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(Method::PUT, &format!("/admin/budgets/{id}"));
    audited(
        &state,
        &headers,
        act,
        Role::Operator,
        body,
        async |state: &OpsState, c: BudgetChange| {
            let ledger = state.swarm.ledger();
            let before = ledger.budget_status(&id).ok().map_or(Value::Null, |s| json!(s.budget));
            let budget = Budget {
                id: id.clone(),
                scope: c.scope,
                limit_micro_usd: c.limit_micro_usd,
                period: c.period,
                action: c.action,
            };
            match ledger.put_budget(budget).await {
                Ok(()) => {
                    let after = ledger.budget_status(&id).map_or(Value::Null, |s| json!(s.budget));
                    Ok((before, after))
                }
                Err(e @ (LedgerError::InvalidBudget { .. } | LedgerError::BadLabels { .. })) => {
                    Err((before, ApiError::Unprocessable(e.to_string())))
                }
                Err(e) => Err((before, ApiError::Internal(e.to_string()))),
            }
        },
    )
    .await
}

async fn resize_pool(
    State(state): State<Arc<OpsState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(Method::POST, &format!("/admin/pools/{name}/size"));
    audited(
        &state,
        &headers,
        act,
        Role::Operator,
        body,
        async |state: &OpsState, c: SizeChange| {
            let pool = state.pools.get(&name).ok_or_else(|| {
                (
                    Value::Null,
                    ApiError::NotFound(format!("no pool named {name} in [[run.pools]]")),
                )
            })?;
            let before = json!({"pool": name, "size": pool.pool.size()});
            if c.size == 0 || c.size > MAX_RUN_POOL_SIZE as usize {
                return Err((
                    before,
                    ApiError::BadRequest(format!("size must be 1 to {MAX_RUN_POOL_SIZE}, not {}", c.size)),
                ));
            }
            match pool.resize(&state.swarm, c.size).await {
                Ok(size) => Ok((before, json!({"pool": name, "size": size}))),
                Err(e @ SwarmError::NotAdmitted { .. }) => Err((before, ApiError::Conflict(e.to_string()))),
                Err(e @ SwarmError::Unknown(_)) => Err((before, ApiError::NotFound(e.to_string()))),
                Err(e) => Err((before, ApiError::Unprocessable(e.to_string()))),
            }
        },
    )
    .await
}

/// `POST /admin/routers/{router}/members/{member}/weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightChange {
    weight: u32,
}

async fn set_weight(
    State(state): State<Arc<OpsState>>,
    Path((router, member)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(
        Method::POST,
        &format!("/admin/routers/{router}/members/{member}/weight"),
    );
    audited(
        &state,
        &headers,
        act,
        Role::Operator,
        body,
        async |state: &OpsState, c: WeightChange| {
            let handle = state
                .swarm
                .router::<TextMsg>(&router)
                .map_err(|e| (Value::Null, ApiError::NotFound(e.to_string())))?;
            let info = handle.members().into_iter().find(|m| m.name == member).ok_or_else(|| {
                (
                    Value::Null,
                    ApiError::NotFound(format!("router {router} has no member {member}")),
                )
            })?;
            let before = json!({"router": router, "member": member, "weight": info.weight});
            if c.weight == 0 {
                return Err((before, ApiError::BadRequest("weight must be at least 1".into())));
            }
            match handle.set_weight(info.id, c.weight).await {
                Ok(()) => Ok((before, json!({"router": router, "member": member, "weight": c.weight}))),
                Err(e @ RouterError::UnknownMember(_)) => Err((before, ApiError::NotFound(e.to_string()))),
                Err(e) => Err((before, ApiError::Unprocessable(e.to_string()))),
            }
        },
    )
    .await
}

/// `POST /admin/shutdown`: an empty JSON object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownRequest {}

async fn shutdown(
    State(state): State<Arc<OpsState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(Method::POST, "/admin/shutdown");
    audited(
        &state,
        &headers,
        act,
        Role::Admin,
        body,
        async |state: &OpsState, _: ShutdownRequest| {
            let before = json!({"shutting_down": *state.shutdown.borrow()});
            state.shutdown.send_replace(true);
            Ok((before, json!({"shutting_down": true})))
        },
    )
    .await
}

async fn export_state(State(state): State<Arc<OpsState>>, headers: HeaderMap) -> Result<Json<StateDoc>, ApiError> {
    may_read(&state, &headers)?;
    Ok(Json(StateDoc::capture(&state)))
}

async fn import_state(
    State(state): State<Arc<OpsState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let act = action(Method::PUT, "/admin/state");
    audited(
        &state,
        &headers,
        act,
        Role::Admin,
        body,
        async |state: &OpsState, doc: StateDoc| {
            let before = json!(StateDoc::capture(state));
            match doc.apply(state).await {
                Ok(()) => Ok((before, json!(StateDoc::capture(state)))),
                Err(e @ StateError::Invalid(_)) => Err((before, ApiError::Unprocessable(e.to_string()))),
                Err(e) => Err((before, ApiError::Conflict(e.to_string()))),
            }
        },
    )
    .await
}
