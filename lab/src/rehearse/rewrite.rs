//! A real plan rewritten onto a lab, as a typed `Plan`: SQL onto the TDS double with the lab's login,
//! state into the lab, Windows drive paths into the sandbox, tools onto the stand-ins, and secrets
//! the lab cannot supply onto the lab's env var. A plan that acts on the server over WinRM
//! (`server.connect: winrm`) keeps its server paths as they are (the lab's WinRM shell maps them
//! onto its drives, as the server would resolve them) and is pointed at the lab's WinRM listener;
//! its admin-host paths (backup copies, the key file's copy) go into the lab's `admin` folder.
//! Pure: it reads the plan and the lab's addresses.

use std::path::{Path, PathBuf};

use upgrade_plan::kinds::PathOn;
use upgrade_plan::{
    AbsPath, Connect, Encryption, KeyFile, Plan, Secret, Sha256Hex, SqlAuth, SqlConnection,
    SqlDriver, SqlLogin, StateConfig, StepKind, Tools, WinrmAuth, WinrmConnect,
};

use super::{SERVICE_PASSWORD_ENV, SQL_PASSWORD_ENV, WINRM_PASSWORD_ENV};
use crate::layout::{win_to_lab, ToolPaths};
use crate::LabError;

/// Where the rewritten plan points.
#[derive(Debug, Clone)]
pub struct Target {
    pub lab_dir: PathBuf,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub tools: ToolPaths,
    /// sha256 of the lab's installer media.
    pub installer_sha256: Option<Sha256Hex>,
    /// ODBC driver for `driver: odbc` and `driver: auto` plans; None when this machine has none,
    /// and such plans then use the built-in TDS client (`driver: tds`) against a lab answering as
    /// a newer SQL Server.
    pub odbc_driver: Option<String>,
    /// The lab's WinRM listener, for plans with `server.connect: winrm`.
    pub winrm: WinrmTarget,
    /// The installer media's Windows path on the lab's E: (what a remote plan names).
    pub media: String,
}

/// The lab's WinRM listener as a remote plan is pointed at it.
#[derive(Debug, Clone)]
pub struct WinrmTarget {
    /// `http://127.0.0.1:PORT/wsman`
    pub url: String,
    /// The lab's local administrator.
    pub user: String,
    /// With the lab's KDC (a plan that logs on with Kerberos): its URL by the service's host
    /// name and its principal.
    pub kerberos: Option<KerberosTarget>,
}

/// Where and as whom a Kerberos plan logs on to the lab.
#[derive(Debug, Clone)]
pub struct KerberosTarget {
    /// `http://localhost:PORT/wsman`
    pub url: String,
    /// `admin@LAB.TEST`
    pub user: String,
}

/// The rewritten plan and the env vars (secret names) to set to the service account password.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub plan: Plan,
    pub secret_envs: Vec<String>,
}

/// A path on this machine as the plan language's absolute path.
fn lab_path(path: &Path) -> Result<AbsPath, LabError> {
    AbsPath::parse(&path.to_string_lossy())
        .map_err(|e| LabError::Rehearse(format!("a lab path in the rewritten plan: {e}")))
}

/// A Windows drive path (`D:\Upgrade`) as the lab's sandbox has it (`LAB/drives/D/Upgrade`);
/// `None` for anything else (UNC and POSIX paths, text that is not a path).
fn sandboxed(text: &str, lab: &Path) -> Option<String> {
    win_to_lab(lab, text)
        .filter(|_| text.len() >= 3)
        .map(|p| p.to_string_lossy().into_owned())
}

fn sandbox_path(path: &mut AbsPath, lab: &Path) -> Result<(), LabError> {
    if let Some(p) = sandboxed(path.as_str(), lab) {
        *path = lab_path(Path::new(&p))?;
    }
    Ok(())
}

