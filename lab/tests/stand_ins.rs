//! The stand-in tools' contracts (/work/shared-contracts.md), run as the executor runs them: real
//! child processes through the lab's wrapper scripts, checked by exit code, output and side effects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use upgrade_lab::layout::{Arch, InitOptions, MIIS_LOCATION};
use upgrade_lab::tools::{keyfile, read_argv_log};
use upgrade_lab::{Flavour, Lab};

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn lab(flavour: Flavour) -> (tempfile::TempDir, Lab) {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = InitOptions::new(flavour);
    o.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab")));
    o.account = Some(("CONTOSO".into(), "svc-sync".into()));
    let lab = Lab::init_with(&tmp.path().join("lab"), &o).unwrap();
    (tmp, lab)
}

fn run(program: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap(),
        out: String::from_utf8_lossy(&o.stdout).into(),
        err: String::from_utf8_lossy(&o.stderr).into(),
    }
}

/// The full Windows exit code, as the stand-in recorded it (a Unix parent sees only 8 bits).
fn last_exit(lab: &Lab) -> i32 {
    read_argv_log(lab.dir()).unwrap().last().unwrap().exit
}

fn password(lab: &Lab) -> String {
    lab.state().unwrap().account.password
}

fn miiskmu(lab: &Lab, file: &Path, account: &str, stdin: &str) -> Run {
    let tool = lab.tools().unwrap().miiskmu;
    run(
        &tool,
        &[
            "/e",
            file.to_str().unwrap(),
            &format!("/u:{account}"),
            "*",
            "/q",
        ],
        stdin,
    )
}

/// `msiexec /x CODE` as an administrator types it on the lab's Windows: `/norestart` exists from
/// Windows Installer 3.0 on; before, its documented equivalent is `REBOOT=ReallySuppress`.
fn uninstall(lab: &Lab, code: &str) -> Run {
    let log = lab.dir().join("uninstall.log");
    let no_restart = if lab.state().unwrap().flavour.windows().installer[0] >= 3 {
        "/norestart"
    } else {
        "REBOOT=ReallySuppress"
    };
    run(
        &lab.tools().unwrap().msiexec,
        &["/x", code, "/qn", no_restart, "/l*v", log.to_str().unwrap()],
        "",
    )
}

fn installed_code(lab: &Lab) -> String {
    lab.state().unwrap().products[0].code.clone()
}

