//! The engine picks the host the plan names (issue 10): `server.connect: winrm` logs on to the
//! sync server once per `plan` / `apply`, before anything is observed, and says what to do when it
//! cannot (wrong password, nothing listening); `validate` never connects. Against the lab's WinRM
//! listener (TEST DOUBLE: its cmd shell runs the lab's stand-ins, its powershell.exe the files).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const WINRM_PASSWORD_ENV: &str = "LAB_WINRM_PASSWORD";
const NAME: &str = "remote-keys";

/// A remote plan: the lab's SQL Server, the sync server over WinRM at `endpoint`, and `steps`.
fn remote_plan(dir: &Path, endpoint: &str, user: &str, sql_port: u16, steps: &str) -> PathBuf {
    let path = dir.join(format!("{NAME}.yaml"));
    let text = format!(
        "version: 1\nname: {NAME}\nserver:\n  host: 127.0.0.1\n  connect:\n    winrm:\n      \
         endpoint: '{endpoint}'\n      auth: ntlm\n      user: '{user}'\n      password: {{ env: \
         {WINRM_PASSWORD_ENV} }}\n  sql: {{ host: 127.0.0.1, port: {sql_port}, auth: windows, \
         driver: tds }}\nstate: {{ dir: '{state}' }}\nsteps:\n{steps}",
        state = dir.join("state").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

const STOP_SYNC: &str = "  - id: stop-sync\n    service: { name: miiserver, state: stopped }\n";

fn upgrade(args: &[&str], winrm_password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upgrade"))
        .args(args)
        .env(WINRM_PASSWORD_ENV, winrm_password)
        .env(SERVICE_PASSWORD_ENV, "unused-service-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port that records whether anybody connected, as a WinRM endpoint.
fn watched_port() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}/wsman", listener.local_addr().unwrap());
    (listener, endpoint)
}

fn connected(listener: &TcpListener) -> bool {
    !matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn validate_never_connects_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, endpoint) = watched_port();
    let plan = remote_plan(dir.path(), &endpoint, "admin", 1433, STOP_SYNC);
    let out = upgrade(&["validate", plan.to_str().unwrap()], "winrm-password");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !connected(&listener),
        "validate connected to the WinRM endpoint"
    );
}

#[test]
fn a_server_where_nothing_listens_is_named_with_winrm_quickconfig() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/wsman");
    let plan = remote_plan(dir.path(), &endpoint, "admin", 1433, STOP_SYNC);
    let out = upgrade(&["plan", plan.to_str().unwrap()], "winrm-password");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "WinRM is not listening on {endpoint}: run `winrm quickconfig` on the server"
        )),
        "{}",
        text(&out)
    );
}

/// The WinRM password is a secret like every other: read before anything is touched, and held to
/// the same minimum length, before any logon is tried.
#[test]
fn a_winrm_password_too_short_to_mask_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, endpoint) = watched_port();
    let plan = remote_plan(dir.path(), &endpoint, "admin", 1433, STOP_SYNC);
    let out = upgrade(&["plan", plan.to_str().unwrap()], "abc");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("at least 6"), "{}", text(&out));
    assert!(
        !connected(&listener),
        "a logon was tried with a password that is refused"
    );
}

#[test]
fn a_wrong_winrm_password_is_named_with_the_endpoint_and_nothing_is_observed() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let w = &rig.lab.winrm;
    let plan = remote_plan(rig.tmp.path(), &w.url, &w.user, rig.lab.port, STOP_SYNC);
    let argv_before = rig.argv_log();
    let out = upgrade(&["plan", plan.to_str().unwrap()], "not-the-password");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("wrong user or password for {}", w.url)),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("not-the-password"), "{}", text(&out));
    assert_eq!(rig.argv_log(), argv_before, "a tool ran without a logon");
}

#[test]
fn plan_observes_the_sync_server_over_winrm() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let w = &rig.lab.winrm;
    let plan = remote_plan(rig.tmp.path(), &w.url, &w.user, rig.lab.port, STOP_SYNC);
    let argv_before = rig.argv_log();
    let out = upgrade(&["plan", plan.to_str().unwrap()], &w.password);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("+ stop-sync"), "{}", text(&out));
    assert!(
        rig.argv_log()[argv_before.len()..].contains("\"sc\""),
        "sc was not asked over WinRM: {}",
        rig.argv_log()
    );
}

/// The key file is exported on the server and comes back over WinRM with the same sha256; a
/// copy deleted afterwards is fetched again without a new export.
#[test]
fn the_key_file_comes_back_over_winrm_and_a_lost_copy_is_fetched_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let st = rig.lab.lab().state().unwrap();
    let w = &rig.lab.winrm;
    let copy = rig.tmp.path().join("admin").join("miis-keys.bin");
    // The lab's drives hold the key tool without `.exe` (its cmd.exe finds either name).
    let steps = format!(
        "  - id: keys\n    export_keys:\n      to: 'D:\\Upgrade\\miis-keys.bin'\n      tool: \
         'C:\\Program Files\\Microsoft Identity Integration Server\\Bin\\miiskmu'\n      copy_to: \
         '{}'\n      account: {{ user: '{}\\{}', password: {{ env: {SERVICE_PASSWORD_ENV} }} }}\n",
        copy.display(),
        st.account.domain,
        st.account.user
    );
    let plan = remote_plan(rig.tmp.path(), &w.url, &w.user, rig.lab.port, &steps);
    let apply = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_upgrade"))
            .args(["apply", plan.to_str().unwrap(), "--auto-approve"])
            .env(WINRM_PASSWORD_ENV, &w.password)
            .env(SERVICE_PASSWORD_ENV, &st.account.password)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
    };
    apply("first apply");
    let on_server = std::fs::read(rig.path(r"D:\Upgrade\miis-keys.bin")).unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), on_server);

    std::fs::remove_file(&copy).unwrap();
    let before = rig.argv_log().len();
    apply("after the copy was deleted");
    assert_eq!(std::fs::read(&copy).unwrap(), on_server);
    assert!(
        !rig.argv_log()[before..].contains("\"miiskmu\""),
        "the keys were exported again for a lost copy"
    );
}