/// Free text (an argument, a property value) that is a whole drive path goes into the sandbox.
fn sandbox_text(text: &mut String, lab: &Path) {
    if let Some(p) = sandboxed(text, lab) {
        *text = p;
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

/// A secret the lab can supply: `{env: NAME}` stays (rehearse sets NAME), a file or prompt secret
/// becomes `{env: UPGRADE_LAB_SERVICE_PASSWORD}`.
fn lab_secret(secret: &mut Secret) {
    match secret {
        Secret::Env(_) => {}
        Secret::File(_) | Secret::Prompt(_) => *secret = Secret::Env(SERVICE_PASSWORD_ENV.into()),
    }
}

/// The plan's SQL connection pointed at the lab's TDS double, with the lab's SQL login. The client
/// (`driver`) and the database to log in to stay the plan's, but `driver: odbc` on a machine
/// without an ODBC driver (`Target::odbc_driver`) becomes the built-in client (`auto` picks it
/// itself, the lab then answering as a newer SQL Server).
fn lab_sql(plan: &SqlConnection, t: &Target) -> SqlConnection {
    let driver = match (&t.odbc_driver, plan.driver) {
        (None, SqlDriver::Odbc) => SqlDriver::Tds,
        (_, driver) => driver,
    };
    SqlConnection {
        host: t.host.clone(),
        instance: None,
        port: Some(t.port),
        auth: SqlAuth::Sql(SqlLogin {
            user: t.login.clone(),
            password: Secret::Env(SQL_PASSWORD_ENV.into()),
        }),
        driver,
        database: plan.database.clone(),
        odbc_driver: t.odbc_driver.clone().filter(|_| driver != SqlDriver::Tds),
        encryption: Encryption::NotSupported,
        trust_server_certificate: false,
    }
}

/// One step's settings moved onto the lab: every file it names on the server, its tools, its
/// secrets. Each kind says what it names; a new kind must be placed here.
fn rewrite_kind(kind: &mut StepKind, t: &Target) -> Result<(), LabError> {
    let lab = t.lab_dir.as_path();
    match kind {
        StepKind::BackupDatabase(b) => sandbox_path(&mut b.to, lab)?,
        StepKind::ExportKeys(e) => {
            if e.tool.is_some() {
                e.tool = Some(lab_path(&t.tools.miiskmu)?);
            }
            sandbox_path(&mut e.to, lab)?;
            if let Some(copy) = &mut e.copy_to {
                sandbox_path(copy, lab)?;
            }
            lab_secret(&mut e.account.password);
        }
        StepKind::BackupFiles(f) => {
            sandbox_path(&mut f.from, lab)?;
            sandbox_path(&mut f.to, lab)?;
        }
        StepKind::SnapshotConnectorSpace(_) | StepKind::Service(_) => {}
        StepKind::Uninstall(u) => {
            if let Some(log) = &mut u.log {
                sandbox_path(log, lab)?;
            }
            u.extra_args.iter_mut().for_each(|a| sandbox_text(a, lab));
        }
        StepKind::Install(i) => {
            i.installer = lab_path(&t.tools.installer)?;
            // A plan that pins its media's hash is checked against the lab's media.
            if i.sha256.is_some() {
                i.sha256 = t.installer_sha256.clone();
            }
            if let Some(log) = &mut i.log {
                sandbox_path(log, lab)?;
            }
            for transform in &mut i.transforms {
                sandbox_path(transform, lab)?;
            }
            if let Some(KeyFile::Path(p)) = &mut i.answers.key_file {
                sandbox_path(p, lab)?;
            }
            if let Some(account) = &mut i.answers.service_account {
                lab_secret(&mut account.password);
            }
            i.properties.values_mut().for_each(|v| sandbox_text(v, lab));
            for a in i.arguments.iter_mut().flatten() {
                sandbox_text(a, lab);
            }
            if let Some(stdin) = &mut i.stdin {
                sandbox_text(stdin, lab);
            }
        }
        StepKind::Verify(v) => {
            for command in &mut v.commands {
                let mut run = command.run.iter_mut();
                if let Some(program) = run.next() {
                    match tool_for(program, &t.tools) {
                        Some(tool) => *program = tool.to_string_lossy().into_owned(),
                        None => sandbox_text(program, lab),
                    }
                }
                run.for_each(|a| sandbox_text(a, lab));
            }
        }
    }
    Ok(())
}

/// A path on the admin host of a remote plan, moved into the lab's `admin` folder: a Windows drive
/// path (`D:\\Upgrade\\x`) under `admin/D/Upgrade/x`, a POSIX one (`/srv/upgrade/x`) under
/// `admin/srv/upgrade/x`, so a rehearsal never writes outside the lab.
fn admin_path(path: &mut AbsPath, lab: &Path) -> Result<(), LabError> {
    let text = path.as_str();
    let admin = lab.join("admin");
    let moved = match win_to_lab(&admin, text) {
        // win_to_lab puts drive paths under `drives/`; the admin host's get their own folder.
        Some(p) => p
            .strip_prefix(admin.join("drives"))
            .map(|rel| admin.join(rel))
            .unwrap_or(p),
        None => admin.join(text.trim_start_matches('/')),
    };
    *path = lab_path(&moved)?;
    Ok(())
}

/// One step of a plan that acts on the server over WinRM, moved onto the lab: every path the kind
/// names (`KindSpec::paths`, so a new kind's paths are moved without being listed here) by the
/// machine it is on: the server's paths and tools stay as written (the lab's WinRM shell finds
/// them on its drives, as the server would), the admin host's go into the lab, the database
/// backup goes where the TDS double writes. Then the installer media is the lab's, at its Windows
/// path, and secrets as for a local plan.
fn rewrite_kind_remote(kind: &mut StepKind, t: &Target) -> Result<(), LabError> {
    let lab = t.lab_dir.as_path();
    move_paths(kind, |on, path| {
        let mut moved = path.clone();
        match on {
            PathOn::Server | PathOn::ServerOrShare => return Ok(None),
            PathOn::AdminHost => admin_path(&mut moved, lab)?,
            // The TDS double writes the backup on this machine: the SQL Server's disk is the
            // sandbox.
            PathOn::SqlServer => sandbox_path(&mut moved, lab)?,
        }
        Ok(Some(moved))
    })?;
    match kind {
        StepKind::ExportKeys(e) => lab_secret(&mut e.account.password),
        StepKind::Install(i) => {
            i.installer = AbsPath::parse(&t.media)
                .map_err(|e| LabError::Rehearse(format!("the lab's media path: {e}")))?;
            if i.sha256.is_some() {
                i.sha256 = t.installer_sha256.clone();
            }
            if let Some(account) = &mut i.answers.service_account {
                lab_secret(&mut account.password);
            }
        }
        StepKind::BackupDatabase(_)
        | StepKind::BackupFiles(_)
        | StepKind::SnapshotConnectorSpace(_)
        | StepKind::Service(_)
        | StepKind::Uninstall(_)
        | StepKind::Verify(_) => {}
    }
    Ok(())
}

/// Replaces each path `kind` names (`KindSpec::paths`) for which `moved` gives a new one, at the
/// field path the kind gives it (`copy_to`, `answers.key_file.path`, `transforms[1]`): through
/// the kind's serialized form, so it reaches every field `paths` names, whatever the kind.
fn move_paths(
    kind: &mut StepKind,
    mut moved: impl FnMut(PathOn, &AbsPath) -> Result<Option<AbsPath>, LabError>,
) -> Result<(), LabError> {
    let mut moves = Vec::new();
    for f in kind.spec().paths() {
        if let Some(to) = moved(f.on, f.path)? {
            moves.push((f.field, to));
        }
    }
    if moves.is_empty() {
        return Ok(());
    }
    let bad = |why: String| {
        LabError::Rehearse(format!(
            "moving the paths of a `{}` step: {why}",
            kind.name()
        ))
    };
    let mut value = serde_json::to_value(&*kind).map_err(|e| bad(e.to_string()))?;
    for (field, to) in moves {
        let slot = value
            .pointer_mut(&json_pointer(kind.name(), &field))
            .ok_or_else(|| bad(format!("no field `{field}` in its settings")))?;
        *slot = serde_json::Value::String(to.as_str().to_string());
    }
    *kind = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// The JSON pointer of a kind's field path (`transforms[1]` -> `/install/transforms/1`) in the
/// serialized `StepKind`, which is a map from the kind's name to its settings.
fn json_pointer(kind: &str, field: &str) -> String {
    let mut pointer = format!("/{kind}");
    for part in field.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest.trim_end_matches(']'))),
            None => (part, None),
        };
        pointer.push('/');
        pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        if let Some(i) = index {
            pointer.push('/');
            pointer.push_str(i);
        }
    }
    pointer
}

