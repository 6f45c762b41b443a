//! `nexus mcp` end to end: beside a `nexus run` with a tokens file, an MCP
//! client speaking raw JSON-RPC over the bridge's stdio initializes, lists
//! the four tools, reads `/status` and a cost report equal to `nexus
//! report`'s; with a viewer token `adjust_quota` comes back as a tool error
//! carrying the API's 403 and changes nothing; with an operator token
//! (from `NEXUS_TOKEN`) `adjust_quota` and `set_budget` are accepted,
//! visible in `/status`, and `nexus audit` lists all three calls under the
//! tokens' names. Once the node is gone, a tool call is a clear
//! "unreachable" tool error, and closing stdin ends the bridge with 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::http as support;

use crate::support::nexus_cli::{Guard, NEXUS, lines_of, nexus, team_limit, write_tokens};
use support::{TIMEOUT, http, json};

fn write_config(dir: &Path, data: &Path) -> PathBuf {
    let config = dir.join("nexus.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
data_dir = "{}"

[[run.pools]]
name = "echoes"
agent = "echo"
size = 1

[[quotas.quotas]]
id = "team-a"
kind = "input_tokens"
limit = 1000
"#,
            data.display()
        ),
    )
    .unwrap();
    config
}

/// A running `nexus run`: its guard and HTTP address.
fn start_run(config: &Path, tokens: &Path) -> (Guard, String) {
    let child = Command::new(NEXUS)
        .args(["run", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--tokens", tokens.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nexus run starts");
    let mut guard = Guard(Some(child));
    let lines = lines_of(guard.0.as_mut().unwrap().stderr.take().unwrap());
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("no listening line ({e}); stderr: {seen:?}"));
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        seen.push(line);
    };
    // The rest of stderr is drained so the node never blocks on a full pipe.
    std::thread::spawn(move || lines.into_iter().for_each(drop));
    (guard, addr)
}

/// A `nexus mcp` child and a raw JSON-RPC client over its stdio.
struct Mcp {
    guard: Guard,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    next_id: u64,
}

impl Mcp {
    fn start(url: &str, token_file: Option<&Path>, env_token: Option<&str>) -> Self {
        let mut command = Command::new(NEXUS);
        command.args(["mcp", "--url", url]).env_remove("NEXUS_TOKEN");
        if let Some(file) = token_file {
            command.args(["--token-file", file.to_str().unwrap()]);
        }
        if let Some(token) = env_token {
            command.env("NEXUS_TOKEN", token);
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("nexus mcp starts");
        let mut guard = Guard(Some(child));
        let stdin = guard.0.as_mut().unwrap().stdin.take();
        let stdout = lines_of(guard.0.as_mut().unwrap().stdout.take().unwrap());
        Self {
            guard,
            stdin,
            stdout,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").expect("the bridge reads stdin");
        stdin.flush().unwrap();
    }

    /// Sends a request and waits for the response with its id (skipping
    /// any notification): the whole response object.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let line = self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("no answer to {method} ({e})"));
            let message = json(&line);
            assert_eq!(message["jsonrpc"], "2.0", "{line}");
            if message["id"] == id {
                return message;
            }
        }
    }

