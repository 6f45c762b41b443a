use super::*;

fn parse_err(text: &str) -> ConfigError {
    NexusConfig::from_toml_str(text).expect_err("config should be rejected")
}

#[test]
fn defaults_are_valid_and_round_trip_through_toml() {
    let defaults = NexusConfig::default();
    defaults.validate().unwrap();
    let text = defaults.to_toml_string();
    let back = NexusConfig::from_toml_str(&text).unwrap();
    assert_eq!(back, defaults);
}

#[test]
fn defaults_carry_the_seed_numbers() {
    let c = NexusConfig::default();
    assert_eq!(c.mailbox.high.timeout, Duration::from_secs(10));
    assert_eq!(c.mailbox.normal.timeout, Duration::from_secs(30));
    assert_eq!(c.mailbox.low.timeout, Duration::from_secs(60));
    assert_eq!(c.router.admission.rate_per_sec, 1000);
    assert_eq!(c.router.admission.burst, 100);
    assert_eq!(c.router.health.interval, Duration::from_secs(30));
    assert_eq!(c.router.health.timeout, Duration::from_secs(5));
    assert_eq!(c.router.health.unhealthy_threshold, 3);
    assert_eq!(c.llm.requests_per_minute, 3500);
    assert_eq!(c.llm.tokens_per_minute, 90_000);
    assert_eq!((c.scaling.min_workers, c.scaling.max_workers), (2, 10));
    assert_eq!(c.cache.ttl, Duration::from_secs(300));
    assert_eq!(c.ledger.retention, Duration::from_secs(30 * 86_400));
}

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(NexusConfig::from_toml_str("").unwrap(), NexusConfig::default());
}

#[test]
fn zero_capacity_is_rejected_naming_the_field() {
    let err = parse_err("[mailbox.normal]\ncapacity = 0\ntimeout = \"30s\"\n");
    assert_eq!(err.field(), "mailbox.normal.capacity");
    assert!(err.to_string().contains("mailbox.normal.capacity"), "{err}");
}

#[test]
fn negative_capacity_is_rejected_naming_the_field() {
    let err = parse_err("[mailbox.high]\ncapacity = -5\ntimeout = \"10s\"\n");
    assert_eq!(err.field(), "mailbox.high.capacity", "{err}");
}

#[test]
fn absurd_capacity_is_rejected() {
    let err = parse_err("[mailbox.low]\ncapacity = 100000000000\ntimeout = \"1s\"\n");
    assert_eq!(err.field(), "mailbox.low.capacity", "{err}");
}

#[test]
fn zero_burst_is_rejected_naming_the_field() {
    let err = parse_err("[router.admission]\nburst = 0\n");
    assert_eq!(err.field(), "router.admission.burst");
}

#[test]
fn unknown_keys_are_rejected_naming_where() {
    let err = parse_err("[router]\nstrategy = \"round_robin\"\nfanout = 3\n");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("fanout"), "{err}");
    let err = parse_err("[routr]\n");
    assert!(err.to_string().contains("routr"), "{err}");
}

#[test]
fn timeouts_that_do_not_parse_are_rejected_naming_the_field() {
    let err = parse_err("[mailbox.high]\ncapacity = 10\ntimeout = \"soon\"\n");
    assert_eq!(err.field(), "mailbox.high.timeout", "{err}");
    let err = parse_err("[router.health]\ntimeout = 5\n");
    assert_eq!(err.field(), "router.health.timeout", "{err}");
}

#[test]
fn inconsistent_values_are_rejected() {
    let err = parse_err("[scaling]\nmin_workers = 5\nmax_workers = 2\n");
    assert_eq!(err.field(), "scaling.max_workers");
    let err = parse_err("[monitor.thresholds]\nwarning_percent = 95\n");
    assert_eq!(err.field(), "monitor.thresholds.critical_percent");
    let err = parse_err("[llm]\nmax_connections = 5\nmax_connections_per_host = 10\n");
    assert_eq!(err.field(), "llm.max_connections_per_host");
}

#[test]
fn bad_toml_syntax_is_a_parse_error() {
    let err = parse_err("[mailbox\n");
    assert!(matches!(err, ConfigError::Parse { .. }));
}

#[test]
fn unknown_strategy_is_rejected() {
    let err = parse_err("[router]\nstrategy = \"random\"\n");
    assert_eq!(err.field(), "router.strategy", "{err}");
}

#[test]
fn llm_gateway_fields_have_defaults_and_are_validated() {
    let c = NexusConfig::default();
    assert_eq!(c.llm.burst_percent, 10);
    assert_eq!(c.llm.allowed_fails, 3);
    assert_eq!(c.llm.cooldown.as_secs(), 30);
    assert_eq!(c.llm.routing, DeploymentRouting::WeightedShuffle);
    let c = NexusConfig::from_toml_str("[llm]\nrouting = \"lowest_cost\"\ncooldown = \"5s\"\n").unwrap();
    assert_eq!(c.llm.routing, DeploymentRouting::LowestCost);
    assert_eq!(parse_err("[llm]\nburst_percent = 0\n").field(), "llm.burst_percent");
    assert_eq!(parse_err("[llm]\nallowed_fails = 0\n").field(), "llm.allowed_fails");
    assert_eq!(parse_err("[llm]\ncooldown = \"0s\"\n").field(), "llm.cooldown");
    assert_eq!(parse_err("[llm]\nrouting = \"fastest\"\n").field(), "llm.routing");
}

#[test]
fn the_quota_sweep_interval_is_validated_naming_the_field() {
    assert_eq!(
        parse_err("[quotas]\nsweep_interval = \"0s\"\n").field(),
        "quotas.sweep_interval"
    );
    let err = parse_err("[quotas]\nsweep_interval = \"soon\"\n");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert_eq!(err.field(), "quotas.sweep_interval");
    // Longer than 32767 of the shortest period: idle counters would be
    // misread before a sweep rewrites them.
    let quota = "[[quotas.quotas]]\nid = \"q\"\nkind = \"cost\"\nlimit = 5\nperiod = \"1ms\"\n";
    let err = parse_err(&format!("[quotas]\nsweep_interval = \"40s\"\n{quota}"));
    assert_eq!(err.field(), "quotas.sweep_interval", "{err}");
    let ok = NexusConfig::from_toml_str(&format!("[quotas]\nsweep_interval = \"32767ms\"\n{quota}")).unwrap();
    assert_eq!(ok.quotas.sweep_interval, Duration::from_millis(32_767));
    // Without periods any sweep interval will do.
    NexusConfig::from_toml_str("[quotas]\nsweep_interval = \"1day\"\n").unwrap();
}
