use super::reconcile::check_worktree_root;
use super::schedule::validate_cron;
use super::*;
use crate::spec::diag::Code;
use crate::spec::diag::Severity;
use crate::spec::model::{Identity, ModelPrice, Scope};

fn compile_text(text: &str) -> (CompiledConfig, Vec<super::super::Diagnostic>) {
    let file = SourceFile {
        path: CONFIG_PATH.into(),
        text: text.into(),
    };
    let mut diags = Vec::new();
    let c = compile(&file, &["weekly.md".to_owned()], &mut diags);
    (c, diags)
}

#[test]
fn a_bad_invariant_name_is_one_error_and_hints_name_what_converge_accepts() {
    let text = "[invariants.\"Rust Build\"]\nkind = \"custom\"\ncommand = \"cargo\"\n\n[merge]\ninvariants = [\"Rust Build\"]\n";
    let (c, diags) = compile_text(text);
    assert!(!c.valid);
    let codes: Vec<String> = diags.iter().map(|d| d.code.to_string()).collect();
    assert_eq!(codes, ["invalid-name"], "{diags:?}");

    let hint = unknown_invariant_hint("Lint Check", &BTreeMap::new());
    assert!(
        hint.contains("name it `lint-check`") && !hint.contains("[invariants.Lint Check]"),
        "{hint}"
    );
    assert!(unknown_invariant_hint("lint", &BTreeMap::new()).contains("`[invariants.lint]`"));
}

#[test]
fn empty_file_gives_defaults() {
    let (c, diags) = compile_text("");
    assert!(c.valid && diags.is_empty());
    assert_eq!(c.config, default_config());
}

#[test]
fn status_branch_follows_base_branch() {
    let (c, _) = compile_text("[reconcile]\nbase_branch = \"trunk\"\n");
    assert_eq!(c.config.reconcile.status_branch, "trunk");
}

#[test]
fn reads_every_section() {
    let text = r#"
[reconcile]
max_agents = 2
backoff = { base = "10s", factor = 3, max = "1h" }
default_harness = "agent"
[invariants.test]
kind = "test_suite"
command = "cargo"
args = ["test"]
timeout = "5m"
[merge]
invariants = ["test"]
[harness.agent]
kind = "command"
command = "./agent.sh"
args = ["{prompt_file}"]
models = { narrow = "small" }
[forge]
kind = "local"
[sandbox]
enabled = true
env_allow = ["PATH"]
"#;
    let (c, diags) = compile_text(text);
    assert!(diags.is_empty(), "{diags:?}");
    let config = c.config;
    assert_eq!(config.reconcile.max_agents, 2);
    assert_eq!(config.reconcile.backoff.factor, 3.0);
    assert_eq!(config.invariants["test"].timeout.as_secs(), 300);
    assert_eq!(config.merge.invariants, ["test"]);
    assert_eq!(config.harnesses["agent"].models[&Scope::Narrow], "small");
    assert!(config.harnesses.contains_key("sim"));
    assert_eq!(config.forge, Forge::Local);
    assert!(config.sandbox.enabled);
}

#[test]
fn the_github_forge_reads_its_settings_with_defaults() {
    let text = r#"[reconcile]
remote = "origin"
status_branch = "converge/status"
[forge]
kind = "github"
repo = "acme/widgets"
"#;
    let (c, diags) = compile_text(text);
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    let g = c.config.forge.github().expect("github");
    assert_eq!(g.repo, "acme/widgets");
    assert_eq!(g.api_url, "https://api.github.com");
    assert_eq!(g.remote, "origin");
    assert_eq!(g.merge_method, crate::spec::model::MergeMethod::Merge);
    assert_eq!((g.max_open_prs, g.prs_per_hour), (10, 4));
    assert_eq!(g.labels, ["converge"]);
    assert_eq!(g.checks_timeout.as_secs(), 30 * 60);
    assert_eq!(g.dashboard.as_deref(), Some("converge dashboard"));

    let text = r#"[reconcile]
remote = "origin"
[forge]
kind = "github"
repo = "acme/widgets"
api_url = "http://127.0.0.1:8080/"
remote = "github"
merge_method = "squash"
max_open_prs = 3
prs_per_hour = 1
labels = ["bot", "agents"]
checks_timeout = "1h"
"#;
    let (c, diags) = compile_text(text);
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    let g = c.config.forge.github().expect("github");
    assert_eq!(g.api_url, "http://127.0.0.1:8080");
    assert_eq!(g.remote, "github");
    assert_eq!(g.merge_method, crate::spec::model::MergeMethod::Squash);
    assert_eq!((g.max_open_prs, g.prs_per_hour), (3, 1));
    assert_eq!(g.labels, ["bot", "agents"]);
    assert_eq!(g.checks_timeout.as_secs(), 3600);
}

