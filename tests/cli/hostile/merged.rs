//! Hostile agents against the merge record: "merged" means merged by
//! converge (a merge commit with its trailers on the base branch), never the
//! position of a ref an agent could move or a status file a person edited; and
//! paths under `.converge/`, `.gitattributes` and `.gitmodules` never merge
//! from an agent.
//!
//! The agent works in a repository of its own, so it can set its own branch
//! to any commit it can read (the base tip among them) but cannot write the
//! main repository's refs; on older versions it worked in a linked worktree
//! and could move any `converge/<plan>/*` branch. The tests assert the promise
//! (the task is not merged without a gate, the sibling's work reaches main),
//! which holds either way.

use super::*;

/// Plan `p` of two tasks: `h` runs the hostile script, `s` the honest one,
/// each (script, extra task keys).
fn hostile_and_honest(hostile: (&str, &str), honest: (&str, &str)) -> Sandbox {
    let config = format!(
        "{}{}",
        sh_harness("hostile", hostile.0),
        sh_harness("honest", honest.0)
    );
    let tasks = format!(
        "{}{}",
        task("h", "hostile", hostile.1),
        task("s", "honest", honest.1)
    );
    setup(&config, &tasks)
}

/// Converge's merge commits for task `t` on main's first-parent history.
fn merges_of(sb: &Sandbox, t: &str) -> usize {
    let log = sb.git(&["log", "--first-parent", "--format=%P%x01%B%x00", "main"]);
    let trailer = format!("Converge-Task: {t}\n");
    log.split('\0')
        .filter_map(|c| c.trim_start().split_once('\x01'))
        .filter(|(parents, message)| {
            parents.split_whitespace().count() == 2
                && message.contains("Converge-Action: merge\n")
                && message.contains(&trailer)
        })
        .count()
}

