//! Fetch and push through the `git` CLI (gix has no push): argv only, no
//! prompts, a timeout on every call. A push carries a lease on the value the
//! tick fetched, so across machines the push is the compare-and-swap.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gix::ObjectId;

use super::{GitError, Repo, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

/// How a push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    Ok,
    /// The remote's branch was not at the leased value: another reconciler won.
    Rejected {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("`git {args}` failed: {output}")]
pub struct RemoteError {
    pub args: String,
    pub output: String,
}

impl Repo {
    fn git_cli(&self, args: &[&str]) -> Result<(bool, String)> {
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(self.repo.git_dir())
            .args(args)
            .env_remove(crate::agent::token::SECRET_ENV)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GitError::Io {
                path: "git".into(),
                source,
            })?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok((false, format!("timed out after {}s", TIMEOUT.as_secs())));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(source) => {
                    return Err(GitError::Io {
                        path: "git".into(),
                        source,
                    });
                }
            }
        };
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        Ok((status.success(), out.trim().to_owned()))
    }

    /// Fetches `branch` from `remote` into `refs/remotes/<remote>/<branch>` and
    /// returns the remote's tip (`None` if the remote has no such branch).
    pub fn fetch_branch(&self, remote: &str, branch: &str) -> Result<Option<ObjectId>> {
        let tracking = format!("refs/remotes/{remote}/{branch}");
        let spec = format!("+refs/heads/{branch}:{tracking}");
        let (ok, output) = self.git_cli(&["fetch", "--quiet", "--no-tags", "--", remote, &spec])?;
        if !ok {
            if output.contains("couldn't find remote ref") {
                return Ok(None);
            }
            return Err(GitError::Remote(RemoteError {
                args: format!("fetch {remote} {spec}"),
                output,
            }));
        }
        // gix caches refs; read the fresh value from a reopened repository.
        let fresh = Repo::discover(self.repo.git_dir())?;
        fresh.ref_target(&tracking)
    }

    /// Pushes `new` to `branch` on `remote`, only if the remote's branch is
    /// still at `expected` (`None`: it must not exist).
    pub fn push_with_lease(
        &self,
        remote: &str,
        branch: &str,
        new: ObjectId,
        expected: Option<ObjectId>,
    ) -> Result<Pushed> {
        let lease = format!(
            "--force-with-lease=refs/heads/{branch}:{}",
            expected.map(|e| e.to_string()).unwrap_or_default()
        );
        let refspec = format!("{new}:refs/heads/{branch}");
        let (ok, output) = self.git_cli(&[
            "push", "--quiet", "--atomic", &lease, "--", remote, &refspec,
        ])?;
        if ok {
            let tracking = format!("refs/remotes/{remote}/{branch}");
            let _ = self.git_cli(&["update-ref", &tracking, &new.to_string()]);
            return Ok(Pushed::Ok);
        }
        if output.contains("stale info") || output.contains("rejected") {
            return Ok(Pushed::Rejected { message: output });
        }
        Err(GitError::Remote(RemoteError {
            args: format!("push {remote} {refspec}"),
            output,
        }))
    }

    /// Deletes `branch` on `remote`, only if it is still at `expected`: a
    /// branch someone pushed to since is kept.
    pub fn delete_with_lease(
        &self,
        remote: &str,
        branch: &str,
        expected: ObjectId,
    ) -> Result<Pushed> {
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        let refspec = format!(":refs/heads/{branch}");
        let (ok, output) = self.git_cli(&[
            "push", "--quiet", "--atomic", &lease, "--", remote, &refspec,
        ])?;
        if ok {
            let tracking = format!("refs/remotes/{remote}/{branch}");
            let _ = self.git_cli(&["update-ref", "-d", &tracking]);
            return Ok(Pushed::Ok);
        }
        if output.contains("stale info")
            || output.contains("rejected")
            || output.contains("unable to delete")
        {
            return Ok(Pushed::Rejected { message: output });
        }
        Err(GitError::Remote(RemoteError {
            args: format!("push {remote} {refspec}"),
            output,
        }))
    }
}
