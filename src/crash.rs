//! Crash injection for tests of "no lost or duplicated work" (build with the
//! `crash-points` feature). At a named point, the process aborts when
//! `CONVERGE_CRASH_AT` lists that name (comma-separated). Without the feature,
//! [`point`] compiles to nothing.
//!
//! Points: `after-act` (actions done, status not recorded), `after-branch`
//! (task branch created, no worktree yet), `mid-merge` (merge commit written,
//! base not moved), `after-merge` (base moved, status not recorded),
//! `after-spawn` (agent started, its pid not in the lease yet), `mid-record`
//! (status commit written, status branch not moved), `mid-checkout` (a
//! checked-out branch moved, its files and index not updated yet). The
//! autonomy loop's ([`AUTONOMY_POINTS`]): `autonomy-after-dispatch` (a
//! planner started, the loop's record not written), `autonomy-after-file`
//! (what a planner proposed committed on the base, the attempt neither
//! marked read back nor recorded).

/// The environment variable that arms crash points.
pub const ENV: &str = "CONVERGE_CRASH_AT";

/// Every crash point, for tests that pick one.
pub const POINTS: &[&str] = &[
    "after-act",
    "after-branch",
    "mid-merge",
    "after-merge",
    "after-spawn",
    "mid-record",
    "mid-checkout",
];

/// The autonomy loop's crash points (not in [`POINTS`], which the plan
/// tests draw from).
pub const AUTONOMY_POINTS: &[&str] = &["autonomy-after-dispatch", "autonomy-after-file"];

/// Aborts here if this point is armed (only with the `crash-points` feature).
#[inline]
pub fn point(name: &'static str) {
    #[cfg(feature = "crash-points")]
    {
        if std::env::var(ENV).is_ok_and(|armed| armed.split(',').any(|p| p.trim() == name)) {
            eprintln!("converge: crash point `{name}`: aborting");
            std::process::abort();
        }
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}
