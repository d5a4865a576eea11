//! A throwaway MIT Kerberos KDC for the lab's WinRM listener (`serve --kerberos`): the realm
//! LAB.TEST in DIR/kdc (its own kdc.conf and krb5.conf, a free port on 127.0.0.1), with the
//! principal `admin@LAB.TEST` (a random password) and the service principal `HTTP/localhost` in a
//! keytab, as a domain controller holds the WinRM server's `HTTP/<host>` key. TEST DOUBLE: it runs
//! Debian's `krb5kdc`, `kdb5_util` and `kadmin.local` (packages krb5-kdc, krb5-admin-server); it
//! builds nothing and links nothing. The KDC process ends when the `Kdc` is dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The lab's realm.
pub const REALM: &str = "LAB.TEST";
/// The account clients log on with (an administrator of the lab's server).
pub const USER: &str = "admin";
/// The host name in the listener's service principal `HTTP/localhost`: clients reach the lab as
/// `http://localhost:PORT/wsman` (Kerberos needs a name, not an address, as on Windows).
pub const SERVICE_HOST: &str = "localhost";

/// The encryption types of the realm's keys (and so of its tickets and session keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Enctypes {
    /// AES (aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96): what a domain whose controllers
    /// and members run Windows Server 2008 or later uses (AES came to Kerberos with Vista/2008).
    #[default]
    Aes,
    /// RC4-HMAC (arcfour-hmac, RFC 4757) only: the one enctype a Windows Server 2003 domain and
    /// server have, so a 2003 server's ticket and session key are RC4, and its wrap tokens the
    /// RFC 1964 form with a padding buffer.
    Rc4,
}

impl Enctypes {
    /// The name `serve --kerberos-enctypes` takes.
    pub fn parse(name: &str) -> Option<Enctypes> {
        match name {
            "aes" => Some(Enctypes::Aes),
            "rc4" => Some(Enctypes::Rc4),
            _ => None,
        }
    }

    /// kdc.conf's `supported_enctypes`: the keys every principal of the realm gets.
    fn supported(self) -> &'static str {
        match self {
            Enctypes::Aes => "aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal",
            Enctypes::Rc4 => "arcfour-hmac:normal",
        }
    }
}

/// The keytab beside `Kdc::keytab` holding the service's previous key.
pub const STALE_KEYTAB: &str = "stale-http.keytab";

/// A KDC that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum KdcError {
    #[error("the lab's Kerberos KDC needs MIT Kerberos' `{tool}`, which is not installed (Debian: apt-get install krb5-kdc krb5-admin-server krb5-user): {cause}")]
    Missing { tool: &'static str, cause: String },
    #[error("the lab's Kerberos KDC: `{step}` failed: {output}")]
    Step { step: String, output: String },
    #[error("the lab's Kerberos KDC: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the lab's Kerberos KDC did not listen on 127.0.0.1:{port} within 10 s; its log: {log}"
    )]
    NotListening { port: u16, log: String },
}

/// What a client needs to log on: the ready line's `kerberos` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KerberosLogon {
    pub realm: String,
    /// The krb5.conf to give clients (`KRB5_CONFIG`): the realm's KDC, no DNS canonicalization.
    pub krb5_conf: PathBuf,
    /// `admin@LAB.TEST`.
    pub user: String,
    pub password: String,
    /// The WinRM URL by the service principal's host name (`http://localhost:PORT/wsman`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A running KDC.
