//! Shared harness for the executor's end-to-end tests: a fresh lab (TEST DOUBLE: the TDS server
//! double and the stand-in tools from `upgrade-lab`), a plan written for it, and the real `upgrade`
//! binary run as a child process, exactly as an administrator would run it.
#![allow(dead_code)] // each test file uses part of the harness

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use upgrade_lab::kdc::Enctypes;
use upgrade_lab::sqlmodel::TdsVersion;
use upgrade_lab::{Flavour, Lab, RunningLab, StartOptions};

pub mod wine;

/// The SQL login's password reaches `upgrade` through this variable.
pub const SQL_PASSWORD_ENV: &str = "LAB_SQL_PASSWORD";
/// The service account's password reaches `upgrade` through this variable.
pub const SERVICE_PASSWORD_ENV: &str = "LAB_SERVICE_PASSWORD";
/// The lab's WinRM administrator password reaches `upgrade` through this variable (remote plans).
pub const WINRM_PASSWORD_ENV: &str = "LAB_WINRM_PASSWORD";

/// Which WinRM listener a rig's lab serves besides plain HTTP with NTLM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Listener {
    /// NTLM over HTTP with message encryption (Windows' default listener).
    Http,
    /// Also an HTTPS listener with a self-signed certificate.
    Https,
    /// A Kerberos acceptor with a KDC of the lab's own (realm LAB.TEST) with keys of these
    /// enctypes.
    Kerberos(Enctypes),
}

pub struct Rig {
    pub tmp: tempfile::TempDir,
    pub lab: RunningLab,
    pub plan: PathBuf,
}

pub enum Driver {
    /// `driver: tds`: tiberius over TDS 7.4 (SQL Server 2016 answers).
    Tds,
    /// `driver: odbc`: ODBC (unixODBC + FreeTDS) over TDS 7.1 (SQL Server 2000 answers).
    Odbc,
    /// `driver: auto` (with FreeTDS as the ODBC driver should it pick ODBC), against SQL Server
    /// 2000 unless `Rig::iifp_on` says otherwise.
    Auto,
}

pub const FREETDS_DRIVER: &str = "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so";

/// The FreeTDS ODBC driver the ODBC tests run through; without it they fail here, naming the
/// package (not later, with unixODBC's "Can't open lib", and never by passing untested).
pub fn require_freetds() {
    assert!(
        Path::new(FREETDS_DRIVER).is_file(),
        "the FreeTDS ODBC driver {FREETDS_DRIVER} is missing: install the Debian package tdsodbc \
         (`.ci/run` does)"
    );
}

impl Rig {
    /// A fresh IIFP lab with its server listening, and the seed plan written for it.
    pub fn iifp(driver: Driver, faults: &[&str]) -> Rig {
        let tds = Rig::tds_for(&driver);
        Rig::iifp_on(driver, tds, faults)
    }

    fn tds_for(driver: &Driver) -> TdsVersion {
        match driver {
            Driver::Tds => TdsVersion::V74,
            Driver::Odbc | Driver::Auto => TdsVersion::V71,
        }
    }

    /// The same, with the lab's SQL Server answering as `tds` says (7.4: 2016, 7.1: 2000).
    pub fn iifp_on(driver: Driver, tds: TdsVersion, faults: &[&str]) -> Rig {
        Rig::start(
            driver,
            tds,
            faults,
            upgrade_lab::SqlHost::SyncServer,
            Listener::Http,
        )
    }

    /// An IIFP lab whose directory agent (Contoso AD) holds `objects` connector-space objects
    /// (`upgrade-lab init --objects N`), for searches at scale.
    pub fn iifp_with_objects(driver: Driver, objects: u32) -> Rig {
        let tds = Rig::tds_for(&driver);
        let mut init = upgrade_lab::InitOptions::new(Flavour::Iifp);
        init.objects = Some(objects);
        Rig::start_with(
            driver,
            tds,
            &[],
            upgrade_lab::SqlHost::SyncServer,
            Listener::Http,
            &init,
        )
    }