fn export_keys(lab: &Lab) -> PathBuf {
    let file = lab.lab_path(r"D:\keys.bin");
    let r = miiskmu(
        lab,
        &file,
        r"CONTOSO\svc-sync",
        &format!("{}\n", password(lab)),
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    file
}

#[test]
fn miiskmu_exports_the_key_set_with_the_password_read_from_stdin() {
    let (_t, lab) = lab(Flavour::Iifp);
    let file = lab.lab_path(r"D:\Upgrade\keys.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let r = miiskmu(
        &lab,
        &file,
        r"CONTOSO\svc-sync",
        &format!("{}\n", password(&lab)),
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        !r.out.contains("[message box]"),
        "/q must suppress the message box: {}",
        r.out
    );
    assert!(!r.out.contains(&password(&lab)));
    let text = std::fs::read_to_string(&file).unwrap();
    let key_set = lab.state().unwrap().key_set.unwrap();
    assert_eq!(keyfile::import(&text, &password(&lab)).unwrap(), key_set);
    let st = lab.status().unwrap();
    assert_eq!(st.key_exports.len(), 1);
    assert_eq!(st.key_exports[0].key_set_id, key_set.id);
    let rec = read_argv_log(lab.dir()).unwrap();
    assert_eq!(rec[0].tool, "miiskmu");
    assert_eq!(
        rec[0].argv,
        vec![
            "/e".to_string(),
            file.to_string_lossy().into(),
            r"/u:CONTOSO\svc-sync".into(),
            "*".into(),
            "/q".into()
        ]
    );
    assert_eq!(rec[0].exit, 0);
}

#[test]
fn miiskmu_without_q_ends_with_a_message_box_that_nobody_closes() {
    let (_t, lab) = lab(Flavour::Iifp);
    let file = lab.dir().join("k.bin");
    let mut child = Command::new(lab.tools().unwrap().miiskmu)
        .args(["/e", file.to_str().unwrap(), "/u:svc-sync", &password(&lab)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "miiskmu without /q ended by itself"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(file.exists(), "the export itself happened before the box");
}

#[test]
fn miiskmu_accepts_the_user_without_a_domain_and_the_password_on_its_command_line() {
    let (_t, lab) = lab(Flavour::Iifp);
    let file = lab.dir().join("k.bin");
    let r = run(
        &lab.tools().unwrap().miiskmu,
        &[
            "/e",
            file.to_str().unwrap(),
            "/u:svc-sync",
            &password(&lab),
            "/q",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(file.exists());
}

#[test]
fn miiskmu_refuses_a_wrong_password_or_account_and_writes_nothing() {
    let (_t, lab) = lab(Flavour::Iifp);
    let file = lab.dir().join("k.bin");
    let r = miiskmu(&lab, &file, r"CONTOSO\svc-sync", "not-the-password\n");
    assert_eq!(r.code, 1);
    assert!(
        r.out.contains("user name or password is incorrect"),
        "{}",
        r.out
    );
    let r = miiskmu(
        &lab,
        &file,
        r"FABRIKAM\svc-sync",
        &format!("{}\n", password(&lab)),
    );
    assert_eq!(r.code, 1);
    let r = miiskmu(&lab, &file, r"CONTOSO\svc-sync", "");
    assert_eq!(r.code, 1);
    assert!(r.out.contains("No password was entered"));
    let r = run(&lab.tools().unwrap().miiskmu, &["/x", "f"], "");
    assert_eq!(r.code, 1);
    assert!(r.out.contains("Invalid command line"));
    assert!(!file.exists());
}

#[test]
fn miiskmu_fails_when_the_server_has_no_key_set_or_the_fault_is_set() {
    let (_t, lab) = lab(Flavour::Iifp);
    let tool = lab.dir().join("miiskmu-copy");
    std::fs::copy(lab.tools().unwrap().miiskmu, &tool).unwrap();
    let file = lab.dir().join("k.bin");
    lab.set_faults(&["miiskmu-fail"]).unwrap();
    let r = run(
        &tool,
        &["/e", file.to_str().unwrap(), "/u:svc-sync", "*", "/q"],
        &format!("{}\n", password(&lab)),
    );
    assert_eq!(r.code, 1);
    assert!(r.out.contains("injected fault"));
    lab.set_faults::<&str>(&[]).unwrap();
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);
    let r = run(
        &tool,
        &["/e", file.to_str().unwrap(), "/u:svc-sync", "*", "/q"],
        &format!("{}\n", password(&lab)),
    );
    assert_eq!(r.code, 1);
    assert!(r.out.contains("no encryption key set"), "{}", r.out);
    assert!(!file.exists());
}

#[test]
fn uninstall_removes_product_folder_extensions_key_set_and_service_but_never_the_database() {
    let (_t, lab) = lab(Flavour::Iifp);
    let folder = lab.lab_path(MIIS_LOCATION);
    assert!(folder.join("Extensions").read_dir().unwrap().count() >= 3);
    let code = installed_code(&lab);
    let r = uninstall(&lab, &code);
    assert_eq!(r.code, 0, "{}", r.err);
    let st = lab.state().unwrap();
    assert!(st.products.is_empty());
    assert!(st.key_set.is_none());
    assert!(st.services.is_empty());
    assert!(!folder.exists());
    assert_eq!(st.databases.len(), 1);
    let status = lab.status().unwrap();
    assert!(status
        .databases
        .iter()
        .any(|d| d == "MicrosoftIdentityIntegrationServer"));
    let log = std::fs::read_to_string(lab.dir().join("uninstall.log")).unwrap();
    assert!(log.contains("Removal completed successfully"));

    let r = uninstall(&lab, &code);
    assert_eq!(r.code, 1605 & 0xff);
    assert_eq!(last_exit(&lab), 1605);

    let reg = run(
        &lab.tools().unwrap().reg,
        &[
            "query",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            "/s",
        ],
        "",
    );
    assert_eq!(reg.code, 0);
    assert!(!reg.out.contains("Identity Integration Feature Pack"));
    let sc = run(&lab.tools().unwrap().sc, &["query", "miiserver"], "");
    assert_eq!(last_exit(&lab), 1060);
    assert!(sc.out.contains("FAILED 1060"));
}

#[test]
fn msiexec_on_windows_server_2003_is_windows_installer_2_0_and_refuses_norestart() {
    let (_t, lab) = lab(Flavour::Iifp);
    let code = installed_code(&lab);
    let r = run(
        &lab.tools().unwrap().msiexec,
        &["/x", &code, "/qn", "/norestart"],
        "",
    );
    assert_eq!(last_exit(&lab), 1639, "{}", r.err);
    assert!(
        r.err.contains("Windows Installer 3.0 and later"),
        "{}",
        r.err
    );
    assert_eq!(
        lab.state().unwrap().products.len(),
        1,
        "nothing was removed"
    );
    assert_eq!(
        uninstall(&lab, &code).code,
        0,
        "REBOOT=ReallySuppress is taken"
    );
    assert!(lab.state().unwrap().products.is_empty());
}

const UNINSTALL: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";

#[test]
fn reg_on_the_windows_server_2003_lab_prints_like_reg_exe_3_0_and_refuses_reg_64() {
    let (_t, lab) = lab(Flavour::Iifp);
    let reg = lab.tools().unwrap().reg;
    let r = run(&reg, &["query", UNINSTALL, "/s"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.starts_with("\r\n! REG.EXE VERSION 3.0\r\n\r\n"),
        "{:?}",
        r.out
    );
    assert!(
        r.out
            .contains("    DisplayName\tREG_SZ\tIdentity Integration Feature Pack\r\n"),
        "{:?}",
        r.out
    );
    assert!(r.out.contains("    <NO NAME>\tREG_SZ\t\r\n"), "{:?}", r.out);
    // reg.exe 3.0 has no registry view switches: it refuses them as invalid syntax.
    for view in ["/reg:64", "/reg:32"] {
        let r = run(&reg, &["query", UNINSTALL, "/s", view], "");
        assert_eq!(r.code, 1, "{view}: {}", r.out);
        assert!(
            r.err.starts_with("ERROR: Invalid syntax.\r\n"),
            "{view}: {:?}",
            r.err
        );
        assert!(r.out.is_empty());
    }
    let r = run(&reg, &["query", r"HKLM\SOFTWARE\Nothing\Here"], "");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "ERROR: The system was unable to find the specified registry key or value.\r\n"
    );
}

#[test]
fn reg_on_the_fim_lab_prints_the_later_layout_takes_reg_64_and_reports_an_absent_key() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let reg = lab.tools().unwrap().reg;
    let r = run(&reg, &["query", UNINSTALL, "/s", "/reg:64"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.out.contains("REG.EXE VERSION"));
    assert!(r.out.contains(
        "    DisplayName    REG_SZ    Forefront Identity Manager 2010 R2 Synchronization Service\n"
    ));
    assert!(r.out.contains("    InstallLocation    REG_SZ    C:\\Program Files\\Microsoft Forefront Identity Manager\\2010\\Synchronization Service\\\n"));
    let r = run(
        &reg,
        &[
            "query",
            r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
            "/s",
        ],
        "",
    );
    assert_eq!(r.code, 0);
    assert!(!r.out.contains("Forefront"));
    let r = run(&reg, &["query", r"HKLM\SOFTWARE\Nothing\Here"], "");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err.trim(),
        "ERROR: The system was unable to find the specified registry key or value."
    );
}

const WOW_UNINSTALL: &str = r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";

/// Windows Server 2003 x86 (the IIFP lab's default) has no WOW6432Node: 32-bit Windows has no
/// WOW64 and no registry redirection (Microsoft, "Registry Redirector"). reg says the key is not
/// there, as for any absent key, and HKLM\SOFTWARE lists its subkeys without it.
#[test]
fn reg_on_an_x86_server_finds_no_wow6432node_and_lists_software_without_it() {
    let (_t, lab) = lab(Flavour::Iifp);
    let reg = lab.tools().unwrap().reg;
    for args in [
        &["query", WOW_UNINSTALL, "/s"][..],
        &["query", WOW_UNINSTALL],
        &["query", r"HKLM\SOFTWARE\WOW6432Node"],
    ] {
        let r = run(&reg, args, "");
        assert_eq!(r.code, 1, "{args:?}: {}", r.out);
        assert_eq!(
            r.err,
            "ERROR: The system was unable to find the specified registry key or value.\r\n"
        );
    }
    let r = run(&reg, &["query", r"HKLM\SOFTWARE"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "\r\n! REG.EXE VERSION 3.0\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\r\n    <NO NAME>\tREG_SZ\t\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Classes\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Clients\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\ODBC\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\r\n\r\n"
    );
    let r = run(&reg, &["query", r"HKLM\SOFTWARE", "/s"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("does not list"), "{}", r.err);
}

/// The same Windows Server 2003 as x64 (`init --arch x64`) has WOW6432Node, empty of products
/// here, and lists it under SOFTWARE.
#[test]
fn reg_on_an_x64_server_has_wow6432node_and_lists_it_under_software() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = InitOptions::new(Flavour::Iifp);
    o.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab")));
    o.arch = Some(Arch::X64);
    let x64 = Lab::init_with(&tmp.path().join("lab"), &o).unwrap();
    let reg = x64.tools().unwrap().reg;
    let r = run(&reg, &["query", WOW_UNINSTALL, "/s"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.out.contains("Identity"), "{}", r.out);
    let r = run(&reg, &["query", r"HKLM\SOFTWARE"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.ends_with("HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\r\n\r\n"),
        "{:?}",
        r.out
    );
    // The FIM lab (Windows Server 2008 R2, x64 only): the 32-bit view has no WOW6432Node.
    let (_t, fim) = lab(Flavour::Fim2010r2);
    let reg = fim.tools().unwrap().reg;
    let r = run(&reg, &["query", r"HKLM\SOFTWARE", "/reg:64"], "");
    assert!(
        r.out
            .contains("\nHKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\n"),
        "{:?}",
        r.out
    );
    let r = run(&reg, &["query", r"HKLM\SOFTWARE", "/reg:32"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.out.contains("WOW6432Node"), "{:?}", r.out);
}

#[test]
fn a_fim_server_cannot_be_laid_out_as_x86() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = InitOptions::new(Flavour::Fim2010r2);
    o.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab")));
    o.arch = Some(Arch::X86);
    let err = Lab::init_with(&tmp.path().join("lab"), &o).unwrap_err();
    assert!(
        err.to_string().contains("only on 64-bit Windows Server"),
        "{err}"
    );
}

#[test]
fn sc_reports_the_sync_service_running_and_tracks_stop_and_start() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let sc = lab.tools().unwrap().sc;
    let r = run(&sc, &["query", "FIMSynchronizationService"], "");
    assert_eq!(r.code, 0);
    assert!(r.out.contains("SERVICE_NAME: FIMSynchronizationService"));
    assert!(r.out.contains("STATE              : 4  RUNNING"));
    assert_eq!(run(&sc, &["stop", "FIMSynchronizationService"], "").code, 0);
    assert!(run(&sc, &["query", "FIMSynchronizationService"], "")
        .out
        .contains("1  STOPPED"));
    let r = run(&sc, &["query", "miiserver"], "");
    assert!(r
        .out
        .starts_with("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:"));
    assert_eq!(last_exit(&lab), 1060);
}

/// sc.exe's answers to controls, by Win32 system error code (Microsoft's "System Error Codes"):
/// a stop prints STOP_PENDING and the next query STOPPED; stopping a stopped service is 1062, starting
/// a running one 1056, an unknown service 1060.
#[test]
fn sc_stop_and_start_answer_like_sc_exe_with_win32_error_codes() {
    let (_t, lab) = lab(Flavour::Iifp);
    let sc = lab.tools().unwrap().sc;
    let r = run(&sc, &["stop", "miiserver"], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("SERVICE_NAME: miiserver"), "{}", r.out);
    assert!(
        r.out.contains("STATE              : 3  STOP_PENDING"),
        "{}",
        r.out
    );
    assert!(run(&sc, &["query", "miiserver"], "")
        .out
        .contains("1  STOPPED"));
    assert!(!lab.state().unwrap().service("miiserver").unwrap().running);

    let r = run(&sc, &["stop", "miiserver"], "");
    assert_eq!(last_exit(&lab), 1062);
    assert_eq!(
        r.out.trim(),
        "[SC] ControlService FAILED 1062:\n\nThe service has not been started."
    );

    let r = run(&sc, &["start", "miiserver"], "");
    assert_eq!(r.code, 0);
    assert!(
        r.out.contains("STATE              : 2  START_PENDING"),
        "{}",
        r.out
    );
    assert!(run(&sc, &["query", "miiserver"], "")
        .out
        .contains("4  RUNNING"));

    let r = run(&sc, &["start", "miiserver"], "");
    assert_eq!(last_exit(&lab), 1056);
    assert_eq!(
        r.out.trim(),
        "[SC] StartService FAILED 1056:\n\nAn instance of the service is already running."
    );

    let r = run(&sc, &["stop", "FIMSynchronizationService"], "");
    assert_eq!(last_exit(&lab), 1060);
    assert!(
        r.out.starts_with("[SC] OpenService FAILED 1060:"),
        "{}",
        r.out
    );
}

fn msi_install(lab: &Lab, props: &[String]) -> Run {
    let tools = lab.tools().unwrap();
    let log = lab.dir().join("install.log");
    let mut args = vec!["/i".to_string(), tools.installer.to_string_lossy().into()];
    args.extend(props.iter().cloned());
    args.extend(["/qn", "/norestart", "/l*v"].map(String::from));
    args.push(log.to_string_lossy().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&tools.msiexec, &args, "")
}

fn mim_props(lab: &Lab, key_file: Option<&Path>) -> Vec<String> {
    let mut p = vec![
        "STORESERVER=localhost".to_string(),
        "SQLDB=FIMSynchronizationService".into(),
        "SERVICEACCOUNT=svc-sync".into(),
        "SERVICEDOMAIN=CONTOSO".into(),
        format!("SERVICEPASSWORD={}", password(lab)),
        "GROUPADMINS=FIMSyncAdmins".into(),
        "ACCEPT_EULA=1".into(),
    ];
    if let Some(k) = key_file {
        p.push(format!("KEYFILE={}", k.display()));
    }
    p
}

#[test]
fn msiexec_refuses_to_reuse_the_database_without_a_key_file_when_the_server_has_no_key_set() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let keys = export_keys(&lab);
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);

    let log = install_fails_1603(&lab, &mim_props(&lab, None));
    assert!(
        log.contains("no encryption key set and no key file"),
        "{log}"
    );
    assert!(
        !log.contains(&password(&lab)),
        "the log masks SERVICEPASSWORD"
    );
    assert!(lab.state().unwrap().products.is_empty());

    let r = msi_install(&lab, &mim_props(&lab, Some(&keys)));
    assert_eq!(r.code, 0, "{}", r.err);
    let st = lab.state().unwrap();
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Manager Synchronization Service"
    );
    assert_eq!(st.key_set.as_ref().unwrap().id, st.databases[0].key_set_id);
    assert!(st.service("FIMSynchronizationService").unwrap().running);
    let last = st.installs.last().unwrap();
    assert_eq!(last.exit, 0);
    assert!(last
        .properties
        .contains(&("SQLDB".into(), "FIMSynchronizationService".into())));
    assert!(lab
        .lab_path(&st.products[0].install_location)
        .join("Bin/miiskmu")
        .exists());

    let r = msi_install(&lab, &mim_props(&lab, Some(&keys)));
    assert_eq!(last_exit(&lab), 1638, "installing again: {}", r.err);
}

#[test]
fn msiexec_refuses_a_wrong_service_password_and_a_package_it_cannot_open() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let keys = export_keys(&lab);
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);
    let mut props = mim_props(&lab, Some(&keys));
    props[4] = "SERVICEPASSWORD=wrong".into();
    msi_install(&lab, &props);
    assert_eq!(last_exit(&lab), 1603);
    let msiexec = lab.tools().unwrap().msiexec;
    run(&msiexec, &["/i", "/nowhere/x.msi", "/qn"], "");
    assert_eq!(last_exit(&lab), 1619);
    let junk = lab.dir().join("junk.msi");
    std::fs::write(&junk, b"\xd0\xcf\x11\xe0 a real msi is an OLE file").unwrap();
    run(&msiexec, &["/i", junk.to_str().unwrap(), "/qn"], "");
    assert_eq!(last_exit(&lab), 1619);
    run(&msiexec, &["/i", junk.to_str().unwrap()], "");
    assert_eq!(last_exit(&lab), 1639, "no /qn");
}

