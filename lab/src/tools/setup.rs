//! The lab's MIIS 2003 setup stand-in (DIR/drives/E/MIIS2003/Setup.exe). Its switches are the LAB's
//! (`/q /setuptype: /sqlserver: /sqlinstance: /database: /reusedb: /serviceaccount: /servicedomain:
//! /servicepassword:* /admins: /operators: /joiners: /browse: /passwordset: /keyfile: /log:`), not
//! confirmed switches of the real MIIS setup. TEST DOUBLE; shares msiexec's faults and exit codes.

use std::path::Path;

use upgrade_plan::windows_installer::{
    ANOTHER_INSTALL, FATAL, INVALID_COMMAND_LINE, PACKAGE_UNREADABLE, REBOOT_REQUIRED, SUCCESS,
};

use crate::layout::{resolve, MIIS_SETUP_PRODUCT};
use crate::state::Product;
use crate::tools::install::{self, InstallRequest};
use crate::tools::msiexec;
use crate::tools::ToolIo;

const SWITCHES: [&str; 16] = [
    "setuptype",
    "sqlserver",
    "sqlinstance",
    "database",
    "reusedb",
    "serviceaccount",
    "servicedomain",
    "servicepassword",
    "admins",
    "operators",
    "joiners",
    "browse",
    "passwordset",
    "keyfile",
    "log",
    "q",
];
const REQUIRED: [&str; 12] = [
    "setuptype",
    "database",
    "reusedb",
    "serviceaccount",
    "servicedomain",
    "servicepassword",
    "admins",
    "operators",
    "joiners",
    "browse",
    "passwordset",
    "q",
];

/// `/name:value` pairs in order, names lower-cased.
fn parse(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for a in args {
        let body = a
            .strip_prefix('/')
            .ok_or_else(|| format!("unexpected argument `{a}` (switches start with /)"))?;
        let (name, value) = body.split_once(':').unwrap_or((body, ""));
        let name = name.to_ascii_lowercase();
        if !SWITCHES.contains(&name.as_str()) {
            return Err(format!("unknown switch `/{name}`"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("switch `/{name}` given twice"));
        }
        out.push((name, value.to_string()));
    }
    for r in REQUIRED {
        if !out.iter().any(|(n, _)| n == r) {
            return Err(format!("missing switch `/{r}`"));
        }
    }
    Ok(out)
}

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let switches = match parse(args) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io.stderr, "Setup: {e}\nUsage (lab switches): Setup.exe /q /setuptype:complete|custom /sqlserver:S /sqlinstance:I /database:D /reusedb:yes|no /serviceaccount:U /servicedomain:D /servicepassword:* /admins:G /operators:G /joiners:G /browse:G /passwordset:G [/keyfile:PATH] [/log:PATH]");
            return INVALID_COMMAND_LINE;
        }
    };
    let get = |n: &str| {
        switches
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let log_path = Some(get("log")).filter(|l| !l.is_empty());
    let mut log = vec![format!(
        "Setup (upgrade-lab MIIS 2003 stand-in) started with {} switches.",
        switches.len()
    )];
    for (k, v) in &switches {
        log.push(install::log_property(k, v));
    }
    let code = setup(lab, &switches, &get, io, &mut log);
    log.push(format!("Setup is returning {code}"));
    if let Err(e) = install::write_log(lab, log_path.as_deref(), &log) {
        let _ = writeln!(io.stderr, "Setup: {e}");
    }
    if code != SUCCESS && code != REBOOT_REQUIRED {
        let _ = writeln!(io.stderr, "Setup: {}", log[log.len() - 2]);
    }
    code
}

fn setup(
    lab: &Path,
    switches: &[(String, String)],
    get: &dyn Fn(&str) -> String,
    io: &mut ToolIo,
    log: &mut Vec<String>,
) -> i32 {
    let setup_type = get("setuptype").to_ascii_lowercase();
    let reuse = get("reusedb").to_ascii_lowercase();
    if !matches!(setup_type.as_str(), "complete" | "custom")
        || !matches!(reuse.as_str(), "yes" | "no")
    {
        log.push(format!("Invalid answers: /setuptype:{setup_type} (complete|custom), /reusedb:{reuse} (yes|no)."));
        return INVALID_COMMAND_LINE;
    }
    for g in ["admins", "operators", "joiners", "browse", "passwordset"] {
        if get(g).is_empty() {
            log.push(format!("The security group for /{g}: is empty."));
            return FATAL;
        }
    }
    let password = match get("servicepassword").as_str() {
        "*" => {
            let mut line = String::new();
            match io.stdin.read_line(&mut line) {
                Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_string()),
                _ => {
                    log.push("/servicepassword:* but no password on standard input.".into());
                    return FATAL;
                }
            }
        }
        p => Some(p.to_string()),
    };
    let Some(_guard) = msiexec::installer_lock(lab, msiexec::Installer::Setup) else {
        log.push("Another installation is already in progress.".into());
        return ANOTHER_INSTALL;
    };
    if let Some(code) = msiexec::fault_code(lab) {
        log.push(format!(
            "Injected fault (upgrade-lab): exiting {code} before changing anything."
        ));
        return code;
    }
    let product_file = resolve(lab, MIIS_SETUP_PRODUCT);
    let Some(product) = std::fs::read_to_string(&product_file)
        .ok()
        .and_then(|t| serde_json::from_str::<Product>(&t).ok())
    else {
        log.push(format!(
            "The installation media is damaged: {MIIS_SETUP_PRODUCT} is missing or unreadable."
        ));
        return PACKAGE_UNREADABLE;
    };
    let req = InstallRequest {
        tool: "setup",
        package: MIIS_SETUP_PRODUCT.replace("setup.json", "Setup.exe"),
        product: product.clone(),
        database: get("database"),
        reuse: reuse == "yes",
        user: get("serviceaccount"),
        domain: get("servicedomain"),
        password,
        key_file: Some(get("keyfile")),
        upgrades: Vec::new(),
        upgrade_min_version: None,
        store: None,
        received: switches.to_vec(),
    };
    match install::install(lab, &req) {
        Ok(()) => {
            log.push(format!(
                "Product: {} -- Installation completed successfully.",
                product.name
            ));
            if crate::faults::load(lab)
                .map(|f| f.msiexec_3010)
                .unwrap_or(false)
            {
                log.push(
                    "Injected fault (upgrade-lab): a reboot is required to complete the operation."
                        .into(),
                );
                return REBOOT_REQUIRED;
            }
            SUCCESS
        }
        Err(r) => {
            log.push(format!("Product: {} -- {}", product.name, r.message));
            r.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_with_colons_in_values_and_every_required_one_is_checked() {
        let mut a: Vec<String> = REQUIRED.iter().map(|r| format!("/{r}:x")).collect();
        a.push(r"/keyfile:D:\Upgrade\keys.bin".into());
        let s = parse(&a).unwrap();
        assert!(s.contains(&("keyfile".into(), r"D:\Upgrade\keys.bin".into())));
        a.remove(0);
        assert_eq!(parse(&a).unwrap_err(), "missing switch `/setuptype`");
        assert!(parse(&["/wizard".to_string()])
            .unwrap_err()
            .contains("unknown switch `/wizard`"));
    }
}
