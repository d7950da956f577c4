//! PURE: which fire time of a schedule is due at `now`, given the newest fire
//! time already enqueued. No clock, no IO: the tick gives `now` and what git
//! holds.
//!
//! A fire time is *on time* when it is at most the schedule's `grace` old.
//! Only the newest fire time not after `now` is ever enqueued: older ones are
//! missed (downtime). The newest is enqueued when it is on time, or, with
//! `missed = "once"`, late (once, whatever the number missed), provided the
//! schedule fired before: a schedule with no fire in git starts now and does
//! not catch up on fire times before it was seen.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, TimeZone};

use crate::spec::{Missed, Schedule, Zone};
use crate::time::Timestamp;

/// What a schedule does at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The fire time to enqueue now, if any.
    pub fire: Option<Timestamp>,
    /// A fire time not enqueued because it is late and `missed = "skip"`
    /// (a schedule that never fired misses nothing: it starts now).
    pub skipped: Option<Timestamp>,
    /// The first fire time after `now`.
    pub next: Option<Timestamp>,
}

/// The due fire time of `schedule` at `now`; `last`: the newest fire time
/// already enqueued (from the items' names in git).
pub fn due(schedule: &Schedule, last: Option<Timestamp>, now: Timestamp) -> Due {
    let Some((newest, next)) = around(schedule, now) else {
        return Due {
            fire: None,
            skipped: None,
            next: None,
        };
    };
    let mut out = Due {
        fire: None,
        skipped: None,
        next,
    };
    let Some(newest) = newest.filter(|n| last.is_none_or(|l| l < *n)) else {
        return out;
    };
    let on_time = newest.until(now) <= schedule.grace;
    if on_time || (schedule.missed == Missed::Once && last.is_some()) {
        out.fire = Some(newest);
    } else if last.is_some() {
        // Late after downtime; a schedule that never fired missed nothing.
        out.skipped = Some(newest);
    }
    out
}

/// The newest fire time not after `now` and the first after it, the
/// crontab line read in the schedule's time zone, a named zone's daylight
/// saving time included. croner fires a wall time the clocks jump over
/// when they jump, and a wall time they repeat once, the first time.
fn around(schedule: &Schedule, now: Timestamp) -> Option<(Option<Timestamp>, Option<Timestamp>)> {
    let cron = croner::Cron::from_str(&schedule.cron).ok()?;
    let utc = DateTime::from_timestamp(now.unix(), 0)?;
    Some(match schedule.zone {
        Zone::Offset(secs) => occurrences(&cron, &utc.with_timezone(&FixedOffset::east_opt(secs)?)),
        Zone::Named(tz) => occurrences(&cron, &utc.with_timezone(&tz)),
    })
}

fn occurrences<Tz: TimeZone>(
    cron: &croner::Cron,
    now: &DateTime<Tz>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let at = |t: DateTime<Tz>| Timestamp::from_unix(t.timestamp());
    (
        cron.find_previous_occurrence(now, true).ok().map(at),
        cron.find_next_occurrence(now, false).ok().map(at),
    )
}

/// The name of the item a schedule enqueues for a fire time:
/// `<schedule>-<YYYYMMDD>-<HHMM>`, the fire time in UTC (crontab lines have
/// minutes, not seconds).
pub fn item_name(schedule: &str, fire: Timestamp) -> String {
    let text = fire.to_string(); // 2026-03-02T09:00:00Z
    format!(
        "{schedule}-{}{}{}-{}{}",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13],
        &text[14..16]
    )
}

