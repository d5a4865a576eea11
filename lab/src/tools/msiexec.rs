//! The msiexec stand-in: `/x {CODE} /qn /norestart /l*v LOG` and `/i PACKAGE [PROP=VALUE ...] /qn
//! /norestart /l*v LOG` against the lab's products, with the Windows Installer exit codes of the
//! plan language's table, `upgrade_plan::windows_installer` (0, 1605, 1618, 1603, 1619, 1638, 3010;
//! 1639 for a command line it does not understand). On the IIFP lab it is Windows Installer 2.0,
//! which has none of the standard options of 3.0 (`/norestart`, `/quiet`, `/log`, ...).
//! TEST DOUBLE: it never removes or changes a database.

use std::fs::OpenOptions;
use std::path::Path;

use upgrade_plan::windows_installer::{
    ANOTHER_INSTALL, FATAL, INVALID_COMMAND_LINE, PACKAGE_UNREADABLE, REBOOT_REQUIRED, SUCCESS,
    UNKNOWN_PRODUCT,
};

use crate::faults;
use crate::layout::{resolve, INSTALLER_LOCK};
use crate::state;
use crate::tools::install::{self, log_property, InstallRequest, StoreRequest};
use crate::tools::package::Package;
use crate::tools::ToolIo;

#[derive(Debug, Default, PartialEq, Eq)]
enum Action {
    #[default]
    None,
    Install(String),
    Uninstall(String),
}

#[derive(Debug, Default)]
struct Command {
    action: Action,
    quiet: bool,
    log: Option<String>,
    properties: Vec<(String, String)>,
}

/// msiexec's standard options, "available beginning with Windows Installer 3.0" (Microsoft,
/// "Standard Installer Command-Line Options").
const STANDARD_OPTIONS: [&str; 10] = [
    "/quiet",
    "/passive",
    "/norestart",
    "/forcerestart",
    "/promptrestart",
    "/uninstall",
    "/package",
    "/log",
    "/update",
    "/help",
];

/// Parses a command line as the Windows Installer `version` would.
fn parse(args: &[String], version: [u16; 4]) -> Result<Command, String> {
    let mut c = Command::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let lower = a.to_ascii_lowercase();
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}"))
        };
        match lower.as_str() {
            _ if version[0] < 3 && STANDARD_OPTIONS.contains(&lower.as_str()) => {
                let [major, minor, build, revision] = version;
                return Err(format!(
                    "`{a}` is a standard option of Windows Installer 3.0 and later; this is Windows Installer {major}.{minor}.{build}.{revision} (use REBOOT=ReallySuppress for /norestart)"
                ));
            }
            "/i" | "/package" => c.action = Action::Install(value("a package path")?),
            "/x" | "/uninstall" => c.action = Action::Uninstall(value("a product code")?),
            "/qn" | "/quiet" | "/q" => c.quiet = true,
            "/norestart" => {}
            "/l*v" | "/log" => c.log = Some(value("a log file")?),
            _ if lower.starts_with("/x{") => c.action = Action::Uninstall(a[2..].to_string()),
            _ if !a.starts_with('/') && a.contains('=') => {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                c.properties
                    .push((k.to_ascii_uppercase(), v.trim_matches('"').to_string()));
            }
            _ => return Err(format!("unknown option `{a}`")),
        }
    }
    if c.action == Action::None {
        return Err("one of /i PACKAGE or /x {CODE} is required".into());
    }
    if !c.quiet {
        return Err("the lab runs only silent installs: add /qn".into());
    }
    Ok(c)
}

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let version = match state::load(lab) {
        Ok(st) => st.flavour.windows().installer,
        Err(e) => {
            let _ = writeln!(io.stderr, "msiexec: {e}");
            return FATAL;
        }
    };
    let cmd = match parse(args, version) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io.stderr, "msiexec: {e}\nUsage: msiexec /i PACKAGE [PROP=VALUE ...] /qn /norestart /l*v LOG | /x {{CODE}} /qn /norestart /l*v LOG");
            return INVALID_COMMAND_LINE;
        }
    };
    // Another msiexec (or setup) holding the installer lock is "another installation in progress".
    let Some(_guard) = installer_lock(lab, Installer::Msiexec) else {
        let _ = writeln!(
            io.stderr,
            "msiexec: Another installation is already in progress."
        );
        return ANOTHER_INSTALL;
    };
    let mut log = vec![format!("Command line: {}", redacted_command_line(&cmd))];
    let code = match fault_code(lab) {
        Some(code) => {
            log.push(format!(
                "Injected fault (upgrade-lab): exiting {code} before changing anything."
            ));
            code
        }
        None => {
            let code = match &cmd.action {
                Action::Install(pkg) => install(lab, pkg, &cmd, &mut log),
                Action::Uninstall(code) => uninstall(lab, code, &mut log),
                Action::None => INVALID_COMMAND_LINE,
            };
            let reboot =
                code == SUCCESS && faults::load(lab).map(|f| f.msiexec_3010).unwrap_or(false);
            if reboot {
                log.push(
                    "Injected fault (upgrade-lab): a reboot is required to complete the operation."
                        .into(),
                );
                REBOOT_REQUIRED
            } else {
                code
            }
        }
    };
    log.push(format!("MainEngineThread is returning {code}"));
    if let Err(e) = install::write_log(lab, cmd.log.as_deref(), &log) {
        let _ = writeln!(io.stderr, "msiexec: {e}");
    }
    if code != SUCCESS && code != REBOOT_REQUIRED {
        if let Some(last) = log.iter().rev().nth(1) {
            let _ = writeln!(io.stderr, "msiexec: {last}");
        }
    }
    code
}

