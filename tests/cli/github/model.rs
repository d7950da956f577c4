//! The fake GitHub's state: pull requests, issues, reviews, checks, statuses,
//! branch protection, injected faults and the request log, beside the bare
//! repository that holds the branches. Pure bookkeeping plus the merge rules
//! (what GitHub's `mergeable_state` and the merge endpoint decide).

use std::collections::BTreeMap;

use super::git::{BareRepo, MergeMethod};

/// The repository's writers, whose reviews count (`author_association`).
pub const WRITERS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

#[derive(Debug, Clone)]
pub struct Pr {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    /// The head branch (in the same repository).
    pub head: String,
    pub base: String,
    pub open: bool,
    pub draft: bool,
    pub user: String,
    pub labels: Vec<String>,
    /// The head's last known sha (the live branch tip while the branch exists).
    pub head_sha: String,
    pub merged: Option<Merged>,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Merged {
    pub sha: String,
    pub at: String,
    pub by: String,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub id: u64,
    pub pr: u64,
    pub user: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED.
    pub state: String,
    pub body: String,
    pub commit_id: String,
    pub association: String,
    pub submitted_at: String,
}

#[derive(Debug, Clone)]
pub struct ReviewComment {
    pub id: u64,
    pub pr: u64,
    pub review_id: u64,
    pub path: String,
    pub line: u64,
    pub body: String,
    pub commit_id: String,
    pub user: String,
    pub association: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub sha: String,
    pub name: String,
    /// queued, in_progress or completed.
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub id: u64,
    pub sha: String,
    pub context: String,
    /// error, failure, pending or success.
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub creator: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// Required status check contexts (check run names or status contexts).
    pub contexts: Vec<String>,
    pub strict: bool,
    /// Required approving reviews; None: reviews not required.
    pub approvals: Option<u32>,
    pub dismiss_stale_reviews: bool,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub open: bool,
    pub labels: Vec<String>,
    pub user: String,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    /// The issue or pull request number.
    pub issue: u64,
    pub body: String,
    pub user: String,
    pub created_at: String,
}

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 502 Bad Gateway (GitHub's unicorn page is HTML; the body here is text).
    BadGateway,
    /// 403 "You have exceeded a secondary rate limit", with `retry-after` if given.
    SecondaryRateLimit { retry_after: Option<u64> },
    /// 429 Too Many Requests with `retry-after`.
    TooManyRequests { retry_after: u64 },
    /// 403 "API rate limit exceeded" with `x-ratelimit-remaining: 0`.
    PrimaryExhausted,
    /// 403 "Resource not accessible by integration": the token lacks a
    /// permission (no rate-limit headers changed).
    Forbidden,
}

#[derive(Debug, Clone)]
pub struct Injection {
    pub method: Option<String>,
    /// Matched against the path, and against the path below `/repos/{owner}/{repo}`.
    pub prefix: String,
    pub remaining: usize,
    pub fault: Fault,
}

/// One request as the fake answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds.
    pub reset: u64,
}

/// Everything the fake knows; behind one Mutex.
#[derive(Debug)]
pub struct State {
    pub owner: String,
    pub repo: String,
    pub api_url: String,
    pub token: String,
    pub login: String,
    pub git: BareRepo,
    pub default_branch: String,
    pub prs: BTreeMap<u64, Pr>,
    pub issues: BTreeMap<u64, Issue>,
    pub comments: Vec<Comment>,
    pub reviews: Vec<Review>,
    pub review_comments: Vec<ReviewComment>,
    pub check_runs: Vec<CheckRun>,
    pub statuses: Vec<Status>,
    pub protection: BTreeMap<String, Protection>,
    /// Rulesets' rules by branch: the same requirements, served by
    /// `GET /rules/branches/{branch}` instead of the protection endpoints.
    pub rulesets: BTreeMap<String, Protection>,
    pub injections: Vec<Injection>,
    /// PRs whose head a person moves at the next merge call.
    pub move_head_on_merge: Vec<u64>,
    pub log: Vec<Logged>,
    pub merges: BTreeMap<u64, usize>,
    pub rate: RateLimit,
    next_number: u64,
    next_id: u64,
    clock: u64,
}

