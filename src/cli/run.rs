//! `nexus run`: starts a swarm from a configuration file, spawns its
//! `[[run.pools]]` (with their steady load, if any), serves the dashboard,
//! the HTTP status and admin API ([`crate::ops::http`]), records pressure
//! and budgets every `monitor.interval` for `/status/history`, and runs
//! until SIGINT, SIGTERM or an admin's `POST /admin/shutdown`; then shuts
//! down gracefully and says how it went.
//!
//! Shutdown, in order: `/ready` answers `503` and the pools' loads stop;
//! the HTTP server stops taking connections and finishes the requests it
//! has (up to
//! [`HTTP_DRAIN`]); the quota keeper writes its usage; every pool handles
//! what it admitted and the system actors stop (the ledger writes what it
//! holds), up to `run.shutdown_timeout`; the ledger store is verified.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::actors::swarm::Swarm;
use crate::ops::agents::SpawnedPool;
use crate::ops::audit::AuditLog;
use crate::ops::http::{self, HTTP_DRAIN, OpsState};
use crate::ops::shutdown::{LedgerCheck, ShutdownFacts, stop_swarm};
use crate::ops::tokens::Tokens;
use crate::runtime::config::NexusConfig;

/// Exit codes of `nexus run`.
pub const RUN_EXIT_CODES: &str = "Exit codes:
  0  shut down cleanly: every admitted message handled, quotas and ledger written, ledger intact
  1  shut down, but something was lost or is damaged (stderr says what): the shutdown timed out
     with messages unhandled, a quota or ledger write failed, or a system actor gave up
  2  did not start: bad configuration or tokens file, a non-loopback address without tokens,
     the address in use, a pool not admitted";

/// `nexus run ...`
#[derive(Debug, Args)]
#[command(after_help = RUN_EXIT_CODES)]
pub struct RunArgs {
    /// The configuration file (TOML): the swarm's sections and `[run]`.
    #[arg(long)]
    pub config: PathBuf,
    /// Where the HTTP server listens. Any address other than loopback
    /// needs `--tokens`. Port 0 picks a free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// The tokens file of the admin API (TOML `[[tokens]]` entries of
    /// `name`, `role` = viewer|operator|admin and `sha256`, the token's
    /// hash from `nexus tokens hash`). With it, `/status` and `/metrics`
    /// need a viewer token; without it, every admin call is refused.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
}

