//! Budgets of the cost ledger, end to end through the actor, the store and
//! the spend gate: a hard budget halts its scope until the period rolls
//! over, alerts arrive once per threshold per period, throttling lowers and
//! restores the registered admission rate, a rollover resets spend, spend
//! survives a restart, and concurrent requests cannot overshoot.
//!
//! Time is tokio's paused clock seen through `TokioClock`, so periods roll
//! over with `tokio::time::advance`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_swarm::actors::Scope;
use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm::runtime::usage::{RateControl, SpendGate, SpendRefused, UsageMeta, UsageRecord, UsageSink};
use tokio::sync::{broadcast, watch};

const TIMEOUT: Duration = Duration::from_secs(30);
/// 2024-02-29T00:00:00Z: an hour, day and (leap) month boundary.
const START_US: u64 = 1_709_164_800 * MICROS_PER_SEC;
const HOUR: Duration = Duration::from_secs(3600);
const MODEL: &str = "m1";

/// A ledger on a fresh directory whose model costs 1 micro-dollar per token.
async fn ledger(dir: &std::path::Path, clock: Arc<dyn Clock>) -> (ractor::ActorRef<CostLedgerMsg>, LedgerHandle) {
    let (actor, ledger) = CostLedger::spawn_unsupervised(
        CostLedgerArgs::open(LedgerOptions::new(dir).clock(clock))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    ledger
        .set_model_price(MODEL, ModelRates::new(1_000_000, 1_000_000, 0).unwrap())
        .await
        .unwrap();
    (actor, ledger)
}

fn meta(tenant: &str) -> UsageMeta {
    UsageMeta::default().tenant(tenant).model(MODEL)
}

fn tokens(n: u64) -> ResourceVector {
    ResourceVector::new().with(ResourceKind::InputTokens, n)
}

/// One gateway-style request: reserve the estimate, settle the actual,
/// record it.
async fn request(ledger: &LedgerHandle, m: &UsageMeta, estimate: u64, actual: u64) -> Result<(), SpendRefused> {
    let gate = ledger.budgets();
    let hold = gate.reserve(m, &tokens(estimate))?;
    gate.settle(hold, &tokens(actual));
    let records = vec![UsageRecord {
        kind: ResourceKind::InputTokens,
        amount: actual,
        meta: m.clone(),
    }];
    tokio::time::timeout(TIMEOUT, ledger.record(records))
        .await
        .expect("recorded in time")
        .expect("recorded");
    Ok(())
}

fn kinds(rx: &mut broadcast::Receiver<BudgetEvent>) -> Vec<BudgetEventKind> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|e| e.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn halt_refuses_the_crossing_request_and_every_one_after_until_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = ledger(dir.path(), Arc::new(TokioClock::starting_at(START_US))).await;
    let budget = Budget::new("hard", 1000, BudgetPeriod::Hourly, BudgetAction::Halt).scope(Scope::all().tenant("acme"));
    ledger.put_budget(budget).await.unwrap();
    let mut events = ledger.subscribe();
    let acme = meta("acme");

    request(&ledger, &acme, 400, 400).await.unwrap();
    request(&ledger, &acme, 400, 350).await.unwrap();
    let refused = request(&ledger, &acme, 300, 300).await.unwrap_err();
    assert_eq!(
        refused,
        SpendRefused::BudgetExceeded {
            budget: "hard".into(),
            limit: 1000,
            spent: 750,
            reserved: 0,
            requested: 300
        }
    );
    assert!(kinds(&mut events).contains(&BudgetEventKind::Halted));
    // Halted: a request that would fit is refused too, in scope only.
    assert!(request(&ledger, &acme, 10, 10).await.is_err());
    assert!(request(&ledger, &acme, 1, 1).await.is_err());
    request(&ledger, &meta("other"), 5000, 5000).await.unwrap();
    assert_eq!(ledger.budget_status("hard").unwrap().spent_micro_usd, 750);

    tokio::time::advance(HOUR).await;
    let status = ledger.budget_status("hard").unwrap();
    assert_eq!(status.spent_micro_usd, 0, "the new hour starts from zero");
    assert!(!status.halted);
    request(&ledger, &acme, 900, 900).await.unwrap();
    assert!(kinds(&mut events).contains(&BudgetEventKind::Resumed));
    assert!(request(&ledger, &acme, 101, 101).await.is_err());
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn alert_events_arrive_once_per_threshold_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = ledger(dir.path(), Arc::new(TokioClock::starting_at(START_US))).await;
    ledger
        .put_budget(Budget::new("daily", 1000, BudgetPeriod::Daily, BudgetAction::Alert))
        .await
        .unwrap();
    let mut events = ledger.subscribe();
    let m = meta("acme");
    let mut track = async |n: u64| {
        ledger
            .track_usage(ResourceKind::InputTokens, n, m.clone())
            .await
            .unwrap();
        kinds(&mut events)
    };
    let pct = |p: u8| BudgetEventKind::Threshold { percent: p };
    assert_eq!(track(300).await, vec![]);
    assert_eq!(track(250).await, vec![pct(50)]);
    assert_eq!(track(300).await, vec![pct(80)]);
    assert_eq!(track(200).await, vec![pct(100)]);
    assert_eq!(track(500).await, vec![], "no threshold twice in a period");
    tokio::time::advance(24 * HOUR).await;
    assert_eq!(track(900).await, vec![pct(50), pct(80)], "a new period alerts again");
    actor.stop_and_wait(None, None).await.unwrap();
}

