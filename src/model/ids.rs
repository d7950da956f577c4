//! Identifiers: a task by plan and name, a commit by its 20-byte id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The plan of the autonomy loop's planner attempts (`runtime::autonomy`):
/// a name no plan file can have (names start with a letter or digit), so
/// that their branches `converge/_autonomy/<kind>-<n>` and run directories
/// are never taken for a plan's tasks.
pub const PLANNER_PLAN: &str = "_autonomy";

/// A task, by plan id and task name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    pub plan: String,
    pub task: String,
}

impl TaskKey {
    pub fn new(plan: impl Into<String>, task: impl Into<String>) -> Self {
        TaskKey {
            plan: plan.into(),
            task: task.into(),
        }
    }

    /// Whether this is a planner attempt of the autonomy loop ([`PLANNER_PLAN`]).
    pub fn is_planner(&self) -> bool {
        self.plan == PLANNER_PLAN
    }

    /// The task branch: `converge/<plan>/<task>`.
    pub fn branch(&self) -> String {
        format!("converge/{}/{}", self.plan, self.task)
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.plan, self.task)
    }
}

/// A commit (SHA-1) id: 20 bytes, written as 40 lowercase hex digits
/// (`Display`, `FromStr`, serde), exactly as git and every converge record
/// write it. It does not depend on gix: the git layer converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId([u8; 20]);

/// A string that is not 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a commit id (40 hex digits)")]
pub struct CommitIdError(pub String);

/// The first seven characters of a commit id written as text (all of it
/// when shorter): how every view, hint and message abbreviates one.
pub fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

impl CommitId {
    pub const fn from_bytes(bytes: [u8; 20]) -> Self {
        CommitId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The first 7 hex digits, as people read a commit id.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(7);
        text
    }

    /// Parses 40 hex digits, either case.
    pub fn from_hex(hex: &str) -> Result<Self, CommitIdError> {
        let digits = hex.as_bytes();
        let invalid = || CommitIdError(hex.to_owned());
        if digits.len() != 40 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 20];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let nibble = |d: u8| (d as char).to_digit(16).ok_or_else(invalid);
            let (high, low) = (nibble(pair[0])?, nibble(pair[1])?);
            // Both nibbles are below 16, so the byte fits.
            *byte = u8::try_from(high * 16 + low).map_err(|_| invalid())?;
        }
        Ok(CommitId(bytes))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A commit id equals the text that names it (40 hex digits, either case):
/// records and git's output compare without parsing at every call site.
impl PartialEq<str> for CommitId {
    fn eq(&self, other: &str) -> bool {
        CommitId::from_hex(other).is_ok_and(|id| id == *self)
    }
}

impl PartialEq<&str> for CommitId {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for CommitId {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl FromStr for CommitId {
    type Err = CommitIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommitId::from_hex(s)
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CommitId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn commit_ids_read_and_write_40_hex_digits() {
        let id: CommitId = HEX.parse().expect("hex");
        assert_eq!(id.to_string(), HEX);
        assert_eq!(id.as_bytes()[0], 0x01);
        assert_eq!(CommitId::from_bytes(*id.as_bytes()), id);
        assert_eq!(id, HEX);
        assert_eq!(id.short(), "0123456");
        assert_eq!(id, HEX.to_uppercase());
        assert!(id != HEX[1..]);
        let upper: CommitId = HEX.to_uppercase().parse().expect("either case");
        assert_eq!(upper, id);
        for bad in [
            "",
            "0123",
            &HEX[1..],
            &format!("{HEX}0"),
            &HEX.replace('a', "g"),
        ] {
            assert_eq!(
                bad.parse::<CommitId>(),
                Err(CommitIdError(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn commit_ids_serialize_as_their_hex_string() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Record {
            head: CommitId,
        }
        let record = Record {
            head: HEX.parse().expect("hex"),
        };
        let text = toml::to_string(&record).expect("encodes");
        assert_eq!(text, format!("head = \"{HEX}\"\n"));
        assert_eq!(toml::from_str::<Record>(&text).expect("decodes"), record);
        assert_eq!(
            serde_json::to_string(&record).expect("json"),
            format!("{{\"head\":\"{HEX}\"}}")
        );
        assert!(toml::from_str::<Record>("head = \"nope\"").is_err());
    }

    #[test]
    fn task_keys_name_their_branch() {
        let key = TaskKey::new("auth", "define-types");
        assert_eq!(key.branch(), "converge/auth/define-types");
        assert_eq!(key.to_string(), "auth/define-types");
    }
}
