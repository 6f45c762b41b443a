//! [`ClusterPool`]: an agent pool reachable from every node of the
//! cluster under one name, its messages routed by key to one node that
//! hosts it, then to one of that node's workers.
//!
//! # Registering
//!
//! Each node hosting pool `name` registers its local pool's
//! [`RouterHandle`] (consistent hashing by key, `router.strategy =
//! "consistent_hash"`) with [`ClusterPool::register`]. That starts a
//! [`PoolProxy`] in the node's supervision tree, which joins the `pg`
//! groups [`pool_group`] and [`pool_node_group`]; `ractor_cluster` mirrors
//! them on every peer, so each node sees which of its peers host the
//! pool. A node that only sends to the pool registers nothing: it takes a
//! [`ClusterPool::client`] handle, whose keys all go to peers.
//!
//! # Routing
//!
//! The owner of a key is taken from [`PoolRing`]: the cluster's ring of
//! members up, restricted to those hosting the pool (this node, when
//! registered, and every peer whose proxy is in [`pool_node_group`]). A key
//! never goes to a node without the pool; for a key whose owner on the
//! whole ring hosts the pool, the owner is the same. Then:
//!
//! * this node owns the key: the typed message goes straight to the local
//!   router with the key; nothing is encoded ([`ClusterPool::encoded`]
//!   stays where it was, [`ClusterPool::local_sends`] counts it);
//! * a peer owns it: the message is encoded with bincode (standard
//!   configuration) and travels as [`keyed work`](crate::cluster_member::delivery)
//!   for the pool, cast to the owner's proxy. The owner decodes it (a body
//!   that does not decode as `M` is refused: counted in
//!   [`ClusterPool::decode_errors`], logged, not acknowledged, never a
//!   panic) and asks the worker its own router picks for the key.
//!
//! # Delivery
//!
//! Each message reaches the agent as a [`Delivered`] with its key and its
//! [`MessageId`], and a [`Reply`] the agent answers once it has handled it
//! (the pool's `wrap` function builds the agent's message from the two).
//! [`ClusterPool::send_acked`] returns only after that answer; from a
//! peer, the owner acknowledges only then, and a sender that hears no ack
//! within `cluster.ack_timeout` sends the same message (same id) again, to
//! the key's owner at that time: at least once, so an agent that must
//! handle each message once keeps the ids it has seen. [`ClusterPool::send`]
//! does not wait: locally it returns once the worker's lane took the
//! message; to a peer it casts one copy, at most once.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_actors::cluster_member::{ClusterMember, ClusterSettings, Cookie};
//! use nexus_swarm_actors::cluster_pool::{ClusterPool, Delivered};
//! use nexus_swarm_actors::router::Router;
//! use nexus_swarm_runtime::config::RoutingStrategyKind;
//! use nexus_swarm_runtime::prelude::*;
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! struct Greet { name: String }
//!
//! struct Greeter;
//! impl Agent for Greeter {
//!     type Msg = (Delivered<Greet>, Reply<()>);
//!     type State = ();
//!     async fn init(&self, _: &AgentContext<Self::Msg>) -> Result<(), HandlerError> { Ok(()) }
//!     async fn handle(&self, _: &AgentContext<Self::Msg>, (d, done): Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
//!         println!("{} #{}: hello {}", d.key, d.id.id, d.msg.name);
//!         done.send(()); // handled: the sender's ack
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::write(dir.path().join("cookie"), "secret")?;
//! let mut config = NexusConfig::default();
//! # config.node.data_dir = dir.path().to_path_buf();
//! config.router.strategy = RoutingStrategyKind::ConsistentHash;
//! let node = Node::start(config.clone()).await?;
//! let cluster = ClusterMember::start(&node, "cluster-member", ClusterSettings {
//!     name: "n1".into(),
//!     listen: ([127, 0, 0, 1], 0).into(),
//!     cookie: Cookie::from_file(&dir.path().join("cookie"))?,
//!     join: vec![],
//!     config: config.cluster.clone(),
//!     handler: None,
//! }).await?;
//! let workers = node.spawn_pool("greeters", 2, Greeter).await?;
//! let router = Router::start(&node, "greeters-router", config.router.clone()).await?;
//! router.add_pool(&workers).await?;
//! let pool = ClusterPool::register(&node, &cluster, "greeters", router, |d, r| (d, r)).await?;
//! let d = pool.send_acked("conversation-1", Greet { name: "Ada".into() }, Duration::from_secs(5)).await?;
//! assert_eq!(d.owner, "n1");
//! assert_eq!(pool.encoded(), 0); // a local send encodes nothing
//! # cluster.stop();
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod hosts;
mod proxy;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use nexus_swarm_runtime::agent_ref::Reply;
use nexus_swarm_runtime::config::{MAX_CLUSTER_PAYLOAD, RoutingStrategyKind};
use nexus_swarm_runtime::error::{AskError, SpawnError};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::routing::{RoutingError, RoutingKey};
use nexus_swarm_runtime::supervisor::ChildSpec;
use ractor::{ActorCell, ActorRef};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::hosts::PoolRing;
use self::hosts::PoolRingCache;
pub use self::proxy::{PoolProxy, PoolProxyArgs, PoolProxyMsg};
use crate::cluster_member::delivery::Route;
use crate::cluster_member::{ClusterHandle, Delivery, DeliveryError, KeyedWork, PoolWorkHandler};
use crate::router::{RouteAskError, RouteError, RouterHandle};

