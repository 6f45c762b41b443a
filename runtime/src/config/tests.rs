use std::io::Read;

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
    let err = parse_err("[llm]\nmax_connections = 5\nmax_connections_per_host = 10\n");
    assert_eq!(err.field(), "llm.max_connections_per_host");
}

#[test]
fn bad_toml_syntax_is_a_parse_error() {
    let err = parse_err("[mailbox\n");
    assert!(matches!(err, ConfigError::Syntax { line: 1, .. }), "{err:?}");
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

/// The dotted path of every `key = value` line of the printed defaults
/// outside arrays of tables, with the line itself.
fn default_keys() -> Vec<(String, String, String)> {
    let text = NexusConfig::default().to_toml_string();
    let mut table = String::new();
    let mut in_array = false;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(h) = line.strip_prefix("[[") {
            table = h.trim_end_matches("]]").to_string();
            in_array = true;
        } else if let Some(h) = line.strip_prefix('[') {
            table = h.trim_end_matches(']').to_string();
            in_array = table.starts_with("scheduler.pools");
        } else if !in_array {
            let key = line.split('=').next().unwrap().trim();
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            keys.push((path, table.clone(), line.to_string()));
        }
    }
    keys
}

#[test]
fn every_table_fills_the_keys_it_omits() {
    let keys = default_keys();
    assert!(keys.len() >= 45, "{keys:?}");
    for (path, table, line) in keys {
        let text = if table.is_empty() {
            format!("{line}\n")
        } else {
            format!("[{table}]\n{line}\n")
        };
        let cfg = NexusConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{path} alone: {e}"));
        assert_eq!(cfg, NexusConfig::default(), "{path} alone");
    }
    // The case from the field: a partial admission policy.
    let cfg = NexusConfig::from_toml_str("[router.admission.policy]\nlow = \"wait\"\n").unwrap();
    assert_eq!(cfg.router.admission.policy.low, AdmissionPolicy::Wait);
    assert_eq!(cfg.router.admission.policy.high, AdmissionPolicy::Wait);
}

#[test]
fn every_duration_is_bounded_naming_the_field() {
    let mut durations = 0;
    for (path, table, line) in default_keys() {
        let (key, value) = line.split_once('=').unwrap();
        let Some(value) = value.trim().strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        if humantime::parse_duration(value).is_err() {
            continue;
        }
        durations += 1;
        let text = format!("[{table}]\n{} = \"500000000years\"\n", key.trim());
        let err = parse_err(&text);
        assert_eq!(err.field(), path, "{err}");
        assert!(err.to_string().contains("100 years"), "{err}");
    }
    assert!(durations >= 15, "found {durations} duration fields");
    let quota = "[[quotas.quotas]]\nid = \"q\"\nkind = \"cost\"\nlimit = 5\nperiod = \"500000000years\"\n";
    assert_eq!(parse_err(quota).field(), "quotas.quotas[0].period");
    NexusConfig::from_toml_str("[ledger]\nretention = \"100years\"\n").unwrap();
}

#[test]
fn integers_above_toml_range_are_refused_naming_the_field() {
    let err = parse_err("[cache]\nmemory_bytes = 18446744073709551615\n");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    assert_eq!(err.field(), "cache.memory_bytes");
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = parse_err("[[scheduler.pools]]\nname = \"p\"\ncapacity = { cpu = 9223372036854775808 }\n");
    assert_eq!(err.field(), "scheduler.pools[0].capacity.cpu", "{err}");
    NexusConfig::from_toml_str("[cache]\nmemory_bytes = 9223372036854775807\n").unwrap();
    // Built in code, a value TOML cannot write is refused by validate.
    let mut cfg = NexusConfig::default();
    cfg.cache.disk_bytes = u64::MAX;
    assert_eq!(cfg.validate().unwrap_err().field(), "cache.disk_bytes");
}

