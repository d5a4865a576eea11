//! `upgrade-lab rehearse PLAN`: takes a real plan (Windows paths, real tool locations), makes a fresh
//! lab that matches it (flavour, service account, product codes), rewrites the plan onto the lab
//! (drives into the sandbox, tools onto the stand-ins, SQL onto the TDS double, secrets onto the
//! lab's), then runs `upgrade validate`, `plan`, `apply --auto-approve`, `plan --detailed-exitcode`.
//! It never touches the real server or the plan's own journal: state always goes to the lab.
//! Without `--upgrade`, it builds `upgrade` from the same source first (`workspace_bin`); where a
//! SQL Server 2000 plan's faithful path is missing (the FreeTDS ODBC driver, `odbc`), it takes
//! the nearest one and says so in one line.
//! The plan is read with the plan language's own loader (`upgrade_plan::load`), so a plan that
//! `upgrade validate` refuses is refused here with the same diagnostics, and rewritten typed.

mod facts;
pub mod odbc;
mod rewrite;
#[cfg(test)]
mod test_plans;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use upgrade_plan::{Plan, Sha256Hex};

pub use facts::{init_options, plan_facts, version_for, PlanFacts};
pub use rewrite::{
    destination_folders, rewrite_plan, KerberosTarget, Rewritten, Target, WinrmTarget,
};

use crate::kdc::Enctypes;
use crate::layout::{Flavour, Lab};
use crate::serve::StartOptions;
use crate::sqlmodel::TdsVersion;
use crate::workspace_bin::{self, workspace_manifest, BuildPlace};
use crate::LabError;

/// The env var that carries the lab's SQL password to `upgrade`.
pub const SQL_PASSWORD_ENV: &str = "UPGRADE_LAB_SQL_PASSWORD";
/// The env var that carries the lab's WinRM administrator password to `upgrade` (remote plans).
pub const WINRM_PASSWORD_ENV: &str = "UPGRADE_LAB_WINRM_PASSWORD";
/// The env var that replaces `{file: ...}` and `{prompt: true}` service account secrets.
pub const SERVICE_PASSWORD_ENV: &str = "UPGRADE_LAB_SERVICE_PASSWORD";

/// `upgrade-lab rehearse` options.
#[derive(Debug, Clone)]
pub struct RehearseOptions {
    pub plan: PathBuf,
    pub keep: Option<PathBuf>,
    pub upgrade: Option<PathBuf>,
    /// The installed old product's version on the lab (default: the flavour's).
    pub installed_version: Option<String>,
}

/// One phase's result.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub exit: Option<i32>,
    pub duration: Duration,
}

/// The `upgrade` binary: `--upgrade PATH`; else, when this executable was built in a cargo target
/// folder of the workspace, `upgrade` built there from the same source with the same profile
/// (`cargo build` does nothing when it is up to date, so the rehearsal always runs the source's
/// code); else `upgrade` beside this executable.
fn upgrade_binary(given: Option<&Path>) -> Result<PathBuf, LabError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(place) = BuildPlace::of_this_executable() {
        if workspace_manifest().is_file() {
            return workspace_bin::build(&place, "upgrade", "upgrade").map_err(LabError::Rehearse);
        }
    }
    let me = std::env::current_exe().map_err(|e| LabError::Rehearse(e.to_string()))?;
    let sibling = me.with_file_name("upgrade");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(LabError::Rehearse(format!(
            "no `upgrade` binary at {} and no source to build it from; pass --upgrade PATH",
            sibling.display()
        )))
    }
}

