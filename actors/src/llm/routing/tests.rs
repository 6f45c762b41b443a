use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn cand(index: usize) -> Candidate {
    Candidate {
        index,
        weight: 1,
        in_flight: 0,
        latency_micros: None,
        usage_permille: 0,
        cost_micro_usd: 0,
    }
}

#[test]
fn least_busy_lowest_latency_usage_and_cost_order_by_their_measure() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = cand(0);
    let mut b = cand(1);
    let mut c = cand(2);
    a.in_flight = 5;
    b.in_flight = 1;
    c.in_flight = 3;
    assert_eq!(order(DeploymentRouting::LeastBusy, &[a, b, c], &mut rng), vec![1, 2, 0]);
    a.latency_micros = Some(900);
    b.latency_micros = Some(300);
    c.latency_micros = Some(500);
    assert_eq!(
        order(DeploymentRouting::LowestLatency, &[a, b, c], &mut rng),
        vec![1, 2, 0]
    );
    a.usage_permille = 10;
    b.usage_permille = 900;
    c.usage_permille = 400;
    assert_eq!(
        order(DeploymentRouting::LowestUsage, &[a, b, c], &mut rng),
        vec![0, 2, 1]
    );
    a.cost_micro_usd = 7;
    b.cost_micro_usd = 3;
    c.cost_micro_usd = 5;
    assert_eq!(
        order(DeploymentRouting::LowestCost, &[a, b, c], &mut rng),
        vec![1, 2, 0]
    );
}

#[test]
fn weighted_shuffle_follows_the_weights() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut heavy = cand(0);
    heavy.weight = 9;
    let light = cand(1);
    let firsts = (0..10_000)
        .filter(|_| order(DeploymentRouting::WeightedShuffle, &[heavy, light], &mut rng)[0] == 0)
        .count();
    // Expected 90 %; allow sampling noise.
    assert!((8_700..=9_300).contains(&firsts), "heavy first {firsts} times");
}

#[test]
fn every_strategy_returns_a_permutation() {
    let mut rng = StdRng::seed_from_u64(5);
    let cs: Vec<Candidate> = (0..6).map(cand).collect();
    for s in [
        DeploymentRouting::WeightedShuffle,
        DeploymentRouting::LeastBusy,
        DeploymentRouting::LowestLatency,
        DeploymentRouting::LowestUsage,
        DeploymentRouting::LowestCost,
    ] {
        let mut o = order(s, &cs, &mut rng);
        o.sort_unstable();
        assert_eq!(o, vec![0, 1, 2, 3, 4, 5]);
    }
}

#[test]
fn cooldown_starts_after_allowed_fails_and_ends_after_its_duration() {
    let mut h = DeploymentHealth::default();
    let t0 = Duration::from_secs(10);
    assert!(!h.on_failure(t0, 3, Duration::from_secs(30)));
    assert!(!h.on_failure(t0, 3, Duration::from_secs(30)));
    assert!(h.available(t0));
    assert!(h.on_failure(t0, 3, Duration::from_secs(30)));
    assert!(!h.available(t0));
    assert!(!h.available(Duration::from_secs(39)));
    assert_eq!(h.cooling_until(t0), Some(Duration::from_secs(40)));
    assert!(h.available(Duration::from_secs(40)));
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut h = DeploymentHealth::default();
    h.on_failure(Duration::ZERO, 2, Duration::from_secs(1));
    h.on_success(Duration::from_millis(8));
    assert!(!h.on_failure(Duration::ZERO, 2, Duration::from_secs(1)));
    assert!(h.available(Duration::ZERO));
    assert_eq!(h.latency_micros(), Some(8000));
    h.on_success(Duration::from_millis(16));
    assert_eq!(h.latency_micros(), Some(9000));
}
