use super::*;

use crate::git::testing::git;

#[test]
fn an_unchanged_worktree_is_not_read_again_and_a_changed_one_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).expect("mkdir");
    git(&main, &["init", "-q", "-b", "main"]);
    std::fs::write(main.join("a.txt"), "a\n").expect("write");
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "base"]);
    git(&main, &["branch", "converge/p/t"]);
    let repo = Repo::discover(&main).expect("open");
    let fork = repo.resolve_commit("main").expect("main");
    let key = TaskKey::new("p", "t");
    let wt = dir.path().join("wt");
    repo.create_private(&wt, "converge/p/t", fork)
        .expect("private");
    std::fs::write(wt.join("b.txt"), "b\n").expect("write");
    let signer = Signer::Person;
    let first = import(&repo, &key, &wt, "leftovers", &signer).expect("import");
    assert!(first.leftovers);
    assert_ne!(first.tip, Some(fork));
    // Nothing changed: nothing new, and the note says why git was not run.
    let again = import(&repo, &key, &wt, "leftovers", &signer).expect("import");
    assert_eq!((again.tip, again.leftovers), (first.tip, false));
    assert!(Layout::new(repo.common_dir()).import_note(&key).exists());
    // A file changed (same size): read again, committed.
    std::fs::write(wt.join("b.txt"), "c\n").expect("write");
    let changed = import(&repo, &key, &wt, "leftovers", &signer).expect("import");
    assert!(changed.leftovers);
    assert_ne!(changed.tip, first.tip);
    let tip = changed.tip.expect("tip").to_string();
    assert_eq!(git(&main, &["show", &format!("{tip}:b.txt")]), "c");
    // The task branch moved by someone else: read again.
    git(
        &main,
        &["update-ref", "refs/heads/converge/p/t", &fork.to_string()],
    );
    let moved = import(&repo, &key, &wt, "leftovers", &signer).expect("import");
    assert!(moved.leftovers);
}
