//! `converge init`, tested as in/out trees: each case under tests/fixtures/init/
//! has `in/` (the repository before), `cmd` (the arguments) and `out/` (the
//! repository after). Set CONVERGE_BLESS=1 to rewrite `out/` after a deliberate
//! change, then review the diff.

use std::path::Path;

use crate::support::{Sandbox, repo_path, tree_of};

fn case(name: &str) {
    let dir = repo_path(&format!("tests/fixtures/init/{name}"));
    let sandbox = Sandbox::repo();
    sandbox.copy_tree(&dir.join("in"), ".");
    let args: Vec<String> = std::fs::read_to_string(dir.join("cmd"))
        .expect("cmd")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = sandbox.converge(&args);
    insta::assert_snapshot!(format!("init_{name}"), run.transcript());
    let out_dir = dir.join("out");
    if std::env::var_os("CONVERGE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&out_dir);
        copy(sandbox.path(), &out_dir);
    }
    let expected = tree_of(&out_dir);
    let actual = sandbox.tree();
    let names =
        |t: &std::collections::BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&actual),
        names(&expected),
        "files differ from {}",
        out_dir.display()
    );
    for (path, content) in &expected {
        assert!(
            actual[path] == *content,
            "{path} differs from {}",
            out_dir.display()
        );
    }
}

fn copy(from: &Path, to: &Path) {
    for (path, content) in tree_of(from) {
        let target = to.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, content).expect("write");
    }
}

#[test]
fn init_in_an_empty_repository_writes_the_generic_template() {
    case("empty-repo");
}

#[test]
fn init_in_a_rust_project_uses_cargo_invariants() {
    case("rust-project");
}

#[test]
fn init_refuses_to_overwrite_and_changes_nothing() {
    case("existing-file");
}

#[test]
fn init_force_overwrites_template_files() {
    case("force");
}

#[test]
fn init_commit_commits_and_keeps_the_index_clean() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    sandbox.commit_all("initial");
    sandbox.converge(&["init", "--commit"]).success();
    assert_eq!(
        sandbox.git(&["status", "--porcelain"]),
        "",
        "init --commit left changes behind"
    );
    let log = sandbox.git(&["log", "--format=%s|%an|%cn", "-n", "2"]);
    assert_eq!(
        log,
        "converge: init planning/|Test Author|Test Committer\ninitial|Test Author|Test Committer\n"
    );
    let files = sandbox.git(&["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(
        files.contains("planning/plans/example.toml") && files.contains("README.md"),
        "{files}"
    );
    // The committed spec validates and is what `plan show` reads by default.
    let show = sandbox.converge(&["plan", "show"]);
    show.success();
    assert!(
        show.stdout.contains("plan example"),
        "{}",
        show.transcript()
    );
}

#[test]
fn init_commit_in_a_repository_without_commits() {
    let sandbox = Sandbox::repo();
    sandbox.converge(&["init", "--commit"]).success();
    assert_eq!(sandbox.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    assert_eq!(sandbox.git(&["status", "--porcelain"]), "");
}

#[test]
fn init_outside_a_repository_explains() {
    let sandbox = Sandbox::new();
    let run = sandbox.converge(&["init"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is not inside a git repository") && run.stderr.contains("hint: "),
        "{}",
        run.transcript()
    );
    assert!(sandbox.tree().is_empty());
}

#[test]
fn init_commit_leaves_other_staged_changes_staged_and_uncommitted() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    sandbox.commit_all("initial");
    sandbox.write("README.md", "hello, staged edit\n");
    sandbox.write("notes.txt", "staged new file\n");
    sandbox.git(&["add", "README.md", "notes.txt"]);
    sandbox.write("README.md", "hello, staged edit\nand an unstaged line\n");
    sandbox.converge(&["init", "--commit"]).success();
    // The commit holds the template only.
    let changed = sandbox.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(
        changed.lines().all(|l| l.starts_with("planning/")),
        "{changed}"
    );
    // The user's staged and unstaged work is exactly as it was.
    assert_eq!(
        sandbox.git(&["status", "--porcelain"]),
        "MM README.md\nA  notes.txt\n"
    );
    assert_eq!(sandbox.git(&["show", ":README.md"]), "hello, staged edit\n");
    assert_eq!(
        sandbox.read("README.md"),
        "hello, staged edit\nand an unstaged line\n"
    );
}

#[test]
fn init_writes_no_setting_that_converge_refuses_and_no_watch() {
    // Issue 11: the template promised `converge watch`, which does not exist,
    // and showed settings that did nothing (`interval`, `[[schedule]]`, the
    // github forge); those are refused now, so the template shows none of them.
    let sandbox = Sandbox::repo();
    sandbox.converge(&["init"]).success();
    let written = sandbox.tree();
    assert!(written.contains_key("planning/converge.toml"));
    for (path, content) in &written {
        let text = String::from_utf8_lossy(content);
        for word in ["watch", "interval", "schedule", "github"] {
            assert!(!text.contains(word), "{path} mentions `{word}`:\n{text}");
        }
    }
    sandbox.converge(&["plan", "validate"]).success();
}