/// The injected failure for this run, if any (1618 counts down, persisted in faults.json).
pub fn fault_code(lab: &Path) -> Option<i32> {
    faults::update(lab, |f| {
        if f.msiexec_1618_remaining > 0 {
            f.msiexec_1618_remaining -= 1;
            Some(ANOTHER_INSTALL)
        } else if f.msiexec_1603 {
            Some(FATAL)
        } else {
            None
        }
    })
    .unwrap_or(Some(FATAL))
}

/// Which of the lab's installers takes `_MSIExecute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    Msiexec,
    /// The MIIS 2003 setup stand-in (`tools::setup`).
    Setup,
}

/// The lab's `_MSIExecute` (DIR/installer.lock, see `layout::MSIEXECUTE`), held from here to the
/// end of the run: the installer's execute phase. `None` when another installer holds it. Someone
/// only looking at the mutex (`installer_busy`, a shared lock for an instant) is waited out: on
/// Windows, opening `_MSIExecute` to see whether it exists makes no installer answer 1618. Under
/// the `slow-execute` fault the phase lasts that long before the change is made, and under
/// `hold-execute` for as long as that fault is set, as a real installer's execute sequence takes
/// its time (`hold-setup`: the setup stand-in only); it is not cut short when the command is
/// ended (the Windows Installer service, not msiexec.exe, carries out the execute sequence).
pub fn installer_lock(lab: &Path, installer: Installer) -> Option<std::fs::File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lab.join(INSTALLER_LOCK))
        .ok()?;
    while !matches!(f.try_lock(), Ok(())) {
        // Held: exclusively by another installer (then a shared lock is refused too), or shared
        // by someone looking, who lets go at once.
        f.try_lock_shared().ok()?;
        f.unlock().ok()?;
        std::thread::yield_now();
    }
    let faults = faults::load(lab).unwrap_or_default();
    if let Some(ms) = faults.slow_execute_ms {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let held =
        |f: &faults::Faults| f.hold_execute || (installer == Installer::Setup && f.hold_setup);
    if held(&faults) {
        // Until the fault is lifted (or the lab is gone: no faults file, no faults).
        while faults::load(lab).is_ok_and(|f| held(&f)) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    Some(f)
}

/// Whether an installer of the lab is in its execute phase now: what the lab's powershell
/// answers for `[Threading.Mutex]::OpenExisting('Global\_MSIExecute')`. Looking takes the lock
/// shared for an instant; an installer starting in that instant waits for it (`installer_lock`).
pub fn installer_busy(lab: &Path) -> std::io::Result<bool> {
    let f = match std::fs::File::open(lab.join(INSTALLER_LOCK)) {
        Ok(f) => f,
        // No installer of this lab has run yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match f.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn redacted_command_line(cmd: &Command) -> String {
    let mut parts = Vec::new();
    match &cmd.action {
        Action::Install(p) => parts.push(format!("/i {p}")),
        Action::Uninstall(c) => parts.push(format!("/x {c}")),
        Action::None => {}
    }
    for (k, v) in &cmd.properties {
        let v = if k.contains("PASSWORD") {
            "**********"
        } else {
            v.as_str()
        };
        parts.push(format!("{k}={v}"));
    }
    parts.join(" ")
}

fn uninstall(lab: &Path, code: &str, log: &mut Vec<String>) -> i32 {
    let removed = state::update(lab, |st| {
        let i = st
            .products
            .iter()
            .position(|p| p.code.eq_ignore_ascii_case(code))?;
        let p = st.products.remove(i);
        st.key_set = None;
        st.services
            .retain(|s| !s.name.eq_ignore_ascii_case(&p.service));
        Some(p)
    });
    match removed {
        Err(e) => {
            log.push(format!("Lab state: {e}"));
            FATAL
        }
        Ok(None) => {
            log.push(format!("Product {code}: This action is only valid for products that are currently installed."));
            UNKNOWN_PRODUCT
        }
        Ok(Some(p)) => {
            let folder = resolve(lab, &p.install_location);
            if let Err(e) = std::fs::remove_dir_all(&folder) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log.push(format!("Could not remove {}: {e}", p.install_location));
                }
            }
            log.push(format!(
                "Removed the encryption key set and service {}; the database is kept.",
                p.service
            ));
            log.push(format!(
                "Product: {} -- Removal completed successfully.",
                p.name
            ));
            SUCCESS
        }
    }
}

