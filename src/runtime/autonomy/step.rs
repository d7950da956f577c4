//! One step of the autonomy loop per tick, before the tick reads its spec
//! (so that an item it files is promoted by the same tick): with a planner
//! attempt in flight, read it back when it ended (`harvest.rs`); otherwise
//! absorb what task status says of the loop's items and start the planner
//! run that is due ([`super::next`]), or pause the loop when a guard trips.
//! The loop's record (`record.rs`) is one commit on the status branch,
//! compare-and-swap from the tip read; what it files lands on the base branch first, each a
//! commit of its own, so a crash between the two repeats the step and finds
//! the commit already there.
//!
//! A step is not one of the tick's actions: like a schedule firing, it does
//! not count against `actions_per_tick`; the items it files do, when they
//! are promoted and dispatched.

use gix::ObjectId;

use crate::act::planner::{self, ReadBack};
use crate::agent::Secret;
use crate::git::Repo;
use crate::rundir::records::PlannerBrief;
use crate::spec::Spec;
use crate::status::Status;

use super::decide::{Next, next};
use super::record::{adopt, load, record_state, status_branch};
use super::state::{self, Inflight, LoopPhase, LoopState, RunKind};
use crate::runtime::base::TickBase;
use crate::runtime::tick::{TickError, TickOptions};

/// The lenses reviews take in turn.
pub const LENSES: &[&str] = &["architecture", "tests", "security"];

/// What the loop did in a tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stepped {
    /// One line per thing done, for people.
    pub lines: Vec<String>,
    /// Why no planner run started, when none did.
    pub wait: Option<(String, String)>,
    /// The commit that recorded the loop's state.
    pub recorded: Option<ObjectId>,
    /// The exit record of the planner attempt in flight, when one runs.
    pub running: Option<std::path::PathBuf>,
    /// When the loop goes on by itself (a cooldown or a cap ends).
    pub wake_at: Option<crate::time::Timestamp>,
}

/// One step (see the module's documentation).
/// `base`: the tick's base branch (read again here: a schedule may have
/// moved it).
pub(crate) fn step(
    repo: &Repo,
    base: &mut TickBase,
    options: &TickOptions<'_>,
) -> Result<Stepped, TickError> {
    let mut out = Stepped::default();
    let base = base.current(repo)?.clone();
    let (_, loaded) = options.cache.planning(repo, base.commit)?;
    let Some(spec) = loaded.spec else {
        return Ok(out);
    };
    let (_, tip) = status_branch(repo, &spec, &base.rev)?;
    let (mut st, problem) = load(repo, tip.unwrap_or(base.commit))?;
    let config = &spec.config.autonomy;
    if !config.enabled && st.inflight.is_none() {
        return Ok(out);
    }
    let now = options.now;
    if let Some(problem) = problem {
        st.note(
            now,
            format!("the loop's record could not be read and starts over: {problem}"),
        );
    }
    let before = st.clone();
    let (status, _) = crate::status::load::load(repo, tip.unwrap_or(base.commit))?;
    let mut queued: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for dir in ["planning/queue", "planning/queue/done"] {
        for name in repo.list_dir_at(base.commit, dir)? {
            if let Some(item) = name.strip_suffix(".md") {
                queued.insert(item.to_owned());
            }
        }
    }
    for moved in state::absorb(&mut st, &status, &|name| queued.contains(name), now) {
        if let state::Moved::Blocked { gap, title } = moved {
            out.lines.push(format!(
                "autonomy: gap {gap} ({title}) is blocked: its items escalated twice; `converge autonomy unblock {gap}` lets the loop propose it again"
            ));
        }
    }
    if options.dry_run {
        let tasks_usd = crate::decide::spending(&status, None, now).today_usd;
        let n = next(config, spec.config.budget.usd_per_day, tasks_usd, &st, now);
        out.wait = wait_of(&n);
        return Ok(out);
    }
    let secret = Secret::load_or_create(repo.common_dir())?;
    let ctx = Ctx {
        repo,
        spec: &spec,
        secret: &secret,
        options,
        base_rev: &base.rev,
        status: &status,
    };
    if st.inflight.is_none()
        && let Some(adopted) = adopt(repo, &mut st, now)
    {
        out.lines.push(format!("autonomy: {adopted}"));
    }
    match st.inflight.clone() {
        Some(inflight) => in_flight(&ctx, &mut st, &inflight, &mut out)?,
        None => take_next(&ctx, &mut st, &mut out)?,
    }
    // A planner attempt just started: the tick's caller waits for it.
    if let Some(inflight) = st.inflight.as_ref().filter(|_| out.running.is_none()) {
        let key = planner::key(inflight.kind.prefix(), inflight.run);
        out.running = Some(crate::rundir::layout::exit(
            &crate::rundir::Layout::new(repo.common_dir()).run(&key, 1),
        ));
    }
    if st != before {
        let signer = spec.config.reconcile.signer(options.env);
        out.recorded = record_state(repo, &spec, &base.rev, &st, &out.lines, &signer)?.commit();
    }
    Ok(out)
}

