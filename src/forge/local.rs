//! The local forge: merges into the base branch of this repository. A trial
//! merge of the task's head into the base; a merge commit; `[merge].invariants`
//! run on it in a confined checkout converge makes of it; then the base advances by
//! compare-and-swap from the tip the tick read (`updateInstead` keeps a
//! person's checkout of the base in step, and defers when it has changes).

use std::collections::BTreeMap;

use gix::ObjectId;

use super::{Forge, ForgeError, MergeOutcome, MergeRequest, Merging, Proposal, Proposed, Wanted};
use crate::agent::Redactor;
use crate::check::CheckResult;
use crate::check::confine::{Confinement, GateCheckout};
use crate::git::{GitError, Repo, TrialMerge};
use crate::model::TaskKey;
use crate::observe::{ChangeObs, ForgeObs};
use crate::rundir::{Layout, layout};
use crate::spec::Invariant;

pub struct LocalForge<'a> {
    pub repo: &'a Repo,
    /// `[merge].invariants`, resolved.
    pub invariants: Vec<&'a Invariant>,
    /// Masks secrets in the checks' logs.
    pub redactor: &'a Redactor,
    /// Where and how the checks run.
    pub confinement: &'a Confinement,
}

impl std::fmt::Debug for LocalForge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalForge").finish_non_exhaustive()
    }
}

impl LocalForge<'_> {
    /// Runs `[merge].invariants` on `commit` in a checkout converge makes of
    /// it, confined like the gate's (see [`crate::check::confine`]).
    fn check(&self, r: &MergeRequest<'_>, commit: ObjectId) -> Result<Vec<CheckResult>, GitError> {
        if let Some(message) = self.confinement.refusal() {
            return Ok(vec![unconfined(&self.invariants, message)]);
        }
        let checkout = GateCheckout::make(self.repo, commit, self.confinement)?;
        let rundir = Layout::new(self.repo.common_dir());
        let log_dir = layout::merge_logs(&rundir.run(r.key, r.attempt));
        let results = self
            .invariants
            .iter()
            .map(|inv| checkout.run(inv, Some(&log_dir), self.redactor))
            .collect();
        checkout.remove()?;
        Ok(results)
    }
}

/// The failed result of `[merge].invariants` that could not run confined.
fn unconfined(invariants: &[&Invariant], message: String) -> CheckResult {
    CheckResult {
        name: invariants
            .first()
            .map_or_else(String::new, |i| i.name.clone()),
        passed: false,
        advisory: false,
        exit_code: None,
        ending: message.clone(),
        duration: std::time::Duration::ZERO,
        output_tail: message,
        log: None,
        log_digest: String::new(),
    }
}

impl Forge for LocalForge<'_> {
    fn observe(&self, _wanted: &[Wanted]) -> (ForgeObs, BTreeMap<TaskKey, ChangeObs>) {
        (ForgeObs::Local, BTreeMap::new())
    }

    fn propose(&self, _proposal: &Proposal) -> Result<Proposed, ForgeError> {
        Err(ForgeError::NoChanges("propose"))
    }

    fn merge(&self, r: &MergeRequest<'_>) -> Result<Merging, ForgeError> {
        let done = |outcome| Merging {
            outcome,
            evidence: BTreeMap::new(),
        };
        let tip = self.repo.branch_tip(&r.key.branch())?;
        let wanted = ObjectId::from(r.head);
        let Some(head) = tip.filter(|t| *t == wanted) else {
            return Ok(done(MergeOutcome::HeadMoved));
        };
        let tree = match self.repo.trial_merge(r.base, head)? {
            TrialMerge::Clean { tree } => tree,
            TrialMerge::Conflicts { paths } => return Ok(done(MergeOutcome::Conflict { paths })),
        };
        let commit = self
            .repo
            .write_commit(tree, &[r.base, head], r.message, r.signer)?;
        crate::crash::point("mid-merge");

        let mut evidence = BTreeMap::new();
        if !self.invariants.is_empty() {
            let results = self.check(r, commit)?;
            evidence = results
                .iter()
                .map(|result| (result.name.clone(), result.evidence(tree)))
                .collect();
            if let Some(failed) = results.iter().find(|r| r.blocks()) {
                return Ok(Merging {
                    outcome: MergeOutcome::ChecksFailed {
                        name: failed.name.clone(),
                        ending: failed.ending.clone(),
                        tail: failed.output_tail.clone(),
                    },
                    evidence,
                });
            }
        }
        let outcome = match self.repo.advance_branch(
            r.base_branch,
            r.base,
            commit,
            &format!("converge: merge {}", r.key),
        ) {
            Ok(_) => MergeOutcome::Merged { commit },
            Err(e @ GitError::Dirty { .. }) => MergeOutcome::Deferred(format!(
                "{e}; commit or stash them (`git stash push -- <path>`), or run converge in a clone of its own; the merge goes ahead on the first tick they are out of the way"
            )),
            Err(GitError::Conflict { .. }) => MergeOutcome::BaseMoved,
            Err(other) => return Err(other.into()),
        };
        Ok(Merging { outcome, evidence })
    }

    fn close(
        &self,
        _key: &TaskKey,
        _number: u64,
        _tip: Option<crate::model::CommitId>,
        _why: &str,
    ) -> Result<(), ForgeError> {
        Err(ForgeError::NoChanges("close"))
    }
}
