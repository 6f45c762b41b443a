//! What the HTTP providers ([`openai`](super::openai) and
//! [`anthropic`](super::anthropic)) share: the [`HttpPool`] and its cap on
//! requests in flight, the mapping of transport failures to typed errors,
//! and the reading of headers and error bodies.
//!
//! Connections: `reqwest`'s pool keeps at most `max_connections_per_host`
//! idle connections per host, and two semaphores bound the requests in
//! flight to `max_connections` in all (shared by the providers built from
//! one [`HttpPool`]) and `max_connections_per_host` per provider, since
//! reqwest itself has no cap on open connections.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::LlmConfig;
use reqwest::header::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ProviderError;
use crate::error::Cause;

/// An HTTP client and the cap on requests in flight shared by the
/// providers built from it.
#[derive(Debug, Clone)]
pub struct HttpPool {
    pub(super) client: reqwest::Client,
    total: Arc<Semaphore>,
    per_host: usize,
}

impl HttpPool {
    /// A pool sized by `llm.max_connections` and `llm.max_connections_per_host`
    /// (seed: 50 and 10), with `llm.timeout` as the request timeout.
    pub fn new(config: &LlmConfig) -> Result<Self, ProviderError> {
        let per_host = config.max_connections_per_host.max(1) as usize;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError::HttpClient(Cause::new(e)))?;
        Ok(Self {
            client,
            total: Arc::new(Semaphore::new(config.max_connections.max(1) as usize)),
            per_host,
        })
    }

    /// Requests that may be in flight through the pool now.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }

    /// A provider's own cap: `max_connections_per_host` requests at once.
    pub(super) fn host_cap(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.per_host))
    }

    /// Waits for a permit of the pool and one of `host` (a provider's
    /// [`Self::host_cap`]), held together for one exchange.
    pub(super) async fn acquire(&self, host: &Arc<Semaphore>) -> Result<Permits, ProviderError> {
        // The semaphores are never closed, so acquiring only fails if that
        // changes.
        let total = Arc::clone(&self.total)
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Lost("the connection pool is closed"))?;
        let host = Arc::clone(host)
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Lost("the connection pool is closed"))?;
        Ok(Permits {
            _total: total,
            _host: host,
        })
    }
}

/// The connection permits of one exchange, held until its body is read.
#[derive(Debug)]
pub(super) struct Permits {
    _total: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

/// What an HTTP provider calls: its name, the endpoint's URL, the API key
/// (read from the environment at build time), the request timeout, and
/// the connection caps. Its `Debug` leaves the key out.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) name: String,
    /// Parsed once: each request clones it rather than parsing a string.
    pub(super) url: reqwest::Url,
    pub(super) api_key: Option<String>,
    pub(super) timeout: Duration,
    pub(super) pool: HttpPool,
    pub(super) host: Arc<Semaphore>,
}

impl Endpoint {
    /// An endpoint at `base_url` + `path`, its key read through `env` from
    /// the variable `api_key_env` names.
    pub(super) fn new(
        name: String,
        base_url: &str,
        path: &str,
        api_key_env: Option<&String>,
        timeout: Duration,
        pool: &HttpPool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let base = check_base_url(base_url)?;
        let url = format!("{base}/{path}");
        let url = reqwest::Url::parse(&url).map_err(|e| ProviderError::BadBaseUrl {
            url: base_url.to_string(),
            reason: Some(e),
        })?;
        Ok(Self {
            name,
            url,
            api_key: read_key(api_key_env, env)?,
            timeout,
            pool: pool.clone(),
            host: pool.host_cap(),
        })
    }

    /// The connection permits of one exchange.
    pub(super) async fn acquire(&self) -> Result<Permits, ProviderError> {
        self.pool.acquire(&self.host).await
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Parses `base_url` (trailing slashes dropped) and refuses anything but
/// an http(s) URL.
fn check_base_url(base_url: &str) -> Result<&str, ProviderError> {
    let base = base_url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(base).map_err(|e| ProviderError::BadBaseUrl {
        url: base_url.to_string(),
        reason: Some(e),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProviderError::BadBaseUrl {
            url: base_url.to_string(),
            reason: None,
        });
    }
    Ok(base)
}

/// Reads the key from the variable `var` names through `env`: `None`
/// without a variable, [`ProviderError::MissingKey`] if it is unset or
/// blank.
fn read_key(var: Option<&String>, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ProviderError> {
    match var {
        None => Ok(None),
        Some(var) => env(var)
            .filter(|k| !k.trim().is_empty())
            .map(Some)
            .ok_or_else(|| ProviderError::MissingKey { var: var.clone() }),
    }
}

/// A transport failure as a typed error (`timeout` is the one that
/// applied).
pub(super) fn transport_error(e: reqwest::Error, timeout: Duration) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout(timeout)
    } else if e.is_decode() || e.is_body() {
        ProviderError::Malformed(format!("body: {e}"))
    } else {
        ProviderError::Connect(Cause::new(e))
    }
}

/// At most 200 bytes of `text` (cut on a character boundary), for error
/// messages.
pub(super) fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A header's value, trimmed; `None` if absent or not text.
pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A header's value as a whole number; `None` if absent or not one.
pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// The retry-after of a reply: `retry-after-ms`, else `retry-after` in
/// (possibly fractional) seconds. HTTP dates are not used (clocks differ).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return secs_checked(ms / 1000.0);
    }
    header_str(headers, "retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(secs_checked)
}

/// `s` seconds as a duration, if finite and between 0 and a day.
pub(super) fn secs_checked(s: f64) -> Option<Duration> {
    (s.is_finite() && (0.0..=86_400.0).contains(&s)).then(|| Duration::from_secs_f64(s))
}
