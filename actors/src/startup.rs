//! Cold start: components declare a [`Tier`], and a [`Startup`] brings
//! them up in tier order within each tier's time budget, eagerly, lazily or
//! both ([`StartupMode`]), then reports each component's time
//! ([`StartupReport`]). With the seeds' tiers:
//!
//! | tier | budget | started |
//! |---|---|---|
//! | [`Tier::Critical`] | 100 ms | first, before [`Startup::run`] returns, in every mode |
//! | [`Tier::Essential`] | 500 ms | next; in [`StartupMode::Lazy`] on first use instead |
//! | [`Tier::Background`] | 2 s | deferred: after `run` returns ([`StartupMode::Hybrid`], the default), before it ([`StartupMode::Eager`]), or on first use ([`StartupMode::Lazy`]) |
//!
//! The components of one tier start concurrently; a tier starts once the
//! one before it is done. A component that takes longer than its tier's
//! budget is started all the same and reported [`Outcome::OverBudget`]; one
//! that fails is reported [`Outcome::Failed`] with its error, and a failed
//! critical component fails the run ([`StartupError`]), since nothing after
//! it can be trusted to work.
//!
//! A component started on first use is reached through a [`Lazy`]
//! handle: the first [`Lazy::get`] starts it (once, however many callers
//! wait), later ones answer at once.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_actors::startup::{Outcome, Startup, StartupMode, Tier};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut startup = Startup::new(StartupMode::Hybrid);
//! startup.component("config", Tier::Critical, || async { Ok(()) });
//! startup.component("ledger", Tier::Essential, || async { Ok(()) });
//! startup.component("warm-cache", Tier::Background, || async {
//!     tokio::time::sleep(Duration::from_millis(5)).await;
//!     Ok(())
//! });
//! let (report, deferred) = startup.run().await.unwrap();
//! assert_eq!(report.components.len(), 2); // critical and essential
//! assert!(report.components.iter().all(|c| c.outcome == Outcome::Started));
//! let background = deferred.wait().await;
//! assert_eq!(background.components[0].name, "warm-cache");
//! # }
//! ```

mod warm;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use warm::{WarmPool, WarmPoolStats};

/// A component's startup tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Needed before anything else works (configuration, supervision).
    Critical,
    /// Needed for the system to do its job (ledger, gateway).
    Essential,
    /// Useful, not urgent (cache warming, pre-started agents).
    Background,
}

impl Tier {
    /// The seeds' budget of the tier: 100 ms, 500 ms, 2 s.
    pub fn budget(self) -> Duration {
        match self {
            Tier::Critical => Duration::from_millis(100),
            Tier::Essential => Duration::from_millis(500),
            Tier::Background => Duration::from_secs(2),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Critical => "critical",
            Tier::Essential => "essential",
            Tier::Background => "background",
        })
    }
}

/// When components past the critical tier start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartupMode {
    /// Every tier before [`Startup::run`] returns.
    Eager,
    /// Critical at once, every other component on first use.
    Lazy,
    /// Critical and essential before `run` returns, background after it.
    /// Default.
    #[default]
    Hybrid,
}

/// Why a component did not start.
pub type ComponentError = Box<dyn std::error::Error + Send + Sync>;

type StartFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), ComponentError>> + Send>;

/// How a component's start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Started within its tier's budget.
    Started,
    /// Started, but took longer than its tier's budget.
    OverBudget,
    /// Its start failed.
    Failed(String),
}

/// One component's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// Its name.
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// How long its start took.
    pub took: Duration,
    /// How it went.
    pub outcome: Outcome,
}

/// What a run (or its deferred part) started, in start order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupReport {
    /// Each component started.
    pub components: Vec<ComponentReport>,
    /// From the first start to the last end.
    pub total: Duration,
}

impl StartupReport {
    /// Components that took longer than their tier's budget.
    pub fn over_budget(&self) -> impl Iterator<Item = &ComponentReport> {
        self.components.iter().filter(|c| c.outcome == Outcome::OverBudget)
    }
}

impl fmt::Display for StartupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.components {
            let how = match &c.outcome {
                Outcome::Started => "ok".to_string(),
                Outcome::OverBudget => format!("over its {:?} budget", c.tier.budget()),
                Outcome::Failed(e) => format!("failed: {e}"),
            };
            writeln!(f, "{:<10} {:<24} {:>8.1?}  {how}", c.tier.to_string(), c.name, c.took)?;
        }
        write!(f, "total {:.1?}", self.total)
    }
}

/// A critical component failed: the run stops there.
#[derive(Debug, thiserror::Error)]
#[error("critical component {name} failed to start: {error}")]
pub struct StartupError {
    /// The component.
    pub name: String,
    /// Its error.
    pub error: String,
    /// What started before it (and how the rest of its tier went).
    pub report: StartupReport,
}

/// A component started on its first use ([`StartupMode::Lazy`]).
#[derive(Clone)]
pub struct Lazy {
    name: Arc<str>,
    tier: Tier,
    start: Arc<parking_lot::Mutex<Option<StartFn>>>,
    done: Arc<OnceCell<ComponentReport>>,
}

