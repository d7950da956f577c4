//! A fake GitHub for the GitHub forge's tests: an HTTP server in this test
//! binary that answers the REST calls converge makes with bodies shaped like
//! GitHub's (copied from real responses, tests/fixtures/github/), backed by a
//! real bare git repository: a push lands there, and merging a pull request
//! really merges, squashes or rebases there.
//!
//! Routes (below `/repos/{owner}/{repo}` unless absolute):
//!
//! | call | answer |
//! |---|---|
//! | `GET /user` | the token's user |
//! | `GET /pulls?state&base&head&sort&direction&per_page&page` | PR objects without the detail fields, `Link` pagination |
//! | `GET /pulls/{n}` | PR with `merged`, `mergeable`, `mergeable_state` (clean, blocked, dirty, unstable, behind, draft) |
//! | `POST /pulls` | 201; 422 when an open PR has the head, a branch is missing, or no commits differ |
//! | `PATCH /pulls/{n}` | title, body, base, state open/closed |
//! | `PUT /pulls/{n}/merge` | 200 `{sha, merged, message}`; 409 head moved; 405 not mergeable or blocked |
//! | `GET /pulls/{n}/reviews`, `GET /pulls/{n}/comments` | reviews, line comments |
//! | `GET /commits/{sha}/check-runs`, `GET /commits/{sha}/status` | check runs, combined status |
//! | `POST /statuses/{sha}` | 201 status |
//! | `GET /branches/{b}/protection/required_status_checks` and `.../required_pull_request_reviews` | 200, or 404 when not protected |
//! | `GET /rules/branches/{b}` | the rulesets' active rules (`required_status_checks`, `pull_request`, `deletion`); `[]` when none |
//! | `DELETE /git/refs/heads/{branch...}` | 204; 422 "Reference does not exist" |
//! | `POST /issues/{n}/labels`, `POST /issues/{n}/comments` | labels, 201 comment (PRs and issues) |
//! | `GET /issues?state&labels&creator`, `POST /issues`, `PATCH /issues/{n}` | issues only (no PRs) |
//!
//! Every answer carries the `x-ratelimit-*` headers; a GET answered 200 has an
//! ETag, and a GET whose `If-None-Match` matches is answered 304 without body
//! and without counting against the limit. A missing or wrong token is 401.

// The lead's forge tests use the parts of the fake these tests do not.
#![allow(dead_code)]

mod dashboard;
pub mod fake;
mod forge;
pub mod git;
mod issues;
mod json;
pub mod model;
mod routes;
mod runners;
mod speaks;
mod speaks_merge;

// The API the forge's tests import (`use crate::github::FakeGitHub`).
#[allow(unused_imports)]
pub use fake::{FakeGitHub, ReviewSpec};
#[allow(unused_imports)]
pub use git::MergeMethod;
#[allow(unused_imports)]
pub use model::{Fault, Logged, Protection};
