//! Reading a finished planner attempt back into the loop: its cost, a rate
//! limit, and its output, validated and committed on the base branch as
//! converge (a proposal through the enqueue intent, a new capabilities.md,
//! a review document) or refused and counted, with the reason in the loop's
//! history. Every commit here is idempotent: a step repeated after a crash
//! finds it made and goes on.

use std::time::Duration;

use crate::act::planner::Ended;
use crate::harness::outcome::Ending;
use crate::intent::{Base, IntentError};
use crate::model::LoopCode;
use crate::status::record::{self, Change, Message, RecordError};

use super::decide::{counters_on, proposal_hash};
use super::prompt::{body_of, title_of};
use super::state::{Inflight, LoopPhase, LoopState, RunKind};
use super::step::Ctx;
use crate::runtime::tick::TickError;

/// capabilities.md (and a review) may be at most this long.
pub const MAX_CAPABILITIES: usize = 64 * 1024;
/// A planner's rate limit cools the loop down at most this long, whatever
/// reset time its stream names.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many characters of a planner's log go into the history.
const TAIL_CHARS: usize = 200;

/// What reading an attempt back came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Harvest {
    /// Read back and recorded: the line for people.
    Done(String),
    /// Nothing changed: a commit could not land now (the base moved, the
    /// checkout is in the way); the next tick reads the attempt again.
    Retry(LoopCode, String),
}

/// A commit that could not land now.
type Retry = (LoopCode, String);

/// Reads `ended` into `st`.
pub(super) fn harvest(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    ended: &Ended,
) -> Result<Harvest, TickError> {
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
            let until = until.min(now.plus(MAX_COOLDOWN));
            st.cooldown_until = Some(until);
            Verdict::Neutral(format!(
                "{what} was rate-limited until {until}: {}",
                cut(&message)
            ))
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
                format!("; its log ends: {}", cut(&ended.tail.replace('\n', " | ")))
            }
        )),
        _ => match file(ctx, st, inflight, ended, &what)? {
            Ok(verdict) => verdict,
            Err((code, why)) => return Ok(Harvest::Retry(code, why)),
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
    Ok(Harvest::Done(line))
}

