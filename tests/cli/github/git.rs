//! The fake GitHub's repository: a real bare git repository, driven with the
//! git CLI under the isolated environment of `support::isolate`. Merges happen
//! without a work tree (`git merge-tree --write-tree` + `commit-tree` +
//! a compare-and-swap `update-ref`), as GitHub's own merges do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::isolate;

/// How a pull request is merged (`merge_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "merge" => Some(Self::Merge),
            "squash" => Some(Self::Squash),
            "rebase" => Some(Self::Rebase),
            _ => None,
        }
    }
}

/// The identity GitHub commits merges with.
const GITHUB_NAME: &str = "GitHub";
const GITHUB_EMAIL: &str = "noreply@github.com";

/// A bare repository and the HOME its git commands run with.
#[derive(Debug)]
pub struct BareRepo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl BareRepo {
    /// A bare repository whose `default_branch` has one commit (a README).
    pub fn new(default_branch: &str) -> Self {
        let repo = BareRepo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp home"),
        };
        repo.git(&["init", "-q", "--bare", "-b", default_branch]);
        let readme = repo.blob("# fake repository\n");
        let tree = repo.tree_with(None, &[("README.md", readme.as_str())]);
        let commit = repo.commit_tree(&tree, &[], "Initial commit", None);
        repo.update_ref(&format!("refs/heads/{default_branch}"), &commit, None)
            .expect("create the default branch");
        repo
    }

    /// The repository's path: a file-path git remote.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_buf(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs git in the bare repository; panics on failure.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        self.try_git(args, &[])
            .unwrap_or_else(|e| panic!("git {args:?} failed: {e}"))
    }

    /// Runs git with extra environment; stdout or stderr.
    pub fn try_git(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
        let mut command = Command::new("git");
        isolate(&mut command, self.home.path());
        let output = command
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.path())
            .output()
            .expect("git runs");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The commit a branch points at, if it exists.
    pub fn branch_sha(&self, branch: &str) -> Option<String> {
        self.try_git(
            &[
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
            &[],
        )
        .ok()
        .map(|s| s.trim().to_owned())
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.try_git(&["merge-base", "--is-ancestor", ancestor, descendant], &[])
            .is_ok()
    }

    /// The parents of a commit.
    pub fn parents(&self, commit: &str) -> Vec<String> {
        let line = self.git(&["rev-list", "--parents", "-n", "1", commit]);
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    }

    /// The tree of a commit.
    pub fn tree_of(&self, commit: &str) -> String {
        self.git(&["rev-parse", &format!("{commit}^{{tree}}")])
            .trim()
            .to_owned()
    }

    /// A file's content at a commit, if present.
    pub fn show_file(&self, commit: &str, path: &str) -> Option<String> {
        self.try_git(&["show", &format!("{commit}:{path}")], &[])
            .ok()
    }

    fn blob(&self, content: &str) -> String {
        let file = self.home.path().join("blob");
        std::fs::write(&file, content).expect("write blob");
        self.git(&["hash-object", "-w", "--", &file.to_string_lossy()])
            .trim()
            .to_owned()
    }

    /// A tree: `base`'s entries at the top level plus `files` (top-level names only).
    fn tree_with(&self, base: Option<&str>, files: &[(&str, &str)]) -> String {
        let mut entries: Vec<String> = match base {
            Some(tree) => self
                .git(&["ls-tree", tree])
                .lines()
                .filter(|line| {
                    !files
                        .iter()
                        .any(|(name, _)| line.ends_with(&format!("\t{name}")))
                })
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        for (name, blob) in files {
            entries.push(format!("100644 blob {blob}\t{name}"));
        }
        let input = self.home.path().join("mktree");
        std::fs::write(&input, entries.join("\n") + "\n").expect("write mktree input");
        let mut command = Command::new("git");
        isolate(&mut command, self.home.path());
        let output = command
            .arg("mktree")
            .stdin(std::fs::File::open(&input).expect("open"))
            .current_dir(self.path())
            .output()
            .expect("git mktree runs");
        assert!(output.status.success(), "git mktree failed");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `git commit-tree`; `author` (name, email) defaults to GitHub's identity.
    fn commit_tree(
        &self,
        tree: &str,
        parents: &[&str],
        message: &str,
        author: Option<(&str, &str)>,
    ) -> String {
        let mut args = vec!["commit-tree", tree];
        for parent in parents {
            args.extend(["-p", parent]);
        }
        args.extend(["-m", message]);
        let (name, email) = author.unwrap_or((GITHUB_NAME, GITHUB_EMAIL));
        let env = [
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", GITHUB_NAME),
            ("GIT_COMMITTER_EMAIL", GITHUB_EMAIL),
        ];
        self.try_git(&args, &env)
            .unwrap_or_else(|e| panic!("commit-tree failed: {e}"))
            .trim()
            .to_owned()
    }

    /// Moves `reference` to `new` if it still points at `old` (None: must not exist).
    pub fn update_ref(&self, reference: &str, new: &str, old: Option<&str>) -> Result<(), String> {
        let zero = "0000000000000000000000000000000000000000";
        self.try_git(&["update-ref", reference, new, old.unwrap_or(zero)], &[])
            .map(|_| ())
    }

    /// Deletes a branch; false if it did not exist.
    pub fn delete_branch(&self, branch: &str) -> bool {
        match self.branch_sha(branch) {
            Some(sha) => self
                .try_git(
                    &["update-ref", "-d", &format!("refs/heads/{branch}"), &sha],
                    &[],
                )
                .is_ok(),
            None => false,
        }
    }

    /// Commits `file` = `content` on top of `branch` as a person (not converge,
    /// not GitHub) and moves the branch; returns the new commit.
    pub fn commit_as_person(
        &self,
        branch: &str,
        file: &str,
        content: &str,
        message: &str,
    ) -> String {
        let tip = self.branch_sha(branch).expect("branch exists");
        let blob = self.blob(content);
        let tree = self.tree_with(Some(&self.tree_of(&tip)), &[(file, blob.as_str())]);
        let commit = self.commit_tree(
            &tree,
            &[&tip],
            message,
            Some(("A Person", "person@example.com")),
        );
        self.update_ref(&format!("refs/heads/{branch}"), &commit, Some(&tip))
            .expect("move the branch");
        commit
    }

    /// The tree merging `theirs` into `ours` (with `base` as merge base when
    /// given), or None on conflicts.
    fn merge_tree(&self, ours: &str, theirs: &str, base: Option<&str>) -> Option<String> {
        let mut args = vec!["merge-tree", "--write-tree", "--no-messages"];
        if let Some(base) = base {
            args.extend(["--merge-base", base]);
        }
        args.extend([ours, theirs]);
        let out = self.try_git(&args, &[]).ok()?;
        out.lines().next().map(str::to_owned)
    }

    /// Whether `head` merges cleanly into `base_sha`.
    pub fn mergeable(&self, base_sha: &str, head: &str) -> bool {
        self.merge_tree(base_sha, head, None).is_some()
    }

    /// Merges `head` into branch `base` with `method`, moving `base` with a
    /// compare-and-swap; returns the new tip of `base` (GitHub's
    /// `merge_commit_sha`), or None on conflicts.
    pub fn merge(
        &self,
        base: &str,
        head: &str,
        method: MergeMethod,
        title: &str,
        message: &str,
    ) -> Option<String> {
        let base_sha = self.branch_sha(base).expect("base branch exists");
        let full = if message.is_empty() {
            title.to_owned()
        } else {
            format!("{title}\n\n{message}")
        };
        let new = match method {
            MergeMethod::Merge => {
                let tree = self.merge_tree(&base_sha, head, None)?;
                self.commit_tree(&tree, &[&base_sha, head], &full, None)
            }
            MergeMethod::Squash => {
                let tree = self.merge_tree(&base_sha, head, None)?;
                self.commit_tree(&tree, &[&base_sha], &full, None)
            }
            MergeMethod::Rebase => self.replay(&base_sha, head)?,
        };
        self.update_ref(&format!("refs/heads/{base}"), &new, Some(&base_sha))
            .ok()?;
        Some(new)
    }

    /// Replays the commits of `head` not in `onto` on top of `onto`, keeping
    /// their authors and messages (GitHub's rebase merge); the last one's sha.
    fn replay(&self, onto: &str, head: &str) -> Option<String> {
        let range = format!("{onto}..{head}");
        let commits = self.git(&["rev-list", "--reverse", "--no-merges", &range]);
        let mut tip = onto.to_owned();
        for commit in commits.lines() {
            let parent = format!("{commit}^");
            let tree = self.merge_tree(&tip, commit, Some(&parent))?;
            let meta = self.git(&["log", "-1", "--format=%an%x00%ae%x00%B", commit]);
            let mut parts = meta.splitn(3, '\0');
            let name = parts.next().unwrap_or_default().to_owned();
            let email = parts.next().unwrap_or_default().to_owned();
            let body = parts.next().unwrap_or_default().trim_end().to_owned();
            tip = self.commit_tree(&tree, &[&tip], &body, Some((&name, &email)));
        }
        Some(tip)
    }
}
