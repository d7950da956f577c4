//! PURE: when the daemon ticks. Triggers (file events, the decision's wake
//! time, the resync interval, SIGHUP, a webhook, a tick that left more to do) are
//! collected into one pending batch; a tick starts when the batch is not empty
//! and no tick runs. While a tick runs, triggers only join the next batch: any
//! number of them gives one more tick. The clock is passed in, so the state
//! machine is tested without timers.

use std::time::{Duration, Instant};

/// Why a tick runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The daemon just started.
    Start,
    /// A file event: planning/, the refs, an agent's exit record.
    Files,
    /// The decision's wake time passed (a backoff, a cooldown, a deadline).
    Wake,
    /// The resync interval passed without any other trigger.
    Resync,
    /// SIGHUP.
    Hangup,
    /// A signed delivery on `POST /webhook/github`.
    Webhook,
    /// The last tick acted and the next one has actions too.
    Again,
    /// The last tick could not run (the lock was busy, or it failed).
    Retry,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Start => "start",
            Cause::Files => "files",
            Cause::Wake => "wake",
            Cause::Resync => "resync",
            Cause::Hangup => "sighup",
            Cause::Webhook => "webhook",
            Cause::Again => "again",
            Cause::Retry => "retry",
        }
    }
}

/// What a finished tick tells the triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Tick again right away (it acted and more is to do).
    pub again: bool,
    /// When the decision wants a tick without any event (`wake_at`), or
    /// when to retry a tick that could not run.
    pub wake_in: Option<Duration>,
    /// The next resync, jitter included.
    pub resync_in: Duration,
    /// `wake_in` is a retry (the tick did not run), not a decision's wake.
    pub retry: bool,
}

/// What a stop signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The first: finish the current tick (if any), then exit.
    Graceful,
    /// The second: exit at once.
    Abort,
}

/// The coalescing state machine.
#[derive(Debug)]
pub struct Triggers {
    pending: Vec<Cause>,
    running: bool,
    stopping: bool,
    wake_at: Option<(Instant, Cause)>,
    resync_at: Instant,
    /// When file events seen so far become a trigger (`SETTLE` after the
    /// first, and not sooner than `FILES_GAP` after the last such tick).
    files_at: Option<Instant>,
    /// When the last tick with file events in its batch started.
    last_files_tick: Option<Instant>,
}

/// How long file events settle before they trigger: a commit writes several
/// files within a few milliseconds, and they are one trigger.
pub const SETTLE: Duration = Duration::from_millis(15);

/// The least time between two ticks started by file events: a stream of
/// commits (or a tick's own writes) gives at most ten ticks a second.
pub const FILES_GAP: Duration = Duration::from_millis(100);

/// A wake time never comes sooner than this after a tick: a decision whose
/// wake time has already passed (second resolution) does not spin.
pub const MIN_WAKE: Duration = Duration::from_millis(500);

impl Triggers {
    /// The first tick is due at once.
    pub fn new(now: Instant, resync: Duration) -> Triggers {
        Triggers {
            pending: vec![Cause::Start],
            running: false,
            stopping: false,
            wake_at: None,
            resync_at: now + resync,
            files_at: None,
            last_files_tick: None,
        }
    }

    /// A file event arrived at `now`: it triggers a tick once the burst it
    /// belongs to settled, and never sooner than `FILES_GAP` after the last
    /// tick that file events started.
    pub fn file_event(&mut self, now: Instant) {
        if self.files_at.is_some() {
            return;
        }
        let gap = self.last_files_tick.map(|t| t + FILES_GAP);
        self.files_at = Some(gap.map_or(now + SETTLE, |g| g.max(now + SETTLE)));
    }

    /// Adds a trigger to the next batch.
    pub fn fire(&mut self, cause: Cause) {
        if !self.pending.contains(&cause) {
            self.pending.push(cause);
        }
    }

    /// Moves the deadlines that passed at `now` into the batch.
    pub fn due(&mut self, now: Instant) {
        if let Some(at) = self.files_at
            && at <= now
            && !self.running
        {
            self.files_at = None;
            self.fire(Cause::Files);
        }
        if let Some((at, cause)) = self.wake_at
            && at <= now
        {
            self.wake_at = None;
            self.fire(cause);
        }
        if self.resync_at <= now && !self.running {
            self.fire(Cause::Resync);
        }
    }