#[test]
fn misspelt_resource_kinds_are_refused_and_custom_kinds_need_the_prefix() {
    let pool = |cap: &str| format!("[[scheduler.pools]]\nname = \"p\"\ncapacity = {{ {cap} }}\n");
    let err = parse_err(&pool("gpus = 4"));
    assert_eq!(err.field(), "scheduler.pools[0].capacity.gpus", "{err}");
    assert!(err.to_string().contains("custom."), "{err}");
    let err = parse_err(&format!("{}max = {{ cpus = 8 }}\n", pool("cpu = 4")));
    assert_eq!(err.field(), "scheduler.pools[0].max.cpus", "{err}");
    let cfg = NexusConfig::from_toml_str(&pool("\"custom.vector_searches\" = 100, gpu = 1")).unwrap();
    assert_eq!(cfg.scheduler.pools[0].capacity["custom.vector_searches"], 100);
    assert_eq!(
        parse_err(&pool("\"custom.\" = 1")).field(),
        "scheduler.pools[0].capacity.custom."
    );
    let err = parse_err("[[quotas.quotas]]\nid = \"q\"\nkind = \"input_token\"\nlimit = 5\n");
    assert_eq!(err.field(), "quotas.quotas[0].kind", "{err}");
    // A step for a kind the pool cannot grow in is dead: refused.
    let err = parse_err(&format!(
        "{}max = {{ cpu = 8 }}\nstep = {{ gpu = 1 }}\n",
        pool("cpu = 4")
    ));
    assert_eq!(err.field(), "scheduler.pools[0].step.gpu", "{err}");
}

fn quotas(entries: &[(&str, Option<&str>, &str)]) -> String {
    entries
        .iter()
        .map(|(id, parent, kind)| {
            let parent = parent.map(|p| format!("parent = \"{p}\"\n")).unwrap_or_default();
            format!("[[quotas.quotas]]\nid = \"{id}\"\n{parent}kind = \"{kind}\"\nlimit = 100\n")
        })
        .collect()
}

#[test]
fn quota_trees_the_keeper_would_refuse_are_refused_at_check_time() {
    let err = parse_err(&quotas(&[("a", None, "cost"), ("b", Some("nobody"), "cost")]));
    assert_eq!(err.field(), "quotas.quotas[1].parent", "{err}");
    assert!(matches!(
        err,
        ConfigError::QuotaTree { source, .. } if matches!(*source, QuotaTreeError::UnknownParent { .. })
    ));

    let err = parse_err(&quotas(&[("a", Some("a"), "cost")]));
    assert_eq!(err.field(), "quotas.quotas[0].parent", "{err}");
    assert!(err.to_string().contains("cycle"), "{err}");

    let err = parse_err(&quotas(&[
        ("a", Some("c"), "cost"),
        ("b", Some("a"), "cost"),
        ("c", Some("b"), "cost"),
    ]));
    assert!(err.to_string().contains("cycle"), "{err}");
    assert!(err.field().ends_with(".parent"), "{err}");

    let err = parse_err(&quotas(&[("b", Some("a"), "cost"), ("a", None, "input_tokens")]));
    assert_eq!(err.field(), "quotas.quotas[0].kind", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("quotas.quotas[0].kind") && text.contains("quotas.quotas[1].kind"),
        "{text}"
    );

    let err = parse_err(&quotas(&[("a", None, "cost"), ("a", None, "cost")]));
    let text = err.to_string();
    assert!(
        text.contains("quotas.quotas[1].id") && text.contains("quotas.quotas[0].id"),
        "{text}"
    );

    let chain: Vec<(String, Option<String>)> = (0..=MAX_QUOTA_DEPTH)
        .map(|i| (format!("q{i}"), i.checked_sub(1).map(|p| format!("q{p}"))))
        .collect();
    let entries: Vec<(&str, Option<&str>, &str)> = chain
        .iter()
        .map(|(id, p)| (id.as_str(), p.as_deref(), "cost"))
        .collect();
    let err = parse_err(&quotas(&entries));
    assert!(
        matches!(
            err,
            ConfigError::QuotaTree { ref source, .. } if matches!(**source, QuotaTreeError::TooDeep { .. })
        ),
        "{err}"
    );
    NexusConfig::from_toml_str(&quotas(&entries[..MAX_QUOTA_DEPTH])).unwrap();
}

