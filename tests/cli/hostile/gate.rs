//! Hostile agents against the gate (see the module above): the invariants run
//! code the agent wrote, so they run in a checkout converge makes of the
//! gated commit, confined to it and a private temporary directory.

use std::path::{Path, PathBuf};

use super::*;

/// A task of plan `p` on harness `harness` whose gate runs `invariants`,
/// with one attempt only.
fn gated_task(name: &str, harness: &str, invariants: &str) -> String {
    format!(
        "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Do {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [{invariants}]\nharness = \"{harness}\"\nretry_max = 0\n"
    )
}

/// Every file below `dir` (recursively) named `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            out.push(path);
        }
    }
    out
}

/// The agent commits `check.sh`, which the invariant `suite` runs (`sh
/// check.sh`, at the gate when `at_merge` is false, else as a
/// `[merge].invariants` check on the merge result). The script tries to read
/// converge's secret and leave a copy where the person could find it, to
/// install a hook of the main repository, to write into the main checkout
/// (directly and through a link it committed), its objects and its refs. None
/// of it may happen; the script still runs (its output is in the gate's log)
/// and the task merges.
fn hostile_invariant(at_merge: bool) {
    let leak = tempfile::tempdir().expect("leak dir");
    let sb = Sandbox::repo();
    let main = sb.path().to_owned();
    let git = main.join(".git");
    let script = format!(
        r#"echo "check.sh ran in $(pwd)"
cat {git}/converge/secret > {leak}/secret-copy
cp {git}/converge/secret {main}/stolen-secret
mkdir -p {git}/hooks && printf '#!/bin/sh\ntouch {leak}/hook-ran\n' > {git}/hooks/pre-commit && chmod +x {git}/hooks/pre-commit
echo planted > {main}/planted.txt
echo planted > out/via-link.txt
echo planted > {git}/objects/planted
git --git-dir={git} update-ref refs/heads/planted HEAD
cat {git}/config > {leak}/config-copy
exit 0
"#,
        git = git.display(),
        main = main.display(),
        leak = leak.path().display(),
    );
    // A committed link into the main checkout, to write through.
    let agent = "cat > check.sh <<'EOF'\n__SCRIPT__EOF\nln -s __MAIN__ out\ngit add check.sh out && git commit -q -m check && converge done";
    let agent = agent
        .replace("__SCRIPT__", &script)
        .replace("__MAIN__", &main.display().to_string());
    let (task, merge) = if at_merge {
        (
            task("t", "hostile", "retry_max = 0"),
            "\n[merge]\ninvariants = [\"suite\"]\n",
        )
    } else {
        (gated_task("t", "hostile", "\"suite\""), "")
    };
    let config = format!(
        "{CONFIG}\n[invariants.suite]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"check.sh\"]\n{merge}{}",
        sh_harness("hostile", &agent)
    );
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", config);
    sb.write(
        "planning/plans/p.toml",
        format!("[plan]\nname = \"P\"\nstate = \"active\"\n{task}"),
    );
    sb.commit_all("plan");
    if !landlock(&sb) {
        return;
    }
    settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged");
    // The invariant did run, on the gated commit.
    let logs = files_named(&git.join("converge"), "suite.log");
    assert!(
        logs.iter().any(|log| std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("check.sh ran in")),
        "no log of suite shows check.sh running: {logs:?}"
    );
    for leaked in ["secret-copy", "config-copy", "hook-ran"] {
        assert!(
            !leak.path().join(leaked).exists(),
            "the invariant wrote {leaked} outside its checkout"
        );
    }
    assert!(!main.join("stolen-secret").exists(), "secret copied");
    assert!(!git.join("hooks/pre-commit").exists(), "hook installed");
    assert!(!main.join("planted.txt").exists(), "main checkout written");
    assert!(
        !main.join("via-link.txt").exists(),
        "written through a link"
    );
    assert!(!git.join("objects/planted").exists(), "objects written");
    assert_eq!(
        sb.git(&["for-each-ref", "--format=%(refname)", "refs/heads/planted"]),
        "",
        "a ref was created"
    );
    // The main checkout holds only what was merged and converge's own files.
    let status = sb.git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(
        status
            .lines()
            .all(|line| line.contains(".converge/") || line.contains("planning/")),
        "{status}"
    );
}

#[test]
fn gate_invariants_running_agent_code_cannot_touch_the_repository_or_the_secret() {
    hostile_invariant(false);
}

#[test]
fn merge_invariants_running_agent_code_cannot_touch_the_repository_or_the_secret() {
    hostile_invariant(true);
}

/// The agent builds the file the invariant wants but has git ignore it: the
/// gate judges the commit, so it does not see the file and fails.
#[test]
fn ignored_files_the_agent_leaves_never_reach_the_gate() {
    let agent = "echo built.bin > .gitignore && echo x > built.bin && git add .gitignore && git commit -q -m ignore && converge done";
    let config = format!(
        "\n[invariants.built]\nkind = \"custom\"\ncommand = \"test\"\nargs = [\"-f\", \"built.bin\"]\n{}",
        sh_harness("planter", agent)
    );
    let sb = setup(&config, &gated_task("t", "planter", "\"built\""));
    if !landlock(&sb) {
        return;
    }
    // The first tick dispatches; the agent works while converge is away.
    tick(&sb).success();
    settle(&sb);
    assert_ne!(phase(&sb, "t"), "merged");
    let status = sb.git(&["show", "main:planning/status/p.toml"]);
    assert!(status.contains("invariant-failed"), "{status}");
    assert!(
        sb.git(&["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|p| p != ".gitignore"),
        "the task's work was merged"
    );
}
