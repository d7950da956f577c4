//! Reading a finished planner attempt back into the loop: its cost, a rate
//! limit, and its output, validated and committed on the base branch as
//! converge (a proposal through the enqueue intent, a new capabilities.md,
//! a review document) or refused and counted, with the reason in the loop's
//! history. Every commit here is idempotent: a step repeated after a crash
//! finds it made and goes on.

use crate::act::planner::Ended;
use crate::harness::outcome::Ending;
use crate::intent::{Base, IntentError};
use crate::status::record::{self, Change, Message};

use super::decide::{counters_on, proposal_hash};
use super::prompt::{body_of, title_of};
use super::state::{Inflight, LoopPhase, LoopState, RunKind};
use super::step::Ctx;
use crate::runtime::tick::TickError;

/// capabilities.md may be at most this long.
pub const MAX_CAPABILITIES: usize = 64 * 1024;

/// Reads `ended` into `st`. `Ok(None)`: the base branch moved under a
/// commit; nothing changed and the next tick reads the attempt again.
pub(super) fn harvest(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    ended: &Ended,
) -> Result<Option<String>, TickError> {
    let now = ctx.options.now;
    let what = format!("{} {}", inflight.kind.as_str(), inflight.run);
    // Its cost counts whatever came of it.
    let cost = ended
        .summary
        .cost_usd
        .filter(|c| *c > 0.0)
        .unwrap_or_else(|| {
            crate::harness::prices::cost(
                &ctx.spec.config.prices,
                ctx.spec.config.autonomy.model.as_deref(),
                ended.summary.tokens_in,
                ended.summary.tokens_out,
            )
        });
    let outcome = match crate::harness::outcome::ending(&ended.summary, ended.exit_code, now) {
        Some(Ending::RateLimited { until, message }) => {
            st.cooldown_until = Some(until);
            Verdict::Neutral(format!("{what} was rate-limited until {until}: {message}"))
        }
        _ if ended.refused.is_some() => Verdict::Refused(format!(
            "{what}'s output was refused: {}",
            ended.refused.clone().unwrap_or_default()
        )),
        _ if ended.files.is_empty() => Verdict::Refused(format!(
            "{what} left no output (exit code {}{}){}",
            ended
                .exit_code
                .map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            if ended.done {
                ""
            } else {
                ", no `converge done`"
            },
            if ended.tail.is_empty() {
                String::new()
            } else {
                format!("; its log ends: {}", ended.tail.replace('\n', " | "))
            }
        )),
        _ => match file(ctx, st, inflight, ended, &what)? {
            Some(verdict) => verdict,
            None => return Ok(None),
        },
    };
    st.today = counters_on(st, now);
    st.today.usd += cost;
    st.today.tokens += ended.summary.tokens_in + ended.summary.tokens_out;
    st.usd_total += cost;
    let line = match outcome {
        Verdict::Accepted(line) => {
            st.consecutive_refusals = 0;
            line
        }
        Verdict::Neutral(line) => line,
        Verdict::Refused(line) => {
            st.consecutive_refusals += 1;
            line
        }
    };
    let line = if cost > 0.0 && cost < 0.01 {
        format!("{line} (cost ${cost:.4})")
    } else {
        format!("{line} (cost ${cost:.2})")
    };
    st.note(now, line.clone());
    st.last = Some(super::state::LastRun {
        run: inflight.run,
        kind: inflight.kind,
        ended_at: now,
        verdict: line.clone(),
    });
    Ok(Some(line))
}

enum Verdict {
    Accepted(String),
    /// Neither filed nor refused (a rate limit).
    Neutral(String),
    Refused(String),
}

