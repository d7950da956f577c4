//! The fake GitHub's server and the handle tests hold: an axum server on its
//! own tokio runtime in a background thread, bound to 127.0.0.1:0, in front of
//! a [`State`] behind one Mutex. Here live the cross-cutting rules every
//! answer follows: the token, injected faults, the primary rate limit and its
//! headers, ETags and `304 Not Modified`, and the request log.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, Response, Uri};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::json;
use super::model::{
    CheckRun, Fault, Injection, Logged, Pr, Protection, Review, ReviewComment, State, Status,
};
use super::routes::{Reply, Request, decode, dispatch, parse_query};

type Shared = Arc<Mutex<State>>;

/// A review a test adds (as a person would submit it).
#[derive(Debug, Clone)]
pub struct ReviewSpec {
    pub user: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED.
    pub state: String,
    pub body: String,
    /// The head the review is bound to.
    pub commit_id: String,
    /// OWNER, MEMBER, COLLABORATOR (writers), CONTRIBUTOR or NONE.
    pub association: String,
}

/// A running fake GitHub for one repository; stops when dropped.
#[derive(Debug)]
pub struct FakeGitHub {
    state: Shared,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl FakeGitHub {
    /// `acme/widgets` with default branch `main` (one commit), token
    /// `fake-token`, user `converge-bot`.
    pub fn start() -> Self {
        Self::with_repo("acme", "widgets", "main")
    }

    pub fn with_repo(owner: &str, repo: &str, default_branch: &str) -> Self {
        let mut state = State::new(owner, repo, default_branch);
        state.rate.reset = epoch_now() + 3600;
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let app = axum::Router::new().fallback(answer).with_state(shared);
                tokio::select! {
                    served = axum::serve(listener, app).into_future() => served.expect("serve"),
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        });
        let addr = addr_rx.recv().expect("the server starts");
        state.lock().expect("state").api_url = format!("http://{addr}");
        FakeGitHub {
            state,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    /// The API base URL (`[forge] api_url`, octocrab's `base_uri`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bare repository: the git remote converge pushes to.
    pub fn remote_path(&self) -> PathBuf {
        self.st().git.path_buf()
    }

    pub fn owner(&self) -> String {
        self.st().owner.clone()
    }

    pub fn repo(&self) -> String {
        self.st().repo.clone()
    }

    /// The token requests must carry (`Bearer` or `token`).
    pub fn token(&self) -> String {
        self.st().token.clone()
    }

    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.st().token);
    }

    /// The token's user (`GET /user`, author of PRs, issues, comments, statuses).
    pub fn set_login(&self, login: &str) {
        login.clone_into(&mut self.st().login);
    }

