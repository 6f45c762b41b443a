//! `nexus node`: one node of a cluster. It starts the swarm's supervision
//! tree (from `--config`, else the defaults) and its `[[run.pools]]`, this node's
//! [`ClusterMember`] with its `ractor_cluster` node server on `--listen`,
//! joins the `--join` peers (and redials them with backoff when their
//! session is lost), registers each `--cluster-pool` pool as a
//! [`ClusterPool`] behind a router by key, and runs until SIGINT or SIGTERM.
//! Each `[[cluster.limits]]` entry with `charges` gates the swarm's LLM
//! gateway ([`ClusterLimitGate`]): every call is charged to the
//! cluster-wide limit.
//!
//! What it says, one JSON object per line on stdout: first
//! `{"event":"listening","node":..,"cluster":..,"http":..}`, then each
//! [`ClusterEvent`] (`member_up`, `member_down`, `decode_error`,
//! `session_up`, `session_refused`). With `--http` (loopback only), an
//! API:
//!
//! | route | answer |
//! |---|---|
//! | `GET /cluster` | `node`, `epoch`, `members` (the ring's, sorted), `decode_errors`, `frames_received`, `heartbeats_sent`, `heartbeat_interval_ms`, `failure_timeout_ms`, and keyed work: `work_sent`, `work_acknowledged`, `work_resent`, `work_handled`, `work_duplicates`, `work_refused`, `work_failed`, `has_quorum` |
//! | `GET /cluster/owner?key=K` | `{"key": K, "owner": node}` |
//! | `GET /cluster/owners?keys=K1,K2,..` | `{"owners": [node, ..]}` in the order asked (at most 10,000 keys; with `cluster.load_bound_percent`, placed with bounded loads) |
//! | `GET /cluster/limits` | `node`, and `limits`: each `[[cluster.limits]]` entry as this node sees it: `name`, `limit`, `chunk`, `window_ms` (a limit per window), `owner`, `role` (`owner`, `collecting`, `holder`), `book` (on the owner: `epoch`, `window`, `committed`, `outstanding`, `available`), `known_reserved`, `lease_left`, `spent_here`, `refused_here` |
//! | `POST /cluster/limits/spend?name=L&units=N` | spends `N` units of the cluster-wide limit `L` (from this node's lease, asking the owner for one when needed): `{"name", "spent"}`, or `{"kind", "error"}` with `404` `unknown_limit`, `400` `too_large` (more than one lease holds), `429` `exhausted`, `503` `no_quorum` or `unavailable` |
//! | `POST /cluster/send?key=K[&timeout_ms=N]` | sends the body (at most 64 KiB) as keyed work to the key's owner, at least once, and answers once it is acknowledged (after the owner's `--work-pool` agent replied): `{"id", "owner", "attempts"}`, or `504` after `timeout_ms` (default 10,000), or `503` when the node sees fewer members than `cluster.quorum` |
//! | `GET /cluster/pools/P` | cluster pool `P` (a `--cluster-pool` or `--cluster-pool-client`) on this node: `name`, `hosts` (the nodes up hosting it, sorted), `encoded`, `local_sends`, `remote_handled`, `decode_errors`, `remote_failed`, and `workers`: each local worker's name and the messages its router sent it (none for a client) |
//! | `POST /cluster/pools/P/send?key=K[&timeout_ms=N]` | sends the body (UTF-8 text, at most 64 KiB) to cluster pool `P`: to the worker its router picks for `K` on the key's owner among the pool's hosts, answering once that worker replied, as `/cluster/send` does; `404` for a pool this node neither hosts nor is a client of |
//!
//! The cookie is read from `--cookie-file`, never taken on the command
//! line, and never printed. With `[cluster.tls]` in `--config`, sessions
//! between nodes are TLS only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::actors::cluster_member::WorkHandler;
use crate::actors::cluster_member::{
    ClusterError, ClusterEvent, ClusterHandle, ClusterLimitGate, ClusterMember, ClusterSettings, Cookie, DeliveryError,
    LimitError,
};
use crate::actors::cluster_pool::{ClusterPool, ClusterPoolError, Delivered};
use crate::actors::router::{Router as PoolRouter, RouterHandle};
use crate::actors::swarm::Swarm;
use crate::ops::agents::{SpawnedPool, TextMsg};
use crate::runtime::config::{NexusConfig, RoutingStrategyKind};
use crate::runtime::pool::PoolRef;
use crate::runtime::priority::Priority;
use crate::runtime::routing::RoutingKey;
use futures::future::BoxFuture;

