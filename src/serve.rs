//! `nexus serve`: an OpenAI-compatible HTTP front door to a [`Swarm`]'s
//! LLM gateway, so that agents written in any language (through the
//! official `openai` clients or anything speaking the same API) get the
//! gateway's cache, model choice, spend reservation against budgets and
//! quotas, rate limits, retries, fallbacks and settlement.
//!
//! # Routes
//!
//! - `POST /v1/chat/completions`: a chat completion through
//!   [`GatewayHandle::complete`](nexus_swarm_actors::GatewayHandle::complete),
//!   answered in OpenAI's `chat.completion` shape (see [`wire`] for the
//!   fields read), or with `stream: true` through
//!   [`GatewayHandle::stream`](nexus_swarm_actors::GatewayHandle::stream),
//!   answered with server-sent `chat.completion.chunk` events and
//!   `[DONE]`; the body is pulled by the connection, so a slow reader
//!   slows the provider stream. A stream the caller abandons is charged
//!   for what was produced.
//! - `GET /v1/models`: the gateway's catalogue.
//!
//! # Keys
//!
//! Every request needs `Authorization: Bearer TOKEN` with a token of the
//! keys file ([`keys`]): its SHA-256 is looked up, the request is charged
//! to the key's tenant / workflow / agent, held to the key's own rpm / tpm
//! ([`limits`]) and to its hard budget (a ledger budget `key/<name>`
//! defined at start, scoped to the key's identity). Answers:
//!
//! | case | status | `error.type` / `code` |
//! |---|---|---|
//! | no or unknown key | 401 | `invalid_request_error` / `invalid_api_key` |
//! | malformed request, `max_tokens` over the model's or the key's tpm | 400 | `invalid_request_error` |
//! | unknown model | 404 | `invalid_request_error` / `model_not_found` |
//! | over the key's rpm / tpm | 429 + `retry-after`, `retry-after-ms` | `rate_limit_error` / `rate_limit_exceeded` |
//! | a budget or quota exhausted | 429 | `insufficient_quota` / `insufficient_quota` |
//! | body over `--max-body-bytes` | 413 | `invalid_request_error` |
//!
//! Completions carry `x-ratelimit-limit-requests`, `-tokens`,
//! `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` (the time until the
//! whole limit is free again) for each limit the key has; every response
//! carries [`ADDED_HEADER`] (`x-nexus-added-us`), the server's own time in
//! microseconds with provider calls taken out ([`timing`]).
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `serve.rs` | [`FrontDoorServer`], [`start_swarm`], the CLI arguments |
//! | `serve/keys.rs` | the keys file, hashing, token lookup |
//! | `serve/limits.rs` | a key's rpm / tpm decision and header figures |
//! | `serve/wire.rs` | OpenAI's JSON in and out, errors |
//! | `serve/timing.rs` | provider time, for the added-time header |
//! | `serve/http.rs` | the axum routes |
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use nexus_swarm::runtime::config::NexusConfig;
//! use nexus_swarm::serve::{FrontDoorServer, KeysFile, ServeOptions, start_swarm};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NexusConfig::from_file(Path::new("nexus.toml"))?;
//! let swarm = start_swarm(config).await?;
//! let keys = KeysFile::read(Path::new("keys.toml"))?;
//! let server = FrontDoorServer::bind(&swarm, keys, ServeOptions::default()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.stop().await?;
//! swarm.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod keys;
pub mod limits;
pub mod timing;
pub mod wire;

mod http;
pub(crate) mod task;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use nexus_swarm_actors::llm::GatewayBuildError;
use nexus_swarm_actors::llm_gateway::LlmGatewayArgs;
use nexus_swarm_actors::{LedgerError, Swarm, SwarmError};
use nexus_swarm_runtime::config::NexusConfig;
use parking_lot::Mutex;
use tokio::time::Instant;

pub use http::ADDED_HEADER;
pub use keys::{KeyEntry, KeysError, KeysFile, hash_token};

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// The default bound on request bodies: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Why the front door could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The keys file is unreadable or invalid.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The gateway could not be built from the configuration.
    #[error("LLM gateway: {0}")]
    Gateway(#[from] Box<GatewayBuildError>),
    /// The swarm did not start.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The swarm runs no LLM gateway (no models configured).
    #[error("the swarm runs no LLM gateway: declare [[llm.providers]] and [[llm.models]] in the configuration")]
    NoGateway,
    /// A key's budget could not be defined.
    #[error("budget of key `{key}`: {source}")]
    Budget {
        /// The key's name.
        key: String,
        /// What the ledger said.
        source: LedgerError,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// How the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The address to listen on. Default: [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// Request bodies larger than this are refused with 413. Default:
    /// [`DEFAULT_MAX_BODY_BYTES`] (1 MiB).
    pub max_body_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8787))),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Starts a swarm from `config` whose gateway serves the configured
