//! Partial states: steps an administrator already did by hand are recognised and skipped, and a
//! run resumes where an earlier one stopped without redoing finished steps.

mod common;

use std::process::Command;

use common::{files_named_like, stdout, text, Driver, Rig};
use upgrade::adapters::secrets::SecretString;
use upgrade::adapters::sql::{self, statements};
use upgrade::plan::{Encryption, SqlAuth, SqlConnection, SqlDriver, SqlLogin};

/// Connects the way an administrator's own SQL client would (tiberius, TDS 7.4).
async fn sql_client(rig: &Rig) -> Box<dyn sql::SqlClient> {
    let st = rig.lab.lab().state().unwrap();
    let conn = SqlConnection {
        host: "127.0.0.1".into(),
        instance: None,
        port: Some(rig.lab.port),
        auth: SqlAuth::Sql(SqlLogin {
            user: st.sql.login.clone(),
            password: upgrade::plan::Secret::Env("UNUSED".into()),
        }),
        driver: SqlDriver::Tds,
        database: None,
        odbc_driver: None,
        encryption: Encryption::NotSupported,
        trust_server_certificate: false,
    };
    sql::connect(&conn, Some(&SecretString::new(st.sql.password)))
        .await
        .unwrap()
}

/// The administrator backs the database up with their own SQL client, without checksums.
async fn backup_by_hand(rig: &Rig) {
    let bak = rig.path(r"D:\Upgrade\miis.bak");
    std::fs::create_dir_all(bak.parent().unwrap()).unwrap();
    let mut client = sql_client(rig).await;
    client
        .execute(&statements::backup_database(
            "MicrosoftIdentityIntegrationServer",
            bak.to_str().unwrap(),
            "by hand",
            false,
        ))
        .await
        .unwrap();
}

fn run_tool(path: &std::path::Path, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        path.display(),
        text(&out)
    );
}

#[tokio::test]
async fn a_backup_taken_by_hand_is_recognised_and_skipped() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    backup_by_hand(&rig).await;

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&plan).contains("= database"), "{}", text(&plan));

    let log_before = rig.statements();
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        !rig.statements()[log_before.len()..].contains("BACKUP"),
        "the backup was taken again"
    );
}

/// A key file exported by hand is a real key file here, but nothing in the journal proves it: the
/// keys are exported again while the old product is there, and the file found is kept, not lost.
#[test]
fn keys_exported_by_hand_are_exported_again_and_the_hand_made_file_is_kept() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let st = rig.lab.lab().state().unwrap();
    let keys = rig.path(r"D:\Upgrade\miis-keys.bin");
    let tools = rig.lab.lab().tools().unwrap();
    let account = format!("/u:{}\\{}", st.account.domain, st.account.user);
    run_tool(
        &tools.miiskmu,
        &["/e", keys.to_str().unwrap(), &account, "*", "/q"],
        Some(&format!("{}\n", st.account.password)),
    );
    let by_hand = std::fs::read(&keys).unwrap();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&plan).contains("+ keys"), "{}", text(&plan));
    assert!(
        stdout(&plan).contains("no record of exporting it"),
        "{}",
        text(&plan)
    );

    let argv_before = rig.argv_log();
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        rig.argv_log()[argv_before.len()..].contains("\"miiskmu\""),
        "an unproven key file was trusted"
    );
    let kept = files_named_like(keys.parent().unwrap(), "miis-keys.bin.unproven-");
    assert_eq!(kept.len(), 1, "the hand-made key file was not kept aside");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), by_hand);
}

#[test]
fn extensions_copied_by_hand_are_not_copied_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let from = rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions");
    let to = rig.path(r"D:\Upgrade\Extensions");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&plan).contains("copy: 0 file(s)"), "{}", text(&plan));
}

/// The tool's run stops at the uninstall (1603); the administrator removes IIFP by hand.
fn stopped_at_uninstall_then_removed_by_hand() -> Rig {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    let out = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    rig.faults(&[]);
    let st = rig.lab.lab().state().unwrap();
    let tools = rig.lab.lab().tools().unwrap();
    let iifp = st
        .products
        .iter()
        .find(|p| p.name == "Identity Integration Feature Pack")
        .unwrap();
    // The IIFP lab is Windows Server 2003 with Windows Installer 2.0: no /norestart there.
    run_tool(
        &tools.msiexec,
        &["/x", &iifp.code, "/qn", "REBOOT=ReallySuppress"],
        None,
    );
    rig
}