impl fmt::Debug for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lazy")
            .field("name", &self.name)
            .field("started", &self.done.initialized())
            .finish()
    }
}

impl Lazy {
    /// Starts the component if it has not been (once, however many callers
    /// wait) and answers how its start went.
    pub async fn get(&self) -> &ComponentReport {
        self.done
            .get_or_init(|| async {
                let start = self.start.lock().take();
                match start {
                    Some(start) => run_one(&self.name, self.tier, start).await,
                    // Taken by a caller whose future was dropped mid-start.
                    None => ComponentReport {
                        name: self.name.to_string(),
                        tier: self.tier,
                        took: Duration::ZERO,
                        outcome: Outcome::Failed("its start was abandoned".into()),
                    },
                }
            })
            .await
    }

    /// Whether it has started.
    pub fn is_started(&self) -> bool {
        self.done.initialized()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The background tier, started after [`Startup::run`] returned.
#[derive(Debug)]
pub struct Deferred(Option<JoinHandle<StartupReport>>);

impl Deferred {
    /// Waits for the deferred components and reports them (an empty report
    /// when nothing was deferred).
    pub async fn wait(self) -> StartupReport {
        match self.0 {
            Some(task) => task.await.unwrap_or_default(),
            None => StartupReport::default(),
        }
    }
}

/// Components to start, by tier (see the module docs).
pub struct Startup {
    mode: StartupMode,
    components: Vec<(String, Tier, StartFn)>,
    lazies: Vec<Lazy>,
}

impl fmt::Debug for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Startup")
            .field("mode", &self.mode)
            .field(
                "components",
                &self.components.iter().map(|(n, t, _)| (n, t)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Startup {
    /// No components yet.
    pub fn new(mode: StartupMode) -> Self {
        Self {
            mode,
            components: Vec::new(),
            lazies: Vec::new(),
        }
    }

    /// Adds a component; in [`StartupMode::Lazy`], one past the critical
    /// tier is started on first use, through the returned handle (`None`
    /// for components the run starts).
    pub fn component<F, Fut>(&mut self, name: impl Into<String>, tier: Tier, start: F) -> Option<Lazy>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ComponentError>> + Send + 'static,
    {
        let name = name.into();
        let start: StartFn = Box::new(move || Box::pin(start()));
        if self.mode == StartupMode::Lazy && tier != Tier::Critical {
            let lazy = Lazy {
                name: Arc::from(name.as_str()),
                tier,
                start: Arc::new(parking_lot::Mutex::new(Some(start))),
                done: Arc::new(OnceCell::new()),
            };
            self.lazies.push(lazy.clone());
            return Some(lazy);
        }
        self.components.push((name, tier, start));
        None
    }

    /// Starts the components: tier by tier, each tier's concurrently (see
    /// the module docs). Answers what started and the deferred background
    /// tier, or the first critical failure.
    pub async fn run(self) -> Result<(StartupReport, Deferred), StartupError> {
        let began = Instant::now();
        let mut by_tier: [Vec<(String, StartFn)>; 3] = Default::default();
        for (name, tier, start) in self.components {
            by_tier[tier as usize].push((name, start));
        }
        let [critical, essential, background] = by_tier;
        let mut report = StartupReport::default();
        report.components.extend(run_tier(Tier::Critical, critical).await);
        if let Some(failed) = report
            .components
            .iter()
            .find(|c| matches!(c.outcome, Outcome::Failed(_)))
        {
            let (name, error) = match &failed.outcome {
                Outcome::Failed(e) => (failed.name.clone(), e.clone()),
                _ => unreachable!("found by its outcome"),
            };
            report.total = began.elapsed();
            return Err(StartupError { name, error, report });
        }
        report.components.extend(run_tier(Tier::Essential, essential).await);
        let deferred = if self.mode == StartupMode::Eager {
            report.components.extend(run_tier(Tier::Background, background).await);
            Deferred(None)
        } else if background.is_empty() {
            Deferred(None)
        } else {
            Deferred(Some(tokio::spawn(async move {
                let began = Instant::now();
                let components = run_tier(Tier::Background, background).await;
                StartupReport {
                    components,
                    total: began.elapsed(),
                }
            })))
        };
        report.total = began.elapsed();
        for c in &report.components {
            tracing::info!(component = %c.name, tier = %c.tier, took = ?c.took, outcome = ?c.outcome, "component started");
        }
        Ok((report, deferred))
    }
}

async fn run_tier(tier: Tier, components: Vec<(String, StartFn)>) -> Vec<ComponentReport> {
    join_all(
        components
            .into_iter()
            .map(|(name, start)| async move { run_one(&name, tier, start).await }),
    )
    .await
}

async fn run_one(name: &str, tier: Tier, start: StartFn) -> ComponentReport {
    let began = Instant::now();
    let result = start().await;
    let took = began.elapsed();
    let outcome = match result {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(()) if took > tier.budget() => Outcome::OverBudget,
        Ok(()) => Outcome::Started,
    };
    ComponentReport {
        name: name.to_string(),
        tier,
        took,
        outcome,
    }
}

#[cfg(test)]
mod tests;
