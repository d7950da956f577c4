//! Loading planning/ from a commit (gix, no working tree) and from the working
//! tree must give the same Spec; base-branch resolution follows git config and
//! the base branch's own converge.toml.

use converge::git::Repo;
use converge::spec::{self, PlanningFiles};

use crate::support::{Sandbox, repo_path};

#[test]
fn commit_and_worktree_give_the_same_spec() {
    for example in [
        "examples/auth",
        "examples/mixed-dag",
        "examples/human-gates",
    ] {
        let sandbox = Sandbox::repo();
        sandbox.copy_tree(&repo_path(&format!("{example}/planning")), "planning");
        sandbox.write(
            "planning/queue/fix-typo.md",
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nFix the typo.\n",
        );
        sandbox.write("planning/status/ignored.toml", "not = 'input'\n");
        let head = sandbox.commit_all("plans");
        let repo = Repo::discover(sandbox.path()).expect("repo");
        let from_commit = spec::compile(
            &spec::base::read_planning(&repo, repo.resolve_commit(&head).expect("commit"))
                .expect("read"),
        );
        let from_worktree = spec::compile(&PlanningFiles::read_dir(sandbox.path()).expect("read"));
        assert!(
            from_commit.diagnostics.is_empty(),
            "{example}: {:?}",
            from_commit.diagnostics
        );
        let (a, b) = (
            from_commit.spec.expect("valid"),
            from_worktree.spec.expect("valid"),
        );
        assert!(!a.plans.is_empty() && a.queue.contains_key("fix-typo"));
        assert_eq!(a, b, "{example}");
    }
}

#[test]
fn reading_a_commit_ignores_the_working_tree() {
    let sandbox = Sandbox::repo();
    sandbox.copy_tree(&repo_path("examples/auth/planning"), "planning");
    let head = sandbox.commit_all("plans");
    std::fs::remove_dir_all(sandbox.path().join("planning")).expect("rm");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let loaded = spec::compile(
        &spec::base::read_planning(&repo, repo.resolve_commit(&head).expect("commit"))
            .expect("read"),
    );
    assert!(loaded.spec.expect("valid").plans.contains_key("auth"));
}

#[test]
fn base_branch_comes_from_git_config_or_the_base_branch_itself() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[reconcile]\nbase_branch = \"trunk\"\n",
    );
    sandbox.commit_all("main says trunk");
    sandbox.git(&["branch", "trunk"]);
    sandbox.write(
        "planning/converge.toml",
        "[reconcile]\nbase_branch = \"trunk\"\nmax_agents = 9\n",
    );
    let trunk_tip = {
        sandbox.git(&["switch", "-q", "trunk"]);
        sandbox.commit_all("trunk's own config")
    };
    sandbox.git(&["switch", "-q", "main"]);
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let source = spec::base::base_source(&repo).expect("base");
    assert_eq!(source.rev, "trunk");
    assert_eq!(source.commit.to_string(), trunk_tip);
    sandbox.git(&["config", "converge.baseBranch", "main"]);
    let repo = Repo::discover(sandbox.path()).expect("repo");
    // main's converge.toml points at trunk, which exists: the hop is followed.
    assert_eq!(spec::base::base_source(&repo).expect("base").rev, "trunk");
}
