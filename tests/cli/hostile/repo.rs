//! Hostile agents against the repository they work in: the records that say
//! where their work forked, the main repository's object store, git's
//! configuration, and the objects they hand back.

use super::*;

/// The main repository's git directory, found from the run directory (the
/// agent's worktree is a repository of its own; on older versions it was a
/// linked worktree of the main one, and this finds the same directory).
const COMMON: &str = "common=${CONVERGE_RUN_DIR%/converge/runs/*}; main=$(dirname \"$common\")";

/// `last_failure.reason` of task `t`.
fn failure(sb: &Sandbox, t: &str) -> String {
    let text = sb.git(&["show", "main:planning/status/p.toml"]);
    let status: toml::Table = text.parse().expect("status toml");
    status["tasks"][t]["last_failure"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn an_agent_cannot_widen_its_gate_by_rewriting_where_it_forked() {
    // The gate allows only `src/`: the agent changes policy, adds a workflow,
    // then points its lease's fork at its own commit so that nothing looks
    // changed.
    let script = format!(
        r#"{COMMON}
sed -i 's/required = true/required = false/' planning/converge.toml
mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml
mkdir -p src && echo ok > src/ok.txt
git add -A && git commit -qm takeover
own=$(git rev-parse HEAD)
sed -i "s/\"fork\": *\"[0-9a-f]*\"/\"fork\": \"$own\"/" "$CONVERGE_RUN_DIR/lease.json"
echo "$own" > "$common/converge/forks/p/t"
converge done"#
    );
    let sb = setup(
        &sh_harness("evil", &script),
        &task("t", "evil", "retry_max = 0\npaths = [\"src/**\"]"),
    );
    let policy = sb.git(&["show", "main:planning/converge.toml"]);
    if !landlock(&sb) {
        return;
    }
    settle(&sb);
    assert_eq!(sb.git(&["show", "main:planning/converge.toml"]), policy);
    assert!(
        sb.git(&["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|p| !p.starts_with(".github/") && !p.starts_with("src/")),
        "the attempt's files reached main"
    );
    assert_eq!(phase(&sb, "t"), "escalated");
    assert_eq!(failure(&sb, "t"), "forbidden-paths");
}

#[test]
fn an_agent_cannot_forge_or_destroy_the_main_object_store() {
    // The task's invariant fails unless policy says otherwise: the agent
    // replaces the blob of main's converge.toml with a policy whose invariant
    // passes, then deletes every object it can reach.
    let script = format!(
        r#"{COMMON}
blob=$(git --git-dir="$common" rev-parse main:planning/converge.toml)
forged=$(sed 's/command = "false"/command = "true"/' planning/converge.toml | git hash-object -w --stdin)
src=$(git rev-parse --git-path objects)/$(echo $forged | cut -c1-2)/$(echo $forged | cut -c3-)
dst="$common/objects/$(echo $blob | cut -c1-2)/$(echo $blob | cut -c3-)"
chmod u+w "$dst" 2>/dev/null; cp "$src" "$dst" 2>/dev/null
echo work > work.txt && git add -A && git commit -qm work
converge done
find "$common/objects" -type f -delete 2>/dev/null
true"#
    );
    let config = format!(
        "{}\n[invariants.never]\nkind = \"custom\"\ncommand = \"false\"\n",
        sh_harness("evil", &script)
    );
    let sb = setup(
        &config,
        &task("t", "evil", "retry_max = 0").replace("[\"ok\"]", "[\"never\"]"),
    );
    let policy = sb.git(&["show", "main:planning/converge.toml"]);
    let history = sb.git(&["rev-list", "main"]);
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    sb.git(&["fsck", "--full", "--no-dangling"]);
    assert_eq!(sb.git(&["show", "main:planning/converge.toml"]), policy);
    let now = sb.git(&["rev-list", "main"]);
    assert!(now.ends_with(&history), "history lost:\n{now}");
    assert_eq!(phase(&sb, "t"), "escalated");
    assert_eq!(failure(&sb, "t"), "invariant-failed");
    assert!(
        !sb.git(&["ls-tree", "--name-only", "main"])
            .contains("work.txt"),
        "merged past a failing invariant"
    );
}

#[test]
fn converge_never_runs_git_configuration_the_agent_wrote() {
    // A filter driver in a git directory the agent controls (its own, and one
    // its `commondir` points at) would copy converge's secret into the main
    // checkout if converge's unconfined git machinery ran it.
    let script = format!(
        r#"{COMMON}
filter="[filter \"x\"]
	clean = sh -c 'cat $common/converge/secret > $main/leak.txt && cat'
	required = true"
fake="$TMPDIR/fake"
git init -q --bare "$fake" && printf '%s\n' "$filter" >> "$fake/config"
cp -r "$common/refs" "$fake/" && cp "$common/packed-refs" "$fake/" 2>/dev/null
echo "$common/objects" > "$fake/objects/info/alternates"
gitdir=$(git rev-parse --absolute-git-dir)
printf '%s\n' "$filter" >> "$gitdir/config"
echo "$fake" > "$gitdir/commondir"
echo '* filter=x' > .gitattributes
echo changed >> README.md
echo left > left.txt
converge done"#
    );
    let sb = setup(
        &sh_harness("evil", &script),
        &task("t", "evil", "retry_max = 0"),
    );
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert!(
        !sb.path().join("leak.txt").exists(),
        "converge ran the agent's filter"
    );
}

/// Commits honest content, then rewrites that blob's object file with
/// another object's bytes: what converge would merge is not what the commit's
/// ids say.
const FORGER: &str = r#"echo honest > a.txt && git add a.txt && git commit -qm work
blob=$(git rev-parse HEAD:a.txt)
evil=$(echo evil | git hash-object -w --stdin)
objects=$(git rev-parse --git-path objects)
dst=$objects/$(echo $blob | cut -c1-2)/$(echo $blob | cut -c3-)
chmod u+w "$dst"; cp "$objects/$(echo $evil | cut -c1-2)/$(echo $evil | cut -c3-)" "$dst"
converge done"#;

#[test]
fn an_object_the_agent_forged_never_reaches_main() {
    let sb = setup(
        &sh_harness("evil", FORGER),
        &task("t", "evil", "retry_max = 0"),
    );
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert!(
        !sb.git(&["ls-tree", "--name-only", "main"])
            .contains("a.txt"),
        "forged work merged"
    );
    assert_eq!(phase(&sb, "t"), "escalated");
    assert_eq!(failure(&sb, "t"), "forged-object");
    sb.git(&["fsck", "--full", "--no-dangling"]);
}

#[test]
fn a_worktree_converge_refused_to_import_is_set_aside_not_deleted() {
    let sb = setup(
        &sh_harness("evil", FORGER),
        &task("t", "evil", "retry_max = 1"),
    );
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert_eq!(phase(&sb, "t"), "escalated");
    // The retry did not delete attempt 1's worktree: it is set aside, whole.
    let aside = sb.path().join(".git/converge/quarantine/p/t/1");
    assert_eq!(
        std::fs::read_to_string(aside.join("a.txt")).expect("kept"),
        "honest\n"
    );
    let doctor = sb.converge(&["doctor"]);
    assert!(
        doctor.stdout.contains("was set aside at") && doctor.stdout.contains("rm -rf"),
        "{}",
        doctor.transcript()
    );
}

#[test]
fn the_persons_filters_never_run_on_an_agents_files() {
    // The person's git configuration defines a filter (as `git lfs install`
    // does); the agent leaves files that ask for it.
    let script = r#"echo '* filter=x' > .gitattributes
echo left > left.txt
converge done"#;
    let sb = setup(
        &sh_harness("evil", script),
        &task("t", "evil", "retry_max = 0"),
    );
    let marker = sb.path().join("filter-ran.txt");
    sb.git(&[
        "config",
        "filter.x.clean",
        &format!("sh -c 'touch {} && cat'", marker.display()),
    ]);
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert!(
        !marker.exists(),
        "converge ran a filter on the agent's files"
    );
}

#[test]
fn files_git_cannot_read_fail_the_gate_and_never_wedge_the_task() {
    // A nested repository without a commit: `git add` refuses the worktree.
    let script = r#"git init -q sub && echo x > sub/x && converge done"#;
    let sb = setup(
        &sh_harness("evil", script),
        &task("t", "evil", "retry_max = 1"),
    );
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert_eq!(phase(&sb, "t"), "escalated");
    assert_eq!(failure(&sb, "t"), "unreadable-leftovers");
    // The retry set attempt 1's worktree aside instead of failing on it.
    assert!(
        sb.path()
            .join(".git/converge/quarantine/p/t/1/sub/x")
            .exists()
    );
    let status = sb.git(&["show", "main:planning/status/p.toml"]);
    assert!(status.contains("attempt = 2"), "{status}");
}

#[test]
fn a_tree_git_would_not_write_never_reaches_main() {
    // Entries out of order: `git fsck` on main (and every remote that checks
    // what is pushed) would refuse the history once merged.
    let script = r#"blob=$(echo x | git hash-object -w --stdin)
printf '100644 b\0' > t.bin; printf "$(echo $blob | sed 's/../\\x&/g')" >> t.bin
printf '100644 a\0' >> t.bin; printf "$(echo $blob | sed 's/../\\x&/g')" >> t.bin
tree=$(git hash-object -t tree -w --literally t.bin); rm t.bin
git reset -q --soft "$(git commit-tree "$tree" -p HEAD -m odd)"
git reset -q --hard
converge done"#;
    let sb = setup(
        &sh_harness("evil", script),
        &task("t", "evil", "retry_max = 0"),
    );
    if !landlock(&sb) {
        return;
    }
    sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert_eq!(failure(&sb, "t"), "forged-object");
    sb.git(&["fsck", "--full", "--no-dangling"]);
}
