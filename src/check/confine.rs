//! Where and how the gate's invariants run. They execute code the agent wrote
//! (`cargo test` runs its tests, `sh check.sh` its script), so they never run
//! in the agent's worktree nor with converge's rights:
//!
//! - **a fresh checkout of the gated commit**: [`GateCheckout::make`] exports
//!   the commit's tree from the main repository's objects into a new directory
//!   under the system's temporary directory (`converge-gate-XXXXXX/tree`):
//!   files, executable bits and links, no `.git` (invariants see a plain tree,
//!   not a repository), and nothing git ignores, since only the commit is
//!   exported. The directory is removed when the gate is over;
//! - **a private `HOME` and `TMPDIR`** (`converge-gate-XXXXXX/tmp`), and
//!   converge's environment without its secret, the agent's token or any
//!   variable whose name holds `KEY`, `TOKEN` or `SECRET`, `CONVERGE_*` or
//!   `GIT_*`;
//! - **confined** with `[sandbox] enabled`: each invariant starts as
//!   `converge __invariant <policy> -- <command...>`, which restricts itself with
//!   [`Policy::for_invariants`] (Landlock) and executes the invariant: it may
//!   write only the checkout and its temporary directory, and may not read
//!   converge's secret, the run directories, the main repository's git
//!   directory, its checkout or the task worktrees. With `required = true`
//!   and no Landlock, the gate refuses to run them ([`Confinement::refusal`]).

use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::exec::RunSpec;
use super::{CheckResult, check_with};
use crate::act::sandbox::Policy;
use crate::agent::Redactor;
use crate::git::{GitError, Repo};
use crate::observe::Availability;
use crate::rundir::Layout;
use crate::spec::Invariant;

/// How a repository's invariants are confined.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// `Some(required)` with `[sandbox] enabled`.
    sandbox: Option<bool>,
    /// Why Landlock cannot be enforced here, when it cannot.
    unavailable: Option<String>,
    /// What the invariants may not read.
    hidden: Vec<PathBuf>,
    /// The converge executable (`converge __invariant`).
    converge: PathBuf,
    /// `[sandbox] env_allow`: the sensitive variables agents may see.
    env_allow: Vec<String>,
}

