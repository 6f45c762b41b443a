//! [`VirtualWork`]: keyed cluster work handled by virtual agents. On the
//! key's owner node, the body is decoded into the agent's message
//! (bincode, standard configuration: [`encode_work`] on the sending side)
//! and delivered to the key's agent, activating it if it is not resident;
//! the cluster acknowledges the work only once the agent has handled it.
//! A body that does not decode, a panic, an agent error or a failed
//! activation sends no ack: the sender sends again (at least once), and a
//! key whose activation panicked is reactivated from its last snapshot.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{VirtualAgent, VirtualAgentsHandle};
use crate::cluster_member::WorkHandler;

/// The body of keyed work for a virtual agent whose message is `msg`.
pub fn encode_work<M: Serialize>(msg: &M) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(msg, bincode::config::standard())
}

/// Why a body is not a message.
fn decode_work<M: DeserializeOwned>(body: &[u8]) -> Result<M, String> {
    let (msg, read): (M, usize) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| format!("undecodable body: {e}"))?;
    if read != body.len() {
        return Err(format!("{} bytes left over after the message", body.len() - read));
    }
    Ok(msg)
}

/// A cluster [`WorkHandler`] delivering keyed work to a host's virtual
/// agents. On the key's owner node, the body is decoded into the agent's
/// message (bincode, standard configuration: [`encode_work`] on the
/// sending side) and delivered to the key's agent, activating it if it is
/// not resident; the work is acknowledged only once the agent has handled
/// it. A body that does not decode, a panic, an agent error, a failed
/// activation or the timeout sends no ack: the sender sends again.
pub struct VirtualWork<A> {
    host: VirtualAgentsHandle<A>,
    timeout: Duration,
}

impl<A> std::fmt::Debug for VirtualWork<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualWork")
            .field("host", &self.host)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<A: VirtualAgent> VirtualWork<A> {
    /// Delivers to `host`'s agents, giving each message at most `timeout`
    /// to be handled (past it, no ack: the sender sends again).
    pub fn new(host: VirtualAgentsHandle<A>, timeout: Duration) -> Self {
        Self { host, timeout }
    }
}

impl<A> WorkHandler for VirtualWork<A>
where
    A: VirtualAgent,
    A::Msg: DeserializeOwned,
{
    fn handle(&self, key: String, body: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let host = self.host.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let msg = decode_work::<A::Msg>(&body).map_err(|e| {
                tracing::warn!(key = %key, error = %e, "keyed work for a virtual agent refused");
                e
            })?;
            host.deliver(&key, msg, timeout).await.map_err(|e| e.to_string())
        })
    }
}