/// Most keys one `/cluster/owners` request may ask about.
pub const MAX_OWNER_KEYS: usize = 10_000;

/// Largest body `POST /cluster/send` takes.
pub const MAX_SEND_BODY: usize = 64 * 1024;

/// Longest wait `POST /cluster/send` may ask for.
pub const MAX_SEND_TIMEOUT_MS: u64 = 600_000;

/// Longest node name.
pub const MAX_NODE_NAME: usize = 64;

/// Exit codes of `nexus node`.
pub const NODE_EXIT_CODES: &str = "Exit codes:
  0  stopped by SIGINT or SIGTERM
  1  the node's supervision tree stopped on its own
  2  did not start: bad arguments, configuration or cookie file, an address in use";

/// `nexus node ...`
#[derive(Debug, Args)]
#[command(after_help = NODE_EXIT_CODES)]
pub struct NodeArgs {
    /// This node's name: 1 to 64 letters, digits, `-` or `_`, distinct in the cluster.
    #[arg(long)]
    pub name: String,
    /// Where the cluster's node server listens (port 0: a free port, printed).
    #[arg(long)]
    pub listen: SocketAddr,
    /// A file holding the shared cookie peers authenticate with.
    #[arg(long)]
    pub cookie_file: PathBuf,
    /// A peer to join (repeatable); redialed with backoff when lost.
    #[arg(long = "join", value_name = "HOST:PORT")]
    pub join: Vec<SocketAddr>,
    /// Serve the cluster API (status, owners, keyed work, limits) on this loopback address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// The configuration file (TOML); `[cluster]` sets heartbeats and the ring.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data directory, instead of the configuration's `node.data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The `[[run.pools]]` pool (of the configuration) that handles the
    /// keyed work this node owns: each message is asked of it as text, and
    /// acknowledged once an agent replied. Without it, keyed work is
    /// handled by being recorded.
    #[arg(long, value_name = "POOL")]
    pub work_pool: Option<String>,
    /// A `[[run.pools]]` pool (of the configuration) to register as a
    /// cluster pool of the same name (repeatable): a router by key over its
    /// workers (taken at start) takes the messages of the keys this node
    /// owns among the pool's hosts.
    #[arg(long = "cluster-pool", value_name = "POOL")]
    pub cluster_pool: Vec<String>,
    /// A cluster pool this node sends to without hosting it (repeatable):
    /// every key goes to a peer hosting it.
    #[arg(long = "cluster-pool-client", value_name = "POOL")]
    pub cluster_pool_client: Vec<String>,
}

/// Longest an agent of `--work-pool` may take over one keyed message
/// before its handling counts as failed (no ack; the sender sends again).
pub const WORK_ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Keyed work asked of a local pool.
#[derive(Debug)]
struct PoolWork {
    pool: PoolRef<TextMsg>,
}

