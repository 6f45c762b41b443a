//! The dashboard of `nexus run` in process: `GET /` serves the page with
//! the elements its scripts fill, to anyone and with a policy that keeps
//! it on this server, even where reads need a viewer token;
//! `GET /status/history` follows the viewer rule of `/status` and answers
//! what the monitor sampled of each pool as series (messages handled per
//! sample, lane depths, latencies, per-minute aggregates) with the
//! pressure and budget points recorded beside it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nexus_swarm::actors::cost_ledger::{Budget, BudgetAction, BudgetPeriod};
use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::ops::agents::SpawnedPool;
use nexus_swarm::ops::audit::AuditLog;
use nexus_swarm::ops::http::{DASHBOARD_HTML, OpsState, router};
use nexus_swarm::ops::tokens::{Tokens, hash_token};
use nexus_swarm::prelude::*;
use serde_json::Value;

use crate::support::http as support;

use support::{TIMEOUT, http, json};

/// The elements the dashboard's scripts fill, by id.
const IDS: [&str; 16] = [
    "ready",
    "pressure",
    "uptime",
    "updated",
    "handled-total",
    "throughput-total",
    "queued-total",
    "latency-p50",
    "latency-p99",
    "budget-spent",
    "chart-throughput",
    "chart-depth",
    "chart-latency",
    "chart-budgets",
    "chart-pressure",
    "chart-minutes",
];

async fn serve(state: Arc<OpsState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(axum::serve(listener, router(state)).into_future());
    addr
}

/// One GET off the async threads: (status, the raw response with headers).
async fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (addr, path, token) = (addr.to_string(), path.to_string(), token.map(str::to_string));
    tokio::time::timeout(
        TIMEOUT,
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let code = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
            (code, raw)
        }),
    )
    .await
    .expect("answered in time")
    .unwrap()
}

async fn history(addr: &str, token: Option<&str>) -> (u16, Value) {
    let (addr, token) = (addr.to_string(), token.map(str::to_string));
    let (code, body) =
        tokio::task::spawn_blocking(move || http(&addr, "GET", "/status/history", token.as_deref(), None))
            .await
            .unwrap();
    (code, json(&body))
}