impl Confinement {
    /// The confinement of `repo`'s invariants: `sandbox` is the
    /// configuration, `availability` what the tick found of Landlock (probed
    /// here when it did not look), `worktree_root` where task worktrees live.
    pub fn new(
        repo: &Repo,
        worktree_root: &Path,
        sandbox: &crate::spec::Sandbox,
        availability: Option<&Availability>,
        converge: &Path,
    ) -> Confinement {
        let common = repo.common_dir();
        let layout = Layout::new(common);
        let mut hidden: Vec<PathBuf> = [
            Some(common.to_owned()),
            Some(layout.secret()),
            Some(layout.runs()),
            Some(repo.gix().git_dir().to_owned()),
            layout.checkout().map(Path::to_owned),
            repo.workdir().ok().map(Path::to_owned),
            Some(worktree_root.to_owned()),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
        hidden.sort();
        hidden.dedup();
        // A path below another hidden one is hidden with it (and listing the
        // directories on the way to it would otherwise be allowed).
        let outer = hidden.clone();
        hidden.retain(|p| !outer.iter().any(|o| o != p && p.starts_with(o)));
        let unavailable = match sandbox.enabled.then(|| {
            availability
                .cloned()
                .unwrap_or_else(crate::act::sandbox::probe)
        }) {
            Some(Availability::Unavailable { reason }) => Some(reason),
            _ => None,
        };
        Confinement {
            sandbox: sandbox.enabled.then_some(sandbox.required),
            unavailable,
            hidden,
            converge: converge.to_owned(),
            env_allow: sandbox.env_allow.clone(),
        }
    }

    /// Why the invariants may not run here: the sandbox is required and
    /// Landlock cannot enforce it.
    pub fn refusal(&self) -> Option<String> {
        match (self.sandbox, &self.unavailable) {
            (Some(true), Some(reason)) => Some(format!(
                "the invariants run the attempt's code and `[sandbox] required = true`, but the sandbox cannot be enforced here: {reason}"
            )),
            _ => None,
        }
    }

    /// The paths the invariants may not read.
    pub fn hidden(&self) -> &[PathBuf] {
        &self.hidden
    }
}

/// A checkout converge made of one commit for its invariants; removed when
/// dropped.
#[derive(Debug)]
pub struct GateCheckout {
    dir: TempDir,
    checkout: PathBuf,
    /// The policy file, when the invariants run confined.
    policy: Option<PathBuf>,
    env: Vec<(String, String)>,
    converge: PathBuf,
}

impl GateCheckout {
    /// Exports the tree of `commit` into a new directory.
    pub fn make(
        repo: &Repo,
        commit: ObjectId,
        confinement: &Confinement,
    ) -> Result<GateCheckout, GitError> {
        let dir = TempDir::new(&std::env::temp_dir())?;
        let root = dir.0.clone();
        let checkout = root.join("tree");
        let tmp = root.join("tmp");
        let home = tmp.join("home");
        for d in [&checkout, &tmp, &home] {
            std::fs::create_dir(d).map_err(|source| GitError::Io {
                path: d.to_owned(),
                source,
            })?;
        }
        repo.export_tree(repo.tree_of(commit)?, &checkout)?;
        let policy = match confinement.sandbox {
            None => None,
            Some(required) => {
                let policy =
                    Policy::for_invariants(&checkout, &tmp, confinement.hidden.clone(), required);
                // Beside the checkout, not in it: no invariant can rewrite
                // the policy of the next one.
                let path = root.join("policy.json");
                let bytes = serde_json::to_vec_pretty(&policy).map_err(|e| GitError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
                std::fs::write(&path, bytes).map_err(|source| GitError::Io {
                    path: path.clone(),
                    source,
                })?;
                Some(path)
            }
        };
        Ok(GateCheckout {
            env: environment(std::env::vars(), &confinement.env_allow, &home, &tmp),
            dir,
            checkout,
            policy,
            converge: confinement.converge.clone(),
        })
    }

    /// Where the commit is checked out.
    pub fn path(&self) -> &Path {
        &self.checkout
    }

    /// Runs one invariant at the root of the checkout (see [`super::run_check`]).
    pub fn run(
        &self,
        invariant: &Invariant,
        log_dir: Option<&Path>,
        redactor: &Redactor,
    ) -> CheckResult {
        let (program, args) = match &self.policy {
            Some(policy) => {
                let mut args = vec![
                    "__invariant".to_owned(),
                    policy.to_string_lossy().into_owned(),
                    "--".to_owned(),
                    invariant.command.clone(),
                ];
                args.extend(invariant.args.iter().cloned());
                (self.converge.to_string_lossy().into_owned(), args)
            }
            None => (invariant.command.clone(), invariant.args.clone()),
        };
        let spec = RunSpec {
            program,
            args,
            cwd: self.checkout.clone(),
            timeout: invariant.timeout,
            env: Some(self.env.clone()),
        };
        check_with(invariant, &spec, log_dir, redactor)
    }

    /// Removes the checkout now (dropping it does the same, ignoring errors).
    pub fn remove(self) -> Result<(), GitError> {
        self.dir.remove()
    }
}

/// A new directory `converge-gate-<pid>-<n>` (mode 0700) below the system's
/// temporary directory, removed with everything in it when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(base: &Path) -> Result<TempDir, GitError> {
        use std::os::unix::fs::DirBuilderExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = base.canonicalize().unwrap_or_else(|_| base.to_owned());
        remove_abandoned(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "converge-gate-{}-{nanos:08x}{n}",
                std::process::id()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(GitError::Io { path, source }),
            }
        }
    }

    fn remove(mut self) -> Result<(), GitError> {
        let path = std::mem::take(&mut self.0);
        std::fs::remove_dir_all(&path).map_err(|source| GitError::Io { path, source })
    }
}

