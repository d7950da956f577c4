//! The dashboard issue: one issue per repository whose body mirrors
//! STATUS.md (as committed on the status branch), Renovate-style.
//!
//! converge finds its issue again by a hidden marker in the body, among the
//! issues carrying the dashboard label (so a crash between opening the issue
//! and noting its number opens no second one, and a person's issue with the
//! same title is never taken over). It notes the issue's number and a digest
//! of the title and body it last sent in
//! `<git-common-dir>/converge/forge/dashboard.json`: a tick whose STATUS.md
//! did not change sends nothing; one whose STATUS.md changed sends one
//! `PATCH`. Rendering the body is pure; [`sync`] is the only part that talks
//! to GitHub.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::{Client, ClientError};
use super::state::{read_json, write_json};

/// The hidden line that names converge's dashboard issue.
pub const MARKER: &str = "<!-- converge:dashboard -->";

/// The label on the dashboard issue (the lookup lists issues by it).
pub const LABEL: &str = "converge:dashboard";

/// GitHub's longest issue body, in characters.
pub const MAX_BODY: usize = 65_536;

/// Pages of labelled issues looked through for the marker at most.
const PAGES: u32 = 10;

/// The body of the dashboard issue: the marker, a line saying what the issue
/// is, and `status_md`; cut at a line boundary, with a note saying where the
/// rest is, when GitHub would refuse it whole.
pub fn body(status_md: &str, status_branch: &str, link: Option<&str>) -> String {
    let place = match link {
        Some(url) => format!("[`planning/STATUS.md`]({url}) on the `{status_branch}` branch"),
        None => format!("`planning/STATUS.md` on the `{status_branch}` branch"),
    };
    let head = format!(
        "{MARKER}\n> This issue mirrors {place}. converge edits it when status changes; edits made here are overwritten.\n\n"
    );
    let whole = format!("{head}{status_md}");
    if whole.chars().count() <= MAX_BODY {
        return whole;
    }
    let note = format!(
        "\n…\n\n**Truncated**: GitHub keeps at most {MAX_BODY} characters in an issue. The whole dashboard is {place}.\n"
    );
    let mut budget = MAX_BODY - head.chars().count() - note.chars().count();
    let mut out = head;
    for line in status_md.split_inclusive('\n') {
        let n = line.chars().count();
        if n > budget {
            break;
        }
        budget -= n;
        out.push_str(line);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&note);
    out
}

/// The web address of STATUS.md on the status branch, when the API's root
/// says where the web interface is (GitHub.com, GitHub Enterprise Server's
/// `https://HOST/api/v3`).
pub fn link(api_url: &str, repo: &str, status_branch: &str) -> Option<String> {
    let web = if api_url == "https://api.github.com" {
        "https://github.com".to_owned()
    } else {
        api_url.strip_suffix("/api/v3")?.to_owned()
    };
    Some(format!(
        "{web}/{repo}/blob/{status_branch}/planning/STATUS.md"
    ))
}

/// What converge noted of its dashboard issue.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Noted {
    number: Option<u64>,
    /// The digest of the title and body last sent (or found on GitHub).
    digest: String,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    /// Set on the pull requests the issues API lists too.
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

