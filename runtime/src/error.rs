//! Typed errors, one enum per concern, all convertible into [`Error`].

use std::fmt;
use std::time::Duration;

pub use crate::config::ConfigError;
pub use crate::resources::ResourceError;

/// The error type an agent's hooks return. Returning one from a handler
/// fails the agent, which its supervisor then restarts.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A message could not be admitted to an agent's lane. The message is given
/// back in every case.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<M> {
    /// The lane is at capacity (`try_send` only).
    #[error("lane is full")]
    Full(M),
    /// The lane stayed full for the whole wait.
    #[error("lane stayed full until the send timed out")]
    Timeout(M),
    /// The agent is retiring or stopped and admits nothing more.
    #[error("agent is closed")]
    Closed(M),
    /// The pool's low lane spills to disk and spilling this message failed
    /// (it could not be encoded or written; see [`crate::spill`]).
    #[error("spilling to disk failed: {1}")]
    Spill(M, crate::spill::SpillError),
}

impl<M> SendError<M> {
    /// The message that was not admitted.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Timeout(m) | SendError::Closed(m) | SendError::Spill(m, _) => m,
        }
    }

    /// The same error without its message.
    pub fn kind(&self) -> SendErrorKind {
        match self {
            SendError::Full(_) => SendErrorKind::Full,
            SendError::Timeout(_) => SendErrorKind::Timeout,
            SendError::Closed(_) => SendErrorKind::Closed,
            SendError::Spill(..) => SendErrorKind::Spill,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SendError::Full(_) => "Full",
            SendError::Timeout(_) => "Timeout",
            SendError::Closed(_) => "Closed",
            SendError::Spill(..) => "Spill",
        };
        write!(f, "{name}(..)")
    }
}

/// [`SendError`] without the message, for errors that outlive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// The lane was full.
    #[error("lane is full")]
    Full,
    /// The lane stayed full until the send timed out.
    #[error("lane stayed full until the send timed out")]
    Timeout,
    /// The agent admits nothing more.
    #[error("agent is closed")]
    Closed,
    /// Spilling the message to disk failed.
    #[error("spilling to disk failed")]
    Spill,
}

/// A request/reply exchange with an agent failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The request was not admitted.
    #[error("request not admitted: {0}")]
    Send(SendErrorKind),
    /// No reply came before the deadline.
    #[error("no reply within {0:?}")]
    Deadline(Duration),
    /// The agent dropped the reply port without answering (it failed, or
    /// chose not to answer).
    #[error("the agent dropped the request without replying")]
    NoReply,
}

/// An actor or agent could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The underlying actor failed to start (it panicked while starting, or
    /// ractor refused to start it).
    #[error("failed to start {name}: {reason}")]
    Start {
        /// The agent or actor name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Its `init` returned an error.
    #[error("failed to start {name}: init returned an error: {source}")]
    Init {
        /// The agent or pool name.
        name: String,
        /// The error `init` returned.
        #[source]
        source: HandlerError,
    },
    /// Another live agent, pool or group of the node (or, for a system
    /// actor, another system actor) already has this name.
    #[error("the name {name:?} is already taken on this node")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The supervisor that should own it is gone.
    #[error("supervisor is not running")]
    SupervisorGone,
    /// The configuration given for it is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A spilling pool's spill could not be opened (in use, unreadable,
    /// or damaged: see [`crate::spill`]).
    #[error("pool {name}: {source}")]
    Spill {
        /// The pool.
        name: String,
        /// Why.
        #[source]
        source: crate::spill::SpillError,
    },
}

/// A pool could not be resized or queried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("pool size must be at least 1 (asked for {0})")]
    ZeroSize(usize),
    /// The size asked for is above the hard cap of workers per pool.
    #[error("pool size {asked} is above the maximum of {max}")]
    TooLarge {
        /// What was asked.
        asked: usize,
        /// The cap.
        max: usize,
    },
    /// A new worker failed to start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The pool actor is gone.
    #[error("pool is not running")]
    Gone,
}

/// Supervision gave up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisionError {
    /// More restarts than the policy allows within its window: the
    /// supervisor stops its children and fails, escalating to its parent.
    #[error("restart intensity exceeded: {restarts} restarts within {within:?} (child {child})")]
    IntensityExceeded {
        /// The child whose failure crossed the limit.
        child: String,
        /// Restarts counted in the window.
        restarts: u32,
        /// The window.
        within: Duration,
    },
}

/// The crate's error: any of the above.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Sending.
    #[error(transparent)]
    Send(#[from] SendErrorKind),
    /// Request/reply.
    #[error(transparent)]
    Ask(#[from] AskError),
    /// Starting actors.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Pools.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Supervision.
    #[error(transparent)]
    Supervision(#[from] SupervisionError),
    /// Resource arithmetic.
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

impl<M> From<SendError<M>> for Error {
    fn from(e: SendError<M>) -> Self {
        Error::Send(e.kind())
    }
}

impl<M> From<SendError<M>> for AskError {
    fn from(e: SendError<M>) -> Self {
        AskError::Send(e.kind())
    }
}
