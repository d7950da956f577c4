//! The GitHub forge: one pull request per task, merged on GitHub when the
//! repository's rules allow (docs/github.md).
//!
//! - `observe` lists the open pull requests of the base branch (one
//!   conditional request, answered `304` when nothing changed), reads the
//!   reviews of those whose task waits for them (again only when the pull
//!   request changed since), and asks about each pull request status knows
//!   that is no longer open (merged or closed).
//! - `propose` pushes `converge/<plan>/<task>` with a lease on the head
//!   converge pushed last (anything else there is someone else's: hands off),
//!   then opens the pull request or updates it in place (found again after a
//!   crash by its branch), labels it and sets the `converge/gate` status.
//! - `merge` reads the pull request; when GitHub says it is mergeable it
//!   merges with `sha` = the head the gate judged (GitHub's compare-and-swap:
//!   409 if the head moved); when blocked it says which required check is
//!   missing, pending or failed, and times out a check that never reports.
//!   A pull request that must be up to date with the base branch
//!   (`behind`) gets converge's own merge of the base into the gated head,
//!   and merges at that head (`merge.rs`).
//!   Never an admin bypass; rulesets, protection and workflows are only read.
//! - after the tick, `publish` labels and comments on the pull requests
//!   converge went hands-off on, and keeps the dashboard issue in line with
//!   STATUS.md.

pub mod api;
pub mod client;
pub mod dashboard;
pub mod hands_off;
mod merge;
pub mod publish;
mod reviews;
pub mod session;
mod state;

use std::collections::BTreeMap;

use gix::ObjectId;
use serde_json::json;

use super::{Forge, ForgeError, MergeRequest, Merging, Proposal, Proposed, Wanted};
use crate::git::{Pushed, Repo};
use crate::model::{CommitId, TaskKey};
use crate::observe::{ChangeObs, ChangeState, ForgeObs};
use crate::rundir::Layout;
use crate::spec::Github;
use crate::time::Timestamp;

use api::Pull;
use client::{Client, ClientError};

/// How long a merge that waits for checks waits before it is looked at again.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The hidden line in a pull request's body that names its task.
pub fn marker(key: &TaskKey) -> String {
    format!("<!-- converge:task {key} -->")
}

pub struct GithubForge<'a> {
    pub repo: &'a Repo,
    pub config: &'a Github,
    pub client: std::rc::Rc<Client>,
    pub base_branch: String,
    pub now: Timestamp,
    layout: Layout,
}

impl std::fmt::Debug for GithubForge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubForge")
            .field("repo", &self.config.repo)
            .finish_non_exhaustive()
    }
}

impl<'a> GithubForge<'a> {
    pub fn new(
        repo: &'a Repo,
        config: &'a Github,
        base_branch: &str,
        client: std::rc::Rc<Client>,
        now: Timestamp,
    ) -> Result<Self, ForgeError> {
        let layout = Layout::new(repo.common_dir());
        Ok(GithubForge {
            repo,
            config,
            client,
            base_branch: base_branch.to_owned(),
            now,
            layout,
        })
    }

    fn owner(&self) -> &str {
        self.config
            .repo
            .split_once('/')
            .map_or(self.config.repo.as_str(), |(o, _)| o)
    }