    /// The IIFP lab with its WinRM HTTPS listener too (`lab.winrm.https_url`, `https_cert`).
    pub fn iifp_with_winrm_https() -> Rig {
        let (driver, tds) = (Driver::Tds, TdsVersion::V74);
        Rig::start(
            driver,
            tds,
            &[],
            upgrade_lab::SqlHost::SyncServer,
            Listener::Https,
        )
    }

    /// The seed plan against a lab whose SQL Server is a machine of its own: the plan's backup
    /// path `D:\Upgrade\miis.bak` is a path on that machine (which has the folder), out of the
    /// executor's reach.
    pub fn iifp_separate_sql_host(driver: Driver) -> Rig {
        let tds = Rig::tds_for(&driver);
        let rig = Rig::start(
            driver,
            tds,
            &[],
            upgrade_lab::SqlHost::Separate,
            Listener::Http,
        );
        let local = rig.path(r"D:\Upgrade\miis.bak").display().to_string();
        let plan = std::fs::read_to_string(&rig.plan).unwrap();
        assert!(plan.contains(&local), "the seed plan's backup line changed");
        std::fs::write(&rig.plan, plan.replace(&local, r"D:\Upgrade\miis.bak")).unwrap();
        std::fs::create_dir_all(rig.lab.sql_host_path(r"D:\Upgrade")).unwrap();
        rig
    }

    /// A fresh IIFP lab and the seed plan as an admin host runs it against the server over the
    /// lab's WinRM listener (`server.connect: winrm`): server paths are Windows paths the lab's
    /// shell resolves on its drives, the copies and the state are this machine's (`admin/` in the
    /// test's folder), SQL is direct (TDS 7.4, tiberius).
    pub fn iifp_remote(faults: &[&str]) -> Rig {
        Rig::iifp_remote_naming(faults, |path| path.display().to_string())
    }

    /// The same, with the admin host naming its own files (the copies, the state folder) as
    /// `admin_name` says: a Windows admin host under Wine names `/tmp/x` `Z:\tmp\x`.
    pub fn iifp_remote_naming(faults: &[&str], admin_name: impl Fn(&Path) -> String) -> Rig {
        let init = upgrade_lab::InitOptions::new(Flavour::Iifp);
        Rig::remote_over(Listener::Http, faults, &init, &admin_name)
    }

    /// `iifp_remote` against a lab server laid out as `init` says (its `%SystemRoot%`, ...).
    pub fn iifp_remote_with(faults: &[&str], init: &upgrade_lab::InitOptions) -> Rig {
        Rig::remote_over(Listener::Http, faults, init, &|path| {
            path.display().to_string()
        })
    }

    /// The same, logging on with Kerberos (`auth: kerberos`, `admin@LAB.TEST`) to a lab whose
    /// listener is a Kerberos acceptor with a KDC of its own (`StartOptions::kerberos`); `upgrade`
    /// runs with the lab realm's krb5.conf (`KRB5_CONFIG`) and no ticket cache, so the plan's
    /// password is what logs on. Needs MIT Kerberos (Debian krb5-kdc, krb5-admin-server,
    /// krb5-user); without it the lab fails to start, naming them.
    pub fn iifp_remote_kerberos(enctypes: Enctypes) -> Rig {
        let init = upgrade_lab::InitOptions::new(Flavour::Iifp);
        Rig::remote_over(Listener::Kerberos(enctypes), &[], &init, &|path| {
            path.display().to_string()
        })
    }

    fn remote_over(
        listener: Listener,
        faults: &[&str],
        init: &upgrade_lab::InitOptions,
        admin_name: &dyn Fn(&Path) -> String,
    ) -> Rig {
        let rig = Rig::start_with(
            Driver::Tds,
            TdsVersion::V74,
            faults,
            upgrade_lab::SqlHost::SyncServer,
            listener,
            init,
        );
        let admin = |name: &str| admin_name(&rig.admin_dir().join(name));
        std::fs::write(&rig.plan, remote_seed_plan(&rig.lab, &admin)).unwrap();
        std::fs::create_dir_all(rig.admin_dir()).unwrap();
        std::fs::create_dir_all(rig.path(r"D:\Upgrade")).unwrap();
        rig
    }

