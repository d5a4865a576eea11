//! What `upgrade` prints for people and tools, against the rehearsal lab (TEST DOUBLE server and
//! stand-in tools): saved plans, the step graph, the journal, colour and quiet output.

mod common;

use common::{edit_plan, stdout, text, Driver, Rig};

#[test]
fn a_plan_that_cannot_converge_is_shown_but_not_saved() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The key tool is gone (removed with the old product?), and no key file was exported.
    let miiskmu = rig.lab.lab().tools().unwrap().miiskmu;
    edit_plan(
        &rig,
        &format!("miiskmu: '{}'", miiskmu.display()),
        &format!("miiskmu: '{}.gone'", miiskmu.display()),
    );
    let saved = rig.tmp.path().join("saved.json");
    let out = rig.upgrade(&["plan", rig.plan_str(), "--out", saved.to_str().unwrap()]);

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!saved.exists(), "a plan with `!` was saved: {}", text(&out));
    assert!(stdout(&out).contains("  ! keys"), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the plan was not saved to {}: these steps cannot converge: keys",
            saved.display()
        )),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("Saved the plan"), "{}", text(&out));
}