#[test]
fn merge_invariants_with_the_github_forge_are_refused_not_ignored() {
    let text = "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"a/b\"\n[invariants.build]\nkind = \"test_suite\"\ncommand = \"true\"\n[merge]\ninvariants = [\"build\"]\n";
    let (c, diags) = compile_text(text);
    assert!(!c.valid, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d.code.as_str(), "not-supported", "{diags:?}");
    let l = d.location.as_ref().expect("located");
    assert_eq!((l.line, l.column), (10, 14), "{diags:?}");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("required status checks"))
    );
    // Without the forge they run as before.
    let local = text.replace("[forge]\nkind = \"github\"\nrepo = \"a/b\"\n", "");
    let (c, diags) = compile_text(&local);
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.merge.invariants, ["build"]);
}

#[test]
fn the_dashboard_issue_can_be_renamed_or_turned_off_and_a_bad_title_is_located() {
    let github = "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"a/b\"\n";
    let (c, diags) = compile_text(&format!("{github}dashboard_title = \"Agents\"\n"));
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    let g = c.config.forge.github().expect("github");
    assert_eq!(g.dashboard.as_deref(), Some("Agents"));
    let (c, diags) = compile_text(&format!("{github}dashboard = false\n"));
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.forge.github().expect("github").dashboard, None);
    // A title with the dashboard off is ignored, and says so.
    let (c, diags) = compile_text(&format!(
        "{github}dashboard = false\ndashboard_title = \"x\"\n"
    ));
    assert!(c.valid);
    assert_eq!(diags[0].code.as_str(), "unknown-key", "{diags:?}");
    // An empty title, or a value of the wrong type, names the place.
    for (extra, column) in [
        ("dashboard_title = \"  \"\n", 19),
        ("dashboard = \"yes\"\n", 13),
    ] {
        let (c, diags) = compile_text(&format!("{github}{extra}"));
        assert!(!c.valid, "{extra}");
        let l = diags[0].location.as_ref().expect("located");
        assert_eq!((l.line, l.column), (6, column), "{diags:?}");
        // The fix: a hint, or the type wanted in the message.
        assert!(
            diags[0].hint.is_some() || diags[0].message.contains("`true` or `false`"),
            "{diags:?}"
        );
    }
}

#[test]
fn the_github_forge_refuses_what_it_cannot_work_with_where_it_is() {
    let located = |text: &str| -> Vec<(String, usize, usize, String)> {
        let (c, diags) = compile_text(text);
        assert!(!c.valid, "{text}");
        diags
            .iter()
            .map(|d| {
                let l = d.location.as_ref().expect("located");
                (
                    d.code.as_str().to_owned(),
                    l.line,
                    l.column,
                    d.hint.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    // Without a remote to fetch the base from, GitHub's merges are never seen.
    let found = located("[forge]\nkind = \"github\"\nrepo = \"acme/widgets\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2),
        ("missing-field", 2, 1)
    );
    assert!(found[0].3.contains("remote = \"origin\""), "{found:?}");
    let found = located(
        "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"widgets\"\n",
    );
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2),
        ("invalid-value", 5, 8)
    );
    let found = located("[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\n");
    assert_eq!(found[0].0, "missing-field");
    let found = located(
        "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"a/b\"\nmerge_method = \"fast-forward\"\n",
    );
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2),
        ("invalid-value", 6, 16)
    );
    let found = located(
        "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"a/b\"\napi_url = \"api.github.com\"\n",
    );
    assert_eq!((found[0].0.as_str(), found[0].1), ("invalid-value", 6));
    // The local forge is accepted; keys only the GitHub forge reads warn.
    let (c, diags) = compile_text("[forge]\nkind = \"local\"\n");
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    let (c, diags) = compile_text("[forge]\nkind = \"local\"\nrepo = \"a/b\"\n");
    assert!(c.valid);
    assert_eq!(diags[0].code.as_str(), "unknown-key");
    // Any other forge is unknown.
    let (c, diags) = compile_text("[forge]\nkind = \"gitlab\"\n");
    assert!(!c.valid);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code.as_str(), "invalid-value");
    assert!(diags[0].message.contains("`gitlab`"), "{diags:?}");
}

