//! Harnesses turn (task, attempt, prompt, worktree) into a process. This module
//! renders the prompt, builds the agent's environment, and launches `command`
//! harnesses; the simulated and real agent CLIs build on the same `Launch`.

use std::path::Path;

pub mod context;
pub mod env;
pub mod outcome;
pub mod prices;
pub mod sim;
pub mod sim_planner;
pub mod stream;

use crate::spec::{Config, Harness, HarnessKind, Invariant, Plan, Task};
use crate::status::Failure;

/// The program an attempt runs, before the supervisor adds its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    #[error("harness `{name}` has no `command`")]
    NoCommand { name: String },
}

/// What a harness needs to build an attempt's command line.
#[derive(Debug, Clone)]
pub struct LaunchInput<'a> {
    pub prompt_file: &'a Path,
    pub prompt: &'a str,
    pub worktree: &'a Path,
    /// `plan/task`.
    pub task: &'a str,
    /// The converge executable.
    pub converge: &'a Path,
    /// The task's `model`, else the harness's model for the task's scope.
    pub model: Option<&'a str>,
    /// The task's invariants: the agent may run them.
    pub invariants: Vec<&'a Invariant>,
    /// converge's Landlock sandbox confines the agent (`[sandbox] enabled`).
    pub confined: bool,
}

/// The environment variables a CLI harness needs from converge's environment,
/// on top of `[sandbox].env_allow` (only those that are set are passed).
pub fn harness_env(kind: HarnessKind) -> &'static [&'static str] {
    match kind {
        HarnessKind::ClaudeCode => &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_OAUTH_TOKEN",
        ],
        HarnessKind::Codex => &["OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL"],
        // Its providers' keys, and where the user's configuration lives.
        HarnessKind::Opencode => &[
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "OPENROUTER_API_KEY",
            "GEMINI_API_KEY",
            "XDG_CONFIG_HOME",
            "OPENCODE_CONFIG",
        ],
        _ => &[],
    }
}

/// Linux refuses a single argument over 128 KiB (`MAX_ARG_STRLEN`); a prompt
/// that long is passed as a pointer to its file instead.
const ARGV_PROMPT_MAX: usize = 96 * 1024;

/// The prompt as the CLI's argument: itself, or when too long for one
/// argument, a request to read it from `prompt_file`.
fn argv_prompt(prompt: &str, prompt_file: &Path) -> String {
    if prompt.len() <= ARGV_PROMPT_MAX {
        prompt.to_owned()
    } else {
        format!(
            "Your task is too long to pass here. Read all of {} first; it is your task.",
            prompt_file.display()
        )
    }
}