/// `text` cut to [`TAIL_CHARS`] characters.
fn cut(text: &str) -> String {
    if text.chars().count() <= TAIL_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(TAIL_CHARS).collect();
    format!("{cut}…")
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
) -> Result<Result<Verdict, Retry>, TickError> {
    let get = |name: &str| {
        ended
            .files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    match inflight.kind {
        RunKind::GapAnalysis => Ok(Ok(match (get("goal-met.md"), get("item.md")) {
            (Some(_), Some(_)) => {
                Verdict::Refused(format!("{what} left both an item and a goal-met verdict"))
            }
            (Some(why), None) => goal_met(ctx, st, why, what),
            (None, Some(item)) => return propose(ctx, st, inflight, item, what),
            (None, None) => Verdict::Refused(format!("{what} left no item")),
        })),
        RunKind::CapabilityUpdate => {
            capability_update(ctx, st, inflight, get("capabilities.md"), what)
        }
        RunKind::Review => review(ctx, st, inflight, get("review.md"), get("item.md"), what),
    }
}

/// A gap analysis says the goal is met. Said again while the loop goes on
/// past it (`stop_when_goal_met = false`), it filed nothing: counted as a
/// refusal, so that a loop with nothing to do pauses itself instead of
/// spending its caps on verdicts.
fn goal_met(ctx: &Ctx<'_>, st: &mut LoopState, why: &str, what: &str) -> Verdict {
    let why: String = why
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect();
    if matches!(st.phase, LoopPhase::GoalMet { .. }) {
        return Verdict::Refused(format!(
            "{what}: the goal is met again ({why}); nothing filed"
        ));
    }
    st.phase = LoopPhase::GoalMet {
        since: ctx.options.now,
        why: why.clone(),
    };
    Verdict::Accepted(format!("{what}: the goal is met ({why})"))
}

fn capability_update(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    text: Option<&str>,
    what: &str,
) -> Result<Result<Verdict, Retry>, TickError> {
    let item = inflight.item.clone().unwrap_or_default();
    let Some(text) = text else {
        return Ok(Ok(Verdict::Refused(format!(
            "{what} left no capabilities.md"
        ))));
    };
    if let Some(why) = check_document(text) {
        // Counted; the update runs again (and the loop pauses itself if it
        // keeps failing).
        return Ok(Ok(Verdict::Refused(format!(
            "{what}: capabilities.md refused: {why}"
        ))));
    }
    // A person's edit since the planner read the file is not overwritten:
    // the update runs again on what is there now.
    let Some(tip) = ctx.repo.branch_tip(ctx.base_rev)? else {
        return Ok(Err(gone(ctx)));
    };
    let now_blob = ctx.repo.blob_id_at(tip, "planning/capabilities.md")?;
    if inflight.capabilities.is_some() && now_blob != inflight.capabilities {
        return Ok(Ok(Verdict::Neutral(format!(
            "{what}: planning/capabilities.md changed on {} while it ran; the update runs again on the new text",
            ctx.base_rev
        ))));
    }
    let body = vec![format!(
        "capabilities.md after queue/{item}, from planner attempt {} of the autonomy loop",
        inflight.run
    )];
    let changed = match commit_on_base(
        ctx,
        vec![("planning/capabilities.md".into(), text.as_bytes().to_vec())],
        &format!("autonomy: capability update after queue/{item}"),
        body,
    )? {
        Ok(changed) => changed,
        Err(retry) => return Ok(Err(retry)),
    };
    if let Some(i) = st.items.iter_mut().find(|i| i.name == item) {
        i.capabilities_updated = true;
    }
    Ok(Ok(Verdict::Accepted(if changed {
        format!("{what}: capabilities.md updated after queue/{item}")
    } else {
        format!("{what}: capabilities.md already said so after queue/{item}")
    })))
}

fn review(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    text: Option<&str>,
    item: Option<&str>,
    what: &str,
) -> Result<Result<Verdict, Retry>, TickError> {
    let lens = inflight.lens.clone().unwrap_or_else(|| "review".into());
    let Some(text) = text else {
        return Ok(Ok(Verdict::Refused(format!("{what} left no review.md"))));
    };
    if let Some(why) = check_document(text) {
        return Ok(Ok(Verdict::Refused(format!(
            "{what}: review.md refused: {why}"
        ))));
    }
    let path = format!("planning/reviews/{:04}-{lens}.md", inflight.run);
    if let Err(retry) = commit_on_base(
        ctx,
        vec![(path.clone(), text.as_bytes().to_vec())],
        &format!("autonomy: {lens} review {}", inflight.run),
        vec![format!(
            "a review by planner attempt {} of the autonomy loop",
            inflight.run
        )],
    )? {
        return Ok(Err(retry));
    }
    let verdict = match item {
        Some(item) => match propose(ctx, st, inflight, item, what)? {
            Ok(Verdict::Accepted(l)) => Verdict::Accepted(format!("review written to {path}; {l}")),
            // The review itself landed: its item's refusal is history, not a
            // failed run.
            Ok(Verdict::Refused(l) | Verdict::Neutral(l)) => {
                Verdict::Neutral(format!("review written to {path}; {l}"))
            }
            Err(retry) => return Ok(Err(retry)),
        },
        None => Verdict::Accepted(format!("{what}: review written to {path}")),
    };
    st.merges_at_review = st.merges;
    st.reviews += 1;
    Ok(Ok(verdict))
}

/// Why the loop will not file `item` whatever the compiler says: a
/// planner's item is run and merged by converge, so it may not choose how
/// (the sim agent's script, a harness of its own) unless the planner is the
/// sim planner, nor opt out of every check.
pub fn policy_refusal(item: &crate::spec::QueueItem, sim_planner: bool) -> Option<String> {
    if item.allow_unchecked {
        return Some("the loop's items may not set `allow_unchecked`: every one is checked".into());
    }
    if !sim_planner && item.sim.is_some() {
        return Some(
            "the loop's items may not carry a `sim:` script (only the sim planner's do)".into(),
        );
    }
    if !sim_planner && item.harness.is_some() {
        return Some("the loop's items may not choose their harness: they run on `[reconcile] default_harness`".into());
    }
    None
}

/// A proposed item: refused as a duplicate, for a blocked gap or by the
/// loop's policy, else validated and committed through the enqueue intent.
fn propose(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    item: &str,
    what: &str,
) -> Result<Result<Verdict, Retry>, TickError> {
    let now = ctx.options.now;
    let title = title_of(item);
    if title.is_empty() {
        return Ok(Ok(Verdict::Refused(format!(
            "{what}: the item has no title"
        ))));
    }
    let hash = proposal_hash(&title, body_of(item));
    let name = item_name(&title, inflight.run);
    // Filed already (a crash before the record): nothing to do again.
    if st.items.iter().any(|i| i.name == name) {
        return Ok(Ok(Verdict::Accepted(format!("{what}: filed queue/{name}"))));
    }
    if st.recent.contains(&hash) {
        st.duplicates += 1;
        return Ok(Ok(Verdict::Refused(format!(
            "{what}: \"{title}\" refused as a duplicate of a recent proposal"
        ))));
    }
    if let Some(id) = st
        .gap(&super::state::gap_id(&title))
        .filter(|g| g.blocked)
        .map(|g| g.id.clone())
    {
        st.refused += 1;
        return Ok(Ok(Verdict::Refused(format!(
            "{what}: \"{title}\" refused: gap {id} is blocked (`converge autonomy unblock {id}`)"
        ))));
    }
    let Some(base_tip) = ctx.repo.branch_tip(ctx.base_rev)? else {
        return Ok(Err(gone(ctx)));
    };
    let (_, loaded) = ctx.options.cache.planning(ctx.repo, base_tip)?;
    let Some(spec) = loaded.spec else {
        return Ok(Err((
            LoopCode::BaseMoved,
            format!(
                "planning/ on {} has errors now; the loop files when it validates",
                ctx.base_rev
            ),
        )));
    };
    let base = Base {
        branch: ctx.base_rev,
        commit: base_tip,
        spec: &spec,
        status: ctx.status,
    };
    let invalid = |st: &mut LoopState, shown: String| {
        st.refused += 1;
        Verdict::Refused(format!(
            "{what}: \"{title}\" refused as an invalid queue item: {shown}"
        ))
    };
    let compiled = match crate::intent::enqueue::compile(&base, &name, item) {
        Ok((compiled, _)) => compiled,
        Err(IntentError::InvalidItem { diagnostics, .. }) => {
            st.remember(hash);
            let shown: Vec<String> = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .take(3)
                .map(|d| d.to_string().lines().next().unwrap_or_default().to_owned())
                .collect();
            return Ok(Ok(invalid(st, shown.join("; "))));
        }
        Err(IntentError::ItemTooLarge { bytes, .. }) => {
            return Ok(Ok(invalid(st, format!("{bytes} bytes is too large"))));
        }
        Err(e) => return Err(TickError::Autonomy(Box::new(e))),
    };
    let sim_planner = ctx
        .spec
        .config
        .autonomy
        .harness
        .as_ref()
        .unwrap_or(&ctx.spec.config.reconcile.default_harness);
    let sim_planner = ctx
        .spec
        .config
        .harnesses
        .get(sim_planner)
        .is_some_and(|h| h.kind == crate::spec::HarnessKind::Sim);
    if let Some(why) = policy_refusal(&compiled, sim_planner) {
        st.remember(hash);
        return Ok(Ok(invalid(st, why)));
    }
    let why = format!(
        "proposed by planner attempt {} ({}) of the autonomy loop",
        inflight.run,
        inflight.kind.as_str()
    );
    let signer = ctx.spec.config.reconcile.signer(ctx.options.env);
    match crate::intent::enqueue::enqueue_as(ctx.repo, &base, &name, item, &why, &signer) {
        Ok(_) | Err(IntentError::AlreadyQueued { .. }) => {}
        Err(IntentError::Record(e)) => match retry_of(ctx, e) {
            Ok(retry) => return Ok(Err(retry)),
            Err(e) => return Err(e),
        },
        Err(e) => return Err(TickError::Autonomy(Box::new(e))),
    }
    st.remember(hash);
    st.file(&name, &title, inflight.run, now);
    st.today = counters_on(st, now);
    st.today.items += 1;
    Ok(Ok(Verdict::Accepted(format!(
        "{what}: filed queue/{name} (\"{title}\")"
    ))))
}

fn gone(ctx: &Ctx<'_>) -> Retry {
    (
        LoopCode::BaseMoved,
        format!("the base branch {} is gone", ctx.base_rev),
    )
}

/// A commit that lost its compare-and-swap, or that a checkout is in the
/// way of, is retried next tick; any other failure is the tick's.
fn retry_of(ctx: &Ctx<'_>, e: RecordError) -> Result<Retry, TickError> {
    match e {
        RecordError::Conflict { .. } => Ok((
            LoopCode::BaseMoved,
            format!(
                "{} moved while the loop committed; the next tick commits again",
                ctx.base_rev
            ),
        )),
        e @ RecordError::Deferred { .. } => Ok((
            LoopCode::CheckoutDirty,
            format!(
                "{e}; commit or stash them, or set `[reconcile] status_branch`; the next tick commits again"
            ),
        )),
        other => Err(other.into()),
    }
}

/// The queue item name of a proposal: its title as a name
/// ([`crate::spec::names::suggest`]) and the run, within the name limit.
pub fn item_name(title: &str, run: u32) -> String {
    let name: String = crate::spec::names::suggest(title)
        .chars()
        .take(50)
        .collect();
    format!("{}-{run}", name.trim_end_matches(['-', '_']))
}

/// Why a planner's markdown document is refused, if it is.
pub fn check_document(text: &str) -> Option<String> {
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
/// tip now: whether they changed anything, or why the commit waits.
fn commit_on_base(
    ctx: &Ctx<'_>,
    files: Vec<(String, Vec<u8>)>,
    summary: &str,
    body: Vec<String>,
) -> Result<Result<bool, Retry>, TickError> {
    let Some(tip) = ctx.repo.branch_tip(ctx.base_rev)? else {
        return Ok(Err(gone(ctx)));
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
        Ok(record::Outcome::Committed { .. }) => Ok(Ok(true)),
        Ok(record::Outcome::Unchanged) => Ok(Ok(false)),
        Err(e) => retry_of(ctx, e).map(Err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_documents() {
        assert_eq!(item_name("Export CSV!", 7), "export-csv-7");
        assert_eq!(check_document("  \n"), Some("it is empty".into()));
        assert!(check_document("- a\n\u{1b}[31m").is_some());
        assert_eq!(check_document("# Capabilities\n\n- Login\n"), None);
        assert_eq!(cut(&"x".repeat(500)).chars().count(), TAIL_CHARS + 1);
    }

    #[test]
    fn a_planners_item_may_not_choose_how_it_is_run_or_skip_its_checks() {
        let compile = |text: &str| {
            let mut diags = Vec::new();
            let config = crate::spec::config::default_config();
            let file = crate::spec::toml_walk::SourceFile {
                path: "planning/queue/x-1.md".into(),
                text: text.into(),
            };
            crate::spec::queue::compile(&file, "x-1", &config, &Default::default(), &[], &mut diags)
                .expect("valid")
        };
        let unchecked = "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\n\n# X\n";
        let why = policy_refusal(&compile(unchecked), true).expect("refused");
        assert!(why.contains("allow_unchecked"), "{why}");
        let scripted = "---\nscope: narrow\ngate: human_review\nharness: sim\nsim: {files: [{path: build.rs, content: \"x\"}]}\n---\n\n# X\n";
        let item = compile(scripted);
        assert!(policy_refusal(&item, false).is_some_and(|w| w.contains("`sim:`")));
        // The sim planner's own items carry their script.
        assert_eq!(policy_refusal(&item, true), None);
        let plain = "---\nscope: narrow\ngate: human_review\n---\n\n# X\n";
        assert_eq!(policy_refusal(&compile(plain), false), None);
    }
}