    /// The open pull requests into the base branch, oldest first.
    fn open_pulls(&self) -> Result<Vec<Pull>, ClientError> {
        let mut all = Vec::new();
        for page in 1..=50 {
            let pulls: Vec<Pull> = self.client.get(&format!(
                "/pulls?state=open&base={}&sort=created&direction=asc&per_page=100&page={page}",
                self.base_branch
            ))?;
            let full = pulls.len() == 100;
            all.extend(pulls);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// converge's pull requests among `pulls`, by task: from a branch
    /// `converge/<plan>/<task>` of this repository (not a fork's).
    fn mine(&self, pulls: Vec<Pull>) -> BTreeMap<TaskKey, Pull> {
        pulls
            .into_iter()
            .filter(|p| {
                p.head
                    .repo
                    .as_ref()
                    .is_none_or(|r| r.full_name.eq_ignore_ascii_case(&self.config.repo))
            })
            .filter_map(|p| crate::observe::key_of_branch(&p.head.name).map(|k| (k, p)))
            .collect()
    }

    fn observe_all(
        &self,
        wanted: &[Wanted],
    ) -> Result<(ForgeObs, BTreeMap<TaskKey, ChangeObs>), ClientError> {
        let mine = self.mine(self.open_pulls()?);
        let mut changes = BTreeMap::new();
        for (key, pull) in &mine {
            let Some(head) = commit(&pull.head.sha) else {
                continue;
            };
            changes.insert(
                key.clone(),
                ChangeObs {
                    number: pull.number,
                    head,
                    state: ChangeState::Open,
                    merged_as: None,
                    approved_by: None,
                    changes_requested: None,
                    update_of: None,
                },
            );
        }
        let mut noted = reviews::Reviews::load(&self.layout);
        let asked = wanted.iter().try_for_each(|w| {
            if let Some(change) = changes.get_mut(&w.key)
                && !w.heads.is_empty()
                && !w.heads.contains(&change.head)
            {
                match self.judge(change.head, &w.heads, &w.key) {
                    // git has converge's head on the branch: that is the
                    // change's head, whatever GitHub shows yet.
                    Ok(merge::Shown::Lagging(tip)) => change.head = tip,
                    Ok(merge::Shown::UpdateOf(of)) => change.update_of = Some(of),
                    Ok(merge::Shown::Theirs) => {}
                    Err(e) => {
                        tracing::warn!(key = %w.key, error = %e, "cannot fetch the change's branch");
                    }
                }
            }
            match (changes.get_mut(&w.key), w.number) {
                (Some(change), _) if w.reviews => {
                    // converge's update of the gated head with the base
                    // changes no line a reviewer saw: reviews of the gated
                    // head count at the update too.
                    let mut heads = vec![change.head];
                    let updated = w.heads.first().is_some_and(|g| *g != change.head)
                        && (w.heads.contains(&change.head) || change.update_of.is_some());
                    if updated {
                        heads.extend(w.heads.first());
                    }
                    let verdict = noted.read(&self.client, &mine[&w.key], &heads)?;
                    change.approved_by = verdict.approved_by;
                    change.changes_requested = verdict.changes_requested;
                }
                (None, Some(number)) => {
                    if let Some(change) = self.closed_change(&w.key, number)? {
                        changes.insert(w.key.clone(), change);
                    }
                }
                _ => {}
            }
            Ok::<(), ClientError>(())
        });
        // What was read is kept even when a later request failed.
        noted.save();
        asked?;
        let open = u32::try_from(mine.len()).unwrap_or(u32::MAX);
        Ok((ForgeObs::Observed { open }, changes))
    }

    /// A pull request status knows that is not open any more: merged (as
    /// which commit, noted for observe) or closed.
    fn closed_change(&self, key: &TaskKey, number: u64) -> Result<Option<ChangeObs>, ClientError> {
        let Some(pull) = self
            .client
            .get_optional::<Pull>(&format!("/pulls/{number}"))?
        else {
            return Ok(None);
        };
        let Some(head) = commit(&pull.head.sha) else {
            return Ok(None);
        };
        if pull.head.name != key.branch() {
            return Ok(None);
        }
        let merged_as = pull.merge_commit_sha.as_deref().and_then(commit);
        let state = match (pull.is_merged(), pull.state.as_str()) {
            (true, _) => ChangeState::Merged,
            (false, "open") => ChangeState::Open,
            _ => ChangeState::Closed,
        };
        if state == ChangeState::Merged
            && let Some(sha) = &merged_as
        {
            self.note_merge(key, *sha);
        }
        Ok(Some(ChangeObs {
            number,
            head,
            state,
            merged_as: merged_as.filter(|_| state == ChangeState::Merged),
            approved_by: None,
            changes_requested: None,
            update_of: None,
        }))
    }

    /// Notes the forge's word that `key` merged as `sha` (a note of
    /// converge's own; observe trusts it for merges without trailers).
    fn note_merge(&self, key: &TaskKey, sha: CommitId) {
        if let Err(e) = crate::rundir::records::write_forge_merge(&self.layout, key, sha) {
            tracing::warn!(%key, error = %e, "cannot note the forge's merge");
        }
    }

    /// Pushes the head with a lease on what converge pushed last.
    fn push(&self, p: &Proposal) -> Result<Option<String>, ForgeError> {
        let branch = p.key.branch();
        let head = ObjectId::from(p.head);
        match self.repo.push_with_lease(
            &self.config.remote,
            &branch,
            head,
            p.pushed.map(ObjectId::from),
        )? {
            Pushed::Ok => Ok(None),
            Pushed::Rejected { message } => {
                // A push that landed before a crash kept status from noting it.
                let theirs = self.repo.fetch_branch(&self.config.remote, &branch)?;
                if theirs == Some(head) {
                    return Ok(None);
                }
                // The branch is gone (deleted with its closed pull request):
                // nobody's work is there to keep; push it anew.
                if theirs.is_none()
                    && p.pushed.is_some()
                    && self
                        .repo
                        .push_with_lease(&self.config.remote, &branch, head, None)?
                        == Pushed::Ok
                {
                    return Ok(None);
                }
                let short =
                    theirs.map_or_else(|| "nothing".to_owned(), |t| t.to_string()[..7].to_owned());
                Ok(Some(format!(
                    "{branch} on {} is at {short}, not where converge left it ({message})",
                    self.config.remote
                )))
            }
        }
    }

    /// The open pull request of `branch`, if there is one (after a crash
    /// kept status from noting it).
    fn find_open(&self, branch: &str) -> Result<Option<u64>, ClientError> {
        let pulls: Vec<Pull> = self.client.get(&format!(
            "/pulls?state=open&head={}:{branch}&per_page=100",
            self.owner()
        ))?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.name == branch)
            .map(|p| p.number))
    }

