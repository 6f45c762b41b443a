//! What the swarm knows of each agent it admitted: the scheduler request
//! behind it, its status, and how to reach it for a preemption. The
//! decisions here are synchronous and tested without a runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::resources::{QosClass, ResourceKind, ResourceVector};
use nexus_swarm_runtime::spawn::{AgentSignals, Preemption};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::scheduler::{AllocationReport, PoolReport, RequestId, SchedulerEvent};

/// A resource kind an agent asked for more of than is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The kind.
    pub kind: ResourceKind,
    /// What the agent (every worker of a pool together) asked for.
    pub requested: u64,
    /// What is free now.
    pub free: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} requested, {} free",
            self.requested,
            self.kind.unit(),
            self.kind,
            self.free
        )
    }
}

/// An agent holding resources of a kind that is short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The agent's (or pool's) name.
    pub name: String,
    /// Its QoS class (best-effort holders are preempted first).
    pub qos: QosClass,
    /// What it holds.
    pub holds: ResourceVector,
}

/// Where an agent stands with the node's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdmissionStatus {
    /// Waiting for room until `deadline` (`node.admission_wait`): what is
    /// short, and who holds it (largest holders first).
    Waiting {
        /// What it asked for.
        requested: ResourceVector,
        /// The kinds it asked for more of than is free.
        shortfall: Vec<Shortfall>,
        /// Who holds the short kinds.
        holders: Vec<Holder>,
        /// When it stops waiting and is refused.
        deadline: Instant,
    },
    /// Admitted and running with `granted` reserved for it.
    Admitted {
        /// What is reserved for it (every worker of a pool together).
        granted: ResourceVector,
        /// Its QoS class.
        qos: QosClass,
    },
    /// Preempted: it stops once the grace period ends.
    Preempted {
        /// The agent its resources were taken for.
        by: String,
        /// When it is stopped.
        stops_at: Instant,
    },
}

/// Why an agent was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its requests do not fit in what is free (and it could not wait, or
    /// its wait ended).
    Insufficient {
        /// The kinds it asked for more of than is free.
        shortfall: Vec<Shortfall>,
        /// Who holds them.
        holders: Vec<Holder>,
    },
    /// Its requests exceed the node's whole capacity: it can never run here.
    NeverFits {
        /// The kinds it asked for more of than the node has.
        shortfall: Vec<Shortfall>,
    },
    /// The scheduler's waiting queue is full.
    QueueFull,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |s: &[Shortfall]| s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Refusal::Insufficient { shortfall, holders } => {
                write!(f, "not enough free: {}", list(shortfall))?;
                if !holders.is_empty() {
                    let names: Vec<&str> = holders.iter().map(|h| h.name.as_str()).collect();
                    write!(f, " (held by {})", names.join(", "))?;
                }
                Ok(())
            }
            Refusal::NeverFits { shortfall } => write!(f, "more than the node has: {}", list(shortfall)),
            Refusal::QueueFull => f.write_str("the scheduler's waiting queue is full"),
        }
    }
}

/// The kinds of `requested` above what `pool` has free (or, with
/// `whole`, above its whole capacity).
pub(crate) fn shortfall(requested: &ResourceVector, pool: &PoolReport, whole: bool) -> Vec<Shortfall> {
    let have = if whole { &pool.capacity } else { &pool.available };
    requested
        .iter()
        .filter(|(kind, amount)| *amount > have.get(kind))
        .map(|(kind, amount)| Shortfall {
            kind: kind.clone(),
            requested: amount,
            free: have.get(kind),
        })
        .collect()
}