/// Sends `n` messages to `pool` and waits for every answer.
/// Sends `n` messages and waits until the pool has counted them handled
/// (a reply goes out before its handler returns and is counted).
async fn handle(pool: &PoolRef<(String, Reply<String>)>, n: usize) {
    let before = pool.handled();
    let mut answers = Vec::new();
    for i in 0..n {
        let (reply, answer) = Reply::channel();
        pool.try_send((format!("m{i}"), reply), Priority::Normal)
            .unwrap_or_else(|_| panic!("message {i} admitted"));
        answers.push(answer);
    }
    for a in answers {
        tokio::time::timeout(TIMEOUT, a).await.unwrap().unwrap();
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while pool.handled() < before + n as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never counted {n} handled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_to_anyone_and_the_history_holds_what_the_swarm_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The monitor's own ticker waits an hour: every sample here is taken on purpose.
    let config = NexusConfig::from_toml_str(&format!(
        "[node]\ndata_dir = \"{}\"\n[monitor]\ninterval = \"1h\"\n\
         [[run.pools]]\nname = \"echoes\"\nagent = \"echo\"\nsize = 2\n",
        data.display()
    ))
    .unwrap();
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let pool = SpawnedPool::spawn(&swarm, &config.run.pools[0]).await.unwrap();
    assert!(pool.load.is_none(), "no load unless asked");
    let tokens = Tokens::parse(
        &format!(
            "[[tokens]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            hash_token("look")
        ),
        Path::new("tokens.toml"),
    )
    .unwrap();
    let state = OpsState::new(
        swarm.clone(),
        BTreeMap::from([("echoes".to_string(), pool.clone())]),
        Vec::new(),
        tokens,
        Arc::new(AuditLog::open(&data).unwrap()),
        &config.monitor,
    );
    let addr = serve(Arc::clone(&state)).await;

    let (code, page) = get(&addr, "/", None).await;
    assert_eq!(code, 200, "the page needs no token: {page}");
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("connect-src 'self'"), "{head}");
    assert_eq!(body, DASHBOARD_HTML);
    for id in IDS {
        assert!(body.contains(&format!("id=\"{id}\"")), "no #{id} in the page");
    }
    for needle in ["/status/history", "Bearer ", "#token=", "data-metric=\"handled\""] {
        assert!(body.contains(needle), "{needle} missing from the page");
    }
    assert!(
        !body.contains("http://") && !body.contains("https://") && !body.contains("src=\""),
        "the page loads nothing from elsewhere"
    );

    assert_eq!(history(&addr, None).await.0, 401, "history reads as /status does");
    assert_eq!(history(&addr, Some("nope")).await.0, 401);

    let monitor = swarm.monitor().unwrap();
    handle(&pool.pool, 100).await;
    monitor.sample().await.unwrap();
    state.record_trail().await;
    swarm
        .ledger()
        .put_budget(Budget {
            id: "demo".into(),
            scope: Scope::default(),
            limit_micro_usd: 5000,
            period: BudgetPeriod::Daily,
            action: BudgetAction::Alert,
        })
        .await
        .unwrap();
    handle(&pool.pool, 50).await;
    monitor.sample().await.unwrap();
    state.record_trail().await;

    let (code, doc) = history(&addr, Some("look")).await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["monitor"], true);
    assert_eq!(doc["interval_ms"], 3_600_000);
    let pools = doc["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{doc}");
    let p = &pools[0];
    assert_eq!(p["name"], "echoes");
    assert_eq!(u64s(&p["handled"]), [100, 50], "handled per sample: {p}");
    assert_eq!(u64s(&p["workers"]), [2, 2]);
    let ago = u64s(&p["ago_ms"]);
    assert!(ago[0] >= ago[1], "oldest first: {ago:?}");
    for column in [
        "throughput_milli",
        "depth_high",
        "depth_normal",
        "depth_low",
        "queue_permille",
        "latency_p50_us",
        "latency_p99_us",
    ] {
        assert_eq!(p[column].as_array().map(Vec::len), Some(2), "{column}: {p}");
    }
    assert_eq!(u64s(&p["depth_normal"]), [0, 0], "every answer was awaited");
    assert!(
        u64s(&p["throughput_milli"])[1] > 0,
        "50 handled since the first sample: {p}"
    );
    let p50 = u64s(&p["latency_p50_us"]);
    let p99 = u64s(&p["latency_p99_us"]);
    assert!(p50.iter().zip(&p99).all(|(a, b)| a <= b), "p50 {p50:?} p99 {p99:?}");
    let minutes = doc["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 1, "{doc}");
    assert_eq!(minutes[0]["pools"]["echoes"]["handled"], 150);

    let levels = doc["pressure"]["level"].as_array().unwrap();
    assert_eq!(levels.len(), 2, "{doc}");
    assert!(
        levels
            .iter()
            .all(|l| ["normal", "moderate", "high", "critical"].contains(&l.as_str().unwrap())),
        "{levels:?}"
    );
    let budgets = doc["budgets"].as_array().unwrap();
    assert_eq!(
        budgets.len(),
        1,
        "the budget appears from the point after it was set: {doc}"
    );
    assert_eq!(budgets[0]["id"], "demo");
    assert_eq!(u64s(&budgets[0]["limit_micro_usd"]), [5000]);
    assert_eq!(u64s(&budgets[0]["spent_micro_usd"]), [0]);
    assert_eq!(budgets[0]["ago_ms"].as_array().unwrap().len(), 1);

    // Without a tokens file both are open.
    let open = OpsState::new(
        swarm.clone(),
        BTreeMap::new(),
        Vec::new(),
        Tokens::default(),
        Arc::new(AuditLog::open(&dir.path().join("open")).unwrap()),
        &config.monitor,
    );
    let addr = serve(open).await;
    assert_eq!(get(&addr, "/", None).await.0, 200);
    let (code, doc) = history(&addr, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        doc["pools"][0]["name"], "echoes",
        "the monitor's samples, whoever serves them"
    );
    assert_eq!(
        doc["pressure"]["level"].as_array().unwrap().len(),
        0,
        "this server recorded no trail"
    );

    swarm.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_pool_s_load_sends_its_rate_through_the_lanes_until_it_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let config = NexusConfig::from_toml_str(&format!(
        "[node]\ndata_dir = {:?}\n[monitor]\nenabled = false\n\
         [[run.pools]]\nname = \"echoes\"\nagent = \"echo\"\nsize = 2\nload_per_second = 100\n",
        dir.path().join("data")
    ))
    .unwrap();
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let pool = SpawnedPool::spawn(&swarm, &config.run.pools[0]).await.unwrap();
    let load = Arc::clone(pool.load.as_ref().expect("load_per_second = 100 starts a load"));
    assert_eq!(load.per_second(), 100);

    tokio::time::sleep(std::time::Duration::from_millis(2010)).await;
    let sent = load.sent();
    assert!((199..=201).contains(&sent), "100 a second for 2 s: {sent}");
    assert_eq!(load.refused(), 0, "the lanes had room");

    pool.stop_load();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(load.sent(), sent, "nothing is sent once stopped");
    assert_eq!(pool.pool.handled(), sent, "every message sent was handled by the pool");
    assert_eq!(pool.queued(), 0);

    swarm.shutdown(TIMEOUT).await;
}
