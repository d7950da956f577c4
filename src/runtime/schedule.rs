//! Schedules fire: at the start of a tick, before the spec is loaded for
//! deciding, every `[[schedule]]` whose fire time is due copies its template
//! to `planning/queue/<schedule>-<YYYYMMDD>-<HHMM>.md`, all in one commit on
//! the base branch, compare-and-swap from the tip read (`status::record`, as
//! intents do), so that the same tick promotes the new items.
//!
//! Idempotency comes from git: the item's name records (schedule, fire time),
//! the newest such name in `planning/queue/` or `planning/queue/done/` is the
//! schedule's last fire, and a fire time is only ever enqueued after it. Two
//! reconcilers that race commit once: the loser's compare-and-swap (or push,
//! with a remote) fails, and its next tick sees the item. Which fire time is
//! due is the pure `due` module.
//!
//! Firing is not an agent action: it does not count against
//! `actions_per_tick` or the dispatch rate (the items it enqueues do, when
//! they are promoted and dispatched).

pub mod due;

use gix::ObjectId;

use crate::git::Repo;
use crate::spec::base::CommitSource;
use crate::spec::load::Content;
use crate::spec::{PlanningFiles, Schedule};
use crate::status::record::{self, Change, Message, Outcome, RecordError};
use crate::time::Timestamp;

use super::base::TickBase;
use super::tick::{TickError, TickOptions};

/// What one schedule did (or, in a dry run, would do) in a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule: String,
    /// `planning/queue/templates/<queue>`.
    pub template: String,
    /// The fire time enqueued (or due, in a dry run or when the commit lost).
    pub fire: Option<Timestamp>,
    /// The item's path for `fire`.
    pub item: Option<String>,
    /// A late fire time not enqueued (`missed = "skip"`).
    pub skipped: Option<Timestamp>,
    /// The newest fire time already enqueued, read from git.
    pub last: Option<Timestamp>,
    pub next: Option<Timestamp>,
    /// Why a due fire time is not enqueued (its template has errors).
    pub refused: Option<String>,
}

/// What schedules did in a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    pub fired: Vec<Fired>,
    /// The base branch.
    pub branch: String,
    /// The enqueue commit on the base branch.
    pub committed: Option<ObjectId>,
    /// Why due items were not committed (the base moved, or its checkout has
    /// changes in the way); the next tick tries again.
    pub not_committed: Option<String>,
    /// A dry run: nothing was committed.
    pub dry_run: bool,
}

impl Schedules {
    /// One line per schedule for people: what it enqueued, or (`all`) also
    /// when it fires next.
    pub fn lines(&self, all: bool) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.fired {
            let next = f.next.map_or_else(
                || "never fires again".to_owned(),
                |n| format!("next at {n}"),
            );
            let line = match (f.fire, &f.item) {
                (Some(fire), Some(item)) if self.dry_run => format!(
                    "schedule {}: due at {fire}: would enqueue {item} from {}; {next}",
                    f.schedule, f.template
                ),
                (Some(fire), Some(item)) if self.committed.is_some() => format!(
                    "schedule {}: enqueued {item} (due at {fire}); {next}",
                    f.schedule
                ),
                (Some(fire), Some(item)) => format!(
                    "schedule {}: due at {fire}, {item} not enqueued: {}",
                    f.schedule,
                    self.not_committed.as_deref().unwrap_or("unknown")
                ),
                _ if f.refused.is_some() => format!(
                    "schedule {}: due at {}, not enqueued: {}",
                    f.schedule,
                    f.fire.map_or_else(String::new, |t| t.to_string()),
                    f.refused.as_deref().unwrap_or_default()
                ),
                _ if !all => continue,
                _ => {
                    let mut line = format!("schedule {}: {next}", f.schedule);
                    if let Some(last) = f.last {
                        line.push_str(&format!(", last fired for {last}"));
                    }
                    if let Some(skipped) = f.skipped {
                        line.push_str(&format!(
                            "; missed {skipped} (later than its grace, not enqueued)"
                        ));
                    }
                    line
                }
            };
            out.push(line);
        }
        out
    }
}

