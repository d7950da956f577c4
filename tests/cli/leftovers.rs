//! What a SIGKILL inside a git write leaves behind, made by hand: `converge
//! doctor` reports each state, `doctor --fix` repairs it, and a tick recovers
//! from it by itself; locks that a live process may hold are left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Sandbox;

/// A repository with a one-task sim plan, the base branch checked out.
fn repo() -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "leftovers\n");
    sb.write("planning/goal.md", "Recover.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\n",
    );
    sb.write(
        "planning/plans/p.toml",
        "[plan]\nname = \"P\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"T.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfiles = [{ path = \"t.txt\", content = \"t\\n\" }]\n",
    );
    sb.commit_all("plan");
    sb
}

fn git_dir(sb: &Sandbox) -> PathBuf {
    sb.path().join(".git")
}

/// A journal note of a converge process that is gone (pid 0 never is one).
fn dead_note(sb: &Sandbox, text: &str) -> PathBuf {
    let dir = git_dir(sb).join("converge/intents");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let note = dir.join("0-12345-0");
    std::fs::write(&note, text).expect("write note");
    note
}

fn make_old(path: &Path) {
    let status = Command::new("touch")
        .args(["-d", "2020-01-01T00:00:00"])
        .arg(path)
        .status()
        .expect("touch");
    assert!(status.success());
}

/// Doctor reports a `crash` problem mentioning `what`; `--fix` repairs it and
/// doctor is clean afterwards.
#[track_caller]
fn doctor_finds_and_fixes(sb: &Sandbox, what: &str) {
    let doctor = sb.converge(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.transcript());
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("problem  crash") && l.contains(what)),
        "{}",
        doctor.transcript()
    );
    let fixed = sb.converge(&["doctor", "--fix"]);
    assert!(fixed.stdout.contains("fixed: "), "{}", fixed.transcript());
    sb.converge(&["doctor"]).success();
}

#[track_caller]
fn ticks_succeed(sb: &Sandbox) {
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(!run.stdout.contains("recovered:"), "{}", run.transcript());
}

#[test]
fn a_base_branch_lock_left_by_a_killed_converge_is_removed_by_the_next_tick() {
    let sb = repo();
    dead_note(&sb, "ref refs/heads/main\n");
    let lock = git_dir(&sb).join("refs/heads/main.lock");
    std::fs::write(&lock, "").expect("lock");
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(
        run.stdout.contains("recovered: removed the stale lock"),
        "{}",
        run.transcript()
    );
    assert!(!lock.exists());
    assert!(!git_dir(&sb).join("converge/intents/0-12345-0").exists());
    // (The agent the tick started may still run: only this check matters.)
    let doctor = sb.converge(&["doctor"]);
    assert!(
        doctor.stdout.contains("ok       crash"),
        "{}",
        doctor.transcript()
    );
}

#[test]
fn doctor_fixes_a_base_branch_lock_left_by_a_killed_converge() {
    let sb = repo();
    dead_note(&sb, "ref refs/heads/main\n");
    let lock = git_dir(&sb).join("refs/heads/main.lock");
    std::fs::write(&lock, "").expect("lock");
    doctor_finds_and_fixes(&sb, "main.lock");
    assert!(!lock.exists());
    ticks_succeed(&sb);
}

#[test]
fn a_fresh_base_branch_lock_that_no_converge_took_is_left_to_its_owner() {
    let sb = repo();
    sb.converge(&["reconcile", "--once"]).success();
    // A person's git may hold this right now: no note, and it is new.
    let lock = git_dir(&sb).join("refs/heads/main.lock");
    std::fs::write(&lock, "").expect("lock");
    let doctor = sb.converge(&["doctor"]);
    assert!(
        !doctor.stdout.contains("main.lock"),
        "{}",
        doctor.transcript()
    );
    let _ = sb.converge(&["reconcile", "--once"]);
    assert!(
        lock.exists(),
        "converge removed a lock it cannot know is stale"
    );
    // Nor when a converge that died long ago had noted the same ref: the lock
    // was made long after that note.
    let note = dead_note(&sb, "ref refs/heads/main\n");
    make_old(&note);
    let _ = sb.converge(&["reconcile", "--once"]);
    assert!(lock.exists(), "converge removed a lock made after its note");
    // Once it is older than a minute, no git still holds it.
    make_old(&lock);
    let run = sb.converge(&["reconcile", "--once"]);
    assert!(
        run.stdout.contains("recovered: removed the stale lock"),
        "{}",
        run.transcript()
    );
    assert!(!lock.exists());
}

