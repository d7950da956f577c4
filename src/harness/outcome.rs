//! How an agent CLI's attempt ended, from what its event stream said: the
//! classification the reconciler acts on when an attempt did not finish
//! (design §5: a rate limit cools the harness down and does not use up an
//! attempt; refused credentials escalate; the rest fail with a reason code).
//! Pure: the stream's summary in, a verdict out.

use std::time::Duration;

use super::stream::{ErrorKind, Summary};
use crate::model::FailureCode;
use crate::time::Timestamp;

/// A rate limit that names no end cools its harness down this long.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5 * 60);

/// The shortest cooldown: a reset time already past (clock skew, a stale
/// message) still waits a little.
pub const MIN_COOLDOWN: Duration = Duration::from_secs(30);

/// How an unfinished attempt of a stream harness ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A rate limit or usage window: the harness cools down until `until`,
    /// and the attempt does not count against `retry_max`.
    RateLimited { until: Timestamp, message: String },
    /// The model API refused the credentials: retrying cannot help until a
    /// human fixes them.
    Authentication { message: String },
    /// Any other failure, with its reason code.
    Failed {
        reason: FailureCode,
        message: String,
    },
}

/// Classifies an attempt that did not finish (`converge done` missing, or the
/// CLI exited non-zero) by what its stream said. `None`: the stream says
/// nothing more than the exit did.
pub fn ending(summary: &Summary, exit_code: Option<i32>, now: Timestamp) -> Option<Ending> {
    if let Some(error) = &summary.error {
        let message = format!("the agent CLI reported: {}", error.message);
        return Some(match error.kind {
            ErrorKind::RateLimit => {
                let until = error
                    .retry_at
                    .unwrap_or_else(|| now.plus(DEFAULT_COOLDOWN))
                    .max(now.plus(MIN_COOLDOWN));
                Ending::RateLimited { until, message }
            }
            ErrorKind::Authentication => Ending::Authentication { message },
            ErrorKind::ContextOverflow => Ending::Failed {
                reason: FailureCode::ContextOverflow,
                message,
            },
            ErrorKind::Api => Ending::Failed {
                reason: FailureCode::ApiError,
                message,
            },
        });
    }
    if !summary.denied_tools.is_empty() {
        let mut tools = summary.denied_tools.clone();
        tools.sort();
        tools.dedup();
        return Some(Ending::Failed {
            reason: FailureCode::ToolDenied,
            message: format!(
                "the agent stopped after the CLI refused it {}; converge allows editing the worktree, the task's invariants and the converge agent commands (docs/agent-protocol.md)",
                tools.join(", ")
            ),
        });
    }
    if !summary.finished && exit_code != Some(0) {
        let how = exit_code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
        return Some(Ending::Failed {
            reason: FailureCode::Crashed,
            message: format!(
                "the agent CLI exited with {how} before it finished its run ({} events read)",
                summary.events
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::stream::StreamError;

    const NOW: Timestamp = Timestamp::from_unix(1_000_000);

    fn failed(kind: ErrorKind, retry_at: Option<Timestamp>) -> Summary {
        Summary {
            finished: true,
            error: Some(StreamError {
                kind,
                message: "boom".into(),
                retry_at,
            }),
            ..Summary::default()
        }
    }

    #[test]
    fn rate_limits_cool_down_until_their_reset_or_a_default() {
        let at = NOW.plus(Duration::from_secs(3600));
        let until = |s: &Summary| match ending(s, Some(1), NOW) {
            Some(Ending::RateLimited { until, .. }) => until,
            other => panic!("{other:?}"),
        };
        assert_eq!(until(&failed(ErrorKind::RateLimit, Some(at))), at);
        assert_eq!(
            until(&failed(ErrorKind::RateLimit, None)),
            NOW.plus(DEFAULT_COOLDOWN)
        );
        // A reset in the past still waits a little.
        assert_eq!(
            until(&failed(ErrorKind::RateLimit, Some(NOW))),
            NOW.plus(MIN_COOLDOWN)
        );
    }

    #[test]
    fn each_failure_has_its_reason() {
        let reason = |s: &Summary, exit: Option<i32>| match ending(s, exit, NOW) {
            Some(Ending::Failed { reason, .. }) => Some(reason.as_str()),
            Some(Ending::Authentication { .. }) => Some("authentication"),
            Some(Ending::RateLimited { .. }) => Some("rate-limited"),
            None => None,
        };
        assert_eq!(
            reason(&failed(ErrorKind::Authentication, None), Some(1)),
            Some("authentication")
        );
        assert_eq!(
            reason(&failed(ErrorKind::ContextOverflow, None), Some(1)),
            Some("context-overflow")
        );
        assert_eq!(
            reason(&failed(ErrorKind::Api, None), Some(1)),
            Some("api-error")
        );
        let denied = Summary {
            finished: true,
            denied_tools: vec!["Bash".into(), "WebFetch".into(), "Bash".into()],
            ..Summary::default()
        };
        assert_eq!(reason(&denied, Some(0)), Some("tool-denied"));
        let torn = Summary {
            events: 4,
            ..Summary::default()
        };
        assert_eq!(reason(&torn, Some(137)), Some("crashed"));
        assert_eq!(reason(&torn, None), Some("crashed"));
        // A clean exit without `converge done` is for the exit check to say.
        let quiet = Summary {
            finished: true,
            ..Summary::default()
        };
        assert_eq!(reason(&quiet, Some(0)), None);
    }
}
