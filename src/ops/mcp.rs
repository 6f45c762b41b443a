//! `nexus mcp`: an MCP (Model Context Protocol) server on stdio that
//! bridges to a running `nexus run`'s HTTP API ([`super::http`]).
//!
//! Every tool is one HTTP call to the node, made with the bridge's bearer
//! token, so roles, validation and the audit log are exactly the HTTP
//! API's: the bridge holds no authority of its own.
//!
//! | tool | HTTP call | role |
//! |---|---|---|
//! | `status` | `GET /status` | viewer¹ |
//! | `cost_report` | `GET /report` ([`super::http::ReportParams`]) | viewer¹ |
//! | `adjust_quota` | `POST /admin/quotas/{quota}` | operator |
//! | `set_budget` | `PUT /admin/budgets/{budget}` | operator |
//!
//! ¹ Reads are open when the node has no tokens file.
//!
//! A tool's arguments are parsed and checked here ([`ToolCall::parse`],
//! plain synchronous code) before anything is sent. A call the node
//! refuses (401, 403, 400, 404, 422, ...) comes back as an MCP tool error
//! (`isError: true`) whose text is the node's reason and whose structured
//! content is `{"error", "status", "code", "message"}`; so does a node
//! that cannot be reached or does not answer within [`REQUEST_TIMEOUT`].
//! Only a tool name the bridge does not know is a JSON-RPC error
//! (`-32602`), as the MCP specification asks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_actors::cost_ledger::{BudgetAction, BudgetPeriod, Field};
use nexus_swarm_runtime::scope::Scope;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerInfo, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// How long connecting to the node may take. Default: 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one HTTP call to the node may take in all. Default: 30 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from the node; a larger one is an error.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Largest token file read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Longest piece of a non-JSON refusal body quoted in an error.
const MAX_QUOTED_CHARS: usize = 500;

/// Why the bridge could not start, or a tool call did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// `--url` is not an `http` or `https` URL.
    #[error("invalid node URL `{url}`: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The token is empty, too long, or not valid in an HTTP header.
    #[error("invalid token ({0})")]
    BadToken(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// No tool of that name.
    #[error("no tool named `{0}` (status, cost_report, adjust_quota, set_budget)")]
    UnknownTool(String),
    /// The arguments do not fit the tool's input schema.
    #[error("invalid arguments for {tool}: {reason}")]
    InvalidArguments {
        /// The tool.
        tool: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The node could not be reached.
    #[error("the node at {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The node did not answer within [`REQUEST_TIMEOUT`].
    #[error("the node at {url} did not answer within {}", shown_duration(.after))]
    Timeout {
        /// The URL called.
        url: String,
        /// The time waited.
        after: Duration,
    },
    /// The node answered with an error status.
    #[error("refused by the node ({status}{}): {message}", code_suffix(.code))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error code (`unauthorized`, `forbidden`, ...), if it sent one.
        code: Option<String>,
        /// The API's reason.
        message: String,
    },
    /// The node's answer could not be read or is not JSON.
    #[error("the node's answer is not usable: {0}")]
    BadAnswer(String),
}

fn shown_duration(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(*d)
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

impl BridgeError {
    /// A short machine-readable name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            BridgeError::BadUrl { .. } => "bad_url",
            BridgeError::TokenFile { .. } => "token_file",
            BridgeError::BadToken(_) => "bad_token",
            BridgeError::Client(_) => "client",
            BridgeError::UnknownTool(_) => "unknown_tool",
            BridgeError::InvalidArguments { .. } => "invalid_arguments",
            BridgeError::Unreachable { .. } => "unreachable",
            BridgeError::Timeout { .. } => "timeout",
            BridgeError::Refused { .. } => "refused",
            BridgeError::BadAnswer(_) => "bad_answer",
        }
    }

    /// The tool result that reports this error to the MCP client: the
    /// message as text, the details as structured content.
    pub fn to_tool_result(&self) -> CallToolResult {
        let mut details = json!({"error": self.kind(), "message": self.to_string()});
        if let BridgeError::Refused { status, code, message } = self {
            details["status"] = json!(status);
            details["code"] = json!(code);
            details["reason"] = json!(message);
        }
        let mut result = CallToolResult::error(vec![ContentBlock::text(self.to_string())]);
        result.structured_content = Some(details);
        result
    }
}

