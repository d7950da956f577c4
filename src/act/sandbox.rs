//! The agent sandbox (Linux Landlock), with `[sandbox] enabled = true`.
//!
//! The supervisor starts `converge __sandbox <run-dir> -- <agent...>`, which
//! restricts itself with the attempt's [`Policy`] and then `exec`s the agent,
//! so the agent and everything it starts inherit the restriction:
//!
//! - it may **read** everything except the hidden paths (converge's secret and
//!   the run directories of other attempts);
//! - it may **write** only its worktree (a repository of its own, see
//!   [`crate::git::private`]), the agent's parts of its run directory (its
//!   private `TMPDIR`, the agent CLIs' homes, its events), and a few devices
//!   (`/dev/null`, ...); nothing of the main repository's git directory.
//!
//! Landlock grants access by hierarchy and cannot carve a hole into a granted
//! tree, so "everything except the hidden paths" is built by walking from `/`
//! towards each hidden path and granting every sibling on the way.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use serde::{Deserialize, Serialize};

use crate::observe::Availability;

/// The access rights converge asks for: those of Landlock ABI 5 (Linux 6.10).
/// On older kernels the crate enforces what the kernel supports (best effort)
/// and reports the restriction as partial.
const ABI_USED: ABI = ABI::V5;

/// Devices an agent may write (when they exist).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/pts",
    "/dev/shm",
];

/// What one attempt's agent may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Readable and writable trees.
    pub read_write: Vec<PathBuf>,
    /// Trees the agent may read inside hidden ones (its own run directory).
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Trees the agent may not read (it may still list their parent).
    pub hidden: Vec<PathBuf>,
    /// Refuse to run the agent when the restriction cannot be enforced.
    pub required: bool,
}

impl Policy {
    /// The policy of one attempt: it writes its worktree (with the private
    /// repository inside, see [`crate::git::private`]) and the parts of its
    /// run directory that are the agent's (see [`agent_writable`]); it reads
    /// the rest of its run directory, and nothing of converge's secret or of
    /// other runs. Nothing of the main repository's git directory is
    /// writable: not its objects, refs, worktree registrations or config.
    pub fn for_attempt(
        common_dir: &Path,
        worktree: &Path,
        run_dir: &Path,
        required: bool,
    ) -> Policy {
        let rundir = crate::rundir::Layout::new(common_dir);
        let mut read_write = vec![worktree.to_owned()];
        read_write.extend(agent_writable(run_dir));
        read_write.extend(DEVICES.iter().map(PathBuf::from));
        Policy {
            read_write,
            read: vec![run_dir.to_owned()],
            hidden: vec![rundir.secret(), rundir.runs()],
            required,
        }
    }
}

/// The parts of a run directory its agent writes: its private `TMPDIR`, the
/// agent CLIs' homes, the events file `converge progress`/`done` append to,
/// and what `converge check` keeps. The lease, the exit record, the run plan,
/// the logs and the prompt are converge's: the agent reads them, never
/// writes them. Dispatch creates each before the agent starts (Landlock
/// grants only what exists).
pub fn agent_writable(run_dir: &Path) -> Vec<PathBuf> {
    use crate::rundir::layout;
    vec![
        layout::tmp(run_dir),
        layout::harness_home(run_dir, "claude"),
        layout::harness_home(run_dir, "codex"),
        layout::harness_home(run_dir, "opencode"),
        layout::events(run_dir),
        layout::check_keep(run_dir),
    ]
}

impl Policy {
    /// The policy of a gate's invariants, which run code the agent wrote (see
    /// `check::confine`): they may write only `checkout` (the export of the
    /// gated commit converge made) and `tmp` (their private `HOME` and
    /// `TMPDIR`), plus the devices; they may read everything except `hidden`
    /// (converge's secret and run directories, the main repository's git
    /// directory, its checkout and the task worktrees).
    pub fn for_invariants(
        checkout: &Path,
        tmp: &Path,
        hidden: Vec<PathBuf>,
        required: bool,
    ) -> Policy {
        let mut read_write = vec![checkout.to_owned(), tmp.to_owned()];
        read_write.extend(DEVICES.iter().map(PathBuf::from));
        Policy {
            read_write,
            read: Vec::new(),
            hidden,
            required,
        }
    }
}