#[test]
fn msiexec_1618_fault_fails_k_times_then_succeeds() {
    let (_t, lab) = lab(Flavour::Iifp);
    lab.set_faults(&["msiexec-1618=2"]).unwrap();
    let code = installed_code(&lab);
    for _ in 0..2 {
        uninstall(&lab, &code);
        assert_eq!(last_exit(&lab), 1618);
        assert_eq!(lab.state().unwrap().products.len(), 1);
    }
    assert_eq!(uninstall(&lab, &code).code, 0);
    assert!(lab.state().unwrap().products.is_empty());
}

#[test]
fn msiexec_1603_fault_changes_nothing_and_3010_succeeds_asking_for_a_reboot() {
    let (_t, lab) = lab(Flavour::Iifp);
    let code = installed_code(&lab);
    lab.set_faults(&["msiexec-1603"]).unwrap();
    uninstall(&lab, &code);
    assert_eq!(last_exit(&lab), 1603);
    assert_eq!(lab.state().unwrap().products.len(), 1);
    assert!(lab.lab_path(MIIS_LOCATION).exists());
    lab.set_faults(&["msiexec-3010"]).unwrap();
    uninstall(&lab, &code);
    assert_eq!(last_exit(&lab), 3010);
    assert!(lab.state().unwrap().products.is_empty());
}

