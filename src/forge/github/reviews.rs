//! Reviews as the human gate: the latest review of each reviewer with write
//! access (OWNER, MEMBER, COLLABORATOR) counts, and only at the head it was
//! given on. An approval satisfies `human_review`/`human_approve`; a request
//! for changes is a rejection whose body and line comments (`path:line:
//! text`) go to the next attempt. Read again only when the pull request
//! changed since (its `updated_at`), so that waiting costs no requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::api::{Pull, Review, ReviewComment};
use super::client::{Client, ClientError};
use crate::model::CommitId;
use crate::observe::Feedback;
use crate::rundir::Layout;

/// What the reviews at a head say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub approved_by: Option<String>,
    pub changes_requested: Option<Requested>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    pub by: String,
    pub text: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    /// By pull request number: its `updated_at` and head when read, and what
    /// the reviews said.
    pulls: BTreeMap<u64, (String, String, Verdict)>,
}

pub struct Read {
    pub approved_by: Option<String>,
    pub changes_requested: Option<Feedback>,
}

/// What the reviews said when last read, kept in
/// `<git-common-dir>/converge/forge/reviews.json`: loaded once a tick, written
/// back once if anything was read again.
pub struct Reviews {
    path: std::path::PathBuf,
    seen: Seen,
    changed: bool,
}

impl Reviews {
    pub fn load(layout: &Layout) -> Reviews {
        let path = layout.forge().join("reviews.json");
        let seen = super::state::read_json(&path).unwrap_or_default();
        Reviews {
            path,
            seen,
            changed: false,
        }
    }

    /// The reviews of `pull` at `head`: as noted, unless the pull request
    /// changed since (its `updated_at` or head), then read from GitHub.
    pub fn read(
        &mut self,
        client: &Client,
        pull: &Pull,
        heads: &[CommitId],
    ) -> Result<Read, ClientError> {
        let updated = pull.updated_at.clone().unwrap_or_default();
        let heads: Vec<String> = heads.iter().map(CommitId::to_string).collect();
        let head_text = heads.join(" ");
        let verdict = match self.seen.pulls.get(&pull.number) {
            Some((at, h, verdict)) if !updated.is_empty() && *at == updated && *h == head_text => {
                verdict.clone()
            }
            _ => {
                let verdict = fetch(client, pull.number, &heads)?;
                self.seen
                    .pulls
                    .insert(pull.number, (updated, head_text, verdict.clone()));
                self.changed = true;
                verdict
            }
        };
        Ok(Read {
            approved_by: verdict.approved_by,
            changes_requested: verdict.changes_requested.map(|r| Feedback {
                by: r.by,
                text: r.text,
            }),
        })
    }

    /// Writes the notes back if a review was read again (a cache: a failure
    /// only costs requests, and is logged).
    pub fn save(&self) {
        if self.changed {
            super::state::write_json(&self.path, &self.seen);
        }
    }
}

fn fetch(client: &Client, number: u64, heads: &[String]) -> Result<Verdict, ClientError> {
    let reviews: Vec<Review> = client.get(&format!("/pulls/{number}/reviews?per_page=100"))?;
    let latest = latest_by_writer(&reviews);
    let at_head = |r: &&&Review| r.commit_id.as_ref().is_some_and(|c| heads.contains(c));
    if let Some(review) = latest
        .values()
        .filter(at_head)
        .find(|r| r.state == "CHANGES_REQUESTED")
    {
        let comments: Vec<ReviewComment> =
            client.get(&format!("/pulls/{number}/comments?per_page=100"))?;
        return Ok(Verdict {
            approved_by: None,
            changes_requested: Some(Requested {
                by: review.login(),
                text: feedback(review, &comments),
            }),
        });
    }
    let approved_by = latest
        .values()
        .filter(at_head)
        .find(|r| r.state == "APPROVED")
        .map(|r| r.login());
    Ok(Verdict {
        approved_by,
        changes_requested: None,
    })
}

/// Each writer's latest deciding review (COMMENTED decides nothing).
fn latest_by_writer(reviews: &[Review]) -> BTreeMap<String, &Review> {
    let mut latest = BTreeMap::new();
    for review in reviews.iter().filter(|r| r.by_writer()) {
        if matches!(
            review.state.as_str(),
            "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
        ) {
            latest.insert(review.login(), review);
        }
    }
    latest
}

/// The review's body, then its line comments as `path:line: text`.
fn feedback(review: &Review, comments: &[ReviewComment]) -> String {
    let mut out = review.body.clone().unwrap_or_default().trim().to_owned();
    for c in comments
        .iter()
        .filter(|c| c.pull_request_review_id == Some(review.id))
    {
        let line = c
            .line
            .or(c.original_line)
            .map(|l| l.to_string())
            .unwrap_or_else(|| "?".into());
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{}:{line}: {}", c.path, c.body.trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(id: u64, login: &str, state: &str, assoc: &str, commit: &str) -> Review {
        serde_json::from_value(serde_json::json!({
            "id": id, "user": {"login": login}, "body": format!("{state} by {login}"),
            "state": state, "commit_id": commit, "author_association": assoc
        }))
        .expect("a review")
    }

    #[test]
    fn only_writers_latest_reviews_count() {
        let reviews = vec![
            review(1, "ann", "CHANGES_REQUESTED", "MEMBER", "a"),
            review(2, "ann", "APPROVED", "MEMBER", "a"),
            review(3, "eve", "CHANGES_REQUESTED", "NONE", "a"),
            review(4, "bob", "COMMENTED", "OWNER", "a"),
        ];
        let latest = latest_by_writer(&reviews);
        assert_eq!(latest.len(), 1);
        assert_eq!(latest["ann"].state, "APPROVED");
    }

    #[test]
    fn feedback_lists_line_comments_of_the_review() {
        let r = review(7, "ann", "CHANGES_REQUESTED", "OWNER", "a");
        let comments: Vec<ReviewComment> = serde_json::from_value(serde_json::json!([
            {"pull_request_review_id": 7, "path": "src/lib.rs", "line": 12, "body": "no unwrap here"},
            {"pull_request_review_id": 8, "path": "src/x.rs", "line": 1, "body": "other review"},
            {"pull_request_review_id": 7, "path": "README.md", "line": null, "original_line": 3, "body": "typo"}
        ]))
        .expect("comments");
        assert_eq!(
            feedback(&r, &comments),
            "CHANGES_REQUESTED by ann\nsrc/lib.rs:12: no unwrap here\nREADME.md:3: typo"
        );
    }
}