/// Who holds the kinds in `short` in `pool`, largest first (by the first
/// short kind), named as `name_of` knows them.
pub(crate) fn holders(
    allocations: &[AllocationReport],
    pool: &PoolReport,
    short: &[Shortfall],
    name_of: impl Fn(RequestId) -> Option<String>,
) -> Vec<Holder> {
    let Some(first) = short.first() else {
        return Vec::new();
    };
    let mut out: Vec<Holder> = allocations
        .iter()
        .filter(|a| a.pool == pool.id && short.iter().any(|s| a.granted.get(&s.kind) > 0))
        .map(|a| Holder {
            name: name_of(a.id).unwrap_or_else(|| a.requester.as_str().to_string()),
            qos: a.qos,
            holds: a.granted.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.holds
            .get(&first.kind)
            .cmp(&a.holds.get(&first.kind))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// How the swarm reaches an admitted agent (or pool) for a preemption.
pub(crate) struct Control {
    pub(crate) preempt: Box<dyn Fn(Preemption) + Send + Sync>,
    pub(crate) stop: Arc<dyn Fn() + Send + Sync>,
}

/// One admitted (or waiting) agent.
pub(crate) struct Entry {
    /// Its allocations and how many workers each covers (a pool that grew
    /// holds one per growth; a profile with no requests holds none).
    pub(crate) allocs: Vec<(RequestId, u64)>,
    /// Whose fair share its requests count against.
    pub(crate) tenant: String,
    /// What one worker asks for; a pool holds `workers` times this.
    pub(crate) per_worker: ResourceVector,
    pub(crate) workers: u64,
    pub(crate) qos: QosClass,
    pub(crate) granted: ResourceVector,
    pub(crate) waiting_until: Option<Instant>,
    /// Told of the reservation's outcome while its spawn waits.
    pub(crate) waiter: Option<oneshot::Sender<SchedulerEvent>>,
    pub(crate) control: Option<Control>,
    /// A preemption that arrived before the agent was up: applied once it is.
    pub(crate) pending: Option<Preemption>,
    pub(crate) preempted: Option<(String, Instant)>,
    pub(crate) signals: Arc<AgentSignals>,
    /// The CPU limit of one worker, in millicores (0 = none).
    pub(crate) cpu_limit_per_worker: u64,
    pub(crate) cpu: super::cpu::CpuMeter,
    /// Its CPU use per worker over time, for recommendations.
    pub(crate) usage: super::recommend::UsageHistogram,
}

impl Entry {
    /// The CPU limit of every worker together, in millicores (0 = none):
    /// it follows the pool's size as it is resized.
    pub(crate) fn cpu_limit(&self) -> u64 {
        self.cpu_limit_per_worker.saturating_mul(self.workers)
    }

    pub(crate) fn status(&self) -> Option<AdmissionStatus> {
        if let Some((by, stops_at)) = &self.preempted {
            return Some(AdmissionStatus::Preempted {
                by: by.clone(),
                stops_at: *stops_at,
            });
        }
        if self.waiting_until.is_some() {
            // The caller fills in the shortfall from the scheduler's view.
            return None;
        }
        Some(AdmissionStatus::Admitted {
            granted: self.granted.clone(),
            qos: self.qos,
        })
    }
}

/// Every agent the swarm admitted, by name, and request ids back to names.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) entries: HashMap<Arc<str>, Entry>,
    pub(crate) by_request: HashMap<RequestId, Arc<str>>,
}

impl Table {
    pub(crate) fn name_of(&self, id: RequestId) -> Option<String> {
        self.by_request.get(&id).map(|n| n.to_string())
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        for (id, _) in &entry.allocs {
            self.by_request.remove(id);
        }
        Some(entry)
    }

    /// A scheduler event for `name`'s request. Returns what the swarm must
    /// do outside the lock: a preemption to deliver now (the agent is up),
    /// with its grace.
    pub(crate) fn on_event(
        &mut self,
        name: &str,
        event: SchedulerEvent,
        grace: Duration,
        now: Instant,
    ) -> Option<(Preemption, Arc<dyn Fn() + Send + Sync>)> {
        let by = match &event {
            SchedulerEvent::Preempted(p) if p.remaining.is_empty() => self.name_of(p.by),
            _ => None,
        };
        let entry = self.entries.get_mut(name)?;
        match event {
            SchedulerEvent::Preempted(p) => {
                entry.granted = entry.granted.saturating_sub(&p.reclaimed);
                if !p.remaining.is_empty() {
                    // Only its burst was taken: it keeps running on its requests.
                    return None;
                }
                let notice = Preemption {
                    by: by.unwrap_or_else(|| p.by.to_string()),
                    grace,
                };
                entry.preempted = Some((notice.by.clone(), now + grace));
                match &entry.control {
                    Some(control) => {
                        (control.preempt)(notice.clone());
                        Some((notice, Arc::clone(&control.stop)))
                    }
                    None => {
                        entry.pending = Some(notice);
                        None
                    }
                }
            }
            other => {
                if let SchedulerEvent::Allocated(grant) = &other {
                    entry.granted = grant.resources.clone();
                    entry.waiting_until = None;
                }
                if let Some(waiter) = entry.waiter.take() {
                    // A spawn that stopped waiting has already withdrawn.
                    let _ = waiter.send(other);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nexus_swarm_runtime::priority::Priority;
    use nexus_swarm_runtime::resources::ResourceKind::{Cpu, Memory};

    use super::*;
    use crate::scheduler::{PoolId, Preempted, RequesterId, TenantId};

    fn cpu(m: u64) -> ResourceVector {
        ResourceVector::new().with(Cpu, m)
    }

    fn pool(capacity: ResourceVector, allocated: ResourceVector) -> PoolReport {
        PoolReport {
            id: PoolId::new("agents"),
            base: capacity.clone(),
            available: capacity.saturating_sub(&allocated),
            capacity,
            allocated,
            max: None,
        }
    }

    fn alloc(id: u64, who: &str, granted: ResourceVector, qos: QosClass) -> AllocationReport {
        AllocationReport {
            id: RequestId(id),
            requester: RequesterId::new(who),
            tenant: TenantId::new("t"),
            pool: PoolId::new("agents"),
            granted,
            priority: Priority::Normal,
            qos,
        }
    }

    #[test]
    fn shortfall_names_each_short_kind_with_what_is_free() {
        let p = pool(cpu(4000).with(Memory, 100), cpu(3500));
        let asked = cpu(1000).with(Memory, 50);
        assert_eq!(
            shortfall(&asked, &p, false),
            vec![Shortfall {
                kind: Cpu,
                requested: 1000,
                free: 500
            }]
        );
        assert!(shortfall(&asked, &p, true).is_empty());
        let huge = cpu(5000);
        assert_eq!(shortfall(&huge, &p, true)[0].free, 4000);
    }

    #[test]
    fn holders_are_those_of_short_kinds_largest_first() {
        let p = pool(cpu(4000).with(Memory, 100), cpu(3500).with(Memory, 10));
        let allocs = vec![
            alloc(1, "a", cpu(500), QosClass::Guaranteed),
            alloc(2, "b", cpu(3000), QosClass::BestEffort),
            alloc(3, "c", ResourceVector::new().with(Memory, 10), QosClass::BestEffort),
        ];
        let short = shortfall(&cpu(1000), &p, false);
        let names = |id: RequestId| (id == RequestId(2)).then(|| "agent-b".to_string());
        let h = holders(&allocs, &p, &short, names);
        assert_eq!(
            h.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            vec!["agent-b", "a"]
        );
        assert_eq!(h[0].qos, QosClass::BestEffort);
        assert!(holders(&allocs, &p, &[], |_| None).is_empty());
    }

    fn entry(signals: Arc<AgentSignals>) -> Entry {
        Entry {
            allocs: vec![(RequestId(1), 1)],
            tenant: "t".into(),
            per_worker: cpu(1000),
            workers: 1,
            qos: QosClass::BestEffort,
            granted: cpu(1000),
            waiting_until: None,
            waiter: None,
            control: None,
            pending: None,
            preempted: None,
            signals,
            cpu_limit_per_worker: 0,
            cpu: Default::default(),
            usage: Default::default(),
        }
    }

    #[test]
    fn a_preemption_before_the_agent_is_up_waits_for_it_and_a_burst_one_is_no_notice() {
        let mut t = Table::default();
        t.entries.insert("be".into(), entry(Arc::default()));
        t.by_request.insert(RequestId(1), "be".into());
        t.by_request.insert(RequestId(9), "gold".into());
        let now = Instant::now();
        let burst = Preempted {
            id: RequestId(1),
            pool: PoolId::new("agents"),
            reclaimed: cpu(200),
            remaining: cpu(800),
            by: RequestId(9),
        };
        assert!(
            t.on_event("be", SchedulerEvent::Preempted(burst), Duration::from_secs(1), now)
                .is_none()
        );
        assert_eq!(t.entries["be"].granted, cpu(800));
        assert!(t.entries["be"].preempted.is_none());

        let whole = Preempted {
            id: RequestId(1),
            pool: PoolId::new("agents"),
            reclaimed: cpu(800),
            remaining: ResourceVector::new(),
            by: RequestId(9),
        };
        assert!(
            t.on_event("be", SchedulerEvent::Preempted(whole), Duration::from_secs(1), now)
                .is_none()
        );
        let e = &t.entries["be"];
        assert_eq!(e.pending.as_ref().map(|p| p.by.as_str()), Some("gold"));
        assert_eq!(
            e.status(),
            Some(AdmissionStatus::Preempted {
                by: "gold".into(),
                stops_at: now + Duration::from_secs(1)
            })
        );
    }
}
