//! `upgrade-lab rehearse PLAN`: takes a real plan (Windows paths, real tool locations), makes a fresh
//! lab that matches it (flavour, service account, product codes), rewrites the plan onto the lab
//! (drives into the sandbox, tools onto the stand-ins, SQL onto the TDS double, secrets onto the
//! lab's), then runs `upgrade validate`, `plan`, `apply --auto-approve`, `plan --detailed-exitcode`.
//! It never touches the real server or the plan's own journal: state always goes to the lab.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::layout::{win_to_lab, Flavour, InitOptions, Lab, ToolPaths};
use crate::serve::StartOptions;
use crate::sqlmodel::TdsVersion;
use crate::LabError;

/// The env var that carries the lab's SQL password to `upgrade`.
pub const SQL_PASSWORD_ENV: &str = "UPGRADE_LAB_SQL_PASSWORD";
/// The env var that replaces `{file: ...}` and `{prompt: true}` service account secrets.
pub const SERVICE_PASSWORD_ENV: &str = "UPGRADE_LAB_SERVICE_PASSWORD";
/// FreeTDS's ODBC driver as Debian installs it.
pub const FREETDS_ODBC: &str = "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so";

/// `upgrade-lab rehearse` options.
#[derive(Debug, Clone)]
pub struct RehearseOptions {
    pub plan: PathBuf,
    pub keep: Option<PathBuf>,
    pub upgrade: Option<PathBuf>,
    /// The installed old product's version on the lab (default: the flavour's).
    pub installed_version: Option<String>,
}

/// What the lab must look like for a plan to make sense on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFacts {
    pub flavour: Flavour,
    /// The lab's SQL Server answers as SQL Server 2000 (TDS 7.1): the plan says `driver: odbc`,
    /// or leaves the client to `auto` (the default) on an IIFP server, whose upgrade to MIIS 2003
    /// runs on SQL Server 2000. Otherwise it answers as SQL Server 2016 (TDS 7.4).
    pub sql2000: bool,
    /// (domain, user) of the sync service account.
    pub account: Option<(String, String)>,
    pub uninstall_code: Option<String>,
    pub uninstall_name: Option<String>,
    pub detect_code: Option<String>,
    pub detect_name: Option<String>,
    pub detect_version: Option<String>,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn get_str(v: &Value, path: &[&str]) -> Option<String> {
    get(v, path).and_then(Value::as_str).map(str::to_string)
}

