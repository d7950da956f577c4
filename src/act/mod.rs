//! Side effects: running commands with deadlines (invariants), detached agent
//! runs under a supervisor; the reconcile actions build on these.

pub mod apply;
pub mod check;
pub mod dispatch;
pub mod exec;
pub mod files;
pub mod run;
pub mod sandbox;

/// An error and its causes on one line: `cannot start `x`: No such file`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
