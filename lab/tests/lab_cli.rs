//! `upgrade-lab init`, `serve`, `status` and `fault` as an administrator (or the executor's tests)
//! use them, and the library API the executor's integration tests build on.

mod tds_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use upgrade_lab::layout::{FIM_LOCATION, MIIS_LOCATION, MIIS_SETUP, MIM_MSI};
use upgrade_lab::{Flavour, Lab, StartOptions};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab"))
}

fn upgrade_lab(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn init(dir: &Path, product: &str) {
    let (code, out, err) = upgrade_lab(&["init", dir.to_str().unwrap(), "--product", product]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn init_lays_out_an_iifp_server_with_its_drives_tools_media_keys_service_and_database() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let lab = Lab::open(&dir).unwrap();
    let bin_dir = lab.lab_path(MIIS_LOCATION).join("Bin");
    for p in [
        bin_dir.join("miiskmu"),
        lab.lab_path(MIIS_SETUP),
        dir.join("bin/msiexec"),
        dir.join("bin/reg"),
        dir.join("bin/sc"),
    ] {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.starts_with("#!/bin/sh\n"), "{}", p.display());
        assert!(
            text.contains(&format!(
                "'{}' tool --lab '{}'",
                bin().display(),
                lab.dir().display()
            )),
            "{text}"
        );
    }
    let dlls = std::fs::read_dir(lab.lab_path(MIIS_LOCATION).join("Extensions"))
        .unwrap()
        .count();
    assert!(dlls >= 3);
    let st = lab.state().unwrap();
    assert_eq!(st.products.len(), 1);
    assert_eq!(st.products[0].name, "Identity Integration Feature Pack");
    assert!(st.products[0].version.starts_with("3."));
    assert!(st.key_set.is_some());
    assert!(st.service("miiserver").unwrap().running);
    assert!(dir.join("sql/state.json").exists());
    let status = lab.status().unwrap();
    assert!(status
        .databases
        .contains(&"MicrosoftIdentityIntegrationServer".to_string()));
    assert!(status.backups.is_empty());

    let (code, _, err) = upgrade_lab(&["init", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is already a lab"), "{err}");
}

#[test]
fn init_fim2010r2_installs_fim_and_puts_a_mim_2016_package_on_e() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "fim2010r2");
    let lab = Lab::open(&dir).unwrap();
    let st = lab.state().unwrap();
    assert!(st.products[0].name.contains("Forefront Identity Manager"));
    assert_eq!(st.products[0].install_location, FIM_LOCATION);
    assert!(st.service("FIMSynchronizationService").is_some());
    let pkg = std::fs::read_to_string(lab.lab_path(MIM_MSI)).unwrap();
    assert!(upgrade_lab::tools::package::Package::parse(&pkg).is_some());
    assert!(lab
        .status()
        .unwrap()
        .databases
        .contains(&"FIMSynchronizationService".to_string()));
    let (code, _, err) = upgrade_lab(&[
        "init",
        t.path().join("x").to_str().unwrap(),
        "--product",
        "mim",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("expected iifp or fim2010r2"));
}

#[test]
fn serve_prints_one_ready_line_accepts_tcp_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let mut child = Command::new(bin())
        .args([
            "serve",
            dir.to_str().unwrap(),
            "--tds",
            "7.1",
            "--fault",
            "backup-3201=1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["host"], "127.0.0.1");
    assert_eq!(ready["login"], "upgrade");
    assert_eq!(ready["tds"], "7.1");
    assert_eq!(
        ready["password"],
        Lab::open(&dir)
            .unwrap()
            .state()
            .unwrap()
            .sql
            .password
            .as_str()
    );
    assert!(ready["tools"]["msiexec"]
        .as_str()
        .unwrap()
        .ends_with("/bin/msiexec"));
    assert!(ready["drives"]["C"]
        .as_str()
        .unwrap()
        .ends_with("/drives/C"));
    let port = ready["port"].as_u64().unwrap() as u16;
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The WinRM listener and its local administrator (kept in lab.json).
    let admin = Lab::open(&dir).unwrap().state().unwrap().winrm.unwrap();
    assert_eq!(ready["winrm"]["user"], admin.user.as_str());
    assert_eq!(ready["winrm"]["password"], admin.password.as_str());
    let url = ready["winrm"]["url"].as_str().unwrap();
    let winrm_port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/wsman"))
        .unwrap_or_else(|| panic!("WinRM url {url}"))
        .parse()
        .unwrap();
    std::net::TcpStream::connect(("127.0.0.1", winrm_port)).unwrap();
    let faults = upgrade_lab::faults::load(&dir).unwrap();
    assert_eq!(faults.sql.backup_3201_at, Some(1));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", winrm_port)).is_err());
}

#[test]
fn fault_replaces_the_active_faults_and_rejects_a_bad_spec() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let d = dir.to_str().unwrap();
    let (code, out, _) = upgrade_lab(&["fault", d, "msiexec-1618=2", "disk-cap=1000"]);
    assert_eq!(code, 0);
    assert!(out.contains("msiexec-1618=2 disk-cap=1000"));
    let f = upgrade_lab::faults::load(&dir).unwrap();
    assert_eq!((f.msiexec_1618_remaining, f.sql.disk_cap), (2, Some(1000)));
    let (code, _, err) = upgrade_lab(&["fault", d, "backup-3201=x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("expected N as a whole number, found `x`"),
        "{err}"
    );
    assert_eq!(
        upgrade_lab::faults::load(&dir).unwrap(),
        f,
        "a bad spec changes nothing"
    );
    let (code, out, _) = upgrade_lab(&["fault", d]);
    assert_eq!(code, 0);
    assert!(out.contains("faults: none"));
}

#[test]
fn status_reports_products_services_keys_exports_and_tool_runs_without_passwords() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let lab = Lab::open(&dir).unwrap();
    let st = lab.state().unwrap();
    let tools = lab.tools().unwrap();
    let key = dir.join("keys.bin");
    let o = Command::new(&tools.miiskmu)
        .args([
            "/e",
            key.to_str().unwrap(),
            &format!("/u:{}\\{}", st.account.domain, st.account.user),
            &st.account.password,
            "/q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let (code, text, _) = upgrade_lab(&["status", dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("Identity Integration Feature Pack"));
    assert!(text.contains("miiserver RUNNING"));
    assert!(text.contains("key set on the server: present"));
    assert!(text.contains("key files exported: 1"));
    assert!(text.contains("backups taken: 0"));
    let (code, json, _) = upgrade_lab(&["status", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["key_exports"][0]["path"], key.to_str().unwrap());
    assert_eq!(v["last_argv"][0]["tool"], "miiskmu");
    assert!(!json.contains(&st.sql.password));
}

#[tokio::test]
async fn a_started_lab_accepts_its_login_over_tiberius_and_maps_windows_paths() {
    let t = tempfile::tempdir().unwrap();
    let mut o = upgrade_lab::InitOptions::new(Flavour::Iifp);
    o.exe = Some(bin());
    let lab = Lab::init_with(&t.path().join("lab"), &o).unwrap();
    let running = lab.start(StartOptions::default()).unwrap();
    assert_eq!(
        running.lab_path(r"D:\Upgrade\miis.bak"),
        lab.dir().join("drives/D/Upgrade/miis.bak")
    );

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], running.port));
    let mut client = tds_support::connect_as(addr, &running.login, &running.password)
        .await
        .unwrap();
    let row = client
        .query("SELECT name FROM master.dbo.sysdatabases WHERE name = N'MicrosoftIdentityIntegrationServer'", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.get::<&str, _>(0),
        Some("MicrosoftIdentityIntegrationServer")
    );
    drop(client);
    let port = running.port;
    running.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn lab_binary_finds_the_upgrade_lab_executable() {
    let p = upgrade_lab::lab_binary();
    assert!(p.ends_with("upgrade-lab"));
    assert!(p.is_file());
}

#[test]
fn env_prints_the_lab_passwords_for_a_plan_written_for_the_lab() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let st = Lab::open(&dir).unwrap().state().unwrap();
    let (code, out, _) = upgrade_lab(&["env", dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!(
        "export UPGRADE_LAB_SQL_PASSWORD='{}'\n",
        st.sql.password
    )));
    assert!(out.contains(&format!(
        "export UPGRADE_LAB_SERVICE_PASSWORD='{}'\n",
        st.account.password
    )));
}

#[test]
fn a_lab_made_before_the_winrm_listener_gets_its_administrator_when_served() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    init(&dir, "iifp");
    let mut st = upgrade_lab::state::load(&dir).unwrap();
    st.winrm = None;
    upgrade_lab::state::store(&dir, &st).unwrap();
    let running = Lab::open(&dir)
        .unwrap()
        .start(StartOptions::default())
        .unwrap();
    let admin = upgrade_lab::state::load(&dir).unwrap().winrm.unwrap();
    assert_eq!(
        (running.winrm.user.as_str(), running.winrm.password.as_str()),
        (admin.user.as_str(), admin.password.as_str())
    );
    assert!(running.winrm.url.starts_with("http://127.0.0.1:"));
}