/// The files of main's tree.
fn main_files(sb: &Sandbox) -> Vec<String> {
    sb.git(&["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (up to 10 s) until the base moved past the agent's fork (the tick
/// that dispatched it records status on main), then runs `then`.
/// `main` is read from the main repository's git directory, found from the
/// run directory (the agent's worktree is a repository of its own).
fn once_main_moves(then: &str) -> String {
    format!(
        "common=${{CONVERGE_RUN_DIR%/converge/runs/*}}; main() {{ git --git-dir=\"$common\" rev-parse main; }}; f=$(git rev-parse HEAD); i=0; while [ \"$(main)\" = \"$f\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; {then}"
    )
}

fn own_branch_to_base_tip(gate: &str) {
    let hostile = once_main_moves("git reset -q --hard \"$(main)\"; converge done");
    let sb = setup(
        &sh_harness("hostile", &hostile),
        &task("t", "hostile", "retry_max = 1")
            .replace("gate = \"auto\"", &format!("gate = \"{gate}\"")),
    );
    if !landlock(&sb) {
        return;
    }
    let run = settle(&sb);
    assert_ne!(
        phase(&sb, "t"),
        "merged",
        "a branch moved to the base tip is no merge:\n{}",
        run.transcript()
    );
    assert_eq!(merges_of(&sb, "t"), 0, "converge merged nothing of t");
    let status = sb.git(&["show", "main:planning/status/p.toml"]);
    assert!(
        status.contains("no-new-work"),
        "the gate says why it refused:\n{status}"
    );
}

/// (a) The agent moves its own branch to the base tip and exits: not merged,
/// no gate passed.
#[test]
fn an_agent_moving_its_branch_to_the_base_tip_does_not_merge_its_task() {
    own_branch_to_base_tip("auto");
}

/// (a) The same under `human_approve`: never merged without an approval.
#[test]
fn an_agent_moving_its_branch_to_the_base_tip_does_not_skip_approval() {
    own_branch_to_base_tip("human_approve");
}

/// (b) The agent rewrites a sibling's branch to the base tip: the sibling is
/// not "merged", its agent is not killed, and its work reaches main.
#[test]
fn rewriting_a_siblings_branch_does_not_lose_the_siblings_work() {
    // Once the sibling is dispatched and main moved past its fork (the
    // status commit of its dispatch), its branch is set to main's tip.
    // The main repository's git directory, found from the run directory.
    let hostile = "common=${CONVERGE_RUN_DIR%/converge/runs/*}; g() { git --git-dir=\"$common\" \"$@\"; }; i=0; while { ! g rev-parse -q --verify refs/heads/converge/p/s >/dev/null || [ \"$(g rev-parse main)\" = \"$(g rev-parse converge/p/s)\" ]; } && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; g update-ref refs/heads/converge/p/s \"$(g rev-parse main)\"; echo h > h.txt; git add h.txt; git commit -qm h; converge done";
    let honest = "sleep 4; echo s > s.txt; git add s.txt; git commit -qm s; converge done";
    let sb = hostile_and_honest((hostile, ""), (honest, "retry_max = 3"));
    if !landlock(&sb) {
        return;
    }
    let run = settle(&sb);
    assert_eq!(
        sb.git(&["show", "main:s.txt"]),
        "s\n",
        "the sibling's work reached main:\n{}",
        run.transcript()
    );
    assert_eq!(phase(&sb, "s"), "merged");
    assert_eq!(merges_of(&sb, "s"), 1);
}

/// (c) A person commits a status file claiming a task merged: converge does
/// not believe it, does the task, and reports the discrepancy.
#[test]
fn a_status_file_claiming_a_merge_git_does_not_show_is_corrected() {
    let work = "echo t > t.txt; git add t.txt; git commit -qm t; converge done";
    let sb = setup(
        &sh_harness("worker", work),
        &format!(
            "{}{}",
            task("t", "worker", ""),
            task("u", "worker", "depends_on = [\"t\"]\npaths = [\"u.txt\"]")
        ),
    );
    let tip = sb.git(&["rev-parse", "main"]).trim().to_owned();
    sb.write(
        "planning/status/p.toml",
        format!("[tasks.t]\nattempt = 1\nphase = \"merged\"\nmerged_as = \"{tip}\"\n"),
    );
    sb.commit_all("claim t merged");
    if !landlock(&sb) {
        return;
    }
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    assert!(
        explain.stdout.contains("status-unbacked"),
        "--explain reports the claim:\n{}",
        explain.transcript()
    );
    tick(&sb).success();
    let md = sb.git(&["show", "main:planning/STATUS.md"]);
    assert!(
        md.contains("status-unbacked"),
        "STATUS.md reports the discrepancy:\n{md}"
    );
    let run = settle(&sb);
    assert_eq!(
        sb.git(&["show", "main:t.txt"]),
        "t\n",
        "t's work reached main:\n{}",
        run.transcript()
    );
    assert_eq!(merges_of(&sb, "t"), 1);
    assert_eq!(phase(&sb, "t"), "merged");
}

/// (d) An agent commits a file under another task's worktree in
/// `.converge/worktrees/`: refused at the gate; nothing is written into the
/// sibling's worktree, and the sibling does not merge it as its own.
#[test]
fn a_file_under_dot_converge_is_refused_and_never_reaches_a_siblings_worktree() {
    let hostile = "mkdir -p .converge/worktrees/p/s && echo injected > .converge/worktrees/p/s/x && git add -f .converge && git commit -qm inject; converge done";
    let honest = "sleep 5; echo s > s.txt; git add -A; git commit -qm s; converge done";
    let sb = hostile_and_honest((hostile, "retry_max = 0"), (honest, ""));
    if !landlock(&sb) {
        return;
    }
    let run = settle(&sb);
    let files = main_files(&sb);
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with("/x") || f.starts_with(".converge")),
        "nothing of .converge/ merged: {files:?}\n{}",
        run.transcript()
    );
    assert_ne!(phase(&sb, "h"), "merged");
    let status = sb.git(&["show", "main:planning/status/p.toml"]);
    assert!(status.contains("forbidden-paths"), "{status}");
    assert_eq!(sb.git(&["show", "main:s.txt"]), "s\n");
}

fn git_metadata_agent(config: &str) -> Sandbox {
    let work = "printf '* filter=evil\\n' > .gitattributes; printf '[submodule \"x\"]\\n\\tpath = x\\n\\turl = ../x\\n' > .gitmodules; echo w > w.txt; git add -A; git commit -qm meta; converge done";
    setup(
        &format!("{config}{}", sh_harness("meta", work)),
        &task("t", "meta", "retry_max = 0"),
    )
}

/// (e) `.gitattributes` and `.gitmodules` from an agent are refused.
#[test]
fn an_agent_cannot_merge_gitattributes_or_gitmodules() {
    let sb = git_metadata_agent("");
    if !landlock(&sb) {
        return;
    }
    let run = settle(&sb);
    let files = main_files(&sb);
    assert!(
        !files.contains(&".gitattributes".to_owned()) && !files.contains(&".gitmodules".to_owned()),
        "{files:?}\n{}",
        run.transcript()
    );
    let status = sb.git(&["show", "main:planning/status/p.toml"]);
    assert!(
        status.contains(".gitattributes (protected)") && status.contains(".gitmodules (protected)"),
        "{status}"
    );
}

/// (e) The documented opt-out lets them through.
#[test]
fn the_opt_out_lets_an_agent_change_gitattributes_and_gitmodules() {
    let sb = git_metadata_agent("\n[merge]\nprotect_git_files = false\n");
    if !landlock(&sb) {
        return;
    }
    let run = settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged", "{}", run.transcript());
    let files = main_files(&sb);
    assert!(
        files.contains(&".gitattributes".to_owned()) && files.contains(&".gitmodules".to_owned()),
        "{files:?}"
    );
}