impl WorkHandler for PoolWork {
    fn handle(&self, _key: String, body: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let text = String::from_utf8_lossy(&body).into_owned();
            pool.ask(|reply| (text, reply), Priority::Normal, WORK_ASK_TIMEOUT)
                .await
                .map(|_answer| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// A start failure: printed, exit 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeStartError {
    /// The node name is not usable.
    #[error("--name {0:?}: 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
    /// `--http` is not a loopback address.
    #[error("--http {0}: the cluster API serves loopback addresses only")]
    HttpNotLoopback(SocketAddr),
    /// The configuration file was refused.
    #[error("{0}")]
    Config(#[from] crate::runtime::config::ConfigError),
    /// The swarm did not start.
    #[error("the swarm did not start: {0}")]
    Swarm(#[from] crate::actors::swarm::SwarmError),
    /// The cluster member did not start.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// A `[[run.pools]]` pool was not spawned.
    #[error("{0}")]
    Pool(#[from] crate::ops::agents::SpawnPoolError),
    /// A `[[cluster.limits]]` entry charges LLM calls, but the
    /// configuration declares no LLM models.
    #[error("cluster limit {0:?} charges LLM calls, but [[llm.models]] declares none")]
    ChargesWithoutLlm(String),
    /// `--work-pool` names no `[[run.pools]]` pool.
    #[error("--work-pool {0:?}: no such pool in [[run.pools]]")]
    NoWorkPool(String),
    /// `--cluster-pool` names no `[[run.pools]]` pool.
    #[error("--cluster-pool {0:?}: no such pool in [[run.pools]]")]
    NoClusterPool(String),
    /// A `--cluster-pool`'s router did not start or take the pool.
    #[error("--cluster-pool {pool:?}: {reason}")]
    ClusterPoolRouter {
        /// The pool.
        pool: String,
        /// Why.
        reason: String,
    },
    /// A `--cluster-pool` was not registered.
    #[error("--cluster-pool: {0}")]
    ClusterPool(#[from] ClusterPoolError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime or signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Runs `nexus node`.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexus node: {}", NodeStartError::Io(e));
            return Ok(ExitCode::from(2));
        }
    };
    Ok(runtime.block_on(run_async(args)))
}

async fn run_async(args: NodeArgs) -> ExitCode {
    let started = match start(&args).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nexus node: {e}");
            return ExitCode::from(2);
        }
    };
    let Started {
        swarm,
        pools,
        cluster_pools,
        cluster,
        http,
        config,
        mut sigint,
        mut sigterm,
        mut events,
    } = started;
    let http_addr = match http {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let app = api(cluster.clone(), cluster_pools);
            tokio::spawn(axum::serve(listener, app).into_future());
            addr
        }
        None => None,
    };
    println!(
        "{}",
        json!({
            "event": "listening",
            "node": cluster.name(),
            "cluster": cluster.listen_addr().to_string(),
            "http": http_addr.map(|a| a.to_string()),
        })
    );
    let code = loop {
        tokio::select! {
            _ = sigint.recv() => break ExitCode::SUCCESS,
            _ = sigterm.recv() => break ExitCode::SUCCESS,
            exit = swarm.node().wait() => {
                eprintln!("nexus node: the node stopped: {exit:?}");
                break ExitCode::FAILURE;
            }
            event = events.recv() => match event {
                Ok(event) => print_event(&event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("{}", json!({"event": "lagged", "missed": n}));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
        }
    };
    cluster.stop();
    for p in &pools {
        p.stop_load();
    }
    swarm.shutdown(config.run.shutdown_timeout).await;
    code
}

fn print_event(event: &ClusterEvent) {
    match serde_json::to_string(event) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("nexus node: event not printed: {e}"),
    }
}

struct Started {
    swarm: Swarm,
    pools: Vec<SpawnedPool>,
    cluster_pools: Vec<ServedPool>,
    cluster: ClusterHandle,
    http: Option<tokio::net::TcpListener>,
    config: NexusConfig,
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
    events: tokio::sync::broadcast::Receiver<ClusterEvent>,
}

async fn start(args: &NodeArgs) -> Result<Started, NodeStartError> {
    // Before anything starts, so a signal during start-up is not an abrupt exit.
    let sigint = signal(SignalKind::interrupt())?;
    let sigterm = signal(SignalKind::terminate())?;
    if !valid_name(&args.name) {
        return Err(NodeStartError::BadName(args.name.clone()));
    }
    let mut config = match &args.config {
        Some(path) => NexusConfig::from_file(path)?,
        None => NexusConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = dir.clone();
        config.validate()?;
    }
    let cookie = Cookie::from_file(&args.cookie_file)?;
    let http = match args.http {
        Some(addr) if !addr.ip().is_loopback() => return Err(NodeStartError::HttpNotLoopback(addr)),
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeStartError::Bind { addr, source })?,
        ),
        None => None,
    };
    if let Some(name) = &args.work_pool {
        if !config.run.pools.iter().any(|p| &p.name == name) {
            return Err(NodeStartError::NoWorkPool(name.clone()));
        }
    }
    for name in &args.cluster_pool {
        if !config.run.pools.iter().any(|p| &p.name == name) {
            return Err(NodeStartError::NoClusterPool(name.clone()));
        }
    }
    // Cluster limits that charge LLM calls gate this node's gateway; bound
    // to the cluster member once it has started.
    let mut gates = Vec::new();
    for limit in &config.cluster.limits {
        if let Some(kind) = &limit.charges {
            if config.llm.models.is_empty() {
                return Err(NodeStartError::ChargesWithoutLlm(limit.name.clone()));
            }
            // Checked by the configuration's validation.
            let kind = kind
                .parse()
                .map_err(|_| NodeStartError::ChargesWithoutLlm(limit.name.clone()))?;
            gates.push(ClusterLimitGate::new(&limit.name, kind));
        }
    }
    let swarm = gates
        .iter()
        .fold(Swarm::builder(config.clone()), |b, g| b.gate(Arc::new(g.clone())))
        .start()
        .await?;
    let mut pools = Vec::new();
    let mut handler: Option<Arc<dyn WorkHandler>> = None;
    for entry in &config.run.pools {
        match SpawnedPool::spawn(&swarm, entry).await {
            Ok(p) => {
                if args.work_pool.as_deref() == Some(entry.name.as_str()) {
                    handler = Some(Arc::new(PoolWork { pool: p.pool.clone() }));
                }
                pools.push(p);
            }
            Err(e) => {
                swarm.shutdown(config.run.shutdown_timeout).await;
                return Err(e.into());
            }
        }
    }
    let settings = ClusterSettings {
        name: args.name.clone(),
        listen: args.listen,
        cookie,
        join: args.join.clone(),
        config: config.cluster.clone(),
        handler,
    };
    let (cluster, events) = match ClusterMember::start_subscribed(swarm.node(), "cluster-member", settings).await {
        Ok(started) => started,
        Err(e) => {
            swarm.shutdown(config.run.shutdown_timeout).await;
            return Err(e.into());
        }
    };
    for gate in &gates {
        gate.bind(cluster.clone());
    }
    let mut cluster_pools = Vec::new();
    for name in &args.cluster_pool {
        let Some(spawned) = config.run.pools.iter().zip(&pools).find(|(e, _)| &e.name == name) else {
            continue;
        };
        match serve_pool(&swarm, &cluster, &config, name, &spawned.1.pool).await {
            Ok(served) => cluster_pools.push(served),
            Err(e) => {
                cluster.stop();
                swarm.shutdown(config.run.shutdown_timeout).await;
                return Err(e);
            }
        }
    }
    for name in &args.cluster_pool_client {
        match ClusterPool::client(&cluster, name) {
            Ok(pool) => cluster_pools.push(ServedPool { pool, router: None }),
            Err(e) => {
                cluster.stop();
                swarm.shutdown(config.run.shutdown_timeout).await;
                return Err(e.into());
            }
        }
    }
    Ok(Started {
        swarm,
        pools,
        cluster_pools,
        cluster,
        http,
        config,
        sigint,
        sigterm,
        events,
    })
}