/// Files what the attempt left, by its kind.
fn file(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    ended: &Ended,
    what: &str,
) -> Result<Option<Verdict>, TickError> {
    let now = ctx.options.now;
    let get = |name: &str| {
        ended
            .files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    match inflight.kind {
        RunKind::GapAnalysis => {
            if let Some(why) = get("goal-met.md") {
                if get("item.md").is_some() {
                    return Ok(Some(Verdict::Refused(format!(
                        "{what} left both an item and a goal-met verdict"
                    ))));
                }
                let why = why
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                st.phase = LoopPhase::GoalMet {
                    since: now,
                    why: why.chars().take(200).collect(),
                };
                return Ok(Some(Verdict::Accepted(format!(
                    "{what}: the goal is met ({why})"
                ))));
            }
            match get("item.md") {
                Some(item) => propose(ctx, st, inflight, item, what),
                None => Ok(Some(Verdict::Refused(format!("{what} left no item")))),
            }
        }
        RunKind::CapabilityUpdate => {
            let item = inflight.item.clone().unwrap_or_default();
            let Some(text) = get("capabilities.md") else {
                return Ok(Some(Verdict::Refused(format!(
                    "{what} left no capabilities.md"
                ))));
            };
            if let Some(why) = check_capabilities(text) {
                // Counted; the update runs again (and the loop pauses itself
                // if it keeps failing).
                return Ok(Some(Verdict::Refused(format!(
                    "{what}: capabilities.md refused: {why}"
                ))));
            }
            let body = vec![format!(
                "capabilities.md after queue/{item}, from planner attempt {} of the autonomy loop",
                inflight.run
            )];
            let done = commit_on_base(
                ctx,
                vec![("planning/capabilities.md".into(), text.as_bytes().to_vec())],
                &format!("autonomy: capability update after queue/{item}"),
                body,
            )?;
            let Some(changed) = done else { return Ok(None) };
            if let Some(i) = st.items.iter_mut().find(|i| i.name == item) {
                i.capabilities_updated = true;
            }
            Ok(Some(Verdict::Accepted(if changed {
                format!("{what}: capabilities.md updated after queue/{item}")
            } else {
                format!("{what}: capabilities.md already said so after queue/{item}")
            })))
        }
        RunKind::Review => {
            let lens = inflight.lens.clone().unwrap_or_else(|| "review".into());
            let Some(text) = get("review.md") else {
                return Ok(Some(Verdict::Refused(format!("{what} left no review.md"))));
            };
            if let Some(why) = check_capabilities(text) {
                return Ok(Some(Verdict::Refused(format!(
                    "{what}: review.md refused: {why}"
                ))));
            }
            let path = format!("planning/reviews/{:04}-{lens}.md", inflight.run);
            let done = commit_on_base(
                ctx,
                vec![(path.clone(), text.as_bytes().to_vec())],
                &format!("autonomy: {lens} review {}", inflight.run),
                vec![format!(
                    "a review by planner attempt {} of the autonomy loop",
                    inflight.run
                )],
            )?;
            if done.is_none() {
                return Ok(None);
            }
            st.merges_at_review = st.merges;
            st.reviews += 1;
            match get("item.md") {
                Some(item) => {
                    let filed = propose(ctx, st, inflight, item, what)?;
                    Ok(filed.map(|v| match v {
                        Verdict::Accepted(l) => {
                            Verdict::Accepted(format!("review written to {path}; {l}"))
                        }
                        // The review itself landed: its item's refusal is
                        // history, not a failed run.
                        Verdict::Refused(l) | Verdict::Neutral(l) => {
                            Verdict::Neutral(format!("review written to {path}; {l}"))
                        }
                    }))
                }
                None => Ok(Some(Verdict::Accepted(format!(
                    "{what}: review written to {path}"
                )))),
            }
        }
    }
}

/// A proposed item: refused as a duplicate or for a blocked gap, else
/// validated and committed through the enqueue intent.
fn propose(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    item: &str,
    what: &str,
) -> Result<Option<Verdict>, TickError> {
    let now = ctx.options.now;
    let title = title_of(item);
    if title.is_empty() {
        return Ok(Some(Verdict::Refused(format!(
            "{what}: the item has no title"
        ))));
    }
    let hash = proposal_hash(&title, body_of(item));
    let name = item_name(&title, inflight.run);
    // Filed already (a crash before the record): nothing to do again.
    if st.items.iter().any(|i| i.name == name) {
        return Ok(Some(Verdict::Accepted(format!(
            "{what}: filed queue/{name}"
        ))));
    }
    if st.recent.contains(&hash) {
        st.duplicates += 1;
        return Ok(Some(Verdict::Refused(format!(
            "{what}: \"{title}\" refused as a duplicate of a recent proposal"
        ))));
    }
    if let Some(id) = st
        .gap(&super::state::gap_id(&title))
        .filter(|g| g.blocked)
        .map(|g| g.id.clone())
    {
        st.refused += 1;
        return Ok(Some(Verdict::Refused(format!(
            "{what}: \"{title}\" refused: gap {id} is blocked (`converge autonomy unblock {id}`)"
        ))));
    }
    let Some(base_tip) = ctx.repo.branch_tip(ctx.base_rev)? else {
        return Ok(None);
    };
    let (_, loaded) = ctx.options.cache.planning(ctx.repo, base_tip)?;
    let Some(spec) = loaded.spec else {
        return Ok(None);
    };
    let base = Base {
        branch: ctx.base_rev,
        commit: base_tip,
        spec: &spec,
        status: ctx.status,
    };
    let why = format!(
        "proposed by planner attempt {} ({}) of the autonomy loop",
        inflight.run,
        inflight.kind.as_str()
    );
    let signer = ctx.spec.config.reconcile.signer(ctx.options.env);
    match crate::intent::enqueue::enqueue_as(ctx.repo, &base, &name, item, &why, &signer) {
        Ok(_) | Err(IntentError::AlreadyQueued { .. }) => {}
        Err(IntentError::InvalidItem { diagnostics, .. }) => {
            st.refused += 1;
            st.remember(hash);
            let shown: Vec<String> = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .take(3)
                .map(|d| d.to_string().lines().next().unwrap_or_default().to_owned())
                .collect();
            return Ok(Some(Verdict::Refused(format!(
                "{what}: \"{title}\" refused as an invalid queue item: {}",
                shown.join("; ")
            ))));
        }
        Err(IntentError::ItemTooLarge { bytes, .. }) => {
            st.refused += 1;
            return Ok(Some(Verdict::Refused(format!(
                "{what}: \"{title}\" refused: {bytes} bytes is too large"
            ))));
        }
        Err(IntentError::Record(_)) => return Ok(None),
        Err(e) => return Err(TickError::Autonomy(Box::new(e))),
    }
    st.remember(hash);
    st.file(&name, &title, inflight.run, now);
    st.today = counters_on(st, now);
    st.today.items += 1;
    Ok(Some(Verdict::Accepted(format!(
        "{what}: filed queue/{name} (\"{title}\")"
    ))))
}

/// The queue item name of a proposal: its title's slug and the run.
pub fn item_name(title: &str, run: u32) -> String {
    let slug = crate::harness::sim_planner::slug(title);
    let slug: String = slug.chars().take(50).collect();
    format!("{}-{run}", slug.trim_end_matches('-'))
}

/// Why a planner's markdown document is refused, if it is.
pub fn check_capabilities(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("it is empty".into());
    }
    if text.len() > MAX_CAPABILITIES {
        return Some(format!(
            "it is {} bytes, over {MAX_CAPABILITIES}",
            text.len()
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Some("it holds control characters; it must be markdown text".into());
    }
    None
}

/// Commits `files` on the base branch as converge, compare-and-swap from its
/// tip now. `Some(true)`: committed; `Some(false)`: the files already said
/// so; `None`: the branch moved under the commit.
fn commit_on_base(
    ctx: &Ctx<'_>,
    files: Vec<(String, Vec<u8>)>,
    summary: &str,
    body: Vec<String>,
) -> Result<Option<bool>, TickError> {
    let Some(tip) = ctx.repo.branch_tip(ctx.base_rev)? else {
        return Ok(None);
    };
    let changes: Vec<Change> = files
        .into_iter()
        .map(|(path, content)| Change {
            path,
            content: Some(content),
        })
        .collect();
    let message = Message {
        action: "autonomy".into(),
        plan: None,
        task: None,
        attempt: None,
        spec: tip.to_string(),
        body,
        summary: Some(summary.to_owned()),
    };
    let signer = ctx.spec.config.reconcile.signer(ctx.options.env);
    match record::record(ctx.repo, ctx.base_rev, tip, &changes, &message, &signer) {
        Ok(record::Outcome::Committed { .. }) => Ok(Some(true)),
        Ok(record::Outcome::Unchanged) => Ok(Some(false)),
        Err(record::RecordError::Conflict { .. } | record::RecordError::Deferred { .. }) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_documents() {
        assert_eq!(item_name("Export CSV!", 7), "export-csv-7");
        assert_eq!(check_capabilities("  \n"), Some("it is empty".into()));
        assert!(check_capabilities("- a\n\u{1b}[31m").is_some());
        assert_eq!(check_capabilities("# Capabilities\n\n- Login\n"), None);
    }
}
