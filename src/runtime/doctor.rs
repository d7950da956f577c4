//! `converge doctor`: consistency checks of what converge keeps outside git's
//! history (worktrees, task branches, run records, processes, the secret) and of
//! the machine, each with the fix; `--fix` applies the safe ones.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::act::dispatch::{default_worktree_root, legacy_worktree_root, worktree_root};
use crate::act::retire;
use crate::agent::Secret;
use crate::git::Repo;
use crate::observe::TaskKey;
use crate::observe::runs::{self, read_exit, read_lease, runs_root};
use crate::rundir::procs::kill_run;
use crate::status::Phase;

use super::prepare::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        }
    }
}

/// What `--fix` would do about a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Remove the task's worktree and branch, keeping unmerged work under
    /// `refs/converge/attempts/`.
    Retire { key: TaskKey, attempt: u32 },
    /// Remove a directory converge made and git does not know.
    RemoveDir(PathBuf),
    /// Kill the processes of a run that nothing will look at again.
    Kill { run_dir: PathBuf },
    /// `chmod 600` the secret.
    SecretMode(PathBuf),
    /// Forget worktree registrations whose directory is gone (`git worktree prune`).
    Prune,
    /// Finish the interrupted updates of checked-out branches that can be finished.
    FinishCheckouts,
    /// Forget a note of paths an update left as a person had changed them
    /// (they were shown; what to do with them is the person's call).
    ForgetLeftAlone(PathBuf),
    /// Remove what a killed process left: a stale ref lock, an unfinished
    /// worktree (see [`super::recover`]).
    Recover(super::recover::Found),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    /// What a person can do, when `--fix` cannot.
    pub hint: Option<String>,
    pub fix: Option<Fix>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level: Level::Ok,
            message: message.into(),
            hint: None,
            fix: None,
        }
    }

    fn new(check: &'static str, level: Level, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level,
            message: message.into(),
            hint: None,
            fix: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }

    fn fix(mut self, fix: Fix) -> Finding {
        self.fix = Some(fix);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Run(#[from] runs::RunError),
    #[error(transparent)]
    Act(#[from] crate::act::ActError),
    #[error(transparent)]
    Recover(#[from] super::recover::RecoverError),
    #[error("cannot fix {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The secret's check on its own: the other checks need a tick's view, and a
/// tick refuses a secret others may read.
pub fn check_secret(repo: &Repo) -> Finding {
    let secret = Secret::path(repo.common_dir());
    match std::fs::metadata(&secret) {
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                Finding::new(
                    "secret",
                    Level::Problem,
                    format!("{} has mode {mode:o}; others may read it", secret.display()),
                )
                .fix(Fix::SecretMode(secret))
            } else {
                Finding::ok("secret", format!("{} is 0600", secret.display()))
            }
        }
        Err(_) if std::env::var_os(crate::agent::token::SECRET_ENV).is_some() => {
            Finding::ok("secret", "from CONVERGE_SECRET")
        }
        Err(_) => Finding::ok(
            "secret",
            "not created yet (the first tick creates it, 0600)",
        ),
    }
}

/// What killed processes left behind (stale ref locks, unfinished worktrees):
/// needs no tick, because these are what can make every tick fail. The tick
/// removes each of them too, at its start.
pub fn check_leftovers(repo: &Repo) -> Vec<Finding> {
    use super::recover::{self, Leftover};
    let found = recover::scan(repo, &recover::converge_branches(repo));
    if found.is_empty() {
        return vec![Finding::ok(
            "crash",
            "no locks or worktrees left by a killed process",
        )];
    }
    found
        .into_iter()
        .map(|f| {
            let level = match f.leftover {
                Leftover::Note { .. } => Level::Warning,
                _ => Level::Problem,
            };
            Finding::new("crash", level, f.message.clone())
                .hint("the next `converge reconcile` removes it before it looks; `converge doctor --fix` does it now")
                .fix(Fix::Recover(f))
        })
        .collect()
}

/// Applies the fixes of [`check_leftovers`]'s findings.
pub fn fix_leftovers(findings: &[Finding]) -> Result<Vec<String>, DoctorError> {
    let mut done = Vec::new();
    // Notes last: one names what is removed before it.
    let (notes, others): (Vec<&Finding>, Vec<&Finding>) = findings.iter().partition(|f| {
        matches!(
            &f.fix,
            Some(Fix::Recover(super::recover::Found {
                leftover: super::recover::Leftover::Note { .. },
                ..
            }))
        )
    });
    for f in others.into_iter().chain(notes) {
        if let Some(Fix::Recover(found)) = &f.fix {
            done.push(super::recover::repair(found)?);
        }
    }
    Ok(done)
}

/// Runs every check against the state a snapshot (the read-only half of a tick) saw.
pub fn diagnose(repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    let mut out = Vec::new();
    let spec = &report.spec;
    let in_spec = |key: &TaskKey| {
        spec.plans
            .get(&key.plan)
            .is_some_and(|p| p.task(&key.task).is_some())
    };
    let set_aside = |key: &TaskKey| spec.invalid_plans.contains(&key.plan);
    let attempt_of = |key: &TaskKey| {
        report
            .status
            .task(&key.plan, &key.task)
            .map_or(0, |s| s.attempt)
    };
    let base = report.observation.base_tip.as_str();
    let base = gix::ObjectId::from_hex(base.as_bytes()).ok();

    // Worktrees and branches of tasks that are gone or merged.
    let mut leftovers = 0;
    let mut seen: BTreeSet<TaskKey> = BTreeSet::new();
    for (key, obs) in &report.observation.tasks {
        if !(obs.worktree || obs.branch_head.is_some()) || set_aside(key) {
            continue;
        }
        let running = matches!(
            obs.run.as_ref().map(|r| &r.state),
            Some(crate::observe::RunState::Running { .. })
        );
        let why = if !in_spec(key) {
            "is in no plan"
        } else if obs.merged {
            "is merged"
        } else {
            continue;
        };
        if running {
            continue;
        }
        leftovers += 1;
        seen.insert(key.clone());
        out.push(
            Finding::new(
                "orphans",
                Level::Problem,
                format!("{key} {why}, but its worktree or branch remains"),
            )
            .hint("the next tick's cleanup removes it; `converge doctor --fix` does it now")
            .fix(Fix::Retire {
                key: key.clone(),
                attempt: attempt_of(key),
            }),
        );
    }
    // Registrations whose directory is gone, and directories git does not know.
    let registered = repo.linked_worktrees()?;
    for (path, _) in &registered {
        if !path.exists() {
            leftovers += 1;
            out.push(
                Finding::new(
                    "orphans",
                    Level::Problem,
                    format!(
                        "a worktree is registered at {}, which is gone",
                        path.display()
                    ),
                )
                .fix(Fix::Prune),
            );
        }
    }
    // converge's own roots hold nothing else; a configured root may (a
    // directory shared with other tools), so only its plans' directories count.
    let configured = report.spec.config.reconcile.worktree_root.as_deref();
    let mut roots = vec![
        default_worktree_root(repo.common_dir()),
        legacy_worktree_root(repo.common_dir()),
    ];
    roots.dedup();
    let own = roots.len();
    if let Ok(root) = worktree_root(repo.common_dir(), configured)
        && !roots.contains(&root)
    {
        roots.push(root);
    }
    for (i, root) in roots.iter().enumerate() {
        for plan in runs::sorted_dirs(root)? {
            if i >= own
                && !report.spec.plans.contains_key(&plan)
                && !report.status.plans.contains_key(&plan)
            {
                continue;
            }
            for task in runs::sorted_dirs(&root.join(&plan))? {
                let path = root.join(&plan).join(&task);
                let known = registered
                    .iter()
                    .any(|(p, _)| crate::git::same_path(p, &path));
                if !known {
                    leftovers += 1;
                    out.push(
                        Finding::new(
                            "orphans",
                            Level::Problem,
                            format!("{} is not a worktree git knows", path.display()),
                        )
                        .fix(Fix::RemoveDir(path)),
                    );
                }
            }
        }
    }
    if leftovers == 0 {
        out.push(Finding::ok("orphans", "no orphan worktrees or branches"));
    }

    // Processes and leases.
    let mut processes = 0;
    let latest: BTreeSet<(TaskKey, u32)> = runs::latest_attempts(repo.common_dir())?
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    let runs_dir = runs_root(repo.common_dir());
    for plan in runs::sorted_dirs(&runs_dir)? {
        for task in runs::sorted_dirs(&runs_dir.join(&plan))? {
            let key = TaskKey::new(&plan, &task);
            for attempt in runs::sorted_dirs(&runs_dir.join(&plan).join(&task))? {
                let Ok(n) = attempt.parse::<u32>() else {
                    continue;
                };
                let dir = runs::run_dir(repo.common_dir(), &key, n);
                let Some(lease) = read_lease(&dir)? else {
                    continue;
                };
                let alive = runs::process_alive(lease.pid, lease.start_ticks)
                    || lease
                        .agent_pid
                        .is_some_and(|p| runs::process_alive(p, None))
                    || !runs::processes_of_run(&dir).is_empty();
                let finished = read_exit(&dir)?.is_some();
                let current = latest.contains(&(key.clone(), n));
                let supervised = runs::process_alive(lease.pid, lease.start_ticks);
                if alive && !supervised {
                    processes += 1;
                    out.push(
                        Finding::new(
                            "processes",
                            Level::Problem,
                            format!("processes of attempt {n} of {key} outlived their supervisor"),
                        )
                        .hint("the next tick reaps the attempt; `converge doctor --fix` kills them now")
                        .fix(Fix::Kill { run_dir: dir.clone() }),
                    );
                    continue;
                }
                if alive && (!current || (!in_spec(&key) && !set_aside(&key))) {
                    processes += 1;
                    out.push(
                        Finding::new(
                            "processes",
                            Level::Problem,
                            format!(
                                "attempt {n} of {key} still runs (pid {}), but {}",
                                lease.pid,
                                if current {
                                    "its task is in no plan"
                                } else {
                                    "a later attempt replaced it"
                                }
                            ),
                        )
                        .fix(Fix::Kill {
                            run_dir: dir.clone(),
                        }),
                    );
                } else if !alive && !finished && current {
                    processes += 1;
                    out.push(
                        Finding::new(
                            "processes",
                            Level::Warning,
                            format!("attempt {n} of {key} is gone without an exit record"),
                        )
                        .hint("the next tick reaps it and records the failure"),
                    );
                }
            }
        }
    }
    if processes == 0 {
        out.push(Finding::ok(
            "processes",
            "every live agent belongs to a current attempt",
        ));
    }

    // Status against git.
    let mut disagreements = 0;
    for (plan, plan_status) in &report.status.plans {
        for (task, st) in &plan_status.tasks {
            let key = TaskKey::new(plan, task);
            let obs = report.observation.task(&key);
            let merged = obs.is_some_and(|o| o.merged);
            if st.phase == Phase::Merged && !merged {
                disagreements += 1;
                out.push(
                    Finding::new(
                        "status",
                        Level::Problem,
                        format!("status says {key} is merged, but the base branch does not contain its work"),
                    )
                    .hint(format!("if the merge was reverted on purpose, `converge retry {key}` does it again")),
                );
            }
            let running = obs.and_then(|o| o.run.as_ref()).is_some_and(|r| {
                r.attempt == st.attempt
                    && matches!(r.state, crate::observe::RunState::Running { .. })
            });
            if st.phase == Phase::Running && !running && !seen.contains(&key) {
                disagreements += 1;
                out.push(
                    Finding::new(
                        "status",
                        Level::Warning,
                        format!(
                            "status says attempt {} of {key} runs, but no agent is alive for it",
                            st.attempt
                        ),
                    )
                    .hint("the next tick gates or reaps it"),
                );
            }
        }
    }
    for plan in &spec.invalid_plans {
        disagreements += 1;
        out.push(
            Finding::new(
                "status",
                Level::Warning,
                format!("plan `{plan}` does not validate and is not acted on"),
            )
            .hint(format!(
                "`converge plan validate planning/plans/{plan}.toml` lists why"
            )),
        );
    }
    if disagreements == 0 && base.is_some() {
        out.push(Finding::ok(
            "status",
            "status agrees with git and the run records",
        ));
    }

    out.push(check_secret(repo));
    out.extend(interrupted_checkouts(repo)?);
    out.extend(agent_clis(report, std::env::var("PATH").ok().as_deref()));

    // The machine.
    out.push(git_version());
    out.push(landlock());
    Ok(out)
}

/// Checkouts a crash (or a person saving a file at that instant) left behind
/// the branch converge moved: the next tick finishes them where it can.
fn interrupted_checkouts(repo: &Repo) -> Result<Vec<Finding>, DoctorError> {
    let journals = repo.interrupted_checkouts()?;
    let left: Vec<Finding> = repo
        .left_alone()
        .into_iter()
        .map(|(note, l)| {
            Finding::new(
                "checkouts",
                Level::Problem,
                format!(
                    "in {}, {} kept the version you changed while converge moved {} to {}: they lack converge's change, and committing them (`git commit -a`) would undo it",
                    l.worktree.display(),
                    l.paths.join(", "),
                    l.branch,
                    short(&l.to)
                ),
            )
            .hint(format!(
                "compare with `git diff {} -- {}` and keep what you want (`git checkout {} -- <path>` takes converge's); `converge doctor --fix` then forgets this note",
                short(&l.to),
                l.paths.join(" "),
                l.branch
            ))
            .fix(Fix::ForgetLeftAlone(note))
        })
        .collect();
    if journals.is_empty() && !left.is_empty() {
        return Ok(left);
    }
    if journals.is_empty() {
        return Ok(vec![Finding::ok(
            "checkouts",
            "every checked-out branch's files and index match it",
        )]);
    }
    Ok(left
        .into_iter()
        .chain(journals.into_iter().map(|j| {
            Finding::new(
                "checkouts",
                Level::Problem,
                format!(
                    "the checkout of {} at {} was not fully moved from {} to {}",
                    j.branch,
                    j.worktree.display(),
                    short(&j.from),
                    short(&j.to)
                ),
            )
            .hint("`converge doctor --fix` (or the next tick) finishes it; paths you changed since are left as they are and listed")
            .fix(Fix::FinishCheckouts)
        }))
        .collect())
}

/// Whether the agent CLIs that tasks still to do will run are installed:
/// without one, each such task escalates with `harness-unavailable` on its
/// first dispatch.
fn agent_clis(report: &Snapshot, path: Option<&str>) -> Vec<Finding> {
    use std::collections::BTreeMap;
    let spec = &report.spec;
    // program -> (harness, tasks that would run it)
    let mut needed: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for plan in spec.plans.values() {
        if plan.state == crate::spec::PlanState::Draft {
            continue;
        }
        for task in &plan.tasks {
            let done = report
                .status
                .task(&plan.id, &task.name)
                .is_some_and(|s| matches!(s.phase, Phase::Merged | Phase::Cancelled));
            let Some(harness) = spec.config.harnesses.get(&task.harness) else {
                continue;
            };
            if done {
                continue;
            }
            if let Some(program) = crate::harness::cli_program(harness) {
                needed
                    .entry(program)
                    .or_insert_with(|| (task.harness.clone(), Vec::new()))
                    .1
                    .push(format!("{}/{}", plan.id, task.name));
            }
        }
    }
    if needed.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (program, (harness, tasks)) in &needed {
        if crate::harness::env::program_exists(program, path) {
            continue;
        }
        let shown = if tasks.len() > 3 {
            format!("{} and {} more", tasks[..3].join(", "), tasks.len() - 3)
        } else {
            tasks.join(", ")
        };
        out.push(
            Finding::new(
                "agent CLIs",
                Level::Problem,
                format!(
                    "`{program}` (harness `{harness}`) is not installed here (not on PATH), and tasks still to do run it: {shown}"
                ),
            )
            .hint(format!(
                "install it, or set `command` in [harness.{harness}] to its path; without it each of those tasks escalates with `harness-unavailable`"
            )),
        );
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "agent CLIs",
            format!(
                "installed: {}",
                needed.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    out
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

fn git_version() -> Finding {
    let output = std::process::Command::new("git").arg("--version").output();
    let Some(output) = output.ok().filter(|o| o.status.success()) else {
        return Finding::new("git", Level::Warning, "the git command is not on PATH")
            .hint("converge needs it only to fetch and push (`[reconcile].remote`)");
    };
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version: Vec<u32> = text
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .split('.')
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    if version.len() == 2 && (version[0], version[1]) < (2, 38) {
        return Finding::new("git", Level::Warning, format!("{text}: older than 2.38"))
            .hint("push with a lease works, but use git 2.38 or newer to compare merges with `git merge-tree --write-tree`");
    }
    Finding::ok("git", text)
}

fn landlock() -> Finding {
    match crate::act::sandbox::probe() {
        crate::observe::Availability::Available { abi } => Finding::ok(
            "landlock",
            format!("available (ABI {abi}): `[sandbox] enabled = true` confines agents"),
        ),
        crate::observe::Availability::Unavailable { reason } => {
            Finding::new("landlock", Level::Warning, reason).hint(
                "agents cannot be sandboxed here: `[sandbox] enabled` runs them unconfined (and says so in status), `required = true` refuses to dispatch",
            )
        }
    }
}

/// Waits (up to a few seconds) for a killed run's processes to be gone, so that
/// the next look sees what the kill left behind.
fn wait_until_gone(run_dir: &std::path::Path) -> Result<(), DoctorError> {
    let lease = read_lease(run_dir)?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let supervisor = lease
            .as_ref()
            .is_some_and(|l| runs::process_alive(l.pid, l.start_ticks));
        if !supervisor && runs::processes_of_run(run_dir).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Applies the fixes of `findings`; returns a line per fix.
pub fn fix(
    repo: &Repo,
    report: &Snapshot,
    findings: &[Finding],
) -> Result<Vec<String>, DoctorError> {
    let base = gix::ObjectId::from_hex(report.observation.base_tip.as_bytes()).map_err(|e| {
        DoctorError::Io {
            what: "the base tip".into(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    let mut done = Vec::new();
    let mut pruned = false;
    let mut finished = false;
    for finding in findings {
        match &finding.fix {
            Some(Fix::Retire { key, attempt }) => {
                let env = |name: &str| std::env::var(name).ok();
                let signer = report.spec.config.reconcile.signer(&env);
                let root = worktree_root(
                    repo.common_dir(),
                    report.spec.config.reconcile.worktree_root.as_deref(),
                )
                .unwrap_or_else(|_| default_worktree_root(repo.common_dir()));
                retire(repo, key, base, *attempt, (&signer, &root))?;
                done.push(format!("removed the worktree and branch of {key}"));
            }
            Some(Fix::RemoveDir(path)) => {
                std::fs::remove_dir_all(path).map_err(|source| DoctorError::Io {
                    what: path.display().to_string(),
                    source,
                })?;
                done.push(format!("removed {}", path.display()));
            }
            Some(Fix::Kill { run_dir }) => {
                kill_run(run_dir).map_err(crate::act::ActError::from)?;
                wait_until_gone(run_dir)?;
                done.push(format!("killed the processes of {}", run_dir.display()));
            }
            Some(Fix::SecretMode(_)) => done.push(fix_secret(finding)?),
            Some(Fix::FinishCheckouts) if !finished => {
                finished = true;
                for recovered in repo.recover_checkouts()? {
                    done.push(match recovered {
                        crate::git::Recovered::Finished { branch, worktree } => format!(
                            "brought the checkout of {branch} at {} to its branch",
                            worktree.display()
                        ),
                        crate::git::Recovered::NothingToDo { branch } => {
                            format!("forgot an update of {branch} that never started")
                        }
                        crate::git::Recovered::Blocked {
                            branch,
                            worktree,
                            paths,
                        } => format!(
                            "brought the checkout of {branch} at {} to its branch except {}: commit, stash or restore them and run doctor again",
                            worktree.display(),
                            paths.join(", ")
                        ),
                    });
                }
            }
            Some(Fix::ForgetLeftAlone(note)) => {
                crate::git::remove_file_if_exists(note)?;
                done.push(format!("forgot the note {}", note.display()));
            }
            Some(Fix::Prune) if !pruned => {
                pruned = true;
                repo.prune_worktrees()?;
                done.push("forgot worktrees whose directories are gone".into());
            }
            Some(Fix::Recover(found)) => done.push(super::recover::repair(found)?),
            _ => {}
        }
    }
    Ok(done)
}

/// Makes the secret private (the fix of [`check_secret`]'s finding).
pub fn fix_secret(finding: &Finding) -> Result<String, DoctorError> {
    let Some(Fix::SecretMode(path)) = &finding.fix else {
        return Ok("nothing to fix".into());
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        DoctorError::Io {
            what: path.display().to_string(),
            source,
        }
    })?;
    Ok(format!("made {} 0600", path.display()))
}