#[test]
fn contradicting_fields_are_refused_naming_both() {
    let both = |text: &str, a: &str, b: &str| {
        let err = parse_err(text);
        assert!(matches!(err, ConfigError::Conflict { .. }), "{err:?}");
        assert_eq!(err.field(), a, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(a) && msg.contains(b), "{msg}");
    };
    both(
        "[router.health]\ninterval = \"5s\"\ntimeout = \"10s\"\n",
        "router.health.timeout",
        "router.health.interval",
    );
    both(
        "[llm]\ntokens_per_minute = 1000\ninput_tokens_per_minute = 2000\n",
        "llm.input_tokens_per_minute",
        "llm.tokens_per_minute",
    );
    both(
        "[llm]\ntokens_per_minute = 1000\noutput_tokens_per_minute = 1001\n",
        "llm.output_tokens_per_minute",
        "llm.tokens_per_minute",
    );
    both(
        "[llm.retry]\nbase_backoff = \"2s\"\nmax_backoff = \"1s\"\n",
        "llm.retry.max_backoff",
        "llm.retry.base_backoff",
    );
}

#[test]
fn names_with_control_characters_or_only_whitespace_are_refused() {
    assert_eq!(parse_err("[node]\ndata_dir = \"   \"\n").field(), "node.data_dir");
    assert_eq!(parse_err("[node]\ndata_dir = \"a\\u0000\"\n").field(), "node.data_dir");
    assert_eq!(
        parse_err("[[scheduler.pools]]\nname = \"p\\u001b\"\ncapacity = { cpu = 1 }\n").field(),
        "scheduler.pools[0].name"
    );
    assert_eq!(
        parse_err("[[quotas.quotas]]\nid = \"q\\t\"\nkind = \"cost\"\nlimit = 1\n").field(),
        "quotas.quotas[0].id"
    );
    assert_eq!(
        parse_err("[[quotas.quotas]]\nid = \"q\"\nkind = \"cost\"\nlimit = 1\nselector = { tenant = \"\\u0007\" }\n")
            .field(),
        "quotas.quotas[0].selector.tenant"
    );
}

