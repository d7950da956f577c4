use super::*;

use crate::git::testing::git;

/// A main repository with one commit, and an agent's private repository of
/// branch `converge/p/t` at it, with one commit of the agent's.
fn fixture() -> (tempfile::TempDir, Repo, PathBuf, ObjectId) {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    std::fs::create_dir_all(main.join("src")).expect("mkdir");
    git(&main, &["init", "-q", "-b", "main"]);
    git(&main, &["config", "user.name", "Person \"P\""]);
    std::fs::write(main.join("src/a.txt"), "a\n").expect("write");
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "base"]);
    let repo = Repo::discover(&main).expect("open");
    let fork = repo.resolve_commit("main").expect("main");
    let wt = dir.path().join("wt");
    repo.create_private(&wt, "converge/p/t", fork)
        .expect("private");
    (dir, repo, wt, fork)
}

#[test]
fn a_private_repository_checks_out_the_fork_and_keeps_the_agents_objects_to_itself() {
    let (_dir, repo, wt, fork) = fixture();
    assert_eq!(
        std::fs::read_to_string(wt.join("src/a.txt")).expect("file"),
        "a\n"
    );
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    assert_eq!(
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "converge/p/t"
    );
    assert_eq!(git(&wt, &["config", "user.name"]), "Person \"P\"");
    std::fs::write(wt.join("b.txt"), "b\n").expect("write");
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "agent work"]);
    let head = private_head(&wt, "converge/p/t")
        .expect("head")
        .expect("some");
    assert_ne!(head, fork);
    // The agent's commit is in its own store only.
    assert!(!repo.gix().has_object(head));
    assert_eq!(repo.branch_tip("converge/p/t").expect("tip"), None);
    let copied = repo.import_objects(&wt, head).expect("import");
    // The commit, its root tree and the new blob; `src/` and a.txt were there.
    assert_eq!(copied, 3);
    assert!(repo.gix().has_object(head));
    assert_eq!(repo.import_objects(&wt, head).expect("again"), 0);
    // Packed refs are read too.
    git(&wt, &["pack-refs", "--all"]);
    assert_eq!(
        private_head(&wt, "converge/p/t").expect("packed"),
        Some(head)
    );
    git(&wt, &["update-ref", "-d", "refs/heads/converge/p/t"]);
    assert_eq!(private_head(&wt, "converge/p/t").expect("deleted"), None);
}

#[test]
fn a_forged_object_is_refused_and_nothing_of_it_reaches_the_main_store() {
    let (_dir, repo, wt, _) = fixture();
    std::fs::write(wt.join("b.txt"), "honest\n").expect("write");
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "agent work"]);
    let head = private_head(&wt, "converge/p/t")
        .expect("head")
        .expect("some");
    let blob = git(&wt, &["rev-parse", "HEAD:b.txt"]);
    // Replace the blob's loose file with another object's.
    let other = git(&wt, &["hash-object", "-w", "--stdin"]);
    let loose = |id: &str| wt.join(".git/objects").join(&id[..2]).join(&id[2..]);
    let forged = std::fs::read(loose(&other)).expect("other");
    let path = loose(&blob);
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).expect("chmod");
    std::fs::write(&path, forged).expect("forge");
    match repo.import_objects(&wt, head) {
        Err(ImportError::Forged { id, .. }) => assert_eq!(id.to_string(), blob),
        other => panic!("{other:?}"),
    }
    // Children first: neither the commit nor its tree made it.
    assert!(!repo.gix().has_object(head));
}

#[test]
fn missing_or_mistyped_objects_and_moved_pointers_are_refused() {
    let (_dir, repo, wt, fork) = fixture();
    let nowhere = ObjectId::from_hex(b"1111111111111111111111111111111111111111").expect("hex");
    assert!(matches!(
        repo.import_objects(&wt, nowhere),
        Err(ImportError::Missing { .. })
    ));
    // A blob where a commit should be.
    let blob = git(&wt, &["hash-object", "-w", "--stdin"]);
    let blob = ObjectId::from_hex(blob.as_bytes()).expect("hex");
    assert!(matches!(
        repo.import_objects(&wt, blob),
        Err(ImportError::WrongKind { .. })
    ));
    // A ref that links to a file elsewhere is refused, its target unread.
    let secret = wt.join("../secret");
    std::fs::write(&secret, "s3cr3t\n").expect("secret");
    let reference = wt.join(".git/refs/heads/converge/p/t");
    std::fs::remove_file(&reference).expect("rm");
    std::os::unix::fs::symlink(&secret, &reference).expect("link");
    let err = private_head(&wt, "converge/p/t").expect_err("a link");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert!(err.is_agents());
    // A symbolic ref is refused.
    std::fs::remove_file(&reference).expect("rm");
    std::fs::write(&reference, "ref: refs/heads/main\n").expect("write");
    assert!(private_head(&wt, "converge/p/t").is_err());
    // An alternate pointed elsewhere stops the import.
    std::fs::write(&reference, format!("{fork}\n")).expect("write");
    std::fs::write(wt.join(".git/objects/info/alternates"), "/elsewhere\n").expect("write");
    assert!(matches!(
        repo.import_objects(&wt, fork),
        Err(ImportError::Tampered { .. })
    ));
    // A `.git` replaced by a link to another repository.
    std::fs::remove_dir_all(wt.join(".git")).expect("rm");
    std::os::unix::fs::symlink(repo.common_dir(), wt.join(".git")).expect("link");
    assert!(!is_private(&wt));
    assert!(matches!(
        private_head(&wt, "converge/p/t"),
        Err(ImportError::Tampered { .. })
    ));
}

