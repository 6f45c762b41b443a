//! `nexus config defaults` prints a complete, valid configuration;
//! `nexus config check` accepts it and names the field of an invalid one.

use std::process::Command;

fn nexus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .output()
        .expect("run nexus")
}

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    std::fs::write(&path, text).unwrap();
    let out = nexus(&["config", "check", path.to_str().unwrap()]);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_printed_defaults_pass_the_check() {
    let out = nexus(&["config", "defaults"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for section in [
        "[node]",
        "[mailbox.high]",
        "[router.admission]",
        "[llm]",
        "[cache]",
        "[ledger]",
        "[scaling]",
        "[scaling.queue]",
        "[monitor]",
        "[monitor.thresholds]",
        "[pressure]",
        "[[pressure.responses]]",
    ] {
        assert!(text.contains(section), "defaults lack {section}:\n{text}");
    }
    assert!(
        text.contains("timeout = \"10s\""),
        "the seed's high-lane timeout is printed"
    );
    assert!(
        !text.contains("name = \"node-1\""),
        "defaults print a node name:\n{text}"
    );
    let (ok, stderr) = check(&text);
    assert!(ok, "{stderr}");
}

#[test]
fn sections_of_missing_features_fail_saying_so() {
    let (text, section, feature) = ("[node]\nname = \"node-1\"\n", "`node.name`", "nexus node --name");
    let (ok, stderr) = check(text);
    assert!(!ok, "{text:?} should be rejected");
    assert!(
        stderr.contains(section) && stderr.contains("not supported yet") && stderr.contains(feature),
        "{text:?}: {stderr}"
    );
}

#[test]
fn invalid_files_fail_naming_the_field() {
    let cases = [
        ("[mailbox.normal]\ncapacity = 0\n", "mailbox.normal.capacity"),
        ("[scaling]\nmin_workers = 0\n", "scaling.min_workers"),
        ("[scaling.queue]\nwait_time = \"soon\"\n", "scaling.queue.wait_time"),
        (
            "[monitor.thresholds]\nwarning_percent = 0\n",
            "monitor.thresholds.warning_percent",
        ),
        ("[mailbox.low]\ncapacity = -3\n", "mailbox.low.capacity"),
        ("[router.admission]\nburst = 0\n", "router.admission.burst"),
        ("[router]\nfanout = 2\n", "fanout"),
        ("[mailbox.high]\ntimeout = \"whenever\"\n", "mailbox.high.timeout"),
        ("[router.health]\ninterval = \"0s\"\n", "router.health.interval"),
        ("[cache]\nmemory_bytes = 18446744073709551615\n", "cache.memory_bytes"),
        ("[ledger]\nretention = \"500000000years\"\n", "ledger.retention"),
        (
            "[[scheduler.pools]]\nname = \"p\"\ncapacity = { gpus = 4 }\n",
            "scheduler.pools[0].capacity.gpus",
        ),
        (
            "[[quotas.quotas]]\nid = \"a\"\nparent = \"nobody\"\nkind = \"cost\"\nlimit = 5\n",
            "quotas.quotas[0].parent",
        ),
        (
            "[[quotas.quotas]]\nid = \"a\"\nparent = \"a\"\nkind = \"cost\"\nlimit = 5\n",
            "quotas.quotas[0].parent",
        ),
        ("[node]\ndata_dir = \"a\\u0000b\"\n", "node.data_dir"),
        ("[node]\ndata_dir = \" \"\n", "node.data_dir"),
        ("[node]\ndata_dir = \"n\"\n[mailbox\n", "line 3, column 9"),
    ];
    for (text, field) in cases {
        let (ok, stderr) = check(text);
        assert!(!ok, "{text:?} should be rejected");
        assert!(
            stderr.contains(field),
            "{text:?}: message does not name {field}: {stderr}"
        );
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let out = nexus(&["config", "check", "/nonexistent/nexus.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn contradicting_fields_fail_naming_both() {
    let cases = [
        (
            "[router.health]\ninterval = \"5s\"\ntimeout = \"10s\"\n",
            ["router.health.timeout", "router.health.interval"],
        ),
        (
            "[llm]\ntokens_per_minute = 1000\ninput_tokens_per_minute = 5000\n",
            ["llm.input_tokens_per_minute", "llm.tokens_per_minute"],
        ),
        (
            "[[quotas.quotas]]\nid = \"a\"\nkind = \"cost\"\nlimit = 5\n\
             [[quotas.quotas]]\nid = \"b\"\nparent = \"a\"\nkind = \"input_tokens\"\nlimit = 5\n",
            ["quotas.quotas[1].kind", "quotas.quotas[0].kind"],
        ),
    ];
    for (text, fields) in cases {
        let (ok, stderr) = check(text);
        assert!(!ok, "{text:?} should be rejected");
        for field in fields {
            assert!(
                stderr.contains(field),
                "{text:?}: message does not name {field}: {stderr}"
            );
        }
    }
}

#[test]
fn a_damaged_performance_profile_is_named_by_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(&profile, "{ not json").unwrap();
    let (ok, err) = check(&format!("[scaling]\nprofile = {:?}\n", profile.display().to_string()));
    assert!(!ok);
    assert!(err.contains("`scaling.profile`") && err.contains("damaged"), "{err}");
    let (ok, err) = check("[pressure]\nresponses = [{ at = \"extreme\", action = \"shrink_caches\" }]\n");
    assert!(!ok);
    assert!(err.contains("`pressure.responses[0].at`"), "{err}");
}
