//! The fake's response bodies: copies of real GitHub objects
//! (tests/fixtures/github/, see PROVENANCE.md there) with their identifying
//! fields overwritten from the fake's state, so field names, nesting and nulls
//! stay GitHub's.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::model::{CheckRun, Comment, Issue, Pr, Review, ReviewComment, State, Status};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

static PR: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/github/pull_request.json")));
static REVIEW: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/github/get_pull_request_review.json"
    ))
});
static REVIEW_COMMENTS: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/github/get_pull_request_review_comments.json"
    ))
});
static CHECK_RUNS: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/github/commit_check_runs.json")));
static ISSUE: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/github/issue.json")));
static COMMENT: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/github/issue_comment.json")));
static LABELS: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/github/labels.json")));

/// Fields the list endpoint leaves out of a PR (only `GET /pulls/{n}` has them).
const DETAIL_ONLY: [&str; 12] = [
    "merged",
    "mergeable",
    "rebaseable",
    "mergeable_state",
    "merged_by",
    "comments",
    "review_comments",
    "maintainer_can_modify",
    "commits",
    "additions",
    "deletions",
    "changed_files",
];

/// A stable id for a login.
fn user_id(login: &str) -> u64 {
    login.bytes().fold(7_u64, |h, b| {
        (h.wrapping_mul(31) + u64::from(b)) % 100_000_000
    })
}

/// Replaces `from` by `to` in every string below `value`.
fn replace_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_strings(v, from, to)),
        _ => {}
    }
}

/// Points a fixture's URLs at this fake: its API URL and `owner/repo`.
fn rebase_urls(value: &mut Value, template_full: &str, st: &State) {
    replace_strings(
        value,
        &format!("https://api.github.com/repos/{template_full}"),
        &repo_api(st),
    );
    replace_strings(value, "https://api.github.com", &st.api_url);
    replace_strings(value, template_full, &st.full_name());
}

fn repo_api(st: &State) -> String {
    format!("{}/repos/{}", st.api_url, st.full_name())
}

/// A user object (GitHub's "simple user").
pub fn user(st: &State, login: &str) -> Value {
    let mut user = PR["user"].clone();
    let template = user["login"].as_str().unwrap_or_default().to_owned();
    replace_strings(&mut user, "https://api.github.com", &st.api_url);
    replace_strings(&mut user, &template, login);
    user["login"] = json!(login);
    user["id"] = json!(user_id(login));
    user["type"] = json!(if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    });
    user
}

pub fn label(st: &State, name: &str) -> Value {
    let mut label = LABELS[0].clone();
    label["id"] = json!(user_id(name));
    label["name"] = json!(name);
    label["url"] = json!(format!("{}/labels/{name}", repo_api(st)));
    label["description"] = Value::Null;
    label["default"] = json!(false);
    label
}

fn labels(st: &State, names: &[String]) -> Value {
    Value::Array(names.iter().map(|n| label(st, n)).collect())
}

