//! [`QuotaKeeper`]: hierarchical quotas (e.g. system > tenant > workflow >
//! agent), with periods, borrowing, run-time adjustment and usage reports.
//!
//! # Two planes
//!
//! - Control plane: the [`QuotaKeeper`] actor owns the tree's structure.
//!   Defining quotas, adjusting limits and ceilings, and the periodic sweep
//!   are messages to it ([`QuotaKeeperMsg`]), decided by the plain
//!   synchronous [`QuotaTable`].
//! - Data plane: [`QuotaHandle`] (cloneable) charges and releases on the
//!   quotas' atomic counters directly: no lock, no allocation, no actor
//!   round trip. A charge of `n` to a quota is one compare-and-swap per
//!   level from the quota up to its root, all or nothing, and returns a
//!   [`QuotaCharge`] receipt.
//!
//! One handle does both: [`QuotaKeeper::start`] returns a [`QuotaHandle`],
//! whose control-plane calls ([`QuotaHandle::define`],
//! [`QuotaHandle::adjust`], [`QuotaHandle::flush`], ...) go to the keeper
//! running on its tree and whose charges and reports never do.
//!
//! The tree and its counters live in an `Arc` held by the keeper's
//! arguments, so a keeper restarted by its supervisor resumes with every
//! definition and every unit in use; the restarted keeper stores itself
//! where every handle finds it, so handles taken before the restart keep
//! working (`tests/it/system_actors_restart_after_panic.rs`).
//!
//! # Durability
//!
//! A keeper started from configuration ([`QuotaKeeperArgs::from_config`])
//! or on a data directory ([`QuotaKeeperArgs::open`]) keeps each quota's
//! usage in `<data_dir>/quotas.redb` (see [`QuotaStoreError`] for how the
//! store is checked), so a restarted process resumes it:
//!
//! - **What is stored**, per quota id: its kind, period and period start,
//!   the usage of the period it is in, and its peak. Definitions are not
//!   stored: quotas come from configuration or [`QuotaKeeperMsg::Define`],
//!   and a quota defined with an id, kind and period found in the store
//!   resumes that usage (limits and borrow ceilings are the definition's;
//!   an adjustment at run time is not kept). Entries of ids not defined in
//!   a run stay for a later one.
//! - **Periods** keep running from the stored start on the wall clock:
//!   usage of the period still current is restored, usage of a period that
//!   has ended since is not (a quota without a period restores its usage
//!   whatever the time).
//! - **When it is written.** The data plane never writes: a charge stays
//!   the atomic operations above, with no I/O and no lock. The keeper
//!   writes the quotas whose usage changed every
//!   [`flush_interval`](QuotaKeeperArgs::flush_interval) (config
//!   `quotas.flush_interval`, default 1 s) in one committed transaction,
//!   on a blocking thread; when it stops cleanly (a stop, the node's
//!   shutdown) it writes once more; and [`QuotaHandle::flush`] writes at
//!   once. A keeper that fails and is restarted by its supervisor loses
//!   nothing: the counters are in memory, shared with its successor. So a process that is killed (SIGKILL, power loss, a keeper
//!   killed with `kill`) loses at most the charges, releases and settles
//!   made since the last write: at most one flush interval of them. A
//!   receipt or spend-gate hold outstanding at a restart stays charged in
//!   full, for the rest of its period or for good without one (its release
//!   or settlement died with the process).
//! - **Consistency.** A write reads each counter once, one after the
//!   other: a charge or release in flight at that instant may be stored at
//!   some of its levels and not yet at the others (the next write stores
//!   the rest).
//!
//! # Semantics
//!
//! - **Hierarchy.** Each quota has a [`ResourceKind`](nexus_swarm_runtime::resources::ResourceKind), a limit and an
//!   optional parent of the same kind. Charging a quota charges every
//!   ancestor; a charge succeeds only if every level admits it.
//! - **Periods.** A quota with a period has its usage reset to zero at each
//!   period boundary counted from its definition (lazily and exactly: see
//!   the counters' docs). Time comes from a [`QuotaClock`], by default
//!   tokio's, so paused test time drives resets.
//! - **Borrowing.** A quota with a borrow ceiling `c` may go up to `c` above
//!   its own limit, taking its parent's idle capacity: the parent is charged
//!   too, so a loan exists only while the parent has room. The part of a
//!   quota's usage above its limit is its `borrowed` amount.
//! - **Reclaiming.** When a charge *within its own share* (not borrowing at
//!   the level below) is refused at a quota because it is full while some
//!   of its children are borrowing, that quota recalls its loans: from then
//!   on no child may borrow from it ([`QuotaError::BorrowRecalled`]), so
//!   every unit its borrowers release or lose to a period reset comes back
//!   to the lenders instead of being lent again. The recall ends once no
//!   child is above its limit. Limits are never exceeded to make room.
//! - **Adjustment.** [`QuotaKeeperMsg::Adjust`] sets a limit at run time;
//!   charges see it at once. Usage above a lowered limit stays until it is
//!   released or reset.
//! - **Reports.** Per quota ([`QuotaReport`]: current, borrowed, peak,
//!   utilization in permille, time to reset) and as trees
//!   ([`QuotaTreeReport`]), from the keeper or lock-free from a handle.
//! - **Receipts.** A charge is given back only through its [`QuotaCharge`]:
//!   released whole or settled at the amount used, at the quota and the
//!   ancestors it was charged to, in the periods it was charged in. The
//!   receipt is move-only and consumed by the release, so a charge cannot
//!   be given back twice or at another level; a handle on another tree
//!   refuses it ([`QuotaError::ForeignCharge`]). Dropping a receipt keeps
//!   the charge: the usage happened.
//! - **Refusals change nothing.** A charge refused at some level gives
//!   back what the levels below took, and that is not counted as their
//!   peak. An amount more than some level can ever hold (its limit plus its
//!   ceiling) is refused with [`QuotaError::AboveCapacity`] whichever level
//!   refused it first, and starts no recall; the spend gate refuses such an
//!   estimate (`QuotaExceeded`) before charging anything. The data plane
//!   reads no capacity up front: a charge that fits costs only its
//!   compare-and-swaps, and the reason for a refusal is worked out after
//!   it (the levels below, charged for that moment, may refuse a
//!   concurrent charge: the error is on the side of refusing).
//! - **Invalid input** (unknown quota or parent, zero or too large amounts,
//!   a cycle, a kind differing from the parent's, a root with a ceiling, a
//!   receipt from another tree) is a typed [`QuotaError`] and changes
//!   nothing.
//!
//! # Mapping usage to quotas
//!
//! [`QuotaHandle`] is a [`SpendGate`](nexus_swarm_runtime::usage::SpendGate)
//! so that the LLM gateway reserves token, request and cost quotas through
//! it. A quota takes part when it is defined with a [`Scope`](nexus_swarm_runtime::scope::Scope)
//! (tenant, workflow, agent, model; unset fields match anything): for each
//! kind in an estimate, the most specific matching quotas of that kind and
//! all their ancestors are charged, each once. So a tree
//! `system (selector {})` > `tenant acme (selector {tenant: acme})` >
//! `workflow acme/triage (selector {tenant: acme, workflow: triage})`
//! charges all three levels for a call from acme's triage workflow, and
//! `system` and `acme` for any other acme call.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `quota_keeper.rs` | the actor, its arguments and messages |
//! | `quota_keeper/control.rs` | [`QuotaHandle`]'s control plane: calls to the keeper |
//! | `quota_keeper/model.rs` | ids, specs, selectors, reports, errors |
//! | `quota_keeper/table.rs` | [`QuotaTable`]: validation, publication, reports |
//! | `quota_keeper/cell.rs` | one quota's atomic counters |
//! | `quota_keeper/handle.rs` | [`QuotaHandle`]'s data plane, [`QuotaRef`], [`QuotaCharge`], the spend gate |
//! | `quota_keeper/clock.rs` | [`QuotaClock`] |
//! | `quota_keeper/store.rs` | the usage store (`quotas.redb`), [`QuotaStoreError`] |
//!
//! # Example
//!
//! ```
//! use nexus_swarm_actors::quota_keeper::{QuotaError, QuotaKeeper, QuotaKeeperArgs, QuotaSpec};
//! use nexus_swarm_runtime::resources::ResourceKind::Cost;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let args = QuotaKeeperArgs::default().with_quotas(vec![
//!     QuotaSpec::root("system", Cost, 1_000_000),
//!     QuotaSpec::child("acme", "system", Cost, 200_000).borrow_ceiling(100_000),
//! ])?;
//! // Under a node: `QuotaKeeper::start(&node, "quota-keeper", args)`.
//! let (quotas, _join) = QuotaKeeper::spawn_unsupervised(args).await?;
//!
//! let charge = quotas.try_consume("acme", 250_000)?; // 50_000 borrowed from system
//! assert!(matches!(quotas.try_consume("acme", 60_000), Err(QuotaError::Exhausted { .. })));
//!
//! quotas.adjust("acme", 400_000).await?; // a call to the keeper
//! quotas.try_consume("acme", 60_000)?; // receipt dropped: the charge stays
//! quotas.settle(charge, 200_000)?; // 50_000 of the first charge unused
//! let tree = quotas.tree();
//! assert_eq!(tree[0].quota.current, 260_000);
//! assert_eq!(tree[0].children[0].quota.borrowed, 0);
//! # Ok(()) }
//! ```

