//! Ephemeral runners (docs/github.md, "What persists between jobs"): every
//! "job" is a fresh clone of the fake GitHub's bare repository that runs
//! `converge reconcile --until-idle --wait` (as
//! examples/github-actions/converge.yml does) and exits. Jobs run one after
//! another and two at once, and some are SIGKILLed mid-job together with the
//! agents they started (a runner that is lost takes everything with it).
//! Nothing but git and GitHub carries over from one job to the next; the plan
//! must still converge through pull requests, every task merged exactly once
//! at a head converge gated, with no claim left to block it. A lost job's
//! claims lapse after the short `task_timeout` and `claim_grace` configured
//! here; an attempt that passed its gate in a lost job before its work
//! reached GitHub is then reaped and done again. Where a kill lands in the
//! one window docs/github.md lists as needing a person, the test does what it
//! says a person does (delete the branch, `converge retry`) and counts it.
//!
//! More seeds: `CONVERGE_RUNNER_SEEDS=1-10 cargo test --test cli runners`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use super::FakeGitHub;
use crate::support::{BIN, Sandbox, isolate, seeds};

/// Six tasks in a DAG: `c` after `a`, `d` after `a` and `b`, `e` after `c`,
/// `f` after `d` and `e`. `b` fails its first attempt.
const TASKS: [(&str, &str); 6] = [
    ("a", ""),
    ("b", ""),
    ("c", "\"a\""),
    ("d", "\"a\", \"b\""),
    ("e", "\"c\""),
    ("f", "\"d\", \"e\""),
];

fn plan() -> String {
    let mut text = "[plan]\nname = \"Jobs\"\nstate = \"active\"\n".to_owned();
    for (name, deps) in TASKS {
        let fail = if name == "b" {
            "fail_attempts = 1\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Write {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nretry_max = 5\ndepends_on = [{deps}]\n[tasks.sim]\nsleep = \"300ms\"\n{fail}files = [{{ path = \"{name}.txt\", content = \"{name}\\n\" }}]\n"
        ));
    }
    text
}

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

/// Pushes `planning/` to the fake's `main` from a clone that is then dropped.
fn seed_repository(fake: &FakeGitHub) {
    let sb = Sandbox::new();
    sb.git(&["clone", "-q", &fake.remote_path().to_string_lossy(), "."]);
    sb.git(&["config", "user.name", "Test Committer"]);
    sb.git(&["config", "user.email", "committer@example.com"]);
    sb.write(
        "planning/goal.md",
        "Converge on runners that come and go.\n",
    );
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"sim\"\nremote = \"origin\"\nstatus_branch = \"converge/status\"\nmax_agents = 4\nactions_per_tick = 4\ndispatches_per_hour = 10000\ntask_timeout = \"6s\"\nclaim_grace = \"1s\"\nbackoff = {{ base = \"1s\", factor = 1, max = \"1s\" }}\n\n[forge]\nkind = \"github\"\nrepo = \"{}/{}\"\napi_url = \"{}\"\nmax_open_prs = 20\nprs_per_hour = 1000\n",
            fake.owner(),
            fake.repo(),
            fake.api_url()
        ),
    );
    sb.write("planning/plans/jobs.toml", plan());
    sb.commit_all("plan");
    sb.git(&["push", "-q", "origin", "main"]);
}

