//! `nexus state export FILE` / `nexus state import FILE`: a running
//! `nexus run`'s quotas, budgets and pool sizes, through its admin API
//! (`GET` / `PUT /admin/state`, see [`crate::ops::state`]). The bearer
//! token is read from the `NEXUS_TOKEN` environment variable (a viewer's
//! to export, an admin's to import), never from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::ops::state::StateDoc;

/// The environment variable holding the admin API token.
pub const TOKEN_ENV: &str = "NEXUS_TOKEN";

/// Largest state file read or answer accepted.
pub const MAX_STATE_BYTES: usize = 256 * 1024;

/// `nexus state ...`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write the server's quotas, budgets and pool sizes to FILE (versioned JSON).
    Export(StateArgs),
    /// Send FILE to the server, which checks all of it before it changes
    /// anything (exit 1 listing every problem, changing nothing).
    Import(StateArgs),
}

/// Where the state goes or comes from, and the server.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state file.
    pub file: PathBuf,
    /// The `nexus run` server.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
}

/// Runs `nexus state ...`: exit 0 done, 1 refused by the server, 2 the
/// file or the server could not be reached.
pub fn run(command: StateCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let token = std::env::var(TOKEN_ENV).ok();
    let result = runtime.block_on(async {
        match command {
            StateCommand::Export(args) => export(&args, token.as_deref()).await,
            StateCommand::Import(args) => import(&args, token.as_deref()).await,
        }
    });
    Ok(match result {
        Ok(message) => {
            eprintln!("nexus state: {message}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("nexus state: {message}");
            ExitCode::from(code)
        }
    })
}

type Outcome = Result<String, (u8, String)>;

fn client() -> Result<reqwest::Client, (u8, String)> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| (2, format!("cannot build an HTTP client: {e}")))
}

fn endpoint(url: &str) -> String {
    format!("{}/admin/state", url.trim_end_matches('/'))
}

/// The answer's body if it is 2xx; the server's message (exit 1) if not.
async fn body(response: reqwest::Response) -> Result<Vec<u8>, (u8, String)> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| (2, format!("reading the answer: {e}")))?;
    if bytes.len() > MAX_STATE_BYTES {
        return Err((2, format!("the answer is larger than {MAX_STATE_BYTES} bytes")));
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err((1, format!("the server refused ({status}): {message}")));
    }
    Ok(bytes.to_vec())
}

async fn export(args: &StateArgs, token: Option<&str>) -> Outcome {
    let mut request = client()?.get(endpoint(&args.url));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.map_err(|e| (2, format!("{}: {e}", args.url)))?;
    let bytes = body(response).await?;
    let doc: StateDoc =
        serde_json::from_slice(&bytes).map_err(|e| (2, format!("the server's answer is not a state document: {e}")))?;
    let mut text = serde_json::to_string_pretty(&doc).expect("a state document serializes");
    text.push('\n');
    std::fs::write(&args.file, text).map_err(|e| (2, format!("{}: {e}", args.file.display())))?;
    Ok(format!(
        "{} quota(s), {} budget(s), {} pool(s) written to {}",
        doc.quotas.len(),
        doc.budgets.len(),
        doc.pools.len(),
        args.file.display()
    ))
}

async fn import(args: &StateArgs, token: Option<&str>) -> Outcome {
    let text = std::fs::read(&args.file).map_err(|e| (2, format!("{}: {e}", args.file.display())))?;
    if text.len() > MAX_STATE_BYTES {
        return Err((
            2,
            format!("{}: larger than {MAX_STATE_BYTES} bytes", args.file.display()),
        ));
    }
    // Parsed here too, so a file that is not a state document is named as such.
    let doc: StateDoc = serde_json::from_slice(&text)
        .map_err(|e| (1, format!("{}: not a state document: {e}", args.file.display())))?;
    let mut request = client()?.put(endpoint(&args.url)).json(&doc);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.map_err(|e| (2, format!("{}: {e}", args.url)))?;
    body(response).await?;
    Ok(format!(
        "{} quota(s), {} budget(s), {} pool(s) imported from {}",
        doc.quotas.len(),
        doc.budgets.len(),
        doc.pools.len(),
        args.file.display()
    ))
}