    /// Starts a tick if one is due: returns its batch of causes. Nothing
    /// starts while a tick runs or once a stop was asked for.
    pub fn start(&mut self) -> Option<Vec<Cause>> {
        if self.running || self.stopping || self.pending.is_empty() {
            return None;
        }
        self.running = true;
        let mut batch = std::mem::take(&mut self.pending);
        // Events already seen are seen by this tick too: no tick of their own.
        if self.files_at.take().is_some() && !batch.contains(&Cause::Files) {
            batch.push(Cause::Files);
        }
        batch.sort();
        Some(batch)
    }

    /// [`Triggers::start`] at `now`, which it notes when file events are in
    /// the batch (the gap between such ticks counts from there).
    pub fn start_at(&mut self, now: Instant) -> Option<Vec<Cause>> {
        let batch = self.start()?;
        if batch.contains(&Cause::Files) {
            self.last_files_tick = Some(now);
        }
        Some(batch)
    }

    /// The tick that started ended at `now`.
    pub fn finished(&mut self, now: Instant, done: Finished) {
        self.running = false;
        self.resync_at = now + done.resync_in;
        let cause = if done.retry {
            Cause::Retry
        } else {
            Cause::Wake
        };
        self.wake_at = done.wake_in.map(|d| (now + d.max(MIN_WAKE), cause));
        if done.again {
            self.fire(Cause::Again);
        }
    }

    /// When the loop must look again without any event: the earliest
    /// deadline. `None` while a tick runs (its end is an event).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        let resync = Some(self.resync_at);
        let wake = self.wake_at.map(|(at, _)| at);
        resync.into_iter().chain(wake).chain(self.files_at).min()
    }

    /// A stop signal arrived.
    pub fn stop(&mut self) -> Stop {
        if self.stopping {
            Stop::Abort
        } else {
            self.stopping = true;
            Stop::Graceful
        }
    }

    /// Stopping and no tick runs: the daemon may exit.
    pub fn done(&self) -> bool {
        self.stopping && !self.running
    }

    pub fn running(&self) -> bool {
        self.running
    }
}

/// `interval` scaled by a factor in [0.9, 1.1) drawn from `random`, so that
/// daemons started together do not resync together.
pub fn jittered(interval: Duration, random: u64) -> Duration {
    // 2,000 steps of 0.01 %.
    let step = (random % 2000) as f64;
    interval.mul_f64(0.9 + step / 10_000.0)
}