/// One runner's job: a fresh clone and home, converge running in its own
/// process group with its output in a file.
struct Job {
    name: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Job {
    fn start(fake: &FakeGitHub, name: &str) -> Job {
        let dir = tempfile::tempdir().expect("job dir");
        let clone = dir.path().join("repo");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let git = |args: &[&str], cwd: &Path| {
            let mut command = Command::new("git");
            isolate(&mut command, &home);
            let out = command.args(args).current_dir(cwd).output().expect("git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let remote = fake.remote_path();
        git(
            &["clone", "-q", &remote.to_string_lossy(), "repo"],
            dir.path(),
        );
        git(&["config", "user.name", "converge"], &clone);
        git(&["config", "user.email", "converge@example.com"], &clone);
        let log = std::fs::File::create(dir.path().join("job.log")).expect("log");
        let mut command = Command::new(BIN);
        isolate(&mut command, &home);
        let child = command
            .args(["reconcile", "--until-idle", "--wait"])
            .env("CONVERGE_GITHUB_TOKEN", fake.token())
            .current_dir(&clone)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("converge starts");
        Job {
            name: name.to_owned(),
            dir,
            child,
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("job.log")).unwrap_or_default();
        format!("--- job {} ---\n{text}", self.name)
    }

    /// Waits for the job to end by itself (at most `limit`); its exit code.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log = self.log();
                assert!(!log.contains("panicked"), "{log}");
                return (status.code(), log);
            }
            if Instant::now() >= until {
                let (_, log) = self.kill();
                panic!("job did not end within {limit:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The runner is lost: SIGKILL converge's process group and every process
    /// group this job's agents run in (their command lines or working
    /// directories are inside the job's directory). Whether it had ended.
    fn kill(mut self) -> (bool, String) {
        let ended = self.child.try_wait().expect("wait").is_some();
        let pid = self.child.id();
        kill_group(pid);
        let _ = self.child.wait();
        for other in processes_inside(self.dir.path()) {
            kill_group(other);
        }
        (ended, self.log())
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// The processes whose command line or working directory names `dir`.
fn processes_inside(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle)
            || cwd.starts_with(PathBuf::from(&needle))
        {
            found.push(pid);
        }
    }
    found
}

fn merged_tasks(fake: &FakeGitHub) -> BTreeMap<String, usize> {
    let mut merged = BTreeMap::new();
    for pr in fake.prs() {
        if pr.merged.is_some() {
            *merged.entry(pr.head.clone()).or_insert(0) += 1;
        }
    }
    merged
}

fn converged(fake: &FakeGitHub) -> bool {
    merged_tasks(fake).len() == TASKS.len()
}

/// What a person must do after lost jobs (the known limits of docs/github.md,
/// "What persists between jobs"): the task and whether its branch on GitHub
/// must go first.
fn needs_a_person(fake: &FakeGitHub) -> Vec<(String, bool)> {
    pushed_before_recorded(fake)
        .into_iter()
        .map(|t| (t, true))
        .collect()
}

/// The tasks escalated because their branch on GitHub holds a head converge
/// pushed in a job that was lost before it recorded the push: a later attempt
/// takes it for someone else's. (Every push in this test is converge's.)
fn pushed_before_recorded(fake: &FakeGitHub) -> Vec<String> {
    status_tasks(fake)
        .into_iter()
        .filter(|(_, t)| {
            t.get("phase").and_then(|p| p.as_str()) == Some("escalated")
                && t.get("last_failure")
                    .and_then(|f| f.get("message"))
                    .and_then(|m| m.as_str())
                    .is_some_and(|m| m.contains("not where converge left it"))
        })
        .map(|(name, _)| name)
        .collect()
}

fn status_tasks(fake: &FakeGitHub) -> Vec<(String, toml::Value)> {
    let Ok(text) = fake.with_state(|st| {
        st.git
            .try_git(&["show", "converge/status:planning/status/jobs.toml"], &[])
    }) else {
        return Vec::new();
    };
    let status: toml::Table = text.parse().expect("status is TOML");
    status
        .get("tasks")
        .and_then(|t| t.as_table())
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// What a person does for such a task: deletes its branch on GitHub if it
/// must go, then `converge retry` on a clone, pushed.
fn retry_by_hand(fake: &FakeGitHub, task: &str, delete_branch: bool) {
    if delete_branch {
        fake.git(&["branch", "-D", &format!("converge/jobs/{task}")]);
    }
    let sb = Sandbox::new();
    sb.git(&["clone", "-q", &fake.remote_path().to_string_lossy(), "."]);
    sb.git(&["config", "user.name", "A Person"]);
    sb.git(&["config", "user.email", "person@example.com"]);
    sb.converge(&["retry", &format!("jobs/{task}")]).success();
    sb.git(&["push", "-q", "origin", "main"]);
}

fn run_seed(seed: u64) {
    let started = Instant::now();
    let fake = FakeGitHub::start();
    seed_repository(&fake);
    let mut rng = Rng::new(seed);
    let mut logs = Vec::new();
    let mut kills = 0;
    let mut by_hand = 0;
    let mut round = 0;
    let job_limit = Duration::from_secs(30);
    while !converged(&fake) {
        round += 1;
        if round > 1 {
            // The schedule's interval (a real one is minutes).
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "seed {seed}: not converged after {round} rounds ({:?}): merged {:?}\n{}\n{}",
            started.elapsed(),
            merged_tasks(&fake),
            logs.join("\n"),
            fake.git(&["show", "converge/status:planning/STATUS.md"])
        );
        // Half the rounds run two jobs at once (the second always, the
        // first never: its one job must not lose its claims to another and
        // exit before its kill); in half of the first eight rounds (the
        // first always) a job is killed 0.1-2
        // s into its run (the agents sleep 300 ms, so kills land while
        // agents run and while gates, proposals and merges go on).
        let pair = round == 2 || (round > 2 && rng.below(2) == 0);
        let kill = round == 1 || (round <= 8 && rng.below(2) == 0);
        // The first kill early enough to land inside the job for sure.
        let window = if round == 1 { 500 } else { 1900 };
        let delay = Duration::from_millis(100 + rng.below(window));
        let first = Job::start(&fake, &format!("{round}a"));
        let second = pair.then(|| Job::start(&fake, &format!("{round}b")));
        if kill {
            std::thread::sleep(delay);
            let (ended, log) = first.kill();
            kills += u32::from(!ended);
            logs.push(format!("(killed after {delay:?}) {log}"));
        } else {
            let (code, log) = first.finish(job_limit);
            // 3: lost a race with the other job (a claim or status push).
            assert!(matches!(code, Some(0 | 3)), "seed {seed}:\n{log}");
            logs.push(log);
        }
        if let Some(second) = second {
            let (code, log) = second.finish(job_limit);
            assert!(matches!(code, Some(0 | 3)), "seed {seed}:\n{log}");
            logs.push(log);
        }
        for (task, delete_branch) in needs_a_person(&fake) {
            retry_by_hand(&fake, &task, delete_branch);
            logs.push(format!(
                "--- a person retried jobs/{task} (branch deleted: {delete_branch}) ---"
            ));
            by_hand += 1;
        }
    }
    let all = logs.join("\n");
    assert!(kills > 0, "seed {seed}: no job was killed mid-run\n{all}");
    // Every task merged exactly once, through its own pull request, at a
    // head converge's gate passed (the `converge/gate` status it sets only
    // on gated heads).
    let merged = merged_tasks(&fake);
    for (name, _) in TASKS {
        let branch = format!("converge/jobs/{name}");
        assert_eq!(
            merged.get(&branch),
            Some(&1),
            "seed {seed}: {merged:?}\n{all}"
        );
    }
    for pr in fake.prs().iter().filter(|p| p.merged.is_some()) {
        assert_eq!(fake.merges(pr.number), 1, "seed {seed}: {pr:?}");
        let gated = fake.statuses(&pr.head_sha);
        assert!(
            gated
                .iter()
                .any(|s| s.context == "converge/gate" && s.state == "success"),
            "seed {seed}: merged a head converge did not gate: {pr:?} {gated:?}\n{all}"
        );
    }
    assert_eq!(fake.total_merges(), TASKS.len(), "seed {seed}\n{all}");
    let files = fake.git(&["ls-tree", "--name-only", "main"]);
    for (name, _) in TASKS {
        assert!(
            files.contains(&format!("{name}.txt")),
            "seed {seed}: {files}"
        );
    }
    // A last job finds nothing to do, and no claim is left.
    let (code, log) = Job::start(&fake, "last").finish(job_limit);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(fake.total_merges(), TASKS.len(), "seed {seed}: {log}");
    let status = fake.git(&["show", "converge/status:planning/status/jobs.toml"]);
    assert!(
        !status.contains(".claim]"),
        "seed {seed}: a claim is left:\n{status}"
    );
    if std::env::var_os("CONVERGE_RUNNER_LOG").is_some() {
        eprintln!("{all}");
    }
    eprintln!(
        "seed {seed}: converged in {round} rounds, {kills} jobs killed mid-run, {by_hand} tasks retried by hand, {:?}",
        started.elapsed()
    );
}

#[test]
fn ephemeral_runners_killed_or_racing_converge_the_plan_each_task_merged_once() {
    for seed in seeds("CONVERGE_RUNNER_SEEDS", (1, 1)) {
        run_seed(seed);
    }
}
