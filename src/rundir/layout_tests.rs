use super::*;

fn layout() -> Layout {
    Layout::new("/p/repo/.git")
}

fn key() -> TaskKey {
    TaskKey::new("auth", "login")
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn paths_under_the_common_dir() {
    let l = layout();
    let k = key();
    let cases = [
        (l.root(), "/p/repo/.git/converge"),
        (l.runs(), "/p/repo/.git/converge/runs"),
        (l.task_runs(&k), "/p/repo/.git/converge/runs/auth/login"),
        (l.run(&k, 3), "/p/repo/.git/converge/runs/auth/login/3"),
        (l.fork_marker(&k), "/p/repo/.git/converge/forks/auth/login"),
        (l.gates(), "/p/repo/.git/converge/gates"),
        (l.task_gates(&k), "/p/repo/.git/converge/gates/auth/login"),
        (
            l.gate_record(&k, 2),
            "/p/repo/.git/converge/gates/auth/login/2.json",
        ),
        (l.merge_checks(), "/p/repo/.git/converge/merge-checks"),
        (
            l.merge_check(&k),
            "/p/repo/.git/converge/merge-checks/auth.login",
        ),
        (l.checkouts(), "/p/repo/.git/converge/checkouts"),
        (
            l.checkout_journal("main/x"),
            "/p/repo/.git/converge/checkouts/main%2Fx.json",
        ),
        (l.left_alone(), "/p/repo/.git/converge/checkouts/left-alone"),
        (
            l.left_alone_note("converge/a/b", "abc"),
            "/p/repo/.git/converge/checkouts/left-alone/converge%2Fa%2Fb@abc.json",
        ),
        (l.intents(), "/p/repo/.git/converge/intents"),
        (l.lock(), "/p/repo/.git/converge/lock"),
        (l.secret(), "/p/repo/.git/converge/secret"),
        (l.reconciler_id(), "/p/repo/.git/converge/reconciler-id"),
        (l.legacy_worktrees(), "/p/repo/.git/converge/worktrees"),
    ];
    for (got, want) in cases {
        assert_eq!(got, p(want));
    }
    assert_eq!(l.common(), Path::new("/p/repo/.git"));
}

#[test]
fn worktrees_live_in_the_checkout_unless_there_is_none() {
    assert_eq!(layout().checkout(), Some(Path::new("/p/repo")));
    assert_eq!(
        layout().default_worktree_root(),
        p("/p/repo/.converge/worktrees")
    );
    assert_eq!(
        worktree(&layout().default_worktree_root(), &key()),
        p("/p/repo/.converge/worktrees/auth/login")
    );
    assert_eq!(DEFAULT_ROOT_EXCLUDE, "/.converge/");
    for bare in ["/p/repo.git", "/p/repo/.git/modules/sub", ".git"] {
        let l = Layout::new(bare);
        assert_eq!(l.checkout(), None, "{bare}");
        assert_eq!(l.default_worktree_root(), l.legacy_worktrees(), "{bare}");
    }
}

#[test]
fn the_files_of_a_run_directory() {
    let run = layout().run(&key(), 1);
    let cases = [
        (run_plan(&run), "run.json"),
        (supervisor_log(&run), "supervisor.log"),
        (lease(&run), "lease.json"),
        (exit(&run), "exit.json"),
        (events(&run), "events.jsonl"),
        (brief(&run), "brief.json"),
        (prompt(&run), "prompt.md"),
        (agent_log(&run), "agent.log"),
        (gate_logs(&run), "gate"),
        (merge_logs(&run), "merge"),
        (invariant_log(&gate_logs(&run), "tests"), "gate/tests.log"),
        (check_keep(&run), "check"),
        (tmp(&run), "tmp"),
        (harness_home(&run, "codex"), "codex"),
    ];
    for (got, name) in cases {
        assert_eq!(got, run.join(name));
    }
}

#[test]
fn temporary_names() {
    assert_eq!(
        atomic_temp(Path::new("/d/exit.json"), 42),
        p("/d/.exit.json.converge-tmp-42")
    );
    assert_eq!(atomic_temp(Path::new("x"), 7), p(".x.converge-tmp-7"));
    assert_eq!(
        secret_temp(&layout().secret(), 9),
        p("/p/repo/.git/converge/secret.9.tmp")
    );
    let temp = checkout_temp(Path::new("/w/a/very-long-name.rs"), "12");
    assert_eq!(temp, p("/w/a/.converge-12.tmp"));
    let name = temp.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(checkout_temp_pid(name), Some(12));
    assert_eq!(checkout_temp_pid(".converge-x.tmp"), None);
    assert_eq!(checkout_temp_pid("file.rs"), None);
}
