//! The Windows build of `upgrade`, run under Wine with Wine's real msiexec, reg and sc: one code
//! path on both platforms. The old and new products are small MSI packages built here with wixl
//! from `tests/wine/*.wxs` (TEST FIXTURES, not Microsoft's); SQL Server is the lab's TDS double
//! (TEST DOUBLE), reached by the Windows build over Wine's sockets. Needs Debian's rustc-web, cargo-web,
//! rust-web-src, libstd-rust-web-dev, gcc-mingw-w64-x86-64, wine, wine64 and wixl (`.ci/run`
//! installs them); without them the test fails and says so.

mod common;

use std::path::Path;
use std::process::Command;

use common::text;
use common::wine::{need, windows_exe, z, Wine};

const OLD_CODE: &str = "{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}";
const NEW_CODE: &str = "{9D4E1A37-2C6F-4B8D-A5E3-1F7C9B2D6E84}";

#[test]
fn the_windows_build_upgrades_a_product_with_wines_real_msiexec_and_converges() {
    need("wine", "wine wine64");
    need("wixl", "wixl");
    let exe = windows_exe();
    let tmp = tempfile::tempdir().unwrap();
    let wine = Wine {
        prefix: tmp.path().join("prefix"),
    };

    // The packages: the old product (with an Extensions folder) and the new one.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("wine");
    for name in ["iifp", "miis"] {
        let out = Command::new("wixl")
            .current_dir(&fixtures)
            .args([
                "-o",
                tmp.path().join(format!("{name}.msi")).to_str().unwrap(),
                &format!("{name}.wxs"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "wixl {name}: {}", text(&out));
    }
    // The server before the upgrade: the old product installed by Wine's msiexec.
    let old_msi = z(&tmp.path().join("iifp.msi"));
    let setup = wine.run(&["msiexec", "/i", &old_msi, "/qn"]);
    assert!(
        setup.status.success(),
        "installing the old product: {}",
        text(&setup)
    );

    // SQL Server: the lab's TDS double (7.4), which writes backups where Wine's Z: points.
    let lab = upgrade_lab::Lab::init(&tmp.path().join("lab"), upgrade_lab::Flavour::Iifp).unwrap();
    let lab = lab.start(upgrade_lab::StartOptions::default()).unwrap();
    let bak = z(&tmp.path().join("miis.bak"));
    let port = lab.port;
    let login = lab.login.clone();

    let state = z(&tmp.path().join("state"));
    let copy = z(&tmp.path().join("Extensions"));
    let new_msi = z(&tmp.path().join("miis.msi"));
    let plan = format!(
        r#"version: 1
name: wine-upgrade
server:
  sql:
    host: 127.0.0.1
    port: {port}
    auth: {{ sql: {{ user: {login}, password: {{ env: LAB_SQL_PASSWORD }} }} }}
state: {{ dir: '{state}' }}
steps:
  - id: database
    backup_database: {{ database: MicrosoftIdentityIntegrationServer, to: '{bak}' }}
  - id: before
    snapshot_connector_space: {{ database: MicrosoftIdentityIntegrationServer }}
  - id: extensions
    backup_files:
      from: 'C:\Program Files (x86)\IIFP\Extensions'
      to: '{copy}'
  - id: remove-iifp
    after: [database, before, extensions]
    uninstall:
      product: {{ name: Identity Integration Feature Pack }}
      unprotected: true
  - id: install-miis
    after: [remove-iifp]
    install:
      installer: '{new_msi}'
      detect: {{ product: {{ product_code: "{NEW_CODE}" }}, version: "3.3" }}
  - id: verify
    after: [install-miis]
    verify:
      connector_space: {{ same_as: before }}
      commands:
        - run: ['C:\windows\system32\reg.exe', query, 'HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\{NEW_CODE}']
          output_matches: Microsoft Identity Integration Server 2003
"#
    );
    let plan_path = tmp.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let plan_z = z(&plan_path);
    let exe = exe.to_str().unwrap();

    let password = lab.password.clone();
    let sql_env = [("LAB_SQL_PASSWORD", password.as_str())];
    let first = wine.run_with(&[exe, "plan", &plan_z, "--detailed-exitcode"], &sql_env);
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    // `/norestart`: the version of Wine's msi.dll (4.5) was read and is 3.0 or later. msiexec is
    // in the prefix's %SystemRoot% (Wine's is `C:\windows`), which the plan does not name.
    assert!(
        out.contains(&format!(
            "run: C:\\windows\\System32\\msiexec.exe /x {OLD_CODE} /qn /norestart /l*v"
        )),
        "{out}"
    );

    let apply = wine.run_with(&[exe, "apply", &plan_z, "--auto-approve"], &sql_env);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        String::from_utf8_lossy(&apply.stdout).contains("Apply complete: 6 step(s) done"),
        "{}",
        text(&apply)
    );
    assert!(tmp.path().join("Extensions").join("SHA256SUMS").is_file());
    assert!(
        tmp.path().join("miis.bak").is_file(),
        "the backup is where Z: points"
    );
    assert!(tmp
        .path()
        .join("Extensions")
        .join("Contoso.MAExtension.dll")
        .is_file());

    let again = wine.run_with(&[exe, "plan", &plan_z, "--detailed-exitcode"], &sql_env);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("Nothing to do"),
        "{}",
        text(&again)
    );

    // Wine's msiexec hands a Windows parent the full 1605 for a product that is not installed.
    let gone = wine.run(&["msiexec", "/x", OLD_CODE, "/qn"]);
    assert_eq!(
        gone.status.code(),
        Some(1605 & 0xFF),
        "a Linux parent sees 1605 cut to 8 bits: {}",
        text(&gone)
    );
}