/// Prefix of every cluster pool's `pg` groups.
pub const POOL_GROUP_PREFIX: &str = "nexus.pool";

/// Longest cluster pool name.
pub const MAX_POOL_NAME: usize = 64;

/// Longest a worker may take over a message from a peer before its
/// handling counts as failed (no ack; the sender sends it again).
pub const REMOTE_ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The `pg` group every proxy of pool `pool` joins.
pub fn pool_group(pool: &str) -> String {
    format!("{POOL_GROUP_PREFIX}.{pool}")
}

/// The `pg` group only node `node`'s proxy of pool `pool` joins.
pub fn pool_node_group(pool: &str, node: &str) -> String {
    format!("{POOL_GROUP_PREFIX}.{pool}.node.{node}")
}

/// Who sent a message, and its number: `(node, id)` is unique in the
/// cluster and the same on every copy of a resent message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId {
    /// The sending node.
    pub node: String,
    /// The message id (unique per sending node).
    pub id: u64,
}

/// A message of a cluster pool as its agent receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<M> {
    /// The routing key it was sent with.
    pub key: String,
    /// Its id: an agent that must handle each message once keeps the ids
    /// it has seen (a resent message may come twice).
    pub id: MessageId,
    /// The message.
    pub msg: M,
}

/// Why a cluster pool was not registered or a message not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterPoolError {
    /// Pool names are 1 to 64 letters, digits, `-` or `_`.
    #[error("cluster pool name {0:?}: 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
    /// The local router does not route by key.
    #[error("cluster pool {pool}: its router's strategy is {strategy:?}, not consistent_hash")]
    NotKeyed {
        /// The pool.
        pool: String,
        /// The router's strategy.
        strategy: RoutingStrategyKind,
    },
    /// This node has registered a pool of this name already.
    #[error("cluster pool {0} is registered on this node already")]
    Taken(String),
    /// The proxy did not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// No node up hosts the pool.
    #[error("no node hosts cluster pool {0}")]
    NoHost(String),
    /// The message could not be encoded for a peer.
    #[error("message for cluster pool {pool} not encoded: {source}")]
    Encode {
        /// The pool.
        pool: String,
        /// bincode's reason.
        source: bincode::error::EncodeError,
    },
    /// A peer's message does not decode as the pool's message type.
    #[error("message for cluster pool {pool} does not decode: {source}")]
    Decode {
        /// The pool.
        pool: String,
        /// bincode's reason.
        source: bincode::error::DecodeError,
    },
    /// A peer's message decoded with bytes left over.
    #[error("message for cluster pool {pool} has {extra} trailing bytes")]
    TrailingBytes {
        /// The pool.
        pool: String,
        /// Bytes left.
        extra: usize,
    },
    /// The local router did not take the message, or the worker did not
    /// answer.
    #[error("cluster pool {pool} on this node: {source}")]
    Local {
        /// The pool.
        pool: String,
        /// The router's reason.
        source: RouteAskError,
    },
    /// A peer owns the key and the message was not acknowledged (or not
    /// sent: no quorum).
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The ring of the pool's hosts could not be built.
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// Counters of one cluster pool on one node; relaxed, they order nothing.
#[derive(Debug, Default)]
struct PoolStats {
    local_sends: AtomicU64,
    encoded: AtomicU64,
    remote_handled: AtomicU64,
    decode_errors: AtomicU64,
    remote_failed: AtomicU64,
}