/// A start failure: printed, exit 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration file was refused.
    #[error("{0}")]
    Config(#[from] crate::runtime::config::ConfigError),
    /// The tokens file was refused.
    #[error("{0}")]
    Tokens(#[from] crate::ops::tokens::TokensError),
    /// A non-loopback address without tokens.
    #[error("refusing to listen on {0}: an address other than loopback needs --tokens FILE with at least one token")]
    ExposedWithoutTokens(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The audit log could not be opened.
    #[error("{0}")]
    Audit(#[from] crate::ops::audit::AuditError),
    /// The swarm did not start.
    #[error("the swarm did not start: {0}")]
    Swarm(#[from] crate::actors::swarm::SwarmError),
    /// A pool was not spawned.
    #[error("{0}")]
    Pool(#[from] crate::ops::agents::SpawnPoolError),
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs `nexus run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexus run: {}", StartError::Runtime(e));
            return Ok(ExitCode::from(2));
        }
    };
    Ok(runtime.block_on(run_async(args)))
}

async fn run_async(args: RunArgs) -> ExitCode {
    // Before anything starts: a signal during start-up is then a shutdown
    // once start-up is done, not an abrupt exit.
    let (mut sigint, mut sigterm) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("nexus run: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let (swarm, state, listener, config) = match start(&args).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("nexus run: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, http::router(Arc::clone(&state)))
            .with_graceful_shutdown(async {
                // A dropped sender stops the server too.
                let _ = http_stopped.await;
            })
            .into_future(),
    );
    state.set_ready(true);
    eprintln!(
        "nexus run: listening on http://{addr} ({} pool(s), data in {})",
        config.run.pools.len(),
        config.node.data_dir.display()
    );

    let live = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut trail = tokio::time::interval(state.trail_interval());
    trail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut admin_stop = state.shutdown_requested();
    let why = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT".to_string(),
            _ = sigterm.recv() => break "SIGTERM".to_string(),
            _ = admin_stop.wait_for(|stop| *stop) => break "POST /admin/shutdown".to_string(),
            exit = swarm.node().wait() => break format!("the node stopped: {exit:?}"),
            _ = tick.tick(), if live => eprint!("\r\x1b[2K{}", status_line(&state).await),
            _ = trail.tick() => state.record_trail().await,
        }
    };
    if live {
        eprintln!();
    }
    eprintln!(
        "nexus run: {why}: shutting down (up to {})",
        humantime::format_duration(config.run.shutdown_timeout)
    );

    let facts = shut_down(&swarm, &state, stop_http, server, &config).await;
    if let LedgerCheck::Intact { records } = facts.ledger {
        eprintln!("nexus run: ledger intact ({records} records)");
    }
    let problems = facts.problems();
    if problems.is_empty() {
        eprintln!("nexus run: shut down cleanly");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("nexus run: {p}");
        }
        ExitCode::FAILURE
    }
}

type Started = (Swarm, Arc<OpsState>, tokio::net::TcpListener, NexusConfig);

async fn start(args: &RunArgs) -> Result<Started, StartError> {
    let config = NexusConfig::from_file(&args.config)?;
    let tokens = match &args.tokens {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    if !args.listen.ip().is_loopback() && tokens.is_empty() {
        return Err(StartError::ExposedWithoutTokens(args.listen));
    }
    let audit = Arc::new(AuditLog::open(&config.node.data_dir)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: args.listen,
            source,
        })?;
    let swarm = Swarm::start(config.clone()).await?;
    let mut pools = BTreeMap::new();
    for entry in &config.run.pools {
        match SpawnedPool::spawn(&swarm, entry).await {
            Ok(p) => {
                pools.insert(entry.name.clone(), p);
            }
            Err(e) => {
                swarm.shutdown(config.run.shutdown_timeout).await;
                return Err(e.into());
            }
        }
    }
    let state = OpsState::new(
        swarm.clone(),
        pools,
        config.routers.clone(),
        tokens,
        audit,
        &config.monitor,
    );
    Ok((swarm, state, listener, config))
}

/// One line: each pool's size, queued and handled messages, and pressure.
async fn status_line(state: &OpsState) -> String {
    let status = state.status().await;
    let mut parts = Vec::new();
    for p in status["pools"].as_array().into_iter().flatten() {
        let queued: u64 = ["high", "normal", "low"]
            .iter()
            .filter_map(|l| p["lanes"][l]["depth"].as_u64())
            .sum();
        parts.push(format!(
            "{} {}w q{} h{}",
            p["name"].as_str().unwrap_or("?"),
            p["size"],
            queued,
            p["handled"]
        ));
    }
    let pressure = status["pressure"]["overall"].as_str().unwrap_or("-");
    format!("nexus run | {} | pressure {pressure}", parts.join(" | "))
}

async fn shut_down(
    swarm: &Swarm,
    state: &OpsState,
    stop_http: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    config: &NexusConfig,
) -> ShutdownFacts {
    state.set_ready(false);
    // No new load from here on (stop_swarm stops it too; stopping twice is fine).
    for p in state.pools().values() {
        p.stop_load();
    }
    // The server may already have stopped (then its error is reported below).
    let _ = stop_http.send(());
    let http = match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("its task failed: {e}")),
        Err(_) => Err(format!(
            "requests still running after {} were dropped",
            humantime::format_duration(HTTP_DRAIN)
        )),
    };
    stop_swarm(
        swarm,
        state.pools(),
        config.run.shutdown_timeout,
        &config.node.data_dir,
        http,
    )
    .await
}