/// Reads a bearer token from `path`: the file's content without its
/// surrounding whitespace, at most [`MAX_TOKEN_FILE_BYTES`].
pub fn read_token_file(path: &Path) -> Result<String, BridgeError> {
    use std::io::Read;
    let file_error = |source| BridgeError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(file_error)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(BridgeError::BadToken(format!(
            "{} is larger than {MAX_TOKEN_FILE_BYTES} bytes",
            path.display()
        )));
    }
    check_token(text.trim())
}

/// A token as sent: non-empty and valid in an `Authorization` header.
pub fn check_token(token: &str) -> Result<String, BridgeError> {
    if token.is_empty() {
        return Err(BridgeError::BadToken("it is empty".into()));
    }
    if token.chars().any(char::is_whitespace) || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(BridgeError::BadToken(
            "it holds whitespace or characters an HTTP header cannot carry".into(),
        ));
    }
    Ok(token.to_string())
}

/// The arguments of `cost_report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostReportArgs {
    /// Grouping fields, outermost first (empty: one total row).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Start of the range, RFC 3339.
    pub from: Option<String>,
    /// End of the range (exclusive), RFC 3339.
    pub to: Option<String>,
    /// The span up to now (`24h`, `7days`), instead of `from`.
    pub last: Option<String>,
}

impl CostReportArgs {
    /// The query string pairs of `GET /report`.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if !self.group_by.is_empty() {
            pairs.push(("group_by", self.group_by.join(",")));
        }
        let optional = [
            ("tenant", &self.tenant),
            ("workflow", &self.workflow),
            ("agent", &self.agent),
            ("model", &self.model),
            ("from", &self.from),
            ("to", &self.to),
            ("last", &self.last),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                pairs.push((name, v.clone()));
            }
        }
        pairs
    }
}

/// The arguments of `adjust_quota`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustQuotaArgs {
    /// The quota's id.
    pub quota: String,
    /// Its new limit, in the quota kind's unit.
    pub limit: u64,
}

/// The arguments of `set_budget`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBudgetArgs {
    /// The budget's id (created if new).
    pub budget: String,
    /// The limit per period, in micro-dollars.
    pub limit_micro_usd: u64,
    /// The period the limit applies to.
    pub period: BudgetPeriod,
    /// What happens at the limit.
    pub action: BudgetAction,
    /// The usage it covers. Default: everything.
    #[serde(default)]
    pub scope: Scope,
}

/// A tool call, its arguments parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolCall {
    /// `status`.
    Status,
    /// `cost_report`.
    CostReport(CostReportArgs),
    /// `adjust_quota`.
    AdjustQuota(AdjustQuotaArgs),
    /// `set_budget`.
    SetBudget(SetBudgetArgs),
}

impl ToolCall {
    /// Parses a `tools/call` by tool name; absent arguments are an empty object.
    pub fn parse(name: &str, arguments: Option<JsonObject>) -> Result<Self, BridgeError> {
        let args = Value::Object(arguments.unwrap_or_default());
        fn typed<T: serde::de::DeserializeOwned>(tool: &'static str, args: Value) -> Result<T, BridgeError> {
            serde_json::from_value(args).map_err(|e| BridgeError::InvalidArguments {
                tool,
                reason: e.to_string(),
            })
        }
        fn non_empty(tool: &'static str, field: &str, value: &str) -> Result<(), BridgeError> {
            if value.trim().is_empty() {
                return Err(BridgeError::InvalidArguments {
                    tool,
                    reason: format!("`{field}` must not be empty"),
                });
            }
            Ok(())
        }
        match name {
            "status" => {
                let _: Empty = typed("status", args)?;
                Ok(ToolCall::Status)
            }
            "cost_report" => {
                let a: CostReportArgs = typed("cost_report", args)?;
                for field in &a.group_by {
                    field.parse::<Field>().map_err(|e| BridgeError::InvalidArguments {
                        tool: "cost_report",
                        reason: e.to_string(),
                    })?;
                }
                if a.from.is_some() && a.last.is_some() {
                    return Err(BridgeError::InvalidArguments {
                        tool: "cost_report",
                        reason: "give `from` or `last`, not both".into(),
                    });
                }
                Ok(ToolCall::CostReport(a))
            }
            "adjust_quota" => {
                let a: AdjustQuotaArgs = typed("adjust_quota", args)?;
                non_empty("adjust_quota", "quota", &a.quota)?;
                Ok(ToolCall::AdjustQuota(a))
            }
            "set_budget" => {
                let a: SetBudgetArgs = typed("set_budget", args)?;
                non_empty("set_budget", "budget", &a.budget)?;
                Ok(ToolCall::SetBudget(a))
            }
            other => Err(BridgeError::UnknownTool(other.to_string())),
        }
    }
}