/// The local pool, its agents' message type erased.
trait LocalPool<M>: Send + Sync + 'static {
    /// Routes `d` by its key and returns once the worker's lane took it.
    fn send(&self, d: Delivered<M>) -> BoxFuture<'static, Result<(), RouteAskError>>;
    /// Routes `d` by its key and returns once the worker answered.
    fn ask(&self, d: Delivered<M>, deadline: Duration) -> BoxFuture<'static, Result<(), RouteAskError>>;
}

type Wrap<M, R, A> = Arc<dyn Fn(Delivered<M>, Reply<R>) -> A + Send + Sync>;

struct RouterPool<M, R, A> {
    router: RouterHandle<A>,
    wrap: Wrap<M, R, A>,
}

impl<M, R, A> LocalPool<M> for RouterPool<M, R, A>
where
    M: Send + 'static,
    R: Send + 'static,
    A: Send + 'static,
{
    fn send(&self, d: Delivered<M>) -> BoxFuture<'static, Result<(), RouteAskError>> {
        let router = self.router.clone();
        let key = RoutingKey::new(&d.key);
        // Nobody waits for this answer: the agent's reply is dropped.
        let (reply, _) = Reply::channel();
        let msg = (self.wrap)(d, reply);
        Box::pin(async move {
            match router.send(msg, Priority::Normal, Some(&key)).await {
                Ok(_) => Ok(()),
                Err(RouteError::Admission { error, .. }) => Err(RouteAskError::Admission(error)),
                Err(RouteError::NoMember(_)) => Err(RouteAskError::NoMember),
                Err(RouteError::Send { member, error }) => Err(RouteAskError::Ask {
                    member,
                    error: AskError::Send(error.kind()),
                }),
            }
        })
    }

    fn ask(&self, d: Delivered<M>, deadline: Duration) -> BoxFuture<'static, Result<(), RouteAskError>> {
        let router = self.router.clone();
        let wrap = Arc::clone(&self.wrap);
        Box::pin(async move {
            let key = RoutingKey::new(&d.key);
            router
                .ask(|reply| wrap(d, reply), Priority::Normal, Some(&key), deadline)
                .await
                .map(|_answer| ())
        })
    }
}

/// What the cluster member calls for this pool's work from peers.
struct PoolHandler<M> {
    pool: String,
    local: Arc<dyn LocalPool<M>>,
    stats: Arc<PoolStats>,
}

impl<M> fmt::Debug for PoolHandler<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandler").field("pool", &self.pool).finish()
    }
}