/// The planner attempt in flight: waits for it, starts it again when a
/// crash cut its dispatch short (or drops it when the loop is off), or
/// reads it back.
fn in_flight(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    out: &mut Stepped,
) -> Result<(), TickError> {
    let (repo, spec, now) = (ctx.repo, ctx.spec, ctx.options.now);
    let config = &spec.config.autonomy;
    let key = planner::key(inflight.kind.prefix(), inflight.run);
    match planner::read_back(repo, spec, ctx.secret, &key, inflight.kind.as_str(), now)
        .map_err(planner_error)?
    {
        ReadBack::Running => {
            out.running = Some(crate::rundir::layout::exit(
                &crate::rundir::Layout::new(repo.common_dir()).run(&key, 1),
            ));
            out.wait = Some((
                crate::model::LoopCode::PlannerRunning.as_str().into(),
                format!(
                    "planner attempt {} ({}) is running",
                    inflight.run,
                    inflight.kind.as_str()
                ),
            ));
        }
        ReadBack::NotStarted if !config.enabled || !matches!(st.phase, LoopPhase::Running) => {
            // Cut short by a crash, and the loop is off or paused now:
            // dropped rather than started.
            let line = format!(
                "planner attempt {} ({}) never started and the loop is {}: dropped",
                inflight.run,
                inflight.kind.as_str(),
                if config.enabled { "paused" } else { "disabled" }
            );
            st.inflight = None;
            out.note(st, now, line);
        }
        ReadBack::NotStarted => {
            // A crash cut the dispatch short: start it again (dispatch
            // adopts what it finds).
            let line = format!(
                "planner attempt {} ({}) never started (its dispatch was cut short); starting it again",
                inflight.run,
                inflight.kind.as_str()
            );
            out.note(st, now, line);
            start(ctx, st, inflight, out)?;
        }
        ReadBack::Ended(ended) => {
            match super::harvest::harvest(ctx, st, inflight, &ended)? {
                super::harvest::Harvest::Done(line) => {
                    crate::crash::point("autonomy-after-file");
                    planner::mark_harvested(repo, &key).map_err(planner_error)?;
                    // What a planner left behind is not work anyone keeps: a
                    // worktree that cannot be removed is said, not fatal.
                    if let Err(e) = planner::clean_up(repo, spec, &key) {
                        let note = format!(
                            "the worktree or branch of {key} could not be removed: {}",
                            crate::check::error_chain(&e)
                        );
                        out.note(st, now, note);
                    }
                    st.inflight = None;
                    out.lines.insert(0, format!("autonomy: {line}"));
                }
                super::harvest::Harvest::Retry(code, why) => {
                    out.wait = Some((code.as_str().into(), why));
                }
            }
        }
    }
    Ok(())
}

