//! The GitHub REST client the forge talks through: octocrab for HTTP, TLS and
//! authentication, on a current-thread tokio runtime of its own (the tick is
//! synchronous; each call blocks until GitHub answers). What converge adds:
//!
//! - **Conditional requests.** Every GET is remembered with its `ETag` in
//!   `<git-common-dir>/converge/forge/cache.json` and sent again with
//!   `If-None-Match`: a `304` (which GitHub does not count against the rate
//!   limit) is answered from the cache. The cache is on disk because a tick
//!   is often a process of its own (cron, CI).
//! - **Rate limits never fail a tick.** A primary limit (`x-ratelimit-remaining:
//!   0`), a secondary one (403/429 with `retry-after`, or GitHub's "secondary
//!   rate limit" message) or a `5xx` cools the forge down until a wake time
//!   (`retry-after`, the reset, else at least 60 s doubling per strike),
//!   noted in `limits.json`; until then no request is sent and every call
//!   answers [`ClientError::Cooling`].
//! - **One request at a time**, and a log of them (method, path, status) for
//!   the tick's report and the tests.
//!
//! octocrab's own retry layer is off: it would sleep inside the tick.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Entries the conditional-request cache keeps (least recently used go first).
const CACHE_ENTRIES: usize = 2000;

/// The shortest cooldown after a secondary rate limit without `retry-after`.
const MIN_COOLDOWN: Duration = Duration::from_secs(60);

/// The longest cooldown converge waits on its own reckoning.
const MAX_COOLDOWN: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("github is cooling down until {until}: {why}")]
    Cooling { until: Timestamp, why: String },
    #[error("github rejected the token ({method} {path}: {message})")]
    Unauthorized {
        method: &'static str,
        path: String,
        message: String,
    },
    #[error("github answered {status} to {method} {path}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach github ({method} {path})")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: Box<octocrab::Error>,
    },
    #[error("cannot read github's answer to {method} {path}")]
    Decode {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot start the github client")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request as sent, for the report and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
}