#[test]
fn slow_tools_delays_every_stand_in() {
    let (_t, lab) = lab(Flavour::Iifp);
    lab.set_faults(&["slow-tools=400"]).unwrap();
    let started = std::time::Instant::now();
    run(&lab.tools().unwrap().sc, &["query", "miiserver"], "");
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
}

fn setup_args(lab: &Lab, key_file: &str) -> Vec<String> {
    let log = lab.dir().join("setup.log");
    [
        "/q",
        "/setuptype:complete",
        "/sqlserver:(local)",
        "/sqlinstance:",
        "/database:MicrosoftIdentityIntegrationServer",
        "/reusedb:yes",
        "/serviceaccount:svc-sync",
        "/servicedomain:CONTOSO",
        "/servicepassword:*",
        "/admins:MIISAdmins",
        "/operators:MIISOperators",
        "/joiners:MIISJoiners",
        "/browse:MIISBrowse",
        "/passwordset:MIISPasswordSet",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("/keyfile:{key_file}"),
        format!("/log:{}", log.display()),
    ])
    .collect()
}

fn setup(lab: &Lab, key_file: &str) -> Run {
    let args = setup_args(lab, key_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(
        &lab.tools().unwrap().installer,
        &args,
        &format!("{}\n", password(lab)),
    )
}

#[test]
fn miis_setup_installs_reusing_the_database_with_the_exported_key_file() {
    let (_t, lab) = lab(Flavour::Iifp);
    std::fs::create_dir_all(lab.lab_path(r"D:\Upgrade")).unwrap();
    let file = lab.lab_path(r"D:\Upgrade\keys.bin");
    assert_eq!(
        miiskmu(&lab, &file, "svc-sync", &format!("{}\n", password(&lab))).code,
        0
    );
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);

    let r = setup(&lab, "");
    assert_eq!(last_exit(&lab), 1603, "{}", r.err);
    let log = std::fs::read_to_string(lab.dir().join("setup.log")).unwrap();
    assert!(
        log.contains("no encryption key set and no key file"),
        "{log}"
    );

    let r = setup(&lab, r"D:\Upgrade\keys.bin");
    assert_eq!(r.code, 0, "{}", r.err);
    let st = lab.state().unwrap();
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Integration Server 2003"
    );
    assert!(st.key_set.is_some());
    assert!(st.service("miiserver").unwrap().running);
    let rec = &st.installs.last().unwrap().properties;
    assert!(rec.contains(&("servicepassword".into(), "*".into())));
    let argv = read_argv_log(lab.dir()).unwrap();
    assert!(
        argv.iter()
            .all(|r| !r.argv.iter().any(|a| a.contains(&password(&lab)))),
        "the password came on stdin"
    );
}

