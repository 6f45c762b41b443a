//! `nexus mcp`: an MCP server on standard input and output that bridges
//! to a running `nexus run`'s HTTP API (see [`crate::ops::mcp`] for its
//! tools). The bearer token is read from `--token-file`, else from the
//! `NEXUS_TOKEN` environment variable, never from the command line.
//! Standard output carries only MCP messages; logs go to standard error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rmcp::ServiceExt;

use super::state::TOKEN_ENV;
use crate::ops::mcp::{NexusMcp, NodeClient, check_token, read_token_file};

/// Exit codes of `nexus mcp` (printed by its `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the MCP client closed standard input
  1  the MCP session failed (e.g. the client did not initialize)
  2  usage error: a bad --url, an unreadable or empty token file

Example MCP client configuration (e.g. Claude Desktop's mcpServers):
  {\"mcpServers\": {\"nexus\": {\"command\": \"nexus\",
    \"args\": [\"mcp\", \"--url\", \"http://127.0.0.1:9464\", \"--token-file\", \"/etc/nexus/mcp.token\"]}}}";

/// `nexus mcp ...`
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct McpArgs {
    /// The `nexus run` server's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// A file holding the bearer token (one line). Default: the
    /// `NEXUS_TOKEN` environment variable; with neither, no token is sent
    /// (enough to read a node that has no tokens file).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// Runs `nexus mcp` until the client closes standard input.
pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => read_token_file(path).map(Some),
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) => check_token(t.trim()).map(Some),
            Err(_) => Ok(None),
        },
    };
    let node = match token.and_then(|t| NodeClient::new(&args.url, t)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("nexus mcp: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let service = NexusMcp::new(node)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| format!("the MCP session did not start: {e}"))?;
        service
            .waiting()
            .await
            .map_err(|e| format!("the MCP session failed: {e}"))
    });
    Ok(match outcome {
        Ok(reason) => {
            tracing::info!(?reason, "MCP session ended");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("nexus mcp: {message}");
            ExitCode::FAILURE
        }
    })
}