/// An answer: its status and body (a `304` carries the cached body).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
    ) -> Result<T, ClientError> {
        serde_json::from_str(&self.body).map_err(|source| ClientError::Decode {
            method,
            path: path.to_owned(),
            source,
        })
    }

    /// The reply when GitHub did what was asked (a 2xx), else the error
    /// with GitHub's message (a 403 names the permission the token lacks).
    pub fn ok(self, method: &'static str, path: &str) -> Result<Reply, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        Err(self.error(method, path))
    }

    /// This answer as the error of `method` on `path`, with GitHub's message.
    pub fn error(&self, method: &'static str, path: &str) -> ClientError {
        ClientError::Api {
            method,
            path: path.to_owned(),
            status: self.status,
            message: self.message(),
        }
    }

    /// GitHub's `message` in an error body, else the body's start.
    pub fn message(&self) -> String {
        #[derive(Deserialize)]
        struct Message {
            message: String,
            #[serde(default)]
            errors: Vec<serde_json::Value>,
        }
        match serde_json::from_str::<Message>(&self.body) {
            Ok(m) => {
                let details: Vec<String> = m
                    .errors
                    .iter()
                    .filter_map(|e| e.get("message").and_then(|v| v.as_str()).map(str::to_owned))
                    .collect();
                if details.is_empty() {
                    m.message
                } else {
                    format!("{}: {}", m.message, details.join("; "))
                }
            }
            Err(_) => self.body.chars().take(200).collect(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    entries: BTreeMap<String, Entry>,
    #[serde(default)]
    clock: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    etag: String,
    body: String,
    used: u64,
}

/// The forge's rate-limit state, kept between ticks.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// No request before this time.
    pub until: Option<Timestamp>,
    pub why: String,
    /// Cooldowns in a row without a successful request between them.
    pub strikes: u32,
    /// The primary limit left, as GitHub last said.
    pub remaining: Option<u64>,
}

pub struct Client {
    rt: tokio::runtime::Runtime,
    octo: octocrab::Octocrab,
    /// `{api_url}/repos/{owner}/{name}`.
    repo_url: String,
    api_url: String,
    dir: PathBuf,
    now: Timestamp,
    cache: RefCell<Cache>,
    cache_changed: RefCell<bool>,
    limits: RefCell<Limits>,
    log: RefCell<Vec<Sent>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("repo_url", &self.repo_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Method {
    fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl Client {
    /// A client for `repo` (`owner/name`) at `api_url`, keeping its state in
    /// `dir`, at `now`.
    pub fn new(
        api_url: &str,
        repo: &str,
        token: &str,
        dir: PathBuf,
        now: Timestamp,
    ) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Start(Box::new(e)))?;
        let octo = {
            let _entered = rt.enter();
            octocrab::Octocrab::builder()
                .base_uri(api_url)
                .map_err(|e| ClientError::Start(Box::new(e)))?
                .personal_token(token.to_owned())
                .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
                .set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .add_header(
                    http::header::HeaderName::from_static("x-github-api-version"),
                    "2022-11-28".to_owned(),
                )
                .build()
                .map_err(|e| ClientError::Start(Box::new(e)))?
        };
        let cache = super::state::read_json::<Cache>(&dir.join("cache.json")).unwrap_or_default();
        let limits =
            super::state::read_json::<Limits>(&dir.join("limits.json")).unwrap_or_default();
        Ok(Client {
            rt,
            octo,
            repo_url: format!("{api_url}/repos/{repo}"),
            api_url: api_url.to_owned(),
            dir,
            now,
            cache: RefCell::new(cache),
            cache_changed: RefCell::new(false),
            limits: RefCell::new(limits),
            log: RefCell::new(Vec::new()),
        })
    }

    /// The requests sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.log.borrow().clone()
    }

    pub fn limits(&self) -> Limits {
        self.limits.borrow().clone()
    }

    /// A GET under the repository (`path` starts with `/`), conditional on
    /// what the cache holds; decoded into `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        self.get_url(&url, path)
    }

    /// A GET of a path under the API's root (such as `/user`).
    pub fn get_root<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.api_url);
        self.get_url(&url, path)
    }

    /// A GET that may answer 404 (`None`).
    pub fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        let reply = self.send(Method::Get, &url, path, None)?;
        match reply.status {
            200 | 304 => reply.json("GET", path).map(Some),
            404 => Ok(None),
            _ => Err(reply.error("GET", path)),
        }
    }

    fn get_url<T: DeserializeOwned>(&self, url: &str, path: &str) -> Result<T, ClientError> {
        let reply = self.send(Method::Get, url, path, None)?;
        match reply.status {
            200 | 304 => reply.json("GET", path),
            _ => Err(reply.error("GET", path)),
        }
    }

    /// A write under the repository; the reply whatever its status (the
    /// caller reads 405, 409, 422), except those [`Self::send`] turns into
    /// errors.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        self.send(Method::Post, &url, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &serde_json::Value) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        self.send(Method::Patch, &url, path, Some(body))
    }

    pub fn put(&self, path: &str, body: &serde_json::Value) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        self.send(Method::Put, &url, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.repo_url);
        self.send(Method::Delete, &url, path, None)
    }

    /// Sends one request. Refused while cooling down; a rate limit, a
    /// `5xx` or a failed connection starts a cooldown; a 401 is an error.
    fn send(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        let m = method.as_str();
        {
            let limits = self.limits.borrow();
            if let Some(until) = limits.until.filter(|u| *u > self.now) {
                return Err(ClientError::Cooling {
                    until,
                    why: limits.why.clone(),
                });
            }
        }
        let (status, headers, text) = match self.exchange(method, url, body) {
            Ok(answer) => answer,
            Err(source) => {
                self.log.borrow_mut().push(Sent {
                    method: m,
                    path: path.to_owned(),
                    status: 0,
                });
                let why = format!("{m} {path} failed: {}", crate::check::error_chain(&source));
                self.cool_down(None, why);
                return Err(ClientError::Transport {
                    method: m,
                    path: path.to_owned(),
                    source: Box::new(source),
                });
            }
        };
        self.log.borrow_mut().push(Sent {
            method: m,
            path: path.to_owned(),
            status,
        });
        tracing::debug!(method = m, path, status, "github");
        let remaining = header_u64(&headers, "x-ratelimit-remaining");
        if let Some(remaining) = remaining {
            self.limits.borrow_mut().remaining = Some(remaining);
            // `converge watch`'s gauge (a process-wide value; nothing else reads it).
            crate::daemon::http::report_forge_rate_limit(remaining);
        }
        let reply = Reply { status, body: text };
        if let Some((until, why)) = self.rate_limited(&headers, &reply, remaining) {
            self.cool_down(until, format!("{why} ({m} {path})"));
            return Err(self.cooling());
        }
        if status >= 500 {
            self.cool_down(None, format!("github answered {status} to {m} {path}"));
            return Err(self.cooling());
        }
        if status == 401 {
            return Err(ClientError::Unauthorized {
                method: m,
                path: path.to_owned(),
                message: reply.message(),
            });
        }
        self.settle_limits(&headers, remaining, status, m, path);
        if matches!(method, Method::Get) {
            return Ok(self.remember(url, status, &headers, reply));
        }
        Ok(reply)
    }

    /// The request on the wire: a GET carries the cached ETag; the answer's
    /// status, headers and body.
    fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, HeaderMap, String), octocrab::Error> {
        let cached_etag = match method {
            Method::Get => self.cache.borrow().entries.get(url).map(|e| e.etag.clone()),
            _ => None,
        };
        self.rt.block_on(async {
            let response = match method {
                Method::Get => {
                    let mut headers = HeaderMap::new();
                    if let Some(etag) = cached_etag
                        .as_deref()
                        .and_then(|e| HeaderValue::from_str(e).ok())
                    {
                        headers.insert(http::header::IF_NONE_MATCH, etag);
                    }
                    self.octo._get_with_headers(url, Some(headers)).await
                }
                Method::Post => self.octo._post(url, body).await,
                Method::Patch => self.octo._patch(url, body).await,
                Method::Put => self.octo._put(url, body).await,
                Method::Delete => self.octo._delete(url, None::<&()>).await,
            }?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = self.octo.body_to_string(response).await?;
            Ok((status, headers, text))
        })
    }

    /// The cooldown just started, as the error the request answers with.
    fn cooling(&self) -> ClientError {
        let limits = self.limits.borrow();
        ClientError::Cooling {
            until: limits.until.unwrap_or(self.now),
            why: limits.why.clone(),
        }
    }

    /// After a good answer: one that spent the primary limit's last request
    /// holds everything back until it resets (the answer itself is good; a
    /// 304 spends none, whatever the header says); any other clears the
    /// strikes of earlier failures.
    fn settle_limits(
        &self,
        headers: &HeaderMap,
        remaining: Option<u64>,
        status: u16,
        m: &str,
        path: &str,
    ) {
        let reset = header_u64(headers, "x-ratelimit-reset")
            .and_then(|r| i64::try_from(r).ok())
            .map(Timestamp::from_unix)
            .filter(|r| *r > self.now);
        let spent = remaining == Some(0) && status != 304 && reset.is_some();
        let mut limits = self.limits.borrow_mut();
        if spent {
            limits.until = reset;
            limits.why = format!("github's rate limit is spent ({m} {path} took the last request)");
            drop(limits);
            self.save_limits();
        } else if limits.strikes != 0 || limits.until.is_some() {
            limits.strikes = 0;
            limits.until = None;
            limits.why.clear();
            drop(limits);
            self.save_limits();
        }
    }

    /// 304: the cached body; 200 with an ETag: remembered.
    fn remember(&self, url: &str, status: u16, headers: &HeaderMap, reply: Reply) -> Reply {
        let mut cache = self.cache.borrow_mut();
        cache.clock += 1;
        let clock = cache.clock;
        if status == 304 {
            if let Some(entry) = cache.entries.get_mut(url) {
                entry.used = clock;
                *self.cache_changed.borrow_mut() = true;
                return Reply {
                    status: 304,
                    body: entry.body.clone(),
                };
            }
            return reply;
        }
        if status == 200
            && let Some(etag) = headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
        {
            cache.entries.insert(
                url.to_owned(),
                Entry {
                    etag: etag.to_owned(),
                    body: reply.body.clone(),
                    used: clock,
                },
            );
            if cache.entries.len() > CACHE_ENTRIES {
                let mut by_use: Vec<(u64, String)> = cache
                    .entries
                    .iter()
                    .map(|(k, e)| (e.used, k.clone()))
                    .collect();
                by_use.sort();
                let excess = cache.entries.len() - CACHE_ENTRIES;
                for (_, key) in by_use.into_iter().take(excess) {
                    cache.entries.remove(&key);
                }
            }
            *self.cache_changed.borrow_mut() = true;
        }
        reply
    }

    /// A rate limit in this answer: until when (if GitHub says) and why.
    fn rate_limited(
        &self,
        headers: &HeaderMap,
        reply: &Reply,
        remaining: Option<u64>,
    ) -> Option<(Option<Timestamp>, String)> {
        if !matches!(reply.status, 403 | 429) {
            return None;
        }
        let message = reply.message();
        if let Some(after) = header_u64(headers, "retry-after") {
            return Some((
                Some(self.now.plus(Duration::from_secs(after.max(1)))),
                format!("rate limited by github for {after}s: {message}"),
            ));
        }
        if remaining == Some(0) {
            let reset = header_u64(headers, "x-ratelimit-reset")
                .and_then(|r| i64::try_from(r).ok())
                .map(Timestamp::from_unix)
                .filter(|r| *r > self.now);
            return Some((reset, format!("github's rate limit is spent: {message}")));
        }
        let lower = message.to_ascii_lowercase();
        if reply.status == 429 || lower.contains("secondary rate limit") || lower.contains("abuse")
        {
            return Some((None, format!("github's secondary rate limit: {message}")));
        }
        None
    }

    /// Cools down until `until`, else at least a minute doubling per strike.
    fn cool_down(&self, until: Option<Timestamp>, why: String) {
        {
            let mut limits = self.limits.borrow_mut();
            let backoff = MIN_COOLDOWN
                .saturating_mul(1u32 << limits.strikes.min(6))
                .min(MAX_COOLDOWN);
            let at_least = self.now.plus(backoff);
            limits.until =
                Some(until.map_or(at_least, |u| u.max(self.now.plus(Duration::from_secs(1)))));
            limits.strikes = limits.strikes.saturating_add(1);
            tracing::warn!(%why, until = %limits.until.unwrap_or(self.now), "github cooling down");
            limits.why = why;
        }
        self.save_limits();
    }

    fn save_limits(&self) {
        let limits = self.limits.borrow();
        super::state::write_json(&self.dir.join("limits.json"), &*limits);
    }

    /// Writes the cache back if it changed (a cache: a failure only costs
    /// requests, and is logged).
    pub fn save(&self) {
        if *self.cache_changed.borrow() {
            super::state::write_json(&self.dir.join("cache.json"), &*self.cache.borrow());
            *self.cache_changed.borrow_mut() = false;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.save();
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}