#[test]
fn miis_setup_refuses_a_foreign_key_file_and_runs_only_after_iifp_is_gone() {
    let (_t, lab) = lab(Flavour::Iifp);
    let (_t2, other) = self::lab(Flavour::Iifp);
    let foreign = export_keys(&other);
    let r = setup(&lab, foreign.to_str().unwrap());
    assert_eq!(last_exit(&lab), 1603);
    assert!(r.err.contains("still installed"), "{}", r.err);
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);
    let r = setup(&lab, foreign.to_str().unwrap());
    assert_eq!(last_exit(&lab), 1603);
    assert!(r.err.contains("was encrypted with key set"), "{}", r.err);
    let r = run(&lab.tools().unwrap().installer, &["/q", "/wizard"], "");
    assert_eq!(last_exit(&lab), 1639, "{}", r.err);
}

#[test]
fn the_mim_package_upgrades_fim_in_place_keeping_keys_service_and_extensions() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let before = lab.state().unwrap();
    let folder = lab.lab_path(&before.products[0].install_location);
    let dlls = folder.join("Extensions").read_dir().unwrap().count();
    let r = msi_install(&lab, &mim_props(&lab, None));
    assert_eq!(r.code, 0, "{}", r.err);
    let st = lab.state().unwrap();
    assert_eq!(st.products.len(), 1);
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Manager Synchronization Service"
    );
    assert_eq!(st.key_set, before.key_set);
    assert!(st.service("FIMSynchronizationService").unwrap().running);
    assert_eq!(folder.join("Extensions").read_dir().unwrap().count(), dlls);
}