impl State {
    pub fn new(owner: &str, repo: &str, default_branch: &str) -> Self {
        State {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            api_url: String::new(),
            token: "fake-token".to_owned(),
            login: "converge-bot".to_owned(),
            git: BareRepo::new(default_branch),
            default_branch: default_branch.to_owned(),
            prs: BTreeMap::new(),
            issues: BTreeMap::new(),
            comments: Vec::new(),
            reviews: Vec::new(),
            review_comments: Vec::new(),
            check_runs: Vec::new(),
            statuses: Vec::new(),
            protection: BTreeMap::new(),
            rulesets: BTreeMap::new(),
            injections: Vec::new(),
            move_head_on_merge: Vec::new(),
            log: Vec::new(),
            merges: BTreeMap::new(),
            rate: RateLimit {
                limit: 5000,
                remaining: 5000,
                reset: 1_767_229_200,
            },
            next_number: 1,
            next_id: 1000,
            clock: 0,
        }
    }

    /// `owner/repo`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// A fresh id for reviews, comments, checks and statuses.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The next issue/PR number (they share one sequence, as on GitHub).
    pub fn number(&mut self) -> u64 {
        let n = self.next_number;
        self.next_number += 1;
        n
    }

    /// A timestamp one second after the previous one, from 2026-01-01T00:00:00Z.
    pub fn now(&mut self) -> String {
        self.clock += 1;
        let s = self.clock;
        format!(
            "2026-01-01T{:02}:{:02}:{:02}Z",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60
        )
    }

    /// Refreshes an open PR's head sha from its live branch.
    pub fn refresh_head(&mut self, number: u64) {
        let Some(pr) = self.prs.get(&number) else {
            return;
        };
        if !pr.open {
            return;
        }
        if let Some(sha) = self.git.branch_sha(&pr.head)
            && let Some(pr) = self.prs.get_mut(&number)
        {
            pr.head_sha = sha;
        }
    }

    /// The latest result of `context` on `sha`: a check run's conclusion (or
    /// its status while not completed) or a commit status's state.
    pub fn context_result(&self, sha: &str, context: &str) -> Option<String> {
        let run = self
            .check_runs
            .iter()
            .rev()
            .find(|r| r.sha == sha && r.name == context);
        if let Some(run) = run {
            return Some(run.conclusion.clone().unwrap_or_else(|| run.status.clone()));
        }
        self.statuses
            .iter()
            .rev()
            .find(|s| s.sha == sha && s.context == context)
            .map(|s| s.state.clone())
    }

    /// Each reviewer's latest review of a PR that counts (writers only; with
    /// `dismiss_stale`, only reviews of `head`).
    fn latest_reviews(&self, pr: u64, head: &str, dismiss_stale: bool) -> Vec<&Review> {
        let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
        for review in self.reviews.iter().filter(|r| r.pr == pr) {
            if review.state == "COMMENTED" || !WRITERS.contains(&review.association.as_str()) {
                continue;
            }
            if dismiss_stale && review.commit_id != head {
                continue;
            }
            latest.insert(&review.user, review);
        }
        latest.into_values().collect()
    }

    /// Branch protection and the rulesets' rules on `branch`.
    pub fn rules(&self, branch: &str) -> impl Iterator<Item = &Protection> {
        [self.protection.get(branch), self.rulesets.get(branch)]
            .into_iter()
            .flatten()
    }

    /// Why branch protection or a ruleset blocks merging `pr` now (GitHub's
    /// 405 message), if either does.
    pub fn blocked(&self, pr: &Pr) -> Option<String> {
        self.rules(&pr.base)
            .find_map(|protection| self.blocked_by(pr, protection))
    }

    fn blocked_by(&self, pr: &Pr, protection: &Protection) -> Option<String> {
        for context in &protection.contexts {
            match self.context_result(&pr.head_sha, context).as_deref() {
                Some("success" | "neutral" | "skipped") => {}
                None => return Some(format!("Required status check \"{context}\" is expected.")),
                Some(_) => return Some(format!("Required status check \"{context}\" is failing.")),
            }
        }
        if let Some(needed) = protection.approvals {
            let reviews =
                self.latest_reviews(pr.number, &pr.head_sha, protection.dismiss_stale_reviews);
            if reviews.iter().any(|r| r.state == "CHANGES_REQUESTED") {
                return Some("Changes must be made through a pull request.".to_owned());
            }
            let approvals = reviews.iter().filter(|r| r.state == "APPROVED").count();
            if approvals < needed as usize {
                return Some(format!(
                    "At least {needed} approving review{} is required by reviewers with write access.",
                    if needed == 1 { "" } else { "s" }
                ));
            }
        }
        None
    }