#[test]
fn leftovers_are_committed_from_the_files_not_from_the_agents_git() {
    let (_dir, repo, wt, fork) = fixture();
    // The agent's configuration, and the main repository's, name a filter
    // that would run on `git add`.
    let marker = wt.join("../filter-ran");
    let filter = format!(
        "[filter \"x\"]\n\tclean = touch {}\n\trequired = true\n",
        marker.display()
    );
    std::fs::write(wt.join(".git/config"), &filter).expect("config");
    let main_config = repo.common_dir().join("config");
    let mut config = std::fs::read_to_string(&main_config).expect("main config");
    config.push_str(&filter);
    std::fs::write(&main_config, config).expect("main config");
    std::fs::write(wt.join(".gitattributes"), "* filter=x\n").expect("attrs");
    std::fs::write(wt.join(".gitignore"), "ignored.bin\n").expect("ignore");
    std::fs::write(wt.join("ignored.bin"), "x").expect("ignored");
    std::fs::write(wt.join("new.txt"), "new\n").expect("new");
    std::fs::remove_file(wt.join("src/a.txt")).expect("rm");
    let commit = repo
        .commit_private_leftovers(&wt, fork, "leftovers", &crate::git::Signer::Person)
        .expect("commit")
        .expect("something left");
    assert!(!marker.exists(), "the agent's filter ran");
    let files = |c: ObjectId| {
        let mut names: Vec<String> = repo
            .changed_files(fork, c)
            .expect("diff")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        files(commit),
        [".gitattributes", ".gitignore", "new.txt", "src/a.txt"]
    );
    // Nothing left: nothing to commit.
    std::fs::create_dir_all(wt.join("src")).expect("mkdir");
    let again = repo.commit_private_leftovers(&wt, commit, "again", &crate::git::Signer::Person);
    assert_eq!(again.expect("commit"), None);
}

#[test]
fn a_nested_repository_without_a_commit_is_the_agents_failure_not_converges() {
    let (_dir, repo, wt, fork) = fixture();
    git(&wt, &["init", "-q", "sub"]);
    std::fs::write(wt.join("sub/x"), "x\n").expect("write");
    let err = repo
        .commit_private_leftovers(&wt, fork, "leftovers", &crate::git::Signer::Person)
        .expect_err("git refuses");
    assert!(matches!(err, ImportError::Leftovers { .. }), "{err}");
    assert!(err.is_agents());
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn a_tree_git_would_not_write_is_refused() {
    let (_dir, repo, wt, _) = fixture();
    // Entries out of order, written with --literally.
    let blob = git(&wt, &["hash-object", "-w", "--stdin"]);
    let entry = |mode: &str, name: &str| {
        let mut bytes = format!("{mode} {name}\0").into_bytes();
        bytes.extend(ObjectId::from_hex(blob.as_bytes()).expect("hex").as_bytes());
        bytes
    };
    for (label, tree) in [
        (
            "unsorted",
            [entry("100644", "b"), entry("100644", "a")].concat(),
        ),
        ("padded mode", entry("0100644", "a")),
        (
            "a name twice",
            [entry("100644", "a"), entry("100644", "a")].concat(),
        ),
    ] {
        let path = wt.join("../tree.bin");
        std::fs::write(&path, &tree).expect("write");
        let id = git(
            &wt,
            &[
                "hash-object",
                "-t",
                "tree",
                "-w",
                "--literally",
                path.to_str().expect("utf-8"),
            ],
        );
        let commit = git(&wt, &["commit-tree", &id, "-m", "odd"]);
        let commit = ObjectId::from_hex(commit.as_bytes()).expect("hex");
        match repo.import_objects(&wt, commit) {
            Err(ImportError::NotCanonical { .. }) => {}
            other => panic!("{label}: {other:?}"),
        }
        assert!(!repo.gix().has_object(commit), "{label}");
    }
}
