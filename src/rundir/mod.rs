//! The run directory: the on-disk protocol between the reconciler, the run
//! supervisor, the agent and `converge doctor`, under
//! `<git-common-dir>/converge/`.
//!
//! - [`layout`]: every path under `<git-common-dir>/converge/` and
//!   `<checkout>/.converge/`, and the files of a run directory; the only place
//!   one is spelled.
//! - [`records`]: the lease, exit record, events, brief and fork marker: their
//!   formats and their atomic reading and writing.
//! - [`procs`]: a run's processes (liveness by pid and start time, process
//!   groups, killing).
//! - [`atomic`]: writing a file so that readers never see it half-written.
//!
//! Every fallible function here returns [`RunError`].

use std::path::PathBuf;

pub mod atomic;
pub mod layout;
pub mod procs;
pub mod records;

pub use layout::Layout;
pub use records::{Brief, Event, ExitRecord, Lease};

/// A run record that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `what`: `run record`, `brief`.
    #[error("{} is not a valid {what}: {message}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record the event in {}", path.display())]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
