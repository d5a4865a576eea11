//! Plans for rehearse's unit tests: a real plan written for a real server, typed plans built from
//! a few steps, and a lab to rewrite onto. Test code only.

use std::path::PathBuf;

use upgrade_plan::{Plan, Sha256Hex, StepSpec};

use super::odbc::FREETDS;
use super::rewrite::{Target, WinrmTarget};
use crate::layout::ToolPaths;

pub const REAL_PLAN: &str = r#"
version: 1
name: iifp-to-miis2003
server:
  sql: { host: "(local)", instance: MIIS, auth: windows, driver: odbc }
state: { dir: 'D:\Upgrade\state' }
tools: { miiskmu: 'C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe' }
steps:
  - id: database
    backup_database: { database: MicrosoftIdentityIntegrationServer, to: 'D:\Upgrade\miis.bak' }
  - id: keys
    export_keys:
      tool: 'C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe'
      to: 'D:\Upgrade\miis-keys.bin'
      account: { user: 'CONTOSO\svc-miis', password: { env: MIIS_SERVICE_PASSWORD } }
  - id: extensions
    backup_files:
      from: 'C:\Program Files\Microsoft Identity Integration Server\Extensions'
      to: 'D:\Upgrade\Extensions'
  - id: remove-iifp
    uninstall: { product: { product_code: '{11111111-2222-3333-4444-555555555555}' }, log: 'D:\Upgrade\uninstall.log' }
    after: [database, keys, extensions]
  - id: install-miis
    install:
      installer: 'E:\Enterprise\Setup.exe'
      sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
      detect: { product: { name: Microsoft Identity Integration Server 2003 }, version: '3.' }
      answers:
        service_account: { user: svc-miis, domain: CONTOSO, password: { file: 'C:\secrets\svc.txt' } }
        key_file: { from: keys }
      arguments: ['/q', '/keyfile:{answers.key_file}']
    after: [remove-iifp]
  - id: verify
    verify:
      services: [ { name: miiserver } ]
      commands: [ { run: ['C:\Windows\System32\sc.exe', query, miiserver], output_matches: RUNNING } ]
    after: [install-miis]
"#;

/// A plan as `upgrade_plan::load` gives it: every test plan here must validate.
pub fn load(name: &str, text: &str) -> Plan {
    match upgrade_plan::load_str(name, text) {
        Ok(loaded) => loaded.plan,
        Err(d) => panic!("{name} does not validate:\n{d}"),
    }
}

pub fn real_plan() -> Plan {
    load("real.yaml", REAL_PLAN)
}

/// REAL_PLAN with one piece of text replaced (the replaced text must be there).
pub fn real_plan_with(from: &str, to: &str) -> Plan {
    assert!(REAL_PLAN.contains(from), "REAL_PLAN has no `{from}`");
    load("real.yaml", &REAL_PLAN.replace(from, to))
}

/// A typed plan of just these steps (YAML, one flow mapping per step), on REAL_PLAN's server; for
/// facts that one step decides. Such a plan need not validate as a whole.
pub fn plan_of(steps: &[&str]) -> Plan {
    let mut plan = real_plan();
    plan.steps = steps
        .iter()
        .map(|s| serde_yaml::from_str::<StepSpec>(s).unwrap_or_else(|e| panic!("step {s}: {e}")))
        .collect();
    plan
}

pub fn target() -> Target {
    let lab = PathBuf::from("/tmp/lab");
    Target {
        tools: ToolPaths {
            miiskmu: lab
                .join("drives/C/Program Files/Microsoft Identity Integration Server/Bin/miiskmu"),
            msiexec: lab.join("bin/msiexec"),
            reg: lab.join("bin/reg"),
            sc: lab.join("bin/sc"),
            installer: lab.join("drives/E/MIIS2003/Setup.exe"),
        },
        lab_dir: lab,
        host: "127.0.0.1".into(),
        port: 41433,
        login: "upgrade".into(),
        installer_sha256: Some(Sha256Hex::parse(&"b".repeat(64)).unwrap()),
        odbc_driver: Some(FREETDS.into()),
        winrm: WinrmTarget {
            url: "http://127.0.0.1:45985/wsman".into(),
            user: "upgrade-admin".into(),
            kerberos: None,
        },
        media: r"E:\MIIS2003\Setup.exe".into(),
    }
}
