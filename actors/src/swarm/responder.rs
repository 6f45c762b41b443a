//! How a swarm applies the `[pressure]` section's automated responses: the
//! [`PressureResponder`] its pressure detector calls on every engagement
//! and release.

use std::sync::{Arc, OnceLock};

use crate::llm_gateway::GatewayHandle;
use crate::pressure::{PressureAction, PressureResponder, ResponseOutcome};
use crate::scaler::ScalerHandle;

/// A swarm's system actors, as the pressure detector acts on them. The
/// scaler starts after the detector (it feeds it), so it is set once it has.
#[derive(Debug, Default)]
pub(crate) struct SwarmResponder {
    pub(crate) gateway: Option<GatewayHandle>,
    pub(crate) scaler: OnceLock<ScalerHandle>,
}

impl SwarmResponder {
    pub(crate) fn new(gateway: Option<GatewayHandle>) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            scaler: OnceLock::new(),
        })
    }
}

impl PressureResponder for SwarmResponder {
    fn apply(&self, action: PressureAction, engaged: bool) -> ResponseOutcome {
        match action {
            PressureAction::ShrinkCaches => match (&self.gateway, engaged) {
                (None, _) => ResponseOutcome::Unavailable("no LLM gateway".into()),
                (Some(g), true) => {
                    let freed = g.shrink_cache();
                    ResponseOutcome::Applied(format!("emptied the memory response cache ({freed} bytes)"))
                }
                // The cache refills as answers come; nothing to undo.
                (Some(_), false) => ResponseOutcome::Applied("the memory response cache refills".into()),
            },
            PressureAction::RejectLowPriority => match &self.gateway {
                None => ResponseOutcome::Unavailable("no LLM gateway".into()),
                Some(g) => {
                    g.reject_low_priority(engaged);
                    ResponseOutcome::Applied(if engaged {
                        "new low-priority LLM requests are refused".into()
                    } else {
                        "low-priority LLM requests are accepted again".into()
                    })
                }
            },
            PressureAction::ShedBestEffort => match self.scaler.get() {
                None => ResponseOutcome::Unavailable("scaling is disabled".into()),
                Some(s) => {
                    s.shed_best_effort(engaged);
                    ResponseOutcome::Applied(if engaged {
                        "best-effort pools scale in to their minimum first, and stay there".into()
                    } else {
                        "best-effort pools scale by their policy again".into()
                    })
                }
            },
        }
    }
}