#[test]
fn syntax_errors_name_the_line_and_column() {
    let err = parse_err("[node]\ndata_dir = \"n\"\n[mailbox\n");
    match &err {
        ConfigError::Syntax { line, column, .. } => assert_eq!((*line, *column), (3, 9), "{err}"),
        other => panic!("not a syntax error: {other:?}"),
    }
    assert!(err.to_string().contains("line 3, column 9"), "{err}");
    // A type error carries its position too.
    let err = parse_err("\n[router.health]\ntimeout = 5\n");
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn a_missing_required_key_is_named_by_its_path() {
    let err = parse_err("[[quotas.quotas]]\nid = \"q\"\nkind = \"cost\"\n");
    assert_eq!(err.field(), "quotas.quotas[0].limit", "{err}");
}

#[test]
fn input_is_bounded_in_size_and_must_be_utf8() {
    let zeros = std::io::repeat(0).take(u64::MAX);
    let err = NexusConfig::from_reader(zeros, "/dev/zero").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::TooLarge {
                limit: MAX_CONFIG_BYTES
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("1048576"), "{err}");
    let long = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    assert!(matches!(
        NexusConfig::from_toml_str(&long),
        Err(ConfigError::TooLarge { .. })
    ));
    let err = NexusConfig::from_reader(&b"[node]\ndata_dir = \"\xff\"\n"[..], "bytes").unwrap_err();
    assert!(matches!(err, ConfigError::NotUtf8 { offset: 19 }), "{err:?}");
    let cfg = NexusConfig::from_reader(&b"[mailbox.high]\ncapacity = 7\n"[..], "bytes").unwrap();
    assert_eq!(cfg.mailbox.high.capacity, 7);
}

#[test]
fn the_defaults_can_be_extended_with_quotas_and_pools() {
    let mut text = NexusConfig::default().to_toml_string();
    assert!(!text.contains("quotas = []"), "{text}");
    text.push_str(&quotas(&[("root", None, "cost"), ("acme", Some("root"), "cost")]));
    text.push_str("[[scheduler.pools]]\nname = \"gpu\"\ncapacity = { gpu = 4 }\n");
    let cfg = NexusConfig::from_toml_str(&text).unwrap();
    assert_eq!(cfg.quotas.quotas.len(), 2);
    assert_eq!(cfg.scheduler.pools.len(), 2);
    let back = NexusConfig::from_toml_str(&cfg.to_toml_string()).unwrap();
    assert_eq!(back, cfg);
}

/// Sections of features this version does not have are refused, however
/// they are written, naming the section and the missing feature; the
/// defaults do not print them.
#[test]
fn sections_of_missing_features_are_refused_and_not_printed() {
    let cases = [
        ("[node]\nname = \"node-1\"\n", "node.name", "nexus node --name"),
        (
            "node = { name = \"a\", data_dir = \"d\" }\n",
            "node.name",
            "nexus node --name",
        ),
    ];
    for (text, field, feature) in cases {
        let err = parse_err(text);
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{text}: {err:?}");
        assert_eq!(err.field(), field, "{text}");
        let msg = err.to_string();
        assert!(msg.contains("not supported yet") && msg.contains(feature), "{msg}");
        assert!(msg.contains("not by the configuration"), "{msg}");
    }
    // `node` itself stays: its data directory is read.
    let cfg = NexusConfig::from_toml_str("[node]\ndata_dir = \"/tmp/d\"\n").unwrap();
    assert_eq!(cfg.node.data_dir, PathBuf::from("/tmp/d"));
    // A key of the same name elsewhere is not taken for the section.
    assert!(matches!(
        parse_err("[router]\nscaling = 1\n"),
        ConfigError::Parse { .. }
    ));

    let defaults = NexusConfig::default().to_toml_string();
    let printed = default_keys();
    for (path, _) in UNSUPPORTED {
        let under = format!("{path}.");
        let hit = printed.iter().find(|(p, _, _)| p == path || p.starts_with(&under));
        assert!(hit.is_none(), "{path} is printed by the defaults: {hit:?}");
        assert!(
            !defaults.contains(&format!("[{path}")),
            "[{path}] is printed:\n{defaults}"
        );
    }
}

#[test]
fn node_capacity_overrides_the_machine_per_kind_and_refuses_bad_entries() {
    let config =
        NexusConfig::from_toml_str("[node]\ncapacity = { cpu = 4000, gpu = 2 }\nadmission_wait = \"2s\"\n").unwrap();
    let capacity = config.node.resolved_capacity();
    assert_eq!(capacity.get(&crate::resources::ResourceKind::Cpu), 4000);
    assert_eq!(capacity.get(&crate::resources::ResourceKind::Gpu), 2);
    // Memory left out: the machine's (where /proc/meminfo is readable).
    assert_eq!(
        capacity.get(&crate::resources::ResourceKind::Memory),
        crate::resources::machine_capacity().get(&crate::resources::ResourceKind::Memory)
    );
    assert_eq!(config.node.admission_wait, Duration::from_secs(2));
    assert_eq!(
        parse_err("[node]\ncapacity = { cpu = -1 }\n").field(),
        "node.capacity.cpu"
    );
    assert_eq!(
        parse_err("[node.capacity]\n\"bad\\nkind\" = 1\n").field(),
        "node.capacity.bad\nkind"
    );
    assert_eq!(
        parse_err("[node]\npreemption_grace = \"200 years\"\n").field(),
        "node.preemption_grace"
    );
}

#[test]
fn scaling_carries_the_seed_numbers_and_refuses_bad_values_naming_the_field() {
    let s = NexusConfig::default().scaling;
    assert!(s.enabled);
    assert_eq!((s.min_workers, s.max_workers, s.increment), (2, 10, 1));
    assert_eq!(s.cooldown, Duration::from_secs(600));
    assert_eq!(s.tolerance_percent, 10);
    assert_eq!(
        (s.cpu.threshold_percent, s.cpu.duration),
        (75, Duration::from_secs(300))
    );
    assert_eq!(
        (s.memory.threshold_percent, s.memory.duration),
        (80, Duration::from_secs(300))
    );
    assert_eq!((s.queue.length, s.queue.wait_time), (1000, Duration::from_secs(30)));

    let cfg =
        NexusConfig::from_toml_str("[scaling]\nenabled = false\n[scaling.cpu]\nthreshold_percent = 60\n").unwrap();
    assert!(!cfg.scaling.enabled);
    assert_eq!(cfg.scaling.cpu.threshold_percent, 60);
    assert_eq!(
        cfg.scaling.cpu.duration,
        Duration::from_secs(300),
        "omitted keys keep defaults"
    );

    for (text, field) in [
        ("[scaling]\ninterval = \"0s\"\n", "scaling.interval"),
        ("[scaling]\nmin_workers = 0\n", "scaling.min_workers"),
        ("[scaling]\nmax_workers = 2000000\n", "scaling.max_workers"),
        ("[scaling]\nincrement = 0\n", "scaling.increment"),
        ("[scaling]\ntolerance_percent = 100\n", "scaling.tolerance_percent"),
        (
            "[scaling.cpu]\nthreshold_percent = 0\n",
            "scaling.cpu.threshold_percent",
        ),
        (
            "[scaling.memory]\nthreshold_percent = 101\n",
            "scaling.memory.threshold_percent",
        ),
        ("[scaling.queue]\nlength = 0\n", "scaling.queue.length"),
        ("[scaling.queue]\nwait_time = \"0s\"\n", "scaling.queue.wait_time"),
        ("[scaling]\nmin_workers = -1\n", "scaling.min_workers"),
        ("[scaling]\nwhatever = 1\n", "scaling"),
    ] {
        let err = parse_err(text);
        assert!(err.field().starts_with(field), "{text}: {err}");
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
    let err = parse_err("[scaling]\nmin_workers = 5\nmax_workers = 4\n");
    assert!(matches!(err, ConfigError::Conflict { .. }), "{err:?}");
    assert_eq!(err.field(), "scaling.min_workers");
    assert!(err.to_string().contains("scaling.max_workers"), "{err}");
}

#[test]
fn monitor_carries_the_seed_numbers_and_refuses_bad_values_naming_the_field() {
    let m = NexusConfig::default().monitor;
    assert!(m.enabled);
    assert_eq!(m.interval, Duration::from_secs(10));
    assert_eq!((m.history, m.minutes), (360, 1440));
    let t = m.thresholds;
    assert_eq!(
        (
            t.warning_percent,
            t.critical_percent,
            t.action_percent,
            t.hysteresis_percent
        ),
        (80, 90, 95, 5)
    );

    let cfg = NexusConfig::from_toml_str(
        "[monitor]\nenabled = false\nhistory = 10\n[monitor.thresholds]\nwarning_percent = 70\n",
    )
    .unwrap();
    assert!(!cfg.monitor.enabled);
    assert_eq!(cfg.monitor.history, 10);
    assert_eq!(cfg.monitor.thresholds.warning_percent, 70);
    assert_eq!(cfg.monitor.thresholds.action_percent, 95, "omitted keys keep defaults");

    for (text, field) in [
        ("[monitor]\ninterval = \"0s\"\n", "monitor.interval"),
        ("[monitor]\nhistory = 0\n", "monitor.history"),
        ("[monitor]\nminutes = 2000000\n", "monitor.minutes"),
        (
            "[monitor.thresholds]\nwarning_percent = 0\n",
            "monitor.thresholds.warning_percent",
        ),
        (
            "[monitor.thresholds]\naction_percent = 101\n",
            "monitor.thresholds.action_percent",
        ),
        ("[monitor]\nwhatever = 1\n", "monitor"),
    ] {
        let err = parse_err(text);
        assert!(err.field().starts_with(field), "{text}: {err}");
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
    for (text, field, other) in [
        (
            "[monitor.thresholds]\nwarning_percent = 91\n",
            "monitor.thresholds.warning_percent",
            "monitor.thresholds.critical_percent",
        ),
        (
            "[monitor.thresholds]\ncritical_percent = 96\n",
            "monitor.thresholds.critical_percent",
            "monitor.thresholds.action_percent",
        ),
        (
            "[monitor.thresholds]\nhysteresis_percent = 80\n",
            "monitor.thresholds.hysteresis_percent",
            "monitor.thresholds.warning_percent",
        ),
    ] {
        let err = parse_err(text);
        assert!(matches!(err, ConfigError::Conflict { .. }), "{err:?}");
        assert_eq!(err.field(), field);
        assert!(err.to_string().contains(other), "{err}");
    }
}

#[test]
fn scaling_profile_names_a_file_or_is_refused() {
    assert_eq!(NexusConfig::default().scaling.profile, None);
    let cfg = NexusConfig::from_toml_str("[scaling]\nprofile = \"profiles/chat.json\"\n").unwrap();
    assert_eq!(
        cfg.scaling.profile.as_deref(),
        Some(std::path::Path::new("profiles/chat.json"))
    );
    let err = NexusConfig::from_toml_str("[scaling]\nprofile = \"\"\n").unwrap_err();
    assert_eq!(err.field(), "scaling.profile");
    // Not written by `nexus config defaults` when unset.
    assert!(!NexusConfig::default().to_toml_string().contains("profile"));
}

#[test]
fn cluster_limits_are_checked_field_by_field() {
    let cfg = NexusConfig::from_toml_str(
        "[[cluster.limits]]\nname = \"budget/global\"\nlimit = 5000\n\n[[cluster.limits]]\nname = \"tokens\"\nlimit = 10\nchunk = 3\nlease_ttl = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(cfg.cluster.limits.len(), 2);
    assert_eq!(cfg.cluster.limits[0].chunk(), 50, "a hundredth of the limit by default");
    assert_eq!(cfg.cluster.limits[0].lease_ttl, std::time::Duration::from_secs(10));
    assert_eq!(cfg.cluster.limits[1].chunk(), 3);
    assert_eq!(cfg.cluster.limits[1].lease_ttl, std::time::Duration::from_secs(30));
    assert_eq!(cfg.cluster.limits[1].charges, None);
    assert_eq!(cfg.cluster.limits[1].window, None);
    let cfg =
        NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"tpm\"\nlimit = 9000\nwindow = \"1m\"\n").unwrap();
    assert_eq!(cfg.cluster.limits[0].window, Some(std::time::Duration::from_secs(60)));
    let cfg = NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"b\"\nlimit = 7\ncharges = \"cost\"\n").unwrap();
    assert_eq!(cfg.cluster.limits[0].charges.as_deref(), Some("cost"));
    // A tiny limit still leases one unit at a time.
    let cfg = NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"b\"\nlimit = 7\n").unwrap();
    assert_eq!(cfg.cluster.limits[0].chunk(), 1);

    for (text, field) in [
        ("[[cluster.limits]]\nname = \"\"\nlimit = 1\n", "cluster.limits.name"),
        ("[[cluster.limits]]\nname = \"a b\"\nlimit = 1\n", "cluster.limits.name"),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 1\n[[cluster.limits]]\nname = \"a\"\nlimit = 2\n",
            "cluster.limits.name",
        ),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 10\nchunk = 0\n",
            "cluster.limits.chunk",
        ),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 10\nchunk = 11\n",
            "cluster.limits.chunk",
        ),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 10\nlease_ttl = \"1s\"\n",
            "cluster.limits.lease_ttl",
        ),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 10\ncharges = \"cpu\"\n",
            "cluster.limits.charges",
        ),
        (
            "[[cluster.limits]]\nname = \"a\"\nlimit = 10\nwindow = \"500ms\"\n",
            "cluster.limits.window",
        ),
    ] {
        let err = NexusConfig::from_toml_str(text).unwrap_err();
        assert_eq!(err.field(), field, "{text}: {err}");
    }
    // A negative or fractional amount is not an integer unit.
    assert!(NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"a\"\nlimit = -1\n").is_err());
    assert!(NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"a\"\nlimit = 1.5\n").is_err());
    assert!(NexusConfig::from_toml_str("[[cluster.limits]]\nname = \"a\"\nlimt = 1\n").is_err());
}