#[test]
fn a_lock_of_converges_own_refs_is_removed_without_a_note() {
    let sb = repo();
    let lock = git_dir(&sb).join("refs/converge/attempts/p/t/1.lock");
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
    std::fs::write(&lock, "").expect("lock");
    doctor_finds_and_fixes(&sb, "1.lock");
    assert!(!lock.exists());
    ticks_succeed(&sb);

    std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
    std::fs::write(&lock, "").expect("lock");
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(run.stdout.contains("recovered:"), "{}", run.transcript());
    assert!(!lock.exists());
}

#[test]
fn a_task_branch_lock_stays_while_a_process_of_the_task_lives() {
    let sb = repo();
    sb.converge(&["reconcile", "--once"]).success();
    let lock = git_dir(&sb).join("refs/heads/converge/p/t.lock");
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
    std::fs::write(&lock, "").expect("lock");
    // An agent of the task (it names its run directory), committing.
    let run_dir = git_dir(&sb).join("converge/runs/p/t/1");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let mut agent = Command::new("sleep")
        .arg("30")
        .env("CONVERGE_RUN_DIR", &run_dir)
        .spawn()
        .expect("sleep");
    let doctor = sb.converge(&["doctor"]);
    assert!(!doctor.stdout.contains("t.lock"), "{}", doctor.transcript());
    agent.kill().expect("kill");
    agent.wait().expect("wait");
    // The real attempt's supervisor may still be finishing.
    for _ in 0..100 {
        if sb.converge(&["doctor"]).stdout.contains("t.lock") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    doctor_finds_and_fixes(&sb, "t.lock");
    assert!(!lock.exists());
}

/// A converge worktree registered with git, made with git itself.
fn worktree(sb: &Sandbox, path: &str) -> (PathBuf, PathBuf) {
    sb.git(&["worktree", "add", "-q", "--detach", path]);
    let dir = sb.path().join(path);
    let gitfile = std::fs::read_to_string(dir.join(".git")).expect(".git file");
    let admin = PathBuf::from(gitfile.trim().strip_prefix("gitdir: ").expect("gitdir"));
    (dir, admin)
}

#[test]
fn a_worktree_left_locked_initializing_is_removed() {
    let sb = repo();
    let (dir, admin) = worktree(&sb, ".converge/worktrees/p/t");
    std::fs::write(admin.join("locked"), "initializing\n").expect("lock");
    doctor_finds_and_fixes(&sb, "locked: initializing");
    assert!(!dir.exists() && !admin.exists());
    // The next dispatch checks out there again.
    ticks_succeed(&sb);
    assert!(dir.join(".git").exists());
}

#[test]
fn a_worktree_left_locked_initializing_does_not_stop_the_tick() {
    let sb = repo();
    let (dir, admin) = worktree(&sb, ".converge/worktrees/p/t");
    std::fs::write(admin.join("locked"), "initializing\n").expect("lock");
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(
        run.stdout
            .contains("recovered: removed the unfinished worktree"),
        "{}",
        run.transcript()
    );
    assert!(run.stdout.contains("dispatch p/t"), "{}", run.transcript());
    assert!(dir.join(".git").exists());
}

#[test]
fn a_worktree_without_its_git_file_is_removed() {
    let sb = repo();
    let (dir, admin) = worktree(&sb, ".converge/worktrees/p/t");
    std::fs::remove_file(dir.join(".git")).expect("rm .git");
    doctor_finds_and_fixes(&sb, "has no .git file");
    assert!(!dir.exists() && !admin.exists());
    ticks_succeed(&sb);
}

#[test]
fn a_merge_check_left_half_removed_is_removed() {
    let sb = repo();
    let (dir, admin) = worktree(&sb, ".git/converge/merge-checks/p--t");
    std::fs::remove_file(dir.join(".git")).expect("rm .git");
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(run.stdout.contains("recovered:"), "{}", run.transcript());
    assert!(!dir.exists() && !admin.exists());
    // Unregistered, without .git: gone too.
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    doctor_finds_and_fixes(&sb, "no worktree registration");
    assert!(!dir.exists());
}

#[test]
fn a_persons_worktree_elsewhere_is_never_touched() {
    let sb = repo();
    let (dir, admin) = worktree(&sb, "mine");
    std::fs::write(admin.join("locked"), "initializing\n").expect("lock");
    let doctor = sb.converge(&["doctor"]);
    assert!(
        !doctor.stdout.contains("problem  crash"),
        "{}",
        doctor.transcript()
    );
    let _ = sb.converge(&["reconcile", "--once"]);
    assert!(dir.exists() && admin.join("locked").exists());
}

/// A kill between noting a retry's fork (the new base tip) and moving the task
/// branch there left the failed attempt's branch behind its noted fork: that
/// head, with no work, is in the base, and the task counted as merged without
/// its work ever merging (found by the random-kill test).
#[test]
fn a_branch_behind_its_noted_fork_is_not_merged_work() {
    let sb = Sandbox::repo();
    sb.write("README.md", "fork\n");
    sb.write("planning/goal.md", "Recover.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\nbackoff = { base = \"1s\", factor = 1, max = \"1s\" }\n",
    );
    sb.write(
        "planning/plans/p.toml",
        "[plan]\nname = \"P\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"T.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfail_attempts = 1\nfiles = [{ path = \"t.txt\", content = \"t\\n\" }]\n",
    );
    sb.commit_all("plan");
    sb.converge(&["reconcile", "--once"]).success();
    // The first attempt fails; its gate records that.
    let mut gated = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let run = sb.converge(&["reconcile", "--once"]);
        run.success();
        if run.stdout.contains("gate p/t (attempt 1): failed") {
            gated = true;
            break;
        }
    }
    assert!(gated, "the first attempt was never gated");
    let failed_head = sb.git(&["rev-parse", "converge/p/t"]).trim().to_owned();
    // The base moves on; a retry notes its new fork and is killed before the
    // branch moves.
    sb.write("other.txt", "other\n");
    let tip = sb.commit_all("other");
    assert_ne!(tip, failed_head);
    std::fs::write(git_dir(&sb).join("converge/forks/p/t"), &tip).expect("marker");
    // Clean ticks finish the task with its work merged.
    let mut merged = false;
    for _ in 0..60 {
        let _ = sb.converge(&["reconcile", "--once"]);
        let status = sb.read("planning/status/p.toml");
        if status.contains("phase = \"merged\"") {
            merged = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(merged, "{}", sb.read("planning/status/p.toml"));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("t.txt"))
            .ok()
            .as_deref(),
        Some("t\n"),
        "the task counted as merged without its work"
    );
    let merges = sb.git(&[
        "log",
        "--first-parent",
        "--min-parents=2",
        "--format=%B",
        "main",
    ]);
    assert_eq!(merges.matches("Converge-Task: t\n").count(), 1, "{merges}");
}

/// A dispatch killed after it made the attempt's run directory but before its
/// supervisor wrote the lease started nothing: the attempt is dispatched
/// again, not reaped as an agent that vanished (which counted as a failure,
/// and a few of them escalated the task).
#[test]
fn a_dispatch_killed_before_its_supervisor_started_is_done_again() {
    let sb = repo();
    let run_dir = git_dir(&sb).join("converge/runs/p/t/1");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    std::fs::write(run_dir.join("prompt.md"), "T.\n").expect("prompt");
    let doctor = sb.converge(&["doctor"]);
    assert!(
        doctor.stdout.contains("attempt 1 of p/t was never started"),
        "{}",
        doctor.transcript()
    );
    let run = sb.converge(&["reconcile", "--once"]);
    run.success();
    assert!(
        run.stdout.contains("recovered: removed")
            && run.stdout.contains("dispatch p/t (attempt 1,"),
        "{}",
        run.transcript()
    );
    assert!(!run.stdout.contains("reap"), "{}", run.transcript());
    let status = sb.read("planning/status/p.toml");
    assert!(!status.contains("agent-vanished"), "{status}");
}
