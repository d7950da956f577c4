//! converge beside a person in one checkout: ticks interleaved with the git
//! commands people use (`commit -a`, `stash`, `checkout`, `rebase`, `merge`,
//! `reset --hard`), plans edited but not committed, merged work with
//! executable files and symbolic links. After every step the repository is
//! sound (`git fsck --strict`), nothing either side committed is lost or
//! reverted, and `git status` shows only the person's own edits.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
backoff = { base = "1s", factor = 1, max = "1s" }
"#;

fn plan(tasks: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("[plan]\nname = \"One\"\nstate = \"active\"\n");
    for (name, deps, files) in tasks {
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Task {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\ndepends_on = [{deps}]\n[tasks.sim]\nfiles = [{files}]\n"
        ));
    }
    text
}

fn file(path: &str, content: &str) -> String {
    format!("{{ path = \"{path}\", content = \"{content}\\n\" }}")
}

fn setup(config: &str, plan_text: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("src/lib.txt", "library\n");
    sb.write("planning/goal.md", "Converge beside a person.\n");
    sb.write("planning/converge.toml", config);
    sb.write("planning/plans/one.toml", plan_text);
    sb.commit_all("plan");
    sb
}

fn tick(sb: &Sandbox) -> crate::support::Run {
    let run = sb.converge(&["reconcile", "--once"]);
    assert!(
        matches!(run.code, 0 | 3),
        "tick failed:\n{}",
        run.transcript()
    );
    run
}

