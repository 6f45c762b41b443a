//! [`QuotaHandle`]'s control plane: calls to the keeper actor running on
//! the handle's tree.

use ractor::{ActorRef, RpcReplyPort};

use super::QuotaKeeperMsg;
use super::handle::QuotaHandle;
use super::model::{QuotaError, QuotaId, QuotaSpec};

/// The control plane of a [`QuotaHandle`]: calls to the keeper running on
/// its tree, found anew on each call (so they reach a restarted keeper).
impl QuotaHandle {
    /// The keeper running on the tree, if one does.
    pub fn actor(&self) -> Option<ActorRef<QuotaKeeperMsg>> {
        self.shared.keeper.load_full().map(|k| (*k).clone())
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> QuotaKeeperMsg,
    ) -> Result<T, QuotaError> {
        let actor = self.actor().ok_or(QuotaError::Unavailable)?;
        match actor.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(QuotaError::Unavailable),
        }
    }

    /// Defines one quota.
    pub async fn define(&self, spec: QuotaSpec) -> Result<(), QuotaError> {
        self.call(|r| QuotaKeeperMsg::Define(spec, r)).await?
    }

    /// Defines a batch of quotas, all or nothing.
    pub async fn define_all(&self, specs: Vec<QuotaSpec>) -> Result<(), QuotaError> {
        self.call(|r| QuotaKeeperMsg::DefineAll(specs, r)).await?
    }

    /// Sets a quota's limit; returns the previous one.
    pub async fn adjust(&self, quota: impl Into<QuotaId>, limit: u64) -> Result<u64, QuotaError> {
        let quota = quota.into();
        self.call(|reply| QuotaKeeperMsg::Adjust { quota, limit, reply })
            .await?
    }

    /// Sets a quota's borrow ceiling; returns the previous one.
    pub async fn set_borrow_ceiling(&self, quota: impl Into<QuotaId>, ceiling: u64) -> Result<u64, QuotaError> {
        let quota = quota.into();
        self.call(|reply| QuotaKeeperMsg::SetBorrowCeiling { quota, ceiling, reply })
            .await?
    }

    /// Writes the usage that changed to the store now; returns how many
    /// quotas were written (0 without a store).
    pub async fn flush(&self) -> Result<usize, QuotaError> {
        self.call(|r| QuotaKeeperMsg::Flush(Some(r))).await?
    }

    /// Makes the keeper panic in its handler, as a bug would, so that a
    /// test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), QuotaError> {
        let actor = self.actor().ok_or(QuotaError::Unavailable)?;
        actor
            .cast(QuotaKeeperMsg::InjectPanic)
            .map_err(|_| QuotaError::Unavailable)
    }
}