fn install(lab: &Path, package: &str, cmd: &Command, log: &mut Vec<String>) -> i32 {
    let Some(pkg) = std::fs::read_to_string(resolve(lab, package))
        .ok()
        .and_then(|t| Package::parse(&t))
    else {
        log.push(format!("This installation package could not be opened: {package}. Verify that the package exists and is a lab package."));
        return PACKAGE_UNREADABLE;
    };
    for (k, v) in &cmd.properties {
        log.push(log_property(k, v));
    }
    let prop = |name: &str| {
        cmd.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let req = InstallRequest {
        tool: "msiexec",
        package: package.to_string(),
        product: pkg.product.clone(),
        database: prop(&pkg.database_property).unwrap_or(pkg.default_database.clone()),
        // An MSI reuses the database it is pointed at when it exists; there is no separate switch.
        reuse: true,
        user: prop(&pkg.account_property).unwrap_or_default(),
        domain: prop(&pkg.domain_property).unwrap_or_default(),
        password: prop(&pkg.password_property),
        key_file: prop(&pkg.key_file_property),
        upgrades: pkg.upgrades.clone(),
        upgrade_min_version: pkg.upgrade_min_version.clone(),
        store: pkg.remote_store.as_ref().and_then(|r| {
            Some(StoreRequest {
                server: prop(&r.server_property)?,
                told_remote: prop(&r.property).is_some_and(|v| v.eq_ignore_ascii_case(&r.value)),
            })
        }),
        received: cmd.properties.clone(),
    };
    match install::install(lab, &req) {
        Ok(()) => {
            log.push(format!(
                "Product: {} -- Installation completed successfully.",
                pkg.product.name
            ));
            SUCCESS
        }
        Err(r) => {
            log.push(format!("Product: {} -- {}", pkg.product.name, r.message));
            log.push(format!(
                "Product: {} -- Installation failed.",
                pkg.product.name
            ));
            r.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Windows Server 2008 R2's Windows Installer.
    const WI5: [u16; 4] = [5, 0, 7600, 16385];
    /// Windows Server 2003's, as released.
    const WI2: [u16; 4] = [2, 0, 3790, 0];

    #[test]
    fn the_command_lines_the_executor_sends_parse() {
        let c = parse(
            &args(&["/x", "{A}", "/qn", "/norestart", "/l*v", "/tmp/x.log"]),
            WI5,
        )
        .unwrap();
        assert_eq!(c.action, Action::Uninstall("{A}".into()));
        assert_eq!(c.log.as_deref(), Some("/tmp/x.log"));
        let c = parse(
            &args(&[
                "/i",
                "p.msi",
                "SQLDB=FIM",
                "ACCEPT_EULA=1",
                "/qn",
                "/norestart",
                "/L*V",
                "l",
            ]),
            WI5,
        )
        .unwrap();
        assert_eq!(c.action, Action::Install("p.msi".into()));
        assert_eq!(
            c.properties,
            vec![
                ("SQLDB".into(), "FIM".into()),
                ("ACCEPT_EULA".into(), "1".into())
            ]
        );
        assert_eq!(
            parse(&args(&["/X{B}", "/qn"]), WI5).unwrap().action,
            Action::Uninstall("{B}".into())
        );
    }

    #[test]
    fn a_command_line_msiexec_would_not_take_is_refused() {
        assert!(parse(&args(&["/qn"]), WI5)
            .unwrap_err()
            .contains("required"));
        assert!(parse(&args(&["/x", "{A}"]), WI5)
            .unwrap_err()
            .contains("/qn"));
        assert!(parse(&args(&["/x", "{A}", "/qn", "/bogus"]), WI5)
            .unwrap_err()
            .contains("unknown option"));
        assert!(parse(&args(&["/i"]), WI5)
            .unwrap_err()
            .contains("needs a package path"));
    }

    #[test]
    fn someone_looking_at_the_mutex_makes_no_installer_answer_1618_and_another_installer_does() {
        let dir = tempfile::tempdir().unwrap();
        let look = std::fs::File::create(dir.path().join(INSTALLER_LOCK)).unwrap();
        // A look (`installer_busy`, powershell's Mutex.OpenExisting) caught in its instant.
        look.try_lock_shared().unwrap();
        let lab = dir.path().to_path_buf();
        let installer =
            std::thread::spawn(move || installer_lock(&lab, Installer::Msiexec).is_some());
        std::thread::sleep(std::time::Duration::from_millis(100));
        look.unlock().unwrap();
        assert!(installer.join().unwrap(), "the installer answered 1618");
        let held = installer_lock(dir.path(), Installer::Msiexec).unwrap();
        assert!(installer_lock(dir.path(), Installer::Msiexec).is_none());
        drop(held);
    }

    #[test]
    fn under_hold_execute_an_installer_executes_until_the_fault_is_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let hold = faults::Faults::from_specs(&["hold-execute"]).unwrap();
        faults::store(dir.path(), &hold).unwrap();
        let lab = dir.path().to_path_buf();
        let installer =
            std::thread::spawn(move || installer_lock(&lab, Installer::Msiexec).is_some());
        while !installer_busy(dir.path()).unwrap() {
            std::thread::yield_now();
        }
        assert!(!installer.is_finished());
        faults::store(dir.path(), &faults::Faults::default()).unwrap();
        assert!(installer.join().unwrap());
    }

    #[test]
    fn windows_installer_2_0_refuses_the_standard_options_of_3_0_and_takes_the_reboot_property() {
        for option in ["/norestart", "/quiet", "/log", "/package", "/uninstall"] {
            let err = parse(&args(&["/x", "{A}", "/qn", option, "x"]), WI2).unwrap_err();
            assert!(
                err.contains("Windows Installer 3.0 and later") && err.contains("2.0.3790.0"),
                "{option}: {err}"
            );
        }
        let c = parse(
            &args(&["/x", "{A}", "/qn", "REBOOT=ReallySuppress", "/l*v", "x.log"]),
            WI2,
        )
        .unwrap();
        assert_eq!(c.action, Action::Uninstall("{A}".into()));
        assert_eq!(
            c.properties,
            vec![("REBOOT".into(), "ReallySuppress".into())]
        );
    }
}