fn steps(plan: &Value) -> impl Iterator<Item = &Value> {
    plan.get("steps")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

/// Reads the facts the lab must match from a plan.
pub fn plan_facts(plan: &Value) -> PlanFacts {
    let mut facts = PlanFacts {
        flavour: Flavour::Iifp,
        sql2000: false,
        account: None,
        uninstall_code: None,
        uninstall_name: None,
        detect_code: None,
        detect_name: None,
        detect_version: None,
    };
    for s in steps(plan) {
        for kind in ["backup_database", "snapshot_connector_space"] {
            if get_str(s, &[kind, "database"])
                .is_some_and(|d| d.eq_ignore_ascii_case(Flavour::Fim2010r2.database()))
            {
                facts.flavour = Flavour::Fim2010r2;
            }
        }
        if let Some(user) = get_str(s, &["export_keys", "account", "user"]) {
            if facts.account.is_none() {
                facts.account = Some(match user.split_once('\\') {
                    Some((d, u)) => (d.to_string(), u.to_string()),
                    None => ("LAB".to_string(), user),
                });
            }
        }
        if let (Some(u), Some(d)) = (
            get_str(s, &["install", "answers", "service_account", "user"]),
            get_str(s, &["install", "answers", "service_account", "domain"]),
        ) {
            facts.account = Some((d, u));
        }
        facts.uninstall_code = facts
            .uninstall_code
            .or(get_str(s, &["uninstall", "product", "product_code"]));
        facts.uninstall_name = facts
            .uninstall_name
            .or(get_str(s, &["uninstall", "product", "name"]));
        facts.detect_code = facts.detect_code.or(get_str(
            s,
            &["install", "detect", "product", "product_code"],
        ));
        facts.detect_name = facts
            .detect_name
            .or(get_str(s, &["install", "detect", "product", "name"]));
        facts.detect_version = facts
            .detect_version
            .or(get_str(s, &["install", "detect", "version"]));
    }
    // Without an uninstall (an in-place upgrade), the product the install upgrades is the old one.
    for s in steps(plan) {
        facts.uninstall_name = facts
            .uninstall_name
            .or(get_str(s, &["install", "upgrades", "product", "name"]));
        facts.uninstall_code = facts.uninstall_code.or(get_str(
            s,
            &["install", "upgrades", "product", "product_code"],
        ));
    }
    facts.sql2000 = match get_str(plan, &["server", "sql", "driver"]).as_deref() {
        Some("odbc") => true,
        None | Some("auto") => facts.flavour == Flavour::Iifp,
        _ => false,
    };
    facts
}

/// A version that starts with the plan's required prefix (`3.` -> `3.0.0.0`), or the lab's own.
fn version_for(prefix: &str, lab_default: &str) -> String {
    if lab_default.starts_with(prefix) {
        return lab_default.to_string();
    }
    let mut parts: Vec<&str> = prefix
        .trim_end_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    while parts.len() < 4 {
        parts.push("0");
    }
    parts.join(".")
}

/// Lab init options that make a fresh lab match the plan's names.
pub fn init_options(facts: &PlanFacts) -> InitOptions {
    let mut o = InitOptions::new(facts.flavour);
    o.account = facts.account.clone();
    o.installed_code = facts.uninstall_code.clone();
    o.installed_name = facts.uninstall_name.clone();
    o.new_code = facts.detect_code.clone();
    o.new_name = facts.detect_name.clone();
    o.new_version = facts
        .detect_version
        .as_deref()
        .map(|p| version_for(p, &facts.flavour.new_product().version));
    o
}

/// Where the rewritten plan points.
#[derive(Debug, Clone)]
pub struct Target {
    pub lab_dir: PathBuf,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub tools: ToolPaths,
    /// sha256 of the lab's installer media.
    pub installer_sha256: Option<String>,
    /// ODBC driver for `driver: odbc` and `driver: auto` plans.
    pub odbc_driver: String,
}

/// The rewritten plan and the env vars (secret names) to set to the service account password.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub plan: Value,
    pub secret_envs: Vec<String>,
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn path_value(p: &Path) -> Value {
    s(p.to_string_lossy())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

/// Maps every Windows drive path in `v` (strings only) into the lab's sandbox.
fn map_drive_paths(v: &mut Value, lab: &Path) {
    match v {
        Value::String(text) => {
            if let Some(p) = win_to_lab(lab, text).filter(|_| text.len() >= 3) {
                *text = p.to_string_lossy().into_owned();
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| map_drive_paths(i, lab)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, i)| map_drive_paths(i, lab)),
        Value::Tagged(t) => map_drive_paths(&mut t.value, lab),
        _ => {}
    }
}

/// The lab stand-in for a tool named by a path's file name (`sc.exe`, `reg`, ...), if it is one.
fn tool_for(path: &str, tools: &ToolPaths) -> Option<PathBuf> {
    let name = path.rsplit(['\\', '/']).next()?.to_ascii_lowercase();
    let name = name.strip_suffix(".exe").unwrap_or(&name);
    match name {
        "miiskmu" => Some(tools.miiskmu.clone()),
        "msiexec" => Some(tools.msiexec.clone()),
        "reg" => Some(tools.reg.clone()),
        "sc" => Some(tools.sc.clone()),
        _ => None,
    }
}

/// A secret reference that rehearse can satisfy: `{env: NAME}` stays (NAME is recorded), a file or
/// prompt secret becomes `{env: UPGRADE_LAB_SERVICE_PASSWORD}`.
fn rewrite_secret(secret: &mut Value, envs: &mut Vec<String>) {
    match get_str(secret, &["env"]) {
        Some(name) => {
            if !envs.contains(&name) {
                envs.push(name);
            }
        }
        None => {
            *secret = map(vec![("env", s(SERVICE_PASSWORD_ENV))]);
            if !envs.iter().any(|e| e == SERVICE_PASSWORD_ENV) {
                envs.push(SERVICE_PASSWORD_ENV.into());
            }
        }
    }
}

/// Rewrites a real plan onto the lab described by `t`.
pub fn rewrite_plan(plan: &Value, t: &Target) -> Result<Rewritten, LabError> {
    let mut p = plan.clone();
    let root = p
        .as_mapping_mut()
        .ok_or_else(|| LabError::Rehearse("the plan is not a YAML mapping".into()))?;
    let mut envs = Vec::new();

    let driver = get_str(plan, &["server", "sql", "driver"]).unwrap_or_else(|| "auto".into());
    let mut sql = vec![
        ("host", s(t.host.clone())),
        ("port", Value::Number(t.port.into())),
        (
            "auth",
            map(vec![(
                "sql",
                map(vec![
                    ("user", s(t.login.clone())),
                    ("password", map(vec![("env", s(SQL_PASSWORD_ENV))])),
                ]),
            )]),
        ),
        ("driver", s(driver.clone())),
    ];
    if driver != "tds" {
        sql.push(("odbc_driver", s(t.odbc_driver.clone())));
    }
    sql.push(("encryption", s("not_supported")));
    root.insert(s("server"), map(vec![("sql", map(sql))]));
    root.insert(
        s("state"),
        map(vec![("dir", path_value(&t.lab_dir.join("state")))]),
    );
    root.insert(
        s("tools"),
        map(vec![
            ("miiskmu", path_value(&t.tools.miiskmu)),
            ("msiexec", path_value(&t.tools.msiexec)),
            ("reg", path_value(&t.tools.reg)),
            ("sc", path_value(&t.tools.sc)),
        ]),
    );

    if let Some(Value::Sequence(steps)) = root.get_mut("steps") {
        for step in steps.iter_mut() {
            map_drive_paths(step, &t.lab_dir);
            if let Some(e) = step.get_mut("export_keys").and_then(Value::as_mapping_mut) {
                if e.contains_key("tool") {
                    e.insert(s("tool"), path_value(&t.tools.miiskmu));
                }
                if let Some(secret) = e.get_mut("account").and_then(|a| a.get_mut("password")) {
                    rewrite_secret(secret, &mut envs);
                }
            }
            if let Some(i) = step.get_mut("install").and_then(Value::as_mapping_mut) {
                i.insert(s("installer"), path_value(&t.tools.installer));
                match (&t.installer_sha256, i.contains_key("sha256")) {
                    (Some(h), true) => {
                        i.insert(s("sha256"), s(h.clone()));
                    }
                    (None, true) => {
                        i.remove("sha256");
                    }
                    _ => {}
                }
                if let Some(secret) = i
                    .get_mut("answers")
                    .and_then(|a| a.get_mut("service_account"))
                    .and_then(|a| a.get_mut("password"))
                {
                    rewrite_secret(secret, &mut envs);
                }
            }
            if let Some(Value::Sequence(cmds)) =
                step.get_mut("verify").and_then(|v| v.get_mut("commands"))
            {
                for c in cmds.iter_mut() {
                    if let Some(first) = c.get_mut("run").and_then(|r| r.get_mut(0)) {
                        if let Some(tool) = first.as_str().and_then(|f| tool_for(f, &t.tools)) {
                            *first = path_value(&tool);
                        }
                    }
                }
            }
        }
    }
    Ok(Rewritten {
        plan: p,
        secret_envs: envs,
    })
}

/// Destination folders the rewritten plan writes into (backups, key files, copies, logs), so a
/// rehearsal starts from a prepared server. Only folders inside the lab are returned.
pub fn destination_folders(plan: &Value, lab_dir: &Path) -> Vec<PathBuf> {
    let wanted: [&[&str]; 5] = [
        &["backup_database", "to"],
        &["export_keys", "to"],
        &["backup_files", "to"],
        &["uninstall", "log"],
        &["install", "log"],
    ];
    let mut out: Vec<PathBuf> = Vec::new();
    for step in steps(plan) {
        for path in wanted {
            let Some(p) = get_str(step, path) else {
                continue;
            };
            let folder = Path::new(&p).parent().map(Path::to_path_buf);
            if let Some(f) = folder.filter(|f| f.starts_with(lab_dir) && !out.contains(f)) {
                out.push(f);
            }
        }
    }
    out
}

/// One phase's result.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub exit: Option<i32>,
    pub duration: Duration,
}

/// The `upgrade` binary: `--upgrade`, else `upgrade` beside this executable.
fn upgrade_binary(given: Option<&Path>) -> Result<PathBuf, LabError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|e| LabError::Rehearse(e.to_string()))?;
    let sibling = me.with_file_name("upgrade");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(LabError::Rehearse(format!(
            "no `upgrade` binary at {}; build it (`cargo build --bin upgrade`) or pass --upgrade PATH",
            sibling.display()
        )))
    }
}