/// The arguments of a tool that takes none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// An MCP input schema from a JSON object literal.
fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        // Every schema below is an object literal; an empty schema is the safe reading of anything else.
        _ => Arc::new(JsonObject::new()),
    }
}

/// The tools `tools/list` answers, in a fixed order.
pub fn tools() -> Vec<Tool> {
    let scope = json!({
        "type": "object",
        "description": "The usage covered; omitted fields match everything.",
        "properties": {
            "tenant": {"type": "string"},
            "workflow": {"type": "string"},
            "agent": {"type": "string"},
            "model": {"type": "string"}
        },
        "additionalProperties": false
    });
    vec![
        Tool::new(
            "status",
            "The running swarm's status (GET /status): pools with lane depths, routers, \
             pressure, quotas with usage and limits, budgets with spend.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )
        .with_annotations(ToolAnnotations::new().read_only(true)),
        Tool::new(
            "cost_report",
            "A cost report from the node's ledger (GET /report): total cost in micro-dollars \
             and records, optionally grouped and filtered, over a time range (default: all time).",
            schema(json!({
                "type": "object",
                "properties": {
                    "group_by": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Grouping fields, outermost first: tenant, workflow, agent, model, kind, day or label:KEY."
                    },
                    "tenant": {"type": "string", "description": "Only this tenant."},
                    "workflow": {"type": "string", "description": "Only this workflow."},
                    "agent": {"type": "string", "description": "Only this agent."},
                    "model": {"type": "string", "description": "Only this model."},
                    "from": {"type": "string", "description": "Start, RFC 3339 (2025-01-31T00:00:00Z)."},
                    "to": {"type": "string", "description": "End (exclusive), RFC 3339. Default: now."},
                    "last": {"type": "string", "description": "The span up to now (24h, 7days), instead of from."}
                },
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(true)),
        Tool::new(
            "adjust_quota",
            "Set a quota's limit (POST /admin/quotas/{quota}); needs an operator token. \
             The change, accepted or refused, is written to the node's audit log.",
            schema(json!({
                "type": "object",
                "properties": {
                    "quota": {"type": "string", "description": "The quota's id, as in status."},
                    "limit": {"type": "integer", "minimum": 0, "description": "The new limit, in the quota kind's unit."}
                },
                "required": ["quota", "limit"],
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).idempotent(true)),
        Tool::new(
            "set_budget",
            "Create or replace a budget (PUT /admin/budgets/{budget}); needs an operator token. \
             The change, accepted or refused, is written to the node's audit log.",
            schema(json!({
                "type": "object",
                "properties": {
                    "budget": {"type": "string", "description": "The budget's id (letters, digits, _ - . /)."},
                    "limit_micro_usd": {"type": "integer", "minimum": 0, "description": "The limit per period, in micro-dollars (1 USD = 1000000)."},
                    "period": {
                        "description": "hourly, daily, monthly (UTC), or {\"rolling\": {\"secs\": N, \"nanos\": 0}} for a trailing window of 1 minute to 31 days.",
                        "oneOf": [
                            {"type": "string", "enum": ["hourly", "daily", "monthly"]},
                            {"type": "object", "required": ["rolling"]}
                        ]
                    },
                    "action": {
                        "description": "alert, halt, or {\"throttle\": {\"permille\": N}} (N below 1000: the rate admitted at the limit).",
                        "oneOf": [
                            {"type": "string", "enum": ["alert", "halt"]},
                            {"type": "object", "required": ["throttle"]}
                        ]
                    },
                    "scope": scope
                },
                "required": ["budget", "limit_micro_usd", "period", "action"],
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).idempotent(true)),
    ]
}

/// The refusal a non-2xx answer stands for: the API's `{"error",
/// "message"}` if the body is that, else the body's text.
pub fn refusal(status: u16, body: &[u8]) -> BridgeError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let code = parsed.as_ref().and_then(|v| v["error"].as_str()).map(str::to_string);
    let message = parsed
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("no reason given")
                    .to_string()
            } else {
                text.chars().take(MAX_QUOTED_CHARS).collect()
            }
        });
    BridgeError::Refused { status, code, message }
}

/// The words of an error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let words = s.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        source = s.source();
    }
    text
}

/// The HTTP API of one `nexus run` node, with the bridge's token.
#[derive(Clone)]
pub struct NodeClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: only whether there is one is shown.
        f.debug_struct("NodeClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl NodeClient {
    /// A client of the node at `url` (`http://127.0.0.1:9464`), sending
    /// `token` as `Authorization: Bearer` if there is one.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, BridgeError> {
        let bad = |reason: &str| BridgeError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if !url.contains("://") {
            return Err(bad("it needs a scheme (http://HOST:PORT)"));
        }
        let base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("it names no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("it must not carry a query or a fragment"));
        }
        let token = token.as_deref().map(check_token).transpose()?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BridgeError::Client(chain(&e)))?;
        Ok(Self { base, token, http })
    }

    /// The node's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of the route made of `segments` (each percent-encoded as
    /// one path segment) below the base URL.
    pub fn endpoint(&self, segments: &[&str]) -> Result<Url, BridgeError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| BridgeError::BadUrl {
                url: self.base.to_string(),
                reason: "it cannot hold a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends one request and reads its JSON answer.
    async fn call(&self, method: Method, url: Url, body: Option<Value>) -> Result<Value, BridgeError> {
        let shown = url.to_string();
        let mut request = self.http.request(method, url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = &body {
            request = request.json(b);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                BridgeError::Timeout {
                    url: shown.clone(),
                    after: REQUEST_TIMEOUT,
                }
            } else {
                // reqwest's own words repeat the URL; its sources say why.
                let reason = std::error::Error::source(&e).map_or_else(|| chain(&e), chain);
                BridgeError::Unreachable {
                    url: shown.clone(),
                    reason,
                }
            }
        })?;
        let status = response.status();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(BridgeError::BadAnswer(format!("larger than {MAX_ANSWER_BYTES} bytes")));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(BridgeError::Timeout {
                        url: shown,
                        after: REQUEST_TIMEOUT,
                    });
                }
                Err(e) => return Err(BridgeError::BadAnswer(format!("reading it: {}", chain(&e)))),
            }
        }
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| BridgeError::BadAnswer(format!("not JSON: {e}")))
    }

    /// Runs a parsed tool call against the node: the node's JSON answer.
    pub async fn run(&self, call: &ToolCall) -> Result<Value, BridgeError> {
        match call {
            ToolCall::Status => self.call(Method::GET, self.endpoint(&["status"])?, None).await,
            ToolCall::CostReport(args) => {
                let mut url = self.endpoint(&["report"])?;
                let pairs = args.query_pairs();
                if !pairs.is_empty() {
                    url.query_pairs_mut().extend_pairs(pairs);
                }
                self.call(Method::GET, url, None).await
            }
            ToolCall::AdjustQuota(a) => {
                let url = self.endpoint(&["admin", "quotas", &a.quota])?;
                self.call(Method::POST, url, Some(json!({"limit": a.limit}))).await
            }
            ToolCall::SetBudget(a) => {
                let url = self.endpoint(&["admin", "budgets", &a.budget])?;
                let body = json!({
                    "limit_micro_usd": a.limit_micro_usd,
                    "period": a.period,
                    "action": a.action,
                    "scope": a.scope,
                });
                self.call(Method::PUT, url, Some(body)).await
            }
        }
    }
}

