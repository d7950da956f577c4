//! Hostile agents: one small `command` agent per attack on converge's promise
//! that agents are untrusted, run under `[sandbox] enabled = true` and
//! `required = true`. Each test asserts the attack fails: policy on the base
//! branch unchanged, nothing outside `paths` or protected merged, no fake or
//! lost merge, sibling work merged, history intact, no secret or hook written
//! by gate code, no surviving process.
//!
//! The modules split the attacks by what they aim at: the repository the
//! agent works in (`repo`), the merge record (`merged`), the gate's
//! invariants (`gate`) and the agent's processes (`processes`).

mod gate;
mod merged;
mod processes;
mod repo;

use crate::support::Sandbox;

/// The configuration every hostile test starts from: a `sim` default, the
/// sandbox on and required, and a blocking invariant that always passes.
pub const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
backoff = { base = "1s", factor = 2, max = "2s" }

[invariants.ok]
kind = "custom"
command = "true"

[sandbox]
enabled = true
required = true
"#;

/// `[harness.<name>]`: a `command` agent running `script` with `sh -c`.
pub fn sh_harness(name: &str, script: &str) -> String {
    format!(
        "\n[harness.{name}]\nkind = \"command\"\ncommand = \"sh\"\nargs = [\"-c\", '''{script}''']\n"
    )
}

/// A task table of plan `p` on harness `harness` (gate `auto`, invariant `ok`),
/// with extra keys.
pub fn task(name: &str, harness: &str, extra: &str) -> String {
    format!(
        "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Do {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"ok\"]\nharness = \"{harness}\"\n{extra}\n"
    )
}

/// A repository on `main` with `planning/` holding `config` (appended to
/// [`CONFIG`]) and plan `p` made of `tasks`, committed.
pub fn setup(config: &str, tasks: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", format!("{CONFIG}{config}"));
    sb.write(
        "planning/plans/p.toml",
        format!("[plan]\nname = \"P\"\nstate = \"active\"\n{tasks}"),
    );
    sb.commit_all("plan");
    sb
}

/// Whether Landlock is enforced here; when it is not, `required` holds every
/// dispatch back, which is checked, and the caller returns.
pub fn landlock(sb: &Sandbox) -> bool {
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    if explain.stdout.contains("sandbox-unavailable") {
        assert!(
            explain
                .stdout
                .contains("the sandbox cannot be enforced here"),
            "{}",
            explain.transcript()
        );
        eprintln!("Landlock is not available here; only the refusal was tested");
        return false;
    }
    true
}

/// Reconciles until nothing is left to do (or 200 ticks).
pub fn settle(sb: &Sandbox) -> crate::support::Run {
    let run = sb.converge(&["reconcile", "--wait", "--max-ticks", "200"]);
    run.success();
    run
}

/// One tick.
pub fn tick(sb: &Sandbox) -> crate::support::Run {
    sb.converge(&["reconcile", "--once"])
}

/// The phase status on `main` records for task `t` of plan `p`.
pub fn phase(sb: &Sandbox, t: &str) -> String {
    let text = sb.git(&["show", "main:planning/status/p.toml"]);
    let status: toml::Table = text.parse().expect("status toml");
    status["tasks"][t]["phase"]
        .as_str()
        .expect("phase")
        .to_owned()
}