/// A FIM lab whose installed FIM is `version`.
fn fim_lab(version: &str) -> (tempfile::TempDir, Lab) {
    fim_lab_with(|o| o.installed_version = Some(version.into()))
}

fn fim_lab_with(change: impl FnOnce(&mut InitOptions)) -> (tempfile::TempDir, Lab) {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = InitOptions::new(Flavour::Fim2010r2);
    o.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab")));
    o.account = Some(("CONTOSO".into(), "svc-sync".into()));
    change(&mut o);
    let lab = Lab::init_with(&tmp.path().join("lab"), &o).unwrap();
    (tmp, lab)
}

fn with_store_server(lab: &Lab, server: &str, extra: &[&str]) -> Vec<String> {
    let mut p: Vec<String> = mim_props(lab, None)
        .into_iter()
        .map(|p| {
            if p.starts_with("STORESERVER=") {
                format!("STORESERVER={server}")
            } else {
                p
            }
        })
        .collect();
    p.extend(extra.iter().map(|e| e.to_string()));
    p
}

/// Runs `msiexec /i` expecting 1603 (fatal error); returns the installer log, which says why.
fn install_fails_1603(lab: &Lab, props: &[String]) -> String {
    let r = msi_install(lab, props);
    assert_eq!(last_exit(lab), 1603, "{}", r.err);
    std::fs::read_to_string(lab.dir().join("install.log")).unwrap()
}

