//! The run directory: the on-disk protocol between the reconciler, the run
//! supervisor, the agent and `converge doctor`, under
//! `<git-common-dir>/converge/runs/`. Today this holds the processes of a run
//! (liveness by pid and start time, process groups, killing); the paths and
//! records (lease, exit record, events, brief) still live in `observe::runs`
//! and `act::run`, and will move here.

pub(crate) mod procs;