/// No planner attempt in flight: starts the one that is due, pauses the
/// loop when a guard trips, or says why it waits.
fn take_next(ctx: &Ctx<'_>, st: &mut LoopState, out: &mut Stepped) -> Result<(), TickError> {
    let (spec, now) = (ctx.spec, ctx.options.now);
    let config = &spec.config.autonomy;
    let tasks_usd = crate::decide::spending(ctx.status, None, now).today_usd;
    match next(config, spec.config.budget.usd_per_day, tasks_usd, st, now) {
        Next::GapAnalysis => begin(ctx, st, RunKind::GapAnalysis, None, out)?,
        Next::CapabilityUpdate { item } => {
            begin(ctx, st, RunKind::CapabilityUpdate, Some(item), out)?;
        }
        Next::Review => begin(ctx, st, RunKind::Review, None, out)?,
        Next::Pause { code, why } => {
            st.phase = LoopPhase::Paused {
                code: code.to_owned(),
                why: why.clone(),
                since: now,
            };
            st.note(now, format!("paused itself ({code}): {why}"));
            out.lines.push(format!(
                "autonomy: paused itself ({code}): {why}; `converge autonomy resume` resumes it"
            ));
        }
        other => {
            if let Next::Wait(
                super::decide::Wait::Cap { until, .. } | super::decide::Wait::Cooldown { until },
            ) = &other
            {
                out.wake_at = Some(*until);
            }
            out.wait = wait_of(&other);
        }
    }
    Ok(())
}

impl Stepped {
    /// Notes `line` in the loop's history and says it.
    fn note(&mut self, st: &mut LoopState, now: crate::time::Timestamp, line: String) {
        self.lines.push(format!("autonomy: {line}"));
        st.note(now, line);
    }
}

fn wait_of(next: &Next) -> Option<(String, String)> {
    match next {
        Next::Wait(w) => Some((w.code().to_owned(), w.why())),
        Next::Pause { code, why } => Some(((*code).to_owned(), why.clone())),
        _ => None,
    }
}

fn planner_error(e: planner::PlannerError) -> TickError {
    TickError::Autonomy(Box::new(e))
}

/// What a step works with.
pub(super) struct Ctx<'a> {
    pub repo: &'a Repo,
    pub spec: &'a Spec,
    pub secret: &'a Secret,
    pub options: &'a TickOptions<'a>,
    pub base_rev: &'a str,
    pub status: &'a Status,
}

/// Counts a new planner run and starts it.
fn begin(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    kind: RunKind,
    item: Option<String>,
    out: &mut Stepped,
) -> Result<(), TickError> {
    let now = ctx.options.now;
    st.today = super::decide::counters_on(st, now);
    st.today.runs += 1;
    // Above every planner attempt on disk, so that a record started over
    // never takes an old attempt for a new one.
    let on_disk = planner::on_disk(ctx.repo)
        .iter()
        .map(|(_, n, _)| *n)
        .max()
        .unwrap_or(0);
    st.runs = st.runs.max(on_disk) + 1;
    let capabilities = ctx
        .repo
        .branch_tip(ctx.base_rev)?
        .map(|tip| ctx.repo.blob_id_at(tip, "planning/capabilities.md"))
        .transpose()?
        .flatten();
    let inflight = Inflight {
        run: st.runs,
        capabilities,
        kind,
        started_at: now,
        item,
        lens: (kind == RunKind::Review)
            .then(|| LENSES[st.reviews as usize % LENSES.len()].to_owned()),
    };
    start(ctx, st, &inflight, out)
}