    fn open_or_update(&self, p: &Proposal) -> Result<u64, ForgeError> {
        let branch = p.key.branch();
        let body = json!({ "title": p.title, "body": p.body });
        let known = match p.number {
            Some(n) => Some(n),
            None => self.find_open(&branch)?,
        };
        if let Some(number) = known {
            let reply = self.client.patch(&format!("/pulls/{number}"), &body)?;
            if reply.status == 200 {
                let pull: Pull = reply.json("PATCH", "/pulls")?;
                if pull.state == "open" {
                    return Ok(number);
                }
            }
        }
        let reply = self.client.post(
            "/pulls",
            &json!({ "title": p.title, "body": p.body, "head": branch, "base": p.base_branch }),
        )?;
        match reply.status {
            201 => Ok(reply.json::<Pull>("POST", "/pulls")?.number),
            _ => {
                // "A pull request already exists": the one to update.
                if let Some(number) = self.find_open(&branch)? {
                    self.client.patch(&format!("/pulls/{number}"), &body)?;
                    return Ok(number);
                }
                Err(reply.error("POST", "/pulls").into())
            }
        }
    }
}

impl Forge for GithubForge<'_> {
    fn observe(&self, wanted: &[Wanted]) -> (ForgeObs, BTreeMap<TaskKey, ChangeObs>) {
        match self.observe_all(wanted) {
            Ok(seen) => seen,
            Err(e) => (unavailable(&e), BTreeMap::new()),
        }
    }

    fn propose(&self, p: &Proposal) -> Result<Proposed, ForgeError> {
        if let Some(why) = self.push(p)? {
            return Ok(Proposed::HandsOff { why });
        }
        let number = self.open_or_update(p)?;
        if !self.config.labels.is_empty() {
            self.client
                .post(
                    &format!("/issues/{number}/labels"),
                    &json!({ "labels": self.config.labels }),
                )?
                .ok("POST", "/issues/labels")?;
        }
        self.client
            .post(
                &format!("/statuses/{}", p.head),
                &json!({
                    "state": "success",
                    "context": "converge/gate",
                    "description": status_description(&p.gate),
                }),
            )?
            .ok("POST", "/statuses")?;
        Ok(Proposed::Change { number })
    }

    fn merge(&self, r: &MergeRequest<'_>) -> Result<Merging, ForgeError> {
        self.merge_change(r)
    }

    fn close(
        &self,
        key: &TaskKey,
        number: u64,
        tip: Option<CommitId>,
        why: &str,
    ) -> Result<(), ForgeError> {
        let Some(tip) = tip else {
            let body = format!(
                "{why}\n\nIts branch holds commits converge did not make, so converge leaves this pull request and `{}` to you.",
                key.branch()
            );
            self.client
                .post(
                    &format!("/issues/{number}/comments"),
                    &json!({ "body": body }),
                )?
                .ok("POST", "/issues/comments")?;
            return Ok(());
        };
        self.client
            .post(
                &format!("/issues/{number}/comments"),
                &json!({ "body": why }),
            )?
            .ok("POST", "/issues/comments")?;
        self.client
            .patch(&format!("/pulls/{number}"), &json!({ "state": "closed" }))?
            .ok("PATCH", "/pulls")?;
        // Through git, with a lease: a branch someone pushed to since stays.
        let branch = key.branch();
        if let Pushed::Rejected { message } =
            self.repo
                .delete_with_lease(&self.config.remote, &branch, tip.into())?
        {
            tracing::warn!(%key, %message, "the branch moved since converge pushed it: kept");
        }
        Ok(())
    }
}

