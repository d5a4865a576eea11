//! Nothing lost: the uninstall runs only when every backup it depends on is proven good against the
//! live server at that moment. Each test here is a way an earlier version let a bad prerequisite
//! through (issue 7): a key file nobody can vouch for, Extensions edited after their copy, a
//! snapshot taken after the upgrade, a journal that cannot be written.
//! TEST DOUBLES: the lab's TDS server and stand-in tools; the wrappers written here around the lab's
//! miiskmu act as an administrator (or a full disk) would while a run is under way.

mod common;

use std::path::PathBuf;

use common::{edit_plan, files_named_like, stdout, text, wrap_tool, Driver, Rig};

const IIFP: &str = "Identity Integration Feature Pack";
const MIIS: &str = "Microsoft Identity Integration Server 2003";

fn apply(rig: &Rig) -> std::process::Output {
    rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"])
}

fn keys(rig: &Rig) -> PathBuf {
    rig.path(r"D:\Upgrade\miis-keys.bin")
}

fn extensions(rig: &Rig) -> PathBuf {
    rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions")
}

fn wrap_miiskmu(rig: &Rig, before: &str) {
    let real = rig.lab.lab().tools().unwrap().miiskmu;
    wrap_tool(rig, &real, "miiskmu", before);
}

/// The old product's entry in the lab as it is before the run, to put it back later.
fn old_product(rig: &Rig) -> upgrade_lab::state::Product {
    rig.lab
        .lab()
        .state()
        .unwrap()
        .products
        .into_iter()
        .find(|p| p.name == IIFP)
        .unwrap()
}

/// The Extensions folder is copied before the keys are exported (a wrapper around miiskmu then
/// acts while the run is under way, after the copy).
fn keys_after_extensions(rig: &Rig) {
    edit_plan(
        rig,
        "  - id: keys\n    export_keys:",
        "  - id: keys\n    after: [extensions]\n    export_keys:",
    );
}

/// The run redid the Extensions copy at the uninstall's gate, and the copy of the edited rules
/// extension holds `edited`. Returns the copy's folder.
fn copied_again_before_the_uninstall(
    rig: &Rig,
    out: &std::process::Output,
    edited: &[u8],
) -> PathBuf {
    assert!(
        stdout(out).contains("redone before `remove-iifp`"),
        "{}",
        text(out)
    );
    let copy = rig.path(r"D:\Upgrade\Extensions");
    assert_eq!(
        std::fs::read(copy.join("Contoso.MVExtension.dll")).unwrap(),
        edited,
        "the edit made before the uninstall is lost"
    );
    copy
}

fn converged(rig: &Rig) {
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(rig.installed(), [MIIS]);
}

#[test]
fn a_file_found_at_the_key_path_is_not_trusted_but_kept_aside_and_the_keys_exported_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let found = b"not a key file: left here by someone else";
    std::fs::create_dir_all(keys(&rig).parent().unwrap()).unwrap();
    std::fs::write(keys(&rig), found).unwrap();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    let out = stdout(&plan);
    assert!(out.contains("+ keys"), "{}", text(&plan));
    assert!(out.contains("cannot be trusted"), "{}", text(&plan));

    let apply = apply(&rig);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        rig.argv_log().contains("\"miiskmu\""),
        "the key set was not exported: the found file was trusted"
    );
    let kept = files_named_like(keys(&rig).parent().unwrap(), "miis-keys.bin.unproven-");
    assert_eq!(kept.len(), 1, "the found file was not kept aside: {kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), found);
    assert_ne!(std::fs::read(keys(&rig)).unwrap(), found);
    converged(&rig);
}