#[test]
fn reports_every_problem() {
    let text = r#"
[reconcile]
max_agnts = 2
actions_per_tick = 0
interval = "soon"
[invariants.Build]
kind = "typecheck"
command = "cargo"
[invariants.test]
kind = "tests"
[merge]
invariants = ["tset"]
[harness.x]
kind = "command"
[[schedule]]
cron = "0 9 * *"
queue = "weekly.md"
"#;
    let (c, diags) = compile_text(text);
    assert!(!c.valid);
    let codes: Vec<_> = diags.iter().map(|d| d.code.as_str()).collect();
    for expected in [
        "unknown-key",
        "invalid-value",
        "invalid-duration",
        "invalid-name",
        "missing-field",
        "unknown-invariant",
        "invalid-cron",
    ] {
        assert!(
            codes.contains(&expected),
            "{expected} missing from {codes:?}"
        );
    }
}

#[test]
fn prices_are_read_and_bad_ones_are_located() {
    let (c, diags) = compile_text(
        "[prices]\n\"gpt-5-codex\" = { input = 1.25, output = 10 }\n\"fake/m\" = { input = 0, output = 0 }\n",
    );
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.prices["gpt-5-codex"], ModelPrice::new(1.25, 10.0));
    assert_eq!(c.config.prices["fake/m"], ModelPrice::new(0.0, 0.0));
    let (c, diags) = compile_text(
        "[prices]\n\"a\" = { input = -1, output = 2 }\n\"b\" = { input = 1 }\n\"c\" = 3\n\"d\" = { input = 1, output = 1, cached = 0 }\n",
    );
    assert!(!c.valid);
    let found: Vec<(&str, usize)> = diags
        .iter()
        .map(|d| (d.code.as_str(), d.location.as_ref().map_or(0, |l| l.line)))
        .collect();
    assert_eq!(
        found,
        [
            ("invalid-value", 2),
            ("missing-field", 3),
            ("wrong-type", 4),
            ("unknown-key", 5)
        ],
        "{diags:?}"
    );
    // Only the complete price is kept (the unknown key is reported).
    assert_eq!(c.config.prices.keys().collect::<Vec<_>>(), ["d"]);
}

#[test]
fn committer_is_name_and_email() {
    let (c, diags) = compile_text("[reconcile]\ncommitter = \" Tidy Bot <bot@example.com>\"\n");
    assert!(diags.is_empty(), "{diags:?}");
    let identity = c.config.reconcile.committer.expect("set");
    assert_eq!(
        (identity.name.as_str(), identity.email.as_str()),
        ("Tidy Bot", "bot@example.com")
    );
    for bad in [
        "Tidy Bot",
        "<bot@example.com>",
        "Bot <>",
        "Bot <a> b",
        "Bot <a<b>",
    ] {
        let (c, diags) = compile_text(&format!("[reconcile]\ncommitter = \"{bad}\"\n"));
        assert!(!c.valid, "{bad}");
        assert_eq!(diags.len(), 1, "{bad}: {diags:?}");
        assert!(
            diags[0].message.contains("not `Name <email>`"),
            "{bad}: {diags:?}"
        );
    }
}

#[test]
fn configured_committer_wins_over_the_environment_which_wins_over_the_default() {
    use crate::git::Signer;
    let env = |name: &str| match name {
        "GIT_COMMITTER_NAME" => Some("CI".to_owned()),
        _ => None,
    };
    let none = |_: &str| None;
    let converge = |name: &str, email: &str| Signer::Converge {
        name: name.into(),
        email: email.into(),
    };
    let mut reconcile = Reconcile::default();
    assert_eq!(
        reconcile.signer(&none),
        converge("converge", "converge@localhost")
    );
    assert_eq!(reconcile.signer(&env), converge("CI", "converge@localhost"));
    reconcile.committer = Some(Identity {
        name: "Bot".into(),
        email: "bot@example.com".into(),
    });
    assert_eq!(reconcile.signer(&env), converge("Bot", "bot@example.com"));
}

