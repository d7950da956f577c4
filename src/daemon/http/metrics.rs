//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4),
//! written by hand. The families are few and fixed, every label value comes
//! from a closed list (`Phase::ALL`, `ActionKind::ALL`, `FailureCode::ALL`,
//! the tick and action results), and every series is written on every scrape,
//! zeros included, so a dashboard never sees a series appear from nowhere.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::daemon::board::{ACTION_RESULTS, Board, TICK_BUCKETS, TickResult};
use crate::decide::ActionKind;
use crate::model::FailureCode;
use crate::status::Phase;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The forge's rate limit left, as f64 bits; NaN until a forge reports it.
static FORGE_RATE_LIMIT_REMAINING: AtomicU64 = AtomicU64::new(f64::NAN.to_bits());

/// The hook a forge feeds: the requests left in its API rate-limit window
/// (GitHub's `x-ratelimit-remaining`). Cheap, lock-free, callable from any
/// thread; `converge_forge_rate_limit_remaining` shows the last value.
pub fn report_forge_rate_limit(remaining: u64) {
    FORGE_RATE_LIMIT_REMAINING.store((remaining as f64).to_bits(), Ordering::Relaxed);
}

fn forge_rate_limit_remaining() -> f64 {
    f64::from_bits(FORGE_RATE_LIMIT_REMAINING.load(Ordering::Relaxed))
}

/// The whole exposition.
pub fn render(board: &Board) -> String {
    let mut out = String::new();
    tasks(&mut out, board);
    actions_and_ticks(&mut out, board);
    tick_durations(&mut out, board);
    capacity(&mut out, board);
    spending(&mut out, board);
    gauge(
        &mut out,
        "converge_forge_rate_limit_remaining",
        "Requests left in the forge's API rate-limit window (NaN until a forge reports it).",
        forge_rate_limit_remaining(),
    );
    gauge(
        &mut out,
        "converge_last_tick_timestamp_seconds",
        "When the last tick ended, in Unix seconds (0 before the first).",
        board.gauges.last_tick_unix.unwrap_or(0) as f64,
    );
    out
}

/// Tasks by phase.
fn tasks(out: &mut String, board: &Board) {
    let g = &board.gauges;
    labelled(
        out,
        ("converge_tasks", "gauge"),
        "Tasks by phase, as converge status shows them.",
        "phase",
        Phase::ALL.iter().map(|p| p.as_str()),
        &g.tasks,
    );
}

/// What this daemon did: actions by kind and result, ticks by result.
fn actions_and_ticks(out: &mut String, board: &Board) {
    let c = &board.counters;
    family(
        out,
        "converge_actions_total",
        "counter",
        "Actions this daemon carried out, by kind and result.",
    );
    for (kind, counts) in ActionKind::ALL.iter().zip(&c.actions) {
        for (result, n) in ACTION_RESULTS.iter().zip(counts) {
            let labels = [("kind", kind.as_str()), ("result", *result)];
            sample(out, "converge_actions_total", &labels, *n as f64);
        }
    }
    labelled(
        out,
        ("converge_ticks_total", "counter"),
        "Ticks by result: ok, busy (another reconciler held the lock), failed.",
        "result",
        TickResult::ALL.iter().map(|r| r.as_str()),
        &c.ticks,
    );
}

/// The histogram of tick durations.
fn tick_durations(out: &mut String, board: &Board) {
    let c = &board.counters;
    family(
        out,
        "converge_tick_duration_seconds",
        "histogram",
        "How long ticks took (busy ticks excluded).",
    );
    for (bound, n) in TICK_BUCKETS.iter().zip(&c.tick_buckets) {
        let le = bound.to_string();
        sample(
            out,
            "converge_tick_duration_seconds_bucket",
            &[("le", &le)],
            *n as f64,
        );
    }
    let count = c.tick_seconds_count as f64;
    sample(
        out,
        "converge_tick_duration_seconds_bucket",
        &[("le", "+Inf")],
        count,
    );
    sample(
        out,
        "converge_tick_duration_seconds_sum",
        &[],
        c.tick_seconds_sum,
    );
    sample(out, "converge_tick_duration_seconds_count", &[], count);
}

/// The agents at work and how long ready work waits for one.
fn capacity(out: &mut String, board: &Board) {
    let g = &board.gauges;
    gauge(
        out,
        "converge_agents_running",
        "Agents at work.",
        g.agents_running as f64,
    );
    gauge(
        out,
        "converge_oldest_ready_task_age_seconds",
        "How long the oldest task that is ready but waits for capacity has waited, as this daemon saw it (0 when none).",
        g.oldest_ready_seconds,
    );
}

/// What the attempts recorded in status used and how they failed.
fn spending(out: &mut String, board: &Board) {
    let g = &board.gauges;
    labelled(
        out,
        ("converge_tokens", "gauge"),
        "Tokens of every attempt recorded in status.",
        "direction",
        ["in", "out"],
        &[g.tokens_in, g.tokens_out],
    );
    gauge(
        out,
        "converge_cost_usd",
        "Cost in USD of every attempt recorded in status.",
        g.cost_usd,
    );
    labelled(
        out,
        ("converge_attempt_failures", "gauge"),
        "Failed attempts recorded in status, by failure code.",
        "code",
        FailureCode::ALL.iter().map(|c| c.as_str()),
        &g.failures,
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    family(out, name, "gauge", help);
    sample(out, name, &[], value);
}

/// A family `(name, kind)` with one label: a sample per label value, the
/// count at the same place in `counts`.
fn labelled<'a>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = &'a str>,
    counts: &[u64],
) {
    family(out, name, kind, help);
    for (value, n) in values.into_iter().zip(counts) {
        sample(out, name, &[(label, value)], *n as f64);
    }
}

/// One sample. Label values come from fixed lists; they are escaped anyway.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::board::Publisher;

    #[test]
    fn every_series_is_there_from_the_start_and_the_rate_limit_is_nan() {
        let (_publisher, rx) = Publisher::new();
        let text = render(&rx.borrow());
        for phase in Phase::ALL {
            assert!(
                text.contains(&format!(
                    "converge_tasks{{phase=\"{}\"}} 0\n",
                    phase.as_str()
                )),
                "{text}"
            );
        }
        assert!(text.contains("converge_actions_total{kind=\"dispatch\",result=\"done\"} 0\n"));
        assert!(text.contains("converge_attempt_failures{code=\"no-done\"} 0\n"));
        assert!(text.contains("converge_tick_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("converge_tick_duration_seconds_bucket{le=\"0.005\"} 0\n"));
        // The hook is process-wide; no other unit test feeds it.
        assert!(
            text.contains("converge_forge_rate_limit_remaining NaN\n"),
            "{text}"
        );
        assert_eq!(number(4999.0), "4999");
        assert_eq!(number(0.25), "0.25");
    }
}
