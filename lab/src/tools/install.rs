//! What an install does to the lab server, shared by `msiexec /i` and the MIIS 2003 setup stand-in:
//! checks (product already there, old product still there, service account, database reuse and
//! its key set) and, when they pass, the product, folder, key set and service. TEST DOUBLE; the
//! database itself is never created or changed here.

use std::path::Path;

use upgrade_plan::windows_installer::{ANOTHER_VERSION, FATAL};

use crate::layout::{install_files, resolve};
use crate::state::{self, InstallRecord, LabState, Product, Service};
use crate::tools::keyfile;

/// Everything an installer was told, normalised.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub tool: &'static str,
    /// The package or setup path as received.
    pub package: String,
    pub product: Product,
    pub database: String,
    pub reuse: bool,
    pub user: String,
    pub domain: String,
    pub password: Option<String>,
    /// Key file path as received (Windows paths are mapped into the sandbox).
    pub key_file: Option<String>,
    /// Product codes the package replaces by a major upgrade (msiexec only).
    pub upgrades: Vec<String>,
    /// The oldest version of an upgraded product the major upgrade accepts.
    pub upgrade_min_version: Option<String>,
    /// Where the installer was told the store is (msiexec with a package that asks).
    pub store: Option<StoreRequest>,
    /// Properties or switches as received, for the lab's record.
    pub received: Vec<(String, String)>,
}

/// The store's server as the installer received it, and whether it was told that is another
/// machine (MIM 2016: `SQLServerStore=RemoteMachine`).
#[derive(Debug, Clone)]
pub struct StoreRequest {
    pub server: String,
    pub told_remote: bool,
}

/// Names that mean this machine to SQL Server clients. The lab server has no computer name of
/// its own, so any other name is another machine.
fn names_lab_server(server: &str) -> bool {
    matches!(
        server.trim().to_ascii_lowercase().as_str(),
        "" | "(local)" | "." | "localhost" | "127.0.0.1" | "::1"
    )
}

/// `1.2.3.4` -> numbers, a missing or unreadable part as 0, for Windows Installer's numeric order.
fn version_key(v: &str) -> [u32; 4] {
    let mut out = [0; 4];
    for (slot, part) in out.iter_mut().zip(v.split('.')) {
        *slot = part.trim().parse().unwrap_or(0);
    }
    out
}

/// A refused install: a Windows Installer exit code and the message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub message: String,
}