    fn initialize(&mut self) -> Value {
        let answer = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test-client", "version": "0.0.1"}
            }),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer["result"].clone()
    }

    /// `tools/call`: the result object (`content`, `structuredContent`, `isError`).
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        assert!(answer["error"].is_null(), "{tool}: {answer}");
        answer["result"].clone()
    }

    /// Closes stdin and waits for the exit code.
    fn close(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let mut child = self.guard.0.take().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                // Back under the guard, which kills it.
                self.guard.0 = Some(child);
                panic!("nexus mcp did not exit within {TIMEOUT:?} of its stdin closing");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn mcp_bridge_lists_tools_reads_status_and_reports_and_adjusts_only_with_an_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Usage in the ledger before the node opens it, so the report has rows.
    let stress = nexus(&[
        "ledger-stress",
        "--data-dir",
        data.to_str().unwrap(),
        "--records",
        "30",
        "--concurrency",
        "2",
        "--seed",
        "7",
    ]);
    assert!(stress.status.success(), "{}", String::from_utf8_lossy(&stress.stderr));
    let config = write_config(dir.path(), &data);
    let tokens = write_tokens(
        dir.path(),
        &[
            ("grafana", "viewer", "view-secret"),
            ("oncall", "operator", "op-secret"),
        ],
    );
    let viewer_token = dir.path().join("viewer.token");
    std::fs::write(&viewer_token, "view-secret\n").unwrap();

    let (node, addr) = start_run(&config, &tokens);
    let url = format!("http://{addr}");

    let mut viewer = Mcp::start(&url, Some(&viewer_token), None);
    let info = viewer.initialize();
    assert_eq!(info["serverInfo"]["name"], "nexus", "{info}");
    assert!(info["capabilities"]["tools"].is_object(), "{info}");
    assert!(info["protocolVersion"].is_string(), "{info}");

    let listed = viewer.request("tools/list", json!({}));
    let tools = listed["result"]["tools"].as_array().expect("a tool list");
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["status", "cost_report", "adjust_quota", "set_budget"]);
    assert_eq!(tools[2]["inputSchema"]["required"], json!(["quota", "limit"]));

    let status = viewer.call("status", json!({}));
    assert_eq!(status["isError"], false, "{status}");
    let doc = &status["structuredContent"];
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["pools"][0]["name"], "echoes");
    assert_eq!(team_limit(doc), 1000);
    assert_eq!(json(&text_of(&status)), *doc, "the text is the same JSON");

    let report = viewer.call("cost_report", json!({"group_by": ["tenant"]}));
    assert_eq!(report["isError"], false, "{report}");
    let bridged = &report["structuredContent"];
    let out = nexus(&[
        "report",
        "--data-dir",
        data.to_str().unwrap(),
        "--group-by",
        "tenant",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let direct = json(&String::from_utf8(out.stdout).unwrap());
    assert!(direct["total_cost_micro_usd"].as_u64().unwrap() > 0, "{direct}");
    assert_eq!(bridged["total_cost_micro_usd"], direct["total_cost_micro_usd"]);
    assert_eq!(bridged["total_records"], direct["total_records"]);
    assert_eq!(bridged["rows"], direct["rows"], "the same groups as nexus report");

    let bad = viewer.call("cost_report", json!({"last": "forever"}));
    assert_eq!(bad["isError"], true, "{bad}");
    assert_eq!(bad["structuredContent"]["status"], 400, "{bad}");
    assert!(text_of(&bad).contains("forever"), "{bad}");

    let refused = viewer.call("adjust_quota", json!({"quota": "team-a", "limit": 250}));
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(refused["structuredContent"]["status"], 403, "{refused}");
    assert_eq!(refused["structuredContent"]["code"], "forbidden");
    assert!(text_of(&refused).contains("needs operator"), "{refused}");
    let invalid = viewer.call("adjust_quota", json!({"quota": "team-a", "limit": -1}));
    assert_eq!(invalid["isError"], true, "{invalid}");
    assert_eq!(invalid["structuredContent"]["error"], "invalid_arguments");
    let unknown = viewer.request("tools/call", json!({"name": "shutdown", "arguments": {}}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let status = viewer.call("status", json!({}));
    assert_eq!(
        team_limit(&status["structuredContent"]),
        1000,
        "a refused call changes nothing"
    );
    assert_eq!(viewer.close(), Some(0), "closing stdin ends the bridge");

    let mut operator = Mcp::start(&url, None, Some("op-secret"));
    operator.initialize();
    let accepted = operator.call("adjust_quota", json!({"quota": "team-a", "limit": 250}));
    assert_eq!(accepted["isError"], false, "{accepted}");
    assert_eq!(accepted["structuredContent"], json!({"id": "team-a", "limit": 250}));
    let budget = operator.call(
        "set_budget",
        json!({
            "budget": "acme",
            "limit_micro_usd": 7_000_000,
            "period": "monthly",
            "action": "halt",
            "scope": {"tenant": "acme"}
        }),
    );
    assert_eq!(budget["isError"], false, "{budget}");
    assert_eq!(budget["structuredContent"]["limit_micro_usd"], 7_000_000, "{budget}");

    let (code, body) = http(&addr, "GET", "/status", Some("view-secret"), None);
    assert_eq!(code, 200, "{body}");
    let after = json(&body);
    assert_eq!(team_limit(&after), 250, "the change is visible in /status");
    let acme = after["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["budget"]["id"] == "acme")
        .unwrap_or_else(|| panic!("budget acme in /status: {after}"));
    assert_eq!(acme["budget"]["scope"]["tenant"], "acme");

    let out = nexus(&["audit", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit = json(&String::from_utf8(out.stdout).unwrap());
    let calls: Vec<(&str, &str, &str, u64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("grafana", "POST /admin/quotas/team-a", "refused", 403),
            ("oncall", "POST /admin/quotas/team-a", "accepted", 200),
            ("oncall", "PUT /admin/budgets/acme", "accepted", 200),
        ],
        "invalid arguments never reach the node"
    );

    drop(node);
    let gone = operator.call("status", json!({}));
    assert_eq!(gone["isError"], true, "{gone}");
    assert_eq!(gone["structuredContent"]["error"], "unreachable", "{gone}");
    assert!(text_of(&gone).contains(&addr), "{gone}");
    assert_eq!(operator.close(), Some(0));
}