impl<M: DeserializeOwned + Send + 'static> PoolWorkHandler for PoolHandler<M> {
    fn handle(&self, work: KeyedWork) -> BoxFuture<'static, Result<(), String>> {
        let msg = match decode::<M>(&self.pool, &work.body) {
            Ok(msg) => msg,
            Err(e) => {
                let total = self.stats.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(pool = %self.pool, sender = %work.from, id = work.id, total, error = %e, "cluster pool message refused");
                return Box::pin(std::future::ready(Err(e.to_string())));
            }
        };
        let delivered = Delivered {
            key: work.key,
            id: MessageId {
                node: work.from,
                id: work.id,
            },
            msg,
        };
        let local = Arc::clone(&self.local);
        let stats = Arc::clone(&self.stats);
        let pool = self.pool.clone();
        Box::pin(async move {
            match local.ask(delivered, REMOTE_ASK_TIMEOUT).await {
                Ok(()) => {
                    stats.remote_handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(source) => {
                    stats.remote_failed.fetch_add(1, Ordering::Relaxed);
                    Err(ClusterPoolError::Local { pool, source }.to_string())
                }
            }
        })
    }
}

/// Decodes a peer's message (bincode, standard configuration, bounded by
/// [`MAX_CLUSTER_PAYLOAD`]).
fn decode<M: DeserializeOwned>(pool: &str, body: &[u8]) -> Result<M, ClusterPoolError> {
    let config = bincode::config::standard().with_limit::<{ MAX_CLUSTER_PAYLOAD as usize }>();
    let (msg, read) = bincode::serde::decode_from_slice(body, config).map_err(|source| ClusterPoolError::Decode {
        pool: pool.to_string(),
        source,
    })?;
    if read != body.len() {
        return Err(ClusterPoolError::TrailingBytes {
            pool: pool.to_string(),
            extra: body.len() - read,
        });
    }
    Ok(msg)
}