#[test]
fn after_the_upgrade_a_lost_journal_leaves_the_key_file_and_the_snapshot_unproven() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let first = apply(&rig);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    for e in std::fs::read_dir(rig.state_dir()).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".journal.json") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let argv_before = rig.argv_log();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    let out = stdout(&plan);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(out.contains("! before"), "{}", text(&plan));
    assert!(
        out.contains("would describe the server after it"),
        "{}",
        text(&plan)
    );
    assert!(out.contains("! keys"), "{}", text(&plan));

    let again = apply(&rig);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("nothing was applied"),
        "{}",
        text(&again)
    );
    let journals = files_named_like(&rig.state_dir(), "lab-iifp-to-miis2003.journal.json");
    for j in journals {
        let journal = std::fs::read_to_string(j).unwrap();
        assert!(
            !journal.contains("\"before\""),
            "the upgraded server was recorded as the snapshot before it: {journal}"
        );
    }
    assert!(
        !rig.argv_log()[argv_before.len()..].contains("\"miiskmu\""),
        "the new product's key set was exported over the old one's"
    );
}

#[test]
fn extensions_edited_after_their_copy_are_copied_again_before_the_uninstall() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The copy is taken first; while the keys are exported, an administrator edits a rules
    // extension (the run is under way, its survey already done).
    keys_after_extensions(&rig);
    let edited = extensions(&rig).join("Contoso.MVExtension.dll");
    let added = extensions(&rig).join("Contoso.New.dll");
    wrap_miiskmu(
        &rig,
        &format!(
            "printf 'edited during the run' > '{}'; printf 'added during the run' > '{}'",
            edited.display(),
            added.display()
        ),
    );

    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copy = copied_again_before_the_uninstall(&rig, &out, b"edited during the run");
    assert_eq!(
        std::fs::read(copy.join("Contoso.New.dll")).unwrap(),
        b"added during the run",
        "the file added before the uninstall is lost"
    );
    converged(&rig);
}

/// A rules extension added after the run listed the folder, before the copy's turn (here while
/// the keys are exported): the copy step does not count as done without it, whether or not an
/// uninstall comes later to catch it, and the next run copies it.
#[test]
fn a_file_added_to_the_source_after_the_plan_is_never_left_out_of_a_copy_recorded_done() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let added = extensions(&rig).join("Contoso.Late.dll");
    wrap_miiskmu(
        &rig,
        &format!("printf 'added after the plan' > '{}'", added.display()),
    );
    let out = apply(&rig);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Contoso.Late.dll"), "{}", text(&out));
    assert!(
        !text(&out).contains("redone before"),
        "the copy step itself must not pass without the file:\n{}",
        text(&out)
    );
    let again = apply(&rig);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let copy = rig.path(r"D:\Upgrade\Extensions");
    assert_eq!(
        std::fs::read(copy.join("Contoso.Late.dll")).unwrap(),
        b"added after the plan"
    );
    converged(&rig);
}