/// A commit status's description: GitHub takes at most 140 characters.
fn status_description(text: &str) -> String {
    if text.chars().count() <= 140 {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(139).collect();
    cut.push('…');
    cut
}

fn unavailable(e: &ClientError) -> ForgeObs {
    match e {
        ClientError::Cooling { until, why } => ForgeObs::Unavailable {
            why: why.clone(),
            until: Some(*until),
        },
        other => ForgeObs::Unavailable {
            why: crate::check::error_chain(other),
            until: None,
        },
    }
}

fn commit(sha: &str) -> Option<CommitId> {
    sha.parse().ok()
}

/// The token converge uses: `CONVERGE_GITHUB_TOKEN` (a GitHub App
/// installation token or a personal access token), else the Actions
/// `GITHUB_TOKEN`, which works but starts no workflows on the pull requests
/// it opens (so their required checks never report): a warning says so.
pub const TOKEN_VAR: &str = "CONVERGE_GITHUB_TOKEN";

pub fn token(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(token) = env(TOKEN_VAR).filter(|t| !t.trim().is_empty()) {
        return Some(token.trim().to_owned());
    }
    let token = env("GITHUB_TOKEN").filter(|t| !t.trim().is_empty())?;
    tracing::warn!(
        "using GITHUB_TOKEN: pull requests it opens or updates start no workflows, so required checks never report; set {TOKEN_VAR} to a GitHub App installation token or a personal access token"
    );
    Some(token.trim().to_owned())
}

/// Asks the GitHub forge about the tasks' changes and folds what it says into
/// `obs`: each change, and the merges it reports (a merge commit the base
/// branch contains) or confirms (status's `merged_as` of a merge without
/// converge's trailers).
pub fn observe_into(
    repo: &Repo,
    config: &Github,
    status: &crate::status::Status,
    spec: &crate::spec::Spec,
    obs: &mut crate::observe::Observation,
    session: &session::Session<'_>,
) -> Result<(), crate::git::GitError> {
    let Some(client) = session.client(repo.common_dir(), config) else {
        obs.forge = ForgeObs::Unavailable {
            why: format!("no GitHub token: set {TOKEN_VAR}"),
            until: None,
        };
        return Ok(());
    };
    let base_branch = spec.config.reconcile.base_branch.clone();
    let forge = match client
        .map_err(ForgeError::from)
        .and_then(|client| GithubForge::new(repo, config, &base_branch, client, session.now()))
    {
        Ok(forge) => forge,
        Err(e) => {
            obs.forge = ForgeObs::Unavailable {
                why: crate::check::error_chain(&e),
                until: None,
            };
            return Ok(());
        }
    };
    let wanted = wanted(spec, status, obs);
    let (forge_obs, changes) = forge.observe(&wanted);
    obs.forge = forge_obs;
    let base: ObjectId = obs.base_tip.into();
    for (key, change) in changes {
        let entry = obs.tasks.entry(key.clone()).or_default();
        if change.state == ChangeState::Merged
            && let Some(merged_as) = change.merged_as
            && repo.is_ancestor(merged_as.into(), base)?
        {
            entry.merged = true;
            entry.merged_as = Some(merged_as);
            entry.unbacked = None;
        }
        entry.change = Some(change);
    }
    Ok(())
}

/// The tasks whose changes the forge is asked about: those status records a
/// change for that are not known merged (or whose merge git alone does not
/// back), and those with a branch and a passed gate; reviews for those
/// waiting at a gated head.
fn wanted(
    spec: &crate::spec::Spec,
    status: &crate::status::Status,
    obs: &crate::observe::Observation,
) -> Vec<Wanted> {
    use crate::status::Phase;
    let mut out = Vec::new();
    for (plan_id, plan) in &status.plans {
        for (task, st) in &plan.tasks {
            let key = TaskKey::new(plan_id, task);
            let ob = obs.task(&key);
            let merged = ob.is_some_and(|o| o.merged && o.unbacked.is_none());
            let gated = matches!(st.phase, Phase::Passed | Phase::AwaitingApproval);
            if merged || (st.change.is_none() && !gated) {
                continue;
            }
            let in_spec = spec
                .plans
                .get(plan_id)
                .is_some_and(|p| p.task(task).is_some());
            out.push(Wanted {
                key,
                number: st.change.as_ref().map(|c| c.number),
                reviews: gated && in_spec,
                // None once hands-off: nothing on the branch is converge's.
                heads: match &st.change {
                    Some(c) if c.hands_off.is_some() => Vec::new(),
                    change => st
                        .head
                        .into_iter()
                        .chain(
                            change
                                .iter()
                                .flat_map(|c| [Some(c.pushed), c.updated])
                                .flatten(),
                        )
                        .collect(),
                },
            });
        }
    }
    out
}
