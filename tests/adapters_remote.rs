//! The remote host against the lab's WinRM listener (TEST DOUBLE: the lab's cmd shell runs its
//! stand-ins, and its powershell.exe interprets the PowerShell 2.0 subset of
//! /work/notes/ps-subset.md over the lab's drives). Every `Host` method, as a step uses it: the
//! same answers as the lab's files give here, files fetched whole with the server's hash checked,
//! full exit codes, stdin that reaches the key tool and no command line or log line.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Captured, Driver, Rig};
use upgrade::adapters::fs as afs;
use upgrade::adapters::host::Host;
use upgrade::adapters::process::{Effect, ProcessError, ProcessSpec};
use upgrade::adapters::remote::WinrmHost;
use upgrade::adapters::secrets::{Redactor, SecretString};
use upgrade::adapters::winrm::{Auth, ConnectOptions};

const EXTENSIONS: &str = r"C:\Program Files\Microsoft Identity Integration Server\Extensions";
const MIISKMU: &str = r"C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe";

async fn host(rig: &Rig) -> WinrmHost {
    let w = &rig.lab.winrm;
    WinrmHost::connect(ConnectOptions {
        endpoint: w.url.clone(),
        auth: Auth::Ntlm,
        user: w.user.clone(),
        password: Some(SecretString::new(w.password.clone())),
        https: false,
        ca: None,
        operation_timeout: Duration::from_secs(20),
    })
    .await
    .unwrap()
}

const IIFP_NAME: &str = "Identity Integration Feature Pack";

/// `reg query` of the native Uninstall key with its subkeys, as the product survey asks it.
fn uninstall_listing() -> ProcessSpec {
    ProcessSpec::new(
        r"C:\Windows\System32\reg.exe",
        &[
            "query",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            "/s",
        ],
        Duration::from_secs(60),
    )
    .read_only()
}

/// A Windows path as a step hands it to the host.
fn p(win: &str) -> PathBuf {
    PathBuf::from(win)
}

/// Bytes that are not all alike (so a chunk out of place changes the hash).
fn bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes a file into the lab's drives at the Windows path `win`.
fn put(rig: &Rig, win: &str, data: &[u8]) -> PathBuf {
    let path = rig.path(win);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    path
}

/// What the lab's tools ran, oldest first (DIR/argv.log).
fn argv_records(rig: &Rig) -> Vec<upgrade_lab::tools::ArgvRecord> {
    upgrade_lab::tools::read_argv_log(rig.lab.dir()).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_file_a_folder_and_a_missing_path_are_told_apart_on_the_server() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let file = r"D:\Upgrade\probe.bin";
    put(&rig, file, &bytes(1234));

    assert!(host.exists(&p(file)).await.unwrap());
    assert!(!host.is_dir(&p(file)).await.unwrap());
    assert_eq!(host.file_size(&p(file)).await.unwrap(), 1234);

    assert!(host.exists(&p(EXTENSIONS)).await.unwrap());
    assert!(host.is_dir(&p(EXTENSIONS)).await.unwrap());

    let missing = r"D:\Upgrade\no such file.bin";
    assert!(!host.exists(&p(missing)).await.unwrap());
    assert!(!host.is_dir(&p(missing)).await.unwrap());
    let err = host.file_size(&p(missing)).await.unwrap_err().to_string();
    assert!(
        err.contains(missing) && err.contains(host.server()) && err.contains("does not exist"),
        "{err}"
    );
    // A path given with `/` (a relative path joined on the admin host) is the same file.
    assert_eq!(
        host.file_size(&p("D:/Upgrade/probe.bin")).await.unwrap(),
        1234
    );
}