/// A `--cluster-pool`: the cluster pool and the router by key over the
/// local pool's workers.
#[derive(Debug, Clone)]
pub struct ServedPool {
    /// The cluster pool, as this node registered it.
    pub pool: ClusterPool<String>,
    /// Its local router (`None`: a `--cluster-pool-client`).
    pub router: Option<RouterHandle<TextMsg>>,
}

/// Starts a router by key over `pool`'s workers and registers it as
/// cluster pool `name`: each message is asked of the worker as text.
async fn serve_pool(
    swarm: &Swarm,
    cluster: &ClusterHandle,
    config: &NexusConfig,
    name: &str,
    pool: &PoolRef<TextMsg>,
) -> Result<ServedPool, NodeStartError> {
    let mut router_config = config.router.clone();
    router_config.strategy = RoutingStrategyKind::ConsistentHash;
    let router_error = |reason: String| NodeStartError::ClusterPoolRouter {
        pool: name.to_string(),
        reason,
    };
    let router = PoolRouter::start(swarm.node(), &format!("cluster-pool-router-{name}"), router_config)
        .await
        .map_err(|e| router_error(e.to_string()))?;
    router.add_pool(pool).await.map_err(|e| router_error(e.to_string()))?;
    let pool = ClusterPool::register(
        swarm.node(),
        cluster,
        name,
        router.clone(),
        |d: Delivered<String>, r| (d.msg, r),
    )
    .await?;
    Ok(ServedPool {
        pool,
        router: Some(router),
    })
}

