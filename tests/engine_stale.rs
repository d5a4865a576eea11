//! What the server does between `plan` and a step's turn in the same run. A step is observed again
//! before it acts when a prerequisite changed the server in this run; a step without one acts on
//! what the run observed at its start, and must still act only on what is there.

mod common;

use common::{text, Driver, Rig};

/// The old product removed by someone else after the run observed it, before the uninstall's turn
/// (here by a check that comes first in the plan and runs msiexec itself): the uninstall finds it
/// gone and does not run msiexec for it again.
#[test]
fn a_product_removed_after_the_plan_is_not_uninstalled_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let tools = rig.lab.lab().tools().unwrap();
    let code = rig
        .lab
        .lab()
        .state()
        .unwrap()
        .products
        .iter()
        .find(|p| p.name == "Identity Integration Feature Pack")
        .map(|p| p.code.clone())
        .unwrap();
    let plan = rig.plan_with_steps(
        "stale-uninstall",
        &format!(
            "  - id: someone-else\n    verify:\n      commands:\n        - run: ['{}', /x, '{code}', /qn]\n  \
             - id: remove-iifp\n    uninstall:\n      product: {{ name: Identity Integration Feature Pack }}\n      unprotected: true\n",
            tools.msiexec.display()
        ),
    );
    let p = plan.to_str().unwrap();
    let out = rig.upgrade(&["apply", p, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let removals = rig
        .argv_log()
        .lines()
        .filter(|l| l.contains("msiexec") && l.contains("/x"))
        .count();
    assert_eq!(removals, 1, "only the other removal:\n{}", rig.argv_log());
    assert!(
        text(&out).contains("was already not installed"),
        "{}",
        text(&out)
    );
}