fn branch_side(st: &State, template: &Value, branch: &str, sha: &str) -> Value {
    let mut side = template.clone();
    let template_full = side["repo"]["full_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    rebase_urls(&mut side, &template_full, st);
    side["label"] = json!(format!("{}:{branch}", st.owner));
    side["ref"] = json!(branch);
    side["sha"] = json!(sha);
    side["user"] = user(st, &st.owner);
    side["repo"]["name"] = json!(st.repo);
    side["repo"]["full_name"] = json!(st.full_name());
    side["repo"]["owner"] = user(st, &st.owner);
    side["repo"]["default_branch"] = json!(st.default_branch);
    side
}

/// A pull request; `detail` adds the fields only `GET /pulls/{n}` answers.
pub fn pull_request(st: &State, pr: &Pr, detail: bool) -> Value {
    let mut v = PR.clone();
    let template_full = v["base"]["repo"]["full_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (head_template, base_template) = (v["head"].clone(), v["base"].clone());
    rebase_urls(&mut v, &template_full, st);
    let n = pr.number;
    let api = repo_api(st);
    let html = format!("https://github.com/{}", st.full_name());
    v["url"] = json!(format!("{api}/pulls/{n}"));
    v["id"] = json!(100_000 + n);
    v["html_url"] = json!(format!("{html}/pull/{n}"));
    v["diff_url"] = json!(format!("{html}/pull/{n}.diff"));
    v["patch_url"] = json!(format!("{html}/pull/{n}.patch"));
    v["issue_url"] = json!(format!("{api}/issues/{n}"));
    v["commits_url"] = json!(format!("{api}/pulls/{n}/commits"));
    v["review_comments_url"] = json!(format!("{api}/pulls/{n}/comments"));
    v["comments_url"] = json!(format!("{api}/issues/{n}/comments"));
    v["statuses_url"] = json!(format!("{api}/statuses/{}", pr.head_sha));
    v["number"] = json!(n);
    v["state"] = json!(if pr.open { "open" } else { "closed" });
    v["locked"] = json!(false);
    v["title"] = json!(pr.title);
    v["user"] = user(st, &pr.user);
    v["body"] = json!(pr.body);
    v["labels"] = labels(st, &pr.labels);
    v["created_at"] = json!(pr.created_at);
    v["updated_at"] = json!(pr.updated_at);
    v["closed_at"] = json!(pr.closed_at);
    v["merged_at"] = json!(pr.merged.as_ref().map(|m| &m.at));
    v["merge_commit_sha"] = json!(pr.merged.as_ref().map(|m| &m.sha));
    v["assignee"] = Value::Null;
    v["assignees"] = json!([]);
    v["requested_reviewers"] = json!([]);
    v["requested_teams"] = json!([]);
    v["milestone"] = Value::Null;
    v["draft"] = json!(pr.draft);
    v["auto_merge"] = Value::Null;
    v["author_association"] = json!("NONE");
    let base_sha = st.git.branch_sha(&pr.base).unwrap_or_default();
    v["head"] = branch_side(st, &head_template, &pr.head, &pr.head_sha);
    v["base"] = branch_side(st, &base_template, &pr.base, &base_sha);
    v["_links"] = json!({
        "self": {"href": format!("{api}/pulls/{n}")},
        "html": {"href": format!("{html}/pull/{n}")},
        "issue": {"href": format!("{api}/issues/{n}")},
        "comments": {"href": format!("{api}/issues/{n}/comments")},
        "review_comments": {"href": format!("{api}/pulls/{n}/comments")},
        "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
        "commits": {"href": format!("{api}/pulls/{n}/commits")},
        "statuses": {"href": format!("{api}/statuses/{}", pr.head_sha)},
    });
    if detail {
        let (mergeable, mergeable_state) = st.mergeability(pr);
        v["merged"] = json!(pr.merged.is_some());
        v["mergeable"] = json!(mergeable);
        v["rebaseable"] = json!(mergeable);
        v["mergeable_state"] = json!(mergeable_state);
        v["merged_by"] = pr.merged.as_ref().map_or(Value::Null, |m| user(st, &m.by));
        v["comments"] = json!(st.comments.iter().filter(|c| c.issue == n).count());
        v["review_comments"] = json!(st.review_comments.iter().filter(|c| c.pr == n).count());
        let range = format!("{base_sha}..{}", pr.head_sha);
        let commits = st
            .git
            .try_git(&["rev-list", "--count", &range], &[])
            .unwrap_or_default();
        v["commits"] = json!(commits.trim().parse::<u64>().unwrap_or(0));
    } else if let Some(map) = v.as_object_mut() {
        for key in DETAIL_ONLY {
            map.remove(key);
        }
    }
    v
}

pub fn review(st: &State, r: &Review) -> Value {
    let mut v = REVIEW.clone();
    let api = repo_api(st);
    let html = format!(
        "https://github.com/{}/pull/{}#pullrequestreview-{}",
        st.full_name(),
        r.pr,
        r.id
    );
    v["id"] = json!(r.id);
    v["user"] = user(st, &r.user);
    v["body"] = json!(r.body);
    v["state"] = json!(r.state);
    v["html_url"] = json!(html);
    v["pull_request_url"] = json!(format!("{api}/pulls/{}", r.pr));
    v["_links"] =
        json!({"html": {"href": html}, "pull_request": {"href": format!("{api}/pulls/{}", r.pr)}});
    v["submitted_at"] = json!(r.submitted_at);
    v["commit_id"] = json!(r.commit_id);
    v["author_association"] = json!(r.association);
    v
}

pub fn review_comment(st: &State, c: &ReviewComment) -> Value {
    let mut v = REVIEW_COMMENTS[0].clone();
    let api = repo_api(st);
    let html = format!(
        "https://github.com/{}/pull/{}#discussion_r{}",
        st.full_name(),
        c.pr,
        c.id
    );
    v["url"] = json!(format!("{api}/pulls/comments/{}", c.id));
    v["pull_request_review_id"] = json!(c.review_id);
    v["id"] = json!(c.id);
    v["path"] = json!(c.path);
    v["line"] = json!(c.line);
    v["original_line"] = json!(c.line);
    v["side"] = json!("RIGHT");
    v["commit_id"] = json!(c.commit_id);
    v["original_commit_id"] = json!(c.commit_id);
    v["in_reply_to_id"] = Value::Null;
    v["user"] = user(st, &c.user);
    v["body"] = json!(c.body);
    v["created_at"] = json!(c.created_at);
    v["updated_at"] = json!(c.created_at);
    v["html_url"] = json!(html);
    v["pull_request_url"] = json!(format!("{api}/pulls/{}", c.pr));
    v["author_association"] = json!(c.association);
    v["_links"] = json!({
        "self": {"href": format!("{api}/pulls/comments/{}", c.id)},
        "html": {"href": html},
        "pull_request": {"href": format!("{api}/pulls/{}", c.pr)},
    });
    v
}

pub fn check_run(st: &State, r: &CheckRun) -> Value {
    let mut v = CHECK_RUNS["check_runs"][0].clone();
    let template_full = "iamjpotts/demo_docker_registry_auto_gen_tls";
    rebase_urls(&mut v, template_full, st);
    let html = format!(
        "https://github.com/{}/actions/runs/{}/job/{}",
        st.full_name(),
        r.id,
        r.id
    );
    v["id"] = json!(r.id);
    v["name"] = json!(r.name);
    v["head_sha"] = json!(r.sha);
    v["url"] = json!(format!("{}/check-runs/{}", repo_api(st), r.id));
    v["html_url"] = json!(html);
    v["details_url"] = json!(html);
    v["status"] = json!(r.status);
    v["conclusion"] = json!(r.conclusion);
    v["started_at"] = json!(r.started_at);
    v["completed_at"] = json!(r.completed_at);
    v["output"]["annotations_url"] =
        json!(format!("{}/check-runs/{}/annotations", repo_api(st), r.id));
    v["check_suite"] = json!({"id": r.id + 7_000_000});
    v["pull_requests"] = json!([]);
    v
}

pub fn check_runs(st: &State, runs: &[&CheckRun]) -> Value {
    json!({
        "total_count": runs.len(),
        "check_runs": runs.iter().map(|r| check_run(st, r)).collect::<Vec<_>>(),
    })
}

/// A commit status (no fixture: shaped from GitHub's REST documentation).
pub fn status(st: &State, s: &Status) -> Value {
    json!({
        "url": format!("{}/statuses/{}", repo_api(st), s.sha),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user_id(&s.creator)),
        "id": s.id,
        "node_id": format!("SC_kwDO{}", s.id),
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": s.created_at,
        "updated_at": s.created_at,
        "creator": user(st, &s.creator),
    })
}

/// The combined status of a sha: the latest status per context.
pub fn combined_status(st: &State, sha: &str) -> Value {
    let mut latest: Vec<&Status> = Vec::new();
    for s in st.statuses.iter().rev().filter(|s| s.sha == sha) {
        if !latest.iter().any(|l| l.context == s.context) {
            latest.push(s);
        }
    }
    let state = if latest
        .iter()
        .any(|s| matches!(s.state.as_str(), "error" | "failure"))
    {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    json!({
        "state": state,
        "statuses": latest.iter().map(|s| status(st, s)).collect::<Vec<_>>(),
        "sha": sha,
        "total_count": latest.len(),
        "commit_url": format!("{}/commits/{sha}", repo_api(st)),
        "url": format!("{}/commits/{sha}/status", repo_api(st)),
    })
}

pub fn issue(st: &State, i: &Issue) -> Value {
    let mut v = ISSUE.clone();
    let template_full = "wayofthepie/test-events";
    rebase_urls(&mut v, template_full, st);
    let api = repo_api(st);
    let n = i.number;
    v["url"] = json!(format!("{api}/issues/{n}"));
    v["labels_url"] = json!(format!("{api}/issues/{n}/labels{{/name}}"));
    v["comments_url"] = json!(format!("{api}/issues/{n}/comments"));
    v["events_url"] = json!(format!("{api}/issues/{n}/events"));
    v["html_url"] = json!(format!("https://github.com/{}/issues/{n}", st.full_name()));
    v["id"] = json!(200_000 + n);
    v["number"] = json!(n);
    v["title"] = json!(i.title);
    v["user"] = user(st, &i.user);
    v["labels"] = labels(st, &i.labels);
    v["state"] = json!(if i.open { "open" } else { "closed" });
    v["comments"] = json!(st.comments.iter().filter(|c| c.issue == n).count());
    v["created_at"] = json!(i.created_at);
    v["updated_at"] = json!(i.updated_at);
    v["closed_at"] = json!(i.closed_at);
    v["body"] = json!(i.body);
    v["author_association"] = json!("NONE");
    v
}

pub fn comment(st: &State, c: &Comment) -> Value {
    let mut v = COMMENT.clone();
    rebase_urls(&mut v, "wayofthepie/test-events", st);
    let api = repo_api(st);
    v["url"] = json!(format!("{api}/issues/comments/{}", c.id));
    v["html_url"] = json!(format!(
        "https://github.com/{}/issues/{}#issuecomment-{}",
        st.full_name(),
        c.issue,
        c.id
    ));
    v["issue_url"] = json!(format!("{api}/issues/{}", c.issue));
    v["id"] = json!(c.id);
    v["user"] = user(st, &c.user);
    v["body"] = json!(c.body);
    v["created_at"] = json!(c.created_at);
    v["updated_at"] = json!(c.created_at);
    v["author_association"] = json!("NONE");
    v
}

/// GitHub's error body.
pub fn error(message: &str, doc: &str) -> Value {
    json!({"message": message, "documentation_url": format!("https://docs.github.com/rest/{doc}")})
}

/// 422 "Validation Failed" with one error message.
pub fn validation_failed(message: &str, doc: &str) -> Value {
    json!({
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
        "documentation_url": format!("https://docs.github.com/rest/{doc}"),
    })
}
