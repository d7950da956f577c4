//! `planning/converge.toml`: limits, invariants, harnesses, forge, schedules,
//! sandbox, budget, prices, the daemon's HTTP endpoints and autonomy. One file per table reads it key by key into the
//! [`Config`] model; this file walks the tables in order and checks what spans
//! them (the default harness against the harnesses).

mod autonomy;
mod budget;
mod forge;
mod harness;
mod invariants;
mod merge;
mod reconcile;
mod sandbox;
mod schedule;
mod serve;

use std::collections::BTreeMap;

use super::diag::Code;
use super::model::{
    Autonomy, BUILTIN_HARNESSES, Budget, Config, Forge, Harness, Merge, Reconcile, Sandbox, Serve,
};
use super::toml_walk::{Ctx, SourceFile, Table};

pub use harness::HARNESS_ALIASES;
pub(crate) use harness::{resolve_harness, unknown_harness_hint};
pub(crate) use invariants::{unknown_invariant, unknown_invariant_hint};
pub(crate) use reconcile::check_branch_name;

pub const CONFIG_PATH: &str = "planning/converge.toml";

const ROOT_KEYS: &[&str] = &[
    "reconcile",
    "invariants",
    "merge",
    "harness",
    "forge",
    "schedule",
    "sandbox",
    "budget",
    "prices",
    "serve",
    "autonomy",
];

/// The configuration and whether it was free of errors. A configuration with
/// errors still yields best-effort values so that plans can be checked against it
/// and every problem is reported in one run.
#[derive(Debug)]
pub struct CompiledConfig {
    pub config: Config,
    pub valid: bool,
}

/// The configuration used when `planning/converge.toml` does not exist.
pub(crate) fn default_config() -> Config {
    let mut harnesses = BTreeMap::new();
    for (name, kind) in BUILTIN_HARNESSES {
        harnesses.insert((*name).to_owned(), Harness::builtin(name, *kind));
    }
    Config {
        reconcile: Reconcile::default(),
        invariants: BTreeMap::new(),
        merge: Merge::default(),
        harnesses,
        forge: Forge::Local,
        schedules: Vec::new(),
        sandbox: Sandbox::default(),
        budget: Budget::default(),
        serve: Serve::default(),
        autonomy: Autonomy::default(),
        prices: BTreeMap::new(),
        invariant_descriptions: BTreeMap::new(),
    }
}

/// Compiles `converge.toml`. `templates` are the file names under
/// `planning/queue/templates/`, which schedules refer to.
pub fn compile(
    file: &SourceFile,
    templates: &[String],
    ctx_out: &mut Vec<super::Diagnostic>,
) -> CompiledConfig {
    let mut ctx = Ctx::new(file);
    let mut config = default_config();
    if let Some(root) = ctx.parse() {
        let root = Table::new(root.get_ref(), root.span(), "converge.toml", ROOT_KEYS);
        reconcile::read(&mut ctx, &root, &mut config.reconcile);
        (config.invariants, config.invariant_descriptions) = invariants::read(&mut ctx, &root);
        harness::read(&mut ctx, &root, &mut config.harnesses);
        if let Some(forge) = forge::read(&mut ctx, &root, &config.reconcile) {
            config.forge = forge;
        }
        let github = config.forge.github().is_some();
        config.merge = merge::read(&mut ctx, &root, &config.invariants, github);
        config.schedules = schedule::read(&mut ctx, &root, templates);
        if let Some(sandbox) = sandbox::read(&mut ctx, &root) {
            config.sandbox = sandbox;
        }
        if let Some(budget) = budget::read_budget(&mut ctx, &root) {
            config.budget = budget;
        }
        config.prices = budget::read_prices(&mut ctx, &root);
        config.serve = serve::read(&mut ctx, &root);
        harness::check_default(&mut ctx, &root, &mut config);
        if let Some(autonomy) = autonomy::read(&mut ctx, &root, &config) {
            config.autonomy = autonomy;
        }
        root.finish(&mut ctx);
    }
    let valid = !ctx.has_errors();
    ctx_out.append(&mut ctx.diags);
    CompiledConfig { config, valid }
}

/// A setting converge reads but does not implement yet: an error, so that
/// nothing runs as if it were honoured (reconcile refuses an invalid
/// `converge.toml`); `hint` says what to remove.
fn not_supported(ctx: &mut Ctx<'_>, span: std::ops::Range<usize>, message: &str, hint: &str) {
    ctx.error(Code::NotSupported, span, message).hint = Some(hint.to_owned());
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
