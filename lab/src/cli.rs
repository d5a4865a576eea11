//! The `upgrade-lab` command line: argument parsing and dispatch to init, serve, status, fault,
//! tool and rehearse. It holds no behaviour of its own beyond printing results.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::kdc::Enctypes;
use crate::layout::{Arch, Flavour, InitOptions, Lab};
use crate::serve::{parse_tds, SqlHost, StartOptions};
use crate::LabError;

/// A simulated MIIS / FIM sync server for testing and rehearsing `upgrade` plans (test double).
#[derive(Debug, Parser)]
#[command(
    name = "upgrade-lab",
    version,
    after_help = "Examples:\n  upgrade-lab init /tmp/lab\n  upgrade-lab serve /tmp/lab --tds 7.1 --fault backup-3201=1\n  upgrade-lab status /tmp/lab --json\n  upgrade-lab rehearse plans/iifp-to-miis2003.yaml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lay out a fresh lab server in DIR.
    Init {
        dir: PathBuf,
        /// Which server: iifp (IIFP -> MIIS 2003) or fim2010r2 (FIM 2010 R2 -> MIM 2016).
        #[arg(long, default_value = "iifp")]
        product: String,
        /// Connector-space objects of the directory agent (Contoso AD), to measure searches at
        /// scale (default: the fixture's 1,800). Root components and containers count among them.
        #[arg(long, value_name = "N")]
        objects: Option<u32>,
        /// The server's architecture: x86 or x64 (default: x86 for iifp, whose Windows Server
        /// 2003 has no WOW6432Node then; x64 for fim2010r2, the only one it runs on).
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
    },
    /// Run the TDS server double and the WinRM listener on 127.0.0.1 until SIGTERM/SIGINT; prints
    /// one JSON line when ready.
    Serve {
        dir: PathBuf,
        /// TCP port (default: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The WinRM listener's TCP port (default: any free port).
        #[arg(long, default_value_t = 0)]
        winrm_port: u16,
        /// Also an HTTPS WinRM listener (any free port) with a self-signed certificate written to
        /// DIR/winrm-https.pem, taking Basic and NTLM (a listener with Basic enabled).
        #[arg(long)]
        winrm_https: bool,
        /// TDS version: 7.4 (SQL Server 2016) or 7.1 (SQL Server 2000).
        #[arg(long, default_value = "7.4")]
        tds: String,
        /// Fault spec, repeatable (replaces DIR/faults.json), e.g. backup-3201=1.
        #[arg(long = "fault")]
        faults: Vec<String>,
        /// The SQL Server runs on a machine of its own: backup paths resolve in DIR/sqlhost/drives,
        /// out of the executor's reach (MIIS 2003 and MIM support a remote store).
        #[arg(long)]
        separate_sql_host: bool,
        /// Also Kerberos on the WinRM listener: starts a KDC for the realm LAB.TEST in DIR/kdc
        /// (needs MIT Kerberos: Debian krb5-kdc, krb5-admin-server) and adds
        /// `"kerberos": {"realm", "krb5_conf", "user", "password", "url"}` to the ready line.
        #[arg(long)]
        kerberos: bool,
        /// The Kerberos realm's enctypes: `aes` (a 2008-or-later domain) or `rc4` (RC4-HMAC
        /// only, what a Windows Server 2003 domain and server have). Needs --kerberos.
        #[arg(long, default_value = "aes", requires = "kerberos")]
        kerberos_enctypes: String,
    },
    /// Show installed products, services, key set, backups taken, key files exported, tool runs.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print `export` lines for the lab's SQL and service account passwords (lab secrets, for
    /// `eval "$(upgrade-lab env DIR)"` before running a plan written for the lab).
    Env { dir: PathBuf },
    /// Replace the lab's active faults (no SPEC: clear them all).
    Fault { dir: PathBuf, specs: Vec<String> },
    /// Rehearse a real plan on a fresh lab: plan, apply --auto-approve, plan --detailed-exitcode.
    Rehearse {
        plan: PathBuf,
        /// Make the lab in DIR (kept afterwards) instead of a temporary folder.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// The `upgrade` binary (default: built from this workspace's source into the target
        /// folder upgrade-lab runs from, else next to upgrade-lab).
        #[arg(long)]
        upgrade: Option<PathBuf>,
        /// The installed old product's version on the lab (as your server's Add/Remove Programs
        /// shows it), e.g. 4.1.2273.0 for FIM 2010 R2 without SP1. Default: the lab's own.
        #[arg(long, value_name = "VERSION")]
        installed_version: Option<String>,
    },
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32, LabError> {
    let mut out = std::io::stdout();
    match cli.command {
        Command::Init {
            dir,
            product,
            objects,
            arch,
        } => {
            let mut opts = InitOptions::new(Flavour::parse(&product)?);
            opts.objects = objects;
            opts.arch = arch.as_deref().map(Arch::parse).transpose()?;
            let lab = Lab::init_with(&dir, &opts)?;
            let _ = writeln!(
                out,
                "lab ready in {} ({product}); next: upgrade-lab serve {}",
                lab.dir().display(),
                lab.dir().display()
            );
            Ok(0)
        }
        Command::Serve {
            dir,
            port,
            winrm_port,
            winrm_https,
            tds,
            faults,
            separate_sql_host,
            kerberos,
            kerberos_enctypes,
        } => {
            let enctypes = Enctypes::parse(&kerberos_enctypes).ok_or_else(|| {
                LabError::Usage(format!(
                    "--kerberos-enctypes {kerberos_enctypes}: expected aes or rc4"
                ))
            })?;
            let lab = Lab::open(&dir)?;
            let opts = StartOptions {
                port,
                winrm_port,
                winrm_https,
                tds: parse_tds(&tds)?,
                faults: Some(faults),
                sql_host: if separate_sql_host {
                    SqlHost::Separate
                } else {
                    SqlHost::SyncServer
                },
                kerberos: kerberos.then_some(enctypes),
            };
            crate::serve::serve_until_signal(&lab, opts)?;
            Ok(0)
        }
        Command::Status { dir, json } => {
            let st = Lab::open(&dir)?.status()?;
            if json {
                let text = serde_json::to_string_pretty(&st)
                    .map_err(|e| LabError::Usage(e.to_string()))?;
                let _ = writeln!(out, "{text}");
            } else {
                let _ = write!(out, "{st}");
            }
            Ok(0)
        }
        Command::Env { dir } => {
            let st = Lab::open(&dir)?.state()?;
            let _ = writeln!(
                out,
                "export {}='{}'",
                crate::rehearse::SQL_PASSWORD_ENV,
                st.sql.password
            );
            let _ = writeln!(
                out,
                "export {}='{}'",
                crate::rehearse::SERVICE_PASSWORD_ENV,
                st.account.password
            );
            Ok(0)
        }
        Command::Fault { dir, specs } => {
            let f = Lab::open(&dir)?.set_faults(&specs)?;
            let _ = writeln!(
                out,
                "faults: {}",
                if f.specs.is_empty() {
                    "none".into()
                } else {
                    f.specs.join(" ")
                }
            );
            Ok(0)
        }
        Command::Rehearse {
            plan,
            keep,
            upgrade,
            installed_version,
        } => crate::rehearse::run(&crate::rehearse::RehearseOptions {
            plan,
            keep,
            upgrade,
            installed_version,
        }),
    }
}

/// `upgrade-lab tool --lab DIR NAME ARGS...`, parsed by hand so that every ARG reaches the
/// stand-in exactly as the executor passed it (no clap interpretation of `/x`, `--help`, ...).
pub fn run_tool(args: &[String]) -> i32 {
    let (lab, name, rest) = match args {
        [flag, lab, name, rest @ ..] if flag == "--lab" => {
            (PathBuf::from(lab), name.as_str(), rest)
        }
        _ => {
            eprintln!(
                "usage: upgrade-lab tool --lab DIR NAME ARGS... (NAME: {})",
                crate::tools::TOOLS.join(", ")
            );
            return 2;
        }
    };
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut io = crate::tools::ToolIo {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    crate::tools::run(&lab, name, rest, &mut io)
}