fn refuse(code: i32, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Installs the product if every check passes; records the attempt either way.
pub fn install(lab: &Path, req: &InstallRequest) -> Result<(), Refusal> {
    let outcome = state::update(lab, |st| {
        let result = check_and_apply(lab, st, req);
        st.installs.push(InstallRecord {
            tool: req.tool.into(),
            package: req.package.clone(),
            properties: req.received.clone(),
            exit: result.as_ref().map(|_| 0).unwrap_or_else(|r| r.code),
            at: state::now(),
        });
        result
    })
    .map_err(|e| refuse(FATAL, format!("lab state: {e}")))?;
    let exe = outcome?;
    install_files(lab, &req.product, &exe, false).map_err(|e| refuse(FATAL, e.to_string()))
}

fn check_and_apply(
    lab: &Path,
    st: &mut LabState,
    req: &InstallRequest,
) -> Result<std::path::PathBuf, Refusal> {
    let p = &req.product;
    if st.product(&p.code).is_some() {
        return Err(refuse(
            ANOTHER_VERSION,
            format!(
                "Another version of this product is already installed: {} {}.",
                p.name, p.code
            ),
        ));
    }
    let upgraded: Vec<Product> = st
        .products
        .iter()
        .filter(|o| req.upgrades.iter().any(|u| u.eq_ignore_ascii_case(&o.code)))
        .cloned()
        .collect();
    if let Some(old) = st.products.iter().find(|o| {
        o.service.eq_ignore_ascii_case(&p.service) && !upgraded.iter().any(|u| u.code == o.code)
    }) {
        return Err(refuse(
            FATAL,
            format!(
                "{} ({}) is still installed; remove it first (the lab does not upgrade in place).",
                old.name, old.code
            ),
        ));
    }
    if let Some(min) = &req.upgrade_min_version {
        if let Some(old) = upgraded
            .iter()
            .find(|o| version_key(&o.version) < version_key(min))
        {
            return Err(refuse(
                FATAL,
                format!(
                    "{} {} cannot be upgraded in place: this upgrade needs version {min} or later.",
                    old.name, old.version
                ),
            ));
        }
    }
    if let Some(store) = req.store.as_ref().filter(|s| !names_lab_server(&s.server)) {
        if !store.told_remote {
            return Err(refuse(
                FATAL,
                format!(
                    "No SQL Server store on this computer: STORESERVER is {}, another machine, and \
                     SQLServerStore=RemoteMachine was not given.",
                    store.server
                ),
            ));
        }
    }
    let acct = &st.account;
    let password_ok = req.password.as_deref() == Some(acct.password.as_str());
    if !req.user.eq_ignore_ascii_case(&acct.user)
        || !req.domain.eq_ignore_ascii_case(&acct.domain)
        || !password_ok
    {
        return Err(refuse(
            FATAL,
            format!(
                "The service account {}\\{} could not log on: unknown user name or bad password.",
                req.domain, req.user
            ),
        ));
    }
    let Some(db) = st.database(&req.database).cloned() else {
        return Err(refuse(
            FATAL,
            format!("Database {} was not found on the SQL server.", req.database),
        ));
    };
    if !req.reuse {
        return Err(refuse(
            FATAL,
            format!("Database {} already exists; answer reuse=yes to keep it (the lab never creates a new database).", db.name),
        ));
    }
    let key_set = match &st.key_set {
        Some(k) if k.id == db.key_set_id => k.clone(),
        _ => import_key_file(lab, req, &db.name, &db.key_set_id)?,
    };
    st.key_set = Some(key_set);
    // A major upgrade removes the old product's entry; its key set, service and folder stay.
    st.products
        .retain(|o| !upgraded.iter().any(|u| u.code == o.code));
    st.products.push(p.clone());
    st.services
        .retain(|s| !s.name.eq_ignore_ascii_case(&p.service));
    st.services.push(Service {
        name: p.service.clone(),
        display_name: p.name.clone(),
        running: true,
    });
    Ok(st.exe.clone())
}

fn import_key_file(
    lab: &Path,
    req: &InstallRequest,
    db: &str,
    want: &str,
) -> Result<state::KeySet, Refusal> {
    let Some(given) = req.key_file.as_deref().filter(|k| !k.is_empty()) else {
        return Err(refuse(
            FATAL,
            format!(
                "The server has no encryption key set and no key file was given: reusing database {db} \
                 needs the key set exported from it (miiskmu /e)."
            ),
        ));
    };
    let path = resolve(lab, given);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| refuse(FATAL, format!("Cannot read key file {given}: {e}.")))?;
    let id =
        keyfile::key_set_id(&text).map_err(|e| refuse(FATAL, format!("Key file {given}: {e}.")))?;
    if id != want {
        return Err(refuse(
            FATAL,
            format!("Key file {given} holds key set {id}, but database {db} was encrypted with key set {want}."),
        ));
    }
    keyfile::import(&text, req.password.as_deref().unwrap_or_default())
        .map_err(|e| refuse(FATAL, format!("Key file {given}: {e}.")))
}

/// Writes an installer log (verbose-log style; values of `*PASSWORD*` properties masked as
/// Windows Installer masks hidden properties). `None` when the log cannot be written.
pub fn write_log(lab: &Path, log: Option<&str>, lines: &[String]) -> Result<(), String> {
    let Some(log) = log.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let path = resolve(lab, log);
    let mut text = format!(
        "=== Verbose logging started: {}  (upgrade-lab stand-in, TEST DOUBLE) ===\n",
        state::now()
    );
    for l in lines {
        text.push_str("MSI (s) (lab): ");
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(&format!(
        "=== Verbose logging stopped: {} ===\n",
        state::now()
    ));
    std::fs::write(&path, text)
        .map_err(|e| format!("Error opening installation log file {log}: {e}"))
}

/// `NAME = VALUE` for the log, masking secrets.
pub fn log_property(name: &str, value: &str) -> String {
    if name.to_ascii_uppercase().contains("PASSWORD") {
        format!("Property(S): {name} = **********")
    } else {
        format!("Property(S): {name} = {value}")
    }
}
