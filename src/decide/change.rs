//! The GitHub forge's part of deciding a passed task (`passed`): what holds
//! its pull request back (the forge cannot be asked, someone else pushed,
//! it was closed), a review asking for changes, and when the work is
//! proposed. Pure, like the rest of decide.

use crate::model::CommitId;
use crate::observe::{ChangeObs, ChangeState, ForgeObs};
use crate::status::{ChangeRecord, TaskStatus};
use crate::time::Timestamp;

use super::classify::{Ctx, Subject, plan_blocks_start, rejected};
use super::{Action, Candidate, Reason};

/// What the forge decides for a passed task at `head` before approval and
/// merging, if anything: a wait, a rejection (changes requested) or a
/// proposal.
pub(super) fn proposal(c: &Ctx<'_>, head: CommitId) -> Option<Candidate> {
    let (s, st) = (c.s, c.s.st);
    if let Some(waits) = change_blocks(c, head) {
        return Some(waits);
    }
    if let Some(change) = change_at(s, head)
        && let Some(feedback) = &change.changes_requested
    {
        let why = Reason::ChangesRequested {
            number: change.number,
            by: feedback.by.clone(),
            feedback: feedback.text.clone(),
        };
        return Some(rejected(c, why));
    }
    if wants_proposal(s, head) {
        if let Some(why) = plan_blocks_start(s.plan) {
            return Some(c.wait(st.phase, why));
        }
        let opens =
            s.ob.change
                .as_ref()
                .is_none_or(|ch| ch.state != ChangeState::Open);
        return Some(c.act(
            st.phase,
            Action::Propose {
                key: s.key.clone(),
                head,
                opens,
            },
            Reason::GatePassed,
        ));
    }
    None
}

/// Whether the passed work at `head` is proposed (again). It is until
/// status records the proposal done at this head: a proposal cut short
/// after its push (labels or the gate's status not set), or whose record
/// was lost with the tick's status push or a crash, is proposed again, which
/// finds the pull request by its branch and records it. And it is again when
/// the forge shows no open change at `head`, unless the forge was not asked
/// this tick: then it shows nothing, and status's record of the push stands.
fn wants_proposal(s: &Subject<'_>, head: CommitId) -> bool {
    let recorded = s.st.change.as_ref().is_some_and(|r| r.pushed == head);
    let shown = change_at(s, head).is_some();
    !recorded || (!shown && !matches!(s.obs.forge, ForgeObs::NotAsked))
}

/// The task's open change at `head`, as the forge reports it: at `head`
/// itself, or at converge's update of it with the base branch.
pub(super) fn change_at<'a>(s: &'a Subject<'_>, head: CommitId) -> Option<&'a ChangeObs> {
    s.ob.change
        .as_ref()
        .filter(|ch| ch.state == ChangeState::Open && updates(s.st, ch, head))
}

/// Whether converge stands behind the change's head: the gated `head`, what
/// it pushed last, or its update of either with the base branch.
fn converges(record: &ChangeRecord, ch: &ChangeObs, head: CommitId) -> bool {
    let ours = |c: CommitId| c == head || c == record.pushed || Some(c) == record.updated;
    ours(ch.head) || ch.update_of.is_some_and(ours)
}

/// Whether the change's head is `head`, or converge's update of it with the
/// base branch (recorded in status, or recognised by the forge after converge
/// stopped before recording it).
pub(super) fn updates(st: &TaskStatus, ch: &ChangeObs, head: CommitId) -> bool {
    let record = st.change.as_ref().filter(|r| r.pushed == head);
    ch.head == head
        || record.is_some_and(|r| Some(ch.head) == r.updated)
        || ch
            .update_of
            .is_some_and(|of| of == head || record.is_some_and(|r| Some(of) == r.updated))
}

/// What holds a passed task's change back before anything else: the forge
/// cannot be asked; someone else pushed to its branch; it was closed by
/// someone else.
pub(super) fn change_blocks(c: &Ctx<'_>, head: CommitId) -> Option<Candidate> {
    let (s, st) = (c.s, c.s.st);
    if let ForgeObs::Unavailable { why, until } = &s.obs.forge {
        return Some(c.wait(
            st.phase,
            Reason::ForgeCooling {
                why: why.clone(),
                until: *until,
            },
        ));
    }
    let record = st.change.as_ref()?;
    let change = s.ob.change.as_ref().filter(|ch| ch.number == record.number);
    // Work newer than the closed pull request showed: a person asked for
    // another attempt (`converge retry`, an edit of the task) after it was
    // closed. It goes to a new pull request.
    let closed = change.is_some_and(|ch| ch.state == ChangeState::Closed);
    if closed && head != record.pushed && Some(head) != record.updated {
        return None;
    }
    if let Some(why) = &record.hands_off {
        return Some(c.wait(
            st.phase,
            Reason::HandsOff {
                number: record.number,
                why: why.clone(),
            },
        ));
    }
    let change = change?;
    match change.state {
        ChangeState::Closed => Some(c.wait(
            st.phase,
            Reason::ChangeClosed {
                number: change.number,
            },
        )),
        ChangeState::Open if !converges(record, change, head) => Some(c.wait(
            st.phase,
            Reason::HandsOff {
                number: change.number,
                why: format!(
                    "someone else pushed {} to {}",
                    change.head.short(),
                    s.key.branch()
                ),
            },
        )),
        _ => None,
    }
}

/// Why the forge could not be asked this tick, and until when, if it could
/// not (cooling, no token, or a read-only command that does not ask).
pub(super) fn forge_unanswered(forge: &ForgeObs) -> Option<(String, Option<Timestamp>)> {
    match forge {
        ForgeObs::Unavailable { why, until } => Some((why.clone(), *until)),
        ForgeObs::NotAsked => Some(("not asked by this command".to_owned(), None)),
        ForgeObs::Local | ForgeObs::Observed { .. } => None,
    }
}