fn sha256_file(path: &Path) -> Result<String, LabError> {
    let bytes = std::fs::read(path).map_err(LabError::io(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn temp_lab_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "upgrade-lab-rehearse-{}-{nanos}",
        std::process::id()
    ))
}

/// Runs a rehearsal; returns the exit code (0 when every phase succeeded).
pub fn run(opts: &RehearseOptions) -> Result<i32, LabError> {
    let text = std::fs::read_to_string(&opts.plan).map_err(LabError::io(&opts.plan))?;
    let plan: Value = serde_yaml::from_str(&text).map_err(|e| {
        LabError::Rehearse(format!(
            "{}: {e} (run `upgrade validate` on it first)",
            opts.plan.display()
        ))
    })?;
    let upgrade = upgrade_binary(opts.upgrade.as_deref())?;
    let facts = plan_facts(&plan);
    let dir = opts.keep.clone().unwrap_or_else(temp_lab_dir);
    let mut init = init_options(&facts);
    init.installed_version = opts.installed_version.clone();
    let lab = Lab::init_with(&dir, &init)?;
    let result = rehearse_on(&lab, &plan, &facts, &opts.plan, &upgrade);
    if opts.keep.is_none() {
        let _ = std::fs::remove_dir_all(lab.dir());
    } else {
        println!("lab kept in {}", lab.dir().display());
    }
    result
}