    /// The admin host's folder of a remote rig: the Extensions copy, the key file's copy.
    pub fn admin_dir(&self) -> PathBuf {
        self.tmp.path().join("admin")
    }

    fn start(
        driver: Driver,
        tds: TdsVersion,
        faults: &[&str],
        sql_host: upgrade_lab::SqlHost,
        listener: Listener,
    ) -> Rig {
        let init = upgrade_lab::InitOptions::new(Flavour::Iifp);
        Rig::start_with(driver, tds, faults, sql_host, listener, &init)
    }

    fn start_with(
        driver: Driver,
        tds: TdsVersion,
        faults: &[&str],
        sql_host: upgrade_lab::SqlHost,
        listener: Listener,
        init: &upgrade_lab::InitOptions,
    ) -> Rig {
        if matches!(driver, Driver::Odbc)
            || matches!((&driver, tds), (Driver::Auto, TdsVersion::V71))
        {
            require_freetds();
        }
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::init_with(&tmp.path().join("lab"), init).unwrap();
        let lab = lab
            .start(StartOptions {
                port: 0,
                winrm_port: 0,
                winrm_https: listener == Listener::Https,
                tds,
                faults: Some(faults.iter().map(|s| s.to_string()).collect()),
                sql_host,
                kerberos: match listener {
                    Listener::Kerberos(enctypes) => Some(enctypes),
                    _ => None,
                },
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = tmp.path().join("plan.yaml");
        std::fs::write(&plan, seed_plan(&lab, &driver)).unwrap();
        Rig { tmp, lab, plan }
    }

    pub fn path(&self, win: &str) -> PathBuf {
        self.lab.lab_path(win)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    pub fn service_password(&self) -> String {
        self.lab.lab().state().unwrap().account.password
    }

    /// Runs `upgrade ARGS` with the lab's secrets in the environment.
    pub fn upgrade(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The plan's secrets as `upgrade` reads them: (variable, value).
    pub fn secrets_env(&self) -> [(&'static str, String); 3] {
        let st = self.lab.lab().state().unwrap();
        [
            (SQL_PASSWORD_ENV, st.sql.password),
            (SERVICE_PASSWORD_ENV, st.account.password),
            (WINRM_PASSWORD_ENV, self.lab.winrm.password.clone()),
        ]
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upgrade"));
        cmd.args(args)
            .envs(self.secrets_env())
            .env("RUST_LOG", "upgrade=debug")
            .stdin(std::process::Stdio::null());
        if let Some(krb) = &self.lab.kerberos {
            // MIT Kerberos reads the realm from KRB5_CONFIG; an empty ticket cache of the test's
            // own, so that the plan's password (not a ticket of the machine's) logs on.
            cmd.env(WINRM_PASSWORD_ENV, &krb.password)
                .env("KRB5_CONFIG", &krb.krb5_conf)
                .env(
                    "KRB5CCNAME",
                    format!("FILE:{}", self.tmp.path().join("no-ccache").display()),
                );
        }
        cmd
    }

    /// Starts `upgrade ARGS` in the background, its output discarded (tests read the lab instead).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn plan_str(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    /// Replaces the lab's active faults (tool faults act at once, SQL faults at the next BACKUP).
    pub fn faults(&self, specs: &[&str]) {
        self.lab.lab().set_faults(specs).unwrap();
    }

    pub fn installed(&self) -> Vec<String> {
        self.lab
            .lab()
            .state()
            .unwrap()
            .products
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    pub fn statements(&self) -> String {
        std::fs::read_to_string(self.lab.dir().join("sql").join("statements.log"))
            .unwrap_or_default()
    }

    /// The seed plan's header (server, state, tools) with other steps, written beside it.
    pub fn plan_with_steps(&self, name: &str, steps: &str) -> PathBuf {
        let seed = std::fs::read_to_string(&self.plan).unwrap();
        let header = seed
            .split("steps:\n")
            .next()
            .unwrap()
            .replace("lab-iifp-to-miis2003", name);
        let path = self.tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&path, format!("{header}steps:\n{steps}")).unwrap();
        path
    }

    pub fn argv_log(&self) -> String {
        std::fs::read_to_string(self.lab.dir().join("argv.log")).unwrap_or_default()
    }

    /// How many times the lab ran stand-in `tool` (its argv records).
    pub fn runs_of(&self, tool: &str) -> usize {
        self.argv_log()
            .lines()
            .filter(|l| l.contains(&format!("\"{tool}\"")))
            .count()
    }

    /// Every file of the lab (the server's side: drives, logs, argv records) holding `needle`,
    /// except the lab's own bookkeeping of the account it made (lab.json) and the key file (whose
    /// bytes the lab derives from the password, as miiskmu encrypts the export with it).
    pub fn server_files_holding(&self, needle: &str) -> Vec<String> {
        files_holding(self.lab.dir(), needle)
            .into_iter()
            .filter(|rel| rel != "lab.json" && !rel.ends_with("miis-keys.bin"))
            .collect()
    }
}

/// Every file under `dir` (relative paths) whose bytes hold `needle`.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    tree(dir)
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| {
            let bytes = std::fs::read(dir.join(rel)).unwrap_or_default();
            String::from_utf8_lossy(&bytes).contains(needle)
        })
        .collect()
}

/// `upgrade apply PLAN --auto-approve`.
pub fn apply(rig: &Rig) -> Output {
    rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"])
}

/// The next run converges: apply exits 0, a plan after it finds nothing to do, and MIIS 2003 is
/// the one product installed.
pub fn converges(rig: &Rig) {
    let out = apply(rig);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the next run must converge: {}",
        text(&out)
    );
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(
        rig.installed(),
        ["Microsoft Identity Integration Server 2003"]
    );
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The seed procedure (IIFP to MIIS 2003), written for the lab's sandbox paths.
pub fn seed_plan(lab: &RunningLab, driver: &Driver) -> String {
    let st = lab.lab().state().unwrap();
    let tools = lab.lab().tools().unwrap();
    let p = |win: &str| lab.lab_path(win).display().to_string();
    let state_dir = lab.dir().parent().unwrap().join("state");
    let (driver_line, odbc_line) = match driver {
        Driver::Tds => ("tds", String::new()),
        Driver::Odbc => ("odbc", format!("\n    odbc_driver: {FREETDS_DRIVER}")),
        Driver::Auto => ("auto", format!("\n    odbc_driver: {FREETDS_DRIVER}")),
    };
    format!(
        r#"# yaml-language-server: $schema=../schemas/plan.schema.json
version: 1
name: lab-iifp-to-miis2003
description: The seed procedure against the rehearsal lab (TEST DOUBLE server).
server:
  sql:
    host: 127.0.0.1
    port: {port}
    auth: {{ sql: {{ user: {login}, password: {{ env: {SQL_PASSWORD_ENV} }} }} }}
    driver: {driver_line}{odbc_line}
state: {{ dir: '{state}' }}
tools:
  miiskmu: '{miiskmu}'
  msiexec: '{msiexec}'
  reg: '{reg}'
  sc: '{sc}'
steps:
  - id: database
    backup_database: {{ database: MicrosoftIdentityIntegrationServer, to: '{bak}' }}
  - id: keys
    export_keys:
      to: '{keys}'
      account: {{ user: '{domain}\{user}', password: {{ env: {SERVICE_PASSWORD_ENV} }} }}
  - id: extensions
    backup_files:
      from: '{ext}'
      to: '{ext_copy}'
  - id: stop-sync
    service: {{ name: miiserver, state: stopped }}
  - id: before
    after: [stop-sync]
    snapshot_connector_space: {{ database: MicrosoftIdentityIntegrationServer }}
  - id: remove-iifp
    after: [database, keys, extensions, before]
    uninstall:
      product: {{ name: Identity Integration Feature Pack }}
      retry: {{ attempts: 4, delay: 1s }}
  - id: install-miis
    after: [remove-iifp]
    install:
      installer: '{setup}'
      detect: {{ product: {{ name: Microsoft Identity Integration Server 2003 }}, version: "3." }}
      answers:
        setup_type: complete
        store: {{ server: "(local)", database: MicrosoftIdentityIntegrationServer, reuse_existing: true }}
        service_account: {{ user: {user}, domain: {domain}, password: {{ env: {SERVICE_PASSWORD_ENV} }} }}
        groups: {{ admins: MIISAdmins, operators: MIISOperators, joiners: MIISJoiners, browse: MIISBrowse, password_set: MIISPasswordSet }}
        key_file: {{ from: keys }}
      arguments:
        - /q
        - "/setuptype:{{answers.setup_type}}"
        - "/sqlserver:{{answers.store.server}}"
        - "/sqlinstance:{{answers.store.instance}}"
        - "/database:{{answers.store.database}}"
        - "/reusedb:{{answers.store.reuse_existing}}"
        - "/serviceaccount:{{answers.service_account.user}}"
        - "/servicedomain:{{answers.service_account.domain}}"
        - "/servicepassword:*"
        - "/admins:{{answers.groups.admins}}"
        - "/operators:{{answers.groups.operators}}"
        - "/joiners:{{answers.groups.joiners}}"
        - "/browse:{{answers.groups.browse}}"
        - "/passwordset:{{answers.groups.password_set}}"
        - "/keyfile:{{answers.key_file}}"
        - "/log:{{log}}"
      stdin: "{{answers.service_account.password}}\n"
      retry: {{ attempts: 4, delay: 1s }}
  - id: verify
    after: [install-miis]
    verify:
      connector_space: {{ same_as: before }}
      search:
        - {{ management_agent: Contoso AD, dn_prefix: "CN=Administrator" }}
      services:
        - {{ name: miiserver }}
"#,
        port = lab.port,
        login = st.sql.login,
        state = state_dir.display(),
        miiskmu = tools.miiskmu.display(),
        msiexec = tools.msiexec.display(),
        reg = tools.reg.display(),
        sc = tools.sc.display(),
        bak = p(r"D:\Upgrade\miis.bak"),
        keys = p(r"D:\Upgrade\miis-keys.bin"),
        ext = p(r"C:\Program Files\Microsoft Identity Integration Server\Extensions"),
        ext_copy = p(r"D:\Upgrade\Extensions"),
        setup = tools.installer.display(),
        domain = st.account.domain,
        user = st.account.user,
    )
}

/// The seed procedure run from an admin host over WinRM: the server's paths as Windows paths (the
/// lab's WinRM shell and its SQL Server map them onto its drives), tools at their default Windows
/// places, the copies and the state in the admin host's folder, whose file NAME the admin host
/// names `admin(NAME)`.
pub fn remote_seed_plan(lab: &RunningLab, admin: &dyn Fn(&str) -> String) -> String {
    let local = seed_plan(lab, &Driver::Tds);
    let st = lab.lab().state().unwrap();
    let steps = local.split("steps:\n").nth(1).unwrap();
    // Kerberos needs the listener by its service principal's host name (`localhost`).
    let logon = match &lab.kerberos {
        Some(krb) => (krb.url.clone().unwrap(), "kerberos", krb.user.clone()),
        None => (lab.winrm.url.clone(), "ntlm", lab.winrm.user.clone()),
    };
    let p = |win: &str| lab.lab_path(win).display().to_string();
    let steps = steps
        .replace(&p(r"D:\Upgrade\miis.bak"), r"D:\Upgrade\miis.bak")
        .replace(&p(r"D:\Upgrade\miis-keys.bin"), r"D:\Upgrade\miis-keys.bin")
        .replace(
            &p(r"C:\Program Files\Microsoft Identity Integration Server\Extensions"),
            r"C:\Program Files\Microsoft Identity Integration Server\Extensions",
        )
        .replace(
            &p(r"D:\Upgrade\Extensions"),
            &admin("Extensions"),
        )
        .replace(
            &lab.lab().tools().unwrap().installer.display().to_string(),
            upgrade_lab::layout::MIIS_SETUP,
        )
        .replace(
            "      to: 'D:\\Upgrade\\miis-keys.bin'\n",
            &format!(
                "      to: 'D:\\Upgrade\\miis-keys.bin'\n      copy_to: '{}'\n",
                admin("miis-keys.bin")
            ),
        )
        .replace(
            "      retry: { attempts: 4, delay: 1s }\n  - id: install-miis",
            "      retry: { attempts: 4, delay: 1s }\n      log: 'D:\\Upgrade\\uninstall-iifp.log'\n  - id: install-miis",
        )
        .replace(
            "      detect: { product: { name: Microsoft Identity Integration Server 2003 }, version: \"3.\" }\n",
            "      detect: { product: { name: Microsoft Identity Integration Server 2003 }, version: \"3.\" }\n      log: 'D:\\Upgrade\\install-miis.log'\n",
        );
    format!(
        r#"version: 1
name: lab-iifp-to-miis2003-remote
description: The seed procedure from an admin host over the lab's WinRM listener (TEST DOUBLE server).
server:
  host: 127.0.0.1
  connect:
    winrm:
      endpoint: '{url}'
      auth: {auth}
      user: '{user}'
      password: {{ env: {WINRM_PASSWORD_ENV} }}
  sql:
    host: 127.0.0.1
    port: {port}
    auth: {{ sql: {{ user: {login}, password: {{ env: {SQL_PASSWORD_ENV} }} }} }}
    driver: tds
state: {{ dir: '{state}' }}
steps:
{steps}"#,
        url = logon.0,
        auth = logon.1,
        user = logon.2,
        port = lab.port,
        login = st.sql.login,
        state = admin("state"),
    )
}

/// Every file under `dir` with its size, for "nothing changed" comparisons.
pub fn tree(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), len));
            }
        }
    }
    out.sort();
    out
}

