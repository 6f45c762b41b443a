//! Routers declared in configuration (`[[routers]]`, see
//! [`DeclaredRouter`]): each starts, supervised, when the pool it names is
//! spawned through the swarm (a router's message type is its pool's, so it
//! cannot start before), with the pool's workers as members, and follows
//! the pool's resizes ([`RouterHandle::sync_pool`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use nexus_swarm_runtime::config::{DeclaredRouter, NexusConfig, RouterConfig};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::pool::PoolRef;
use parking_lot::Mutex;

use super::SwarmError;
use crate::router::{PoolSync, Router, RouterError, RouterHandle};

type Sync = Arc<dyn Fn() -> BoxFuture<'static, Result<PoolSync, RouterError>> + Send + std::marker::Sync>;

/// A declared router that has started.
struct Running {
    /// The pool it routes to.
    pool: String,
    /// Its `RouterHandle<M>`, `M` its pool's message type.
    handle: Box<dyn Any + Send + std::marker::Sync>,
    /// Brings its members in step with the pool.
    sync: Sync,
}

/// The declared routers of a swarm, and those running.
pub(super) struct Routers {
    declared: Vec<DeclaredRouter>,
    base: RouterConfig,
    running: Mutex<HashMap<String, Running>>,
}

impl Routers {
    pub(super) fn new(config: &NexusConfig) -> Self {
        Self {
            declared: config.routers.clone(),
            base: config.router.clone(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the routers declared over `pool` (just spawned), or, for a
    /// router already running over an earlier pool of that name, moves its
    /// members to this one.
    pub(super) async fn pool_spawned<M: Send + 'static>(
        &self,
        node: &Node,
        pool: &PoolRef<M>,
    ) -> Result<(), SwarmError> {
        for declared in self.declared.iter().filter(|d| d.pool == pool.name()) {
            let running = self
                .running
                .lock()
                .get(&declared.name)
                .map(|r| r.handle.downcast_ref::<RouterHandle<M>>().cloned());
            let handle = match running {
                Some(Some(handle)) => handle,
                Some(None) => return Err(SwarmError::RouterMessageType(declared.name.clone())),
                None => Router::<M>::start(node, &declared.name, declared.settings(&self.base)).await?,
            };
            let (h, p) = (handle.clone(), pool.clone());
            let sync: Sync = Arc::new(move || {
                let (h, p) = (h.clone(), p.clone());
                Box::pin(async move { h.sync_pool(&p).await })
            });
            // Recorded before its members are added: a router that started
            // is found again (not started twice) even if adding them fails.
            self.running.lock().insert(
                declared.name.clone(),
                Running {
                    pool: declared.pool.clone(),
                    handle: Box::new(handle.clone()),
                    sync,
                },
            );
            handle.sync_pool(pool).await?;
        }
        Ok(())
    }

    /// Brings the routers over `pool` in step with its workers (after a resize).
    pub(super) async fn pool_resized(&self, pool: &str) -> Result<(), RouterError> {
        let syncs: Vec<Sync> = self
            .running
            .lock()
            .values()
            .filter(|r| r.pool == pool)
            .map(|r| Arc::clone(&r.sync))
            .collect();
        for sync in syncs {
            sync().await?;
        }
        Ok(())
    }

    /// The declared router `name`, once its pool was spawned.
    pub(super) fn get<M: Send + 'static>(&self, name: &str) -> Result<RouterHandle<M>, SwarmError> {
        let Some(declared) = self.declared.iter().find(|d| d.name == name) else {
            return Err(SwarmError::UnknownRouter(name.to_string()));
        };
        match self.running.lock().get(name) {
            None => Err(SwarmError::RouterNotStarted {
                name: name.to_string(),
                pool: declared.pool.clone(),
            }),
            Some(r) => r
                .handle
                .downcast_ref::<RouterHandle<M>>()
                .cloned()
                .ok_or_else(|| SwarmError::RouterMessageType(name.to_string())),
        }
    }
}