#[test]
fn an_extension_edited_during_the_run_with_its_size_and_mtime_kept_is_still_caught_before_the_uninstall(
) {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The copy is taken (and its files' stats recorded) first; while the keys are exported, a
    // rules extension is edited in place, its size unchanged and its mtime put back (`touch -r`):
    // a quick check on size and mtime sees nothing.
    keys_after_extensions(&rig);
    let edited = extensions(&rig).join("Contoso.MVExtension.dll");
    let before = std::fs::read(&edited).unwrap();
    let mtime = std::fs::metadata(&edited).unwrap().modified().unwrap();
    let stamp = rig.tmp.path().join("mtime-of-the-dll");
    // What the file was right after the edit (`cp -p` keeps its mtime): the uninstall removes it.
    let seen = rig.tmp.path().join("the-dll-as-edited");
    let mark = if before[0] == b'#' { b'!' } else { b'#' };
    wrap_miiskmu(
        &rig,
        &format!(
            "touch -r '{e}' '{s}'; printf '{m}' | dd of='{e}' bs=1 count=1 conv=notrunc 2>/dev/null; \
             touch -r '{s}' '{e}'; [ -e '{v}' ] || cp -p '{e}' '{v}'",
            e = edited.display(),
            s = stamp.display(),
            m = mark as char,
            v = seen.display(),
        ),
    );

    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut expected = before.clone();
    expected[0] = mark;
    assert_eq!(
        std::fs::read(&seen).unwrap(),
        expected,
        "the stand-in edit did not happen"
    );
    assert_eq!(std::fs::metadata(&seen).unwrap().modified().unwrap(), mtime);
    copied_again_before_the_uninstall(&rig, &out, &expected);
    converged(&rig);
}

#[test]
fn a_journal_that_cannot_be_written_after_a_step_says_which_step_is_done_but_not_recorded() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // Once the key tool has run (the first time), the journal's temporary file cannot be created (a folder stands
    // in its place): the save after `keys` fails as it would on a full disk.
    let blocker = rig
        .state_dir()
        .join(".lab-iifp-to-miis2003.journal.json.upgrade-partial");
    let once = rig.tmp.path().join("journal-blocked-once");
    wrap_miiskmu(
        &rig,
        &format!(
            "[ -e '{once}' ] || {{ touch '{once}'; mkdir -p '{}/x'; }}",
            blocker.display(),
            once = once.display()
        ),
    );

    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("step `keys` completed") && all.contains("NOT recorded"),
        "{all}"
    );
    assert!(all.contains("the next run observes the server"), "{all}");
    assert!(stdout(&out).contains("+ keys"), "{all}");
    assert_eq!(
        rig.installed(),
        [IIFP],
        "the run went on past the unrecorded step"
    );

    std::fs::remove_dir_all(&blocker).unwrap();
    let next = apply(&rig);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    converged(&rig);
}

#[test]
fn a_run_with_steps_to_do_and_a_journal_that_cannot_be_written_stops_before_its_first_step() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // A folder stands where the journal's temporary file goes, as a full disk would refuse it.
    let blocker = rig
        .state_dir()
        .join(".lab-iifp-to-miis2003.journal.json.upgrade-partial");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("journal"), "{}", text(&out));
    assert!(!keys(&rig).exists(), "the keys were exported unrecorded");
    assert!(
        !rig.statements().contains("BACKUP DATABASE"),
        "the database was backed up unrecorded"
    );
    assert_eq!(rig.installed(), [IIFP]);
}

#[test]
fn a_setup_that_failed_after_laying_down_the_new_extensions_folder_does_not_block_the_next_run() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The new product's setup fails once, after creating its own (different) Extensions folder.
    let once = rig.tmp.path().join("setup-failed-once");
    let setup = rig.lab.lab().tools().unwrap().installer;
    wrap_tool(
        &rig,
        &setup,
        "Setup.exe",
        &format!(
            "if [ ! -e '{once}' ]; then touch '{once}'; mkdir -p '{ext}'; \
             printf 'the new product' > '{ext}/New.dll'; echo 'setup failed' >&2; exit 1; fi",
            once = once.display(),
            ext = extensions(&rig).display()
        ),
    );
    let first = apply(&rig);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(
        rig.installed().is_empty(),
        "{:?} {}",
        rig.installed(),
        text(&first)
    );

    // The copy of the old Extensions was sealed by the uninstall: it is held to its manifest, not
    // compared with the new product's folder.
    let next = apply(&rig);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    converged(&rig);
}

/// The reviewer's case: an installer that began and failed may already have changed the database;
/// the backup taken before it is the one that matters, so a re-run keeps it (rechecks it) even once
/// it is older than `max_age`, instead of overwriting it with a backup of the changed database.
#[test]
fn once_the_uninstall_began_its_backup_is_kept_even_past_max_age() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    edit_plan(&rig, "miis.bak' }", "miis.bak', max_age: 3s }");
    let first = apply(&rig);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(text(&first).contains("1603"), "{}", text(&first));
    std::thread::sleep(std::time::Duration::from_millis(3500));
    rig.faults(&[]);
    let statements = rig.statements();
    let next = apply(&rig);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    assert!(
        !rig.statements()[statements.len()..].contains("BACKUP DATABASE"),
        "the backup was taken again after the uninstall had begun: {}",
        text(&next)
    );
    assert!(
        stdout(&next).contains("kept from before `remove-iifp`"),
        "{}",
        text(&next)
    );
    converged(&rig);
}