#[test]
fn worktree_root_outside_planning_and_the_git_dir() {
    for ok in [
        "wt",
        "build/wt",
        "../sibling",
        "/abs/wt",
        "./.converge/trees",
        "planning-wt",
    ] {
        assert_eq!(check_worktree_root(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        ".",
        "a/..",
        "planning",
        "./planning/wt",
        "x/../planning/wt",
        ".git/wt",
    ] {
        assert!(check_worktree_root(bad).is_err(), "{bad}");
    }
    let (c, diags) = compile_text("[reconcile]\nworktree_root = \"planning/wt\"\n");
    assert!(!c.valid);
    assert_eq!(c.config.reconcile.worktree_root, None);
    assert!(diags[0].message.contains("inside planning/"), "{diags:?}");
}

#[test]
fn keep_attempts_is_at_least_one() {
    assert_eq!(default_config().reconcile.keep_attempts, 5);
    let (c, _) = compile_text("[reconcile]\nkeep_attempts = 2\n");
    assert_eq!(c.config.reconcile.keep_attempts, 2);
    let (c, diags) = compile_text("[reconcile]\nkeep_attempts = 0\n");
    assert!(!c.valid);
    assert!(diags[0].message.contains("`keep_attempts`"), "{diags:?}");
    assert_eq!(
        diags[0].location.as_ref().map(|l| l.line),
        Some(2),
        "{diags:?}"
    );
}

#[test]
fn branch_names() {
    assert!(check_branch_name("main").is_ok());
    assert!(check_branch_name("release/1.0").is_ok());
    for bad in [
        "",
        "-x",
        "a..b",
        "a b",
        "x.lock",
        "refs/heads/main",
        "a~1",
        ".hidden",
    ] {
        assert!(check_branch_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn cron_needs_five_fields() {
    assert!(validate_cron("0 9 * * MON").is_ok());
    assert!(validate_cron("*/5 * * * *").is_ok());
    assert!(validate_cron("0 0 9 * * MON").is_err());
    assert!(validate_cron("61 * * * *").is_err());
}

#[test]
fn gator_invariant_fields_are_read_or_reported() {
    let (c, diags) = compile_text(
        "[invariants.rust_build]\ndescription = \"Build the workspace\"\nkind = \"typecheck\"\ncommand = \"cargo\"\ntimeout = 300\nthreshold = 80.0\nscope = \"project\"\n",
    );
    assert!(c.valid, "{diags:?}");
    let inv = &c.config.invariants["rust_build"];
    assert_eq!(inv.timeout.as_secs(), 300);
    assert_eq!(
        c.config.invariant_descriptions["rust_build"],
        "Build the workspace"
    );
    let found: Vec<(&str, usize, Severity)> = diags
        .iter()
        .map(|d| {
            (
                d.code.as_str(),
                d.location.as_ref().map_or(0, |l| l.line),
                d.severity,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("gator-compat", 6, Severity::Warning),
            ("gator-compat", 7, Severity::Warning)
        ]
    );
    assert!(diags[0].message.contains("does not use `threshold`"));
    // Wrong values are still errors.
    let (c, diags) = compile_text(
        "[invariants.a]\nkind = \"lint\"\ncommand = \"x\"\ntimeout = 0\nscope = \"planet\"\n",
    );
    assert!(!c.valid);
    let codes: Vec<_> = diags.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["invalid-value", "invalid-value"], "{diags:?}");
}

#[test]
fn gator_harness_names_are_aliases_with_a_warning() {
    let (c, diags) = compile_text("[reconcile]\ndefault_harness = \"codex-cli\"\n");
    assert!(c.valid, "{diags:?}");
    assert_eq!(c.config.reconcile.default_harness, "codex");
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, Code::GatorCompat);
    assert_eq!(diags[0].hint.as_deref(), Some("write `\"codex\"`"));
    // A declared harness of that name is used as declared, without a warning.
    let (c, diags) = compile_text(
        "[reconcile]\ndefault_harness = \"open-code\"\n[harness.open-code]\nkind = \"command\"\ncommand = \"oc\"\n",
    );
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.reconcile.default_harness, "open-code");
}

#[test]
fn schedules_are_read_with_their_defaults() {
    use super::super::model::{DEFAULT_GRACE, Missed, Zone};
    let (c, diags) = compile_text(
        "[[schedule]]\ncron = \"0 9 * * MON\"\nqueue = \"weekly.md\"\n\n[[schedule]]\nname = \"late\"\ncron = \"30 17 * * *\"\nqueue = \"weekly.md\"\ntimezone = \"-05:30\"\nmissed = \"once\"\ngrace = \"10m\"\n\n[[schedule]]\nname = \"berlin\"\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\ntimezone = \"Europe/Berlin\"\n",
    );
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    let s = &c.config.schedules;
    assert_eq!(s.len(), 3);
    // Without a name, the template's.
    assert_eq!(
        (s[0].name.as_str(), s[0].zone, s[0].missed),
        ("weekly", Zone::Offset(0), Missed::Skip)
    );
    assert_eq!(s[0].grace, DEFAULT_GRACE);
    assert_eq!(
        (s[1].name.as_str(), s[1].zone, s[1].missed),
        ("late", Zone::Offset(-19_800), Missed::Once)
    );
    assert_eq!(s[2].zone, Zone::Named(chrono_tz::Europe::Berlin));
    assert_eq!(s[1].grace, std::time::Duration::from_secs(600));
}

#[test]
fn bad_schedules_are_located_with_hints() {
    let cases = [
        // Two schedules of one template need names.
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\n[[schedule]]\ncron = \"0 10 * * *\"\nqueue = \"weekly.md\"\n",
            "invalid-value",
            6,
            9,
            "two schedules are named `weekly`",
        ),
        (
            "[[schedule]]\nname = \"Weekly\"\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\n",
            "invalid-value",
            2,
            8,
            "uppercase",
        ),
        (
            "[[schedule]]\nname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\n",
            "invalid-value",
            2,
            8,
            "at most 48",
        ),
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\ntimezone = \"Europe/Atlantis\"\n",
            "invalid-value",
            4,
            12,
            "no time zone of the IANA database",
        ),
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\ntimezone = \"europe/berlin\"\n",
            "invalid-value",
            4,
            12,
            "no time zone of the IANA database",
        ),
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\ntimezone = \"+2\"\n",
            "invalid-value",
            4,
            12,
            "neither `UTC` nor an offset",
        ),
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\nmissed = \"all\"\n",
            "invalid-value",
            4,
            10,
            "not one of",
        ),
        (
            "[[schedule]]\ncron = \"0 9 * * *\"\nqueue = \"weekly.md\"\ngrace = \"soon\"\n",
            "invalid-duration",
            4,
            9,
            "not a duration",
        ),
        (
            "[[schedule]]\ncron = \"@daily\"\nqueue = \"weekly.md\"\n",
            "invalid-cron",
            2,
            8,
            "5 fields",
        ),
    ];
    for (text, code, line, column, words) in cases {
        let (c, diags) = compile_text(text);
        assert!(!c.valid, "{text}");
        assert_eq!(diags.len(), 1, "{text}: {diags:?}");
        let d = &diags[0];
        let l = d.location.as_ref().expect("located");
        assert_eq!(
            (d.code.as_str(), l.line, l.column),
            (code, line, column),
            "{text}: {d:?}"
        );
        assert!(d.message.contains(words), "{text}: {}", d.message);
        assert!(d.hint.is_some(), "{text}: no hint");
    }
}