fn sha256_file(path: &Path) -> Result<Sha256Hex, LabError> {
    let bytes = std::fs::read(path).map_err(LabError::io(path))?;
    Sha256Hex::parse(&hex::encode(Sha256::digest(&bytes))).map_err(LabError::Rehearse)
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
    let plan = upgrade_plan::load(&opts.plan)
        .map_err(|diagnostics| LabError::Plan {
            path: opts.plan.clone(),
            diagnostics,
        })?
        .plan;
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
    plan: &Plan,
    facts: &PlanFacts,
    source: &Path,
    upgrade: &Path,
) -> Result<i32, LabError> {
    // SQL Server 2000 is reached over ODBC; without an ODBC driver, the nearest path is the
    // built-in client against the lab answering as SQL Server 2016.
    let odbc_path = odbc::freetds_in(&odbc::odbcinst_ini());
    let sql2000 = match (&odbc_path, facts.sql2000) {
        (odbc::OdbcPath::Missing { why }, true) => {
            println!("{}", odbc::substitute_note(why));
            false
        }
        (_, sql2000) => sql2000,
    };
    let tds = if sql2000 {
        TdsVersion::V71
    } else {
        TdsVersion::V74
    };
    // A plan that logs on with Kerberos is rehearsed with Kerberos against the lab's own KDC,
    // of RC4 keys for a Windows Server 2003 server (its domain's only enctype), else AES.
    let kerberos = plan
        .server
        .connect
        .winrm()
        .is_some_and(|w| w.auth == upgrade_plan::types::WinrmAuth::Kerberos)
        .then_some(match facts.flavour {
            Flavour::Iifp => Enctypes::Rc4,
            _ => Enctypes::Aes,
        });
    let running = lab.start(StartOptions {
        port: 0,
        winrm_port: 0,
        winrm_https: false,
        tds,
        faults: None,
        sql_host: crate::serve::SqlHost::SyncServer,
        kerberos,
    })?;
    let tools = lab.tools()?;
    let target = Target {
        lab_dir: lab.dir().to_path_buf(),
        host: running.host.clone(),
        port: running.port,
        login: running.login.clone(),
        installer_sha256: sha256_file(&tools.installer).ok(),
        tools,
        odbc_driver: (odbc_path == odbc::OdbcPath::FreeTds).then(|| odbc::FREETDS.to_string()),
        winrm: WinrmTarget {
            url: running.winrm.url.clone(),
            user: running.winrm.user.clone(),
            kerberos: running.kerberos.as_ref().map(|k| KerberosTarget {
                url: k.url.clone().unwrap_or_default(),
                user: k.user.clone(),
            }),
        },
        media: facts.flavour.media().to_string(),
    };
    let rewritten = rewrite_plan(plan, &target)?;
    for folder in destination_folders(&rewritten.plan, lab.dir()) {
        std::fs::create_dir_all(&folder).map_err(LabError::io(&folder))?;
    }
    let plan_file = lab.dir().join("rehearsal-plan.yaml");
    let yaml = upgrade_plan::write::to_yaml(&rewritten.plan)
        .map_err(|e| LabError::Rehearse(format!("writing the rewritten plan: {e}")))?;
    let header = format!(
        "# Rewritten by `upgrade-lab rehearse` from {} onto the lab in {}.\n",
        source.display(),
        lab.dir().display()
    );
    std::fs::write(&plan_file, header + &yaml).map_err(LabError::io(&plan_file))?;
    let remote = plan.server.connect.winrm().is_some();
    println!(
        "rehearsing {} on the lab in {} ({}, SQL on {}:{} TDS {}{})",
        source.display(),
        lab.dir().display(),
        facts.flavour.name(),
        running.host,
        running.port,
        if sql2000 { "7.1" } else { "7.4" },
        match (&running.kerberos, remote) {
            (Some(k), _) => format!(
                ", the server over WinRM at {} with Kerberos as {} (the lab's own KDC)",
                k.url.as_deref().unwrap_or_default(),
                k.user
            ),
            (None, true) => format!(", the server over WinRM at {}", running.winrm.url),
            (None, false) => String::new(),
        }
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
        match &running.kerberos {
            // The realm's krb5.conf, and an empty ticket cache: the password logs on.
            Some(k) => cmd
                .env(WINRM_PASSWORD_ENV, &k.password)
                .env("KRB5_CONFIG", &k.krb5_conf)
                .env(
                    "KRB5CCNAME",
                    format!("FILE:{}", lab.dir().join("kdc").join("no-ccache").display()),
                ),
            None => cmd.env(WINRM_PASSWORD_ENV, &running.winrm.password),
        };
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
