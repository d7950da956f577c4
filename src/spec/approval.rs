//! `planning/approvals/<plan>/<task>.toml`: a human decision bound to a commit.

use super::diag::Code;
use super::model::{Approval, Decision};
use super::toml_walk::{Ctx, SourceFile, Table};

const KEYS: &[&str] = &["decision", "commit", "reason", "by", "at"];

/// Compiles one approval file; `plan` and `task` come from its path.
pub fn compile(
    file: &SourceFile,
    plan: &str,
    task: &str,
    out: &mut Vec<super::Diagnostic>,
) -> Option<Approval> {
    let mut ctx = Ctx::new(file);
    let approval = compile_inner(&mut ctx, plan, task);
    let valid = !ctx.has_errors();
    out.append(&mut ctx.diags);
    approval.filter(|_| valid)
}

fn compile_inner(ctx: &mut Ctx<'_>, plan: &str, task: &str) -> Option<Approval> {
    let root = ctx.parse()?;
    let t = Table::new(root.get_ref(), root.span(), "the approval", KEYS);
    let decision = t.required_enumeration(ctx, "decision", &["approve", "reject"]);
    let commit = t.required_string(ctx, "commit", "\"<full sha of the reviewed commit>\"");
    let reason = t.string(ctx, "reason").map(toml::Spanned::into_inner);
    let by = t.string(ctx, "by").map(toml::Spanned::into_inner);
    // `at` is informational (when the decision was made); any string or datetime.
    let _ = t.get("at");
    t.finish(ctx);
    let commit = commit.and_then(|c| {
        let hex = c.get_ref();
        let valid = (hex.len() == 40 || hex.len() == 64) && hex.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase());
        if valid {
            Some(c.into_inner())
        } else {
            ctx.error(
                Code::InvalidValue,
                c.span(),
                format!("`commit` is `{hex}`, not a full lowercase commit id"),
            )
            .hint = Some(format!(
                "an approval binds to the exact commit reviewed; use `converge approve {plan}/{task}`, or `git rev-parse converge/{plan}/{task}` for the id"
            ));
            None
        }
    });
    let decision = match *decision?.get_ref() {
        "approve" => Decision::Approve,
        _ => Decision::Reject,
    };
    Some(Approval {
        plan: plan.to_owned(),
        task: task.to_owned(),
        decision,
        commit: commit?,
        reason,
        by,
        file: ctx.file.path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> (Option<Approval>, Vec<super::super::Diagnostic>) {
        let file = SourceFile {
            path: "planning/approvals/auth/login.toml".into(),
            text: text.into(),
        };
        let mut diags = Vec::new();
        (compile(&file, "auth", "login", &mut diags), diags)
    }

    #[test]
    fn reads_a_decision() {
        let sha = "a".repeat(40);
        let (a, diags) = compile_text(&format!(
            "decision = \"reject\"\ncommit = \"{sha}\"\nreason = \"no tests\"\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let a = a.expect("valid");
        assert_eq!(a.decision, Decision::Reject);
        assert_eq!(a.reason.as_deref(), Some("no tests"));
    }

    #[test]
    fn requires_a_full_commit_id() {
        let (a, diags) = compile_text("decision = \"approve\"\ncommit = \"abc123\"\n");
        assert!(a.is_none());
        assert_eq!(diags[0].code, Code::InvalidValue);
    }
}
