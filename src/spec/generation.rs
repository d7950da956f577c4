//! A task's generation: a hash of its normalized spec.
//!
//! The hash covers what changes the work an agent is asked to do: description,
//! scope, gate, dependencies, invariants, retry limit, effective harness, model,
//! timeout, paths and `reset`. It is computed from parsed values, so reordering
//! keys, reformatting the file or changing comments leaves it unchanged; dependency
//! and invariant lists are compared as sets. Line endings in the description are
//! normalized to `\n`.
//!
//! Encoding: every field is fed to SHA-256 as its name and value, each prefixed
//! with its length, so no two different specs encode to the same bytes. Bump
//! `VERSION` if the encoding changes (every running task then restarts once).

use sha2::{Digest, Sha256};

use super::model::Task;

/// Hex digits kept from the SHA-256 (64 bits: ample for telling edits apart).
const LEN: usize = 16;
const VERSION: &[u8] = b"1";

/// Collects the encoding in one buffer, hashed once at the end (many tiny
/// `update` calls cost more than the hashing itself).
struct Encoder(Vec<u8>);

impl Encoder {
    fn bytes(&mut self, value: &[u8]) {
        self.0
            .extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.0.extend_from_slice(value);
    }

    fn field(&mut self, name: &str, value: &[u8]) {
        self.bytes(name.as_bytes());
        self.bytes(value);
    }

    fn list<'a>(&mut self, name: &str, items: impl Iterator<Item = &'a str>) {
        self.bytes(name.as_bytes());
        let mut items: Vec<&str> = items.collect();
        items.sort_unstable();
        self.0
            .extend_from_slice(&(items.len() as u64).to_le_bytes());
        for item in items {
            self.bytes(item.as_bytes());
        }
    }

    fn option(&mut self, name: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.field(name, v),
            None => self.bytes(name.as_bytes()),
        }
    }
}

pub fn of(task: &Task) -> String {
    let mut e = Encoder(Vec::with_capacity(256 + task.description.len()));
    e.field("v", VERSION);
    if task.description.contains('\r') {
        e.field(
            "description",
            task.description.replace("\r\n", "\n").as_bytes(),
        );
    } else {
        e.field("description", task.description.as_bytes());
    }
    e.field("scope", task.scope.as_str().as_bytes());
    e.field("gate", task.gate.as_str().as_bytes());
    e.list("depends_on", task.depends_on.iter().map(String::as_str));
    e.list("invariants", task.invariants.iter().map(String::as_str));
    e.field("retry_max", &task.retry_max.to_le_bytes());
    e.field("harness", task.harness.as_bytes());
    e.option("model", task.model.as_deref().map(str::as_bytes));
    let timeout = task.timeout.map(|t| (t.as_millis() as u64).to_le_bytes());
    e.option("timeout_ms", timeout.as_ref().map(|t| t.as_slice()));
    // Paths are a set too: their order does not change what may be touched.
    e.list("paths", task.paths.iter().map(String::as_str));
    e.field("reset", &task.reset.to_le_bytes());
    if let Some(sim) = &task.sim {
        // The simulated agent's script is part of the work it is asked to do.
        let encoded = serde_json::to_vec(sim).unwrap_or_default();
        e.field("sim", &encoded);
    }
    let digest = Sha256::digest(&e.0);
    let mut hex = String::with_capacity(LEN);
    for byte in digest.iter().take(LEN / 2) {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{Gate, Scope};

    fn task() -> Task {
        Task {
            name: "a".into(),
            description: "Do it.\n".into(),
            scope: Scope::Narrow,
            gate: Gate::Auto,
            depends_on: vec!["x".into(), "y".into()],
            invariants: vec!["build".into()],
            retry_max: 3,
            harness: "sim".into(),
            model: None,
            timeout: None,
            paths: vec![],
            reset: 0,
            sim: None,
            generation: String::new(),
            line: 1,
        }
    }

    #[test]
    fn every_field_changes_the_generation() {
        let base = of(&task());
        assert_eq!(base.len(), LEN);
        let edits: [fn(&mut Task); 11] = [
            |t| t.description.push('!'),
            |t| t.scope = Scope::Broad,
            |t| t.gate = Gate::HumanReview,
            |t| t.depends_on.push("z".into()),
            |t| t.invariants.clear(),
            |t| t.retry_max = 4,
            |t| t.harness = "codex".into(),
            |t| t.model = Some("m".into()),
            |t| t.timeout = Some(std::time::Duration::from_secs(60)),
            |t| t.paths.push("src/**".into()),
            |t| t.reset = 1,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut t = task();
            edit(&mut t);
            assert_ne!(of(&t), base, "edit {i} did not change the generation");
        }
    }

    #[test]
    fn order_of_sets_and_line_endings_do_not_matter() {
        let base = of(&task());
        let mut t = task();
        t.depends_on.reverse();
        t.description = "Do it.\r\n".into();
        assert_eq!(of(&t), base);
        // The name and line are identity and position, not spec.
        t.line = 99;
        assert_eq!(of(&t), base);
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = task();
        a.depends_on = vec!["ab".into()];
        let mut b = task();
        b.depends_on = vec!["a".into(), "b".into()];
        assert_ne!(of(&a), of(&b));
    }
}