#[test]
fn utc_offsets_parse() {
    use super::schedule::{BadTimezone, parse_utc_offset};
    assert_eq!(parse_utc_offset("UTC"), Ok(0));
    assert_eq!(parse_utc_offset("+01:00"), Ok(3600));
    assert_eq!(parse_utc_offset("-05:30"), Ok(-19_800));
    assert_eq!(parse_utc_offset("+23:59"), Ok(86_340));
    assert_eq!(
        parse_utc_offset("America/New_York"),
        Err(BadTimezone::Named)
    );
    assert_eq!(parse_utc_offset("CET"), Err(BadTimezone::Named));
    for bad in ["+24:00", "+01:60", "+1:00", "01:00", "+01:0a", ""] {
        assert_eq!(parse_utc_offset(bad), Err(BadTimezone::Malformed), "{bad}");
    }
}

#[test]
fn interval_is_the_watch_resync_and_at_least_a_second() {
    let (c, diags) = compile_text("[reconcile]\ninterval = \"90s\"\n");
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.reconcile.interval.as_secs(), 90);
    let (c, diags) = compile_text("[reconcile]\n");
    assert!(c.valid, "{diags:?}");
    assert_eq!(c.config.reconcile.interval.as_secs(), 300, "default 5m");
    let (c, diags) = compile_text("[reconcile]\ninterval = \"500ms\"\n");
    assert!(!c.valid);
    let d = &diags[0];
    assert_eq!(d.code.as_str(), "invalid-value");
    let l = d.location.as_ref().expect("located");
    assert_eq!((l.line, l.column), (2, 12));
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("5m")));
}

#[test]
fn claim_grace_is_a_positive_duration_ten_minutes_by_default() {
    let (c, diags) = compile_text("[reconcile]\nclaim_grace = \"30s\"\n");
    assert!(c.valid && diags.is_empty(), "{diags:?}");
    assert_eq!(c.config.reconcile.claim_grace.as_secs(), 30);
    let (c, _) = compile_text("");
    assert_eq!(c.config.reconcile.claim_grace.as_secs(), 600, "default 10m");
    let (c, diags) = compile_text("[reconcile]\nclaim_grace = \"0s\"\n");
    assert!(!c.valid);
    assert!(
        diags.iter().any(|d| d
            .message
            .contains("`claim_grace` in [reconcile] must be longer than zero")),
        "{diags:?}"
    );
}