/// What the API handlers read.
#[derive(Debug)]
struct ApiState {
    cluster: ClusterHandle,
    pools: BTreeMap<String, ServedPool>,
}

/// The cluster API (`--cluster-pool` pools under `/cluster/pools/`).
pub fn api(cluster: ClusterHandle, pools: Vec<ServedPool>) -> Router {
    let pools = pools.into_iter().map(|p| (p.pool.name().to_string(), p)).collect();
    Router::new()
        .route("/cluster", get(status))
        .route("/cluster/owner", get(owner))
        .route("/cluster/owners", get(owners))
        .route("/cluster/send", post(send).layer(DefaultBodyLimit::max(MAX_SEND_BODY)))
        .route("/cluster/limits", get(limits))
        .route("/cluster/limits/spend", post(spend))
        .route("/cluster/pools/{pool}", get(pool_status))
        .route(
            "/cluster/pools/{pool}/send",
            post(pool_send).layer(DefaultBodyLimit::max(MAX_SEND_BODY)),
        )
        .with_state(Arc::new(ApiState { cluster, pools }))
}

fn no_pool(pool: &str) -> Response {
    let error = format!("no cluster pool {pool:?} on this node");
    (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
}

async fn pool_status(State(api): State<Arc<ApiState>>, Path(pool): Path<String>) -> Response {
    let Some(served) = api.pools.get(&pool) else {
        return no_pool(&pool);
    };
    let p = &served.pool;
    let hosts = match p.hosts() {
        Ok(h) => h,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    };
    let workers: BTreeMap<String, u64> = served
        .router
        .iter()
        .flat_map(|r| r.metrics().members)
        .map(|m| (m.name, m.sent))
        .collect();
    Json(json!({
        "name": p.name(),
        "hosts": hosts,
        "encoded": p.encoded(),
        "local_sends": p.local_sends(),
        "remote_handled": p.remote_handled(),
        "decode_errors": p.decode_errors(),
        "remote_failed": p.remote_failed(),
        "workers": workers,
    }))
    .into_response()
}

async fn pool_send(
    State(api): State<Arc<ApiState>>,
    Path(pool): Path<String>,
    Query(q): Query<SendQuery>,
    body: Bytes,
) -> Response {
    let Some(served) = api.pools.get(&pool) else {
        return no_pool(&pool);
    };
    let deadline = match send_deadline(q.timeout_ms) {
        Ok(d) => d,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        let error = "the body is not UTF-8 text";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    };
    match served.pool.send_acked(&q.key, text, deadline).await {
        Ok(d) => Json(json!({"id": d.id, "owner": d.owner, "attempts": d.attempts})).into_response(),
        Err(ClusterPoolError::Delivery(e)) => delivery_error(e),
        Err(e @ ClusterPoolError::NoHost(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn status(State(api): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let cluster = &api.cluster;
    let view = cluster.view();
    let (interval, timeout) = cluster.timings();
    Json(json!({
        "node": cluster.name(),
        "epoch": view.epoch,
        "members": view.ring.members(),
        "decode_errors": cluster.decode_errors(),
        "frames_received": cluster.frames_received(),
        "heartbeats_sent": cluster.heartbeats_sent(),
        "heartbeat_interval_ms": interval.as_millis() as u64,
        "failure_timeout_ms": timeout.as_millis() as u64,
        "work_sent": cluster.work_sent(),
        "work_acknowledged": cluster.work_acknowledged(),
        "work_resent": cluster.work_resent(),
        "work_handled": cluster.work_handled(),
        "work_duplicates": cluster.work_duplicates(),
        "work_refused": cluster.work_refused(),
        "work_failed": cluster.work_failed(),
        "has_quorum": cluster.has_quorum(),
    }))
}

#[derive(Debug, Deserialize)]
struct OwnerQuery {
    key: String,
}

async fn owner(State(api): State<Arc<ApiState>>, Query(q): Query<OwnerQuery>) -> Json<serde_json::Value> {
    let owner = api.cluster.owner(RoutingKey::new(&q.key));
    Json(json!({"key": q.key, "owner": owner}))
}

#[derive(Debug, Deserialize)]
struct OwnersQuery {
    keys: String,
}

async fn owners(State(api): State<Arc<ApiState>>, Query(q): Query<OwnersQuery>) -> Response {
    let keys: Vec<RoutingKey> = q.keys.split(',').map(RoutingKey::new).collect();
    if keys.len() > MAX_OWNER_KEYS {
        let error = format!("at most {MAX_OWNER_KEYS} keys per request, got {}", keys.len());
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    Json(json!({"owners": api.cluster.owners(&keys)})).into_response()
}

#[derive(Debug, Deserialize)]
struct SendQuery {
    key: String,
    timeout_ms: Option<u64>,
}

/// `timeout_ms` (default 10,000) as a deadline, or why it is refused.
fn send_deadline(timeout_ms: Option<u64>) -> Result<std::time::Duration, String> {
    let timeout_ms = timeout_ms.unwrap_or(10_000);
    if timeout_ms == 0 || timeout_ms > MAX_SEND_TIMEOUT_MS {
        return Err(format!(
            "timeout_ms {timeout_ms}: must be between 1 and {MAX_SEND_TIMEOUT_MS}"
        ));
    }
    Ok(std::time::Duration::from_millis(timeout_ms))
}

async fn send(State(api): State<Arc<ApiState>>, Query(q): Query<SendQuery>, body: Bytes) -> Response {
    let deadline = match send_deadline(q.timeout_ms) {
        Ok(d) => d,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    };
    match api.cluster.send_keyed(&q.key, body.to_vec(), deadline).await {
        Ok(d) => Json(json!({"id": d.id, "owner": d.owner, "attempts": d.attempts})).into_response(),
        Err(e) => delivery_error(e),
    }
}

/// The answer to a delivery that failed.
fn delivery_error(e: DeliveryError) -> Response {
    match e {
        e @ DeliveryError::NoQuorum { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response()
        }
        e @ DeliveryError::Timeout { .. } => {
            (StatusCode::GATEWAY_TIMEOUT, Json(json!({"error": e.to_string()}))).into_response()
        }
        e => (StatusCode::BAD_REQUEST, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn limits(State(api): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(json!({"node": api.cluster.name(), "limits": api.cluster.limits()}))
}

#[derive(Debug, Deserialize)]
struct SpendQuery {
    name: String,
    units: u64,
}

async fn spend(State(api): State<Arc<ApiState>>, Query(q): Query<SpendQuery>) -> Response {
    let e = match api.cluster.spend(&q.name, q.units).await {
        Ok(()) => return Json(json!({"name": q.name, "spent": q.units})).into_response(),
        Err(e) => e,
    };
    let (status, kind) = match &e {
        LimitError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_limit"),
        LimitError::TooLarge { .. } => (StatusCode::BAD_REQUEST, "too_large"),
        LimitError::Exhausted { .. } => (StatusCode::TOO_MANY_REQUESTS, "exhausted"),
        LimitError::NoQuorum { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_quorum"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (status, Json(json!({"kind": kind, "error": e.to_string()}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn node_names_are_plain() {
        assert!(valid_name("node-1_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("n1@host"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
