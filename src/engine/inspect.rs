//! Reading a plan and its journal without touching the server: the step graph (`upgrade graph`)
//! and what the journal recorded (`upgrade show`). No SQL, no process, no secret is resolved,
//! nothing is written; the documents go to `render` for text, DOT or JSON.

use std::path::Path;

use crate::engine::journal::{self, Journal};
use crate::engine::render::{GraphDocument, GraphEdge, GraphNode, ShowDocument, ShownStep};
use crate::engine::EngineError;
use crate::plan::{self, graph, LoadedPlan};
use crate::steps::{self, Role};

fn load(plan_file: &Path) -> Result<LoadedPlan, EngineError> {
    plan::load(plan_file).map_err(|d| EngineError::Invalid(d.to_string()))
}

/// The plan's journal, as plan and apply would find it (empty when there is none yet).
fn journal_of(
    loaded: &LoadedPlan,
    plan_file: &Path,
    state: Option<&Path>,
) -> Result<(std::path::PathBuf, Option<Journal>), EngineError> {
    let (path, _) = journal::locate(&loaded.plan, plan_file, state);
    let exists = path.exists();
    let journal = Journal::load(&path, &loaded.plan.name)?;
    Ok((path, exists.then_some(journal)))
}

/// `upgrade graph`: every step with its kind, whether it destroys, and (with a journal) whether
/// a destructive step has sealed it; an edge from each step to each step that waits for it.
pub fn graph(plan_file: &Path, state: Option<&Path>) -> Result<GraphDocument, EngineError> {
    let loaded = load(plan_file)?;
    let (_, journal) = journal_of(&loaded, plan_file, state)?;
    let plan = &loaded.plan;
    let roles: Vec<Role> = plan.steps.iter().map(|s| steps::build(s).role()).collect();
    let nodes = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| GraphNode {
            id: step.id.as_str().to_string(),
            kind: step.kind.name().to_string(),
            destructive: roles[i] == Role::Destructive,
            sealed_by: journal
                .as_ref()
                .and_then(|j| journal::sealed_by(plan, &roles, j, i))
                .map(|d| plan.steps[d].id.as_str().to_string()),
            status: journal
                .as_ref()
                .and_then(|j| j.record(step.id.as_str()))
                .map(|r| r.status),
        })
        .collect();
    let mut edges = Vec::new();
    for step in &plan.steps {
        let references = step.kind.spec().references();
        for dep in graph::dependencies(step) {
            edges.push(GraphEdge {
                from: dep.as_str().to_string(),
                to: step.id.as_str().to_string(),
                reference: references
                    .iter()
                    .find(|r| r.target == dep)
                    // The field inside the kind: `answers.key_file.from`.
                    .map(|r| {
                        r.field
                            .split_once('.')
                            .map_or(r.field, |(_, f)| f)
                            .to_string()
                    }),
            });
        }
    }
    Ok(GraphDocument {
        plan: plan.name.clone(),
        nodes,
        edges,
    })
}

/// `upgrade show`: each step of the plan with its record (or none), in plan order, then records
/// of steps the plan no longer has, and the runs.
pub fn show(plan_file: &Path, state: Option<&Path>) -> Result<ShowDocument, EngineError> {
    let loaded = load(plan_file)?;
    let (path, journal) = journal_of(&loaded, plan_file, state)?;
    let plan = &loaded.plan;
    let empty = Journal::new(&plan.name);
    let j = journal.as_ref().unwrap_or(&empty);
    let mut steps: Vec<ShownStep> = plan
        .steps
        .iter()
        .map(|s| ShownStep::of(s.id.as_str(), s.kind.name(), j.record(s.id.as_str()), true))
        .collect();
    for (id, record) in &j.steps {
        if !plan.steps.iter().any(|s| s.id.as_str() == id) {
            steps.push(ShownStep::of(id, &record.kind, Some(record), false));
        }
    }
    Ok(ShowDocument {
        plan: plan.name.clone(),
        journal: path.display().to_string(),
        journal_exists: journal.is_some(),
        steps,
        runs: j.runs.clone(),
    })
}
