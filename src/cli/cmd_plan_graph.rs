//! `converge plan graph [PLAN] --format dot|mermaid`: the task DAG for renderers.
//!
//! Edges point from a dependency to the task that waits for it, the direction in
//! which work flows.

use super::source::{self, Default};
use super::{CliResult, Ctx, print};
use crate::spec::{Gate, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The plan id; all plans when omitted.
    pub plan: Option<String>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub source: source::SourceArgs,
}

pub fn run(ctx: &Ctx, args: &GraphArgs) -> CliResult {
    let loaded = source::load(ctx, &args.source, Default::Base)?;
    let (spec, loaded) = source::require_spec(loaded)?;
    let plans = source::select_plans(&spec, &loaded, args.plan.as_deref())?;
    let text = match args.format {
        GraphFormat::Dot => dot(&plans),
        GraphFormat::Mermaid => mermaid(&plans),
    };
    print(&text)
}

fn gate_mark(gate: Gate) -> &'static str {
    match gate {
        Gate::Auto => "",
        Gate::HumanReview => " [review]",
        Gate::HumanApprove => " [approve]",
    }
}

pub fn dot(plans: &[&Plan]) -> String {
    let mut out =
        String::from("digraph converge {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    let single = plans.len() == 1;
    for plan in plans {
        let indent = if single { "  " } else { "    " };
        if !single {
            out.push_str(&format!(
                "  subgraph \"cluster_{}\" {{\n    label={};\n",
                plan.id,
                quote(&plan.name)
            ));
        }
        for task in &plan.tasks {
            out.push_str(&format!(
                "{indent}\"{}/{}\" [label={}];\n",
                plan.id,
                task.name,
                quote(&format!("{}{}", task.name, gate_mark(task.gate)))
            ));
        }
        for task in &plan.tasks {
            for dep in &task.depends_on {
                out.push_str(&format!(
                    "{indent}\"{}/{dep}\" -> \"{}/{}\";\n",
                    plan.id, plan.id, task.name
                ));
            }
        }
        if !single {
            out.push_str("  }\n");
        }
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn mermaid(plans: &[&Plan]) -> String {
    let mut out = String::from("flowchart LR\n");
    let single = plans.len() == 1;
    for (p, plan) in plans.iter().enumerate() {
        let indent = if single { "  " } else { "    " };
        if !single {
            out.push_str(&format!(
                "  subgraph p{p}[\"{}\"]\n",
                mermaid_text(&plan.name)
            ));
        }
        let id = |i: usize| format!("p{p}t{i}");
        for (i, task) in plan.tasks.iter().enumerate() {
            out.push_str(&format!(
                "{indent}{}[\"{}{}\"]\n",
                id(i),
                task.name,
                gate_mark(task.gate)
            ));
        }
        for (i, task) in plan.tasks.iter().enumerate() {
            for dep in &task.depends_on {
                if let Some(j) = plan.tasks.iter().position(|t| &t.name == dep) {
                    out.push_str(&format!("{indent}{} --> {}\n", id(j), id(i)));
                }
            }
        }
        if !single {
            out.push_str("  end\n");
        }
    }
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}
