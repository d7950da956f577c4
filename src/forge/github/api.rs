//! The parts of GitHub's REST answers the forge reads (field names as GitHub
//! sends them; everything else is ignored, and a missing optional field is
//! `None`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    pub number: u64,
    pub state: String,
    pub head: Ref,
    pub base: Ref,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub mergeable_state: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl Pull {
    /// Merged: `merged` on a single pull request, `merged_at` in a list.
    pub fn is_merged(&self) -> bool {
        self.merged.unwrap_or(false) || self.merged_at.is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ref {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
    #[serde(default)]
    pub repo: Option<Repository>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub author_association: Option<String>,
}

impl Review {
    /// From someone with write access to the repository.
    pub fn by_writer(&self) -> bool {
        matches!(
            self.author_association.as_deref(),
            Some("OWNER" | "MEMBER" | "COLLABORATOR")
        )
    }

    pub fn login(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "a reviewer".to_owned(), |u| u.login.clone())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewComment {
    #[serde(default)]
    pub pull_request_review_id: Option<u64>,
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    pub body: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRuns {
    pub check_runs: Vec<CheckRun>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Combined {
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitStatus {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequiredChecks {
    #[serde(default)]
    pub contexts: Vec<String>,
    #[serde(default)]
    pub checks: Vec<RequiredCheck>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequiredCheck {
    pub context: String,
}

impl RequiredChecks {
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .contexts
            .iter()
            .cloned()
            .chain(self.checks.iter().map(|c| c.context.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// `GET /branches/{b}`: a branch, with a summary of its classic protection
/// that a token with Contents: read may see (the protection endpoints need
/// Administration: read).
#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    #[serde(default)]
    pub protection: Option<ProtectionSummary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProtectionSummary {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub required_status_checks: Option<ChecksSummary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChecksSummary {
    /// `off`, `non_admins` or `everyone`.
    #[serde(default)]
    pub enforcement_level: Option<String>,
    #[serde(default)]
    pub contexts: Vec<String>,
    #[serde(default)]
    pub checks: Vec<RequiredCheck>,
}

impl Branch {
    /// The required checks the summary names (none when protection or its
    /// checks are off).
    pub fn required_checks(&self) -> Vec<String> {
        let Some(p) = self.protection.as_ref().filter(|p| p.enabled) else {
            return Vec::new();
        };
        let Some(c) = p.required_status_checks.as_ref() else {
            return Vec::new();
        };
        if c.enforcement_level.as_deref() == Some("off") {
            return Vec::new();
        }
        RequiredChecks {
            contexts: c.contexts.clone(),
            checks: c.checks.clone(),
        }
        .names()
    }
}

/// `required_pull_request_reviews` of classic branch protection.
#[derive(Debug, Clone, Deserialize)]
pub struct RequiredReviews {
    #[serde(default)]
    pub required_approving_review_count: u32,
}

/// One active rule of a ruleset on a branch (`GET /rules/branches/{b}`).
/// Only the two kinds that make a merge wait are read; the others (deletion,
/// linear history, …) keep `kind` and nothing else.
#[derive(Debug, Clone, Deserialize)]
pub struct BranchRule {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub parameters: Option<RuleParameters>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleParameters {
    #[serde(default)]
    pub required_status_checks: Vec<RequiredCheck>,
    #[serde(default)]
    pub required_approving_review_count: Option<u32>,
}

/// What the rulesets on a branch require of a merge.
pub fn ruleset_requirements(rules: &[BranchRule]) -> (Vec<String>, u32) {
    let mut checks = Vec::new();
    let mut reviews = 0;
    for rule in rules {
        let Some(p) = &rule.parameters else { continue };
        match rule.kind.as_str() {
            "required_status_checks" => {
                checks.extend(p.required_status_checks.iter().map(|c| c.context.clone()));
            }
            "pull_request" => {
                reviews = reviews.max(p.required_approving_review_count.unwrap_or(0));
            }
            _ => {}
        }
    }
    (checks, reviews)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Merged {
    pub sha: String,
}
