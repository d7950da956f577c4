//! The REST calls converge's GitHub forge makes (listed in `mod.rs`): a
//! dispatcher from (method, path segments) to handlers that read and change
//! the [`State`]. Cross-cutting behaviour (auth, faults, rate
//! limit headers, ETags, the log) lives in `fake.rs`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::git::MergeMethod;
use super::issues;
use super::json;
use super::model::{Pr, State, Status};

/// An answer before the cross-cutting headers are added.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, message: &str, doc: &str) -> Self {
        Self::json(status, json::error(message, doc))
    }

    pub fn not_found() -> Self {
        Self::error(404, "Not Found", "")
    }
}

/// A request as the dispatcher sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

impl Request<'_> {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }
}

/// Percent-decodes a URL component (`+` stays `+` in paths; queries pass `plus`).
pub fn decode(text: &str, plus: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

/// Answers a request (404 for a route the fake does not know).
pub fn dispatch(st: &mut State, req: &Request) -> Reply {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method;
    if segs == ["user"] && m == "GET" {
        let mut user = json::user(st, &st.login);
        user["type"] = json!(if st.login.ends_with("[bot]") {
            "Bot"
        } else {
            "User"
        });
        return Reply::json(200, user);
    }
    let repo_ok =
        segs.len() >= 3 && segs[0] == "repos" && segs[1] == st.owner && segs[2] == st.repo;
    if !repo_ok {
        return Reply::not_found();
    }
    let num = |s: &str| s.parse::<u64>().ok();
    match (m, &segs[3..]) {
        ("GET", ["pulls"]) => list_pulls(st, req),
        ("POST", ["pulls"]) => create_pull(st, req),
        ("GET", ["pulls", n]) => with_pr(st, num(n), |st, n| {
            st.refresh_head(n);
            Reply::json(200, json::pull_request(st, &st.prs[&n], true))
        }),
        ("PATCH", ["pulls", n]) => with_pr(st, num(n), |st, n| update_pull(st, n, req)),
        ("PUT", ["pulls", n, "merge"]) => with_pr(st, num(n), |st, n| merge(st, n, req)),
        ("GET", ["pulls", n, "reviews"]) => with_pr(st, num(n), |st, n| {
            let items = st
                .reviews
                .iter()
                .filter(|r| r.pr == n)
                .map(|r| json::review(st, r))
                .collect();
            page(st, req, items)
        }),
        ("GET", ["pulls", n, "comments"]) => with_pr(st, num(n), |st, n| {
            let items = st
                .review_comments
                .iter()
                .filter(|c| c.pr == n)
                .map(|c| json::review_comment(st, c))
                .collect();
            page(st, req, items)
        }),
        ("GET", ["commits", reference @ .., "check-runs"]) if !reference.is_empty() => {
            let sha = resolve(st, &reference.join("/"));
            let runs: Vec<_> = st.check_runs.iter().filter(|r| r.sha == sha).collect();
            Reply::json(200, json::check_runs(st, &runs))
        }
        ("GET", ["commits", reference @ .., "status"]) if !reference.is_empty() => {
            let sha = resolve(st, &reference.join("/"));
            Reply::json(200, json::combined_status(st, &sha))
        }
        ("POST", ["statuses", sha]) => create_status(st, sha, req),
        ("GET", ["branches", rest @ ..]) => protection(st, rest),
        ("GET", ["rules", "branches", rest @ ..]) if !rest.is_empty() => {
            branch_rules(st, &rest.join("/"))
        }
        ("DELETE", ["git", "refs", "heads", rest @ ..]) if !rest.is_empty() => {
            if st.git.delete_branch(&rest.join("/")) {
                Reply::empty(204)
            } else {
                Reply::json(
                    422,
                    json::error("Reference does not exist", "git/refs#delete-a-reference"),
                )
            }
        }
        ("GET", ["issues"]) => issues::list_issues(st, req),
        ("POST", ["issues"]) => issues::create_issue(st, req),
        ("PATCH", ["issues", n]) => issues::update_issue(st, num(n), req),
        ("POST", ["issues", n, "labels"]) => issues::add_labels(st, num(n), req),
        ("POST", ["issues", n, "comments"]) => issues::add_comment(st, num(n), req),
        _ => Reply::not_found(),
    }
}

fn with_pr(st: &mut State, n: Option<u64>, f: impl FnOnce(&mut State, u64) -> Reply) -> Reply {
    match n {
        Some(n) if st.prs.contains_key(&n) => f(st, n),
        _ => Reply::not_found(),
    }
}

/// A sha, `heads/<branch>` or branch name to a sha (unknown names stay as they are).
fn resolve(st: &State, reference: &str) -> String {
    let branch = reference.strip_prefix("heads/").unwrap_or(reference);
    st.git
        .branch_sha(branch)
        .unwrap_or_else(|| reference.to_owned())
}

/// One page of `items` (`per_page` ≤ 100, default 30; `page` from 1) with
/// GitHub's `Link` header when there are more.
pub fn page(st: &State, req: &Request, items: Vec<Value>) -> Reply {
    let per_page = req
        .param("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let number = req
        .param("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((number - 1) * per_page)
        .take(per_page)
        .collect();
    let mut reply = Reply::json(200, Value::Array(slice));
    if last > 1 {
        let path = format!("{}/{}", st.api_url, req.segments.join("/"));
        let link = |p: usize, rel: &str| {
            let mut query = req.query.clone();
            query.insert("page".into(), p.to_string());
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("<{path}?{}>; rel=\"{rel}\"", q.join("&"))
        };
        let mut links = Vec::new();
        if number > 1 {
            links.push(link(number - 1, "prev"));
            links.push(link(1, "first"));
        }
        if number < last {
            links.push(link(number + 1, "next"));
            links.push(link(last, "last"));
        }
        reply.headers.push(("link".into(), links.join(", ")));
    }
    reply
}

fn list_pulls(st: &mut State, req: &Request) -> Reply {
    let numbers: Vec<u64> = st.prs.keys().copied().collect();
    for n in numbers {
        st.refresh_head(n);
    }
    let state = req.param("state").unwrap_or("open");
    let head = req
        .param("head")
        .map(|h| h.split_once(':').map_or(h, |(_, b)| b).to_owned());
    let mut prs: Vec<&Pr> = st
        .prs
        .values()
        .filter(|p| match state {
            "open" => p.open,
            "closed" => !p.open,
            _ => true,
        })
        .filter(|p| req.param("base").is_none_or(|b| b == p.base))
        .filter(|p| head.as_deref().is_none_or(|h| h == p.head))
        .collect();
    if req.param("sort") == Some("updated") {
        prs.sort_by(|a, b| {
            a.updated_at
                .cmp(&b.updated_at)
                .then(a.number.cmp(&b.number))
        });
    }
    if req.param("direction").unwrap_or("desc") == "desc" {
        prs.reverse();
    }
    let items = prs
        .iter()
        .map(|p| json::pull_request(st, p, false))
        .collect();
    page(st, req, items)
}

fn create_pull(st: &mut State, req: &Request) -> Reply {
    let doc = "pulls/pulls#create-a-pull-request";
    let (Some(title), Some(head), Some(base)) = (
        req.str_field("title"),
        req.str_field("head"),
        req.str_field("base"),
    ) else {
        return Reply::json(
            422,
            json::validation_failed("title, head and base are required", doc),
        );
    };
    let branch = head.split_once(':').map_or(head, |(_, b)| b).to_owned();
    let Some(head_sha) = st.git.branch_sha(&branch) else {
        return Reply::json(
            422,
            json::validation_failed(&format!("head \"{head}\" does not exist"), doc),
        );
    };
    let Some(base_sha) = st.git.branch_sha(base) else {
        return Reply::json(
            422,
            json::validation_failed(&format!("base \"{base}\" does not exist"), doc),
        );
    };
    if st.prs.values().any(|p| p.open && p.head == branch) {
        let message = format!("A pull request already exists for {}:{branch}.", st.owner);
        return Reply::json(422, json::validation_failed(&message, doc));
    }
    if st.git.is_ancestor(&head_sha, &base_sha) {
        return Reply::json(
            422,
            json::validation_failed(&format!("No commits between {base} and {branch}"), doc),
        );
    }
    let number = st.number();
    let now = st.now();
    let pr = Pr {
        number,
        title: title.to_owned(),
        body: req.str_field("body").map(str::to_owned),
        head: branch,
        base: base.to_owned(),
        open: true,
        draft: req
            .body
            .get("draft")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        user: st.login.clone(),
        labels: Vec::new(),
        head_sha,
        merged: None,
        created_at: now.clone(),
        updated_at: now,
        closed_at: None,
    };
    let body = json::pull_request(st, &pr, true);
    st.prs.insert(number, pr);
    let mut reply = Reply::json(201, body);
    reply.headers.push((
        "location".into(),
        format!("{}/repos/{}/pulls/{number}", st.api_url, st.full_name()),
    ));
    reply
}

fn update_pull(st: &mut State, n: u64, req: &Request) -> Reply {
    let now = st.now();
    let branch_exists = st.git.branch_sha(&st.prs[&n].head).is_some();
    let pr = st.prs.get_mut(&n).expect("checked by with_pr");
    if let Some(title) = req.str_field("title") {
        pr.title = title.to_owned();
    }
    if let Some(body) = req.str_field("body") {
        pr.body = Some(body.to_owned());
    }
    if let Some(base) = req.str_field("base") {
        pr.base = base.to_owned();
    }
    match req.str_field("state") {
        Some("closed") if pr.open => {
            pr.open = false;
            pr.closed_at = Some(now.clone());
        }
        Some("open") if !pr.open => {
            if pr.merged.is_some() || !branch_exists {
                let doc = "pulls/pulls#update-a-pull-request";
                return Reply::json(
                    422,
                    json::validation_failed("state cannot be changed.", doc),
                );
            }
            pr.open = true;
            pr.closed_at = None;
        }
        _ => {}
    }
    pr.updated_at = now;
    st.refresh_head(n);
    Reply::json(200, json::pull_request(st, &st.prs[&n], true))
}

fn merge(st: &mut State, n: u64, req: &Request) -> Reply {
    let doc = "pulls/pulls#merge-a-pull-request";
    let method = match req.str_field("merge_method").map(MergeMethod::parse) {
        None => MergeMethod::Merge,
        Some(Some(method)) => method,
        Some(None) => {
            return Reply::json(
                422,
                json::validation_failed("merge_method is not valid", doc),
            );
        }
    };
    match st.merge(
        n,
        req.str_field("sha"),
        method,
        req.str_field("commit_title"),
        req.str_field("commit_message"),
    ) {
        Ok(sha) => Reply::json(
            200,
            json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
        ),
        Err((status, message)) => Reply::error(status, &message, doc),
    }
}

fn create_status(st: &mut State, sha: &str, req: &Request) -> Reply {
    let doc = "commits/statuses#create-a-commit-status";
    let state = req.str_field("state").unwrap_or_default().to_owned();
    if !matches!(state.as_str(), "error" | "failure" | "pending" | "success") {
        return Reply::json(
            422,
            json::validation_failed("state is not included in the list", doc),
        );
    }
    if st
        .git
        .try_git(&["cat-file", "-e", &format!("{sha}^{{commit}}")], &[])
        .is_err()
    {
        return Reply::json(
            422,
            json::validation_failed(&format!("No commit found for SHA: {sha}"), doc),
        );
    }
    let status = Status {
        id: st.id(),
        sha: sha.to_owned(),
        context: req.str_field("context").unwrap_or("default").to_owned(),
        state,
        description: req.str_field("description").map(str::to_owned),
        target_url: req.str_field("target_url").map(str::to_owned),
        creator: st.login.clone(),
        created_at: st.now(),
    };
    let body = json::status(st, &status);
    st.statuses.push(status);
    Reply::json(201, body)
}

/// `GET /branches/{branch}/protection/required_status_checks` and
/// `.../required_pull_request_reviews` (the branch may contain slashes), and
/// `GET /branches/{branch}`: the branch with its protection's summary.
fn protection(st: &State, rest: &[&str]) -> Reply {
    let doc = "branches/branch-protection";
    if !rest.contains(&"protection") {
        return branch(st, &rest.join("/"));
    }
    let [branch @ .., "protection", which] = rest else {
        return Reply::not_found();
    };
    let Some(p) = st.protection.get(&branch.join("/")) else {
        return Reply::error(404, "Branch not protected", doc);
    };
    let base = format!(
        "{}/repos/{}/branches/{}/protection",
        st.api_url,
        st.full_name(),
        branch.join("/")
    );
    match *which {
        "required_status_checks" if !p.contexts.is_empty() => Reply::json(
            200,
            json!({
                "url": format!("{base}/required_status_checks"),
                "strict": p.strict,
                "contexts": p.contexts,
                "contexts_url": format!("{base}/required_status_checks/contexts"),
                "checks": p.contexts.iter().map(|c| json!({"context": c, "app_id": null})).collect::<Vec<_>>(),
            }),
        ),
        "required_status_checks" => Reply::error(404, "Required status checks not enabled", doc),
        "required_pull_request_reviews" => match p.approvals {
            Some(count) => Reply::json(
                200,
                json!({
                    "url": format!("{base}/required_pull_request_reviews"),
                    "dismiss_stale_reviews": p.dismiss_stale_reviews,
                    "require_code_owner_reviews": false,
                    "require_last_push_approval": false,
                    "required_approving_review_count": count,
                }),
            ),
            None => Reply::error(404, "Required pull request reviews not enabled.", doc),
        },
        _ => Reply::not_found(),
    }
}

/// `GET /rules/branches/{branch}`: the active rules of the rulesets on the
/// branch (an empty list when none), shaped like GitHub's.
fn branch_rules(st: &State, branch: &str) -> Reply {
    let Some(r) = st.rulesets.get(branch) else {
        return Reply::json(200, json!([]));
    };
    let source = |mut rule: Value| {
        rule["ruleset_source_type"] = json!("Repository");
        rule["ruleset_source"] = json!(st.full_name());
        rule["ruleset_id"] = json!(42);
        rule
    };
    let mut rules = Vec::new();
    if !r.contexts.is_empty() {
        rules.push(source(json!({
            "type": "required_status_checks",
            "parameters": {
                "strict_required_status_checks_policy": r.strict,
                "do_not_enforce_on_create": false,
                "required_status_checks": r.contexts.iter()
                    .map(|c| json!({"context": c, "integration_id": null}))
                    .collect::<Vec<_>>(),
            },
        })));
    }
    if let Some(count) = r.approvals {
        rules.push(source(json!({
            "type": "pull_request",
            "parameters": {
                "required_approving_review_count": count,
                "dismiss_stale_reviews_on_push": r.dismiss_stale_reviews,
                "require_code_owner_review": false,
                "require_last_push_approval": false,
                "required_review_thread_resolution": false,
                "allowed_merge_methods": ["merge", "squash", "rebase"],
            },
        })));
    }
    rules.push(source(json!({"type": "deletion"})));
    Reply::json(200, Value::Array(rules))
}

/// `GET /branches/{branch}`, shaped like GitHub's: `protection` summarises
/// classic protection's required checks for any token that can read code.
fn branch(st: &State, name: &str) -> Reply {
    let Some(sha) = st.git.branch_sha(name) else {
        return Reply::error(404, "Branch not found", "branches/branches#get-a-branch");
    };
    let url = format!("{}/repos/{}", st.api_url, st.full_name());
    let p = st.protection.get(name);
    let checks = p.map(|p| p.contexts.clone()).unwrap_or_default();
    Reply::json(
        200,
        json!({
            "name": name,
            "commit": { "sha": sha, "url": format!("{url}/commits/{sha}") },
            "_links": {
                "self": format!("{url}/branches/{name}"),
                "html": format!("https://github.com/{}/tree/{name}", st.full_name()),
            },
            "protected": p.is_some(),
            "protection": {
                "enabled": p.is_some(),
                "required_status_checks": {
                    "enforcement_level": if checks.is_empty() { "off" } else { "non_admins" },
                    "contexts": checks,
                    "checks": checks.iter().map(|c| json!({"context": c, "app_id": null})).collect::<Vec<_>>(),
                },
            },
            "protection_url": format!("{url}/branches/{name}/protection"),
        }),
    )
}