fn rehearse_on(
    lab: &Lab,
    plan: &Value,
    facts: &PlanFacts,
    source: &Path,
    upgrade: &Path,
) -> Result<i32, LabError> {
    let tds = if facts.sql2000 {
        TdsVersion::V71
    } else {
        TdsVersion::V74
    };
    let running = lab.start(StartOptions {
        port: 0,
        winrm_port: 0,
        winrm_https: false,
        tds,
        faults: None,
        sql_host: crate::serve::SqlHost::SyncServer,
    })?;
    let tools = lab.tools()?;
    let target = Target {
        lab_dir: lab.dir().to_path_buf(),
        host: running.host.clone(),
        port: running.port,
        login: running.login.clone(),
        installer_sha256: sha256_file(&tools.installer).ok(),
        tools,
        odbc_driver: if Path::new(FREETDS_ODBC).exists() {
            FREETDS_ODBC.into()
        } else {
            "FreeTDS".into()
        },
    };
    let rewritten = rewrite_plan(plan, &target)?;
    for folder in destination_folders(&rewritten.plan, lab.dir()) {
        std::fs::create_dir_all(&folder).map_err(LabError::io(&folder))?;
    }
    let plan_file = lab.dir().join("rehearsal-plan.yaml");
    let yaml =
        serde_yaml::to_string(&rewritten.plan).map_err(|e| LabError::Rehearse(e.to_string()))?;
    let header = format!(
        "# Rewritten by `upgrade-lab rehearse` from {} onto the lab in {}.\n",
        source.display(),
        lab.dir().display()
    );
    std::fs::write(&plan_file, header + &yaml).map_err(LabError::io(&plan_file))?;
    println!(
        "rehearsing {} on the lab in {} ({}, SQL on {}:{} TDS {})",
        source.display(),
        lab.dir().display(),
        facts.flavour.name(),
        running.host,
        running.port,
        if facts.sql2000 { "7.1" } else { "7.4" }
    );

    let account_password = lab.state()?.account.password;
    let plan_arg = plan_file.to_string_lossy().into_owned();
    let phases: [(&'static str, Vec<&str>); 4] = [
        ("validate", vec!["validate", &plan_arg]),
        ("plan", vec!["plan", &plan_arg]),
        ("apply", vec!["apply", &plan_arg, "--auto-approve"]),
        ("plan again", vec!["plan", &plan_arg, "--detailed-exitcode"]),
    ];
    let mut results: Vec<Phase> = Vec::new();
    let mut failed = false;
    for (name, args) in phases {
        if failed {
            results.push(Phase {
                name,
                exit: None,
                duration: Duration::ZERO,
            });
            continue;
        }
        println!("\n== upgrade {} ==", args.join(" "));
        let mut cmd = Command::new(upgrade);
        cmd.args(&args)
            .current_dir(lab.dir())
            .env(SQL_PASSWORD_ENV, &running.password);
        for env in &rewritten.secret_envs {
            cmd.env(env, &account_password);
        }
        let started = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| LabError::Rehearse(format!("running {}: {e}", upgrade.display())))?;
        let exit = status.code().unwrap_or(-1);
        failed = exit != 0;
        results.push(Phase {
            name,
            exit: Some(exit),
            duration: started.elapsed(),
        });
    }
    println!("\n== rehearsal summary ==");
    for p in &results {
        match p.exit {
            Some(code) => println!(
                "  {:<11} exit {code:<3} {:>8.2}s",
                p.name,
                p.duration.as_secs_f64()
            ),
            None => println!("  {:<11} skipped (an earlier phase failed)", p.name),
        }
    }
    println!("\n== lab status ==\n{}", lab.status()?);
    running.stop();
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_PLAN: &str = r#"
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

    fn target() -> Target {
        let lab = PathBuf::from("/tmp/lab");
        Target {
            tools: ToolPaths {
                miiskmu: lab.join(
                    "drives/C/Program Files/Microsoft Identity Integration Server/Bin/miiskmu",
                ),
                msiexec: lab.join("bin/msiexec"),
                reg: lab.join("bin/reg"),
                sc: lab.join("bin/sc"),
                installer: lab.join("drives/E/MIIS2003/Setup.exe"),
            },
            lab_dir: lab,
            host: "127.0.0.1".into(),
            port: 41433,
            login: "upgrade".into(),
            installer_sha256: Some("b".repeat(64)),
            odbc_driver: FREETDS_ODBC.into(),
        }
    }

    fn rewritten() -> Rewritten {
        rewrite_plan(&serde_yaml::from_str(REAL_PLAN).unwrap(), &target()).unwrap()
    }

    fn at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
        get(v, path)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {path:?}"))
    }

    fn step(v: &Value, i: usize) -> &Value {
        &v["steps"][i]
    }

    #[test]
    fn the_plans_facts_shape_the_lab() {
        let facts = plan_facts(&serde_yaml::from_str(REAL_PLAN).unwrap());
        assert_eq!(facts.flavour, Flavour::Iifp);
        assert!(facts.sql2000);
        assert_eq!(facts.account, Some(("CONTOSO".into(), "svc-miis".into())));
        assert_eq!(
            facts.uninstall_code.as_deref(),
            Some("{11111111-2222-3333-4444-555555555555}")
        );
        assert_eq!(
            facts.detect_name.as_deref(),
            Some("Microsoft Identity Integration Server 2003")
        );
        let o = init_options(&facts);
        assert_eq!(o.new_version.as_deref(), Some("3.3.0.0"));
        let fim = plan_facts(&serde_yaml::from_str("steps: [ {id: a, backup_database: {database: FIMSynchronizationService, to: 'D:\\x'}} ]").unwrap());
        assert_eq!(fim.flavour, Flavour::Fim2010r2);
        assert_eq!(version_for("4.4.1", "3.3.0.0"), "4.4.1.0");
        let in_place = plan_facts(&serde_yaml::from_str("steps: [ {id: a, install: {upgrades: {product: {name: FIM R2}, min_version: '4.1.3419.0'}}} ]").unwrap());
        assert_eq!(
            in_place.uninstall_name.as_deref(),
            Some("FIM R2"),
            "the upgraded product is the lab's old one"
        );
    }

    #[test]
    fn a_plan_that_leaves_the_client_to_auto_rehearses_on_its_procedure_s_sql_server() {
        let iifp = REAL_PLAN.replace(", driver: odbc", "");
        assert!(plan_facts(&serde_yaml::from_str(&iifp).unwrap()).sql2000);
        let tds = REAL_PLAN.replace("driver: odbc", "driver: tds");
        assert!(!plan_facts(&serde_yaml::from_str(&tds).unwrap()).sql2000);
        let fim = "steps: [ {id: a, backup_database: {database: FIMSynchronizationService, to: 'D:\\x'}} ]";
        assert!(!plan_facts(&serde_yaml::from_str(fim).unwrap()).sql2000);
        // Should `auto` pick ODBC, the lab's ODBC driver is named.
        let p = rewrite_plan(&serde_yaml::from_str(&iifp).unwrap(), &target())
            .unwrap()
            .plan;
        assert_eq!(at(&p, &["server", "sql", "driver"]), "auto");
        assert_eq!(at(&p, &["server", "sql", "odbc_driver"]), FREETDS_ODBC);
    }

    #[test]
    fn sql_points_at_the_lab_with_sql_auth_and_the_freetds_driver_for_odbc() {
        let p = rewritten().plan;
        assert_eq!(at(&p, &["server", "sql", "host"]), "127.0.0.1");
        assert_eq!(
            get(&p, &["server", "sql", "port"]).and_then(Value::as_u64),
            Some(41433)
        );
        assert!(get(&p, &["server", "sql", "instance"]).is_none());
        assert_eq!(at(&p, &["server", "sql", "auth", "sql", "user"]), "upgrade");
        assert_eq!(
            at(&p, &["server", "sql", "auth", "sql", "password", "env"]),
            SQL_PASSWORD_ENV
        );
        assert_eq!(at(&p, &["server", "sql", "driver"]), "odbc");
        assert_eq!(at(&p, &["server", "sql", "odbc_driver"]), FREETDS_ODBC);
        assert_eq!(at(&p, &["state", "dir"]), "/tmp/lab/state");
    }

    #[test]
    fn drive_paths_map_into_the_sandbox_and_tools_onto_the_stand_ins() {
        let p = rewritten().plan;
        assert_eq!(
            at(step(&p, 0), &["backup_database", "to"]),
            "/tmp/lab/drives/D/Upgrade/miis.bak"
        );
        assert_eq!(
            at(step(&p, 1), &["export_keys", "tool"]),
            "/tmp/lab/drives/C/Program Files/Microsoft Identity Integration Server/Bin/miiskmu"
        );
        assert_eq!(
            at(step(&p, 2), &["backup_files", "from"]),
            "/tmp/lab/drives/C/Program Files/Microsoft Identity Integration Server/Extensions"
        );
        assert_eq!(
            at(step(&p, 3), &["uninstall", "log"]),
            "/tmp/lab/drives/D/Upgrade/uninstall.log"
        );
        assert_eq!(at(&p, &["tools", "sc"]), "/tmp/lab/bin/sc");
        assert_eq!(at(&p, &["tools", "msiexec"]), "/tmp/lab/bin/msiexec");
        let install = step(&p, 4);
        assert_eq!(
            at(install, &["install", "installer"]),
            "/tmp/lab/drives/E/MIIS2003/Setup.exe"
        );
        assert_eq!(at(install, &["install", "sha256"]), "b".repeat(64));
        assert_eq!(
            install["install"]["arguments"][1].as_str(),
            Some("/keyfile:{answers.key_file}")
        );
        assert_eq!(
            step(&p, 5)["verify"]["commands"][0]["run"][0].as_str(),
            Some("/tmp/lab/bin/sc")
        );
        assert_eq!(
            at(step(&p, 3), &["uninstall", "product", "product_code"]),
            "{11111111-2222-3333-4444-555555555555}"
        );
    }

    #[test]
    fn the_plans_destination_folders_are_prepared_inside_the_lab_only() {
        let p = rewritten().plan;
        let folders = destination_folders(&p, Path::new("/tmp/lab"));
        assert_eq!(folders, vec![PathBuf::from("/tmp/lab/drives/D/Upgrade")]);
        let outside = serde_yaml::from_str(
            "steps: [ {id: a, backup_database: {database: X, to: '/srv/x.bak'}} ]",
        )
        .unwrap();
        assert!(destination_folders(&outside, Path::new("/tmp/lab")).is_empty());
    }

    #[test]
    fn env_secrets_are_kept_and_named_and_other_secrets_become_the_lab_env() {
        let r = rewritten();
        assert_eq!(
            r.secret_envs,
            vec![
                "MIIS_SERVICE_PASSWORD".to_string(),
                SERVICE_PASSWORD_ENV.to_string()
            ]
        );
        assert_eq!(
            at(
                step(&r.plan, 1),
                &["export_keys", "account", "password", "env"]
            ),
            "MIIS_SERVICE_PASSWORD"
        );
        assert_eq!(
            at(
                step(&r.plan, 4),
                &["install", "answers", "service_account", "password", "env"]
            ),
            SERVICE_PASSWORD_ENV
        );
        let text = serde_yaml::to_string(&r.plan).unwrap();
        assert!(!text.contains(r"C:\"), "a Windows path survived: {text}");
        assert!(!text.contains(r"D:\"), "a Windows path survived: {text}");
    }
}
