//! Saying so on GitHub when converge goes hands-off on a pull request
//! (someone else pushed to its branch; status records it as
//! `change.hands_off`): one comment saying why and what to do, and the
//! `converge:hands-off` label, once per pull request.
//!
//! Once is kept twice over: the pull requests told are noted in
//! `<git-common-dir>/converge/forge/hands_off.json` (so a tick sends nothing
//! for them), and on a fresh clone without that note the label on the pull
//! request says it was done (one conditional `GET` per hands-off pull
//! request). The comment goes first and the label last, so a crash between
//! them costs at most a second comment, never a silent pull request.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Client, ClientError};
use super::state::{read_json, write_json};
use crate::model::TaskKey;
use crate::status::Status;

/// The label on a pull request converge keeps its hands off.
pub const LABEL: &str = "converge:hands-off";

/// The hidden line in converge's hands-off comment.
pub const MARKER: &str = "<!-- converge:hands-off -->";

/// A pull request converge went hands-off on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandsOff {
    pub key: TaskKey,
    pub number: u64,
    pub why: String,
}

/// The pull requests status says converge keeps its hands off.
pub fn of_status(status: &Status) -> Vec<HandsOff> {
    let mut out = Vec::new();
    for (plan, p) in &status.plans {
        for (task, st) in &p.tasks {
            let Some(change) = &st.change else { continue };
            if let Some(why) = &change.hands_off {
                out.push(HandsOff {
                    key: TaskKey::new(plan, task),
                    number: change.number,
                    why: why.clone(),
                });
            }
        }
    }
    out
}

/// The comment: why, what converge no longer does, what a person can do.
pub fn comment(h: &HandsOff) -> String {
    let key = &h.key;
    format!(
        "converge keeps its hands off this pull request: {why}.\n\n\
         It no longer pushes to `{branch}`, updates this pull request or merges it. What you can do:\n\n\
         - if the work here is good, merge this pull request yourself: converge sees the merge and records task `{key}` as merged;\n\
         - to have converge do the task again instead, close this pull request, delete `{branch}` (converge never deletes commits it did not make) and run `converge retry {key}`: the new attempt opens a new pull request.\n\n\
         {MARKER}\n",
        why = h.why.trim_end_matches('.'),
        branch = key.branch(),
    )
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Told {
    numbers: BTreeSet<u64>,
}

#[derive(Debug, Deserialize)]
struct Labelled {
    state: String,
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Debug, Deserialize)]
struct Label {
    name: String,
}

/// Comments on and labels each of `hands_off` not told yet. What it did;
/// what was done before an error is noted.
pub fn tell(
    client: &Client,
    dir: &Path,
    hands_off: &[HandsOff],
) -> Result<Vec<String>, ClientError> {
    let path = dir.join("hands_off.json");
    let before = read_json::<Told>(&path).unwrap_or_default();
    // Only pull requests still hands-off are kept in the note.
    let mut told = Told {
        numbers: hands_off
            .iter()
            .map(|h| h.number)
            .filter(|n| before.numbers.contains(n))
            .collect(),
    };
    let mut lines = Vec::new();
    let result = hands_off
        .iter()
        .filter(|h| !before.numbers.contains(&h.number))
        .try_for_each(|h| {
            if tell_one(client, h)? {
                lines.push(format!(
                    "github: labelled pull request #{} `{LABEL}` and said why ({})",
                    h.number, h.key
                ));
            }
            told.numbers.insert(h.number);
            Ok(())
        });
    if told.numbers != before.numbers {
        write_json(&path, &told);
    }
    result.map(|()| lines)
}

/// Tells one pull request, unless it is closed or labelled already: whether
/// it did.
fn tell_one(client: &Client, h: &HandsOff) -> Result<bool, ClientError> {
    let number = h.number;
    let Some(pull) = client.get_optional::<Labelled>(&format!("/pulls/{number}"))? else {
        return Ok(false);
    };
    if pull.state != "open" || pull.labels.iter().any(|l| l.name == LABEL) {
        return Ok(false);
    }
    let reply = client.post(
        &format!("/issues/{number}/comments"),
        &json!({ "body": comment(h) }),
    )?;
    reply.ok("POST", "/issues/N/comments")?;
    let reply = client.post(
        &format!("/issues/{number}/labels"),
        &json!({ "labels": [LABEL] }),
    )?;
    reply.ok("POST", "/issues/N/labels")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ChangeRecord, PlanStatus, TaskStatus};

    #[test]
    fn only_changes_status_records_as_hands_off_are_told() {
        let change = |number: u64, hands_off: Option<&str>| ChangeRecord {
            number,
            pushed: "0123456789abcdef0123456789abcdef01234567"
                .parse()
                .expect("id"),
            opened_at: crate::time::Timestamp::from_unix(0),
            waiting: None,
            hands_off: hands_off.map(str::to_owned),
            updated: None,
        };
        let task = |c: Option<ChangeRecord>| TaskStatus {
            change: c,
            ..TaskStatus::default()
        };
        let mut status = Status::default();
        status.plans.insert(
            "p".into(),
            PlanStatus {
                tasks: [
                    (
                        "a".to_owned(),
                        task(Some(change(3, Some("someone pushed")))),
                    ),
                    ("b".to_owned(), task(Some(change(4, None)))),
                    ("c".to_owned(), task(None)),
                ]
                .into(),
                ..PlanStatus::default()
            },
        );
        assert_eq!(
            of_status(&status),
            [HandsOff {
                key: TaskKey::new("p", "a"),
                number: 3,
                why: "someone pushed".into(),
            }]
        );
    }

    #[test]
    fn the_comment_says_why_and_what_to_do_and_carries_the_marker() {
        let h = HandsOff {
            key: TaskKey::new("p", "a"),
            number: 7,
            why: "someone else pushed abc1234 to converge/p/a.".into(),
        };
        let c = comment(&h);
        assert!(
            c.starts_with("converge keeps its hands off this pull request: someone else pushed abc1234 to converge/p/a.\n"),
            "{c}"
        );
        assert!(c.contains("merge this pull request yourself"), "{c}");
        assert!(c.contains("`converge retry p/a`"), "{c}");
        assert!(c.trim_end().ends_with(MARKER), "{c}");
    }
}