#[test]
fn an_uninstall_and_install_done_by_hand_after_a_stopped_run_are_recognised() {
    let rig = stopped_at_uninstall_then_removed_by_hand();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    let out = stdout(&plan);
    for line in [
        "= database",
        "= keys",
        "= extensions",
        "= before",
        "= remove-iifp",
        "+ install-miis",
    ] {
        assert!(out.contains(line), "missing `{line}`: {}", text(&plan));
    }
    let argv_before = rig.argv_log();
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let new = &rig.argv_log()[argv_before.len()..];
    assert!(!new.contains("\"/x\""), "the uninstall ran again: {new}");
    assert!(
        !new.contains("\"miiskmu\""),
        "the keys were exported again: {new}"
    );
}

#[test]
fn a_key_file_lost_after_the_uninstall_cannot_converge_and_says_why() {
    let rig = stopped_at_uninstall_then_removed_by_hand();
    std::fs::remove_file(rig.path(r"D:\Upgrade\miis-keys.bin")).unwrap();
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(stdout(&plan).contains("! keys"), "{}", text(&plan));
    // The uninstall began in the stopped run (its msiexec ran and failed), so the export is sealed:
    // held to its record, which names the file that is gone.
    assert!(
        stdout(&plan).contains("miis-keys.bin is gone")
            && stdout(&plan).contains("cannot be redone"),
        "{}",
        text(&plan)
    );
}

#[tokio::test]
async fn a_backup_older_than_max_age_by_the_servers_clock_is_taken_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let text_plan = std::fs::read_to_string(&rig.plan).unwrap();
    let aged = text_plan.replace("miis.bak' }", "miis.bak', max_age: 5s }");
    assert_ne!(aged, text_plan, "the seed plan's backup line changed shape");
    std::fs::write(&rig.plan, aged).unwrap();
    backup_by_hand(&rig).await;
    let fresh = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&fresh).contains("= database"), "{}", text(&fresh));
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let stale = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&stale).contains("+ database"), "{}", text(&stale));
    assert!(
        stdout(&stale).contains("older than max_age 5s"),
        "{}",
        text(&stale)
    );
}

/// Someone's backup of another database sits where the plan would write: BACKUP ... WITH INIT
/// would destroy it, so the step cannot converge and says to move it; nothing is overwritten.
#[tokio::test]
async fn a_backup_of_another_database_at_the_path_is_never_overwritten() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let bak = rig.path(r"D:\Upgrade\miis.bak");
    std::fs::create_dir_all(bak.parent().unwrap()).unwrap();
    let mut client = sql_client(&rig).await;
    client
        .execute(&statements::backup_database(
            "master",
            bak.to_str().unwrap(),
            "someone's master backup",
            false,
        ))
        .await
        .unwrap();
    let before = std::fs::read(&bak).unwrap();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(stdout(&plan).contains("! database"), "{}", text(&plan));
    assert!(
        stdout(&plan).contains("move it elsewhere"),
        "{}",
        text(&plan)
    );
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert_eq!(
        std::fs::read(&bak).unwrap(),
        before,
        "the other backup was overwritten"
    );
    assert_eq!(rig.installed(), ["Identity Integration Feature Pack"]);
}

/// A one-step plan copying the lab's Extensions folder; returns it with the source and the copy.
fn extensions_only(rig: &Rig) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    extensions_to(rig, r"D:\Upgrade\Extensions")
}

/// A plan of one step that copies the extensions to `to` (a path on the server).
fn extensions_to(
    rig: &Rig,
    to: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let from = rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions");
    let to = rig.path(to);
    let plan = rig.plan_with_steps(
        "extensions-only",
        &format!(
            "  - id: extensions\n    backup_files:\n      from: '{}'\n      to: '{}'\n",
            from.display(),
            to.display()
        ),
    );
    (plan, from, to)
}