/// Removes the gate directories that converge processes which are gone left
/// in `base` (a crash mid-gate): `converge-gate-<pid>-...` whose process no
/// longer exists. Others' directories cannot be removed and are left alone.
fn remove_abandoned(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("converge-gate-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether an invariant never sees the variable `name` of converge's
/// environment: converge's own (its secret), git's (`GIT_DIR` would lead it
/// to the main repository), the home and temporary directory (replaced), and
/// sensitive ones (`*KEY*`, `*TOKEN*`, `*SECRET*`) that `[sandbox] env_allow`
/// does not give agents anyway.
fn withheld(name: &str, allowed: &[String]) -> bool {
    name.starts_with("CONVERGE_")
        || name.starts_with("GIT_")
        || name == "HOME"
        || name == "TMPDIR"
        || (crate::agent::redact::is_sensitive_name(name) && !allowed.iter().any(|a| a == name))
}

/// The invariants' environment: `vars` (converge's) without what they may
/// not see (`allowed` is `[sandbox] env_allow`), with a private `HOME` and
/// `TMPDIR`. `RUSTUP_HOME` keeps pointing to the person's toolchains
/// (read-only) so that `cargo` still starts.
fn environment(
    vars: impl Iterator<Item = (String, String)>,
    allowed: &[String],
    home: &Path,
    tmp: &Path,
) -> Vec<(String, String)> {
    let vars: Vec<(String, String)> = vars.collect();
    let real_home = vars.iter().find(|(k, _)| k == "HOME").map(|(_, v)| v);
    let mut env: Vec<(String, String)> = vars
        .iter()
        .filter(|(k, _)| !withheld(k, allowed))
        .cloned()
        .collect();
    if let Some(real) = real_home
        && !env.iter().any(|(k, _)| k == "RUSTUP_HOME")
        && Path::new(real).join(".rustup").is_dir()
    {
        let rustup = Path::new(real).join(".rustup");
        env.push(("RUSTUP_HOME".into(), rustup.to_string_lossy().into_owned()));
    }
    env.push(("HOME".into(), home.to_string_lossy().into_owned()));
    env.push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::git::testing::git;

    fn invariant(script: &str) -> Invariant {
        Invariant {
            name: "t".into(),
            kind: crate::spec::InvariantKind::Custom,
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout: std::time::Duration::from_secs(10),
            expected_exit_code: 0,
            advisory: false,
        }
    }

    #[test]
    fn without_the_sandbox_invariants_still_run_on_an_export_of_the_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().canonicalize().expect("canonical");
        git(&root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join(".gitignore"), "built.bin\n").expect("write");
        std::fs::write(root.join("check.sh"), "echo committed\n").expect("write");
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "one"]);
        std::fs::write(root.join("built.bin"), "x").expect("write");
        std::fs::write(root.join("check.sh"), "echo uncommitted\n").expect("write");
        let head = git(&root, &["rev-parse", "HEAD"]);
        let repo = Repo::discover(&root).expect("repo");
        let confinement = Confinement::new(
            &repo,
            &root.join(".converge/worktrees"),
            &crate::spec::Sandbox::default(),
            None,
            Path::new("/nonexistent/converge"),
        );
        assert_eq!(confinement.refusal(), None);
        assert!(
            confinement.hidden().contains(&root),
            "{:?}",
            confinement.hidden()
        );
        let id = ObjectId::from_hex(head.as_bytes()).expect("id");
        let checkout = GateCheckout::make(&repo, id, &confinement).expect("checkout");
        let path = checkout.path().to_owned();
        assert!(!path.starts_with(&root));
        let run = |script| checkout.run(&invariant(script), None, &Redactor::default());
        // The committed tree, not the worktree: no ignored file, no change
        // left uncommitted, no repository.
        let seen = run("test ! -e built.bin && test ! -e .git && sh check.sh && pwd && echo $HOME");
        assert!(seen.passed, "{}", seen.output_tail);
        let home = path.parent().expect("parent").join("tmp/home");
        assert_eq!(
            seen.output_tail,
            format!("committed\n{}\n{}", path.display(), home.display())
        );
        checkout.remove().expect("remove");
        assert!(!path.exists());
    }

    #[test]
    fn gate_directories_of_processes_that_are_gone_are_removed() {
        let base = tempfile::tempdir().expect("base");
        // No process has pid 4194304 (above Linux's pid_max limit).
        let abandoned = base.path().join("converge-gate-4194304-1");
        let live = base
            .path()
            .join(format!("converge-gate-{}-x", std::process::id()));
        let other = base.path().join("unrelated");
        for dir in [&abandoned, &live, &other] {
            std::fs::create_dir_all(dir.join("tree")).expect("mkdir");
        }
        let made = TempDir::new(base.path()).expect("new");
        assert!(!abandoned.exists() && live.exists() && other.exists());
        assert!(made.0.exists());
        made.remove().expect("remove");
    }

    #[test]
    fn a_required_sandbox_without_landlock_refuses_to_run_invariants() {
        let dir = tempfile::tempdir().expect("dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let repo = Repo::discover(dir.path()).expect("repo");
        let missing = Availability::Unavailable {
            reason: "no Landlock".into(),
        };
        let mut sandbox = crate::spec::Sandbox {
            enabled: true,
            required: true,
            ..crate::spec::Sandbox::default()
        };
        let confinement = |sandbox: &crate::spec::Sandbox, available: &Availability| {
            Confinement::new(&repo, dir.path(), sandbox, Some(available), Path::new("c"))
        };
        let refusal = confinement(&sandbox, &missing).refusal().expect("refused");
        assert!(refusal.contains("no Landlock"), "{refusal}");
        let here = Availability::Available { abi: "V5".into() };
        assert_eq!(confinement(&sandbox, &here).refusal(), None);
        sandbox.required = false;
        assert_eq!(confinement(&sandbox, &missing).refusal(), None);
    }

    #[test]
    fn the_environment_withholds_secrets_and_git_and_has_a_private_home() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/home/p"),
            ("TMPDIR", "/tmp"),
            ("CONVERGE_SECRET", "s"),
            ("CONVERGE_AGENT_TOKEN", "t"),
            ("OPENAI_API_KEY", "k"),
            ("SERVICE_API_KEY", "allowed"),
            ("GIT_DIR", "/repo/.git"),
            ("LANG", "C"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env = environment(
            vars.into_iter(),
            &["SERVICE_API_KEY".to_owned()],
            Path::new("/g/tmp/home"),
            Path::new("/g/tmp"),
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "SERVICE_API_KEY", "LANG", "HOME", "TMPDIR"]);
        assert_eq!(env[3].1, "/g/tmp/home");
        assert_eq!(env[4].1, "/g/tmp");
    }
}
