//! `converge doctor [--fix]`: consistency checks with a fix for each.

use std::time::Duration;

use super::human::snapshot;
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, Kind, print, print_json};
use crate::runtime::Lock;
use crate::runtime::doctor::{self, Finding, Level};
use crate::view::{FindingLevel, FindingView};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Apply the safe fixes (under the reconciler lock), then check again.
    #[arg(long)]
    pub fix: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &DoctorArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    // Fixing while a tick acts could remove what the tick just made.
    let _lock = if args.fix {
        Some(
            Lock::acquire(repo.common_dir(), Duration::from_secs(60))
                .map_err(|e| CliError::lock(e, "doctor --fix"))?,
        )
    } else {
        None
    };
    let mut out = String::new();
    let secret = doctor::check_secret(&repo);
    if secret.fix.is_some() {
        if !args.fix {
            let mut text = render(std::slice::from_ref(&secret));
            text.push_str("the other checks need a private secret; `converge doctor --fix` makes it 0600 and runs them\n");
            print(&text)?;
            return Err(CliError::reported(Kind::Failure));
        }
        let report_free =
            doctor::fix_secret(&secret).map_err(|e| CliError::failure("a fix failed").source(e))?;
        out.push_str(&format!("fixed: {report_free}\n"));
    }
    // What a killed process left comes first: it can make the dry tick the
    // other checks need fail.
    let mut leftovers = doctor::check_leftovers(&repo);
    if args.fix && leftovers.iter().any(|f| f.fix.is_some()) {
        let done = doctor::fix_leftovers(&leftovers)
            .map_err(|e| CliError::failure("a fix failed").source(e))?;
        for line in &done {
            out.push_str(&format!("fixed: {line}\n"));
        }
        leftovers = doctor::check_leftovers(&repo);
    }
    let mut report = match snapshot(&repo) {
        Ok(report) => report,
        Err(e) => {
            if leftovers.iter().any(|f| f.fix.is_some()) {
                out.push_str(&render(&leftovers));
                out.push_str("the other checks need a tick's view, which fails; `converge doctor --fix` removes the above first\n");
                print(&out)?;
            }
            return Err(e);
        }
    };
    let diagnose = |report: &crate::runtime::Snapshot| {
        doctor::diagnose(&repo, report)
            .map(|mut found| {
                let mut all = doctor::check_leftovers(&repo);
                all.append(&mut found);
                all
            })
            .map_err(|e| CliError::failure("the checks failed").source(e))
    };
    let mut findings = diagnose(&report)?;
    // A fix can uncover the next one (a killed agent leaves its worktree):
    // a few rounds, each on a fresh look.
    for _ in 0..3 {
        if !args.fix || !findings.iter().any(|f| f.fix.is_some()) {
            break;
        }
        let done = doctor::fix(&repo, &report, &findings)
            .map_err(|e| CliError::failure("a fix failed").source(e))?;
        for line in &done {
            out.push_str(&format!("fixed: {line}\n"));
        }
        report = snapshot(&repo)?;
        findings = diagnose(&report)?;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    if args.json {
        print_json(&views(&findings), true)?;
    } else {
        out.push_str(&render(&findings));
        print(&out)?;
    }
    if findings.iter().any(|f| f.level == Level::Problem) {
        Err(CliError::reported(Kind::Failure))
    } else {
        Ok(())
    }
}

/// The findings as the view prints them.
fn views(findings: &[Finding]) -> Vec<FindingView> {
    findings
        .iter()
        .map(|f| FindingView {
            check: f.check.to_owned(),
            level: match f.level {
                Level::Ok => FindingLevel::Ok,
                Level::Warning => FindingLevel::Warning,
                Level::Problem => FindingLevel::Problem,
            },
            message: f.message.clone(),
            hint: f.hint.clone(),
            fixable: f.fix.is_some(),
        })
        .collect()
}

fn render(findings: &[Finding]) -> String {
    crate::view::doctor::render(&views(findings))
}