/// Fires the due schedules of the base branch's converge.toml at
/// `options.now`: one commit for all of them (none in a dry run). A base
/// whose planning/ does not compile fires nothing (the tick reports why).
pub(crate) fn fire(
    repo: &Repo,
    base: &mut TickBase,
    options: &TickOptions<'_>,
) -> Result<Schedules, TickError> {
    let base = base.current(repo)?.clone();
    let mut out = Schedules {
        dry_run: options.dry_run,
        branch: base.rev.clone(),
        ..Schedules::default()
    };
    if !has_schedules(repo, base.commit)? {
        return Ok(out);
    }
    // The tick's spec comes from the same cache: compiled once per tree.
    let (files, loaded) = options.cache.planning(repo, base.commit)?;
    let Some(spec) = loaded.spec else {
        return Ok(out);
    };
    // A template with errors would be an invalid item: not enqueued.
    let invalid: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::spec::Severity::Error)
        .map(|d| d.file.as_str())
        .collect();
    let names = item_names(&files);
    let mut changes = Vec::new();
    for schedule in &spec.config.schedules {
        let mut fired = one(schedule, &names, options.now);
        if fired.item.is_some() && invalid.contains(&fired.template.as_str()) {
            fired.item = None;
            fired.refused = Some(format!(
                "{} has errors (`converge plan validate` shows them); nothing is enqueued until it is fixed",
                fired.template
            ));
        }
        if let Some(item) = &fired.item {
            let template = match files.files.get(&fired.template) {
                Some(Content::Bytes(bytes)) => bytes.clone(),
                // Checked when the spec compiled; a template too large or a
                // link is refused there.
                _ => continue,
            };
            changes.push(Change {
                path: item.clone(),
                content: Some(template),
            });
        }
        out.fired.push(fired);
    }
    if changes.is_empty() || options.dry_run {
        return Ok(out);
    }
    let signer = spec.config.reconcile.signer(options.env);
    match record::record(
        repo,
        &base.rev,
        base.commit,
        &changes,
        &message(&out.fired, &base),
        &signer,
    ) {
        Ok(Outcome::Committed { commit, .. }) => out.committed = Some(commit),
        Ok(Outcome::Unchanged) => out.not_committed = Some("already in the queue".into()),
        Err(e @ (RecordError::Conflict { .. } | RecordError::Deferred { .. })) => {
            out.not_committed = Some(format!("{e}; the next tick tries again"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}

/// With a remote, pushes the enqueue commit at once with the lease on the
/// fetched base: across machines, that push is the compare-and-swap. A
/// rejected push takes the commit back (the next tick fetches the winner's
/// items and skips those fire times).
pub(crate) fn push(
    repo: &Repo,
    remote: &str,
    leases: &mut super::remote::Leases,
    schedules: &mut Schedules,
    lines: &mut Vec<String>,
) -> Result<(), TickError> {
    let Some(commit) = schedules.committed else {
        return Ok(());
    };
    let branch = schedules.branch.clone();
    let lease = leases.get(&branch).copied().flatten();
    match repo.push_with_lease(remote, &branch, commit, lease)? {
        crate::git::Pushed::Ok => {
            lines.push(format!(
                "pushed {branch} to {remote} ({}): scheduled items",
                &commit.to_string()[..7]
            ));
            leases.insert(branch, Some(commit));
        }
        crate::git::Pushed::Rejected { message } => {
            if let Some(theirs) = lease {
                repo.advance_branch(&branch, commit, theirs, "converge: lost a schedule race")?;
            }
            schedules.committed = None;
            schedules.not_committed = Some(format!(
                "pushing {branch} to {remote} was rejected: another reconciler pushed first; the next tick sees its items ({message})"
            ));
        }
    }
    Ok(())
}

/// What `schedule` does at `now`, given the items in git.
fn one(schedule: &Schedule, names: &[String], now: Timestamp) -> Fired {
    let last = names
        .iter()
        .filter_map(|n| due::fire_of(&schedule.name, n))
        .max();
    let d = due::due(schedule, last, now);
    Fired {
        schedule: schedule.name.clone(),
        template: format!("planning/queue/templates/{}", schedule.queue),
        fire: d.fire,
        item: d
            .fire
            .map(|f| format!("planning/queue/{}.md", due::item_name(&schedule.name, f))),
        skipped: d.skipped,
        last,
        next: d.next,
        refused: None,
    }
}

/// Whether converge.toml at `commit` has a `[[schedule]]` at all (read
/// leniently: most ticks have none and skip compiling planning/ twice).
fn has_schedules(repo: &Repo, commit: ObjectId) -> Result<bool, TickError> {
    let Some(bytes) = repo.read_blob_at(commit, "planning/converge.toml")? else {
        return Ok(false);
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(false);
    };
    Ok(toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("schedule")))
}

/// The names of queue items, queued or promoted.
fn item_names(files: &PlanningFiles) -> Vec<String> {
    files
        .files
        .keys()
        .filter_map(|p| {
            let rest = p.strip_prefix("planning/queue/")?;
            let rest = rest.strip_prefix("done/").unwrap_or(rest);
            rest.strip_suffix(".md").filter(|n| !n.contains('/'))
        })
        .map(str::to_owned)
        .collect()
}

/// The enqueue commit's message: `converge: schedule <names>`, a line per
/// item, the usual trailers (`Converge-Action: schedule`).
fn message(fired: &[Fired], base: &CommitSource) -> Message {
    let due: Vec<&Fired> = fired.iter().filter(|f| f.item.is_some()).collect();
    let names: Vec<&str> = due.iter().map(|f| f.schedule.as_str()).collect();
    Message {
        action: "schedule".to_owned(),
        plan: None,
        task: None,
        attempt: None,
        spec: base.commit.to_string(),
        body: due
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "enqueue {} from {} (schedule {}, fire time {})",
                    f.item.as_deref()?,
                    f.template,
                    f.schedule,
                    f.fire?
                ))
            })
            .collect(),
        summary: Some(format!("schedule {}", names.join(", "))),
    }
}