/// The reviewer's case: the journal says the uninstall is done, but the old product is back (put
/// back into production and used since). Running the uninstall again would rest on the backup and
/// snapshot of back then; the plan refuses and says how to start over.
#[test]
fn an_uninstall_recorded_done_but_undone_on_the_server_cannot_converge() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let iifp = old_product(&rig);
    // The uninstall is done; the new product's setup fails.
    let setup = rig.lab.lab().tools().unwrap().installer;
    wrap_tool(&rig, &setup, "Setup.exe", "echo 'setup failed' >&2; exit 1");
    let first = apply(&rig);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(rig.installed().is_empty(), "{:?}", rig.installed());
    upgrade_lab::state::update(rig.lab.dir(), |st| st.products.push(iifp)).unwrap();
    let argv = rig.argv_log();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(stdout(&plan).contains("! remove-iifp"), "{}", text(&plan));
    // Refused by the seal of the setup that began, or (where no later step began) because the
    // journal records the uninstall done while the server shows it undone.
    assert!(
        stdout(&plan).contains("installed again") || stdout(&plan).contains("shows it undone"),
        "{}",
        text(&plan)
    );
    let again = apply(&rig);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        !rig.argv_log()[argv.len()..].contains("\"/x\""),
        "the uninstall ran again on the old backups"
    );
}

/// The same when no later step began: the uninstall is done, the new product's setup never
/// started (its gate refused: the key file was gone), and the old product is back.
#[test]
fn an_uninstall_recorded_done_is_not_run_again_on_old_backups_when_nothing_after_it_began() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let iifp = old_product(&rig);
    // msiexec removes IIFP, then the key file goes missing: the setup's gate refuses to start.
    let msiexec = rig.lab.lab().tools().unwrap().msiexec;
    let hidden = rig.tmp.path().join("keys-hidden");
    common::wrap_tool_around(
        &rig,
        &msiexec,
        "msiexec",
        "",
        &format!("mv '{}' '{}'", keys(&rig).display(), hidden.display()),
    );
    let first = apply(&rig);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(rig.installed().is_empty(), "{:?}", rig.installed());
    std::fs::rename(&hidden, keys(&rig)).unwrap();
    upgrade_lab::state::update(rig.lab.dir(), |st| st.products.push(iifp)).unwrap();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(stdout(&plan).contains("! remove-iifp"), "{}", text(&plan));
    assert!(stdout(&plan).contains("shows it undone"), "{}", text(&plan));
}

#[test]
fn when_the_uninstall_starts_the_journal_on_disk_records_every_prerequisite_done_and_the_uninstall_begun(
) {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // msiexec, the first time it runs (the uninstall), keeps the journal as it is on disk then: what
    // a run killed at that moment would leave.
    let journal = rig.state_dir().join("lab-iifp-to-miis2003.journal.json");
    let seen = rig.tmp.path().join("journal-at-msiexec.json");
    let msiexec = rig.lab.lab().tools().unwrap().msiexec;
    wrap_tool(
        &rig,
        &msiexec,
        "msiexec",
        &format!(
            "[ -e '{seen}' ] || cp '{journal}' '{seen}'",
            seen = seen.display(),
            journal = journal.display()
        ),
    );
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    for done in ["database", "keys", "extensions", "stop-sync", "before"] {
        assert_eq!(j["steps"][done]["status"], "done", "{done}: {j:#}");
    }
    assert_eq!(j["steps"]["remove-iifp"]["status"], "started", "{j:#}");
    assert_eq!(j["steps"]["remove-iifp"]["began"], true, "{j:#}");
    assert!(j["steps"]["install-miis"].is_null(), "{j:#}");
    converged(&rig);
}