/// The plan's WinRM connection pointed at the lab's listener over HTTP, its password from the
/// lab's env var: a Kerberos plan logs on with Kerberos to the lab's KDC's realm when the lab has
/// one, any other plan with NTLM as the lab's administrator (Windows' default listener, and what a
/// Windows Server 2003 server offers). The operation timeout stays the plan's.
fn lab_winrm(plan: &WinrmConnect, t: &Target) -> WinrmConnect {
    let (endpoint, auth, user) = match (&t.winrm.kerberos, plan.auth) {
        (Some(k), WinrmAuth::Kerberos) => (k.url.clone(), WinrmAuth::Kerberos, k.user.clone()),
        _ => (t.winrm.url.clone(), WinrmAuth::Ntlm, t.winrm.user.clone()),
    };
    WinrmConnect {
        endpoint: Some(endpoint),
        auth,
        user,
        password: Some(Secret::Env(WINRM_PASSWORD_ENV.into())),
        https: false,
        ca: None,
        timeout: plan.timeout,
    }
}

/// The env vars the rewritten plan's step secrets name, in plan order. A secret the lab cannot set
/// (a kind whose file or prompt secret `rewrite_kind` left alone) is refused here, by its place.
fn secret_envs(plan: &Plan) -> Result<Vec<String>, LabError> {
    let mut envs: Vec<String> = Vec::new();
    for step in &plan.steps {
        for field in step.kind.spec().secrets() {
            match field.secret {
                Secret::Env(name) => {
                    if !envs.contains(name) {
                        envs.push(name.clone());
                    }
                }
                Secret::File(_) | Secret::Prompt(_) => {
                    return Err(LabError::Rehearse(format!(
                        "step `{}`: the lab cannot supply the secret {}.{}",
                        step.id,
                        step.kind.name(),
                        field.field
                    )))
                }
            }
        }
    }
    Ok(envs)
}

