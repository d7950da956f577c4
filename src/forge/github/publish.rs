//! After a tick has recorded (and pushed) status: say on GitHub what status
//! says. Pull requests converge went hands-off on are labelled and told why
//! ([`super::hands_off`]); the dashboard issue mirrors STATUS.md
//! ([`super::dashboard`]).
//!
//! Nothing here fails a tick: a cooling or failing GitHub only means it is
//! tried again on the next tick (what was done is noted, what was not is
//! compared again). Each part sends nothing when there is nothing new.

use super::client::ClientError;
use super::{dashboard, hands_off};
use crate::rundir::Layout;
use crate::spec::Github;
use crate::status::Status;

/// What a tick publishes: status after the tick, and STATUS.md as the
/// status branch holds it.
#[derive(Debug)]
pub struct Published<'a> {
    pub status: &'a Status,
    /// STATUS.md at the status branch's tip (`None`: not written yet).
    pub status_md: Option<&'a str>,
    pub status_branch: &'a str,
}

/// Publishes `what` to the repository `config` names, with the tick's
/// client. Lines
/// for the tick's report: what was done, and what failed for another
/// reason than a cooldown (those are said where the forge is observed).
pub fn publish(
    common_dir: &std::path::Path,
    config: &Github,
    session: &super::session::Session<'_>,
    what: &Published<'_>,
) -> Vec<String> {
    let told = hands_off::of_status(what.status);
    if told.is_empty() && config.dashboard.is_none() {
        return Vec::new();
    }
    let dir = Layout::new(common_dir).forge();
    let client = match session.client(common_dir, config) {
        None => return Vec::new(),
        Some(Ok(client)) => client,
        Some(Err(e)) => return vec![failed("publish to github", &e)],
    };
    let mut lines = Vec::new();
    match hands_off::tell(&client, &dir, &told) {
        Ok(done) => lines.extend(done),
        Err(e) => lines.extend(quiet_if_cooling("label hands-off pull requests", &e)),
    }
    if let (Some(title), Some(md)) = (&config.dashboard, what.status_md) {
        let link = dashboard::link(&config.api_url, &config.repo, what.status_branch);
        let body = dashboard::body(md, what.status_branch, link.as_deref());
        match dashboard::sync(&client, &dir, title, &body) {
            Ok(done) => lines.extend(done),
            Err(e) => lines.extend(quiet_if_cooling("update the dashboard issue", &e)),
        }
    }
    lines
}

fn quiet_if_cooling(what: &str, e: &ClientError) -> Option<String> {
    if let ClientError::Cooling { .. } = e {
        tracing::debug!(error = %e, "{what} waits for the next tick");
        return None;
    }
    Some(failed(what, e))
}

fn failed(what: &str, e: &ClientError) -> String {
    tracing::warn!(error = %e, "cannot {what}");
    format!(
        "github: cannot {what} ({}); tried again next tick",
        crate::check::error_chain(e)
    )
}