/// Asks the kernel, on a throwaway thread: Landlock restricts only the thread
/// that asks (and its future children), so the probe restricts a thread that
/// then ends, and the caller stays unrestricted.
pub fn probe() -> Availability {
    let asked = std::thread::spawn(|| {
        Ruleset::default()
            .handle_access(AccessFs::Execute)
            .and_then(|r| r.create())
            .and_then(|r| r.restrict_self())
            .map(|status| status.landlock)
    })
    .join();
    match asked {
        Ok(Ok(LandlockStatus::Available { effective_abi, .. })) => Availability::Available {
            abi: format!("{effective_abi:?}"),
        },
        Ok(Ok(LandlockStatus::NotEnabled)) => Availability::Unavailable {
            reason: "Landlock is built into this kernel but not enabled at boot (add `landlock` to the `lsm=` kernel parameter)".into(),
        },
        Ok(Ok(LandlockStatus::NotImplemented)) => Availability::Unavailable {
            reason: "this kernel has no Landlock (Linux 5.13 or newer built with CONFIG_SECURITY_LANDLOCK)".into(),
        },
        Ok(Err(e)) => Availability::Unavailable {
            reason: format!("Landlock could not be set up: {e}"),
        },
        Err(_) => Availability::Unavailable {
            reason: "the Landlock probe failed".into(),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set up the Landlock sandbox")]
    Landlock(#[source] landlock::RulesetError),
    #[error("cannot list {} to build the sandbox", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox is required but not enforced here: {reason}")]
    NotEnforced { reason: String },
}

/// How the restriction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Fully,
    /// The kernel supports an older Landlock: some rights are not restricted.
    Partially,
    /// No Landlock: nothing is restricted.
    Not,
}

/// Restricts the calling thread (and what it executes next) to `policy`.
pub fn restrict(policy: &Policy) -> Result<Enforced, SandboxError> {
    let read = AccessFs::from_read(ABI_USED);
    let all = AccessFs::from_all(ABI_USED);
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = readable_roots(&policy.hidden)?
        .into_iter()
        .map(|p| (p, read))
        .collect();
    // Directories on the way to a hidden path may be listed (not their files read).
    for hidden in &policy.hidden {
        for ancestor in hidden.ancestors().skip(1) {
            rules.push((ancestor.to_owned(), AccessFs::ReadDir.into()));
        }
    }
    rules.extend(policy.read.iter().map(|p| (p.clone(), read)));
    rules.extend(policy.read_write.iter().map(|p| (p.clone(), all)));
    let mut created = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.create())
        .map_err(SandboxError::Landlock)?;
    for (path, access) in rules {
        // Paths that do not exist (a device this machine lacks, a reflog
        // directory not made yet) are skipped: nothing to grant.
        let Ok(fd) = PathFd::new(&path) else {
            continue;
        };
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(ABI_USED)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(SandboxError::Landlock)?;
    }
    let status = created.restrict_self().map_err(SandboxError::Landlock)?;
    let enforced = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforced::Fully,
        RulesetStatus::PartiallyEnforced => Enforced::Partially,
        _ => Enforced::Not,
    };
    if policy.required && enforced == Enforced::Not {
        return Err(SandboxError::NotEnforced {
            reason: format!("{:?}", status.landlock),
        });
    }
    Ok(enforced)
}

/// The smallest set of trees that together hold everything under `/` except
/// the `hidden` trees: every entry of a directory that leads to a hidden path
/// is granted on its own, except the hidden one and the one leading on.
pub fn readable_roots(hidden: &[PathBuf]) -> Result<Vec<PathBuf>, SandboxError> {
    let mut out = Vec::new();
    walk(Path::new("/"), hidden, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, hidden: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<(), SandboxError> {
    if hidden.iter().any(|h| h == dir) {
        return Ok(());
    }
    if !hidden.iter().any(|h| h.starts_with(dir)) {
        out.push(dir.to_owned());
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| SandboxError::List {
        path: dir.to_owned(),
        source,
    })?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        walk(&child, hidden, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_roots_cover_everything_but_the_hidden_trees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        for sub in ["a/secret-dir/x", "a/b", "c"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        std::fs::write(root.join("a/secret"), "s").expect("write");
        std::fs::write(root.join("a/file"), "f").expect("write");
        let hidden = vec![root.join("a/secret"), root.join("a/secret-dir")];
        let roots = readable_roots(&hidden).expect("roots");
        for granted in [root.join("a/b"), root.join("a/file"), root.join("c")] {
            assert!(roots.contains(&granted), "{granted:?} in {roots:?}");
        }
        for denied in [&root, &root.join("a"), &hidden[0], &hidden[1]] {
            assert!(
                !roots.iter().any(|r| denied.starts_with(r)),
                "{denied:?} is covered by {roots:?}"
            );
        }
    }
}
