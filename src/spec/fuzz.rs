//! Fuzzing the parsers: arbitrary bytes and near-valid mutations of real
//! files, as plan, configuration, queue item and approval. Nothing may panic,
//! and every rejection must carry a located diagnostic.
//!
//! `cargo test --lib spec::fuzz` runs a short pass (256 cases per target);
//! `PROPTEST_CASES=550000 cargo test --release --lib spec::fuzz` runs about five
//! minutes on a 2-core machine (550,000 cases per target; README, Development).

use proptest::prelude::*;

use super::load::{Content, PlanningFiles};

const CONFIG: &str = include_str!("../../planning-template/converge.toml");
const PLAN: &str = include_str!("../../examples/mixed-dag/planning/plans/cli-overhaul.toml");
const QUEUE: &str = "---\nscope: narrow\ngate: auto\ninvariants: [test]\ndepends_on: [cli-overhaul/t1]\npaths: [\"src/**\"]\n---\nFix the typo.\n";
const APPROVAL: &str = "decision = \"approve\"\ncommit = \"0123456789012345678901234567890123456789\"\nreason = \"ok\"\n";

/// Fragments that are meaningful to the parsers, for mutations.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[tasks]]",
    "[plan]",
    "[tasks.sim]",
    "=",
    "\"",
    "'''",
    "\"\"\"",
    "\n",
    "#",
    ",",
    "{",
    "}",
    "depends_on = [\"t1\"]",
    "name = \"t1\"",
    "---",
    "&a",
    "*a",
    "<<: *a",
    "!!str",
    "- ",
    ": ",
    "\u{0}",
    "\u{feff}",
    "é",
    "\r\n",
    "9999999999999999999999",
    "-1",
    "1e400",
    "inf",
    "files = [{ path = \"../x\", content = \"\" }]",
    "timeout = \"0s\"",
    "scope = \"narrow\"",
];

fn mutate(text: &str, edits: &[(u8, usize, usize)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for &(kind, a, b) in edits {
        let len = bytes.len().max(1);
        let at = a % len;
        match kind % 4 {
            0 => {
                let end = (at + b % 64).min(bytes.len());
                bytes.drain(at.min(bytes.len())..end);
            }
            1 => {
                let token = TOKENS[b % TOKENS.len()].as_bytes();
                let at = at.min(bytes.len());
                bytes.splice(at..at, token.iter().copied());
            }
            2 => {
                // Duplicate a slice (repeated keys, tables, tasks).
                let end = (at + b % 200).min(bytes.len());
                let slice = bytes[at.min(bytes.len())..end].to_vec();
                bytes.splice(end..end, slice);
            }
            _ => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = u8::try_from(b % 256).unwrap_or(0);
                }
            }
        }
    }
    bytes
}

fn compile_with(path: &str, bytes: Vec<u8>) {
    let mut files = PlanningFiles::from_texts([
        ("planning/goal.md", "Fuzz."),
        ("planning/converge.toml", CONFIG),
        ("planning/plans/cli-overhaul.toml", PLAN),
    ]);
    files.files.insert(path.to_owned(), Content::Bytes(bytes));
    let loaded = super::compile(&files);
    // A rejection always says where.
    for d in &loaded.diagnostics {
        assert!(!d.file.is_empty(), "a diagnostic without a file: {d:?}");
        let _ = d.to_string();
    }
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, usize)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..8)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), which in 0usize..4) {
        let path = ["planning/plans/fuzz.toml", "planning/converge.toml", "planning/queue/fuzz.md", "planning/approvals/cli-overhaul/t1.toml"][which];
        compile_with(path, bytes);
    }

    #[test]
    fn near_valid_plans_never_panic(edits in edits()) {
        compile_with("planning/plans/cli-overhaul.toml", mutate(PLAN, &edits));
    }

    #[test]
    fn near_valid_configurations_never_panic(edits in edits()) {
        compile_with("planning/converge.toml", mutate(CONFIG, &edits));
    }

    #[test]
    fn near_valid_queue_items_never_panic(edits in edits()) {
        compile_with("planning/queue/fuzz.md", mutate(QUEUE, &edits));
        compile_with("planning/queue/done/fuzz.md", mutate(QUEUE, &edits));
    }

    #[test]
    fn near_valid_approvals_never_panic(edits in edits()) {
        compile_with("planning/approvals/cli-overhaul/t1.toml", mutate(APPROVAL, &edits));
    }
}