/// The seed plan's steps (id, kind) in the order apply takes them.
pub const SEED_STEPS: [(&str, &str); 8] = [
    ("database", "backup_database"),
    ("keys", "export_keys"),
    ("extensions", "backup_files"),
    ("stop-sync", "service"),
    ("before", "snapshot_connector_space"),
    ("remove-iifp", "uninstall"),
    ("install-miis", "install"),
    ("verify", "verify"),
];

/// Rewrites the rig's plan text; panics when `from` is not in it (the seed plan changed shape).
pub fn edit_plan(rig: &Rig, from: &str, to: &str) {
    let plan = std::fs::read_to_string(&rig.plan).unwrap();
    assert!(plan.contains(from), "the seed plan has no `{from}`");
    std::fs::write(&rig.plan, plan.replacen(from, to, 1)).unwrap();
}

/// Puts a shell script in front of a tool the plan names at `real` (it must appear in the plan as
/// `'REAL'`): the script runs `before` (an administrator's or a fault's action while the run is
/// under way), then the real stand-in with the same arguments and standard input.
pub fn wrap_tool(rig: &Rig, real: &Path, name: &str, before: &str) {
    wrap_tool_around(rig, real, name, before, "");
}

/// The same, with `after` run once the real tool has ended (the wrapper exits with its code).
pub fn wrap_tool_around(rig: &Rig, real: &Path, name: &str, before: &str, after: &str) {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = rig.tmp.path().join("wrappers").join(name);
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    let run = if after.is_empty() {
        format!("exec '{}' \"$@\"", real.display())
    } else {
        format!("'{}' \"$@\"\nrc=$?\n{after}\nexit $rc", real.display())
    };
    std::fs::write(&wrapper, format!("#!/bin/sh\n{before}\n{run}\n")).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    edit_plan(
        rig,
        &format!("'{}'", real.display()),
        &format!("'{}'", wrapper.display()),
    );
}