mod cell;
mod clock;
mod control;
mod handle;
mod model;
mod store;
mod table;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::{NexusConfig, QuotasConfig};
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::supervisor::ChildSpec;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

pub use clock::{ManualClock, QuotaClock};
pub use handle::{QuotaCharge, QuotaHandle, QuotaRef};
pub use model::{
    MAX_QUOTA_AMOUNT, MAX_QUOTA_DEPTH, MIN_QUOTA_PERIOD, QuotaError, QuotaId, QuotaReport, QuotaSpec, QuotaTreeReport,
};
pub use store::{FORMAT_VERSION, QuotaStoreError, STORE_FILE};
pub use table::QuotaTable;

use table::Shared;

/// The quota keeper actor (control plane of the quota tree). Stateless as
/// configuration: the tree lives in [`QuotaKeeperArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaKeeper;

/// What a keeper starts from: the shared tree (with any quotas defined at
/// start and, if persistent, its store), the sweep interval and the flush
/// interval. Cloning shares the tree, which is how a restarted keeper finds
/// its state again.
#[derive(Debug, Clone)]
pub struct QuotaKeeperArgs {
    shared: Arc<Shared>,
    sweep_interval: Duration,
    flush_interval: Duration,
}

impl Default for QuotaKeeperArgs {
    /// An empty tree in memory only, on tokio's clock, swept every 10 s.
    fn default() -> Self {
        Self::new(QuotaClock::tokio())
    }
}