/// Starts (or starts again) planner attempt `inflight`.
fn start(
    ctx: &Ctx<'_>,
    st: &mut LoopState,
    inflight: &Inflight,
    out: &mut Stepped,
) -> Result<(), TickError> {
    let now = ctx.options.now;
    let base_tip = ctx.repo.branch_tip(ctx.base_rev)?.ok_or_else(|| {
        TickError::Autonomy(format!("the base branch {} is gone", ctx.base_rev).into())
    })?;
    let brief = brief(ctx, st, inflight, base_tip)?;
    let history: Vec<String> = st
        .history
        .iter()
        .map(|l| format!("{}: {}", l.at, l.line))
        .collect();
    let prompt = super::prompt::prompt(&brief, &history, &open_work(ctx.status));
    let key = planner::key(inflight.kind.prefix(), inflight.run);
    let s = planner::Start {
        repo: ctx.repo,
        spec: ctx.spec,
        secret: ctx.secret,
        converge: &ctx.options.converge,
        env: ctx.options.env,
        now,
        base_tip,
    };
    match planner::start(&s, &key, brief, &prompt) {
        Ok(_) => {
            crate::crash::point("autonomy-after-dispatch");
            st.inflight = Some(inflight.clone());
            let what = match (&inflight.item, &inflight.lens) {
                (Some(item), _) => format!(" after queue/{item}"),
                (_, Some(lens)) => format!(" ({lens})"),
                _ => String::new(),
            };
            let line = format!(
                "{} {}{what} started as {key}",
                inflight.kind.as_str(),
                inflight.run
            );
            out.note(st, now, line);
        }
        Err(e @ (planner::PlannerError::Launch(_) | planner::PlannerError::UnknownHarness(_))) => {
            // It cannot start here: counted as a run that filed nothing, so
            // that the loop pauses itself rather than try every tick.
            st.consecutive_refusals += 1;
            st.inflight = None;
            let line = format!(
                "{} {} cannot start: {e}",
                inflight.kind.as_str(),
                inflight.run
            );
            out.note(st, now, line);
        }
        Err(e) => return Err(planner_error(e)),
    }
    Ok(())
}

/// What the planner attempt is given.
fn brief(
    ctx: &Ctx<'_>,
    st: &LoopState,
    inflight: &Inflight,
    base_tip: ObjectId,
) -> Result<PlannerBrief, TickError> {
    let read = |path: &str| -> Result<String, TickError> {
        Ok(ctx
            .repo
            .read_blob_at(base_tip, path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let merged = match &inflight.item {
        Some(name) => {
            let title = st
                .items
                .iter()
                .find(|i| &i.name == name)
                .map(|i| i.title.clone())
                .unwrap_or_else(|| name.clone());
            let description = ctx
                .spec
                .plans
                .get(crate::spec::QUEUE_PLAN)
                .and_then(|p| p.task(name))
                .map(|t| t.description.clone())
                .unwrap_or_default();
            Some((title, description))
        }
        None => None,
    };
    let previous = st.items.last().and_then(|i| {
        ctx.repo
            .read_blob_at(base_tip, &format!("planning/queue/done/{}.md", i.name))
            .ok()
            .flatten()
            .or_else(|| {
                ctx.repo
                    .read_blob_at(base_tip, &crate::intent::enqueue::item_path(&i.name))
                    .ok()
                    .flatten()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    });
    Ok(PlannerBrief {
        kind: inflight.kind.as_str().to_owned(),
        run: inflight.run,
        goal: read("planning/goal.md")?,
        capabilities: read("planning/capabilities.md")?,
        merged,
        item: inflight.item.clone(),
        lens: inflight.lens.clone(),
        blocked: st.blocked(),
        escalated: st
            .gaps
            .iter()
            .filter(|g| g.escalations > 0)
            .map(|g| g.title.clone())
            .collect(),
        previous,
        invariants: ctx.spec.config.invariants.keys().cloned().collect(),
        sim: ctx.spec.config.autonomy.sim.clone(),
    })
}

/// Open plans' and the queue's unfinished tasks, `plan/task (phase)`.
fn open_work(status: &Status) -> Vec<String> {
    let mut out = Vec::new();
    for (plan, ps) in &status.plans {
        for (task, ts) in &ps.tasks {
            if !ts.phase.is_terminal() {
                out.push(format!("{plan}/{task} ({})", ts.phase.as_str()));
            }
        }
    }
    out.truncate(50);
    out
}
