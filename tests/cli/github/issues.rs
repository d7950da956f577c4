//! The issues side of the fake's routes: the dashboard issue (list, open,
//! edit), and labels and comments, which GitHub serves for pull requests
//! through the issues API too.

use serde_json::Value;

use super::json;
use super::model::{Comment, Issue, State};
use super::routes::{Reply, Request, page};

pub fn list_issues(st: &State, req: &Request) -> Reply {
    let state = req.param("state").unwrap_or("open");
    let wanted: Vec<&str> = req
        .param("labels")
        .map(|l| l.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut issues: Vec<&Issue> = st
        .issues
        .values()
        .filter(|i| match state {
            "open" => i.open,
            "closed" => !i.open,
            _ => true,
        })
        .filter(|i| wanted.iter().all(|w| i.labels.iter().any(|l| l == w)))
        .filter(|i| req.param("creator").is_none_or(|c| c == i.user))
        .collect();
    if req.param("direction").unwrap_or("desc") == "desc" {
        issues.reverse();
    }
    let items = issues.iter().map(|i| json::issue(st, i)).collect();
    page(st, req, items)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn create_issue(st: &mut State, req: &Request) -> Reply {
    let Some(title) = req.str_field("title") else {
        return Reply::json(
            422,
            json::validation_failed("title is required", "issues/issues#create-an-issue"),
        );
    };
    let number = st.number();
    let now = st.now();
    let issue = Issue {
        number,
        title: title.to_owned(),
        body: req.str_field("body").map(str::to_owned),
        open: true,
        labels: string_list(req.body.get("labels")),
        user: st.login.clone(),
        created_at: now.clone(),
        updated_at: now,
        closed_at: None,
    };
    let body = json::issue(st, &issue);
    st.issues.insert(number, issue);
    Reply::json(201, body)
}

pub fn update_issue(st: &mut State, n: Option<u64>, req: &Request) -> Reply {
    let Some(n) = n.filter(|n| st.issues.contains_key(n)) else {
        return Reply::not_found();
    };
    let now = st.now();
    let issue = st.issues.get_mut(&n).expect("checked above");
    if let Some(title) = req.str_field("title") {
        issue.title = title.to_owned();
    }
    if let Some(body) = req.str_field("body") {
        issue.body = Some(body.to_owned());
    }
    match req.str_field("state") {
        Some("closed") if issue.open => {
            issue.open = false;
            issue.closed_at = Some(now.clone());
        }
        Some("open") => {
            issue.open = true;
            issue.closed_at = None;
        }
        _ => {}
    }
    if req.body.get("labels").is_some() {
        issue.labels = string_list(req.body.get("labels"));
    }
    issue.updated_at = now;
    Reply::json(200, json::issue(st, &st.issues[&n]))
}

pub fn add_labels(st: &mut State, n: Option<u64>, req: &Request) -> Reply {
    let new = string_list(req.body.get("labels"));
    let now = st.now();
    let labels = match n {
        Some(n) if st.prs.contains_key(&n) => {
            let pr = st.prs.get_mut(&n).expect("checked");
            pr.updated_at = now;
            &mut pr.labels
        }
        Some(n) if st.issues.contains_key(&n) => {
            let issue = st.issues.get_mut(&n).expect("checked");
            issue.updated_at = now;
            &mut issue.labels
        }
        _ => return Reply::not_found(),
    };
    for label in new {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    let labels = labels.clone();
    Reply::json(
        200,
        Value::Array(labels.iter().map(|l| json::label(st, l)).collect()),
    )
}

pub fn add_comment(st: &mut State, n: Option<u64>, req: &Request) -> Reply {
    let Some(n) = n.filter(|n| st.prs.contains_key(n) || st.issues.contains_key(n)) else {
        return Reply::not_found();
    };
    let Some(body) = req.str_field("body") else {
        return Reply::json(
            422,
            json::validation_failed(
                "body is required",
                "issues/comments#create-an-issue-comment",
            ),
        );
    };
    let comment = Comment {
        id: st.id(),
        issue: n,
        body: body.to_owned(),
        user: st.login.clone(),
        created_at: st.now(),
    };
    let reply = json::comment(st, &comment);
    st.comments.push(comment);
    Reply::json(201, reply)
}