impl QuotaKeeperArgs {
    /// An empty tree in memory only (usage is lost with the process) whose
    /// periods follow `clock`, swept every 10 s.
    pub fn new(clock: QuotaClock) -> Self {
        Self::with_shared(Shared::new(clock))
    }

    fn with_shared(shared: Shared) -> Self {
        let defaults = QuotasConfig::default();
        Self {
            shared: Arc::new(shared),
            sweep_interval: defaults.sweep_interval,
            flush_interval: defaults.flush_interval,
        }
    }

    /// An empty tree whose periods follow `clock` and whose usage is kept
    /// in `<data_dir>/quotas.redb` (see [`QuotaTable::open`] and the
    /// module's "Durability"), swept every 10 s and written every second.
    /// Quotas defined on it resume their stored usage.
    pub fn open(clock: QuotaClock, data_dir: impl AsRef<Path>) -> Result<Self, QuotaError> {
        Ok(Self::with_shared(Shared::open(clock, data_dir.as_ref())?))
    }

    /// A keeper as configured: usage kept under `node.data_dir`, the
    /// `[quotas]` section's quotas defined (resuming their stored usage),
    /// its sweep and flush intervals. The section is validated first
    /// ([`QuotaError::InvalidConfig`] names the field); a store that cannot
    /// be opened is [`QuotaError::Store`].
    pub fn from_config(config: &NexusConfig) -> Result<Self, QuotaError> {
        let quotas = &config.quotas;
        quotas.validate().map_err(|e| QuotaError::InvalidConfig {
            field: e.field().to_string(),
            message: e.to_string(),
        })?;
        let specs = quotas.quotas.iter().cloned().map(QuotaSpec::from).collect();
        Ok(Self::open(QuotaClock::tokio(), &config.node.data_dir)?
            .with_quotas(specs)?
            .sweep_interval(quotas.sweep_interval)
            .flush_interval(quotas.flush_interval))
    }

    /// Defines `specs` (in any order) before the keeper starts; all or
    /// nothing.
    pub fn with_quotas(self, specs: Vec<QuotaSpec>) -> Result<Self, QuotaError> {
        QuotaTable::from_shared(Arc::clone(&self.shared)).define_all(specs)?;
        Ok(self)
    }

