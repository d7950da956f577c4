//! Random kills: `reconcile --once` is SIGKILLed at seeded random instants
//! (0-100 ms after it starts, so inside gix's ref, index and worktree writes,
//! not only between steps as the named crash points are), with clean ticks in
//! between, on a plan with merge conflicts, failing attempts and a merge
//! invariant. Afterwards clean ticks must converge every task, each merged
//! exactly once, with nothing left for a person and `converge doctor` clean.
//!
//! CI runs a short version. Longer: `CONVERGE_KILL_SEEDS=1-20` (seeds, as
//! `FROM-TO`) and `CONVERGE_KILL_ROUNDS=300` (kills per seed); see
//! docs/reconcile.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Sandbox, isolate, seeds};

const TASKS: usize = 10;

/// A deterministic generator (xorshift) so that a failing seed repeats.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Ten sim tasks: t2/t3 and t6/t7 write the same file differently (the
/// second of each pair to merge conflicts and starts over), every third task
/// fails its first attempt, and a few depend on earlier ones.
fn plan() -> String {
    let mut text = "[plan]\nname = \"Killed\"\nstate = \"active\"\n".to_owned();
    for i in 0..TASKS {
        let deps = match i {
            4 => "\"t0\"",
            8 => "\"t1\", \"t4\"",
            9 => "\"t5\"",
            _ => "",
        };
        let fail = if i % 3 == 1 {
            "fail_attempts = 1\n"
        } else {
            ""
        };
        let shared = match i {
            2 | 3 => format!(", {{ path = \"shared/a.txt\", content = \"from t{i}\\n\" }}"),
            6 | 7 => format!(", {{ path = \"shared/b.txt\", content = \"from t{i}\\n\" }}"),
            _ => String::new(),
        };
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\ndescription = \"Task {i}.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\ndepends_on = [{deps}]\n[tasks.sim]\n{fail}files = [{{ path = \"f/{i}.txt\", content = \"{i}\\n\" }}{shared}]\n"
        ));
    }
    text
}

/// `checked_out`: the base branch is checked out in the repository (converge
/// updates that checkout as it merges); otherwise the checkout is on a branch
/// of its own and converge writes only refs and its own worktrees.
fn setup(checked_out: bool) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "kill test\n");
    sb.write("planning/goal.md", "Survive SIGKILL at any instant.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 4\nactions_per_tick = 3\ndispatches_per_hour = 10000\nbackoff = { base = \"1s\", factor = 1, max = \"1s\" }\n\n[invariants.ok]\nkind = \"custom\"\ncommand = \"true\"\n\n[merge]\ninvariants = [\"ok\"]\n",
    );
    sb.write("planning/plans/killed.toml", plan());
    sb.commit_all("plan");
    if !checked_out {
        sb.git(&["checkout", "-q", "-b", "elsewhere"]);
    }
    sb
}

fn command(sb: &Sandbox, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    isolate(&mut command, home);
    command.args(args).current_dir(sb.path());
    command
}

struct Tick {
    code: Option<i32>,
    out: String,
}

fn tick(sb: &Sandbox, home: &Path) -> Tick {
    let output = command(sb, home, &["reconcile", "--once"])
        .output()
        .expect("converge runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!out.contains("panicked"), "converge panicked: {out}");
    Tick {
        code: output.status.code(),
        out,
    }
}

/// Starts a tick and SIGKILLs it `delay` later (unless it finished first).
/// Returns whether it was killed.
fn killed_tick(sb: &Sandbox, home: &Path, delay: Duration) -> bool {
    let mut child = command(sb, home, &["reconcile", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("converge starts");
    let until = Instant::now() + delay;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(2)));
    }
    // `Child::kill` is SIGKILL on Unix.
    let _ = child.kill();
    let status = child.wait().expect("wait");
    status.code().is_none()
}

