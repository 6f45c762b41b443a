//! The quota keeper as an actor: periods reset under paused tokio time,
//! limits are adjusted at run time, invalid changes are typed errors that
//! change nothing, and the handle gates LLM spend per tenant.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::Scope;
use nexus_swarm::actors::quota_keeper::{QuotaError, QuotaKeeper, QuotaKeeperArgs, QuotaSpec};
use nexus_swarm::runtime::resources::ResourceKind::InputTokens;
use nexus_swarm::runtime::resources::ResourceVector;
use nexus_swarm::runtime::usage::{SpendGate, SpendRefused, UsageMeta};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn quota_periods_reset_with_paused_time() {
    let args = QuotaKeeperArgs::default()
        .with_quotas(vec![
            QuotaSpec::child("acme", "tpm", InputTokens, 30_000)
                .period(MINUTE)
                .selector(Scope::all().tenant("acme")),
            QuotaSpec::root("tpm", InputTokens, 90_000)
                .period(MINUTE)
                .selector(Scope::all()),
        ])
        .unwrap()
        .sweep_interval(Duration::from_secs(10));
    let (quotas, _join) = QuotaKeeper::spawn_unsupervised(args).await.unwrap();

    quotas.try_consume("acme", 30_000).unwrap();
    assert!(matches!(
        quotas.try_consume("acme", 1),
        Err(QuotaError::Exhausted { .. })
    ));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(quotas.try_consume("acme", 1).is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    quotas.try_consume("acme", 1).unwrap();

    let acme = quotas.report("acme").unwrap();
    assert_eq!((acme.current, acme.peak, acme.resets_in), (1, 30_000, Some(MINUTE)));

    // Run-time adjustment: a call to the keeper.
    assert_eq!(quotas.adjust("acme", 40_000).await.unwrap(), 30_000);
    quotas.try_consume("acme", 39_999).unwrap();
    assert!(quotas.try_consume("acme", 1).is_err());

    // Invalid changes are typed errors and change nothing.
    let before = quotas.tree();
    assert_eq!(
        quotas.adjust("nobody", 5).await.unwrap_err(),
        QuotaError::UnknownQuota("nobody".into())
    );
    assert!(matches!(quotas.adjust("acme", 0).await, Err(QuotaError::ZeroAmount(_))));
    let cycle = vec![
        QuotaSpec::child("x", "y", InputTokens, 5),
        QuotaSpec::child("y", "x", InputTokens, 5),
    ];
    assert!(matches!(quotas.define_all(cycle).await, Err(QuotaError::Cycle(_))));
    assert!(matches!(
        quotas
            .define(QuotaSpec::child("z", "tpm", InputTokens, 5).borrow_ceiling(1 << 60))
            .await,
        Err(QuotaError::AmountTooLarge { .. })
    ));
    assert_eq!(quotas.tree(), before);

    // The LLM gateway reserves through the handle as a SpendGate.
    let gate: Arc<dyn SpendGate> = Arc::new(quotas.clone());
    let acme_call = UsageMeta::default().tenant("acme").model("gpt-4o");
    let refused = gate
        .reserve(&acme_call, &ResourceVector::new().with(InputTokens, 10))
        .unwrap_err();
    assert!(matches!(refused, SpendRefused::QuotaExceeded { ref quota, .. } if quota == "acme"));
    let globex = UsageMeta::default().tenant("globex");
    let hold = gate
        .reserve(&globex, &ResourceVector::new().with(InputTokens, 1_000))
        .unwrap();
    assert_eq!(quotas.report("tpm").unwrap().current, 41_000);
    gate.settle(hold, &ResourceVector::new().with(InputTokens, 400));
    assert_eq!(quotas.report("tpm").unwrap().current, 40_400);

    // Next minute: everything resets, acme's calls go through again.
    tokio::time::advance(MINUTE).await;
    let hold = gate
        .reserve(&acme_call, &ResourceVector::new().with(InputTokens, 10))
        .unwrap();
    gate.release(hold);
    let tree = quotas.tree();
    // The peak counts the reservation while it was held.
    assert_eq!((tree[0].quota.current, tree[0].quota.peak), (0, 41_000));
}