/// A small generator for the jitter (xorshift); not for anything secret.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn idle(resync: Duration) -> Finished {
        Finished {
            again: false,
            wake_in: None,
            resync_in: resync,
            retry: false,
        }
    }

    #[test]
    fn the_first_tick_runs_at_once_and_nothing_else_until_a_trigger() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        assert_eq!(t.start(), Some(vec![Cause::Start]));
        assert_eq!(t.start(), None, "one tick at a time");
        t.finished(t0, idle(MIN));
        t.due(t0 + Duration::from_secs(10));
        assert_eq!(t.start(), None);
        assert_eq!(t.next_deadline(), Some(t0 + MIN));
    }

    #[test]
    fn triggers_during_a_tick_give_exactly_one_more_tick() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start().expect("first");
        for _ in 0..1000 {
            t.fire(Cause::Files);
            assert_eq!(t.start(), None);
        }
        t.fire(Cause::Hangup);
        assert_eq!(t.next_deadline(), None, "a running tick's end is the event");
        t.finished(t0, idle(MIN));
        assert_eq!(t.start(), Some(vec![Cause::Files, Cause::Hangup]));
        t.finished(t0, idle(MIN));
        assert_eq!(t.start(), None);
    }

    #[test]
    fn a_wake_time_fires_once_and_never_sooner_than_the_minimum() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start().expect("first");
        t.finished(
            t0,
            Finished {
                wake_in: Some(Duration::ZERO),
                ..idle(MIN)
            },
        );
        assert_eq!(t.next_deadline(), Some(t0 + MIN_WAKE));
        t.due(t0 + Duration::from_millis(100));
        assert_eq!(t.start(), None, "a wake in the past does not spin");
        t.due(t0 + MIN_WAKE);
        assert_eq!(t.start(), Some(vec![Cause::Wake]));
        t.finished(t0 + MIN_WAKE, idle(MIN));
        t.due(t0 + Duration::from_secs(2));
        assert_eq!(t.start(), None, "the wake fired once");
    }

    #[test]
    fn resync_fires_when_nothing_else_does_and_is_pushed_back_by_each_tick() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start().expect("first");
        t.finished(t0, idle(MIN));
        t.fire(Cause::Files);
        let t1 = t0 + Duration::from_secs(30);
        t.start().expect("files");
        t.finished(t1, idle(MIN));
        t.due(t0 + MIN);
        assert_eq!(t.start(), None, "the resync moved with the last tick");
        t.due(t1 + MIN);
        assert_eq!(t.start(), Some(vec![Cause::Resync]));
    }

    #[test]
    fn a_tick_that_left_work_runs_again_and_a_retry_is_named() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start().expect("first");
        t.finished(
            t0,
            Finished {
                again: true,
                ..idle(MIN)
            },
        );
        assert_eq!(t.start(), Some(vec![Cause::Again]));
        t.finished(
            t0,
            Finished {
                wake_in: Some(Duration::from_secs(1)),
                retry: true,
                ..idle(MIN)
            },
        );
        t.due(t0 + Duration::from_secs(1));
        assert_eq!(t.start(), Some(vec![Cause::Retry]));
    }

    #[test]
    fn the_first_stop_waits_for_the_tick_and_the_second_aborts() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start().expect("first");
        assert_eq!(t.stop(), Stop::Graceful);
        assert!(!t.done(), "the tick is still running");
        t.fire(Cause::Files);
        t.finished(t0, idle(MIN));
        assert!(t.done());
        assert_eq!(t.start(), None, "no tick starts once stopping");
        assert_eq!(t.stop(), Stop::Abort);
    }

    #[test]
    fn file_events_settle_then_tick_and_a_stream_ticks_at_most_every_gap() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start_at(t0).expect("first");
        t.finished(t0, idle(MIN));
        // A commit: several events within a few milliseconds.
        let c = t0 + Duration::from_secs(1);
        for ms in 0..5 {
            t.file_event(c + Duration::from_millis(ms));
        }
        assert_eq!(t.next_deadline(), Some(c + SETTLE));
        t.due(c + SETTLE - Duration::from_millis(1));
        assert_eq!(t.start_at(c), None, "still settling");
        t.due(c + SETTLE);
        assert_eq!(t.start_at(c + SETTLE), Some(vec![Cause::Files]));
        // Events during the tick (its own writes, or the next commit) wait
        // for the gap since that tick started.
        t.file_event(c + SETTLE + Duration::from_millis(2));
        let end = c + SETTLE + Duration::from_millis(10);
        t.finished(end, idle(MIN));
        assert_eq!(t.next_deadline(), Some(c + SETTLE + FILES_GAP));
        t.due(end + SETTLE);
        assert_eq!(t.start_at(end + SETTLE), None, "within the gap");
        t.due(c + SETTLE + FILES_GAP);
        assert_eq!(t.start_at(c + SETTLE + FILES_GAP), Some(vec![Cause::Files]));
        t.finished(c + SETTLE + FILES_GAP, idle(MIN));
        // A stream of events for a second: at most one tick per gap.
        let s = t0 + Duration::from_secs(5);
        let mut ticks = 0;
        for ms in 0..1000u64 {
            let now = s + Duration::from_millis(ms);
            t.file_event(now);
            t.due(now);
            if t.start_at(now).is_some() {
                ticks += 1;
                t.finished(now + Duration::from_millis(5), idle(MIN));
            }
        }
        assert!((9..=11).contains(&ticks), "{ticks} ticks in a second");
    }

    #[test]
    fn a_tick_that_starts_for_another_cause_takes_the_settling_events_along() {
        let t0 = Instant::now();
        let mut t = Triggers::new(t0, MIN);
        t.start_at(t0).expect("first");
        t.finished(t0, idle(MIN));
        t.file_event(t0 + Duration::from_secs(1));
        t.fire(Cause::Hangup);
        assert_eq!(
            t.start_at(t0 + Duration::from_secs(1)),
            Some(vec![Cause::Files, Cause::Hangup])
        );
        t.finished(t0 + Duration::from_secs(1), idle(MIN));
        t.due(t0 + Duration::from_secs(2));
        assert_eq!(t.start_at(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut j = Jitter::new(7);
        let base = Duration::from_secs(300);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..10_000 {
            let d = jittered(base, j.draw());
            assert!(d >= Duration::from_secs(270) && d < Duration::from_secs(330));
            seen.insert(d.as_secs());
        }
        assert!(seen.len() > 50, "spread: {seen:?}");
    }
}
