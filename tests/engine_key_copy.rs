//! The key file comes back (issue 10): with `copy_to`, `export_keys` fetches the key file it
//! exported on the sync server to this machine, owner-only, and records both hashes. A copy lost
//! or changed later is fetched again from the server's key file while that file is still the
//! recorded export: the keys are never exported again for it. Run with the Local host (the lab's
//! sandbox is the "server", and the copy is on this machine too).

mod common;

use std::path::{Path, PathBuf};

use common::*;

const NAME: &str = "keys-with-copy";

/// A plan of the lab's header and one key export with a copy; its key file and copy paths.
fn keys_with_copy(rig: &Rig) -> (PathBuf, PathBuf, PathBuf) {
    let st = rig.lab.lab().state().unwrap();
    let keys = rig.path(r"D:\Upgrade\miis-keys.bin");
    let copy = rig
        .tmp
        .path()
        .join("admin")
        .join("keys")
        .join("miis-keys.bin");
    let steps = format!(
        "  - id: keys\n    export_keys:\n      to: '{}'\n      copy_to: '{}'\n      account: {{ user: \
         '{}\\{}', password: {{ env: {SERVICE_PASSWORD_ENV} }} }}\n",
        keys.display(),
        copy.display(),
        st.account.domain,
        st.account.user,
    );
    (rig.plan_with_steps(NAME, &steps), keys, copy)
}

fn journal(rig: &Rig) -> serde_json::Value {
    let text =
        std::fs::read_to_string(rig.state_dir().join(format!("{NAME}.journal.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// How many times the key tool ran since `before` (an earlier length of the lab's argv log).
fn exports_since(rig: &Rig, before: usize) -> usize {
    rig.argv_log()[before..].matches("\"miiskmu\"").count()
}

fn apply(rig: &Rig, plan: &Path) -> std::process::Output {
    rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"])
}

fn converged(rig: &Rig, plan: &Path) {
    let again = rig.upgrade(&["plan", plan.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(stdout(&again).contains("= keys"), "{}", text(&again));
}

#[test]
fn the_exported_key_file_comes_back_owner_only_with_both_hashes_recorded() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, keys, copy) = keys_with_copy(&rig);
    let shown = rig.upgrade(&["plan", plan.to_str().unwrap()]);
    assert!(
        stdout(&shown).contains(&format!("{} (the key file, fetched from", copy.display())),
        "plan does not show the copy: {}",
        text(&shown)
    );

    let first = apply(&rig, &plan);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&keys).unwrap());
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy of a key file is readable by others");
    let details = &journal(&rig)["steps"]["keys"]["evidence"]["details"];
    let server_sha = details["sha256"].as_str().unwrap();
    assert_eq!(
        details["copy"]["sha256"].as_str(),
        Some(server_sha),
        "{details}"
    );
    assert_eq!(details["copy"]["path"].as_str(), copy.to_str());
    let copy_dir = copy.parent().unwrap();
    assert!(
        files_named_like(copy_dir, ".").is_empty(),
        "a temporary file was left beside the copy"
    );
    converged(&rig, &plan);
}

/// The next plan shows the copy fetched again for `why`; apply does so without running the key
/// tool, and the copy is the server's key file again.
fn copied_again_without_a_new_export(rig: &Rig, plan: &Path, keys: &Path, copy: &Path, why: &str) {
    let shown = rig.upgrade(&["plan", plan.to_str().unwrap()]);
    assert!(stdout(&shown).contains("+ keys"), "{}", text(&shown));
    assert!(
        stdout(&shown).contains(&format!("{why}, so it is fetched again from the server")),
        "{}",
        text(&shown)
    );
    let before = rig.argv_log().len();
    let again = apply(rig, plan);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        exports_since(rig, before),
        0,
        "the keys were exported again"
    );
    assert_eq!(std::fs::read(copy).unwrap(), std::fs::read(keys).unwrap());
    converged(rig, plan);
}

#[test]
fn a_deleted_copy_is_fetched_again_from_the_server_without_a_new_export() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, keys, copy) = keys_with_copy(&rig);
    let first = apply(&rig, &plan);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let exported = std::fs::read(&keys).unwrap();

    std::fs::remove_file(&copy).unwrap();
    copied_again_without_a_new_export(&rig, &plan, &keys, &copy, "is missing");
    assert_eq!(
        std::fs::read(&keys).unwrap(),
        exported,
        "the key file changed"
    );
}

