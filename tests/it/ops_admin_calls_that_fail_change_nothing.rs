//! The admin API of `nexus run` in process: budgets are set by operators;
//! malformed, out-of-range, unknown-target and oversized calls get a typed
//! 4xx and change nothing; only an admin may ask for shutdown; without a
//! tokens file reads are open and every admin call is refused; every call
//! lands in the audit log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::ops::agents::SpawnedPool;
use nexus_swarm::ops::audit::{self, AuditLog, Outcome};
use nexus_swarm::ops::http::{OpsState, router};
use nexus_swarm::ops::tokens::{Tokens, hash_token};
use nexus_swarm::runtime::config::NexusConfig;
use serde_json::Value;

use crate::support::http as support;

use support::{TIMEOUT, http, json};

/// A call to refuse: method, path, token, body, status, error code.
type Refused = (
    &'static str,
    &'static str,
    Option<&'static str>,
    String,
    u16,
    &'static str,
);

/// Serves `state` on a free loopback port; returns the address.
async fn serve(state: Arc<OpsState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(axum::serve(listener, router(state)).into_future());
    addr
}

/// [`http`] off the async threads.
async fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, Value) {
    let (addr, method, path, token) = (
        addr.to_string(),
        method.to_string(),
        path.to_string(),
        token.map(str::to_string),
    );
    let (code, body) = tokio::time::timeout(
        TIMEOUT,
        tokio::task::spawn_blocking(move || http(&addr, &method, &path, token.as_deref(), body.as_deref())),
    )
    .await
    .expect("answered in time")
    .unwrap();
    (code, json(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_admin_calls_are_typed_audited_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = NexusConfig::from_toml_str(&format!(
        "[node]\ndata_dir = \"{}\"\n[[run.pools]]\nname = \"echoes\"\nagent = \"echo\"\nsize = 2\n\
         [[quotas.quotas]]\nid = \"team-a\"\nkind = \"input_tokens\"\nlimit = 1000\n",
        data.display()
    ))
    .unwrap();
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let pool = SpawnedPool::spawn(&swarm, &config.run.pools[0]).await.unwrap();
    let tokens = Tokens::parse(
        &format!(
            "[[tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n\
             [[tokens]]\nname = \"root\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            hash_token("op"),
            hash_token("adm")
        ),
        Path::new("tokens.toml"),
    )
    .unwrap();
    let log = Arc::new(AuditLog::open(&data).unwrap());
    let state = OpsState::new(
        swarm.clone(),
        BTreeMap::from([("echoes".to_string(), pool)]),
        Vec::new(),
        tokens,
        log,
        &config.monitor,
    );
    let addr = serve(Arc::clone(&state)).await;
    assert_eq!(
        call(&addr, "GET", "/ready", None, None).await.0,
        503,
        "not ready before it is told"
    );
    state.set_ready(true);
    assert_eq!(call(&addr, "GET", "/ready", None, None).await.0, 200);

    let budget = r#"{"limit_micro_usd": 2000000, "period": "daily", "action": {"throttle": {"permille": 500}}, "scope": {"tenant": "acme"}}"#;
    let (code, body) = call(
        &addr,
        "PUT",
        "/admin/budgets/acme-daily",
        Some("op"),
        Some(budget.into()),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["scope"]["tenant"], "acme");

    // Each refused: (method, path, token, body, status, error code).
    let big = format!("{{\"size\": 3, \"pad\": \"{}\"}}", "x".repeat(300_000));
    let refused: Vec<Refused> = vec![
        (
            "PUT",
            "/admin/budgets/acme-daily",
            Some("op"),
            r#"{"limit_micro_usd": 0, "period": "daily", "action": "alert"}"#.into(),
            422,
            "unprocessable",
        ),
        (
            "PUT",
            "/admin/budgets/acme-daily",
            Some("op"),
            r#"{"limit_micro_usd": 5, "period": "weekly", "action": "alert"}"#.into(),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/admin/budgets/acme-daily",
            Some("op"),
            "not json".into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/admin/quotas/ghost",
            Some("op"),
            r#"{"limit": 5}"#.into(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/routers/ghost/members/w/weight",
            Some("op"),
            r#"{"weight": 2}"#.into(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/pools/ghost/size",
            Some("op"),
            r#"{"size": 3}"#.into(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/pools/echoes/size",
            Some("op"),
            r#"{"size": 0}"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/admin/pools/echoes/size",
            Some("op"),
            r#"{"size": 5000}"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/admin/pools/echoes/size",
            Some("op"),
            big,
            413,
            "payload_too_large",
        ),
        ("POST", "/admin/shutdown", Some("op"), "{}".into(), 403, "forbidden"),
        (
            "POST",
            "/admin/shutdown",
            Some("adm"),
            r#"{"now": true}"#.into(),
            400,
            "bad_request",
        ),
    ];
    for (method, path, token, body, status, error) in &refused {
        let (code, answer) = call(&addr, method, path, *token, Some(body.clone())).await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (*status, Some(*error)),
            "{method} {path}: {answer}"
        );
        assert!(answer["message"].is_string());
    }
    let (_, status) = call(&addr, "GET", "/status", Some("op"), None).await;
    assert_eq!(status["pools"][0]["size"], 2, "{status}");
    assert_eq!(status["quotas"][0]["quota"]["limit"], 1000);
    let budgets = status["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(
        budgets[0]["budget"]["limit_micro_usd"], 2_000_000,
        "the refused puts changed nothing"
    );
    assert!(!*state.shutdown_requested().borrow());

    let mut stop = state.shutdown_requested();
    let (code, body) = call(&addr, "POST", "/admin/shutdown", Some("adm"), Some("{}".into())).await;
    assert_eq!(code, 200, "{body}");
    tokio::time::timeout(TIMEOUT, stop.wait_for(|s| *s))
        .await
        .unwrap()
        .unwrap();

    let read = audit::read(&data).unwrap();
    assert!(read.damaged.is_empty());
    let outcomes: Vec<(Outcome, u16)> = read.entries.iter().map(|e| (e.outcome, e.status)).collect();
    let mut expected = vec![(Outcome::Accepted, 200)];
    expected.extend(refused.iter().map(|r| (Outcome::Refused, r.4)));
    expected.push((Outcome::Accepted, 200));
    assert_eq!(outcomes, expected);
    assert_eq!(read.entries[1].who, "ops");
    assert_eq!(
        read.entries[1].before["limit_micro_usd"], 2_000_000,
        "before is the state it would change"
    );
    assert!(read.entries[1].after.is_null());
    assert_eq!(read.entries.last().unwrap().who, "root");

    // Without tokens: reads are open, every admin call is refused.
    let open = OpsState::new(
        swarm.clone(),
        BTreeMap::new(),
        Vec::new(),
        Tokens::default(),
        Arc::new(AuditLog::open(&dir.path().join("open")).unwrap()),
        &config.monitor,
    );
    let addr = serve(open).await;
    assert_eq!(call(&addr, "GET", "/status", None, None).await.0, 200);
    let (code, body) = call(
        &addr,
        "POST",
        "/admin/quotas/team-a",
        Some("op"),
        Some(r#"{"limit": 1}"#.into()),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no tokens"));
    assert_eq!(swarm.quotas().report("team-a").unwrap().limit, 1000);

    swarm.shutdown(TIMEOUT).await;
}
