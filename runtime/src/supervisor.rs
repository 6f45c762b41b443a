//! Supervision: one-for-one restarts with a restart intensity, OTP style.
//!
//! [`NodeSupervisor`] owns the children of a node (agents, pools, system
//! actors). When a child fails (a handler returned an error or panicked;
//! ractor catches the panic) it is restarted from its [`ChildSpec`], alone.
//! Restarts are counted across all children within a window
//! ([`RestartIntensity`]); one more than `max_restarts` within `within`
//! and the supervisor stops every child and fails itself, escalating to its
//! parent (for a root supervisor, [`crate::node::Node::wait`] reports it).
//!
//! A child that stops normally is not restarted. Agents' lanes live outside
//! their actors, so what was admitted before a failure is handled by the
//! restarted instance. That holds during a shutdown too: a child that fails
//! while retiring is restarted (within the intensity) and asked to retire
//! again, so an agent that panics while draining at shutdown still handles
//! the rest of what it admitted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use tokio::time::Instant;

use crate::config::SupervisionConfig;
use crate::error::{SpawnError, SupervisionError};

/// Counts restarts in a sliding window (OTP's intensity and period).
///
/// Plain synchronous code: tests drive it with explicit instants.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max_restarts: u32,
    within: Duration,
    history: VecDeque<Instant>,
}

impl RestartIntensity {
    /// Allows `max_restarts` restarts within any window of `within`.
    pub fn new(max_restarts: u32, within: Duration) -> Self {
        Self {
            max_restarts,
            within,
            history: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. `Ok(n)` when it is allowed (`n` restarts
    /// now in the window), `Err(n)` when it exceeds the intensity.
    pub fn record(&mut self, now: Instant) -> Result<u32, u32> {
        while let Some(&oldest) = self.history.front() {
            if now.saturating_duration_since(oldest) >= self.within {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history.push_back(now);
        let n = u32::try_from(self.history.len()).unwrap_or(u32::MAX);
        if n > self.max_restarts { Err(n) } else { Ok(n) }
    }

    /// The window restarts are counted in.
    pub fn within(&self) -> Duration {
        self.within
    }
}

/// Starts (or restarts) a child linked to the given supervisor cell. The
/// `u32` is how many times it has been restarted so far.
pub type StartFn = Arc<dyn Fn(ActorCell, u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// Asks a child to stop gracefully (for agents: retire, handling every
/// admitted message first).
pub type RetireFn = Arc<dyn Fn(&ActorCell) + Send + Sync>;

/// How to start a child, and how to stop it gracefully.
#[derive(Clone)]
pub struct ChildSpec {
    /// The child's name, for logs and reports.
    pub name: String,
    /// Starts the child linked to the supervisor.
    pub start: StartFn,
    /// Stops it gracefully. Default: `ActorCell::stop`.
    pub retire: RetireFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec").field("name", &self.name).finish()
    }
}

impl ChildSpec {
    /// A spec whose graceful stop is a plain `stop`.
    pub fn new(name: impl Into<String>, start: StartFn) -> Self {
        Self {
            name: name.into(),
            start,
            retire: Arc::new(|cell: &ActorCell| cell.stop(Some("shutdown".into()))),
        }
    }

    /// A spec for any ractor actor that can be rebuilt from clones of its
    /// configuration and arguments.
    pub fn for_actor<T>(name: impl Into<String>, actor: T, args: T::Arguments) -> Self
    where
        T: Actor + Clone,
        T::Arguments: Clone + Sync,
    {
        let start: StartFn = Arc::new(move |sup: ActorCell, _restarts: u32| {
            let actor = actor.clone();
            let args = args.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(None, actor, args, sup).await?;
                Ok(r.get_cell())
            })
        });
        Self::new(name, start)
    }
}

/// A child as reported by [`SupervisorMsg::Children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The spec's name.
    pub name: String,
    /// Times it has been restarted.
    pub restarts: u32,
}

/// How a node supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeExit {
    /// Shut down on request.
    Shutdown,
    /// Gave up after too many restarts; the text says which child.
    Escalated(String),
}

/// Control messages to a [`NodeSupervisor`].
pub enum SupervisorMsg {
    /// Start a child and supervise it.
    StartChild(ChildSpec, RpcReplyPort<Result<ActorCell, SpawnError>>),
    /// The current children.
    Children(RpcReplyPort<Vec<ChildInfo>>),
    /// Retire every child, wait for all of them to stop, then stop.
    Shutdown(RpcReplyPort<()>),
}

impl std::fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorMsg::StartChild(spec, _) => write!(f, "StartChild({})", spec.name),
            SupervisorMsg::Children(_) => f.write_str("Children"),
            SupervisorMsg::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl ractor::Message for SupervisorMsg {}

/// The root supervisor of a node.
#[derive(Debug, Clone, Default)]
pub struct NodeSupervisor;

/// Arguments of a [`NodeSupervisor`].
#[derive(Debug, Clone)]
pub struct NodeSupervisorArgs {
    /// Restart intensity.
    pub policy: SupervisionConfig,
    /// Where the supervisor writes how it ended.
    pub exit: Arc<OnceLock<NodeExit>>,
}

struct Child {
    spec: ChildSpec,
    restarts: u32,
}

/// State of a [`NodeSupervisor`].
pub struct SupervisorState {
    intensity: RestartIntensity,
    children: HashMap<ActorId, Child>,
    /// Set once a shutdown is asked for: everyone waiting for it. A list,
    /// because a second `Shutdown` must wait with the first, not replace
    /// (and so drop) the first caller's reply port, which made that caller
    /// see a failed shutdown and kill the tree mid-drain.
    shutdown: Option<Vec<RpcReplyPort<()>>>,
    exit: Arc<OnceLock<NodeExit>>,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorState")
            .field("children", &self.children.len())
            .field("shutting_down", &self.shutdown.is_some())
            .finish()
    }
}