    /// Runs git in the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        self.st().git.git(args)
    }

    pub fn branch_sha(&self, branch: &str) -> Option<String> {
        self.st().git.branch_sha(branch)
    }

    /// A person (not converge) commits `file` = `content` on `branch`; the new sha.
    pub fn push_as_person(&self, branch: &str, file: &str, content: &str) -> String {
        self.st()
            .git
            .commit_as_person(branch, file, content, "A person's change")
    }

    /// At the next merge call on `pr`, a person pushes to its head first (so
    /// a merge with the gated `sha` answers 409).
    pub fn move_head_before_merge(&self, pr: u64) {
        self.st().move_head_on_merge.push(pr);
    }

    /// Branch protection for `branch` (replaces any).
    pub fn protect(&self, branch: &str, protection: Protection) {
        self.st().protection.insert(branch.to_owned(), protection);
    }

    /// Requires status checks `contexts` on `branch` (keeps its review rule).
    /// A context no run or status ever reports is "a required check that never reports".
    pub fn require_checks(&self, branch: &str, contexts: &[&str]) {
        let mut st = self.st();
        let p = st.protection.entry(branch.to_owned()).or_default();
        p.contexts = contexts.iter().map(|c| (*c).to_owned()).collect();
    }

    /// A ruleset on `branch` requiring status checks `contexts` and, with
    /// `approvals`, that many approving reviews (replaces any).
    pub fn ruleset(&self, branch: &str, contexts: &[&str], approvals: Option<u32>) {
        let rules = Protection {
            contexts: contexts.iter().map(|c| (*c).to_owned()).collect(),
            approvals,
            ..Protection::default()
        };
        self.st().rulesets.insert(branch.to_owned(), rules);
    }

    /// Requires `count` approving reviews from writers on `branch`.
    pub fn require_reviews(&self, branch: &str, count: u32, dismiss_stale_reviews: bool) {
        let mut st = self.st();
        let p = st.protection.entry(branch.to_owned()).or_default();
        p.approvals = Some(count);
        p.dismiss_stale_reviews = dismiss_stale_reviews;
    }

    /// A check run on `sha` (`status` queued | in_progress | completed); its id.
    pub fn add_check_run(
        &self,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) -> u64 {
        let mut st = self.st();
        let id = st.id();
        let now = st.now();
        let completed_at = conclusion.map(|_| now.clone());
        st.check_runs.push(CheckRun {
            id,
            sha: sha.to_owned(),
            name: name.to_owned(),
            status: status.to_owned(),
            conclusion: conclusion.map(str::to_owned),
            started_at: now,
            completed_at,
        });
        id
    }

    /// Completes check run `id` with `conclusion`.
    pub fn complete_check_run(&self, id: u64, conclusion: &str) {
        let mut st = self.st();
        let now = st.now();
        let run = st
            .check_runs
            .iter_mut()
            .find(|r| r.id == id)
            .expect("check run exists");
        run.status = "completed".to_owned();
        run.conclusion = Some(conclusion.to_owned());
        run.completed_at = Some(now);
    }

    /// A commit status on `sha` set by `ci-bot` (state error | failure | pending | success).
    pub fn add_status(&self, sha: &str, context: &str, state: &str) -> u64 {
        let mut st = self.st();
        let id = st.id();
        let created_at = st.now();
        st.statuses.push(Status {
            id,
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state.to_owned(),
            description: None,
            target_url: None,
            creator: "ci-bot".to_owned(),
            created_at,
        });
        id
    }

    /// A review of `pr`; its id.
    pub fn add_review(&self, pr: u64, spec: ReviewSpec) -> u64 {
        let mut st = self.st();
        let id = st.id();
        let submitted_at = st.now();
        // As on GitHub, a review touches its pull request's `updated_at`.
        if let Some(p) = st.prs.get_mut(&pr) {
            p.updated_at = submitted_at.clone();
        }
        st.reviews.push(Review {
            id,
            pr,
            user: spec.user,
            state: spec.state,
            body: spec.body,
            commit_id: spec.commit_id,
            association: spec.association,
            submitted_at,
        });
        id
    }

    /// An APPROVED review of `commit_id` by collaborator `user`.
    pub fn approve(&self, pr: u64, user: &str, commit_id: &str) -> u64 {
        self.add_review(
            pr,
            ReviewSpec {
                user: user.to_owned(),
                state: "APPROVED".to_owned(),
                body: String::new(),
                commit_id: commit_id.to_owned(),
                association: "COLLABORATOR".to_owned(),
            },
        )
    }

    /// A line comment belonging to review `review_id` (its author and commit).
    pub fn add_review_comment(
        &self,
        pr: u64,
        review_id: u64,
        path: &str,
        line: u64,
        body: &str,
    ) -> u64 {
        let mut st = self.st();
        let review = st
            .reviews
            .iter()
            .find(|r| r.id == review_id)
            .expect("review exists")
            .clone();
        let id = st.id();
        let created_at = st.now();
        if let Some(p) = st.prs.get_mut(&pr) {
            p.updated_at = created_at.clone();
        }
        st.review_comments.push(ReviewComment {
            id,
            pr,
            review_id,
            path: path.to_owned(),
            line,
            body: body.to_owned(),
            commit_id: review.commit_id,
            user: review.user,
            association: review.association,
            created_at,
        });
        id
    }

    /// The next `times` requests with `method` (any if None) whose path starts
    /// with `prefix` (the full path, or the part below `/repos/{owner}/{repo}`,
    /// e.g. `/pulls`) answer `fault`.
    pub fn inject(&self, method: Option<&str>, prefix: &str, times: usize, fault: Fault) {
        self.st().injections.push(Injection {
            method: method.map(str::to_owned),
            prefix: prefix.to_owned(),
            remaining: times,
            fault,
        });
    }

    /// The primary rate limit: at `remaining` 0 every request answers 403.
    pub fn set_rate_limit(&self, limit: u64, remaining: u64, reset_epoch: u64) {
        let mut st = self.st();
        st.rate.limit = limit;
        st.rate.remaining = remaining;
        st.rate.reset = reset_epoch;
    }

    /// Remaining requests of the primary limit.
    pub fn rate_remaining(&self) -> u64 {
        self.st().rate.remaining
    }

    /// Every request so far: (method, path and query, status).
    pub fn requests(&self) -> Vec<Logged> {
        self.st().log.clone()
    }

    /// A mark in the request log (e.g. before a tick), for [`Self::requests_since`].
    pub fn mark(&self) -> usize {
        self.st().log.len()
    }

    pub fn requests_since(&self, mark: usize) -> Vec<Logged> {
        self.st().log[mark..].to_vec()
    }

    /// How many times `pr` was merged (more than 1 would be a bug of the fake).
    pub fn merges(&self, pr: u64) -> usize {
        self.st().merges.get(&pr).copied().unwrap_or(0)
    }

    pub fn total_merges(&self) -> usize {
        self.st().merges.values().sum()
    }

    pub fn pr(&self, number: u64) -> Option<Pr> {
        self.st().prs.get(&number).cloned()
    }

    pub fn prs(&self) -> Vec<Pr> {
        self.st().prs.values().cloned().collect()
    }

    /// The bodies of the comments on issue or PR `number`.
    pub fn comments(&self, number: u64) -> Vec<String> {
        self.st()
            .comments
            .iter()
            .filter(|c| c.issue == number)
            .map(|c| c.body.clone())
            .collect()
    }

    /// The commit statuses set on `sha`, oldest first.
    pub fn statuses(&self, sha: &str) -> Vec<Status> {
        self.st()
            .statuses
            .iter()
            .filter(|s| s.sha == sha)
            .cloned()
            .collect()
    }

    /// The names of the check runs on `sha`.
    pub fn check_runs(&self, sha: &str) -> Vec<String> {
        self.st()
            .check_runs
            .iter()
            .filter(|r| r.sha == sha)
            .map(|r| r.name.clone())
            .collect()
    }

    /// Anything else: a closure on the whole state.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.st())
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(
    AxState(shared): AxState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    tokio::task::spawn_blocking(move || {
        let mut st = shared.lock().expect("fake state");
        respond(&mut st, &method, &uri, &headers, &body)
    })
    .await
    .expect("handler thread")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The cross-cutting rules around [`dispatch`].
fn respond(
    st: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let authorization = header(headers, "authorization").unwrap_or_default();
    let authorized = [
        format!("Bearer {}", st.token),
        format!("token {}", st.token),
    ]
    .contains(&authorization.to_owned());
    let mut reply = if !authorized {
        Reply::json(
            401,
            json::error("Bad credentials", "overview/authenticating-to-the-rest-api"),
        )
    } else if let Some(fault) = st.take_fault(method.as_str(), uri.path()) {
        fault_reply(fault)
    } else if st.rate.remaining == 0 {
        fault_reply(Fault::PrimaryExhausted)
    } else {
        let request = Request {
            method: method.as_str(),
            segments: uri
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| decode(s, false))
                .collect(),
            query: uri.query().map(parse_query).unwrap_or_default(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        let mut reply = dispatch(st, &request);
        let counts = if method == Method::GET && reply.status == 200 {
            let text = reply
                .body
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let etag = format!(
                "W/\"{:x}\"",
                Sha256::digest(format!("{}\n{text}", st.token))
            );
            let matched = header(headers, "if-none-match")
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
            reply.headers.push(("etag".into(), etag));
            if matched {
                reply.status = 304;
                reply.body = None;
            }
            !matched
        } else {
            true
        };
        if counts {
            st.rate.remaining -= 1;
        }
        reply
    };
    let used = st.rate.limit.saturating_sub(st.rate.remaining);
    for (name, value) in [
        ("x-ratelimit-limit", st.rate.limit.to_string()),
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-reset", st.rate.reset.to_string()),
        ("x-ratelimit-resource", "core".to_owned()),
        ("x-github-api-version-selected", "2022-11-28".to_owned()),
        ("x-github-request-id", format!("FAKE:{}", st.log.len() + 1)),
    ] {
        reply.headers.push((name.to_owned(), value));
    }
    if !reply
        .headers
        .iter()
        .any(|(n, _)| n == "x-ratelimit-remaining")
    {
        reply.headers.push((
            "x-ratelimit-remaining".into(),
            st.rate.remaining.to_string(),
        ));
    }
    st.log.push(Logged {
        method: method.to_string(),
        path: path_and_query,
        status: reply.status,
    });
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    let body = match reply.body {
        Some(Value::String(text)) => {
            response = response.header("content-type", "text/html; charset=utf-8");
            Body::from(text)
        }
        Some(value) => {
            response = response.header("content-type", "application/json; charset=utf-8");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    response.body(body).expect("a valid response")
}

fn fault_reply(fault: Fault) -> Reply {
    let limits = "overview/rate-limits-for-the-rest-api";
    match fault {
        Fault::BadGateway => Reply {
            status: 502,
            body: Some(Value::String("<h1>Server Error</h1>\n".into())),
            headers: Vec::new(),
        },
        Fault::SecondaryRateLimit { retry_after } => {
            let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
                           If you reach out to GitHub Support for help, please include the request ID FAKE.";
            let mut reply = Reply::json(
                403,
                json::error(message, &format!("{limits}#about-secondary-rate-limits")),
            );
            if let Some(secs) = retry_after {
                reply.headers.push(("retry-after".into(), secs.to_string()));
            }
            reply
        }
        Fault::TooManyRequests { retry_after } => {
            let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
            let mut reply = Reply::json(
                429,
                json::error(message, &format!("{limits}#about-secondary-rate-limits")),
            );
            reply
                .headers
                .push(("retry-after".into(), retry_after.to_string()));
            reply
        }
        Fault::Forbidden => Reply::json(
            403,
            json::error(
                "Resource not accessible by integration",
                "rest/branches/branch-protection#get-status-checks-protection",
            ),
        ),
        Fault::PrimaryExhausted => {
            let message = "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, \
                           please include the request ID FAKE.";
            let mut reply = Reply::json(
                403,
                json::error(message, &format!("{limits}#about-the-primary-rate-limit")),
            );
            reply
                .headers
                .push(("x-ratelimit-remaining".into(), "0".into()));
            reply
        }
    }
}