/// `[[llm.providers]]` and `[[llm.models]]`, each provider timed for the
/// added-time header ([`timing`]).
pub async fn start_swarm(config: NexusConfig) -> Result<Swarm, ServeError> {
    let args = LlmGatewayArgs::from_config(&config).map_err(Box::new)?;
    let providers = args
        .providers
        .into_iter()
        .map(|mut p| {
            p.provider = timing::Timed::wrap(p.provider);
            p
        })
        .collect();
    Ok(Swarm::builder(config).llm(args.catalogue, providers).start().await?)
}

/// A running front door. Dropping it leaves the server running until the
/// runtime stops; [`FrontDoorServer::stop`] stops it.
#[derive(Debug)]
pub struct FrontDoorServer {
    server: crate::serve::task::ServerTask,
}

impl FrontDoorServer {
    /// Defines each key's budget in the swarm's ledger, binds
    /// `options.listen` and serves.
    pub async fn bind(swarm: &Swarm, keys: KeysFile, options: ServeOptions) -> Result<Self, ServeError> {
        keys.validate()?;
        let gateway = swarm.gateway().ok_or(ServeError::NoGateway)?.clone();
        for key in &keys.keys {
            if let Some(budget) = key.budget() {
                swarm
                    .ledger()
                    .put_budget(budget)
                    .await
                    .map_err(|source| ServeError::Budget {
                        key: key.name.clone(),
                        source,
                    })?;
            }
        }
        let limits = keys
            .keys
            .iter()
            .map(|k| Mutex::new(limits::KeyLimits::new(k.requests_per_minute, k.tokens_per_minute)))
            .collect();
        let door = Arc::new(http::FrontDoor {
            gateway,
            keys: keys::KeyTable::new(keys),
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
        let app = http::router(door, options.max_body_bytes);
        Ok(Self {
            server: crate::serve::task::ServerTask::spawn(listener, addr, app),
        })
    }

    /// The address it listens on (with the port chosen when `listen` had
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting, lets requests under way finish, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        self.server.stop().await
    }
}

/// `nexus serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration (TOML) declaring `[[llm.providers]]` and
    /// `[[llm.models]]`, the ledger and quotas.
    #[arg(long)]
    pub config: PathBuf,
    /// The keys file: `[[keys]]` entries with the SHA-256 of each token,
    /// its tenant / workflow / agent, budget and rpm / tpm (`nexus keys new`
    /// writes one).
    #[arg(long)]
    pub keys: PathBuf,
    /// Where to listen (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Request bodies larger than this are refused with 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

/// Runs `nexus serve` until interrupted (Ctrl-C or SIGTERM).
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = NexusConfig::from_file(&args.config).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let keys = KeysFile::read(&args.keys)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let swarm = start_swarm(config).await?;
        let options = ServeOptions {
            listen: args.listen,
            max_body_bytes: args.max_body_bytes,
        };
        let server = match FrontDoorServer::bind(&swarm, keys, options).await {
            Ok(s) => s,
            Err(e) => {
                swarm.shutdown(Duration::from_secs(5)).await;
                return Err(e.into());
            }
        };
        println!("nexus serve: listening on http://{}", server.local_addr());
        std::io::stdout().flush()?;
        interrupted().await;
        eprintln!("nexus serve: stopping");
        let stopped = server.stop().await;
        swarm.shutdown(Duration::from_secs(5)).await;
        stopped?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // Without a SIGTERM handler, Ctrl-C alone; if that fails too, stop at once.
    let _ = tokio::signal::ctrl_c().await;
}

/// `nexus keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Print the SHA-256 (hex) of a token read from standard input, as a
    /// keys file's `sha256` stores it.
    Hash,
    /// Make a new random token: print the token on standard error and its
    /// `[[keys]]` entry (hashed) on standard output, to append to a keys file.
    New(NewKeyArgs),
}

/// `nexus keys new`.
#[derive(Debug, clap::Args)]
pub struct NewKeyArgs {
    /// The key's name (letters, digits, `_ - .`).
    #[arg(long)]
    pub name: String,
    /// The tenant its requests are charged to.
    #[arg(long)]
    pub tenant: String,
    /// The workflow its requests are charged to.
    #[arg(long)]
    pub workflow: Option<String>,
    /// The agent its requests are charged to.
    #[arg(long)]
    pub agent: Option<String>,
    /// A hard daily budget in micro-dollars.
    #[arg(long)]
    pub budget_micro_usd: Option<u64>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u64>,
}

/// Runs `nexus keys ...`.
pub fn run_keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Hash => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let token = token.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                anyhow::bail!("no token on standard input");
            }
            println!("{}", hash_token(token));
        }
        KeysCommand::New(a) => {
            let token = keys::new_token();
            let entry = KeyEntry {
                name: a.name,
                sha256: hash_token(&token),
                tenant: a.tenant,
                workflow: a.workflow,
                agent: a.agent,
                budget_micro_usd: a.budget_micro_usd,
                budget_period: None,
                requests_per_minute: a.rpm,
                tokens_per_minute: a.tpm,
            };
            entry.validate()?;
            let file = KeysFile { keys: vec![entry] };
            eprintln!("token (shown once, not stored): {token}");
            print!("{}", toml::to_string(&file)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
