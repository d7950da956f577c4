//! `[[schedule]]`: crontab lines that enqueue templates. What fires when is
//! `runtime::schedule`; here the table is read and checked.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::super::diag::Code;
use super::super::model::{DEFAULT_GRACE, MAX_SCHEDULE_NAME_LEN, Missed, Schedule, Zone};
use super::super::suggest;
use super::super::toml_walk::{Ctx, Table};

const SCHEDULE_KEYS: &[&str] = &["name", "cron", "queue", "timezone", "missed", "grace"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, templates: &[String]) -> Vec<Schedule> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    let Some(items) = root.array_of_tables(ctx, "schedule") else {
        return out;
    };
    for (index, (span, table)) in items.into_iter().enumerate() {
        let t = Table::new(
            table,
            span,
            format!("[[schedule]] #{}", index + 1),
            SCHEDULE_KEYS,
        );
        let cron = t.required_string(ctx, "cron", "\"0 9 * * MON\"");
        let queue = t.required_string(ctx, "queue", "\"weekly-review.md\"");
        let name = t.string(ctx, "name");
        let offset = t.string(ctx, "timezone").map(|tz| check_timezone(ctx, &tz));
        let missed = t
            .enumeration(ctx, "missed", &["skip", "once"])
            .map(|m| m.into_inner());
        let grace = t.duration(ctx, "grace");
        t.finish(ctx);
        let cron_ok = cron.as_ref().is_some_and(|c| check_cron(ctx, c));
        let queue_ok = queue
            .as_ref()
            .is_some_and(|q| check_template(ctx, q, templates));
        let name = match (&name, &queue) {
            (Some(name), _) => check_name(ctx, name, &mut names),
            // The template's name, when the schedule has none.
            (None, Some(queue)) if queue_ok => {
                let stem = queue.get_ref().trim_end_matches(".md").to_owned();
                check_name(ctx, &toml::Spanned::new(queue.span(), stem), &mut names)
            }
            (None, _) => None,
        };
        let (Some(cron), Some(queue), Some(name), true, true) =
            (cron, queue, name, cron_ok, queue_ok)
        else {
            continue;
        };
        let Some(zone) = offset.unwrap_or(Some(Zone::Offset(0))) else {
            continue;
        };
        out.push(Schedule {
            name,
            cron: cron.into_inner(),
            queue: queue.into_inner(),
            zone,
            missed: if missed == Some("once") {
                Missed::Once
            } else {
                Missed::Skip
            },
            grace: grace.map_or(DEFAULT_GRACE, toml::Spanned::into_inner),
        });
    }
    out
}

/// A schedule's name: a queue item's name once the fire time is added, one
/// per schedule.
fn check_name(
    ctx: &mut Ctx<'_>,
    name: &toml::Spanned<String>,
    seen: &mut BTreeSet<String>,
) -> Option<String> {
    let text = name.get_ref();
    let problem = match crate::spec::names::check(text) {
        Err(p) => Some((p.reason, p.hint)),
        Ok(()) if text.len() > MAX_SCHEDULE_NAME_LEN => Some((
            format!(
                "is {} characters long; a schedule's name is at most {MAX_SCHEDULE_NAME_LEN}, so that its items' names (`<name>-YYYYMMDD-HHMM`) fit",
                text.len()
            ),
            format!(
                "set a shorter `name`, for example `name = \"{}\"`",
                &text[..MAX_SCHEDULE_NAME_LEN]
            ),
        )),
        Ok(()) => None,
    };
    if let Some((reason, hint)) = problem {
        ctx.error(
            Code::InvalidValue,
            name.span(),
            format!("the schedule name `{text}` {reason}"),
        )
        .hint = Some(hint);
        return None;
    }
    if !seen.insert(text.clone()) {
        ctx.error(
            Code::InvalidValue,
            name.span(),
            format!("two schedules are named `{text}`; a schedule's name tells its items apart"),
        )
        .hint = Some(
            "give each [[schedule]] its own `name` (without one, the template's name is used)"
                .into(),
        );
        return None;
    }
    Some(text.clone())
}

/// `UTC`, a fixed offset `±HH:MM`, or a zone of the IANA database
/// (`Europe/Berlin`, with its daylight saving time), or `None` after
/// reporting why not.
fn check_timezone(ctx: &mut Ctx<'_>, tz: &toml::Spanned<String>) -> Option<Zone> {
    let text = tz.get_ref();
    match parse_utc_offset(text) {
        Ok(offset) => Some(Zone::Offset(offset)),
        Err(Named) => match text.parse::<chrono_tz::Tz>() {
            Ok(zone) => Some(Zone::Named(zone)),
            Err(_) => {
                let same = chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|z| z.name().eq_ignore_ascii_case(text));
                ctx.error(
                    Code::InvalidValue,
                    tz.span(),
                    format!("`timezone` is `{text}`, which is no time zone of the IANA database"),
                )
                .hint = Some(match same {
                    Some(zone) => format!("time zone names are case-sensitive: `timezone = \"{}\"`", zone.name()),
                    None => "a name such as `Europe/Berlin` or `America/New_York`, `UTC`, or a fixed offset such as `+01:00`".into(),
                });
                None
            }
        },
        Err(Malformed) => {
            ctx.error(
                Code::InvalidValue,
                tz.span(),
                format!("`timezone` is `{text}`, which is neither `UTC` nor an offset from -23:59 to +23:59"),
            )
            .hint = Some("for example `timezone = \"UTC\"`, `timezone = \"-05:00\"` or `timezone = \"America/New_York\"`".into());
            None
        }
    }
}

/// Why a `timezone` is not a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadTimezone {
    /// A name such as `Europe/Berlin`: looked up in the IANA database.
    Named,
    Malformed,
}
use BadTimezone::{Malformed, Named};

/// Parses `UTC`, `Z` or `±HH:MM` into seconds east of UTC.
pub(crate) fn parse_utc_offset(text: &str) -> Result<i32, BadTimezone> {
    if matches!(text, "UTC" | "utc" | "Z" | "Etc/UTC" | "+00:00" | "-00:00") {
        return Ok(0);
    }
    let b = text.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ if text.chars().any(|c| c.is_ascii_alphabetic()) => return Err(Named),
        _ => return Err(Malformed),
    };
    if b.len() != 6 || b[3] != b':' {
        return Err(Malformed);
    }
    let digits = |r: std::ops::Range<usize>| -> Result<i32, BadTimezone> {
        let s = &text[r];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Malformed);
        }
        s.parse().map_err(|_| Malformed)
    };
    let (h, m) = (digits(1..3)?, digits(4..6)?);
    if h > 23 || m > 59 {
        return Err(Malformed);
    }
    Ok(sign * (h * 3600 + m * 60))
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
            .hint = Some(
                "for example `cron = \"0 9 * * MON\"` (09:00 every Monday, in the schedule's `timezone`, UTC by default)".into(),
            );
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