/// Counts the `recovered: ...` lines of a tick by kind of leftover.
fn tally(out: &str, counts: &mut BTreeMap<String, u32>) {
    for line in out.lines().filter(|l| l.starts_with("recovered: ")) {
        let kind = if line.contains("never started") {
            "unstarted run".to_owned()
        } else if line.contains("unfinished worktree") {
            if line.contains("merge-checks") {
                "merge check".to_owned()
            } else {
                "task worktree".to_owned()
            }
        } else if let Some((_, lock)) = line.split_once("/.git/") {
            let lock = lock.trim();
            if lock.starts_with("refs/heads/converge/") {
                "refs/heads/converge/*.lock".to_owned()
            } else if lock.starts_with("refs/converge/") {
                "refs/converge/*.lock".to_owned()
            } else {
                lock.to_owned()
            }
        } else {
            line.to_owned()
        };
        *counts.entry(kind).or_default() += 1;
    }
}

/// Copies a failed run's repository where a person can look at it.
fn keep(sb: &Sandbox, seed: &str) -> PathBuf {
    let keep = std::env::temp_dir().join(format!("converge-kill-seed-{seed}"));
    let _ = std::fs::remove_dir_all(&keep);
    let _ = Command::new("cp")
        .arg("-a")
        .arg(sb.path())
        .arg(&keep)
        .status();
    keep
}

/// Whether status on the base branch says every task is merged (read from
/// the branch: the checkout may be elsewhere).
fn all_merged(sb: &Sandbox, home: &Path) -> bool {
    let mut show = Command::new("git");
    isolate(&mut show, home);
    let Ok(output) = show
        .args(["show", "main:planning/status/killed.toml"])
        .current_dir(sb.path())
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&output.stdout)
        .matches("phase = \"merged\"")
        .count()
        == TASKS
}

/// Every `*.lock` file below `dir`.
fn lock_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            lock_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "lock") {
            out.push(path);
        }
    }
}

/// Runs episodes (a fresh repository each, killed until its plan converged or
/// the kills left to do are done, then verified) until `kills` ticks were
/// killed in all.
fn run_seed(seed: u64, kills: u32, checked_out: bool) {
    let mut rng = Rng::new(seed);
    let mut done = 0;
    let mut episode = 0;
    while done < kills {
        episode += 1;
        done += run_episode(seed, episode, &mut rng, kills - done, checked_out);
    }
    eprintln!("seed {seed}: {done} kills in {episode} episodes, every one converged");
}