fn digest(title: &str, body: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(title.as_bytes());
    hash.update([0]);
    hash.update(body.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Brings the dashboard issue in line with `title` and `body`: nothing sent
/// when they are what converge last sent; else the issue it noted edited,
/// or found again by its marker, or opened. What it did, if anything.
pub fn sync(
    client: &Client,
    dir: &Path,
    title: &str,
    body: &str,
) -> Result<Option<String>, ClientError> {
    let path = dir.join("dashboard.json");
    let noted = read_json::<Noted>(&path).unwrap_or_default();
    let wanted = digest(title, body);
    if noted.number.is_some() && noted.digest == wanted {
        return Ok(None);
    }
    let note = |number: u64| {
        write_json(
            &path,
            &Noted {
                number: Some(number),
                digest: wanted.clone(),
            },
        );
    };
    let edit = json!({ "title": title, "body": body });
    if let Some(number) = noted.number {
        let reply = client.patch(&format!("/issues/{number}"), &edit)?;
        match reply.status {
            200 => {
                note(number);
                return Ok(Some(format!(
                    "github: updated the dashboard issue #{number}"
                )));
            }
            // Deleted or transferred: found again, or opened anew.
            404 | 410 => {}
            _ => return Err(reply.error("PATCH", "/issues/N")),
        }
    }
    if let Some(found) = find(client)? {
        if found.title == title && found.body.as_deref() == Some(body) {
            note(found.number);
            return Ok(None);
        }
        let number = found.number;
        let reply = client.patch(&format!("/issues/{number}"), &edit)?;
        if reply.status != 200 {
            return Err(reply.error("PATCH", "/issues/N"));
        }
        note(number);
        return Ok(Some(format!(
            "github: updated the dashboard issue #{number}"
        )));
    }
    let reply = client.post(
        "/issues",
        &json!({ "title": title, "body": body, "labels": [LABEL] }),
    )?;
    if reply.status != 201 {
        return Err(reply.error("POST", "/issues"));
    }
    let opened: Issue = reply.json("POST", "/issues")?;
    note(opened.number);
    Ok(Some(format!(
        "github: opened the dashboard issue #{}",
        opened.number
    )))
}

/// converge's dashboard issue, open or closed: the oldest issue with the
/// dashboard label whose body carries the marker.
fn find(client: &Client) -> Result<Option<Issue>, ClientError> {
    for page in 1..=PAGES {
        let issues: Vec<Issue> = client.get(&format!(
            "/issues?state=all&labels={LABEL}&sort=created&direction=asc&per_page=100&page={page}"
        ))?;
        let full = issues.len() == 100;
        let mine = issues.into_iter().find(|i| {
            i.pull_request.is_none()
                && i.body
                    .as_deref()
                    .is_some_and(|b| b.lines().any(|l| l.trim() == MARKER))
        });
        if mine.is_some() || !full {
            return Ok(mine);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_marker_and_status_md_whole_when_it_fits() {
        let md = "# converge status\n\n| task | phase |\n|---|---|\n| p/a | merged |\n";
        let b = body(md, "converge/status", None);
        assert!(b.starts_with(MARKER), "{b}");
        assert!(b.ends_with(md), "{b}");
        assert!(b.contains("`planning/STATUS.md` on the `converge/status` branch"));
        assert!(!b.contains("Truncated"));
    }

    #[test]
    fn a_status_md_too_long_for_github_is_cut_at_a_line_with_a_note() {
        let line = "| p/task | escalated | ü a long reason that repeats |\n";
        let md: String = line.repeat(MAX_BODY / line.chars().count() + 50);
        let url = link("https://api.github.com", "acme/widgets", "converge/status");
        let b = body(&md, "converge/status", url.as_deref());
        let n = b.chars().count();
        assert!(n <= MAX_BODY, "{n}");
        // Nearly all the room is used, whole lines only, the marker kept.
        assert!(n > MAX_BODY - 2 * line.chars().count(), "{n}");
        assert!(b.starts_with(MARKER));
        let kept = b.split("\n…\n").next().unwrap_or_default();
        assert!(kept.ends_with(line), "a line was cut");
        assert!(
            b.contains("**Truncated**")
                && b.contains(
                    "https://github.com/acme/widgets/blob/converge/status/planning/STATUS.md"
                ),
            "{}",
            &b[b.len() - 400..]
        );
    }

    #[test]
    fn the_web_link_is_derived_only_where_the_api_root_says_where_the_web_is() {
        assert_eq!(
            link("https://ghe.example.com/api/v3", "a/b", "s").as_deref(),
            Some("https://ghe.example.com/a/b/blob/s/planning/STATUS.md")
        );
        assert_eq!(link("http://127.0.0.1:8080", "a/b", "s"), None);
    }

    #[test]
    fn the_digest_changes_with_the_title_or_the_body() {
        let d = digest("t", "b");
        assert_eq!(d.len(), 64);
        assert_eq!(d, digest("t", "b"));
        assert_ne!(d, digest("t2", "b"));
        assert_ne!(d, digest("t", "b2"));
        assert_ne!(digest("ab", "c"), digest("a", "bc"));
    }
}