/// The shell commands an agent CLI may run: the converge agent commands
/// (`converge progress` with any message, written as `progress_any`
/// in the CLI's own pattern syntax) and the task's invariants as they are
/// written, shell-quoted.
fn allowed_commands(progress_any: &str, invariants: &[&Invariant]) -> Vec<String> {
    let mut commands: Vec<String> = [
        "converge task",
        "converge check",
        progress_any,
        "converge done",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    for invariant in invariants {
        let line = std::iter::once(invariant.command.as_str())
            .chain(invariant.args.iter().map(String::as_str))
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ");
        commands.push(line);
    }
    commands
}

/// OpenCode's permissions for an attempt (`OPENCODE_CONFIG_CONTENT`, merged
/// over the user's configuration): edits allowed (in its working directory,
/// the worktree; other directories denied), shell commands denied but the
/// converge agent commands and the task's invariants, no web fetches; no
/// autoupdate and no sharing.
pub fn opencode_permissions(invariants: &[&Invariant]) -> String {
    let mut bash = serde_json::Map::new();
    bash.insert("*".into(), "deny".into());
    for command in allowed_commands("converge progress *", invariants) {
        bash.insert(command, "allow".into());
    }
    serde_json::json!({
        "permission": {
            "edit": "allow",
            "bash": bash,
            "webfetch": "deny",
            "external_directory": "deny",
        },
        "autoupdate": false,
        "share": "disabled",
    })
    .to_string()
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `word` as a POSIX shell would need it typed: as it is when it holds only
/// safe characters, else in single quotes.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The tools Claude Code may use without asking besides editing files in its
/// working directory (the worktree), which `--permission-mode acceptEdits`
/// grants and nothing outside it: reading and searching, the converge agent
/// commands, and the task's invariants as they are written. Nothing else runs
/// (a headless run cannot ask; a denied call is reported).
pub fn claude_allowed_tools(invariants: &[&Invariant]) -> Vec<String> {
    let mut tools: Vec<String> = ["Read", "Glob", "Grep", "LS", "TodoWrite"]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    for command in allowed_commands("converge progress:*", invariants) {
        tools.push(format!("Bash({command})"));
    }
    tools
}

/// What every agent CLI's command line ends with: `--model M` when a model
/// is named, then the harness's own `args`.
fn model_and_args(model: Option<&str>, harness: &Harness) -> Vec<String> {
    let model = model.map(|m| ["--model".to_owned(), m.to_owned()]);
    model
        .into_iter()
        .flatten()
        .chain(harness.args.iter().cloned())
        .collect()
}

/// The argv of an attempt: for `command` harnesses, `{prompt_file}`,
/// `{worktree}` and `{task}` replaced in their arguments (no shell is
/// involved); for the agent CLIs, their headless JSON mode with the prompt,
/// the model, the permissions converge grants, then the harness's `args`
/// (docs/agent-protocol.md, "Agent CLIs").
/// The program an agent CLI harness runs: its `command`, else the CLI's own
/// name. `None` for the kinds that are not agent CLIs (`command`, `sim`).
pub fn cli_program(harness: &Harness) -> Option<String> {
    let default = match harness.kind {
        HarnessKind::ClaudeCode => "claude",
        HarnessKind::Codex => "codex",
        HarnessKind::Opencode => "opencode",
        HarnessKind::Command | HarnessKind::Sim => return None,
    };
    Some(harness.command.clone().unwrap_or_else(|| default.into()))
}

pub fn launch(harness: &Harness, input: &LaunchInput<'_>) -> Result<Launch, HarnessError> {
    let LaunchInput {
        prompt_file,
        worktree,
        task,
        converge,
        ..
    } = *input;
    match harness.kind {
        // The simulated agent is converge itself, reading its script from the
        // run's brief.
        HarnessKind::Sim => Ok(Launch {
            program: converge.to_string_lossy().into_owned(),
            args: vec!["__sim".into()],
        }),
        HarnessKind::Command => {
            let program = harness
                .command
                .clone()
                .ok_or_else(|| HarnessError::NoCommand {
                    name: harness.name.clone(),
                })?;
            let args = harness
                .args
                .iter()
                .map(|a| {
                    a.replace("{prompt_file}", &prompt_file.to_string_lossy())
                        .replace("{worktree}", &worktree.to_string_lossy())
                        .replace("{task}", task)
                })
                .collect();
            Ok(Launch { program, args })
        }
        HarnessKind::ClaudeCode => {
            let program = cli_program(harness).unwrap_or_else(|| "claude".into());
            let mut args: Vec<String> = [
                "-p",
                &argv_prompt(input.prompt, prompt_file),
                "--output-format",
                "stream-json",
                "--verbose",
                "--no-session-persistence",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
            args.push(claude_allowed_tools(&input.invariants).join(","));
            args.extend(model_and_args(input.model, harness));
            Ok(Launch { program, args })
        }
        HarnessKind::Codex => {
            let program = cli_program(harness).unwrap_or_else(|| "codex".into());
            let mut args: Vec<String> = vec![
                "exec".into(),
                "--json".into(),
                "--skip-git-repo-check".into(),
                "-C".into(),
                worktree.to_string_lossy().into_owned(),
                "-c".into(),
                "approval_policy=\"never\"".into(),
                // A login shell's profile resets PATH, which would lose the
                // converge binary converge puts first on it.
                "-c".into(),
                "allow_login_shell=false".into(),
                "--sandbox".into(),
            ];
            if input.confined {
                // Codex's sandbox (bubblewrap) cannot set up its namespaces
                // inside converge's Landlock domain, which already confines
                // every file write; Codex's own is then off.
                args.push("danger-full-access".into());
            } else {
                // Codex's own sandbox lets commands write the worktree and
                // temp dirs; `converge done` also writes the run directory.
                let run = prompt_file.parent().unwrap_or(prompt_file);
                args.extend([
                    "workspace-write".into(),
                    "-c".into(),
                    format!(
                        "sandbox_workspace_write.writable_roots=[{}]",
                        toml_string(&run.to_string_lossy())
                    ),
                ]);
            }
            args.extend(model_and_args(input.model, harness));
            args.push(argv_prompt(input.prompt, prompt_file));
            Ok(Launch { program, args })
        }
        HarnessKind::Opencode => {
            let program = cli_program(harness).unwrap_or_else(|| "opencode".into());
            let mut args: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
            args.extend(model_and_args(input.model, harness));
            args.push(argv_prompt(input.prompt, prompt_file));
            Ok(Launch { program, args })
        }
    }
}

/// Environment variables that never reach an agent, whatever `env_allow` says.
pub const NEVER_PASSED: &[&str] = &[crate::agent::token::SECRET_ENV];

/// The agent's environment: the allowed variables that are set in converge's
/// own environment, then converge's per-attempt variables.
pub fn agent_env(
    config: &Config,
    from: &dyn Fn(&str) -> Option<String>,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config
        .sandbox
        .env_allow
        .iter()
        .filter(|name| !NEVER_PASSED.contains(&name.as_str()))
        .filter_map(|name| from(name).map(|value| (name.clone(), value)))
        .collect();
    for (name, value) in extra {
        env.retain(|(n, _)| n != name);
        env.push(((*name).to_owned(), value.clone()));
    }
    env
}

/// The prompt of one attempt (design §5): the goal, the task, how its work is
/// checked, the previous attempt's failure, the agent protocol, and the
/// [`context::Context`]: what exists today and what its dependencies merged.
pub fn prompt(
    goal: &str,
    context: &context::Context<'_>,
    plan: &Plan,
    task: &Task,
    config: &Config,
    attempt: u32,
    previous: Option<&Failure>,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Task `{}` of plan `{}` ({})\n\n",
        task.name, plan.id, plan.name
    ));
    out.push_str(&format!(
        "Attempt {attempt} of at most {} (the first and {} retries). Scope: {}.\n\n",
        (task.retry_max + 1).max(attempt),
        task.retry_max,
        task.scope.as_str()
    ));
    out.push_str("## What to do\n\n");
    out.push_str(task.description.trim());
    out.push_str("\n\n");
    if !task.paths.is_empty() {
        out.push_str("Change only files matching: ");
        out.push_str(
            &task
                .paths
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str(". Changes elsewhere fail the check.\n\n");
    }
    out.push_str("Never change `planning/` or `.github/`: such changes fail the check.\n\n");
    out.push_str(&context::dependencies_section(context.dependencies));
    if !task.invariants.is_empty() {
        out.push_str("## How your work is checked\n\nWhen you are done, converge runs these in your worktree; all must pass:\n\n");
        for name in &task.invariants {
            if let Some(inv) = config.invariants.get(name) {
                let command = std::iter::once(inv.command.as_str())
                    .chain(inv.args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push_str(&format!(
                    "- `{name}` ({}): `{command}`\n",
                    inv.kind.as_str()
                ));
            }
        }
        out.push_str("\nRun `converge check` to run them yourself before you finish.\n\n");
    }
    if let Some(failure) = previous {
        out.push_str(&format!(
            "## The previous attempt ({}) failed\n\n{} ({})\n",
            failure.attempt, failure.message, failure.reason
        ));
        if let Some(tail) = failure
            .output_tail
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            out.push_str("\n```\n");
            out.push_str(tail.trim_end());
            out.push_str("\n```\n");
        }
        out.push_str("\nFix that first.\n\n");
    }
    out.push_str("## Protocol\n\n");
    out.push_str(
        "- `converge task` prints this task; `converge progress \"MESSAGE\"` reports progress.\n",
    );
    out.push_str("- Commit your work on the current branch, or leave it in the worktree: converge commits leftovers.\n");
    out.push_str(
        "- Finish with `converge done`. Exiting without it counts as an unfinished attempt.\n\n",
    );
    out.push_str("## Project goal\n\n");
    out.push_str(goal.trim());
    out.push_str("\n\n");
    out.push_str(&context::capabilities_section(context.capabilities));
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::PlanningFiles;

    fn spec() -> crate::spec::Spec {
        let plan = "[plan]\nname = \"Auth\"\n[[tasks]]\nname = \"login\"\ndescription = \"Add a login form.\"\nscope = \"medium\"\ngate = \"auto\"\ninvariants = [\"test\"]\npaths = [\"src/**\"]\n";
        let config = "[invariants.test]\nkind = \"test_suite\"\ncommand = \"cargo\"\nargs = [\"test\"]\n[harness.mine]\nkind = \"command\"\ncommand = \"./agent.sh\"\nargs = [\"--prompt\", \"{prompt_file}\", \"--in={worktree}\", \"{task}\"]\n[sandbox]\nenv_allow = [\"PATH\", \"HOME\", \"CONVERGE_SECRET\"]\n";
        let files = PlanningFiles::from_texts([
            ("planning/goal.md", "Ship a secure app."),
            ("planning/converge.toml", config),
            ("planning/plans/auth.toml", plan),
        ]);
        crate::spec::compile(&files).spec.expect("valid")
    }

    #[test]
    fn command_harness_placeholders_are_replaced_without_a_shell() {
        let spec = spec();
        let launch = launch(
            &spec.config.harnesses["mine"],
            &input(
                Path::new("/runs/1/prompt.md"),
                Path::new("/wt/login"),
                "auth/login",
            ),
        )
        .expect("launches");
        assert_eq!(launch.program, "./agent.sh");
        assert_eq!(
            launch.args,
            [
                "--prompt",
                "/runs/1/prompt.md",
                "--in=/wt/login",
                "auth/login"
            ]
        );
    }

    fn input<'a>(prompt_file: &'a Path, worktree: &'a Path, task: &'a str) -> LaunchInput<'a> {
        LaunchInput {
            prompt_file,
            prompt: "Do it.",
            worktree,
            task,
            converge: Path::new("/bin/converge"),
            model: None,
            invariants: Vec::new(),
            confined: false,
        }
    }

    #[test]
    fn codex_runs_headless_in_its_sandbox_with_the_run_directory_writable() {
        let mut with = input(
            Path::new("/runs/a \"b\"/prompt.md"),
            Path::new("/wt/login"),
            "auth/login",
        );
        with.model = Some("gpt-5-codex");
        let mut codex = Harness::builtin("codex", HarnessKind::Codex);
        codex.args = vec!["--profile".into(), "ci".into()];
        let plain = launch(&codex, &with).expect("launches");
        assert_eq!(plain.program, "codex");
        assert_eq!(
            plain.args,
            [
                "exec",
                "--json",
                "--skip-git-repo-check",
                "-C",
                "/wt/login",
                "-c",
                "approval_policy=\"never\"",
                "-c",
                "allow_login_shell=false",
                "--sandbox",
                "workspace-write",
                "-c",
                r#"sandbox_workspace_write.writable_roots=["/runs/a \"b\""]"#,
                "--model",
                "gpt-5-codex",
                "--profile",
                "ci",
                "Do it.",
            ]
        );
        // Under converge's Landlock sandbox, Codex's own is off.
        with.confined = true;
        let confined = launch(&codex, &with).expect("launches");
        assert_eq!(confined.args[9..11], ["--sandbox", "danger-full-access"]);
        assert!(!confined.args.iter().any(|a| a.contains("writable_roots")));
    }

    #[test]
    fn opencode_runs_headless_with_rules_for_the_commands_it_may_run() {
        let spec = spec();
        let test = &spec.config.invariants["test"];
        let mut with = input(Path::new("/runs/1/prompt.md"), Path::new("w"), "a/b");
        with.model = Some("fake/fake-model");
        let mut opencode = Harness::builtin("opencode", HarnessKind::Opencode);
        opencode.args = vec!["--agent".into(), "build".into()];
        let run = launch(&opencode, &with).expect("launches");
        assert_eq!(run.program, "opencode");
        assert_eq!(
            run.args,
            [
                "run",
                "--format",
                "json",
                "--model",
                "fake/fake-model",
                "--agent",
                "build",
                "Do it."
            ]
        );
        let rules: serde_json::Value =
            serde_json::from_str(&opencode_permissions(&[test])).expect("json");
        assert_eq!(
            rules["permission"]["bash"],
            serde_json::json!({
                "*": "deny",
                "converge task": "allow",
                "converge check": "allow",
                "converge progress *": "allow",
                "converge done": "allow",
                "cargo test": "allow",
            })
        );
        assert_eq!(rules["permission"]["edit"], "allow");
        assert_eq!(rules["permission"]["external_directory"], "deny");
        assert_eq!(rules["permission"]["webfetch"], "deny");
    }

    #[test]
    fn claude_code_runs_headless_with_only_the_tools_it_needs() {
        let spec = spec();
        let test = &spec.config.invariants["test"];
        let mut with = input(Path::new("p"), Path::new("w"), "auth/login");
        with.model = Some("claude-sonnet-4-5");
        with.invariants = vec![test];
        let launch = launch(
            &Harness::builtin("claude-code", HarnessKind::ClaudeCode),
            &with,
        )
        .expect("launches");
        assert_eq!(launch.program, "claude");
        assert_eq!(
            launch.args,
            [
                "-p",
                "Do it.",
                "--output-format",
                "stream-json",
                "--verbose",
                "--no-session-persistence",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "Read,Glob,Grep,LS,TodoWrite,Bash(converge task),Bash(converge check),Bash(converge progress:*),Bash(converge done),Bash(cargo test)",
                "--model",
                "claude-sonnet-4-5",
            ]
        );
    }

    #[test]
    fn claude_code_gets_invariants_quoted_and_a_long_prompt_through_its_file() {
        let spec = spec();
        let odd = Invariant {
            args: vec!["-c".into(), "test -f 'a b.txt'".into()],
            command: "sh".into(),
            ..spec.config.invariants["test"].clone()
        };
        let tools = claude_allowed_tools(&[&odd]);
        assert_eq!(
            tools.last().map(String::as_str),
            Some(r#"Bash(sh -c 'test -f '\''a b.txt'\''')"#)
        );
        let long = "x".repeat(ARGV_PROMPT_MAX + 1);
        let mut with = input(Path::new("/runs/1/prompt.md"), Path::new("w"), "a/b");
        with.prompt = &long;
        let launch = launch(
            &Harness::builtin("claude-code", HarnessKind::ClaudeCode),
            &with,
        )
        .expect("launches");
        assert!(
            launch.args[1].contains("/runs/1/prompt.md"),
            "{}",
            launch.args[1]
        );
        assert!(launch.args[1].len() < 200);
    }

    #[test]
    fn the_secret_never_reaches_an_agent_even_if_allowed() {
        let spec = spec();
        let from = |name: &str| match name {
            "PATH" => Some("/usr/bin".to_owned()),
            "CONVERGE_SECRET" => Some("hunter2".to_owned()),
            _ => None,
        };
        let env = agent_env(
            &spec.config,
            &from,
            &[("CONVERGE_AGENT_TOKEN", "cvg1.x".into())],
        );
        assert_eq!(
            env,
            [
                ("PATH".to_owned(), "/usr/bin".to_owned()),
                ("CONVERGE_AGENT_TOKEN".to_owned(), "cvg1.x".to_owned())
            ]
        );
    }

    #[test]
    fn the_prompt_carries_goal_task_checks_and_the_previous_failure() {
        let spec = spec();
        let plan = &spec.plans["auth"];
        let failure = Failure {
            attempt: 1,
            reason: crate::model::FailureCode::InvariantFailed,
            message: "`test` exited with 101".into(),
            output_tail: Some("assertion failed: login works\n".into()),
        };
        let text = prompt(
            &spec.goal,
            &context::Context::default(),
            plan,
            &plan.tasks[0],
            &spec.config,
            2,
            Some(&failure),
        );
        insta::assert_snapshot!(text);
    }
}