/// The MCP server of `nexus mcp`: lists the [`tools`] and runs each call
/// against its [`NodeClient`].
#[derive(Debug, Clone)]
pub struct NexusMcp {
    node: NodeClient,
}

impl NexusMcp {
    /// A server over `node`.
    pub fn new(node: NodeClient) -> Self {
        Self { node }
    }

    /// Runs the tool `name`: its result, or the error a client sees.
    /// `Err` only for a tool that does not exist.
    pub async fn call(&self, name: &str, arguments: Option<JsonObject>) -> Result<CallToolResult, BridgeError> {
        let call = match ToolCall::parse(name, arguments) {
            Ok(c) => c,
            Err(e @ BridgeError::UnknownTool(_)) => return Err(e),
            Err(e) => return Ok(e.to_tool_result()),
        };
        Ok(match self.node.run(&call).await {
            Ok(value @ Value::Object(_)) => CallToolResult::structured(value),
            Ok(other) => CallToolResult::success(vec![ContentBlock::text(other.to_string())]),
            Err(e) => {
                tracing::warn!(tool = name, error = %e, "tool call failed");
                e.to_tool_result()
            }
        })
    }
}

impl ServerHandler for NexusMcp {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("nexus", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Reads and adjusts the Nexus Swarm node at {}: `status` and `cost_report` read; \
                 `adjust_quota` and `set_budget` need an operator token and are audited by the node.",
                self.node.base()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(&request.name, request.arguments)
            .await
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))
    }
}