/// The files directly in `dir` whose names start with `prefix`.
pub fn files_named_like(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// How long a test waits for a run to get somewhere before it calls the run hung.
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(180);

/// Starts `upgrade ARGS` with its output going to files under the rig's folder named `name`;
/// returns the child and those two files (standard output, standard error).
fn spawn_recorded(rig: &Rig, args: &[&str], name: &str) -> (std::process::Child, [PathBuf; 2]) {
    let files = [
        rig.tmp.path().join(format!("{name}.out")),
        rig.tmp.path().join(format!("{name}.err")),
    ];
    let child = rig
        .command(args)
        .stdout(std::fs::File::create(&files[0]).unwrap())
        .stderr(std::fs::File::create(&files[1]).unwrap())
        .spawn()
        .unwrap();
    (child, files)
}

/// What a run spawned by `spawn_recorded` has written so far, with the lab's argv records.
fn recorded(rig: &Rig, files: &[PathBuf; 2]) -> String {
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap_or_default();
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}\n--- argv ---\n{}",
        read(&files[0]),
        read(&files[1]),
        rig.argv_log()
    )
}

/// For a rig whose lab holds its installers in their execute phase (the `hold-execute` fault):
/// starts an apply, waits until the uninstall's msiexec is in that phase (its `_MSIExecute` held,
/// after the key export) and kills the apply with SIGKILL. The installer goes on alone, as Windows
/// Installer does, and stays at work until the test lifts the fault: each wait here is for a state
/// that lasts until the test acts, so a loaded machine that runs the test late cannot make it miss
/// one. The uninstall's retry is raised to 8 attempts (1 s doubling, over two minutes in all), so
/// that the next apply does not run out of attempts while a loaded machine lets the lifted
/// installer end.
pub fn kill_while_the_uninstall_executes(rig: &Rig) {
    let faults = upgrade_lab::faults::load(rig.lab.dir()).unwrap();
    assert!(faults.hold_execute, "the rig needs the hold-execute fault");
    edit_plan(
        rig,
        "      retry: { attempts: 4, delay: 1s }\n",
        "      retry: { attempts: 8, delay: 1s }\n",
    );
    let (mut child, said) = spawn_recorded(
        rig,
        &["apply", rig.plan_str(), "--auto-approve"],
        "killed-apply",
    );
    let t0 = std::time::Instant::now();
    let executing = || {
        rig.argv_log().contains("\"miiskmu\"")
            && upgrade_lab::tools::msiexec::installer_busy(rig.lab.dir()).unwrap()
    };
    while !executing() {
        assert!(t0.elapsed() < HANG_GUARD, "the uninstall never started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "apply ended ({status}) before the uninstall started:\n{}",
                recorded(rig, &said)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The apply after `kill_while_the_uninstall_executes`: it finds the installation in progress
/// (and says so) while the installer is held at work, and starts no second msiexec; only then is
/// the installer let go. The apply waits with the step's retry, sees the product removed, and
/// converges; the lab's argv records hold the one removal, exit 0.
pub fn the_next_apply_waits_for_that_installer_and_never_runs_it_twice(rig: &Rig) {
    let (mut next, said) = spawn_recorded(
        rig,
        &["apply", rig.plan_str(), "--auto-approve"],
        "next-apply",
    );
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&said[1])
        .unwrap_or_default()
        .contains("_MSIExecute mutex is set")
    {
        assert!(
            t0.elapsed() < HANG_GUARD,
            "the next apply never got to the uninstall"
        );
        if let Some(status) = next.try_wait().unwrap() {
            panic!(
                "the next apply ended ({status}) without finding the installer at work:\n{}",
                recorded(rig, &said)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rig.faults(&[]);
    let status = next.wait().unwrap();
    let all = recorded(rig, &said);
    assert_eq!(status.code(), Some(0), "{all}");
    let argv = rig.argv_log();
    let removals: Vec<&str> = argv
        .lines()
        .filter(|l| l.contains("\"msiexec\"") && l.contains("\"/x\""))
        .collect();
    assert_eq!(
        removals.len(),
        1,
        "a second msiexec was started: {removals:#?}"
    );
    assert!(removals[0].contains("\"exit\":0"), "{removals:?}");
    assert_eq!(
        rig.installed(),
        ["Microsoft Identity Integration Server 2003"]
    );
    converges(rig);
}

/// Whether a stand-in `tool` of this lab is running right now (Linux: scans /proc).
pub fn tool_running(lab_dir: &Path, tool: &str) -> bool {
    let needle = format!("{}\0{tool}\0", lab_dir.display());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains(&needle))
}

/// Runs `cmd` with a pseudo-terminal as its standard input, output and error, as a person at a
/// terminal runs it, typing `typed`; returns its exit code and everything the terminal showed.
/// A child still running after a minute is killed and the test fails.
pub fn run_in_pty(cmd: Command, typed: &str) -> (Option<i32>, String) {
    run_in_pty_of_width(cmd, typed, 200)
}

/// `run_in_pty` on a terminal `columns` wide.
pub fn run_in_pty_of_width(mut cmd: Command, typed: &str, columns: u16) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (mut leader, mut follower) = (-1, -1);
    let size = libc::winsize {
        ws_row: 50,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new file descriptors into the given places; the name and
    // terminal settings are optional (null).
    let rc = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened for us and are owned by nothing else.
    let (leader, follower) =
        unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
    // Children of other tests running at the same time must not inherit them.
    for fd in [&leader, &follower] {
        // SAFETY: F_SETFD on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    cmd.stdin(follower.try_clone().unwrap())
        .stdout(follower.try_clone().unwrap())
        .stderr(follower);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut terminal = std::fs::File::from(leader);
    terminal.write_all(typed.as_bytes()).unwrap();
    // Read on a thread until the terminal closes (EIO on Linux once no process holds it).
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = terminal.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        bytes
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{cmd_name} at the terminal did not finish within a minute",
                cmd_name = "upgrade"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let bytes = reader.join().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
    )
}

/// Every log line this thread writes at TRACE and above, kept for a test to search (for secrets):
/// hold the guard while the code under test runs (a `current_thread` runtime keeps it all on one
/// thread), then read `text()`.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Spinner lines of step `id` (indicatif's braille frames) in a pty's raw output.
pub fn spinner_frames(shown: &str, id: &str) -> Vec<String> {
    shown
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches("\x1b[2K").to_string())
        .filter(|l| {
            let mut cs = l.trim_start().chars();
            cs.next()
                .is_some_and(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
                && cs.as_str().starts_with(&format!(" {id}: "))
        })
        .collect()
}

/// What a terminal shows once `raw` (as `run_in_pty` returns it) has been written to it: each
/// line as it stands after carriage returns, line clears (`ESC[2K`, `ESC[K`), cursor moves up
/// (`ESC[nA`) and screen clears below (`ESC[J`) have done their work; colours dropped. Enough
/// of a terminal to see what a spinner leaves behind.
pub fn screen(raw: &str) -> Vec<String> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                row += 1;
                col = 0;
                if row == lines.len() {
                    lines.push(Vec::new());
                }
            }
            '\r' => col = 0,
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut action = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() {
                        action = p;
                        break;
                    }
                    params.push(p);
                }
                let n: usize = params.trim_start_matches('?').parse().unwrap_or(1);
                match action {
                    'A' => row = row.saturating_sub(n.max(1)),
                    'K' if params == "2" => lines[row].clear(),
                    'K' => lines[row].truncate(col),
                    'J' => {
                        lines[row].truncate(col);
                        lines.truncate(row + 1);
                    }
                    'G' => col = n.saturating_sub(1),
                    _ => {} // colours, cursor shown or hidden
                }
            }
            c => {
                let line = &mut lines[row];
                if line.len() <= col {
                    line.resize(col, ' ');
                    line.push(c);
                } else {
                    line[col] = c;
                }
                col += 1;
            }
        }
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}