/// A rate control that remembers every factor it was set to.
struct Admission {
    factor: watch::Sender<u32>,
    history: Mutex<Vec<u32>>,
}

impl Admission {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            factor: watch::channel(1000).0,
            history: Mutex::new(Vec::new()),
        })
    }

    fn history(&self) -> Vec<u32> {
        self.history.lock().unwrap().clone()
    }
}

impl RateControl for Admission {
    fn set_rate_factor(&self, permille: u32) {
        self.history.lock().unwrap().push(permille);
        self.factor.send_replace(permille);
    }
}

#[tokio::test(start_paused = true)]
async fn throttle_lowers_the_admission_rate_while_over_and_restores_it_at_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = ledger(dir.path(), Arc::new(TokioClock::starting_at(START_US))).await;
    let acme_router = Admission::new();
    let other_router = Admission::new();
    ledger.register_rate_control(Scope::all().tenant("acme"), acme_router.clone());
    ledger.register_rate_control(Scope::all().tenant("other"), other_router.clone());
    let budget = Budget::new(
        "slow",
        1000,
        BudgetPeriod::Hourly,
        BudgetAction::Throttle { permille: 250 },
    )
    .scope(Scope::all().tenant("acme"));
    ledger.put_budget(budget).await.unwrap();

    request(&ledger, &meta("acme"), 600, 600).await.unwrap();
    assert_eq!(acme_router.history(), Vec::<u32>::new(), "under the limit: untouched");
    request(&ledger, &meta("acme"), 400, 400).await.unwrap();
    assert_eq!(acme_router.history(), vec![250]);
    request(&ledger, &meta("acme"), 400, 400).await.unwrap();
    assert_eq!(acme_router.history(), vec![250], "a throttle budget does not refuse");

    // The ledger's own tick restores the rate when the hour rolls over.
    tokio::time::advance(HOUR).await;
    let mut rx = acme_router.factor.subscribe();
    tokio::time::timeout(TIMEOUT, rx.wait_for(|f| *f == 1000))
        .await
        .expect("restored in time")
        .unwrap();
    assert_eq!(acme_router.history(), vec![250, 1000]);
    assert!(
        other_router.history().is_empty(),
        "another tenant's rate is never touched"
    );

    // Over again, then the budget is removed: restored at once.
    request(&ledger, &meta("acme"), 1000, 1000).await.unwrap();
    ledger.remove_budget("slow").await.unwrap();
    assert_eq!(acme_router.history(), vec![250, 1000, 250, 1000]);
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_period_rollover_resets_spend() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = ledger(dir.path(), Arc::new(TokioClock::starting_at(START_US))).await;
    for (id, period) in [
        ("h", BudgetPeriod::Hourly),
        ("d", BudgetPeriod::Daily),
        ("m", BudgetPeriod::Monthly),
        ("r", BudgetPeriod::Rolling(Duration::from_secs(7200))),
    ] {
        ledger
            .put_budget(Budget::new(id, 1 << 30, period, BudgetAction::Alert))
            .await
            .unwrap();
    }
    ledger
        .track_usage(ResourceKind::InputTokens, 500, meta("a"))
        .await
        .unwrap();
    let spent = |id: &str| ledger.budget_status(id).unwrap().spent_micro_usd;
    assert_eq!([spent("h"), spent("d"), spent("m"), spent("r")], [500; 4]);
    tokio::time::advance(HOUR).await;
    assert_eq!([spent("h"), spent("d"), spent("m"), spent("r")], [0, 500, 500, 500]);
    tokio::time::advance(HOUR).await;
    assert_eq!(spent("r"), 0, "the rolling window has passed");
    tokio::time::advance(22 * HOUR).await;
    // 2024-03-01: a new day and a new month.
    assert_eq!([spent("d"), spent("m")], [0, 0]);
    assert_eq!(
        ledger.budget_status("m").unwrap().period_start_us,
        START_US + 24 * 3600 * MICROS_PER_SEC
    );
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn budget_spend_and_alerts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_US));
    {
        let (actor, ledger) = ledger(dir.path(), clock.clone()).await;
        ledger
            .put_budget(Budget::new("d", 1000, BudgetPeriod::Daily, BudgetAction::Halt))
            .await
            .unwrap();
        ledger
            .track_usage(ResourceKind::InputTokens, 600, meta("a"))
            .await
            .unwrap();
        actor.stop_and_wait(None, None).await.unwrap();
    }
    let (actor, ledger) = CostLedger::spawn_unsupervised(
        CostLedgerArgs::open(LedgerOptions::new(dir.path()).clock(clock.clone()))
            .await
            .expect("the store is free again once the ledger stopped"),
    )
    .await
    .unwrap();
    let status = ledger.budget_status("d").unwrap();
    assert_eq!(status.spent_micro_usd, 600);
    assert_eq!(
        status.alerted_percent,
        vec![50],
        "reached thresholds are not alerted again"
    );
    assert_eq!(ledger.prices().model(MODEL).unwrap().input_per_million, 1_000_000);
    assert!(request(&ledger, &meta("a"), 401, 401).await.is_err());
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_cannot_overshoot_a_hard_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = ledger(dir.path(), Arc::new(SystemClock)).await;
    let worst = 1000;
    let limit = 100 * worst;
    ledger
        .put_budget(Budget::new("hard", limit, BudgetPeriod::Monthly, BudgetAction::Halt))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let ledger = ledger.clone();
        tasks.spawn(async move {
            // The estimate is the worst case; actual spend varies below it.
            let actual = 500 + (i * 7919) % 501;
            request(&ledger, &meta("acme"), worst, actual).await.is_ok()
        });
    }
    let mut admitted = 0;
    while let Some(ok) = tasks.join_next().await {
        admitted += u64::from(ok.unwrap());
    }
    let status = ledger.budget_status("hard").unwrap();
    assert!(
        status.spent_micro_usd <= limit + worst,
        "spent {} over limit {limit} plus one worst request",
        status.spent_micro_usd
    );
    assert!(admitted >= 90, "only {admitted} admitted");
    let report = ledger.report(ReportQuery::new(TimeRange::all())).await.unwrap();
    assert_eq!(report.total_cost_micro_usd, status.spent_micro_usd);
    actor.stop_and_wait(None, None).await.unwrap();
}
