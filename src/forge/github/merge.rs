//! Merging a task's pull request on GitHub: at the head converge gated (or
//! its own update of that head with the base branch), when GitHub says it
//! can; otherwise why it waits, from the base branch's required checks and
//! reviews (classic protection and rulesets); and keeping a pull request
//! that must be up to date with the base branch up to date.

use std::collections::BTreeMap;

use gix::ObjectId;
use serde_json::json;

use super::api::{self, Pull};
use super::client::ClientError;
use super::{GithubForge, RECHECK, commit};

/// The longest a waiting pull request goes unseen.
const RECHECK_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 60);
use crate::forge::{ForgeError, MergeOutcome, MergeRequest, Merging};
use crate::git::{Pushed, TrialMerge};
use crate::model::CommitId;

impl GithubForge<'_> {
    pub(super) fn merge_change(&self, r: &MergeRequest<'_>) -> Result<Merging, ForgeError> {
        let done = |outcome| Merging {
            outcome,
            evidence: BTreeMap::new(),
        };
        let Some(number) = r.change else {
            return Ok(done(MergeOutcome::Deferred("no pull request yet".into())));
        };
        let pull: Pull = self.client.get(&format!("/pulls/{number}"))?;
        if pull.is_merged() {
            let Some(sha) = pull.merge_commit_sha.as_deref().and_then(commit) else {
                return Ok(done(MergeOutcome::Deferred(format!(
                    "pull request #{number} is merged, and GitHub names no merge commit yet"
                ))));
            };
            self.note_merge(r.key, sha);
            self.follow_base(r)?;
            return Ok(done(MergeOutcome::Merged { commit: sha.into() }));
        }
        // Retargeted by a person: merging would put the gated work into a
        // branch the plan does not name.
        if pull.base.name != r.base_branch && !pull.is_merged() {
            return Ok(done(MergeOutcome::Waiting {
                why: format!(
                    "pull request #{number} targets `{}`, not `{}`: converge merges only into its base branch; retarget it back",
                    pull.base.name, r.base_branch
                ),
                until: self.recheck(r.waiting_since),
            }));
        }
        if pull.state != "open" {
            return Ok(done(MergeOutcome::Deferred(format!(
                "pull request #{number} is closed"
            ))));
        }
        // The gated head, or converge's own update of it with the base.
        let ours: Vec<CommitId> = [Some(r.head), r.updated].into_iter().flatten().collect();
        let Some(shown) = commit(&pull.head.sha) else {
            return Ok(done(MergeOutcome::HeadMoved));
        };
        let head = if ours.contains(&shown) {
            shown
        } else {
            match self.judge(shown, &ours, r.key)? {
                Shown::UpdateOf(_) => shown,
                Shown::Lagging(tip) => {
                    return Ok(done(MergeOutcome::Deferred(format!(
                        "pull request #{number} does not show converge's push of {} yet",
                        tip.short()
                    ))));
                }
                Shown::Theirs => return Ok(done(MergeOutcome::HeadMoved)),
            }
        };
        let state = pull.mergeable_state.unwrap_or_else(|| "unknown".into());
        let outcome = match state.as_str() {
            "clean" | "unstable" | "has_hooks" => self.do_merge(r, number, head)?,
            "dirty" => MergeOutcome::Conflict {
                paths: vec![format!(
                    "(GitHub reports conflicts on pull request #{number})"
                )],
            },
            other => self.diagnose(r, number, head, other)?,
        };
        Ok(done(outcome))
    }

    /// What the base branch requires of a merge, from classic branch
    /// protection and from rulesets: the required checks (sorted, once each)
    /// and the approving reviews. The checks come from the branch's summary
    /// (Contents: read) and the rulesets (Metadata: read); the review count
    /// of classic protection needs Administration: read, and counts as none
    /// when the token cannot read it (404 or 403).
    fn requirements(&self, base: &str) -> Result<(Vec<String>, u32), ClientError> {
        // The branch's summary, which Contents: read shows, names the
        // required checks; the protection endpoint would need more.
        let mut checks = self
            .client
            .get_optional::<api::Branch>(&format!("/branches/{base}"))?
            .map(|b| b.required_checks())
            .unwrap_or_default();
        let mut reviews = self
            .protection::<api::RequiredReviews>(base, "required_pull_request_reviews")?
            .map_or(0, |r| r.required_approving_review_count);
        let rules = self
            .client
            .get_optional::<Vec<api::BranchRule>>(&format!("/rules/branches/{base}?per_page=100"))?
            .unwrap_or_default();
        let (ruled, ruled_reviews) = api::ruleset_requirements(&rules);
        checks.extend(ruled);
        checks.sort();
        checks.dedup();
        reviews = reviews.max(ruled_reviews);
        Ok((checks, reviews))
    }

    /// A part of `base`'s classic protection; `None` when it is off (404) or
    /// the token may not read it (403: a token without Administration: read).
    fn protection<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        what: &str,
    ) -> Result<Option<T>, ClientError> {
        match self
            .client
            .get_optional::<T>(&format!("/branches/{base}/protection/{what}"))
        {
            Err(ClientError::Api { status: 403, .. }) => Ok(None),
            other => other,
        }
    }

    /// Why a blocked pull request waits, from the required checks.
    fn diagnose(
        &self,
        r: &MergeRequest<'_>,
        number: u64,
        at: CommitId,
        state: &str,
    ) -> Result<MergeOutcome, ForgeError> {
        let head = at.to_string();
        let short = &head[..7];
        let (required, reviews) = self.requirements(r.base_branch)?;
        let runs: api::CheckRuns = self
            .client
            .get(&format!("/commits/{head}/check-runs?per_page=100"))?;
        let combined: api::Combined = self.client.get(&format!("/commits/{head}/status"))?;
        let mut missing = Vec::new();
        let mut pending = Vec::new();
        for name in &required {
            let run = runs.check_runs.iter().rev().find(|c| c.name == *name);
            let status = combined.statuses.iter().find(|s| s.context == *name);
            match (run, status) {
                (Some(run), _) if run.status == "completed" => {
                    let conclusion = run.conclusion.clone().unwrap_or_default();
                    if !matches!(conclusion.as_str(), "success" | "neutral" | "skipped") {
                        let out = run.output.as_ref();
                        let tail = out
                            .map(|o| {
                                [o.title.clone(), o.summary.clone()]
                                    .into_iter()
                                    .flatten()
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            })
                            .unwrap_or_default();
                        return Ok(MergeOutcome::ChecksFailed {
                            name: name.clone(),
                            ending: format!(
                                "required check `{name}` concluded {conclusion} on {short} (pull request #{number})"
                            ),
                            tail,
                        });
                    }
                }
                (Some(_), _) => pending.push(format!("`{name}` (running)")),
                (None, Some(s)) if s.state == "success" => {}
                (None, Some(s)) if matches!(s.state.as_str(), "failure" | "error") => {
                    return Ok(MergeOutcome::ChecksFailed {
                        name: name.clone(),
                        ending: format!(
                            "required status `{name}` is {} on {short} (pull request #{number})",
                            s.state
                        ),
                        tail: s.description.clone().unwrap_or_default(),
                    });
                }
                (None, Some(_)) => pending.push(format!("`{name}` (pending)")),
                (None, None) => missing.push(name.clone()),
            }
        }
        // No required check failed: a branch that must be up to date is
        // updated now (its checks run again there anyway).
        if state == "behind" {
            return self.update_branch(r, number, at);
        }
        let since = r.waiting_since.unwrap_or(self.now);
        let waited = self.now.unix().saturating_sub(since.unix());
        let timeout = i64::try_from(self.config.checks_timeout.as_secs()).unwrap_or(i64::MAX);
        if (!missing.is_empty() || !pending.is_empty()) && waited >= timeout {
            let minutes = waited / 60;
            let why = match missing.first() {
                Some(name) => format!(
                    "no check `{name}` reported for {minutes}m on {short} (pull request #{number}): does a workflow run on pull_request, and does the token converge uses start workflows (the Actions GITHUB_TOKEN does not)?"
                ),
                None => format!(
                    "required checks {} did not finish in {minutes}m on {short} (pull request #{number})",
                    pending.join(", ")
                ),
            };
            return Ok(MergeOutcome::TimedOut { why });
        }
        let mut parts: Vec<String> = missing
            .iter()
            .map(|n| format!("`{n}` (not reported)"))
            .collect();
        parts.extend(pending);
        let why = if !parts.is_empty() {
            format!(
                "{}{} on {short}",
                crate::status::CHECKS_WAIT,
                parts.join(", ")
            )
        } else {
            match state {
                    "draft" => "the pull request is a draft".to_owned(),
                "unknown" => "GitHub is still computing whether it can merge".to_owned(),
                _ if reviews > 0 => format!(
                    "GitHub says it is blocked: the base branch requires {reviews} approving review{} from writers at the head, or another branch rule is not satisfied (required checks passed)",
                    if reviews == 1 { "" } else { "s" }
                ),
                _ => "GitHub says it is blocked: a required review or another branch rule is not satisfied (required checks passed)".to_owned(),
            }
        };
        Ok(MergeOutcome::Waiting {
            why,
            until: self.recheck(r.waiting_since),
        })
    }

    fn do_merge(
        &self,
        r: &MergeRequest<'_>,
        number: u64,
        head: CommitId,
    ) -> Result<MergeOutcome, ForgeError> {
        let (title, message) = r.message.split_once('\n').unwrap_or((r.message, ""));
        let reply = self.client.put(
            &format!("/pulls/{number}/merge"),
            &json!({
                "sha": head.to_string(),
                "merge_method": self.config.merge_method.as_str(),
                "commit_title": title,
                "commit_message": format!("{}\nConverge-Change: #{number}\n", message.trim_matches('\n')),
            }),
        )?;
        match reply.status {
            200 => {
                let merged: api::Merged = reply.json("PUT", "/merge")?;
                let Some(sha) = commit(&merged.sha) else {
                    return Ok(MergeOutcome::Deferred(format!(
                        "GitHub merged pull request #{number} as `{}`, which is no commit id",
                        merged.sha
                    )));
                };
                self.note_merge(r.key, sha);
                // The branch is done with; GitHub may have deleted it already.
                let _gone = self
                    .client
                    .delete(&format!("/git/refs/heads/{}", r.key.branch()));
                self.follow_base(r)?;
                Ok(MergeOutcome::Merged { commit: sha.into() })
            }
            409 => Ok(MergeOutcome::HeadMoved),
            405 => Ok(MergeOutcome::Waiting {
                why: format!("GitHub refused the merge: {}", reply.message()),
                until: self.recheck(r.waiting_since),
            }),
            status => Ok(MergeOutcome::Deferred(format!(
                "GitHub answered {status} to merging pull request #{number}: {}",
                reply.message()
            ))),
        }
    }

    /// After a merge on GitHub: fetches the base branch and fast-forwards the
    /// local one to it (the tick records on top of it: with status on the
    /// base branch, its commit goes after the merge). A local base that is
    /// not behind the fetched one is left as it is.
    fn follow_base(&self, r: &MergeRequest<'_>) -> Result<(), ForgeError> {
        let Some(tip) = self.repo.fetch_branch(&self.config.remote, r.base_branch)? else {
            return Ok(());
        };
        let local = self.repo.branch_tip(r.base_branch)?;
        if local == Some(r.base) && tip != r.base && self.repo.is_ancestor(r.base, tip)? {
            self.repo.advance_branch(
                r.base_branch,
                r.base,
                tip,
                &format!("converge: {} merged on GitHub", r.key),
            )?;
        }
        Ok(())
    }

    /// When a waiting pull request is looked at again: a minute after its
    /// wait began, then after half the time it has waited, at most every 30
    /// minutes, and no later than its `checks_timeout` ends. A long wait (a
    /// review) costs a few status commits, not one a minute.
    fn recheck(&self, since: Option<crate::time::Timestamp>) -> crate::time::Timestamp {
        let since = since.unwrap_or(self.now);
        let waited = u64::try_from(self.now.unix().saturating_sub(since.unix())).unwrap_or(0);
        let wait = std::time::Duration::from_secs(waited / 2).clamp(RECHECK, RECHECK_MAX);
        let mut at = self.now.plus(wait);
        let timeout = since.plus(self.config.checks_timeout);
        if timeout > self.now && timeout < at {
            at = timeout;
        }
        at
    }

    /// Brings a pull request GitHub calls `behind` up to date: merges the
    /// base branch into its head `at` (the gated work, nothing else; a
    /// conflict fails the attempt like GitHub's `dirty`) and pushes that
    /// with a lease on `at`. A rebase merge cannot take a merge commit: with
    /// `merge_method = "rebase"` the pull request waits, saying so.
    fn update_branch(
        &self,
        r: &MergeRequest<'_>,
        number: u64,
        at: CommitId,
    ) -> Result<MergeOutcome, ForgeError> {
        let remote = &self.config.remote;
        if self.config.merge_method == crate::spec::MergeMethod::Rebase {
            return Ok(MergeOutcome::Waiting {
                why: format!(
                    "GitHub requires the branch to be up to date with {}; converge updates a branch by merging the base into it, which `merge_method = \"rebase\"` cannot merge: use merge or squash, or update pull request #{number} yourself (converge then keeps its hands off it)",
                    r.base_branch
                ),
                until: self.recheck(r.waiting_since),
            });
        }
        let Some(base) = self.repo.fetch_branch(remote, r.base_branch)? else {
            return Ok(MergeOutcome::Deferred(format!(
                "{remote} has no branch {}",
                r.base_branch
            )));
        };
        let ours = ObjectId::from(at);
        let tree = match self.repo.trial_merge(base, ours)? {
            TrialMerge::Clean { tree } => tree,
            TrialMerge::Conflicts { paths } => return Ok(MergeOutcome::Conflict { paths }),
        };
        let branch = r.key.branch();
        let message = format!(
            "converge: update {branch} with {base_branch}\n\nGitHub requires pull request #{number} to be up to date with {base_branch}: this merges {base_branch} into the work converge gated, and changes nothing else.\n\nConverge-Action: {UPDATE}\nConverge-Plan: {plan}\nConverge-Task: {task}\nConverge-Attempt: {attempt}\n",
            base_branch = r.base_branch,
            plan = r.key.plan,
            task = r.key.task,
            attempt = r.attempt,
        );
        let update = self
            .repo
            .write_commit(tree, &[ours, base], &message, r.signer)?;
        match self
            .repo
            .push_with_lease(remote, &branch, update, Some(ours))?
        {
            Pushed::Ok => {
                // A crash here leaves the update unrecorded: `update_of`
                // knows it again.
                crate::crash::point("after-update-push");
                let short = &ours.to_string()[..7];
                self.client.post(
                    &format!("/statuses/{update}"),
                    &json!({
                        "state": "success",
                        "context": "converge/gate",
                        "description": format!("converge's gate passed on {short}; this merges {} into it", r.base_branch),
                    }),
                )?;
                Ok(MergeOutcome::Updated {
                    head: crate::git::commit_id(update)?,
                    why: format!(
                        "pull request #{number} was behind {}: converge merged it in as {} and pushed that; it merges once its checks pass there",
                        r.base_branch,
                        &update.to_string()[..7]
                    ),
                })
            }
            Pushed::Rejected { message } => Ok(MergeOutcome::Deferred(format!(
                "{branch} moved on {remote} while converge updated it ({message})"
            ))),
        }
    }

    /// What a change's head that is none of `heads` (those converge stands
    /// behind) is: GitHub's view lagging behind converge's own push (git has
    /// one of `heads` on the branch; GitHub shows a new head some moments
    /// after a push), converge's update of one of them, or someone else's.
    /// The branch is fetched once, which also brings the head's commit here.
    pub(super) fn judge(
        &self,
        head: CommitId,
        heads: &[CommitId],
        key: &crate::model::TaskKey,
    ) -> Result<Shown, crate::git::GitError> {
        let tip = self.repo.fetch_branch(&self.config.remote, &key.branch())?;
        if let Some(tip) = tip.map(crate::git::commit_id).transpose()?
            && heads.contains(&tip)
        {
            return Ok(Shown::Lagging(tip));
        }
        Ok(match self.update_of(head, heads, key) {
            Some(of) => Shown::UpdateOf(of),
            None => Shown::Theirs,
        })
    }

    /// The commit `head` is converge's update of, if it is one: of one of
    /// `heads` (those converge stands behind), with a commit of the base
    /// branch, its tree exactly the clean merge of the two, and converge's
    /// trailer. After converge stopped between pushing an update and
    /// recording it, this is how it knows its own update again; whoever made
    /// such a commit, it holds the gated work and the base and nothing else.
    fn update_of(
        &self,
        head: CommitId,
        heads: &[CommitId],
        key: &crate::model::TaskKey,
    ) -> Option<CommitId> {
        let check = || -> Result<Option<CommitId>, crate::git::GitError> {
            let id = ObjectId::from(head);
            let Some((parents, message)) = self.repo.commit_parents(id)? else {
                return Ok(None);
            };
            let [of, base] = parents[..] else {
                return Ok(None);
            };
            let trailer = format!("\nConverge-Action: {UPDATE}\n");
            let of_id = crate::git::commit_id(of)?;
            if !heads.contains(&of_id) || !message.contains(&trailer) {
                return Ok(None);
            }
            let Some(tip) = self
                .repo
                .fetch_branch(&self.config.remote, &self.base_branch)?
            else {
                return Ok(None);
            };
            if !self.repo.is_ancestor(base, tip)? {
                return Ok(None);
            }
            let clean = match self.repo.trial_merge(base, of)? {
                TrialMerge::Clean { tree } => tree == self.repo.tree_of(id)?,
                TrialMerge::Conflicts { .. } => false,
            };
            Ok(clean.then_some(of_id))
        };
        check().unwrap_or_else(|e| {
            tracing::warn!(%key, error = %e, "cannot tell whether the pull request's head is converge's update");
            None
        })
    }
}

/// A change's head that is none of those converge stands behind, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shown {
    /// git has converge's head (this one) on the branch: GitHub lags.
    Lagging(CommitId),
    /// converge's update of this head with the base branch.
    UpdateOf(CommitId),
    /// Someone else's.
    Theirs,
}

/// The `Converge-Action` of converge's update of a task branch with the base.
pub const UPDATE: &str = "update-branch";