#[test]
fn an_altered_copy_is_kept_aside_and_fetched_again_without_a_new_export() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, keys, copy) = keys_with_copy(&rig);
    let first = apply(&rig, &plan);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    std::fs::write(&copy, "not the key set").unwrap();
    copied_again_without_a_new_export(&rig, &plan, &keys, &copy, "differs from it");
    let kept = files_named_like(copy.parent().unwrap(), "miis-keys.bin.unproven-");
    assert_eq!(kept.len(), 1, "the altered file was not kept aside");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), b"not the key set");
}

#[test]
fn a_run_killed_between_the_export_and_the_copy_converges_on_the_next_run() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, keys, copy) = keys_with_copy(&rig);
    let tools = rig.lab.lab().tools().unwrap();
    // The first time, `upgrade` (the key tool's parent) is killed with SIGKILL right after the
    // key tool wrote the key file, before anything was copied.
    let once = rig.tmp.path().join("killed-once");
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    let wrapper = rig.tmp.path().join("wrappers").join("miiskmu-kill");
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{real}' \"$@\"\nrc=$?\nif [ ! -e '{once}' ]; then touch '{once}'; kill -9 $PPID; fi\nexit $rc\n",
            real = tools.miiskmu.display(),
            once = once.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let with_wrapper = plan_text.replace(
        &format!("'{}'", tools.miiskmu.display()),
        &format!("'{}'", wrapper.display()),
    );
    assert_ne!(with_wrapper, plan_text, "the plan names no miiskmu");
    std::fs::write(&plan, with_wrapper).unwrap();

    let killed = apply(&rig, &plan);
    assert_eq!(killed.status.code(), None, "not killed: {}", text(&killed));
    assert!(!copy.exists(), "the copy was made before the kill");
    assert_ne!(
        journal(&rig)["steps"]["keys"]["status"],
        "done",
        "a step cut off was recorded done"
    );

    let next = apply(&rig, &plan);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&keys).unwrap());
    let keys_dir = keys.parent().unwrap();
    assert!(
        files_named_like(keys_dir, ".miis-keys.bin").is_empty(),
        "the cut-off export's temporary file is still there"
    );
    converged(&rig, &plan);
}

/// A run killed while it fetched the key file's copy left the copy's half-written file. Earlier
/// versions wrote it as `..NAME.upgrade-partial.upgrade-partial` (the temporary name of the
/// staging name), which no run looked for: key material left behind for good. The next key copy
/// removes it, and a copy made now is written under the staging name alone.
#[test]
fn a_partial_of_a_partial_left_by_a_killed_copy_is_removed_by_the_next_copy() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, _keys, copy) = keys_with_copy(&rig);
    let dir = copy.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let leftover = dir.join("..miis-keys.bin.upgrade-partial.upgrade-partial");
    std::fs::write(&leftover, "half a key set").unwrap();

    let run = apply(&rig, &plan);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(copy.is_file());
    assert!(
        files_named_like(dir, ".").is_empty(),
        "a half-written file is left: {:?}",
        files_named_like(dir, ".")
    );
}

/// Right before the uninstall, the key file's copy is proven like the key file: a copy lost while
/// the run was under way is fetched again from the server's key file, and the keys are not
/// exported again.
#[test]
fn a_copy_lost_during_the_run_is_fetched_again_before_the_uninstall() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let keys = rig.path(r"D:\Upgrade\miis-keys.bin");
    let copy = rig.tmp.path().join("admin").join("miis-keys.bin");
    edit_plan(
        &rig,
        "    export_keys:\n",
        &format!("    export_keys:\n      copy_to: '{}'\n", copy.display()),
    );
    // The service step's sc, which runs after the export and before the uninstall, deletes the
    // copy once (an administrator tidying the folder while the run is under way).
    let once = rig.tmp.path().join("deleted-once");
    let tools = rig.lab.lab().tools().unwrap();
    wrap_tool(
        &rig,
        &tools.sc,
        "sc",
        &format!(
            "if [ -e '{copy}' ] && [ ! -e '{once}' ]; then rm '{copy}'; touch '{once}'; fi",
            copy = copy.display(),
            once = once.display()
        ),
    );
    let before = rig.argv_log().len();
    let out = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        once.exists(),
        "the copy was never deleted: the test proves nothing"
    );
    assert!(
        stdout(&out).contains("the key file's copy")
            && stdout(&out).contains("is gone; redone before `remove-iifp`"),
        "{}",
        text(&out)
    );
    assert_eq!(
        exports_since(&rig, before),
        1,
        "the keys were exported again"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&keys).unwrap());
    assert_eq!(
        rig.installed(),
        ["Microsoft Identity Integration Server 2003"]
    );
}