impl NodeSupervisor {
    /// Restarts a failed child, retrying failed starts, within the intensity.
    /// Returns the new instance's cell.
    async fn restart(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        mut child: Child,
    ) -> Result<ActorCell, SupervisionError> {
        loop {
            if let Err(restarts) = state.intensity.record(Instant::now()) {
                return Err(SupervisionError::IntensityExceeded {
                    child: child.spec.name.clone(),
                    restarts,
                    within: state.intensity.within(),
                });
            }
            child.restarts += 1;
            match (child.spec.start)(myself.get_cell(), child.restarts).await {
                Ok(cell) => {
                    tracing::info!(child = %child.spec.name, restarts = child.restarts, "child restarted");
                    state.children.insert(cell.get_id(), child);
                    return Ok(cell);
                }
                Err(e) => {
                    tracing::warn!(child = %child.spec.name, error = %e, "child failed to restart");
                }
            }
        }
    }

    fn finish_shutdown_if_done(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
        if state.children.is_empty() {
            if let Some(replies) = state.shutdown.take() {
                let _ = state.exit.set(NodeExit::Shutdown);
                for reply in replies {
                    // The caller may have stopped waiting; shutting down is still right.
                    let _ = reply.send(());
                }
                myself.stop(Some("shutdown".into()));
            }
        }
    }
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: NodeSupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            intensity: RestartIntensity::new(args.policy.max_restarts, args.policy.within),
            children: HashMap::new(),
            shutdown: None,
            exit: args.exit,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                let result = if state.shutdown.is_some() {
                    Err(SpawnError::SupervisorGone)
                } else {
                    match (spec.start)(myself.get_cell(), 0).await {
                        Ok(cell) => {
                            state.children.insert(cell.get_id(), Child { spec, restarts: 0 });
                            Ok(cell)
                        }
                        Err(e) => Err(SpawnError::Start {
                            name: spec.name.clone(),
                            reason: e.to_string(),
                        }),
                    }
                };
                // The requester may have given up; the child stays supervised.
                let _ = reply.send(result);
            }
            SupervisorMsg::Children(reply) => {
                let mut list: Vec<ChildInfo> = state
                    .children
                    .values()
                    .map(|c| ChildInfo {
                        name: c.spec.name.clone(),
                        restarts: c.restarts,
                    })
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(list);
            }
            SupervisorMsg::Shutdown(reply) => {
                if let Some(waiting) = &mut state.shutdown {
                    // Already retiring everyone: wait with the first caller.
                    waiting.push(reply);
                    return Ok(());
                }
                state.shutdown = Some(vec![reply]);
                for cell in myself.get_children() {
                    if let Some(child) = state.children.get(&cell.get_id()) {
                        (child.spec.retire)(&cell);
                    } else {
                        cell.stop(Some("shutdown".into()));
                    }
                }
                Self::finish_shutdown_if_done(&myself, state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(child) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                tracing::warn!(child = %child.spec.name, error = %err, "child failed");
                match Self::restart(&myself, state, child).await {
                    Ok(cell) => {
                        if state.shutdown.is_some() {
                            // Failed while retiring (maybe before it even
                            // read the request, which died with it): the
                            // new instance retires in its place, handling
                            // what its predecessor had admitted.
                            if let Some(child) = state.children.get(&cell.get_id()) {
                                (child.spec.retire)(&cell);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "supervisor escalates");
                        let _ = state.exit.set(NodeExit::Escalated(e.to_string()));
                        // Dropping the specs closes the lanes of the agents
                        // and pools they start (see `crate::node`).
                        state.children.clear();
                        myself.stop_children(Some("supervisor escalated".into()));
                        return Err(Box::new(e));
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    tracing::debug!(child = %child.spec.name, ?reason, "child stopped");
                }
                Self::finish_shutdown_if_done(&myself, state);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_allows_max_restarts_in_window_then_refuses() {
        let t0 = Instant::now();
        let mut i = RestartIntensity::new(3, Duration::from_secs(10));
        assert_eq!(i.record(t0), Ok(1));
        assert_eq!(i.record(t0 + Duration::from_secs(1)), Ok(2));
        assert_eq!(i.record(t0 + Duration::from_secs(2)), Ok(3));
        assert_eq!(i.record(t0 + Duration::from_secs(3)), Err(4));
    }

    #[test]
    fn intensity_forgets_restarts_older_than_the_window() {
        let t0 = Instant::now();
        let mut i = RestartIntensity::new(2, Duration::from_secs(10));
        assert!(i.record(t0).is_ok());
        assert!(i.record(t0 + Duration::from_secs(5)).is_ok());
        // t0 falls out of the window at t0 + 10 s.
        assert_eq!(i.record(t0 + Duration::from_secs(10)), Ok(2));
        assert_eq!(i.record(t0 + Duration::from_secs(11)), Err(3));
    }

    #[test]
    fn zero_intensity_refuses_the_first_restart() {
        let mut i = RestartIntensity::new(0, Duration::from_secs(1));
        assert_eq!(i.record(Instant::now()), Err(1));
    }
}
