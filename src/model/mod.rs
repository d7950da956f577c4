//! The words every layer shares: task keys and commit ids ([`ids`]), and the
//! stable codes converge records and explains itself with ([`codes`]).
//!
//! Pure: no IO, no git. A code's spelling is part of the record format
//! (status TOML, `--json`, STATUS.md), so each vocabulary is one enum whose
//! serde name and [`as_str`](FailureCode::as_str) are the same string, listed
//! once in `ALL`, in the order the documentation lists it.

pub mod codes;
pub mod ids;

pub use codes::{AttemptOutcome, ConditionKind, EventKind, FailureCode, LoopCode, UnknownCode};
pub use ids::{CommitId, CommitIdError, PLANNER_PLAN, TaskKey, short};

/// Reads a recorded code or id leniently (serde's `deserialize_with`): text
/// that does not parse as a `T` reads as absent, so that one damaged value
/// does not cost the rest of its record (status rebuilds it from
/// observation; a run record goes on without it). A value of another type
/// than text still fails the record.
pub fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
{
    let text = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// A recorded code as it was read: one this version knows, or the text of one
/// it does not (a later version's code, a hand edit). The text is kept, so
/// that writing the record back loses nothing of the history it holds; code
/// that acts on the value sees only [`Recorded::known`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded<T> {
    Known(T),
    Unknown(String),
}

impl<T: Copy> Recorded<T> {
    /// The value, when this version knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Recorded::Known(value) => Some(*value),
            Recorded::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for Recorded<T> {
    fn from(value: T) -> Self {
        Recorded::Known(value)
    }
}

impl<T: serde::Serialize> serde::Serialize for Recorded<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Recorded::Known(value) => value.serialize(serializer),
            Recorded::Unknown(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de, T: std::str::FromStr> serde::Deserialize<'de> for Recorded<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.parse() {
            Ok(value) => Recorded::Known(value),
            Err(_) => Recorded::Unknown(text),
        })
    }
}
