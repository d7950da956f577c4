//! A task's generation: a hash of its normalized spec.
//!
//! The hash covers what changes the work an agent is asked to do: description,
//! scope, gate, dependencies, invariants, retry limit, effective harness, model,
//! timeout, paths and `reset`. It is computed from parsed values, so reordering
//! keys, reformatting the file or changing comments leaves it unchanged; dependency
//! and invariant lists are compared as sets. Line endings in the description are
//! normalized to `\n`.

use sha2::{Digest, Sha256};

use super::model::Task;

/// Hex digits kept from the SHA-256 (64 bits: ample for telling edits apart).
const LEN: usize = 16;

pub fn of(task: &Task) -> String {
    let mut depends_on = task.depends_on.clone();
    depends_on.sort();
    let mut invariants = task.invariants.clone();
    invariants.sort();
    let normalized = serde_json::json!({
        "v": 1,
        "description": task.description.replace("\r\n", "\n"),
        "scope": task.scope.as_str(),
        "gate": task.gate.as_str(),
        "depends_on": depends_on,
        "invariants": invariants,
        "retry_max": task.retry_max,
        "harness": task.harness,
        "model": task.model,
        "timeout_ms": task.timeout.map(|t| t.as_millis() as u64),
        "paths": task.paths,
        "reset": task.reset,
    });
    // serde_json's object keys are sorted (no preserve_order feature), so the
    // serialization is canonical.
    let digest = Sha256::digest(normalized.to_string().as_bytes());
    let mut hex = String::with_capacity(LEN);
    for byte in digest.iter().take(LEN / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}