#[test]
fn the_mim_package_looks_for_a_local_store_unless_told_sqlserverstore_remotemachine() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    let log = install_fails_1603(&lab, &with_store_server(&lab, "sql01", &[]));
    assert!(
        log.contains("STORESERVER is sql01, another machine")
            && log.contains("SQLServerStore=RemoteMachine was not given"),
        "{log}"
    );
    let st = lab.state().unwrap();
    assert_eq!(
        st.installs.last().unwrap().exit,
        1603,
        "the attempt is recorded"
    );
    assert_eq!(
        st.products[0].name, "Forefront Identity Manager 2010 R2 Synchronization Service",
        "nothing changed"
    );

    let r = msi_install(
        &lab,
        &with_store_server(&lab, "sql01", &["SQLServerStore=RemoteMachine"]),
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let last = lab.state().unwrap().installs.last().unwrap().clone();
    assert!(
        last.properties
            .contains(&("SQLSERVERSTORE".into(), "RemoteMachine".into())),
        "{:?}",
        last.properties
    );
}

#[test]
fn the_names_of_this_machine_need_no_sqlserverstore() {
    for local in ["(local)", ".", "LOCALHOST", "127.0.0.1", "::1"] {
        let (_t, lab) = lab(Flavour::Fim2010r2);
        let r = msi_install(&lab, &with_store_server(&lab, local, &[]));
        assert_eq!(r.code, 0, "{local}: {}", r.err);
    }
}