/// Encodes a message for a peer.
fn encode<M: Serialize>(pool: &str, msg: &M) -> Result<Vec<u8>, ClusterPoolError> {
    bincode::serde::encode_to_vec(msg, bincode::config::standard()).map_err(|source| ClusterPoolError::Encode {
        pool: pool.to_string(),
        source,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// This node's proxy of `pool` on a peer `node`, as mirrored here.
fn remote_proxy(pool: &str, node: &str) -> Option<ActorRef<PoolProxyMsg>> {
    ractor::pg::get_members(&pool_node_group(pool, node))
        .into_iter()
        .find(|c: &ActorCell| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// A handle on cluster pool `M` from this node. Cheap to clone.
pub struct ClusterPool<M> {
    inner: Arc<Inner<M>>,
}

struct Inner<M> {
    name: String,
    cluster: ClusterHandle,
    /// This node's share of the pool; `None` for a client that only sends.
    local: Option<Arc<dyn LocalPool<M>>>,
    rings: PoolRingCache,
    stats: Arc<PoolStats>,
    _msg: PhantomData<fn(M)>,
}

impl<M> Clone for ClusterPool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M> fmt::Debug for ClusterPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPool")
            .field("name", &self.inner.name)
            .field("node", &self.inner.cluster.name())
            .finish()
    }
}

impl<M> Route for Inner<M> {
    fn owner(&self, key: RoutingKey) -> Option<String> {
        self.ring().ok()?.owner(key).map(str::to_string)
    }

    fn cast(&self, owner: &str, frame: Vec<u8>) -> bool {
        // A resend may find this node the owner: its own proxy takes it.
        let local = owner == self.cluster.name();
        let proxy = ractor::pg::get_members(&pool_node_group(&self.name, owner))
            .into_iter()
            .find(|c: &ActorCell| c.get_id().is_local() == local)
            .map(ActorRef::<PoolProxyMsg>::from);
        proxy.is_some_and(|p| p.cast(PoolProxyMsg(frame)).is_ok())
    }
}

impl<M> Inner<M> {
    /// The ring of the hosts up now.
    fn ring(&self) -> Result<Arc<PoolRing>, RoutingError> {
        let view = self.cluster.view();
        let me = self.cluster.name();
        let hosts = |node: &str| {
            if node == me {
                self.local.is_some()
            } else {
                remote_proxy(&self.name, node).is_some()
            }
        };
        self.rings.get(view.ring.members(), hosts, self.cluster.virtual_nodes())
    }
}

impl<M> ClusterPool<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Makes the pool behind `router` (which must route by key) this node's
    /// share of cluster pool `name`: starts its [`PoolProxy`] under `node`'s
    /// supervisor (as `cluster-pool-<name>`) and takes the pool's work from
    /// peers. `wrap` builds the agents' message from a [`Delivered`] and
    /// the [`Reply`] they answer once they have handled it. The
    /// registration lasts as long as the node.
    ///
    /// The router routes to the workers it has as members: a pool that is
    /// resized later is best served by the router declared over it in
    /// `[[routers]]` (`Swarm::router`), which `Swarm::resize_pool` keeps in
    /// step with the workers.
    pub async fn register<A, R, F>(
        node: &Node,
        cluster: &ClusterHandle,
        name: &str,
        router: RouterHandle<A>,
        wrap: F,
    ) -> Result<Self, ClusterPoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(Delivered<M>, Reply<R>) -> A + Send + Sync + 'static,
    {
        if !valid_name(name) {
            return Err(ClusterPoolError::BadName(name.to_string()));
        }
        let strategy = router.strategy();
        if strategy != RoutingStrategyKind::ConsistentHash {
            return Err(ClusterPoolError::NotKeyed {
                pool: name.to_string(),
                strategy,
            });
        }
        let local: Arc<dyn LocalPool<M>> = Arc::new(RouterPool {
            router,
            wrap: Arc::new(wrap),
        });
        let stats = Arc::new(PoolStats::default());
        let handler = PoolHandler {
            pool: name.to_string(),
            local: Arc::clone(&local),
            stats: Arc::clone(&stats),
        };
        if !cluster.register_pool(name, Arc::new(handler)) {
            return Err(ClusterPoolError::Taken(name.to_string()));
        }
        let args = PoolProxyArgs {
            pool: name.to_string(),
            cluster: cluster.clone(),
        };
        // A node that already has a pool of this name refused it above, so
        // a name clash here is with another system actor: reported.
        node.start_child(ChildSpec::for_actor(format!("cluster-pool-{name}"), PoolProxy, args))
            .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                cluster: cluster.clone(),
                local: Some(local),
                rings: PoolRingCache::default(),
                stats,
                _msg: PhantomData,
            }),
        })
    }

    /// A handle on cluster pool `name` for a node that sends to it without
    /// hosting it: every key goes to a peer hosting it, encoded.
    pub fn client(cluster: &ClusterHandle, name: &str) -> Result<Self, ClusterPoolError> {
        if !valid_name(name) {
            return Err(ClusterPoolError::BadName(name.to_string()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                cluster: cluster.clone(),
                local: None,
                rings: PoolRingCache::default(),
                stats: Arc::new(PoolStats::default()),
                _msg: PhantomData,
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The nodes up that host the pool (this one included unless a
    /// [`client`](Self::client)), sorted.
    pub fn hosts(&self) -> Result<Vec<String>, ClusterPoolError> {
        Ok(self.inner.ring()?.hosts().to_vec())
    }

    /// The host owning `key` now.
    pub fn owner(&self, key: &str) -> Result<String, ClusterPoolError> {
        self.inner
            .owner(RoutingKey::new(key))
            .ok_or_else(|| ClusterPoolError::NoHost(self.inner.name.clone()))
    }

    /// Owners of a batch of keys among the hosts, with bounded loads if
    /// `cluster.load_bound_percent` is set.
    pub fn owners(&self, keys: &[RoutingKey]) -> Result<Vec<Option<String>>, ClusterPoolError> {
        let ring = self.inner.ring()?;
        Ok(ring
            .assign(keys, self.inner.cluster.load_bound())
            .into_iter()
            .map(|o| o.map(str::to_string))
            .collect())
    }

    fn delivered(&self, key: &str, msg: M) -> Delivered<M> {
        Delivered {
            key: key.to_string(),
            id: MessageId {
                node: self.inner.cluster.name().to_string(),
                id: self.inner.cluster.next_message_id(),
            },
            msg,
        }
    }

    /// This node's share of the pool, when `owner` is this node (a node is
    /// a host, hence an owner, only with a local share).
    fn local_owner(&self, owner: &str) -> Option<&Arc<dyn LocalPool<M>>> {
        self.inner.local.as_ref().filter(|_| owner == self.inner.cluster.name())
    }

    /// Sends `msg` to the worker owning `key` and waits, up to `deadline`,
    /// until it has handled it (see the module docs). From a peer, copies
    /// are resent to the key's owner at the time until one is
    /// acknowledged.
    pub async fn send_acked(&self, key: &str, msg: M, deadline: Duration) -> Result<Delivery, ClusterPoolError> {
        let inner = &self.inner;
        inner.cluster.check_quorum()?;
        let owner = self.owner(key)?;
        if let Some(local) = self.local_owner(&owner) {
            inner.stats.local_sends.fetch_add(1, Ordering::Relaxed);
            let d = self.delivered(key, msg);
            let id = d.id.id;
            local.ask(d, deadline).await.map_err(|source| ClusterPoolError::Local {
                pool: inner.name.clone(),
                source,
            })?;
            return Ok(Delivery { id, owner, attempts: 1 });
        }
        let body = encode(&inner.name, &msg)?;
        inner.stats.encoded.fetch_add(1, Ordering::Relaxed);
        let route: &dyn Route = &**inner;
        Ok(inner
            .cluster
            .send_routed(key, body, Some(inner.name.clone()), route, deadline)
            .await?)
    }

    /// Sends `msg` to the worker owning `key` without waiting for it to be
    /// handled: on this node, returns once the worker's lane took it; to a
    /// peer, casts one copy (at most once). Returns the owner.
    pub async fn send(&self, key: &str, msg: M) -> Result<String, ClusterPoolError> {
        let inner = &self.inner;
        inner.cluster.check_quorum()?;
        let owner = self.owner(key)?;
        if let Some(local) = self.local_owner(&owner) {
            inner.stats.local_sends.fetch_add(1, Ordering::Relaxed);
            let d = self.delivered(key, msg);
            local.send(d).await.map_err(|source| ClusterPoolError::Local {
                pool: inner.name.clone(),
                source,
            })?;
            return Ok(owner);
        }
        let body = encode(&inner.name, &msg)?;
        inner.stats.encoded.fetch_add(1, Ordering::Relaxed);
        let route: &dyn Route = &**inner;
        match inner.cluster.cast_routed(key, body, Some(inner.name.clone()), route)? {
            Some(_id) => Ok(owner),
            None => Err(ClusterPoolError::NoHost(inner.name.clone())),
        }
    }

    /// Messages this node encoded for a peer (a local send encodes none).
    pub fn encoded(&self) -> u64 {
        self.inner.stats.encoded.load(Ordering::Relaxed)
    }

    /// Messages this node sent to its own workers, unencoded.
    pub fn local_sends(&self) -> u64 {
        self.inner.stats.local_sends.load(Ordering::Relaxed)
    }

    /// Peers' messages this node's workers handled (each copy handled).
    pub fn remote_handled(&self) -> u64 {
        self.inner.stats.remote_handled.load(Ordering::Relaxed)
    }

    /// Peers' messages that did not decode as `M` (each copy).
    pub fn decode_errors(&self) -> u64 {
        self.inner.stats.decode_errors.load(Ordering::Relaxed)
    }

    /// Peers' messages the local workers did not take or answer.
    pub fn remote_failed(&self) -> u64 {
        self.inner.stats.remote_failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
