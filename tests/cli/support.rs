//! Hermetic helpers: temporary directories and git repositories with isolated
//! configuration and fixed dates, and a runner for the real binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_converge");
pub const DATE: &str = "2026-01-01T00:00:00+00:00";

/// The environment every child process gets: no user or system git config, a
/// fixed identity and dates, no colors, C locale.
pub fn isolate(command: &mut Command, home: &Path) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_AUTHOR_DATE", DATE)
        .env("GIT_COMMITTER_DATE", DATE)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env("NO_COLOR", "1");
}

/// Runs converge in `dir` (which need not be a [`Sandbox`]: a clone, a repository
/// shared between threads) with the isolated environment and `env` on top.
pub fn converge_at(
    dir: &Path,
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(BIN);
    isolate(&mut command, home);
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("converge runs")
}

/// The result of running the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout, stderr and the exit code in one string, for snapshots.
    pub fn transcript(&self) -> String {
        let mut out = format!("exit: {}\n", self.code);
        if !self.stdout.is_empty() {
            out.push_str("--- stdout\n");
            out.push_str(&self.stdout);
        }
        if !self.stderr.is_empty() {
            out.push_str("--- stderr\n");
            out.push_str(&self.stderr);
        }
        out
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success:\n{}", self.transcript());
        self
    }
}

/// A temporary directory that is (optionally) a git repository.
pub struct Sandbox {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp home"),
        }
    }

    /// A new git repository on branch `main`.
    pub fn repo() -> Self {
        let sandbox = Self::new();
        sandbox.git(&["init", "-q", "-b", "main"]);
        sandbox.git(&["config", "user.name", "Test Committer"]);
        sandbox.git(&["config", "user.email", "committer@example.com"]);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The isolated HOME its commands run with.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn write(&self, relative: &str, content: impl AsRef<[u8]>) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).expect("read")
    }

    /// Copies a directory tree from the repository (e.g. `examples/auth/planning`)
    /// to `relative`.
    pub fn copy_tree(&self, from: &Path, relative: &str) {
        copy_dir(from, &self.path().join(relative));
    }

    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        let mut command = Command::new("git");
        isolate(&mut command, self.home.path());
        let output = command
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn commit_all(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn converge(&self, args: &[&str]) -> Run {
        self.converge_in(".", args)
    }

    pub fn converge_in(&self, subdir: &str, args: &[&str]) -> Run {
        let mut command = Command::new(BIN);
        isolate(&mut command, self.home.path());
        let output = command
            .args(args)
            .current_dir(self.path().join(subdir))
            .output()
            .expect("converge runs");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "converge panicked:\n{}",
            run.transcript()
        );
        run
    }

    /// Every file below the directory except `.git/`, with its content.
    pub fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        tree_of(self.path())
    }
}

pub fn tree_of(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(relative, std::fs::read(&path).expect("read"));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Writes the journal converge keeps while it moves `main` checked out in
/// `sb` from `old` to `new` (`<git-common-dir>/converge/checkouts/main.json`),
/// as a crash between moving the branch and updating the checkout leaves it;
/// returns its path.
pub fn checkout_journal(sb: &Sandbox, old: &str, new: &str) -> PathBuf {
    let journal = sb.path().join(".git/converge/checkouts/main.json");
    std::fs::create_dir_all(journal.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &journal,
        format!(
            r#"{{"branch":"main","worktree":"{}","from":"{old}","to":"{new}"}}"#,
            sb.path().display()
        ),
    )
    .expect("journal");
    journal
}

/// A path in this repository (the crate root).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The seeds a randomized test runs: `VAR=FROM-TO` (inclusive), else `default`.
pub fn seeds(var: &str, default: (u64, u64)) -> std::ops::RangeInclusive<u64> {
    let (from, to) = std::env::var(var)
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or(default);
    from..=to
}

/// A plan of `tasks` sim tasks named `t0..`, each depending on up to two random
/// earlier tasks (seeded, so a failing run can be repeated) and writing its own
/// file `f/<i>.txt`; tasks for which `fails(i)` is true fail their first attempt.
pub fn random_dag(name: &str, tasks: usize, seed: u64, fails: impl Fn(usize) -> bool) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut below = |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut text = format!("[plan]\nname = \"{name}\"\nstate = \"active\"\n");
    for i in 0..tasks {
        let mut deps: Vec<String> = Vec::new();
        for _ in 0..2.min(i) {
            let d = format!("\"t{}\"", below(i as u64));
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        let fail = if fails(i) { "fail_attempts = 1\n" } else { "" };
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\ndescription = \"Task {i}.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\ndepends_on = [{}]\n[tasks.sim]\n{fail}files = [{{ path = \"f/{i}.txt\", content = \"{i}\\n\" }}]\n",
            deps.join(", ")
        ));
    }
    text
}
