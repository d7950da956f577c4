//! `converge __invariant POLICY -- COMMAND...`: how the gate runs one
//! invariant confined (see `check::confine`). Restricts this process with the
//! Landlock policy in the file `POLICY`, then executes the invariant in its
//! place, so that the invariant and everything it starts inherit the
//! restriction. `unsafe_code = "forbid"` rules out a `pre_exec` hook in the
//! gate itself; this re-execution is the way to restrict only the child.

use std::path::Path;

use super::{CliError, CliResult};
use crate::act::sandbox::{Enforced, Policy, restrict};

pub fn invariant(policy_path: &Path, command: &[String]) -> CliResult {
    use std::os::unix::process::CommandExt;
    let bytes = std::fs::read(policy_path).map_err(|e| {
        CliError::failure(format!("cannot read {}", policy_path.display())).source(e)
    })?;
    let policy: Policy = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::failure(format!(
            "{} is not a valid sandbox policy: {e}",
            policy_path.display()
        ))
    })?;
    let [program, args @ ..] = command else {
        return Err(CliError::bad_input("no invariant command given after `--`"));
    };
    match restrict(&policy) {
        Ok(Enforced::Fully) => {}
        Ok(Enforced::Partially) => eprintln!(
            "converge: warning: this kernel's Landlock is older than converge asks for; some access is not restricted"
        ),
        Ok(Enforced::Not) => eprintln!(
            "converge: WARNING: the sandbox is not enforced here; the invariant runs unconfined"
        ),
        Err(e) => {
            return Err(CliError::failure("the invariant was not run").source(e).hint(
                "`converge doctor` checks Landlock; `[sandbox] required = false` runs invariants unconfined where it is missing",
            ));
        }
    }
    // Only returns when the invariant could not be executed.
    let error = std::process::Command::new(program).args(args).exec();
    Err(CliError::failure(format!("cannot start `{program}`")).source(error))
}
