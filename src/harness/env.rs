//! What an agent CLI needs in its environment besides `env_allow`, and whether
//! its program is installed. Pure but for [`program_exists`], which looks at the
//! file system (it writes nothing): the homes named here are created by
//! `act::start` before the agent starts.

use std::path::Path;

use crate::rundir::layout::harness_home;
use crate::spec::{Harness, HarnessKind, Invariant};

/// What a CLI harness needs in its agent's environment besides `env_allow`:
/// its API settings from converge's environment, its own homes in the run
/// directory `run` (which the sandbox lets it write; Codex's is `codex_home`,
/// prepared by the caller), OpenCode's permission rules, and `TZ=UTC`.
pub fn extra_env(
    harness: &Harness,
    env: &dyn Fn(&str) -> Option<String>,
    run: &Path,
    codex_home: Option<&Path>,
    invariants: &[&Invariant],
) -> Vec<(&'static str, String)> {
    let mut extra: Vec<(&'static str, String)> = super::harness_env(harness.kind)
        .iter()
        .filter_map(|name| env(name).map(|value| (*name, value)))
        .collect();
    match harness.kind {
        HarnessKind::ClaudeCode => {
            extra.push((
                "CLAUDE_CONFIG_DIR",
                harness_home(run, "claude").to_string_lossy().into_owned(),
            ));
            extra.push(("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()));
        }
        HarnessKind::Codex => {
            let home = codex_home.map_or_else(|| harness_home(run, "codex"), Path::to_owned);
            extra.push(("CODEX_HOME", home.to_string_lossy().into_owned()));
        }
        HarnessKind::Opencode => {
            // OpenCode keeps sessions, logs and caches under the XDG data,
            // state and cache homes, which the sandbox must let it write: the
            // run's.
            let base = harness_home(run, "opencode");
            for (name, dir) in [
                ("XDG_DATA_HOME", "data"),
                ("XDG_STATE_HOME", "state"),
                ("XDG_CACHE_HOME", "cache"),
            ] {
                extra.push((name, base.join(dir).to_string_lossy().into_owned()));
            }
            extra.push((
                "OPENCODE_CONFIG_CONTENT",
                super::opencode_permissions(invariants),
            ));
            extra.push(("OPENCODE_DISABLE_AUTOUPDATE", "1".to_owned()));
            extra.push(("OPENCODE_DISABLE_MODELS_FETCH", "1".to_owned()));
        }
        HarnessKind::Command | HarnessKind::Sim => {}
    }
    if harness.kind.streams() {
        // Clock times in rate-limit messages ("try again at 8:29 AM") are
        // then UTC, which is how converge reads them.
        extra.push(("TZ", "UTC".to_owned()));
    }
    extra
}

/// Whether `program` can be executed: a path that exists, or a name found in
/// one of `path`'s directories.
pub fn program_exists(program: &str, path: Option<&str>) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    path.unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(program).is_file())
}

/// Puts the directory of the running converge first on the agent's `PATH`, so
/// that `converge done` and friends reach this very binary.
pub fn with_converge_on_path(
    mut env: Vec<(String, String)>,
    converge: &Path,
) -> Vec<(String, String)> {
    let Some(dir) = converge.parent().map(|d| d.to_string_lossy().into_owned()) else {
        return env;
    };
    match env.iter_mut().find(|(name, _)| name == "PATH") {
        Some((_, value)) if value.split(':').next() != Some(dir.as_str()) => {
            *value = format!("{dir}:{value}");
        }
        Some(_) => {}
        None => env.push(("PATH".to_owned(), dir)),
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_existing_programs_count_as_installed() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("claude"), "").expect("write");
        let path = format!("/nowhere::{}", dir.path().display());
        assert!(program_exists("claude", Some(&path)));
        assert!(!program_exists("codex", Some(&path)));
        assert!(!program_exists("claude", None));
        let full = dir.path().join("claude");
        assert!(program_exists(full.to_str().expect("utf-8"), None));
        assert!(!program_exists("/nowhere/claude", Some(&path)));
    }
}
