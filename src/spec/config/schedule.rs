//! `[[schedule]]`: crontab lines that would enqueue templates (refused as not
//! supported yet, and still checked).

use std::str::FromStr;

use super::super::diag::Code;
use super::super::model::Schedule;
use super::super::suggest;
use super::super::toml_walk::{Ctx, Table};
use super::not_supported;

const SCHEDULE_KEYS: &[&str] = &["cron", "queue"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, templates: &[String]) -> Vec<Schedule> {
    let mut out = Vec::new();
    let Some(items) = root.array_of_tables(ctx, "schedule") else {
        return out;
    };
    for (index, (span, table)) in items.into_iter().enumerate() {
        not_supported(
            ctx,
            span.clone(),
            "[[schedule]] is not supported yet: schedules do not fire",
            "remove this [[schedule]] table and its keys; converge runs nothing while it is set. To run a task now, commit it as planning/queue/<name>.md",
        );
        let t = Table::new(
            table,
            span,
            format!("[[schedule]] #{}", index + 1),
            SCHEDULE_KEYS,
        );
        let cron = t.required_string(ctx, "cron", "\"0 9 * * MON\"");
        let queue = t.required_string(ctx, "queue", "\"weekly-review.md\"");
        t.finish(ctx);
        let cron_ok = cron.as_ref().is_some_and(|c| check_cron(ctx, c));
        let queue_ok = queue
            .as_ref()
            .is_some_and(|q| check_template(ctx, q, templates));
        if let (Some(cron), Some(queue), true, true) = (cron, queue, cron_ok, queue_ok) {
            out.push(Schedule {
                cron: cron.into_inner(),
                queue: queue.into_inner(),
            });
        }
    }
    out
}

/// Checks a standard 5-field crontab line (minute hour day-of-month month day-of-week).
pub(super) fn validate_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "a crontab line has 5 fields (minute hour day-of-month month day-of-week), this one has {fields}"
        ));
    }
    croner::Cron::from_str(expr).map(|_| ()).map_err(|e| {
        // croner's messages are capitalized sentences; fit them to ours.
        let text = e.to_string();
        let text = text.trim_end_matches('.');
        let text = text.strip_prefix("Component error: ").unwrap_or(text);
        text.to_lowercase()
    })
}

fn check_cron(ctx: &mut Ctx<'_>, cron: &toml::Spanned<String>) -> bool {
    match validate_cron(cron.get_ref()) {
        Ok(()) => true,
        Err(reason) => {
            ctx.error(
                Code::InvalidCron,
                cron.span(),
                format!("`{}` is not a valid schedule: {reason}", cron.get_ref()),
            )
            .hint =
                Some("for example `cron = \"0 9 * * MON\"` (09:00 every Monday, in UTC)".into());
            false
        }
    }
}

fn check_template(ctx: &mut Ctx<'_>, queue: &toml::Spanned<String>, templates: &[String]) -> bool {
    let name = queue.get_ref();
    if name.contains('/') || name.contains('\\') || name.starts_with('.') || !name.ends_with(".md")
    {
        ctx.error(
            Code::InvalidValue,
            queue.span(),
            format!("`queue` is `{name}`; it must be the file name of a template in planning/queue/templates/"),
        )
        .hint = Some("for example `queue = \"weekly-review.md\"`".into());
        return false;
    }
    if templates.iter().any(|t| t == name) {
        return true;
    }
    let hint = suggest::did_you_mean(name, templates.iter().map(String::as_str))
        .unwrap_or_else(|| format!("create planning/queue/templates/{name}"));
    ctx.error(
        Code::InvalidValue,
        queue.span(),
        format!("the schedule's template planning/queue/templates/{name} does not exist"),
    )
    .hint = Some(hint);
    false
}