/// `plan` shows one file to copy, and `apply` copies it: `copy` then holds `expected`.
fn copies_one_file_again(rig: &Rig, plan: &str, copy: &std::path::Path, expected: &[u8]) {
    let again = rig.upgrade(&["plan", plan]);
    assert!(stdout(&again).contains("+ extensions"), "{}", text(&again));
    assert!(
        stdout(&again).contains("copy: 1 file(s)"),
        "{}",
        text(&again)
    );
    let apply = rig.upgrade(&["apply", plan, "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert_eq!(std::fs::read(copy).unwrap(), expected);
}

#[test]
fn a_copy_cut_off_before_its_manifest_is_not_trusted_and_a_damaged_file_is_copied_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, from, to) = extensions_only(&rig);
    let plan = plan.to_str().unwrap();
    // A stand-in fault: the manifest's temporary name is taken by a folder, so the run stops after
    // every file was copied and before the manifest, the commit point, is written.
    let blocker = to.join(".SHA256SUMS.upgrade-partial");
    std::fs::create_dir_all(&blocker).unwrap();
    let first = rig.upgrade(&["apply", plan, "--auto-approve"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let dll = "Contoso.MVExtension.dll";
    assert!(to.join(dll).is_file(), "the files were not copied first");
    assert!(!to.join("SHA256SUMS").exists());
    let journal =
        std::fs::read_to_string(rig.state_dir().join("extensions-only.journal.json")).unwrap();
    let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
    assert_ne!(
        journal["steps"]["extensions"]["status"], "done",
        "a copy without its manifest was recorded done"
    );

    // A copied file is damaged, as an unflushed file can be after a power cut; its size and mtime
    // stay as they were.
    let copy = to.join(dll);
    let mtime = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let size = std::fs::metadata(&copy).unwrap().len() as usize;
    std::fs::write(&copy, vec![0u8; size]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::remove_dir(&blocker).unwrap();

    copies_one_file_again(&rig, plan, &copy, &std::fs::read(from.join(dll)).unwrap());
    assert!(to.join("SHA256SUMS").is_file());
    let converged = rig.upgrade(&["plan", plan, "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));
}

#[test]
fn an_extension_changed_with_a_new_mtime_after_the_copy_is_copied_again_on_the_next_run() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, from, to) = extensions_only(&rig);
    let plan = plan.to_str().unwrap();
    let first = rig.upgrade(&["apply", plan, "--auto-approve"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // Once the lab's files are older than the quick check's settling time, a converged run records
    // their stats: from then on, a file whose stats did not move is not hashed again.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let converged = rig.upgrade(&["apply", plan, "--auto-approve"]);
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));
    let journal =
        std::fs::read_to_string(rig.state_dir().join("extensions-only.journal.json")).unwrap();
    let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
    let dll = "Contoso.MVExtension.dll";
    assert!(
        journal["steps"]["extensions"]["evidence"]["details"]["stamps"][dll]["source"].is_object(),
        "the source's stats were not recorded: {journal}"
    );

    std::fs::write(from.join(dll), "rebuilt after the copy").unwrap();
    copies_one_file_again(&rig, plan, &to.join(dll), b"rebuilt after the copy");
}

/// The file-system calls of one run, as `strace -f -y` logs them (each descriptor with its path).
fn traced_calls(rig: &Rig, args: &[&str]) -> (std::process::Output, Vec<String>) {
    let log = rig.tmp.path().join("strace.log");
    let upgrade = rig.command(args);
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-s", "4096", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=syncfs,fsync,fdatasync,sync,rename,renameat,renameat2,mkdir,mkdirat",
        ])
        .arg(upgrade.get_program())
        .args(upgrade.get_args())
        .stdin(std::process::Stdio::null());
    for (k, v) in upgrade.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("strace (Debian package strace) is needed here: {e}"));
    let calls = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map_or(l, |(_, call)| call)
                .trim()
                .to_string()
        })
        .collect();
    (out, calls)
}