#[test]
fn the_mim_package_refuses_to_upgrade_a_fim_older_than_r2_sp1() {
    let (_t, lab) = fim_lab("4.1.2273.0");
    let log = install_fails_1603(&lab, &mim_props(&lab, None));
    assert!(
        log.contains("4.1.2273.0 cannot be upgraded in place")
            && log.contains("needs version 4.1.3419.0 or later"),
        "{log}"
    );
    assert_eq!(lab.state().unwrap().products[0].version, "4.1.2273.0");

    let (_t, lab) = fim_lab("4.1.3766.0");
    let r = msi_install(&lab, &mim_props(&lab, None));
    assert_eq!(r.code, 0, "a later FIM 2010 R2 build upgrades: {}", r.err);
}

#[test]
fn the_lab_fim_is_r2_sp1_unless_told_otherwise() {
    let (_t, lab) = lab(Flavour::Fim2010r2);
    assert_eq!(lab.state().unwrap().products[0].version, "4.1.3419.0");
}

#[test]
fn mim_2016_sp2_media_do_not_upgrade_fim_in_place_but_install_after_it_with_the_keys() {
    let (_t, lab) = fim_lab_with(|o| o.new_version = Some("4.6.34.0".into()));
    let keys = export_keys(&lab);
    let log = install_fails_1603(&lab, &mim_props(&lab, Some(&keys)));
    assert!(log.contains("is still installed; remove it first"), "{log}");

    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);
    let r = msi_install(&lab, &mim_props(&lab, Some(&keys)));
    assert_eq!(r.code, 0, "{}", r.err);
    let st = lab.state().unwrap();
    assert_eq!(st.products[0].version, "4.6.34.0");
    assert_eq!(st.key_set.as_ref().unwrap().id, st.databases[0].key_set_id);
}

#[test]
fn msiexec_answers_1618_while_another_installer_holds_the_lab() {
    let (_t, lab) = lab(Flavour::Iifp);
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lab.dir().join("installer.lock"))
        .unwrap();
    held.lock().unwrap();
    uninstall(&lab, &installed_code(&lab));
    assert_eq!(last_exit(&lab), 1618);
    assert_eq!(lab.state().unwrap().products.len(), 1);
    drop(held);
    assert_eq!(uninstall(&lab, &installed_code(&lab)).code, 0);
}