    /// How often idle counters whose period ended are rewritten and repaid
    /// recalls lifted. Keep it within 32767 times the shortest period (see
    /// `QuotasConfig::sweep_interval`). A keeper refuses to start with a
    /// zero interval.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// How often a keeper with a store writes the usage that changed
    /// (default 1 s): what a killed process may lose. A keeper with a
    /// store refuses to start with a zero interval; without a store it is
    /// not used.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }

    /// A handle on the tree: its data plane works at once, its
    /// control-plane calls once a keeper runs on these arguments.
    pub fn handle(&self) -> QuotaHandle {
        QuotaHandle::new(Arc::clone(&self.shared))
    }
}

/// The keeper's state: the writer of the tree and its timers.
#[derive(Debug)]
pub struct QuotaKeeperState {
    table: QuotaTable,
    sweep: Option<JoinHandle<()>>,
    flush: Option<JoinHandle<()>>,
}

impl Drop for QuotaKeeperState {
    fn drop(&mut self) {
        // Also after a panic, when no `post_stop` runs: the restarted
        // keeper has timers of its own.
        for timer in [self.sweep.take(), self.flush.take()].into_iter().flatten() {
            timer.abort();
        }
    }
}

/// Messages to the quota keeper.
#[derive(Debug)]
#[non_exhaustive]
pub enum QuotaKeeperMsg {
    /// Defines one quota (its parent must exist).
    Define(QuotaSpec, RpcReplyPort<Result<(), QuotaError>>),
    /// Defines a batch of quotas in any order, all or nothing.
    DefineAll(Vec<QuotaSpec>, RpcReplyPort<Result<(), QuotaError>>),
    /// Sets a quota's limit; answers the previous limit.
    Adjust {
        /// The quota.
        quota: QuotaId,
        /// The new limit.
        limit: u64,
        /// The previous limit, or why not.
        reply: RpcReplyPort<Result<u64, QuotaError>>,
    },
    /// Sets a quota's borrow ceiling; answers the previous one.
    SetBorrowCeiling {
        /// The quota.
        quota: QuotaId,
        /// The new ceiling.
        ceiling: u64,
        /// The previous ceiling, or why not.
        reply: RpcReplyPort<Result<u64, QuotaError>>,
    },
    /// One quota's usage.
    Report(QuotaId, RpcReplyPort<Result<QuotaReport, QuotaError>>),
    /// Every tree's usage.
    Tree(RpcReplyPort<Vec<QuotaTreeReport>>),
    /// Rewrites idle counters whose period ended (sent by the keeper's own
    /// timer).
    Sweep,
    /// Writes the usage that changed to the store, answering how many
    /// quotas were written (0 without a store). Sent with no reply port by
    /// the keeper's own timer.
    Flush(Option<RpcReplyPort<Result<usize, QuotaError>>>),
    /// Panics in the handler (supervision tests only; the
    /// `fault-injection` feature).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for QuotaKeeperMsg {}

impl Actor for QuotaKeeper {
    type Msg = QuotaKeeperMsg;
    type State = QuotaKeeperState;
    type Arguments = QuotaKeeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: QuotaKeeperArgs,
    ) -> Result<QuotaKeeperState, ActorProcessingErr> {
        // A zero period would panic the interval's task and leave the keeper
        // running without sweeps; refusing to start says so instead.
        if args.sweep_interval.is_zero() {
            return Err("quota keeper sweep interval must be longer than zero".into());
        }
        let persistent = args.shared.is_persistent();
        if persistent && args.flush_interval.is_zero() {
            return Err("quota keeper flush interval must be longer than zero".into());
        }
        let sweep = myself.send_interval(args.sweep_interval, || QuotaKeeperMsg::Sweep);
        let flush = persistent.then(|| myself.send_interval(args.flush_interval, || QuotaKeeperMsg::Flush(None)));
        args.shared.keeper.store(Some(Arc::new(myself)));
        Ok(QuotaKeeperState {
            table: QuotaTable::from_shared(args.shared),
            sweep: Some(sweep),
            flush,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut QuotaKeeperState,
    ) -> Result<(), ActorProcessingErr> {
        for timer in [state.sweep.take(), state.flush.take()].into_iter().flatten() {
            timer.abort();
        }
        let keeper = &state.table.shared().keeper;
        if keeper.load().as_ref().is_some_and(|k| k.get_id() == myself.get_id()) {
            keeper.store(None);
        }
        // A clean stop writes what the last interval left in memory.
        match flush(&state.table).await {
            Ok(written) => tracing::debug!(written, "quota usage written at stop"),
            Err(e) => tracing::error!(error = %e, "quota usage could not be written at stop"),
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: QuotaKeeperMsg,
        state: &mut QuotaKeeperState,
    ) -> Result<(), ActorProcessingErr> {
        // A caller that stopped waiting dropped its reply port; the change
        // is made either way, so a failed reply is ignored on purpose.
        match message {
            QuotaKeeperMsg::Define(spec, reply) => {
                let id = spec.id.clone();
                let result = state.table.define(spec);
                log_change("define", &id, &result);
                let _ = reply.send(result);
            }
            QuotaKeeperMsg::DefineAll(specs, reply) => {
                let n = specs.len();
                let result = state.table.define_all(specs);
                match &result {
                    Ok(()) => tracing::info!(quotas = n, "quotas defined"),
                    Err(e) => tracing::warn!(error = %e, "quota batch refused"),
                }
                let _ = reply.send(result);
            }
            QuotaKeeperMsg::Adjust { quota, limit, reply } => {
                let result = state.table.adjust(&quota, limit);
                log_change("adjust", &quota, &result);
                let _ = reply.send(result);
            }
            QuotaKeeperMsg::SetBorrowCeiling { quota, ceiling, reply } => {
                let result = state.table.set_borrow_ceiling(&quota, ceiling);
                log_change("set_borrow_ceiling", &quota, &result);
                let _ = reply.send(result);
            }
            QuotaKeeperMsg::Report(quota, reply) => {
                let _ = reply.send(state.table.report(&quota));
            }
            QuotaKeeperMsg::Tree(reply) => {
                let _ = reply.send(state.table.tree());
            }
            QuotaKeeperMsg::Sweep => {
                let rewritten = state.table.sweep();
                if rewritten > 0 {
                    tracing::debug!(rewritten, "idle quota periods reset");
                }
            }
            QuotaKeeperMsg::Flush(reply) => {
                let result = flush(&state.table).await;
                match (&result, reply) {
                    (_, Some(reply)) => {
                        let _ = reply.send(result);
                    }
                    // The timer's write: the next tick tries again.
                    (Err(e), None) => tracing::warn!(error = %e, "quota usage could not be written"),
                    (Ok(_), None) => {}
                }
            }
            #[cfg(any(test, feature = "fault-injection"))]
            QuotaKeeperMsg::InjectPanic => panic!("fault injected into the quota keeper"),
        }
        Ok(())
    }
}

/// Writes the usage that changed on a blocking thread (a committed redb
/// transaction waits for the disk), while the keeper waits for it.
async fn flush(table: &QuotaTable) -> Result<usize, QuotaError> {
    if !table.shared().is_persistent() {
        return Ok(0);
    }
    let shared = Arc::clone(table.shared());
    match tokio::task::spawn_blocking(move || shared.flush()).await {
        Ok(result) => Ok(result?),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down.
            Err(_) => Err(QuotaError::Unavailable),
        },
    }
}

fn log_change<T: std::fmt::Debug>(op: &str, quota: &QuotaId, result: &Result<T, QuotaError>) {
    match result {
        Ok(v) => tracing::info!(op, quota = %quota, result = ?v, "quota changed"),
        Err(e) => tracing::warn!(op, quota = %quota, error = %e, "quota change refused"),
    }
}

impl QuotaKeeper {
    /// Starts a keeper under `node`'s supervisor, in its `system` subtree,
    /// as `name` (unique among the node's system actors), and returns a
    /// handle on its tree that keeps working across restarts.
    pub async fn start(node: &Node, name: &str, args: QuotaKeeperArgs) -> Result<QuotaHandle, SpawnError> {
        let handle = args.handle();
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(handle)
    }

    /// A supervisor child spec for a keeper named `name`; restarts resume
    /// the same tree.
    pub fn child_spec(name: &str, args: QuotaKeeperArgs) -> ChildSpec {
        ChildSpec::for_actor(name, QuotaKeeper, args)
    }

    /// Starts a keeper that no supervisor restarts (tests, tools that own
    /// the tree for one run).
    pub async fn spawn_unsupervised(args: QuotaKeeperArgs) -> Result<(QuotaHandle, JoinHandle<()>), SpawnErr> {
        let handle = args.handle();
        let (_, join) = Actor::spawn(None, QuotaKeeper, args).await?;
        Ok((handle, join))
    }
}
