//! The member's transport: a `ractor_cluster` [`NodeServer`] supervised in
//! the node's `system` subtree, its session events turned into
//! [`ClusterEvent`]s, and a dialer per `--join` peer that reconnects with
//! [`Backoff`] when the session is lost (`ractor_cluster` never does).
//!
//! With `[cluster.tls]` the server accepts and the dialers connect over TLS
//! only (rustls, from the PEM files): a peer's certificate must be signed by the
//! configured authority and name the address it was dialed at.
//!
//! The cookie is read from a file ([`Cookie::from_file`]) and never
//! printed: its `Debug` is redacted, and it is handed only to the
//! `NodeServer`, which uses it in the challenge and never sends it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::cluster::Backoff;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::routing::RoutingError;
use nexus_swarm_runtime::supervisor::{ChildSpec, StartFn};
use parking_lot::Mutex;
use ractor::{Actor, ActorCell, ActorId, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::tls::Tls;
use super::{ClusterEvent, ClusterMsg, ClusterSettings, ClusterShared};

/// Longest cookie file read.
pub const MAX_COOKIE_BYTES: u64 = 4096;

/// The shared secret nodes authenticate with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Cookie(String);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

impl Cookie {
    /// The cookie in `path`: its text without surrounding whitespace, not
    /// empty, at most [`MAX_COOKIE_BYTES`].
    pub fn from_file(path: &Path) -> Result<Self, ClusterError> {
        let err = |reason: String| ClusterError::Cookie {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_COOKIE_BYTES {
            return Err(err(format!("longer than {MAX_COOKIE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cookie = text.trim();
        if cookie.is_empty() {
            return Err(err("empty".into()));
        }
        Ok(Self(cookie.to_string()))
    }
}

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cookie file is unreadable, empty or too long.
    #[error("cookie file {path}: {reason}")]
    Cookie {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A `[cluster.tls]` file is unreadable or not what it should be.
    #[error("cluster TLS file {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The node name makes no ring.
    #[error("cluster ring: {0}")]
    Ring(#[from] RoutingError),
    /// The member or the node server did not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// The node server and the dialers.
#[derive(Debug)]
pub(crate) struct Transport {
    listen: SocketAddr,
    dialers: Mutex<Vec<JoinHandle<()>>>,
}

impl Transport {
    /// Starts the node server (registered as `<member>-server`: it never
    /// crosses nodes, so no peer's actor carries that name) and a
    /// dialer per join peer.
    pub(crate) async fn start(
        node: &Node,
        settings: &ClusterSettings,
        member: &str,
        shared: Arc<ClusterShared>,
    ) -> Result<Self, ClusterError> {
        let listen = resolve_port(settings.listen)?;
        let tls = settings.config.tls.as_ref().map(Tls::load).transpose()?;
        let server_name = format!("{member}-server");
        let spec = server_spec(&server_name, settings, listen, shared, tls.clone());
        node.start_child(spec).await?;
        let config = &settings.config;
        let dialers = settings
            .join
            .iter()
            .map(|&peer| {
                let backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
                let connector = tls.as_ref().map(|t| t.connector.clone());
                tokio::spawn(dial(
                    server_name.clone(),
                    peer,
                    connector,
                    backoff,
                    config.heartbeat_interval,
                ))
            })
            .collect();
        Ok(Self {
            listen,
            dialers: Mutex::new(dialers),
        })
    }

    /// A transport that listens nowhere and dials no one (unit tests).
    #[cfg(test)]
    pub(crate) fn detached(listen: SocketAddr) -> Self {
        Self {
            listen,
            dialers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub(crate) fn stop(&self) {
        for d in self.dialers.lock().drain(..) {
            d.abort();
        }
    }
}

/// `addr` with port 0 replaced by a free port (bound and released here,
/// so that the node can say where it listens).
fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, ClusterError> {
    if addr.port() != 0 {
        // The node server binds it (with SO_REUSEADDR, so a restarted node
        // takes its port back past its predecessor's TIME_WAIT sockets).
        return Ok(addr);
    }
    let listener = std::net::TcpListener::bind(addr).map_err(|source| ClusterError::Bind { addr, source })?;
    listener
        .local_addr()
        .map_err(|source| ClusterError::Bind { addr, source })
}

/// A child spec that (re)starts the node server, registered as `name`, and
/// subscribes the member to its session events.
fn server_spec(
    name: &str,
    settings: &ClusterSettings,
    listen: SocketAddr,
    shared: Arc<ClusterShared>,
    tls: Option<Tls>,
) -> ChildSpec {
    let registered = name.to_string();
    let node_name = settings.name.clone();
    let cookie = settings.cookie.clone();
    let start: StartFn = Arc::new(move |sup: ActorCell, _restarts: u32| {
        let server = NodeServer::new(
            listen.port(),
            cookie.0.clone(),
            node_name.clone(),
            listen.ip().to_string(),
            tls.as_ref().map(|t| IncomingEncryptionMode::Tls(t.acceptor.clone())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let name = registered.clone();
        let sessions = Sessions {
            shared: Arc::clone(&shared),
            authenticated: Arc::default(),
        };
        Box::pin(async move {
            let (server, _) = Actor::spawn_linked(Some(name), server, (), sup).await?;
            // The server was just started: it takes the message.
            let _ = server.cast(NodeServerMessage::SubscribeToEvents {
                id: "cluster-member".into(),
                subscription: Box::new(sessions),
            });
            Ok(server.get_cell())
        })
    });
    ChildSpec::new(name, start)
}

/// Session events of the node server, for the member.
struct Sessions {
    shared: Arc<ClusterShared>,
    /// Sessions that authenticated. Called from the node server's handler
    /// only, one call at a time: the mutex is never contended.
    authenticated: Arc<Mutex<HashSet<ActorId>>>,
}

impl Sessions {
    fn member(&self) -> Option<ActorRef<ClusterMsg>> {
        self.shared.member()
    }
}

/// `n1` of ractor_cluster's `n1@host`.
fn node_name(ses: &NodeServerSessionInformation) -> Option<String> {
    let full = &ses.peer_name.as_ref()?.name;
    Some(full.split_once('@').map_or(full.as_str(), |(n, _)| n).to_string())
}

impl NodeEventSubscription for Sessions {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.authenticated.lock().insert(ses.actor.get_id());
        let node = node_name(&ses).unwrap_or_default();
        tracing::info!(peer = %ses.peer_addr, %node, "cluster session authenticated");
        self.shared.publish(ClusterEvent::SessionUp {
            node,
            peer: ses.peer_addr,
        });
    }

    fn node_session_ready(&self, _ses: NodeServerSessionInformation) {
        // Heartbeat at once rather than at the next tick. A member being
        // restarted misses this one and sends at its first tick.
        if let Some(member) = self.member() {
            let _ = member.cast(ClusterMsg::Tick);
        }
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        if self.authenticated.lock().remove(&ses.actor.get_id()) {
            if let (Some(node), Some(member)) = (node_name(&ses), self.member()) {
                // A member being restarted misses it; its detector judges
                // the peer by its silence instead.
                let _ = member.cast(ClusterMsg::SessionClosed(node));
            }
        } else {
            tracing::warn!(peer = %ses.peer_addr, "cluster session refused: it closed before authenticating (a wrong cookie on one side, or a failed handshake)");
            self.shared
                .publish(ClusterEvent::SessionRefused { peer: ses.peer_addr });
        }
    }
}

/// Keeps a client session to `peer`: connects when there is no
/// authenticated one, and after an attempt that left none waits `check`
/// and then as `backoff` says before trying again.
async fn dial(server_name: String, peer: SocketAddr, tls: Option<TlsConnector>, mut backoff: Backoff, check: Duration) {
    let peer_addr = peer.to_string();
    let mut attempted = false;
    loop {
        let server: Option<ActorRef<NodeServerMessage>> =
            ractor::registry::where_is(server_name.clone()).map(ActorRef::from);
        let Some(server) = server else {
            tokio::time::sleep(backoff.failed()).await;
            continue;
        };
        let sessions = ractor::call_t!(server, NodeServerMessage::GetSessions, 5_000).unwrap_or_default();
        let connected = sessions.values().any(|s| !s.is_server && s.peer_addr == peer_addr);
        if connected {
            backoff.succeeded();
            attempted = false;
            tokio::time::sleep(check).await;
            continue;
        }
        if attempted {
            // The last attempt left no authenticated session (refused,
            // lost, or still in its handshake): wait, then look again.
            attempted = false;
            tokio::time::sleep(backoff.failed()).await;
            continue;
        }
        attempted = true;
        let connected = match &tls {
            Some(connector) => {
                let name = ServerName::IpAddress(peer.ip().into());
                ractor_cluster::client_connect_enc(&server, peer, connector.clone(), name).await
            }
            None => ractor_cluster::client_connect(&server, peer).await,
        };
        match connected {
            Ok(()) => tokio::time::sleep(check).await,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cluster peer not reached");
            }
        }
    }
}
