//! The executor's WinRM client logging on with Kerberos to the lab's listener (TEST DOUBLE: a
//! Kerberos acceptor with a keytab, as a domain member's WinRM service, and a real MIT KDC the lab
//! starts: `StartOptions::kerberos`), with the password and with the ticket cache of the person
//! running it. Needs MIT Kerberos (Debian krb5-kdc, krb5-admin-server, krb5-user); without it the
//! tests FAIL naming the packages.
//!
//! MIT Kerberos reads its configuration (`KRB5_CONFIG`) and ticket cache (`KRB5CCNAME`) from the
//! environment of the process, and each lab has a KDC of its own: the tests here take turns (one
//! lock), each setting the environment for its own lab. They live in their own test binary so
//! that no other test runs Kerberos code beside them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use upgrade::adapters::secrets::SecretString;
use upgrade::adapters::winrm::{
    Auth, ConnectOptions, RemoteCommand, Stdin, WinrmClient, WinrmError,
};
use upgrade_lab::kdc::{Enctypes, KerberosLogon};
use upgrade_lab::{Flavour, Lab, RunningLab, StartOptions};

mod common;

/// One Kerberos lab at a time in this process (see the module comment).
static TURN: Mutex<()> = Mutex::new(());

/// Fields drop in order: the lab (and its KDC) before the folder they live in.
struct KerberosLab {
    lab: RunningLab,
    krb: KerberosLogon,
    tmp: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// A lab with its KDC, and this process' Kerberos configuration pointing at it (no ticket cache
/// unless a test makes one).
fn kerberos_lab() -> KerberosLab {
    kerberos_lab_with(Enctypes::Aes)
}

/// The same with a realm of these enctypes.
fn kerberos_lab_with(enctypes: Enctypes) -> KerberosLab {
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::init(&tmp.path().join("lab"), Flavour::Iifp).unwrap();
    let lab = lab
        .start(StartOptions {
            kerberos: Some(enctypes),
            ..StartOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let krb = lab.kerberos.clone().unwrap();
    std::env::set_var("KRB5_CONFIG", &krb.krb5_conf);
    // An empty cache of this test's own until a test runs kinit.
    std::env::set_var(
        "KRB5CCNAME",
        format!("FILE:{}", tmp.path().join("no-ccache").display()),
    );
    KerberosLab {
        lab,
        krb,
        tmp,
        _turn: turn,
    }
}

impl KerberosLab {
    fn options(&self, password: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            endpoint: self.krb.url.clone().unwrap(),
            auth: Auth::Kerberos,
            user: self.krb.user.clone(),
            password: password.map(SecretString::new),
            https: false,
            ca: None,
            operation_timeout: Duration::from_secs(20),
        }
    }
}

fn command(program: &str, args: &[&str]) -> RemoteCommand {
    RemoteCommand {
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        timeout: Duration::from_secs(60),
    }
}

/// `kinit` into a ticket cache in `dir`, the password typed on stdin; the cache's name.
fn kinit(krb: &KerberosLogon, dir: &Path) -> PathBuf {
    let cache = dir.join("ccache");
    let mut child = Command::new("kinit")
        .arg(&krb.user)
        .env("KRB5CCNAME", format!("FILE:{}", cache.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kinit ({e}): install MIT Kerberos' kinit (Debian: apt-get install krb5-user)"));
    writeln!(child.stdin.take().unwrap(), "{}", krb.password).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kinit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cache
}

#[tokio::test]
async fn a_command_runs_over_kerberos_aes_with_the_password_and_every_message_encrypted() {
    two_commands_run_over(Enctypes::Aes, "aes256-cts-hmac-sha1-96").await;
}

/// A Windows Server 2003 server's ticket and session key are RC4-HMAC (its only enctype): the
/// wrap tokens are RFC 4757's, with a padding buffer the client sends after its data and the
/// server's answers carry past their Length.
#[tokio::test]
async fn a_command_runs_over_kerberos_rc4_as_with_a_2003_server_and_every_message_encrypted() {
    two_commands_run_over(Enctypes::Rc4, "arcfour-hmac").await;
}

/// Two commands on one logon, in a realm of `enctypes`, whose session key was `session_key`.
async fn two_commands_run_over(enctypes: Enctypes, session_key: &str) {
    let k = kerberos_lab_with(enctypes);
    let client = WinrmClient::connect(k.options(Some(&k.krb.password)))
        .await
        .unwrap();
    let out = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("STATE              : 4  RUNNING"));
    // A second command on the same logon (the context's sequence numbers stay in step).
    let out = client
        .run(&command(
            "reg",
            &[
                "query",
                r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
                "/s",
            ],
        ))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Identity Integration Feature Pack"));
    let log = upgrade_lab::tools::read_argv_log(k.lab.dir()).unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        upgrade_lab::kdc::service_session_enctypes(k.lab.dir()),
        [session_key],
        "the session key of the WinRM service's ticket"
    );
}

#[tokio::test]
async fn without_a_password_the_ticket_cache_from_kinit_logs_on_and_an_empty_cache_says_run_kinit()
{
    let k = kerberos_lab();
    let err = WinrmClient::connect(k.options(None)).await.unwrap_err();
    assert!(matches!(err, WinrmError::Kerberos { .. }), "{err:?}");
    assert!(err.to_string().contains("kinit admin@LAB.TEST"), "{err}");

    let cache = kinit(&k.krb, k.tmp.path());
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", cache.display()));
    let client = WinrmClient::connect(k.options(None)).await.unwrap();
    let out = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_kerberos_error_and_nothing_runs() {
    let k = kerberos_lab();
    let err = WinrmClient::connect(k.options(Some("not-the-password")))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WinrmError::Kerberos { .. }), "{err:?}");
    assert!(
        text.contains("admin@LAB.TEST") && text.contains("a wrong password"),
        "{text}"
    );
    assert!(upgrade_lab::tools::read_argv_log(k.lab.dir())
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn neither_the_kerberos_password_nor_a_stdin_secret_appears_in_any_log_line_at_trace() {
    use base64::Engine;
    let k = kerberos_lab();
    let (captured, _guard) = common::Captured::start();
    let canary = "Canary-4b1d-kerberos-stdin";
    let mut cmd = command(
        r"C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe",
        &["/e", r"D:\Upgrade\c.bin", "/u:nobody", "*", "/q"],
    );
    cmd.stdin = Some(Stdin::new(format!("{canary}\r\n").into_bytes()));
    let client = WinrmClient::connect(k.options(Some(&k.krb.password)))
        .await
        .unwrap();
    let out = client.run(&cmd).await.unwrap();
    assert_eq!(out.exit_code, 1, "the account is wrong on purpose");
    let _ = WinrmClient::connect(k.options(Some("Canary-wrong-kerberos-password")))
        .await
        .unwrap_err();

    let logs = captured.text();
    assert!(
        logs.contains("TRACE"),
        "nothing was logged at TRACE:\n{logs}"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [canary, &k.krb.password, "Canary-wrong-kerberos-password"] {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
        let encoded = b64.encode(format!("{secret}\r\n"));
        assert!(
            !logs.contains(&encoded[..16]),
            "a secret's base64 is in the logs:\n{logs}"
        );
    }
}

/// Connects with the password to a listener under the lab fault `fault` and runs `sc query`;
/// the error, and whether the command ran on the server.
async fn under_fault(fault: &str) -> (WinrmError, bool) {
    let k = kerberos_lab();
    k.lab.lab().set_faults(&[fault]).unwrap();
    let result = match WinrmClient::connect(k.options(Some(&k.krb.password))).await {
        Ok(client) => client.run(&command("sc", &["query", "miiserver"])).await,
        Err(e) => Err(e),
    };
    let ran = !upgrade_lab::tools::read_argv_log(k.lab.dir())
        .unwrap()
        .is_empty();
    (result.unwrap_err(), ran)
}

#[tokio::test]
async fn a_logon_answered_200_without_an_ap_rep_is_refused_as_no_mutual_authentication() {
    let (err, ran) = under_fault("kerberos-no-ap-rep").await;
    assert!(matches!(err, WinrmError::Kerberos { .. }), "{err:?}");
    assert!(err.to_string().contains("mutual authentication"), "{err}");
    assert!(!ran);
}

#[tokio::test]
async fn a_logon_answered_with_bytes_that_are_not_the_ap_rep_is_refused() {
    let (err, ran) = under_fault("kerberos-bad-ap-rep").await;
    assert!(matches!(err, WinrmError::Kerberos { .. }), "{err:?}");
    assert!(!ran);
}

/// After a Kerberos logon over HTTP an answer must come encrypted: a plain SOAP answer (what a
/// path stripping the protection would deliver) is not taken, though the command did run.
#[tokio::test]
async fn a_plain_soap_answer_after_a_kerberos_logon_over_http_is_refused() {
    let (err, _) = under_fault("kerberos-plain-answer").await;
    let text = err.to_string();
    assert!(
        text.contains("without message encryption") && text.contains("Kerberos"),
        "{text}"
    );
}

/// An answer wrapped with integrity only (conf_state 0) verifies but was readable on the wire:
/// refused.
#[tokio::test]
async fn an_answer_signed_but_not_encrypted_is_refused() {
    let (err, _) = under_fault("kerberos-sign-only").await;
    assert!(err.to_string().contains("was not encrypted"), "{err}");
}

/// A server whose key for HTTP/host is not the realm's answers 401 with a KRB-ERROR; the error
/// gives MIT's own reason for it besides what to check (clocks, setspn, Kerberos=false).
#[tokio::test]
async fn a_refused_logon_names_the_servers_own_reason_from_its_krb_error() {
    let (err, ran) = under_fault("kerberos-stale-key").await;
    assert!(matches!(err, WinrmError::KerberosRefused { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("(HTTP 401): the logon: "), "{text}");
    assert!(text.to_lowercase().contains("key"), "{text}");
    assert!(
        text.contains("more than 5 minutes apart") && text.contains("Kerberos=false"),
        "{text}"
    );
    assert!(!ran);
}

/// A 401 after the Kerberos logon succeeded is an expired session, not a wrong password (which
/// the logon would have met) nor a DOMAIN\user hint (which kerberos refuses).
#[tokio::test]
async fn a_401_after_the_kerberos_logon_says_the_session_expired_and_to_log_on_again() {
    let (err, ran) = under_fault("kerberos-expired").await;
    assert!(matches!(err, WinrmError::KerberosExpired { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("expired") && !text.contains("wrong user name or password"),
        "{text}"
    );
    assert!(!ran);
}
