//! The order among a plan's steps: what each step depends on (`after:` plus the steps it refers
//! to), a topological order, and transitive prerequisites. Pure functions over a `Plan`; the
//! engine and validation share them so that both agree on what "comes before" means.

use std::collections::{BTreeSet, HashMap};

use super::types::{Plan, StepSpec};
use super::values::StepId;

/// A reference from inside a step to another step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    /// Field path inside the step kind, e.g. `install.answers.key_file.from`.
    pub field: &'static str,
    pub target: &'a StepId,
    /// The kind the referred step must be.
    pub required_kind: &'static str,
}

/// Everything a step must wait for: its `after:` list and the steps it refers to, without repeats.
pub fn dependencies(step: &StepSpec) -> Vec<&StepId> {
    let mut deps: Vec<&StepId> = Vec::new();
    for id in step
        .after
        .iter()
        .chain(step.kind.spec().references().into_iter().map(|r| r.target))
    {
        if !deps.contains(&id) {
            deps.push(id);
        }
    }
    deps
}

/// Index of each step id (the first step with that id).
pub fn index_by_id(plan: &Plan) -> HashMap<&StepId, usize> {
    let mut map = HashMap::new();
    for (i, s) in plan.steps.iter().enumerate() {
        map.entry(&s.id).or_insert(i);
    }
    map
}

/// Step indices in an order that respects every dependency; ties keep file order.
/// Unknown ids and a step naming itself are ignored here (validation reports them). `Err` holds one cycle, as ids,
/// starting and ending with the same id.
pub fn order(plan: &Plan) -> Result<Vec<usize>, Vec<StepId>> {
    let ids = index_by_id(plan);
    let deps: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            dependencies(s)
                .into_iter()
                .filter_map(|d| ids.get(d).copied())
                .filter(|&d| d != i)
                .collect()
        })
        .collect();
    if let Some(cycle) = find_cycle(&deps) {
        return Err(cycle
            .into_iter()
            .map(|i| plan.steps[i].id.clone())
            .collect());
    }
    let mut done = vec![false; plan.steps.len()];
    let mut out = Vec::with_capacity(plan.steps.len());
    while out.len() < plan.steps.len() {
        // Invariant: without cycles some step not yet placed has all its dependencies placed.
        let next = (0..plan.steps.len())
            .find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .ok_or_else(Vec::new)?;
        done[next] = true;
        out.push(next);
    }
    Ok(out)
}

/// The first dependency cycle found (by file order), as indices; the first index is repeated at the end.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Closed,
    }
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for &d in &deps[i] {
            match marks[d] {
                Mark::Open => {
                    let start = stack.iter().position(|&s| s == d).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(d);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, deps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Closed => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Closed;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    for i in 0..deps.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, deps, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Every step that must be done before step `index`, directly or transitively.
pub fn prerequisites(plan: &Plan, index: usize) -> BTreeSet<usize> {
    let ids = index_by_id(plan);
    let mut seen = BTreeSet::new();
    let mut todo = vec![index];
    while let Some(i) = todo.pop() {
        for d in dependencies(&plan.steps[i]) {
            if let Some(&j) = ids.get(d) {
                if j != index && seen.insert(j) {
                    todo.push(j);
                }
            }
        }
    }
    seen
}