/// The fire time an item's name records for `schedule`, if it is one of its.
pub fn fire_of(schedule: &str, item: &str) -> Option<Timestamp> {
    let stamp = item.strip_prefix(schedule)?.strip_prefix('-')?;
    let b = stamp.as_bytes();
    if b.len() != 13 || b[8] != b'-' {
        return None;
    }
    if !stamp
        .bytes()
        .enumerate()
        .all(|(i, c)| i == 8 || c.is_ascii_digit())
    {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:00Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13]
    );
    Timestamp::parse_rfc3339(&rfc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("time")
    }

    fn schedule(cron: &str, offset: i32, missed: Missed, grace_min: u64) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: cron.into(),
            queue: "t.md".into(),
            zone: Zone::Offset(offset),
            missed,
            grace: std::time::Duration::from_secs(grace_min * 60),
        }
    }

    #[test]
    fn due_fire_times_table() {
        use Missed::{Once, Skip};
        // (cron, offset, missed, grace minutes, last, now, fire, skipped, next)
        type Row = (
            &'static str,
            i32,
            Missed,
            u64,
            Option<&'static str>,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
        );
        let rows: [Row; 13] = [
            // Before the first fire time: nothing.
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                None,
                "2026-03-02T08:59:59Z",
                None,
                None,
                "2026-03-02T09:00:00Z",
            ),
            // Exactly at it, and seconds after: due (a first fire on time).
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                None,
                "2026-03-02T09:00:00Z",
                Some("2026-03-02T09:00:00Z"),
                None,
                "2026-03-03T09:00:00Z",
            ),
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                None,
                "2026-03-02T09:00:59Z",
                Some("2026-03-02T09:00:00Z"),
                None,
                "2026-03-03T09:00:00Z",
            ),
            // Already enqueued: nothing until the next.
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                Some("2026-03-02T09:00:00Z"),
                "2026-03-02T09:30:00Z",
                None,
                None,
                "2026-03-03T09:00:00Z",
            ),
            // Grace is inclusive; a second later is late.
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                Some("2026-03-01T09:00:00Z"),
                "2026-03-02T10:00:00Z",
                Some("2026-03-02T09:00:00Z"),
                None,
                "2026-03-03T09:00:00Z",
            ),
            (
                "0 9 * * *",
                0,
                Skip,
                60,
                Some("2026-03-01T09:00:00Z"),
                "2026-03-02T10:00:01Z",
                None,
                Some("2026-03-02T09:00:00Z"),
                "2026-03-03T09:00:00Z",
            ),
            // Once: after downtime, the newest missed fire time, once.
            (
                "0 * * * *",
                0,
                Once,
                10,
                Some("2026-03-02T09:00:00Z"),
                "2026-03-02T13:30:00Z",
                Some("2026-03-02T13:00:00Z"),
                None,
                "2026-03-02T14:00:00Z",
            ),
            (
                "0 * * * *",
                0,
                Skip,
                10,
                Some("2026-03-02T09:00:00Z"),
                "2026-03-02T13:30:00Z",
                None,
                Some("2026-03-02T13:00:00Z"),
                "2026-03-02T14:00:00Z",
            ),
            // Once, but never fired before: no catching up.
            (
                "0 9 * * *",
                0,
                Once,
                60,
                None,
                "2026-03-02T15:00:00Z",
                None,
                None,
                "2026-03-03T09:00:00Z",
            ),
            // A fixed offset: 09:00 at +02:00 is 07:00 UTC; at -05:30, 14:30 UTC.
            (
                "0 9 * * *",
                7200,
                Skip,
                60,
                None,
                "2026-03-02T07:00:10Z",
                Some("2026-03-02T07:00:00Z"),
                None,
                "2026-03-03T07:00:00Z",
            ),
            (
                "0 9 * * *",
                -19800,
                Skip,
                60,
                None,
                "2026-03-02T14:31:00Z",
                Some("2026-03-02T14:30:00Z"),
                None,
                "2026-03-03T14:30:00Z",
            ),
            // Day of week in local time: Monday 00:30 at +01:00 is Sunday 23:30 UTC.
            (
                "30 0 * * MON",
                3600,
                Skip,
                60,
                None,
                "2026-03-01T23:40:00Z",
                Some("2026-03-01T23:30:00Z"),
                None,
                "2026-03-08T23:30:00Z",
            ),
            // A last fire recorded in the future (clock moved back): nothing.
            (
                "0 9 * * *",
                0,
                Once,
                60,
                Some("2026-03-05T09:00:00Z"),
                "2026-03-02T09:00:10Z",
                None,
                None,
                "2026-03-03T09:00:00Z",
            ),
        ];
        for (cron, offset, missed, grace, last, now, fire, skipped, next) in rows {
            let got = due(
                &schedule(cron, offset, missed, grace),
                last.map(at),
                at(now),
            );
            assert_eq!(
                got,
                Due {
                    fire: fire.map(at),
                    skipped: skipped.map(at),
                    next: Some(at(next)),
                },
                "{cron} at {offset}s, {missed:?}, last {last:?}, now {now}"
            );
        }
    }

    #[test]
    fn item_names_encode_the_fire_time_and_read_back() {
        let fire = at("2026-03-02T09:05:00Z");
        assert_eq!(item_name("review", fire), "review-20260302-0905");
        assert_eq!(fire_of("review", "review-20260302-0905"), Some(fire));
        // Another schedule's items, or other names, are not this one's.
        assert_eq!(fire_of("review", "review-weekly-20260302-0905"), None);
        assert_eq!(fire_of("review-weekly", "review-20260302-0905"), None);
        assert_eq!(fire_of("a", "a-20261123-20261123-0900"), None);
        assert_eq!(fire_of("review", "review-20260302-09050"), None);
        assert_eq!(fire_of("review", "review-2026030x-0905"), None);
        assert_eq!(fire_of("review", "review-20261302-0905"), None);
    }

    #[test]
    fn a_named_zone_follows_daylight_saving_time() {
        let mut s = schedule("0 9 * * *", 0, Missed::Skip, 5);
        s.zone = Zone::Named(chrono_tz::Europe::Berlin);
        // 09:00 in Berlin is 08:00Z in winter (CET) and 07:00Z in summer
        // (CEST); the clocks went forward on 2026-03-29.
        let d = due(&s, None, at("2026-03-27T08:00:30Z"));
        assert_eq!(d.fire, Some(at("2026-03-27T08:00:00Z")));
        let d = due(&s, None, at("2026-03-30T07:00:30Z"));
        assert_eq!(d.fire, Some(at("2026-03-30T07:00:00Z")));
        assert_eq!(d.next, Some(at("2026-03-31T07:00:00Z")));
        // 02:30 does not exist on 2026-03-29 in Berlin: it fires when the
        // clocks jump from 02:00 to 03:00 (01:00Z), as Vixie cron does.
        let mut gap = schedule("30 2 * * *", 0, Missed::Skip, 5);
        gap.zone = Zone::Named(chrono_tz::Europe::Berlin);
        let d = due(&gap, None, at("2026-03-28T12:00:00Z"));
        assert_eq!(d.next, Some(at("2026-03-29T01:00:00Z")));
        // 02:30 happens twice on 2026-10-25: it fires once.
        let first = due(&gap, None, at("2026-10-25T00:00:00Z"))
            .next
            .expect("next");
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        let after = due(&gap, Some(first), at("2026-10-25T01:30:30Z"));
        assert_eq!(after.fire, None, "the repeated wall time fired again");
        assert_eq!(after.next, Some(at("2026-10-26T01:30:00Z")));
    }
}