/// Rewrites a real plan onto the lab described by `t`.
pub fn rewrite_plan(plan: &Plan, t: &Target) -> Result<Rewritten, LabError> {
    let mut p = plan.clone();
    p.server.sql = lab_sql(&plan.server.sql, t);
    p.state = Some(StateConfig {
        dir: lab_path(&t.lab_dir.join("state"))?,
    });
    if let Some(winrm) = plan.server.connect.winrm() {
        p.server.connect = Connect::Winrm(lab_winrm(winrm, t));
        for step in &mut p.steps {
            rewrite_kind_remote(&mut step.kind, t)?;
        }
        let secret_envs = secret_envs(&p)?;
        return Ok(Rewritten {
            plan: p,
            secret_envs,
        });
    }
    p.tools = Tools {
        miiskmu: Some(lab_path(&t.tools.miiskmu)?),
        msiexec: Some(lab_path(&t.tools.msiexec)?),
        reg: Some(lab_path(&t.tools.reg)?),
        sc: Some(lab_path(&t.tools.sc)?),
    };
    for step in &mut p.steps {
        rewrite_kind(&mut step.kind, t)?;
    }
    let secret_envs = secret_envs(&p)?;
    Ok(Rewritten {
        plan: p,
        secret_envs,
    })
}

/// Destination folders the rewritten plan writes into (backups, key files, copies, logs), so a
/// rehearsal starts from a prepared server. Only folders inside the lab are returned.
pub fn destination_folders(plan: &Plan, lab_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for step in &plan.steps {
        let written: Vec<&AbsPath> = match &step.kind {
            StepKind::BackupDatabase(b) => vec![&b.to],
            StepKind::ExportKeys(e) => std::iter::once(&e.to).chain(&e.copy_to).collect(),
            StepKind::BackupFiles(f) => vec![&f.to],
            StepKind::Uninstall(u) => u.log.iter().collect(),
            StepKind::Install(i) => i.log.iter().collect(),
            StepKind::SnapshotConnectorSpace(_) | StepKind::Verify(_) | StepKind::Service(_) => {
                Vec::new()
            }
        };
        for path in written {
            // A remote plan's server path (`D:\\Upgrade\\x`) is the lab's drive folder.
            let on_disk = win_to_lab(lab_dir, path.as_str()).unwrap_or_else(|| path.to_path_buf());
            let folder = on_disk.parent().map(Path::to_path_buf);
            if let Some(f) = folder.filter(|f| f.starts_with(lab_dir) && !out.contains(f)) {
                out.push(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearse::odbc::FREETDS;
    use crate::rehearse::test_plans::{self, plan_of, real_plan, real_plan_with, target};
    use crate::rehearse::WINRM_PASSWORD_ENV;

    fn rewritten() -> Rewritten {
        rewrite_plan(&real_plan(), &target()).unwrap()
    }

    /// The plan as `upgrade` reads the file rehearse writes.
    fn reread(plan: &Plan) -> Plan {
        test_plans::load(
            "rehearsal-plan.yaml",
            &upgrade_plan::write::to_yaml(plan).unwrap(),
        )
    }

    #[test]
    fn sql_points_at_the_lab_with_sql_auth_and_the_freetds_driver_for_odbc() {
        let p = rewritten().plan;
        let sql = &p.server.sql;
        assert_eq!(sql.host, "127.0.0.1");
        assert_eq!(sql.port, Some(41433));
        assert!(sql.instance.is_none());
        let SqlAuth::Sql(login) = &sql.auth else {
            panic!("not a SQL login: {:?}", sql.auth)
        };
        assert_eq!(login.user, "upgrade");
        assert_eq!(login.password, Secret::Env(SQL_PASSWORD_ENV.into()));
        assert_eq!(sql.driver, SqlDriver::Odbc);
        assert_eq!(sql.odbc_driver.as_deref(), Some(FREETDS));
        assert_eq!(p.state.unwrap().dir.as_str(), "/tmp/lab/state");
    }

    #[test]
    fn a_plan_that_leaves_the_client_to_auto_keeps_auto_and_names_the_labs_odbc_driver() {
        let p = rewrite_plan(&real_plan_with(", driver: odbc", ""), &target())
            .unwrap()
            .plan;
        assert_eq!(p.server.sql.driver, SqlDriver::Auto);
        assert_eq!(p.server.sql.odbc_driver.as_deref(), Some(FREETDS));
    }

    #[test]
    fn without_an_odbc_driver_an_odbc_plan_uses_the_built_in_client_and_auto_stays_auto() {
        let t = Target {
            odbc_driver: None,
            ..target()
        };
        for (plan, driver) in [
            (real_plan(), SqlDriver::Tds),
            (real_plan_with(", driver: odbc", ""), SqlDriver::Auto),
        ] {
            let p = rewrite_plan(&plan, &t).unwrap().plan;
            assert_eq!(p.server.sql.driver, driver);
            assert_eq!(p.server.sql.odbc_driver, None, "{driver:?}");
            reread(&p);
        }
    }

    #[test]
    fn drive_paths_map_into_the_sandbox_and_tools_onto_the_stand_ins() {
        let p = rewritten().plan;
        let kind = |i: usize| &p.steps[i].kind;
        let StepKind::BackupDatabase(database) = kind(0) else {
            panic!("{:?}", kind(0))
        };
        assert_eq!(database.to.as_str(), "/tmp/lab/drives/D/Upgrade/miis.bak");
        let StepKind::ExportKeys(keys) = kind(1) else {
            panic!("{:?}", kind(1))
        };
        assert_eq!(
            keys.tool.as_ref().map(AbsPath::as_str),
            Some(
                "/tmp/lab/drives/C/Program Files/Microsoft Identity Integration Server/Bin/miiskmu"
            )
        );
        let StepKind::BackupFiles(extensions) = kind(2) else {
            panic!("{:?}", kind(2))
        };
        assert_eq!(
            extensions.from.as_str(),
            "/tmp/lab/drives/C/Program Files/Microsoft Identity Integration Server/Extensions"
        );
        let StepKind::Uninstall(remove) = kind(3) else {
            panic!("{:?}", kind(3))
        };
        assert_eq!(
            remove.log.as_ref().map(AbsPath::as_str),
            Some("/tmp/lab/drives/D/Upgrade/uninstall.log")
        );
        assert_eq!(
            remove.product,
            upgrade_plan::ProductRef::ProductCode(
                upgrade_plan::ProductCode::parse("{11111111-2222-3333-4444-555555555555}").unwrap()
            )
        );
        assert_eq!(
            p.tools.sc.as_ref().map(AbsPath::as_str),
            Some("/tmp/lab/bin/sc")
        );
        assert_eq!(
            p.tools.msiexec.as_ref().map(AbsPath::as_str),
            Some("/tmp/lab/bin/msiexec")
        );
        let StepKind::Install(install) = kind(4) else {
            panic!("{:?}", kind(4))
        };
        assert_eq!(
            install.installer.as_str(),
            "/tmp/lab/drives/E/MIIS2003/Setup.exe"
        );
        assert_eq!(
            install.sha256.as_ref().map(Sha256Hex::as_str),
            Some("b".repeat(64).as_str())
        );
        assert_eq!(
            install
                .arguments
                .as_ref()
                .and_then(|a| a.get(1))
                .map(String::as_str),
            Some("/keyfile:{answers.key_file}")
        );
        let StepKind::Verify(verify) = kind(5) else {
            panic!("{:?}", kind(5))
        };
        assert_eq!(verify.commands[0].run[0], "/tmp/lab/bin/sc");
    }

    #[test]
    fn the_plans_destination_folders_are_prepared_inside_the_lab_only() {
        let p = rewritten().plan;
        let folders = destination_folders(&p, Path::new("/tmp/lab"));
        assert_eq!(folders, vec![PathBuf::from("/tmp/lab/drives/D/Upgrade")]);
        let outside = plan_of(&["{id: a, backup_database: {database: X, to: '/srv/x.bak'}}"]);
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
        let StepKind::ExportKeys(keys) = &r.plan.steps[1].kind else {
            panic!("{:?}", r.plan.steps[1])
        };
        assert_eq!(
            keys.account.password,
            Secret::Env("MIIS_SERVICE_PASSWORD".into())
        );
        let StepKind::Install(install) = &r.plan.steps[4].kind else {
            panic!("{:?}", r.plan.steps[4])
        };
        let account = install.answers.service_account.as_ref().unwrap();
        assert_eq!(account.password, Secret::Env(SERVICE_PASSWORD_ENV.into()));
        let text = serde_yaml::to_string(&r.plan).unwrap();
        assert!(!text.contains(r"C:\"), "a Windows path survived: {text}");
        assert!(!text.contains(r"D:\"), "a Windows path survived: {text}");
    }

    #[test]
    fn a_secret_the_lab_cannot_set_is_refused_by_its_place() {
        // The real plan as written: the installer's service password comes from a file.
        let err = secret_envs(&real_plan()).unwrap_err().to_string();
        assert!(
            err.contains("`install-miis`")
                && err.contains("install.answers.service_account.password"),
            "{err}"
        );
    }

    #[test]
    fn the_rewritten_plan_validates_as_upgrade_reads_it() {
        let again = reread(&rewritten().plan);
        assert_eq!(again.steps.len(), 6);
        let shipped = include_str!("../../../plans/iifp-to-miis2003.yaml");
        let plan = test_plans::load("iifp-to-miis2003.yaml", shipped);
        reread(&rewrite_plan(&plan, &target()).unwrap().plan);
        let mut msi = target();
        msi.tools.installer = msi
            .lab_dir
            .join("drives/E/MIM2016/Synchronization Service.msi");
        for (name, text) in [
            (
                "fim2010r2-to-mim2016.yaml",
                include_str!("../../../plans/fim2010r2-to-mim2016.yaml"),
            ),
            (
                "fim2010r2-to-mim2016sp2.yaml",
                include_str!("../../../plans/fim2010r2-to-mim2016sp2.yaml"),
            ),
        ] {
            let plan = test_plans::load(name, text);
            reread(&rewrite_plan(&plan, &msi).unwrap().plan);
        }
    }

    #[test]
    fn every_path_a_kind_names_is_moved_by_the_field_path_it_gives() {
        // Every kind of the shipped plans, and an install naming transforms and a key file: each
        // path `paths()` lists is found at its field path and replaced, nothing else changes.
        let mut plans: Vec<Plan> = [
            (
                "a.yaml",
                include_str!("../../../plans/iifp-to-miis2003.yaml"),
            ),
            (
                "b.yaml",
                include_str!("../../../plans/iifp-to-miis2003-remote.yaml"),
            ),
            (
                "c.yaml",
                include_str!("../../../plans/fim2010r2-to-mim2016.yaml"),
            ),
        ]
        .iter()
        .map(|(name, text)| test_plans::load(name, text))
        .collect();
        plans.push(plan_of(&[
            "{ id: i, install: { installer: 'E:\\m.msi', detect: { product: { name: M } }, \
             transforms: ['E:\\a.mst', 'E:\\b.mst'], log: 'D:\\i.log', \
             answers: { key_file: { path: 'D:\\k.bin' } } } }",
        ]));
        let mut fields = 0;
        for plan in plans {
            for step in plan.steps {
                let mut kind = step.kind.clone();
                move_paths(&mut kind, |on, path| {
                    Ok(Some(
                        AbsPath::parse(&format!("/moved/{on:?}/{}", path.as_str().len())).unwrap(),
                    ))
                })
                .unwrap();
                let before = step.kind.spec().paths();
                let after = kind.spec().paths();
                assert_eq!(before.len(), after.len(), "{}", step.id);
                for (b, a) in before.iter().zip(&after) {
                    assert_eq!(a.field, b.field);
                    assert_eq!(
                        a.path.as_str(),
                        format!("/moved/{:?}/{}", b.on, b.path.as_str().len()),
                        "{}.{}",
                        step.id,
                        b.field
                    );
                    fields += 1;
                }
            }
        }
        assert!(fields >= 12, "only {fields} paths were looked at");
        assert_eq!(
            json_pointer("install", "transforms[1]"),
            "/install/transforms/1"
        );
        assert_eq!(
            json_pointer("install", "answers.key_file.path"),
            "/install/answers/key_file/path"
        );
    }

    #[test]
    fn a_remote_plan_keeps_its_server_paths_points_at_the_labs_winrm_and_moves_admin_paths_into_the_lab(
    ) {
        let shipped = include_str!("../../../plans/iifp-to-miis2003-remote.yaml");
        let plan = test_plans::load("iifp-to-miis2003-remote.yaml", shipped);
        let r = rewrite_plan(&plan, &target()).unwrap();
        let p = reread(&r.plan);
        let winrm = p.server.connect.winrm().expect("still a WinRM plan");
        assert_eq!(
            winrm.endpoint.as_deref(),
            Some("http://127.0.0.1:45985/wsman")
        );
        assert_eq!(winrm.user, "upgrade-admin");
        assert_eq!(winrm.password, Some(Secret::Env(WINRM_PASSWORD_ENV.into())));
        assert_eq!(winrm.auth, WinrmAuth::Ntlm);
        // The same plan logging on with Kerberos keeps Kerberos, to the lab's KDC's realm.
        let kerberos = shipped.replace("auth: ntlm", "auth: kerberos").replace(
            r"user: 'CONTOSO\upgrade-admin'",
            "user: 'upgrade-admin@CORP.EXAMPLE.COM'",
        );
        let kerberos = test_plans::load("kerberos.yaml", &kerberos);
        let mut with_kdc = target();
        with_kdc.winrm.kerberos = Some(KerberosTarget {
            url: "http://localhost:45985/wsman".into(),
            user: "admin@LAB.TEST".into(),
        });
        let p = reread(&rewrite_plan(&kerberos, &with_kdc).unwrap().plan);
        let winrm = p.server.connect.winrm().unwrap();
        assert_eq!(winrm.auth, WinrmAuth::Kerberos);
        assert_eq!(
            (winrm.endpoint.as_deref(), winrm.user.as_str()),
            (Some("http://localhost:45985/wsman"), "admin@LAB.TEST")
        );
        let by_id = |id: &str| &p.steps.iter().find(|s| s.id.as_str() == id).unwrap().kind;
        let StepKind::ExportKeys(keys) = by_id("keys") else {
            panic!()
        };
        assert_eq!(
            keys.to.as_str(),
            r"D:\Upgrade\miis-keys.bin",
            "the server's path stays"
        );
        assert_eq!(
            keys.copy_to.as_ref().map(AbsPath::as_str),
            Some("/tmp/lab/admin/srv/upgrade/miis-keys.bin")
        );
        let StepKind::BackupFiles(ext) = by_id("extensions") else {
            panic!()
        };
        assert_eq!(
            ext.from.as_str(),
            r"C:\Program Files\Microsoft Identity Integration Server\Extensions"
        );
        assert_eq!(ext.to.as_str(), "/tmp/lab/admin/srv/upgrade/Extensions");
        let StepKind::Install(install) = by_id("install-miis") else {
            panic!()
        };
        assert_eq!(install.installer.as_str(), r"E:\MIIS2003\Setup.exe");
        let StepKind::BackupDatabase(db) = by_id("database") else {
            panic!()
        };
        assert!(
            db.to.as_str().starts_with("/tmp/lab/drives/D/"),
            "{}",
            db.to.as_str()
        );
        assert_eq!(p.state.unwrap().dir.as_str(), "/tmp/lab/state");
        assert!(
            r.secret_envs.contains(&"MIIS_SERVICE_PASSWORD".to_string()),
            "{:?}",
            r.secret_envs
        );
        let mut folders = destination_folders(&r.plan, Path::new("/tmp/lab"));
        folders.sort();
        assert_eq!(
            folders,
            vec![
                PathBuf::from("/tmp/lab/admin/srv/upgrade"),
                PathBuf::from("/tmp/lab/drives/D/Upgrade"),
            ]
        );
    }

    #[test]
    fn an_admin_hosts_windows_path_goes_into_the_labs_admin_folder_not_its_drives() {
        let mut p = AbsPath::parse(r"D:\Backups\Extensions").unwrap();
        admin_path(&mut p, Path::new("/tmp/lab")).unwrap();
        assert_eq!(p.as_str(), "/tmp/lab/admin/D/Backups/Extensions");
    }

    /// Every string of a YAML value that is a whole Windows drive path.
    fn drive_paths(v: &serde_yaml::Value, out: &mut Vec<String>) {
        use serde_yaml::Value;
        match v {
            Value::String(s) if sandboxed(s, Path::new("/lab")).is_some() => out.push(s.clone()),
            Value::Sequence(items) => items.iter().for_each(|i| drive_paths(i, out)),
            Value::Mapping(m) => m.iter().for_each(|(_, i)| drive_paths(i, out)),
            Value::Tagged(t) => drive_paths(&t.value, out),
            _ => {}
        }
    }

    #[test]
    fn no_drive_path_of_any_field_survives_the_rewrite() {
        // The example that names every field of the plan language at least once.
        let every = include_str!("../../../examples/every-field.yaml");
        let p = rewrite_plan(&test_plans::load("every-field.yaml", every), &target())
            .unwrap()
            .plan;
        let mut left = Vec::new();
        drive_paths(&serde_yaml::to_value(&p).unwrap(), &mut left);
        assert!(left.is_empty(), "Windows paths survived: {left:?}");
        let StepKind::Install(msi) = &p.steps[8].kind else {
            panic!("{:?}", p.steps[8])
        };
        assert_eq!(
            msi.transforms[0].as_str(),
            "/tmp/lab/drives/E/Synchronization Service/no-ui-choices.mst"
        );
        assert!(matches!(&msi.answers.key_file,
            Some(KeyFile::Path(k)) if k.as_str() == "/tmp/lab/drives/D/Upgrade/fim-keys.bin"));
    }
}