/// Kills ticks (up to `budget` times) while the plan is not merged, then lets
/// clean ticks finish it and checks what they left. Returns the kills.
fn run_episode(seed: u64, episode: u32, rng: &mut Rng, budget: u32, checked_out: bool) -> u32 {
    let seed_name = format!("{seed}.{episode}");
    let seed = &seed_name;
    let sb = setup(checked_out);
    let home = tempfile::tempdir().expect("home");
    let mut kills = 0;
    // Clean ticks that failed during the kill phase: what a crash left behind
    // that the next tick could not get past on its own.
    let mut failures: Vec<String> = Vec::new();
    // What clean ticks recovered from, by kind.
    let mut recovered: BTreeMap<String, u32> = BTreeMap::new();
    let mut rounds = 0;
    while kills < budget && rounds < budget * 4 && !all_merged(&sb, home.path()) {
        rounds += 1;
        // Most ticks that act take 10-60 ms here.
        let delay = Duration::from_millis(rng.below(61));
        kills += u32::from(killed_tick(&sb, home.path(), delay));
        if rng.below(4) == 0 {
            let t = tick(&sb, home.path());
            tally(&t.out, &mut recovered);
            if !matches!(t.code, Some(0 | 3)) {
                failures.push(t.out);
            }
        }
    }
    // Clean ticks until the plan is merged and a few ticks found nothing to do.
    let mut calm = 0;
    let mut failed_in_a_row = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let t = tick(&sb, home.path());
        tally(&t.out, &mut recovered);
        if matches!(t.code, Some(0 | 3)) {
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
            failures.push(t.out.clone());
            if failed_in_a_row >= 5 {
                let kept = keep(&sb, seed);
                panic!(
                    "seed {seed}: wedged after {kills} kills (kept in {}): every tick fails:\n{}",
                    kept.display(),
                    t.out
                );
            }
        }
        if t.code == Some(0) && t.out.contains("nothing to do") {
            calm += 1;
            if calm >= 2 && all_merged(&sb, home.path()) {
                break;
            }
        } else {
            calm = 0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !all_merged(&sb, home.path()) {
        let explain = command(&sb, home.path(), &["reconcile", "--dry-run", "--explain"])
            .output()
            .expect("converge runs");
        let kept = keep(&sb, seed);
        panic!(
            "seed {seed}: did not converge after {kills} kills (kept in {}):\n{}{}",
            kept.display(),
            String::from_utf8_lossy(&explain.stdout),
            String::from_utf8_lossy(&explain.stderr)
        );
    }
    eprintln!(
        "seed {seed}: converged through {kills} kills in {rounds} rounds; clean ticks recovered {recovered:?}"
    );
    // A clean tick after a kill recovers by itself: none fails.
    if !failures.is_empty() {
        let kept = keep(&sb, seed);
        panic!(
            "seed {seed}: {} clean tick(s) failed after kills (kept in {}):\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n---\n")
        );
    }
    let fail = |what: String| -> ! {
        let kept = keep(&sb, seed);
        panic!(
            "seed {seed} ({kills} kills; kept in {}): {what}",
            kept.display()
        )
    };

    // Every task merged exactly once, on the base branch's own history: merge
    // commits (two parents; a status commit recording a merge has one) with
    // the task's trailer.
    let log = sb.git(&["log", "--first-parent", "--format=%P%x01%B%x00", "main"]);
    for i in 0..TASKS {
        let trailer = format!("Converge-Task: t{i}\n");
        let merges = log
            .split('\0')
            .filter_map(|c| c.trim_start().split_once('\x01'))
            .filter(|(parents, message)| {
                parents.split_whitespace().count() == 2
                    && message.contains("Converge-Action: merge\n")
                    && message.contains(&trailer)
            })
            .count();
        if merges != 1 {
            fail(format!("t{i} merged {merges} times"));
        }
        if sb.git(&["show", &format!("main:f/{i}.txt")]) != format!("{i}\n") {
            fail(format!("f/{i}.txt does not hold t{i}'s work"));
        }
    }
    // Nothing left for a person: no worktrees, branches, locks, merge checks.
    let worktrees = sb.git(&["worktree", "list", "--porcelain"]);
    if worktrees.matches("worktree ").count() != 1 {
        fail(format!("worktrees remain:\n{worktrees}"));
    }
    let branches = sb.git(&["branch", "--list", "converge/*"]);
    if !branches.is_empty() {
        fail(format!("task branches remain:\n{branches}"));
    }
    let git_dir = sb.path().join(".git");
    let mut locks = Vec::new();
    lock_files(&git_dir, &mut locks);
    if !locks.is_empty() {
        fail(format!("lock files remain: {locks:?}"));
    }
    for dir in [
        git_dir.join("worktrees"),
        git_dir.join("converge/merge-checks"),
        sb.path().join(".converge/worktrees/killed"),
    ] {
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !left.is_empty() {
            fail(format!("{} still holds {left:?}", dir.display()));
        }
    }
    let doctor = command(&sb, home.path(), &["doctor"])
        .output()
        .expect("doctor runs");
    if !doctor.status.success() {
        fail(format!(
            "doctor:\n{}",
            String::from_utf8_lossy(&doctor.stdout)
        ));
    }
    let mut fsck = Command::new("git");
    isolate(&mut fsck, home.path());
    let fsck = fsck
        .args(["fsck", "--strict", "--no-dangling", "--no-progress"])
        .current_dir(sb.path())
        .output()
        .expect("git fsck runs");
    if !fsck.status.success() || !fsck.stderr.is_empty() || !fsck.stdout.is_empty() {
        fail(format!(
            "git fsck --strict:\n{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        ));
    }
    let status = sb.git(&["status", "--porcelain"]);
    if !status.is_empty() {
        fail(format!("the checkout is not clean:\n{status}"));
    }
    kills
}

/// Kills per seed.
fn rounds() -> u32 {
    std::env::var("CONVERGE_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(100)
}

#[test]
fn sigkill_at_random_instants_inside_ticks_leaves_nothing_that_needs_a_person() {
    for seed in seeds("CONVERGE_KILL_SEEDS", (1, 1)) {
        run_seed(seed, rounds(), false);
    }
}

/// The same with the base branch checked out where converge runs, so that
/// kills also land inside the update of that checkout's index and files.
#[test]
fn sigkill_inside_ticks_with_the_base_branch_checked_out() {
    for seed in seeds("CONVERGE_KILL_SEEDS", (1, 1)) {
        run_seed(seed, rounds(), true);
    }
}
