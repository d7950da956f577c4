//! The validated desired state. Everything here has passed validation: names are
//! safe, references resolve, the task graph is a DAG, defaults are applied.
//!
//! `config.rs` holds what `converge.toml` says; `plan.rs` what plans, queue
//! items and approvals say. Both are re-exported here.

mod config;
mod plan;

use std::collections::BTreeMap;

use serde::Serialize;

pub use config::*;
pub use plan::*;

/// The name of the implicit plan that promoted queue items join.
pub const QUEUE_PLAN: &str = "queue";

/// Everything converge was asked to do, read from one `planning/` tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub config: Config,
    /// `planning/goal.md`, given to every agent.
    pub goal: String,
    /// `planning/capabilities.md`.
    pub capabilities: String,
    /// Valid plans by id (the file stem of `planning/plans/<id>.toml`).
    pub plans: BTreeMap<String, Plan>,
    /// Ids of plans that failed validation: converge does not act on them.
    pub invalid_plans: Vec<String>,
    /// Valid queue items by name (file stem of `planning/queue/<name>.md`).
    pub queue: BTreeMap<String, QueueItem>,
    /// Human decisions by (plan, task).
    pub approvals: BTreeMap<(String, String), Approval>,
    /// Names of files under `planning/queue/templates/`.
    pub templates: Vec<String>,
}

mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::spec::duration::format(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        crate::spec::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

mod option_duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&crate::spec::duration::format(*d)),
            None => s.serialize_none(),
        }
    }
}