#[derive(Debug)]
pub struct Kdc {
    child: Child,
    pub logon: KerberosLogon,
    /// The keytab with `HTTP/localhost@LAB.TEST`, for the listener (the acceptor).
    pub keytab: PathBuf,
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kdc {
    /// Makes the realm's database in `dir` (replacing one left there) and starts `krb5kdc`.
    pub fn start(dir: &Path, enctypes: Enctypes) -> Result<Kdc, KdcError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let port = free_port()?;
        let krb5_conf = dir.join("krb5.conf");
        let kdc_conf = dir.join("kdc.conf");
        std::fs::write(&krb5_conf, krb5_conf_text(port, enctypes))?;
        std::fs::write(&kdc_conf, kdc_conf_text(&dir, port, enctypes))?;
        std::fs::write(dir.join("kadm5.acl"), "")?;
        let env = [("KRB5_CONFIG", &krb5_conf), ("KRB5_KDC_PROFILE", &kdc_conf)];
        let password = crate::state::random_bytes(16).map(hex::encode)?;
        let master = crate::state::random_bytes(16).map(hex::encode)?;
        let keytab = dir.join("http.keytab");
        // Passwords go to the tools' prompts on stdin (each asked twice), never into argv.
        run(
            "kdb5_util",
            &["create", "-s", "-r", REALM],
            &env,
            Some(&format!("{master}\n{master}\n")),
        )?;
        let principal = format!("{USER}@{REALM}");
        let service = format!("HTTP/{SERVICE_HOST}@{REALM}");
        let kadmin = |query: &str, stdin: Option<&str>| {
            run("kadmin.local", &["-r", REALM, "-q", query], &env, stdin)
        };
        kadmin(
            &format!("addprinc {principal}"),
            Some(&format!("{password}\n{password}\n")),
        )?;
        kadmin(&format!("addprinc -randkey {service}"), None)?;
        if enctypes == Enctypes::Rc4 {
            // MIT otherwise assumes a service takes AES session keys whatever its keys are
            // (kdc.conf(5), "session_enctypes" string attribute); a 2003 server's account and its
            // domain's krbtgt take RC4 only.
            for p in [service.as_str(), &format!("krbtgt/{REALM}@{REALM}")] {
                kadmin(&format!("setstr {p} session_enctypes arcfour-hmac"), None)?;
            }
        }
        // The service's key before its last change (ktadd sets a new random key each time), for
        // the `kerberos-stale-key` fault: a server whose account's key moved on without it.
        let stale = dir.join(STALE_KEYTAB);
        kadmin(&format!("ktadd -k {} {service}", stale.display()), None)?;
        kadmin(&format!("ktadd -k {} {service}", keytab.display()), None)?;
        let log = dir.join("krb5kdc.log");
        let child = Command::new("krb5kdc")
            .args(["-n", "-r", REALM])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| missing("krb5kdc", e))?;
        let mut kdc = Kdc {
            child,
            logon: KerberosLogon {
                realm: REALM.into(),
                krb5_conf,
                user: principal,
                password,
                url: None,
            },
            keytab,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let ended = kdc.child.try_wait()?.is_some();
            if ended || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(KdcError::NotListening { port, log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(kdc)
    }
}

/// The session key enctypes the lab's KDC (in `lab_dir`/kdc) issued for the WinRM service's
/// tickets so far, as its log names them (`aes256-cts-hmac-sha1-96`, `arcfour-hmac`), for tests
/// to see which cipher a logon really used.
pub fn service_session_enctypes(lab_dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(lab_dir.join("kdc").join("kdc.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("TGS_REQ") && l.contains(&format!(" for HTTP/{SERVICE_HOST}@")))
        .filter_map(|l| {
            let ses = l.split("ses=").nth(1)?;
            let name = ses.split('(').next()?;
            Some(name.trim_start_matches("DEPRECATED:").to_string())
        })
        .collect()
}

fn missing(tool: &'static str, e: std::io::Error) -> KdcError {
    KdcError::Missing {
        tool,
        cause: e.to_string(),
    }
}

/// Runs one setup tool with the realm's configuration, `stdin` typed at its prompts; its output
/// is the error when it fails.
fn run(
    tool: &'static str,
    args: &[&str],
    env: &[(&str, &PathBuf)],
    stdin: Option<&str>,
) -> Result<(), KdcError> {
    let mut child = Command::new(tool)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing(tool, e))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or_default().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(KdcError::Step {
        step: format!("{tool} {}", args.join(" ")),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// A port free on 127.0.0.1 for both TCP and UDP (the KDC listens on both).
fn free_port() -> std::io::Result<u16> {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

/// The clients' krb5.conf: the realm's KDC, host names taken as written (no DNS, no reverse DNS),
/// as MIT's documentation advises where DNS cannot be trusted. An RC4 realm also sets
/// `allow_rc4 = true`: MIT (1.21, and Debian 12's 1.20 with the CVE-2025-3576 fix) no longer
/// issues or accepts RC4 session keys without it (krb5.conf(5), [libdefaults] allow_rc4); the KDC
/// reads the same file.
fn krb5_conf_text(port: u16, enctypes: Enctypes) -> String {
    let rc4 = match enctypes {
        Enctypes::Rc4 => " allow_rc4 = true\n",
        Enctypes::Aes => "",
    };
    format!(
        "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n \
         dns_canonicalize_hostname = false\n rdns = false\n udp_preference_limit = 1\n{rc4}\n\
         [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\n\
         [domain_realm]\n {SERVICE_HOST} = {REALM}\n"
    )
}

fn kdc_conf_text(dir: &Path, port: u16, enctypes: Enctypes) -> String {
    let d = dir.display();
    let supported = enctypes.supported();
    format!(
        "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\n\
         [realms]\n {REALM} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n  \
         acl_file = {d}/kadm5.acl\n  kdc_ports = {port}\n  kdc_tcp_ports = {port}\n  \
         supported_enctypes = {supported}\n }}\n\n\
         [logging]\n kdc = FILE:{d}/kdc.log\n"
    )
}
