//! The fake GitHub of the test binary (tests/cli/github/), without its
//! tests: the same server and bare repository, compiled into the forge bench.

#[path = "../../tests/cli/github/fake.rs"]
pub mod fake;
#[path = "../../tests/cli/github/git.rs"]
pub mod git;
#[path = "../../tests/cli/github/issues.rs"]
mod issues;
#[path = "../../tests/cli/github/json.rs"]
mod json;
#[path = "../../tests/cli/github/model.rs"]
pub mod model;
#[path = "../../tests/cli/github/routes.rs"]
mod routes;