/// Single ticks until `done` holds for what they printed (at most 100), then
/// `more` ticks; returns everything printed.
fn tick_until(sb: &Sandbox, done: impl Fn(&str) -> bool, more: usize) -> String {
    let mut said = String::new();
    for _ in 0..100 {
        said.push_str(&tick(sb).stdout);
        if done(&said) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(done(&said), "never happened:\n{said}");
    for _ in 0..more {
        said.push_str(&tick(sb).stdout);
    }
    said
}

fn settle(sb: &Sandbox) -> crate::support::Run {
    let run = sb.converge(&["reconcile", "--wait", "--max-ticks", "200"]);
    run.success();
    run
}

/// The repository is sound and the checkout shows only `expected` as changed
/// (`git status --porcelain` lines).
#[track_caller]
fn sound(sb: &Sandbox, expected: &[&str]) {
    // Every object strictly, reachability from what the person works with
    // (HEAD and the index): an agent may still be committing on its task
    // branch, and fsck reads refs and reflogs after it listed the objects.
    sb.git(&[
        "fsck",
        "--strict",
        "--no-progress",
        "--no-reflogs",
        "--cache",
        "HEAD",
    ]);
    let status = sb.git(&["status", "--porcelain"]);
    let mut lines: Vec<&str> = status.lines().collect();
    lines.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(lines, want, "git status:\n{status}");
    // The index's cached trees agree with its entries: what a commit would
    // write now is HEAD's tree plus the staged changes, nothing else.
    let staged = sb.git(&["diff", "--cached", "--name-only"]);
    let written = sb.git(&["write-tree"]);
    let diff = sb.git(&["diff", "--name-only", "HEAD", written.trim()]);
    assert_eq!(staged, diff, "the index would commit other changes");
}

fn files_at(sb: &Sandbox, rev: &str) -> Vec<String> {
    sb.git(&["ls-tree", "-r", "--name-only", rev])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A configuration with an invariant `count` that appends a line to `log`
/// each time it runs, and a plan text whose tasks all use it.
fn counted(plan_text: &str, log: &std::path::Path) -> (String, String) {
    let config = format!(
        "{CONFIG}\n[invariants.count]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo ran >> {}\"]\n",
        log.display()
    );
    let plan_text = plan_text.replace(
        "gate = \"auto\"\n",
        "gate = \"auto\"\ninvariants = [\"count\"]\n",
    );
    (config, plan_text)
}

fn runs(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

fn phase(sb: &Sandbox, task: &str) -> String {
    let text = sb.git(&["show", "main:planning/status/one.toml"]);
    let status: toml::Table = text.parse().expect("status toml");
    status["tasks"][task]["phase"]
        .as_str()
        .expect("phase")
        .to_owned()
}

#[test]
fn a_persons_commit_after_converge_ticks_keeps_every_file() {
    // The finding: after converge's ticks `git status` said clean, then
    // `git commit -am` wrote a tree that dropped files and listed a directory
    // twice (the index's cache-tree was stale but marked valid).
    let sb = setup(CONFIG, &plan(&[("t", "", &file("src/t.txt", "t"))]));
    // Single ticks, as cron runs them, until the task merged.
    for _ in 0..100 {
        tick(&sb);
        if phase(&sb, "t") == "merged" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(phase(&sb, "t"), "merged");
    sound(&sb, &[]);
    let before = files_at(&sb, "HEAD");
    assert!(before.contains(&"src/t.txt".to_owned()), "{before:?}");
    sb.write("README.md", "project\nx\n");
    sb.git(&["commit", "-qam", "docs"]);
    sound(&sb, &[]);
    assert_eq!(
        files_at(&sb, "HEAD"),
        before,
        "the person's commit changed other files"
    );
    let changed = sb.git(&["diff", "--name-only", "HEAD~1", "HEAD"]);
    assert_eq!(changed, "README.md\n");
}

#[test]
fn pause_then_resume_then_a_persons_commit_keeps_the_plan_resumed() {
    let sb = setup(
        CONFIG,
        &plan(&[
            ("a", "", &file("a.txt", "a")),
            ("b", "\"a\"", &file("b.txt", "b")),
        ]),
    );
    tick(&sb);
    sb.converge(&["pause", "one"]).success();
    sb.converge(&["resume", "one"]).success();
    tick(&sb);
    tick(&sb);
    sound(&sb, &[]);
    sb.write("README.md", "project\nedited\n");
    sb.git(&["commit", "-qam", "docs"]);
    sound(&sb, &[]);
    assert!(
        !sb.read("planning/plans/one.toml").contains("paused"),
        "the person's commit re-paused the plan"
    );
    assert!(
        !sb.git(&["show", "HEAD:planning/plans/one.toml"])
            .contains("paused")
    );
    settle(&sb);
    assert_eq!(phase(&sb, "b"), "merged");
    sound(&sb, &[]);
}

/// A harness whose agent writes an executable script and a link to it.
const EXEC_AND_LINK: &str = r#"
[harness.tools]
kind = "command"
command = "sh"
args = ["-c", "mkdir -p bin && printf '#!/bin/sh\necho hi\n' > bin/run.sh && chmod +x bin/run.sh && ln -s bin/run.sh run && converge done"]
"#;

#[test]
fn merged_executables_and_symlinks_are_checked_out_as_what_they_are() {
    let config = format!("{CONFIG}{EXEC_AND_LINK}");
    let text = "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Tools.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"tools\"\n";
    let sb = setup(&config, text);
    settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged");
    sound(&sb, &[]);
    let mode = std::fs::metadata(sb.path().join("bin/run.sh"))
        .expect("run.sh")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "not executable: {mode:o}");
    let link = std::fs::symlink_metadata(sb.path().join("run")).expect("run");
    assert!(link.file_type().is_symlink(), "`run` is not a link");
    assert_eq!(
        std::fs::read_link(sb.path().join("run")).expect("target"),
        std::path::Path::new("bin/run.sh")
    );
    let tree = sb.git(&["ls-tree", "-r", "HEAD", "--", "bin/run.sh", "run"]);
    assert!(tree.contains("100755 blob"), "{tree}");
    assert!(tree.contains("120000 blob"), "{tree}");
    // The person's next commit keeps them as they are.
    sb.write("README.md", "project\nmore\n");
    sb.git(&["commit", "-qam", "docs"]);
    sound(&sb, &[]);
    assert_eq!(
        sb.git(&["ls-tree", "-r", "HEAD", "--", "bin/run.sh", "run"]),
        tree
    );
}

/// A harness whose agent replaces a path with a link to `$OUTSIDE`.
fn link_harness(outside: &std::path::Path) -> String {
    format!(
        "\n[harness.linker]\nkind = \"command\"\ncommand = \"sh\"\nargs = [\"-c\", \"ln -s {} out && converge done\"]\n",
        outside.display()
    )
}

#[test]
fn a_merge_never_writes_through_a_symbolic_link() {
    // Task `a` merges a link `out` to a directory outside the repository; task
    // `b`, built on it, makes `out` a directory with a file. The merge of `b`
    // must replace the link, never write into the directory it points to.
    let outside = tempfile::tempdir().expect("outside");
    let config = format!("{CONFIG}{}", link_harness(outside.path()));
    let text = format!(
        "{}\n[[tasks]]\nname = \"b\"\ndescription = \"Dir.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\ndepends_on = [\"a\"]\n[tasks.sim]\nfiles = [{{ path = \"out\", delete = true }}, {}]\n",
        "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"a\"\ndescription = \"Link.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"linker\"\n",
        file("out/x.txt", "inside")
    );
    let sb = setup(&config, &text);
    // A person's untracked link where a later task writes a directory.
    std::os::unix::fs::symlink(outside.path(), sb.path().join("gen")).expect("link");
    let check = sb.converge(&["plan", "validate"]);
    check.success();
    settle(&sb);
    assert_eq!(phase(&sb, "a"), "merged");
    assert_eq!(phase(&sb, "b"), "merged");
    let entries: Vec<_> = std::fs::read_dir(outside.path())
        .expect("outside")
        .collect();
    assert!(entries.is_empty(), "converge wrote outside the repository");
    let out = std::fs::symlink_metadata(sb.path().join("out")).expect("out");
    assert!(out.is_dir(), "`out` is not a directory");
    assert_eq!(sb.read("out/x.txt"), "inside\n");
    sound(&sb, &["?? gen"]);
}

#[test]
fn a_persons_untracked_link_in_the_way_holds_the_merge_and_is_named() {
    let outside = tempfile::tempdir().expect("outside");
    let sb = setup(CONFIG, &plan(&[("t", "", &file("gen/x.txt", "x"))]));
    std::os::unix::fs::symlink(outside.path(), sb.path().join("gen")).expect("link");
    let said = tick_until(&sb, |s| s.contains("merge one/t: deferred"), 2);
    assert_ne!(phase(&sb, "t"), "merged");
    assert!(
        std::fs::read_dir(outside.path())
            .expect("outside")
            .next()
            .is_none(),
        "converge wrote through the link"
    );
    assert!(
        said.contains("gen/x.txt"),
        "the blocking path is not named:\n{said}"
    );
    assert!(said.contains("symbolic link"), "{said}");
    // The person removes the link: the merge goes through.
    std::fs::remove_file(sb.path().join("gen")).expect("rm");
    settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged");
    assert_eq!(sb.read("gen/x.txt"), "x\n");
    sound(&sb, &[]);
}

#[test]
fn unrelated_uncommitted_changes_do_not_hold_back_merges_or_status() {
    let sb = setup(
        CONFIG,
        &plan(&[
            ("a", "", &file("a.txt", "a")),
            ("b", "\"a\"", &file("b.txt", "b")),
        ]),
    );
    // A plan being edited, a staged file, an untracked file.
    let edited = format!(
        "{}# a comment being written\n",
        sb.read("planning/plans/one.toml")
    );
    sb.write("planning/plans/one.toml", &edited);
    sb.write("notes.txt", "mine\n");
    sb.write("src/lib.txt", "library, staged\n");
    sb.git(&["add", "src/lib.txt"]);
    settle(&sb);
    assert_eq!(phase(&sb, "a"), "merged");
    assert_eq!(phase(&sb, "b"), "merged");
    assert_eq!(sb.read("planning/plans/one.toml"), edited);
    assert_eq!(sb.read("notes.txt"), "mine\n");
    sound(
        &sb,
        &[
            "M  src/lib.txt",
            " M planning/plans/one.toml",
            "?? notes.txt",
        ],
    );
    // Committing the staged change commits exactly that.
    sb.git(&["commit", "-qm", "lib"]);
    assert_eq!(
        sb.git(&["diff", "--name-only", "HEAD~1", "HEAD"]),
        "src/lib.txt\n"
    );
    sound(&sb, &[" M planning/plans/one.toml", "?? notes.txt"]);
}

#[test]
fn a_merge_into_a_modified_file_waits_names_the_path_and_keeps_its_gate() {
    let scratch = tempfile::tempdir().expect("scratch");
    let log = scratch.path().join("gate.log");
    let (config, text) = counted(
        &plan(&[("t", "", &file("README.md", "from the task"))]),
        &log,
    );
    let sb = setup(&config, &text);
    sb.write("README.md", "project\nthe person's edit\n");
    let said = tick_until(&sb, |s| s.contains("merge one/t: deferred"), 3);
    assert_ne!(phase(&sb, "t"), "merged");
    assert_eq!(sb.read("README.md"), "project\nthe person's edit\n");
    assert!(
        said.contains("README.md"),
        "the path in the way is not named:\n{said}"
    );
    assert!(said.contains("stash"), "no way out is offered:\n{said}");
    assert_eq!(
        runs(&log),
        1,
        "the gate ran again on deferred ticks:\n{said}"
    );
    // Status is still recorded (its paths are not in the way).
    assert_eq!(phase(&sb, "t"), "passed", "{said}");
    sound(&sb, &[" M README.md"]);
    sb.git(&["checkout", "--", "README.md"]);
    settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged");
    assert_eq!(sb.read("README.md"), "from the task\n");
    sound(&sb, &[]);
}

#[test]
fn a_deferred_status_commit_does_not_run_the_gate_again() {
    let scratch = tempfile::tempdir().expect("scratch");
    let log = scratch.path().join("gate.log");
    let (config, text) = counted(&plan(&[("t", "", &file("t.txt", "t"))]), &log);
    let sb = setup(&config, &text);
    tick(&sb);
    // The person edits the dashboard converge rewrites on every status change.
    sb.write("planning/STATUS.md", "my notes\n");
    let said = tick_until(&sb, |s| s.contains("gate one/t"), 3);
    assert_eq!(
        runs(&log),
        1,
        "the gate ran again on deferred ticks:\n{said}"
    );
    assert!(said.contains("planning/STATUS.md"), "{said}");
    assert_eq!(sb.read("planning/STATUS.md"), "my notes\n");
    sb.git(&["checkout", "--", "planning/STATUS.md"]);
    settle(&sb);
    assert_eq!(phase(&sb, "t"), "merged");
    sound(&sb, &[]);
}

#[test]
fn converge_and_a_person_take_turns_with_git_all_day() {
    let tasks: Vec<(String, String, String)> = (0..6)
        .map(|i| {
            let deps = if i >= 2 {
                format!("\"t{}\"", i - 2)
            } else {
                String::new()
            };
            (
                format!("t{i}"),
                deps,
                file(&format!("work/{i}.txt"), &format!("{i}")),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str, &str)> = tasks
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let sb = setup(CONFIG, &plan(&borrowed));
    let mut mine: Vec<(String, String)> = Vec::new();
    let mut person = |sb: &Sandbox, step: usize| {
        let name = format!("person/{step}.txt");
        let text = format!("step {step}\n");
        sb.write(&name, &text);
        mine.push((name, text));
        match step % 6 {
            0 => {
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qam", &format!("person {step}")]);
            }
            1 => {
                sb.git(&["stash", "push", "-u", "-q"]);
                tick(sb);
                sound(sb, &[]);
                sb.git(&["stash", "pop", "-q"]);
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qm", &format!("person {step}")]);
            }
            2 => {
                sb.git(&["switch", "-q", "-c", &format!("topic{step}")]);
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qm", &format!("topic {step}")]);
                tick(sb);
                sb.git(&["switch", "-q", "main"]);
                sound(sb, &[]);
                sb.git(&["merge", "-q", "--no-edit", &format!("topic{step}")]);
            }
            3 => {
                sb.git(&["switch", "-q", "-c", &format!("topic{step}"), "HEAD~1"]);
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qm", &format!("topic {step}")]);
                tick(sb);
                sb.git(&["rebase", "-q", "main"]);
                sb.git(&["switch", "-q", "main"]);
                sb.git(&["merge", "-q", "--ff-only", &format!("topic{step}")]);
            }
            4 => {
                // Edited, not committed, through two ticks; then committed.
                tick(sb);
                tick(sb);
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qm", &format!("person {step}")]);
            }
            _ => {
                sb.git(&["add", "-A", "person"]);
                sb.git(&["commit", "-qam", &format!("person {step}")]);
                sb.git(&["reset", "-q", "--hard"]);
            }
        }
    };
    for step in 0..12 {
        tick(&sb);
        sound(&sb, &[]);
        person(&sb, step);
        sound(&sb, &[]);
    }
    settle(&sb);
    sound(&sb, &[]);
    // No agent runs any more: the whole repository, reflogs included.
    sb.git(&["fsck", "--strict", "--no-progress"]);
    let head = files_at(&sb, "HEAD");
    for (name, text) in &mine {
        assert!(head.contains(name), "{name} was lost");
        assert_eq!(&sb.read(name), text, "{name} was reverted");
    }
    for i in 0..6 {
        assert_eq!(phase(&sb, &format!("t{i}")), "merged");
        assert_eq!(sb.read(&format!("work/{i}.txt")), format!("{i}\n"));
    }
    // Each task merged exactly once.
    let merges = sb.git(&["log", "--first-parent", "--format=%s", "main"]);
    for i in 0..6 {
        let n = merges
            .lines()
            .filter(|l| l.starts_with(&format!("converge: merge one/t{i} ")))
            .count();
        assert_eq!(n, 1, "t{i} merged {n} times:\n{merges}");
    }
}

#[test]
fn doctor_finds_and_finishes_a_checkout_left_behind_its_branch() {
    let sb = setup(CONFIG, &plan(&[("t", "", &file("t.txt", "t"))]));
    settle(&sb);
    // What a crash between moving main and updating the checkout leaves: the
    // journal converge writes first, main one commit ahead, the files behind.
    let old = sb.git(&["rev-parse", "HEAD"]).trim().to_owned();
    sb.write("docs.txt", "docs\n");
    sb.git(&["add", "docs.txt"]);
    let tree = sb.git(&["write-tree"]).trim().to_owned();
    sb.git(&["rm", "-q", "--cached", "docs.txt"]);
    std::fs::remove_file(sb.path().join("docs.txt")).expect("rm");
    let new = sb
        .git(&["commit-tree", &tree, "-p", &old, "-m", "ahead"])
        .trim()
        .to_owned();
    crate::support::checkout_journal(&sb, &old, &new);
    sb.git(&["update-ref", "refs/heads/main", &new, &old]);
    let doctor = sb.converge(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.transcript());
    assert!(
        doctor.stdout.contains("was not fully moved"),
        "{}",
        doctor.transcript()
    );
    let fixed = sb.converge(&["doctor", "--fix"]);
    fixed.success();
    assert!(
        fixed.stdout.contains("brought the checkout of main"),
        "{}",
        fixed.transcript()
    );
    assert_eq!(sb.read("docs.txt"), "docs\n");
    sound(&sb, &[]);
    sb.converge(&["doctor"]).success();
}

#[test]
fn an_agent_whose_worktree_lost_its_git_file_never_commits_on_the_persons_branch() {
    // The worktree is nested in the person's checkout: with its `.git` file
    // gone, looking for "the repository here" finds the checkout above it.
    let text = plan(&[("t", "", &file("t.txt", "t"))])
        .replace("[tasks.sim]\n", "[tasks.sim]\nsleep = \"2s\"\n");
    let sb = setup(CONFIG, &text);
    tick(&sb);
    let dot_git = sb.path().join(".converge/worktrees/one/t/.git");
    for _ in 0..100 {
        if dot_git.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A private repository's `.git` is a directory (a linked worktree's was a file).
    std::fs::remove_dir_all(&dot_git).expect("remove the worktree's .git");
    sb.write("README.md", "project\nthe person's unsaved work\n");
    let head = sb.git(&["rev-parse", "main"]);
    std::thread::sleep(std::time::Duration::from_millis(3000));
    assert_eq!(
        sb.git(&["rev-parse", "main"]),
        head,
        "something committed on main"
    );
    assert_eq!(sb.read("README.md"), "project\nthe person's unsaved work\n");
    assert_eq!(
        sb.git(&["status", "--porcelain", "--", "README.md"]),
        " M README.md\n"
    );
}