    /// GitHub's `(mergeable, mergeable_state)` for a PR.
    pub fn mergeability(&self, pr: &Pr) -> (Option<bool>, &'static str) {
        if !pr.open {
            return (None, "unknown");
        }
        let Some(base_sha) = self.git.branch_sha(&pr.base) else {
            return (None, "unknown");
        };
        if !self.git.mergeable(&base_sha, &pr.head_sha) {
            return (Some(false), "dirty");
        }
        if pr.draft {
            return (Some(true), "draft");
        }
        if self.blocked(pr).is_some() {
            return (Some(true), "blocked");
        }
        if self.rules(&pr.base).any(|p| p.strict) && !self.git.is_ancestor(&base_sha, &pr.head_sha)
        {
            return (Some(true), "behind");
        }
        let failing = |s: &str| matches!(s, "failure" | "error" | "cancelled" | "timed_out");
        let runs = self.check_runs.iter().filter(|r| r.sha == pr.head_sha);
        let unstable = runs.filter_map(|r| r.conclusion.as_deref()).any(failing)
            || self
                .statuses
                .iter()
                .filter(|s| s.sha == pr.head_sha)
                .any(|s| failing(&s.state));
        (Some(true), if unstable { "unstable" } else { "clean" })
    }

    /// `PUT /pulls/{n}/merge`: (status, message or sha). Really merges in the bare repo.
    pub fn merge(
        &mut self,
        number: u64,
        sha: Option<&str>,
        method: MergeMethod,
        title: Option<&str>,
        message: Option<&str>,
    ) -> Result<String, (u16, String)> {
        let not_mergeable = (405, "Pull Request is not mergeable".to_owned());
        if !self.prs.contains_key(&number) {
            return Err((404, "Not Found".to_owned()));
        }
        if let Some(i) = self.move_head_on_merge.iter().position(|n| *n == number) {
            self.move_head_on_merge.remove(i);
            let head = self.prs[&number].head.clone();
            self.git.commit_as_person(
                &head,
                "PERSON.md",
                "pushed between checks and merge\n",
                "A person's change",
            );
        }
        self.refresh_head(number);
        let pr = self.prs[&number].clone();
        if !pr.open || pr.merged.is_some() {
            return Err(not_mergeable);
        }
        if sha.is_some_and(|s| s != pr.head_sha) {
            return Err((
                409,
                "Head branch was modified. Review and try the merge again.".to_owned(),
            ));
        }
        if let Some(reason) = self.blocked(&pr) {
            return Err((405, reason));
        }
        if pr.draft {
            return Err(not_mergeable);
        }
        let default_title = match method {
            MergeMethod::Squash => format!("{} (#{number})", pr.title),
            _ => format!(
                "Merge pull request #{number} from {}/{}",
                self.owner, pr.head
            ),
        };
        let default_message = match method {
            MergeMethod::Squash => String::new(),
            _ => pr.title.clone(),
        };
        let title = title.map_or(default_title, str::to_owned);
        let message = message.map_or(default_message, str::to_owned);
        let Some(merged) = self
            .git
            .merge(&pr.base, &pr.head_sha, method, &title, &message)
        else {
            return Err(not_mergeable);
        };
        let at = self.now();
        let by = self.login.clone();
        let pr = self.prs.get_mut(&number).expect("checked above");
        pr.open = false;
        pr.closed_at = Some(at.clone());
        pr.updated_at = at.clone();
        pr.merged = Some(Merged {
            sha: merged.clone(),
            at,
            by,
        });
        *self.merges.entry(number).or_default() += 1;
        Ok(merged)
    }

    /// The first injected fault matching this request, consumed.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let below = format!("/repos/{}/{}", self.owner, self.repo);
        let relative = path.strip_prefix(&below).unwrap_or(path).to_owned();
        let hit = self.injections.iter_mut().find(|i| {
            i.remaining > 0
                && i.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && (path.starts_with(&i.prefix) || relative.starts_with(&i.prefix))
        })?;
        hit.remaining -= 1;
        let fault = hit.fault;
        self.injections.retain(|i| i.remaining > 0);
        Some(fault)
    }
}