#[tokio::test]
async fn a_file_is_hashed_on_the_server_and_read_back_whole() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let data = bytes(300_000);
    let here = put(&rig, r"D:\Upgrade\logs\install.log", &data);
    let remote = p(r"D:\Upgrade\logs\install.log");
    assert_eq!(
        host.sha256_file(&remote).await.unwrap(),
        afs::sha256_file(&here).unwrap()
    );
    assert_eq!(host.read_file(&remote).await.unwrap(), data);
    let err = host
        .sha256_file(&p(r"D:\Upgrade\logs\gone.log"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(r"D:\Upgrade\logs\gone.log"),
        "{err}"
    );
    let err = host
        .read_file(&p(r"D:\No Folder\gone.log"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn a_5_mib_file_is_fetched_whole_with_the_servers_hash_checked() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let data = bytes(5 * 1024 * 1024);
    put(&rig, r"D:\Upgrade\big.bin", &data);
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("big.bin");

    let (captured, guard) = Captured::start();
    let started = Instant::now();
    let hash = host.fetch(&p(r"D:\Upgrade\big.bin"), &local).await.unwrap();
    let took = started.elapsed();
    drop(guard);
    // The figure (`cargo test --test adapters_remote a_5_mib -- --nocapture`): the whole fetch,
    // and how long the script's run (transfer_ms) and the decoding here (decode_ms) took.
    let split = captured.text();
    let split = split.lines().find(|l| l.contains("fetched over WinRM"));
    eprintln!(
        "fetch of 5 MiB over WinRM from the lab: {:.2} s, {:.2} MiB/s; {}",
        took.as_secs_f64(),
        5.0 / took.as_secs_f64(),
        split.unwrap_or("no split logged")
    );
    assert_eq!(std::fs::read(&local).unwrap(), data);
    assert_eq!(hash, afs::sha256_file(&local).unwrap());
    assert_eq!(names_in(here.path()), ["big.bin"], "no temporary file left");
}

/// An answer of a fetch lost in transit, at each of its first Receives in turn: wherever the gap
/// falls (inside a line, or over a line end, which puts the base64 out of step and makes the
/// decoder refuse what follows), the fetch is run again from the start and the file arrives whole,
/// with no temporary file left. (Each printed line is 256 KiB of the file, about 3.6 of the lab's
/// answers, so these six losses take in at least one line end.)
#[tokio::test]
async fn a_fetch_that_lost_an_answer_is_run_again_and_the_file_arrives_whole() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let data = bytes(1024 * 1024);
    put(&rig, r"D:\Upgrade\big.bin", &data);
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("big.bin");
    for k in 2..=7 {
        rig.faults(&[
            "winrm-drop-of=powershell.exe",
            &format!("winrm-drop-answered={k}"),
        ]);
        let hash = host
            .fetch(&p(r"D:\Upgrade\big.bin"), &local)
            .await
            .unwrap_or_else(|e| panic!("answer {k} lost: {e}"));
        assert_eq!(std::fs::read(&local).unwrap(), data, "answer {k} lost");
        assert_eq!(hash, afs::sha256_file(&local).unwrap());
        assert_eq!(
            names_in(here.path()),
            ["big.bin"],
            "a temporary file was left"
        );
        std::fs::remove_file(&local).unwrap();
    }
}

#[tokio::test]
async fn a_file_whose_name_is_not_ascii_is_fetched_and_listed_by_its_name() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let dir = r"D:\Upgrade\Ünïcødé 日本";
    let win = format!(r"{dir}\O'Brien файл.dll");
    put(&rig, &win, b"rules");
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("copy.dll");
    let hash = host.fetch(&p(&win), &local).await.unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), b"rules");
    assert_eq!(hash, afs::sha256_file(&local).unwrap());
    assert_eq!(
        host.walk_files(&p(r"D:\Upgrade")).await.unwrap(),
        ["Ünïcødé 日本/O'Brien файл.dll"]
    );
}

#[tokio::test]
async fn a_missing_file_is_not_fetched_and_leaves_nothing_here() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let here = tempfile::tempdir().unwrap();
    let err = host
        .fetch(&p(r"D:\Upgrade\keys.bin"), &here.path().join("keys.bin"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r"D:\Upgrade\keys.bin") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        names_in(here.path()).is_empty(),
        "{:?}",
        names_in(here.path())
    );
}