#[test]
fn every_copied_file_is_on_disk_before_the_manifest_that_commits_the_copy_is_written() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, from, to) = extensions_only(&rig);
    let (out, calls) = traced_calls(&rig, &["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let to = to.to_string_lossy().into_owned();
    let manifest = format!("{to}/SHA256SUMS\"");
    let commit = calls
        .iter()
        .position(|c| c.starts_with("rename") && c.contains(&manifest))
        .unwrap_or_else(|| panic!("the manifest was never renamed into place: {calls:#?}"));
    let files: Vec<String> = common::tree(&from)
        .into_iter()
        .map(|(rel, _)| format!("{to}/{rel}"))
        .collect();
    assert!(!files.is_empty());
    // Each copy: renamed into place, then flushed (its own fsync), all before the manifest's
    // rename.
    for file in &files {
        let placed = calls[..commit]
            .iter()
            .rposition(|c| c.starts_with("rename") && c.contains(&format!("{file}\"")))
            .unwrap_or_else(|| panic!("{file} was not renamed into place first: {calls:#?}"));
        assert!(
            flushed(&calls[placed..commit], file),
            "{file} was not flushed before the manifest: {calls:#?}"
        );
    }
}

/// Whether one of `calls` flushes `path` (an fsync or fdatasync of a descriptor `strace -y` shows
/// as `path`, or a sync of everything).
fn flushed(calls: &[String], path: &str) -> bool {
    calls.iter().any(|c| {
        let held = |call: &str| {
            c.strip_prefix(call)
                .and_then(|rest| rest.split_once('<'))
                .and_then(|(_, p)| p.split_once('>'))
                .map(|(held, _)| held == path)
        };
        held("fsync(") == Some(true) || held("fdatasync(") == Some(true) || c.starts_with("sync(")
    })
}

/// The folder a call made a new name in: a mkdir's folder, or the folder a rename's new name is in.
fn new_name_in(call: &str) -> Option<std::path::PathBuf> {
    let quoted: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
    let name = if call.starts_with("mkdir") {
        quoted.first()
    } else if call.starts_with("rename") {
        quoted.last()
    } else {
        None
    }?;
    std::path::Path::new(name)
        .parent()
        .map(std::path::Path::to_path_buf)
}

#[test]
fn folders_made_for_a_copy_are_on_disk_before_its_manifest_up_to_the_folder_that_was_there() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, _, to) = extensions_to(&rig, r"D:\Upgrade\Staged\Release 2\Extensions");
    let there = to.ancestors().find(|d| d.is_dir()).unwrap().to_path_buf();
    let made: Vec<std::path::PathBuf> = to
        .ancestors()
        .take_while(|d| *d != there)
        .map(std::path::Path::to_path_buf)
        .collect();
    assert!(made.len() >= 3, "{there:?} already holds {made:?}");
    let (out, calls) = traced_calls(&rig, &["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let manifest = format!("{}/SHA256SUMS\"", to.display());
    let commit = calls
        .iter()
        .position(|c| c.starts_with("rename") && c.contains(&manifest))
        .unwrap_or_else(|| panic!("the manifest was never renamed into place: {calls:#?}"));
    // Each folder made, and the one that was there, flushed after its last new name (a folder
    // made in it, a copy renamed into it) and before the manifest's rename.
    for dir in made.iter().chain([&there]) {
        let named = calls[..commit]
            .iter()
            .rposition(|c| new_name_in(c).as_deref() == Some(dir.as_path()))
            .unwrap_or_else(|| panic!("nothing new was named in {dir:?}: {calls:#?}"));
        assert!(
            flushed(&calls[named..commit], &dir.to_string_lossy()),
            "{dir:?} was not flushed after its new name and before the manifest: {calls:#?}"
        );
    }
}

/// How many times a run traced by `traced_calls` put the journal at `journal` in place (each save
/// writes a temporary file and renames it over the journal).
fn journal_writes(calls: &[String], journal: &std::path::Path) -> usize {
    let target = format!("\"{}\"", journal.display());
    calls
        .iter()
        .filter(|c| c.starts_with("rename") && c.contains(&target))
        .count()
}

fn journal_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_first_run_writes_its_journal_before_it_changes_anything_and_once_more_with_its_end() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (plan, _, _) = extensions_only(&rig);
    let plan = plan.to_str().unwrap();
    let journal = rig.state_dir().join("extensions-only.journal.json");
    let (out, calls) = traced_calls(&rig, &["apply", plan, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The run on record before the copy, then the copy's record with the run's end in one write.
    assert_eq!(journal_writes(&calls, &journal), 2, "{calls:#?}");
    let j = journal_of(&journal);
    assert_eq!(j["steps"]["extensions"]["status"], "done", "{j:#}");
    assert_eq!(j["runs"][0]["outcome"], "ok", "{j:#}");
    assert!(j["runs"][0]["finished"].is_string(), "{j:#}");
    // A converged run writes it once, at its end.
    let (out, calls) = traced_calls(&rig, &["apply", plan, "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(journal_writes(&calls, &journal), 1, "{calls:#?}");
    assert_eq!(journal_of(&journal)["runs"][1]["outcome"], "ok");
}

#[test]
fn a_run_whose_last_step_fails_records_the_failure_and_its_end_together() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let plan = rig.plan_with_steps(
        "fails-last",
        "  - id: checks\n    verify:\n      commands:\n        - { run: [sh, -c, \"exit 3\"] }\n",
    );
    let journal = rig.state_dir().join("fails-last.journal.json");
    let (out, calls) = traced_calls(&rig, &["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(journal_writes(&calls, &journal), 2, "{calls:#?}");
    let j = journal_of(&journal);
    assert_eq!(j["steps"]["checks"]["status"], "failed", "{j:#}");
    assert_eq!(j["runs"][0]["outcome"], "failed", "{j:#}");
    assert!(j["runs"][0]["finished"].is_string(), "{j:#}");
}
