//! [`PoolProxy`]: a cluster pool's presence on this node. It joins the
//! pool's `pg` groups ([`pool_group`](super::pool_group) and
//! [`pool_node_group`](super::pool_node_group) of this node), which
//! `ractor_cluster` mirrors on every connected peer because its message
//! type is serializable, and hands the frames peers cast to it to this
//! node's cluster member, which decodes, deduplicates and acknowledges
//! them (the pool's agents' own messages never pass through ractor).

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{pool_group, pool_node_group};
use crate::cluster_member::ClusterHandle;

/// The proxy actor. Configuration is in [`PoolProxyArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolProxy;

/// Arguments (and state) of [`PoolProxy`].
#[derive(Debug, Clone)]
pub struct PoolProxyArgs {
    /// The pool's cluster-wide name.
    pub(super) pool: String,
    /// This node's member, which takes the frames.
    pub(super) cluster: ClusterHandle,
}

/// What the proxy handles: a peer's envelope, undecoded.
#[derive(Debug)]
pub struct PoolProxyMsg(pub Vec<u8>);

/// The proxy's one message crosses nodes as its bytes, and anything a peer
/// sends becomes one (the member decodes it, or counts it as garbage).
impl ractor::Message for PoolProxyMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(SerializedMessage::Cast {
            variant: "frame".into(),
            args: self.0,
            metadata: None,
        })
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { args, .. } => Ok(PoolProxyMsg(args)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl Actor for PoolProxy {
    type Msg = PoolProxyMsg;
    type State = PoolProxyArgs;
    type Arguments = PoolProxyArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolProxyMsg>,
        args: PoolProxyArgs,
    ) -> Result<PoolProxyArgs, ActorProcessingErr> {
        ractor::pg::join(pool_group(&args.pool), vec![myself.get_cell()]);
        ractor::pg::join(
            pool_node_group(&args.pool, args.cluster.name()),
            vec![myself.get_cell()],
        );
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<PoolProxyMsg>,
        PoolProxyMsg(frame): PoolProxyMsg,
        args: &mut PoolProxyArgs,
    ) -> Result<(), ActorProcessingErr> {
        if !args.cluster.deliver_frame(frame) {
            // The member is restarting: the sender's next copy comes back.
            tracing::debug!(pool = %args.pool, "pool frame dropped: cluster member not running");
        }
        Ok(())
    }
}