#[tokio::test]
async fn a_folder_is_listed_as_the_local_host_lists_it_with_sizes_and_times() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let ext = rig.path(EXTENSIONS);
    put(&rig, &format!(r"{EXTENSIONS}\sub dir\deep\x.dll"), b"xx");
    put(
        &rig,
        &format!(r"{EXTENSIONS}\.half.dll.upgrade-partial"),
        b"h",
    );
    let local = afs::walk_stats(&ext).unwrap();
    assert!(local.len() >= 2, "{local:?}");

    let remote = host.walk_stats(&p(EXTENSIONS)).await.unwrap();
    let names =
        |v: &[(String, afs::FileStat)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&remote), names(&local));
    assert_eq!(
        host.walk_files(&p(EXTENSIONS)).await.unwrap(),
        names(&local)
    );
    for ((name, r), (_, l)) in remote.iter().zip(&local) {
        assert_eq!(r.bytes, l.bytes, "{name}");
        // NTFS keeps times in 100 ns ticks.
        assert_eq!(r.mtime_ns, l.mtime_ns / 100 * 100, "{name}");
        assert_eq!((r.inode, r.ctime_ns), (None, None));
    }
    let err = host.walk_files(&p(r"D:\No Such Folder")).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn files_are_renamed_removed_and_restricted_and_folders_created_on_the_server() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let temp = r"D:\Upgrade\new\deeper\.keys.bin.upgrade-partial";
    let key = r"D:\Upgrade\new\deeper\keys.bin";

    host.create_parent_dirs(&p(temp)).await.unwrap();
    assert!(rig.path(r"D:\Upgrade\new\deeper").is_dir());
    host.create_parent_dirs(&p(temp)).await.unwrap();

    put(&rig, temp, b"new key set");
    put(&rig, key, b"old key set");
    // A file at the target is never replaced (the steps move one aside first): both stay.
    let err = host
        .rename(&p(temp), &p(key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(key) && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(rig.path(key)).unwrap(), b"old key set");
    assert_eq!(std::fs::read(rig.path(temp)).unwrap(), b"new key set");
    std::fs::remove_file(rig.path(key)).unwrap();
    host.rename(&p(temp), &p(key)).await.unwrap();
    assert_eq!(std::fs::read(rig.path(key)).unwrap(), b"new key set");
    assert!(!rig.path(temp).exists());

    // The key file is left to the WinRM account alone by a PowerShell script (.NET's
    // FileSecurity), not by icacls: Windows Server 2003 SP2's icacls has no /inheritance.
    let ran_before = argv_records(&rig).len();
    host.restrict_permissions(&p(key)).await.unwrap();
    let ran: Vec<String> = argv_records(&rig)[ran_before..]
        .iter()
        .map(|r| format!("{} exit {}", r.tool, r.exit))
        .collect();
    assert_eq!(ran, ["powershell exit 0"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(rig.path(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // A key file that is not there is an error naming it.
    let err = host
        .restrict_permissions(&p(r"D:\Upgrade\new\deeper\gone.bin"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gone.bin"), "{err}");

    host.remove_if_exists(&p(key)).await.unwrap();
    assert!(!rig.path(key).exists());
    host.remove_if_exists(&p(key)).await.unwrap();
    // No folder, no file: nothing to remove (a step removes its temporary file before it
    // creates the folder).
    host.remove_if_exists(&p(r"D:\No Such Folder\k.bin"))
        .await
        .unwrap();
    // A folder is not a file to remove.
    let err = host
        .remove_if_exists(&p(r"D:\Upgrade\new"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(r"D:\Upgrade\new"), "{err}");
    assert!(rig.path(r"D:\Upgrade\new\deeper").is_dir());
}

#[tokio::test]
async fn reg_and_msiexec_run_with_their_full_exit_codes() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let run =
        |program: &str, args: &[&str]| ProcessSpec::new(program, args, Duration::from_secs(60));
    let out = host
        .run(
            &run(
                r"C:\Windows\System32\reg.exe",
                &[
                    "query",
                    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
                    "/s",
                ],
            ),
            &Redactor::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(out.full_exit_code);
    assert!(out.stdout.contains("DisplayName"), "{}", out.stdout);

    let out = host
        .run(
            &run(
                r"C:\Windows\System32\reg.exe",
                &["query", r"HKLM\SOFTWARE\No Such Key"],
            ),
            &Redactor::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(!out.stderr.is_empty());

    let out = host
        .run(
            &run(
                r"C:\Windows\System32\msiexec.exe",
                &["/x", "{00000000-0000-0000-0000-000000000000}", "/qn"],
            ),
            &Redactor::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1605, "not 69, its low byte");
}

#[tokio::test]
async fn a_tool_given_no_stdin_finds_end_of_input_as_it_would_locally() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let st = rig.lab.lab().state().unwrap();
    let user_arg = format!("/u:{}\\{}", st.account.domain, st.account.user);
    // `*`: the key tool reads the password from stdin; there is none.
    let spec = ProcessSpec::new(
        MIISKMU,
        &["/e", r"D:\Upgrade\keys.bin", &user_arg, "*", "/q"],
        Duration::from_secs(20),
    );
    let out = host.run(&spec, &Redactor::default()).await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stdout.contains("No password was entered"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_working_folder_or_environment_is_refused_naming_the_program_and_nothing_runs() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let before = rig.argv_log();
    let mut spec = ProcessSpec::new(
        r"C:\Windows\System32\sc.exe",
        &["query", "miiserver"],
        Duration::from_secs(60),
    );
    spec.cwd = Some(p(r"D:\Upgrade"));
    let err = host.run(&spec, &Redactor::default()).await.unwrap_err();
    assert!(matches!(err, ProcessError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sc.exe") && err.to_string().contains("working folder"),
        "{err}"
    );
    spec.cwd = None;
    spec.env.push(("X".into(), "1".into()));
    let err = host.run(&spec, &Redactor::default()).await.unwrap_err();
    assert!(err.to_string().contains("environment"), "{err}");
    assert_eq!(rig.argv_log(), before, "something ran");
}

/// A connection dropped while receiving from a command that only reads: the client logs on
/// again and resumes it, but the lost Receive may have held output, so the query is run again
/// (it changes nothing) and its whole output is what the step gets.
#[tokio::test]
async fn a_read_only_query_that_lost_a_receive_is_run_again_and_gives_its_whole_output() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    for fault in ["winrm-drop=1", "winrm-drop-answered=1"] {
        rig.faults(&[fault]);
        let before = rig.argv_log().lines().count();
        let out = host.run(&uninstall_listing(), &Redactor::default()).await;
        let out = out.unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert_eq!(out.exit_code, 0);
        assert!(out.stdout.contains(IIFP_NAME), "{fault}: {}", out.stdout);
        assert_eq!(
            rig.argv_log().lines().count() - before,
            2,
            "{fault}: the query ran once (its gapped output was used) or more than twice"
        );
        rig.faults(&[]);
    }
}

/// The hole this closes: the server took the Receive's answer (with reg's whole listing) and the
/// connection dropped before it arrived. Resumed, the command reports Done with no more output;
/// taken as it was, that empty listing reads as "nothing installed".
#[tokio::test]
async fn a_lost_answer_never_passes_for_an_empty_listing() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    rig.faults(&["winrm-drop-answered=1"]);
    let mut spec = uninstall_listing();
    spec.effect = Effect::Changes;
    let err = host
        .run(&spec, &Redactor::default())
        .await
        .expect_err("a listing whose answer was lost must not be taken as the listing");
    assert!(
        matches!(err, ProcessError::OutputLost { exit_code: 0, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("part of its output was lost")
            && text.contains("not run again")
            && text.contains(host.server()),
        "{text}"
    );
    assert_eq!(
        rig.argv_log().lines().count(),
        1,
        "a changing command ran twice"
    );
}

/// A command that changes the server is never run again for its output: `sc stop` whose
/// answer was lost stopped the service once, and the outcome says the output was lost.
#[tokio::test]
async fn a_changing_command_that_lost_its_answer_ran_once_and_is_not_taken_as_succeeded() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    rig.faults(&["winrm-drop-answered=1"]);
    let spec = ProcessSpec::new(
        r"C:\Windows\System32\sc.exe",
        &["stop", "miiserver"],
        Duration::from_secs(60),
    );
    let err = host.run(&spec, &Redactor::default()).await.unwrap_err();
    assert!(
        matches!(err, ProcessError::OutputLost { exit_code: 0, .. }),
        "{err:?}"
    );
    assert_eq!(rig.argv_log().lines().count(), 1, "sc stop ran twice");
    let st = rig.lab.lab().state().unwrap();
    assert!(
        st.services.iter().all(|s| !s.running),
        "sc stop did not run"
    );
}

/// A read-only script (here: a folder's listing) that lost an answer is run again as well.
#[tokio::test]
async fn a_listing_script_that_lost_an_answer_is_run_again_and_lists_everything() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    let whole = host.walk_files(&p(EXTENSIONS)).await.unwrap();
    assert!(!whole.is_empty());
    rig.faults(&["winrm-drop-answered=1"]);
    let again = host.walk_files(&p(EXTENSIONS)).await.unwrap();
    assert_eq!(again, whole);
}

/// Dropped, resumed, and still without an exit code when the command's own timeout passes: the
/// outcome is unknown, said so, and the command is left to finish its change.
#[tokio::test]
async fn a_dropped_command_still_running_at_its_timeout_may_still_be_running_and_says_the_next_run_observes(
) {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let host = host(&rig).await;
    rig.faults(&["winrm-drop=1", "slow-tools=4000"]);
    let spec = ProcessSpec::new(
        r"C:\Windows\System32\sc.exe",
        &["stop", "miiserver"],
        Duration::from_secs(2),
    );
    let err = host.run(&spec, &Redactor::default()).await.unwrap_err();
    assert!(
        matches!(err, ProcessError::MayStillBeRunning { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("MAY STILL BE RUNNING")
            && text.contains(host.server())
            && text.contains("observes"),
        "{text}"
    );
    let stopped = || {
        let st = rig.lab.lab().state().unwrap();
        st.services.iter().all(|s| !s.running)
    };
    let until = Instant::now() + Duration::from_secs(10);
    while !stopped() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stopped(),
        "the command was ended: sc stop never stopped the service"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_key_tools_password_goes_over_stdin_and_into_no_command_line_and_no_log() {
    use base64::Engine;
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (captured, _guard) = Captured::start();

    let st = rig.lab.lab().state().unwrap();
    let password = st.account.password.clone();
    let host = host(&rig).await;
    let user_arg = format!("/u:{}\\{}", st.account.domain, st.account.user);
    let mut spec = ProcessSpec::new(
        MIISKMU,
        &["/e", r"D:\Upgrade\keys.bin", &user_arg, "*", "/q"],
        Duration::from_secs(60),
    );
    spec.stdin = Some(SecretString::new(format!("{password}\r\n")));
    let redactor = Redactor::new(vec![SecretString::new(password.clone())]);
    let out = host.run(&spec, &redactor).await.unwrap();
    assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
    // The key file is there, and the host sees it as a step would.
    assert!(host.exists(&p(r"D:\Upgrade\keys.bin")).await.unwrap());
    let here = tempfile::tempdir().unwrap();
    host.fetch(&p(r"D:\Upgrade\keys.bin"), &here.path().join("keys.bin"))
        .await
        .unwrap();

    let argv = rig.argv_log();
    assert!(
        argv.contains("miiskmu"),
        "no record of the key tool:\n{argv}"
    );
    let logs = captured.text();
    assert!(
        logs.contains("TRACE"),
        "nothing was logged at TRACE:\n{logs}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{password}\r\n"));
    for (what, text) in [("the lab's argv records", &argv), ("the logs", &logs)] {
        assert!(
            !text.contains(&password),
            "the password is in {what}:\n{text}"
        );
        assert!(
            !text.contains(&b64[..16]),
            "its base64 is in {what}:\n{text}"
        );
    }
}
