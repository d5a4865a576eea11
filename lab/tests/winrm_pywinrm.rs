//! The lab's WinRM listener driven by a client nobody here wrote: pywinrm from PyPI
//! (`winrm.Session(url, auth=(user, password), transport='ntlm')`, which logs on with NTLM through
//! requests-ntlm / pyspnego and, over plain HTTP, encrypts every message as MS-WSMV 2.2.9.1
//! describes). The test setup makes a virtual environment under the target folder once
//! (`python3 -m venv`, `pip install pywinrm[kerberos]`, whose pykerberos builds against MIT
//! Kerberos' headers: Debian libkrb5-dev) and reuses it; if it cannot, the tests FAIL and say what
//! is missing. The Kerberos test also needs the lab's KDC (Debian krb5-kdc, krb5-admin-server)
//! and `kinit` (krb5-user).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use upgrade_lab::kdc::Enctypes;
use upgrade_lab::tools::{self, ToolIo};
use upgrade_lab::{Flavour, Lab, RunningLab, StartOptions};

/// The pywinrm release the tests were written against, with its Kerberos extra (pykerberos).
const PYWINRM: &str = "pywinrm[kerberos]==0.5.0";

/// The IIFP lab's installed product (layout's `Flavour::Iifp.installed_product()`).
const OLD_PRODUCT_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}";

/// The client side: one scenario per run; the connection details (with the password) arrive as
/// JSON on stdin, never in argv; the result is one JSON line on stdout.
const CLIENT: &str = r#"
import base64, json, sys, time
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError

cfg = json.load(sys.stdin)
scenario = sys.argv[1]

def session(password=None, transport="ntlm", **kw):
    return winrm.Session(cfg["url"], auth=(cfg["user"], password or cfg["password"]), transport=transport, **kw)

def run(s, cmd, args):
    r = s.run_cmd(cmd, args)
    return {"exit": r.status_code, "stdout": base64.b64encode(r.std_out).decode(), "stderr": base64.b64encode(r.std_err).decode()}

out = {}
if scenario == "run":
    s = session(**cfg.get("session", {}))
    out["runs"] = [run(s, c["cmd"], c["args"]) for c in cfg["commands"]]
elif scenario == "ps":
    s = session()
    out["runs"] = []
    for script in cfg["scripts"]:
        r = s.run_ps(script)
        out["runs"].append({"exit": r.status_code, "stdout": base64.b64encode(r.std_out).decode(), "stderr": base64.b64encode(r.std_err).decode()})
elif scenario == "refusals":
    try:
        session(password=cfg["password"] + "x").run_cmd("sc", ["query", "miiserver"])
        out["wrong_password"] = "accepted"
    except InvalidCredentialsError as e:
        out["wrong_password"] = "InvalidCredentialsError: %s" % e
    try:
        session(message_encryption="never").run_cmd("sc", ["query", "miiserver"])
        out["unencrypted"] = "accepted"
    except WinRMTransportError as e:
        out["unencrypted"] = "WinRMTransportError %s" % e.code
elif scenario == "kerberos":
    # pywinrm's kerberos transport: the ticket cache kinit filled (KRB5CCNAME), the service
    # HTTP@<URL host>, Negotiate with a raw Kerberos token, mutual authentication, and over HTTP
    # every message encrypted with the Kerberos context.
    s = winrm.Session(cfg["kerberos"]["url"], auth=(cfg["kerberos"]["user"], None), transport="kerberos", message_encryption="always")
    out["runs"] = [run(s, c["cmd"], c["args"]) for c in cfg["commands"]]
elif scenario == "stdin":
    p = winrm.Protocol(cfg["url"], transport="ntlm", username=cfg["user"], password=cfg["password"])
    shell = p.open_shell()
    cmd = p.run_command(shell, cfg["command"], cfg["args"])
    p.send_command_input(shell, cmd, cfg["stdin"].encode(), end=True)
    so, se, code = p.get_command_output(shell, cmd)
    p.cleanup_command(shell, cmd)
    p.close_shell(shell)
    out = {"exit": code, "stdout": base64.b64encode(so).decode(), "stderr": base64.b64encode(se).decode()}
elif scenario == "no_shell":
    p = winrm.Protocol(cfg["url"], transport="ntlm", username=cfg["user"], password=cfg["password"])
    try:
        p.run_command("6F4A6C1B-0000-4000-8000-000000000000", "sc", ["query", "miiserver"])
        out["fault"] = "none"
    except WinRMError as e:
        out["fault"] = str(e)
elif scenario == "drop":
    p = winrm.Protocol(cfg["url"], transport="ntlm", username=cfg["user"], password=cfg["password"])
    shell = p.open_shell()
    cmd = p.run_command(shell, "sc", ["query", "miiserver"])
    try:
        p.get_command_output(shell, cmd)
        out["receive"] = "answered"
    except Exception as e:
        out["receive"] = type(e).__name__
elif scenario == "https":
    for transport in ["basic", "ntlm"]:
        s = winrm.Session(cfg["https_url"], auth=(cfg["user"], cfg["password"]), transport=transport, ca_trust_path=cfg["https_cert"])
        out[transport] = run(s, "sc", ["query", "miiserver"])
    try:
        session(transport="basic").run_cmd("sc", ["query", "miiserver"])
        out["basic_over_http"] = "accepted"
    except InvalidCredentialsError as e:
        out["basic_over_http"] = "InvalidCredentialsError"
elif scenario == "spnego":
    # pyspnego's Negotiate (SPNEGO around NTLM, mechListMIC both ways), as pypsrp and Windows'
    # own clients log on, then pywinrm's shell messages sealed by that context.
    import requests, spnego, struct
    ctx = spnego.client(cfg["user"], cfg["password"], hostname="127.0.0.1", service="HTTP", protocol="negotiate")
    http = requests.Session()
    token = ctx.step()
    out["first_token_is_spnego"] = token[:1] == b"\x60"
    for _ in range(3):
        r = http.post(cfg["url"], headers={"Authorization": "Negotiate " + base64.b64encode(token).decode()}, data=b"")
        header = r.headers.get("WWW-Authenticate", "")
        if header.startswith("Negotiate "):
            token = ctx.step(base64.b64decode(header.split(" ")[1]))
        if r.status_code != 401:
            break
    out["logon_status"] = r.status_code
    out["complete"] = ctx.complete
    boundary = b"--Encrypted Boundary"
    def send(msg):
        msg = msg.encode() if isinstance(msg, str) else msg
        w = ctx.wrap_winrm(msg)
        body = (boundary + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=%d\r\n" % len(msg)
                + boundary + b"\r\n\tContent-Type: application/octet-stream\r\n" + struct.pack("<i", len(w.header)) + w.header + w.data + boundary + b"--\r\n")
        r = http.post(cfg["url"], data=body, headers={"Content-Type": 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'})
        payload = r.content.split(boundary + b"\r\n")[2][len(b"\tContent-Type: application/octet-stream\r\n"):-len(boundary + b"--\r\n")]
        n = struct.unpack("<i", payload[:4])[0]
        plain = ctx.unwrap_winrm(payload[4:4 + n], payload[4 + n:])
        if r.status_code != 200:
            raise WinRMTransportError("http", r.status_code, plain.decode())
        return plain
    p = winrm.Protocol(cfg["url"], transport="ntlm", username=cfg["user"], password=cfg["password"])
    p.transport.send_message = send
    shell = p.open_shell()
    cmd = p.run_command(shell, "sc", ["query", "miiserver"])
    so, se, code = p.get_command_output(shell, cmd)
    p.cleanup_command(shell, cmd)
    p.close_shell(shell)
    out["run"] = {"exit": code, "stdout": base64.b64encode(so).decode(), "stderr": base64.b64encode(se).decode()}
print(json.dumps(out))
"#;

/// The venv's python with pywinrm importable, made once per target folder (and per test binary
/// run, under a lock).
fn venv_python() -> PathBuf {
    static MADE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = made.as_ref() {
        return p.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pywinrm-venv");
    let python = dir.join("bin").join("python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import winrm, kerberos"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable(&python) {
        let _ = std::fs::remove_dir_all(&dir);
        let venv = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .output();
        match venv {
            Err(e) => panic!("cannot run python3 ({e}): the pywinrm tests need Python 3 with the venv module (Debian: apt-get install python3 python3-venv)"),
            Ok(o) if !o.status.success() => panic!(
                "`python3 -m venv {}` failed: the pywinrm tests need Python 3's venv module with ensurepip (Debian: apt-get install python3-venv)\n{}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Ok(_) => {}
        }
        let pip = Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", PYWINRM])
            .output()
            .unwrap_or_else(|e| panic!("cannot run the venv's pip: {e}"));
        assert!(
            pip.status.success(),
            "`pip install {PYWINRM}` failed: the pywinrm tests need network access to PyPI once (the venv in {} is kept afterwards), and pykerberos builds with a C compiler against MIT Kerberos' headers (Debian: apt-get install libkrb5-dev)\n{}",
            dir.display(),
            String::from_utf8_lossy(&pip.stderr)
        );
        assert!(
            importable(&python),
            "pywinrm installed but `import winrm` fails in {}",
            python.display()
        );
    }
    *made = Some(python.clone());
    python
}

/// Runs the client's `scenario` with `cfg` (url, user, password added) against `lab`.
fn client(lab: &RunningLab, scenario: &str, cfg: Value) -> Value {
    client_with_env(lab, scenario, cfg, &[])
}

/// `client` with these environment variables (the Kerberos configuration and ticket cache).
fn client_with_env(
    lab: &RunningLab,
    scenario: &str,
    mut cfg: Value,
    env: &[(&str, &std::ffi::OsStr)],
) -> Value {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    cfg["url"] = json!(lab.winrm.url);
    cfg["user"] = json!(lab.winrm.user);
    cfg["password"] = json!(lab.winrm.password);
    cfg["https_url"] = json!(lab.winrm.https_url);
    cfg["https_cert"] = json!(lab.winrm.https_cert);
    let mut child = Command::new(python)
        .arg(&script)
        .arg(scenario)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pywinrm client ({scenario}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn start(faults: &[&str]) -> (tempfile::TempDir, RunningLab) {
    start_with(StartOptions {
        faults: Some(faults.iter().map(|f| f.to_string()).collect()),
        ..StartOptions::default()
    })
}

fn start_with(opts: StartOptions) -> (tempfile::TempDir, RunningLab) {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::init(&tmp.path().join("lab"), Flavour::Iifp).unwrap();
    let running = lab.start(opts).unwrap();
    (tmp, running)
}

/// What the stand-in prints when run locally: (exit, stdout, stderr).
fn local(lab: &RunningLab, tool: &str, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut stdin = std::io::empty();
    let mut io = ToolIo {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let code = tools::run(lab.dir(), tool, &args, &mut io);
    (code, stdout, stderr)
}

fn bytes(v: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[test]
fn pywinrm_reads_the_labs_reg_and_sc_over_ntlm_with_message_encryption() {
    let (_tmp, lab) = start(&[]);
    let out = client(
        &lab,
        "run",
        json!({"commands": [
            {"cmd": "reg", "args": ["query", OLD_PRODUCT_KEY]},
            {"cmd": "sc", "args": ["query", "miiserver"]},
        ]}),
    );
    let runs = out["runs"].as_array().unwrap();
    let (code, stdout, stderr) = local(&lab, "reg", &["query", OLD_PRODUCT_KEY]);
    assert_eq!(runs[0]["exit"], json!(code));
    assert_eq!(bytes(&runs[0]["stdout"]), stdout);
    assert_eq!(bytes(&runs[0]["stderr"]), stderr);
    let text = String::from_utf8(stdout).unwrap();
    assert!(
        text.contains("DisplayName\tREG_SZ\tIdentity Integration Feature Pack\r\n"),
        "{text}"
    );

    let (code, stdout, _) = local(&lab, "sc", &["query", "miiserver"]);
    assert_eq!((runs[1]["exit"].clone(), code), (json!(0), 0));
    assert_eq!(bytes(&runs[1]["stdout"]), stdout);
    assert!(String::from_utf8(stdout)
        .unwrap()
        .contains("STATE              : 4  RUNNING"));

    // The remote runs are in argv.log like the local ones (two of each).
    let log = tools::read_argv_log(lab.dir()).unwrap();
    let count = |tool: &str| log.iter().filter(|r| r.tool == tool).count();
    assert_eq!((count("reg"), count("sc")), (2, 2));
}

/// `kinit PRINCIPAL` into a new ticket cache in `dir`, the password on stdin (as a user types it).
fn kinit(krb5_conf: &Path, principal: &str, password: &str, dir: &Path) -> PathBuf {
    let cache = dir.join("ccache");
    let mut child = Command::new("kinit")
        .arg(principal)
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", format!("FILE:{}", cache.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run kinit ({e}): the Kerberos tests need MIT Kerberos' kinit (Debian: apt-get install krb5-user)")
        });
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kinit {principal} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cache
}

#[test]
fn pywinrm_reads_the_labs_reg_over_kerberos_aes_with_a_kinit_ticket_and_message_encryption() {
    pywinrm_reads_reg_over_kerberos(Enctypes::Aes, "aes256-cts-hmac-sha1-96");
}

/// RC4-HMAC, a Windows Server 2003 realm's one enctype: pyspnego's wrap_winrm with the padding
/// buffer RFC 4757 tokens have.
#[test]
fn pywinrm_reads_the_labs_reg_over_kerberos_rc4_with_a_kinit_ticket_and_message_encryption() {
    pywinrm_reads_reg_over_kerberos(Enctypes::Rc4, "arcfour-hmac");
}

fn pywinrm_reads_reg_over_kerberos(enctypes: Enctypes, session_key: &str) {
    let (_tmp, lab) = start_with(StartOptions {
        kerberos: Some(enctypes),
        ..StartOptions::default()
    });
    let krb = lab.kerberos.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = kinit(&krb.krb5_conf, &krb.user, &krb.password, dir.path());
    let ccname = format!("FILE:{}", cache.display());
    let env = [
        ("KRB5_CONFIG", krb.krb5_conf.as_os_str()),
        ("KRB5CCNAME", std::ffi::OsStr::new(&ccname)),
    ];
    let out = client_with_env(
        &lab,
        "kerberos",
        json!({
            "kerberos": krb,
            "commands": [{"cmd": "reg", "args": ["query", OLD_PRODUCT_KEY]}],
        }),
        &env,
    );
    let run = &out["runs"][0];
    let (code, stdout, stderr) = local(&lab, "reg", &["query", OLD_PRODUCT_KEY]);
    assert_eq!(run["exit"], json!(code), "{out}");
    assert_eq!(bytes(&run["stdout"]), stdout);
    assert_eq!(bytes(&run["stderr"]), stderr);
    assert!(String::from_utf8(stdout)
        .unwrap()
        .contains("DisplayName\tREG_SZ\tIdentity Integration Feature Pack\r\n"));
    let log = tools::read_argv_log(lab.dir()).unwrap();
    assert_eq!(log.iter().filter(|r| r.tool == "reg").count(), 2);
    assert_eq!(
        upgrade_lab::kdc::service_session_enctypes(lab.dir()),
        [session_key]
    );
}

#[test]
fn a_wrong_password_gets_401_and_a_plain_soap_body_after_logon_gets_500() {
    let (_tmp, lab) = start(&[]);
    let out = client(&lab, "refusals", json!({}));
    assert!(
        out["wrong_password"]
            .as_str()
            .unwrap()
            .starts_with("InvalidCredentialsError"),
        "{out}"
    );
    assert_eq!(
        out["unencrypted"],
        json!("WinRMTransportError 500"),
        "{out}"
    );
    // Neither ran anything.
    assert!(tools::read_argv_log(lab.dir()).unwrap().is_empty());
}

#[test]
fn miiskmu_reads_its_password_from_the_shells_stdin_and_the_password_is_in_no_argv() {
    let (_tmp, lab) = start(&[]);
    let account = lab.lab().state().unwrap().account;
    let out = client(
        &lab,
        "stdin",
        json!({
            "command": r#""C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe""#,
            "args": ["/e", r"D:\Upgrade\keys.bin", format!(r"/u:{}\{}", account.domain, account.user), "*", "/q"],
            "stdin": format!("{}\r\n", account.password),
        }),
    );
    assert_eq!(out["exit"], json!(0), "{out}");
    assert!(lab.lab_path(r"D:\Upgrade\keys.bin").is_file());
    let log = std::fs::read_to_string(lab.dir().join("argv.log")).unwrap();
    assert!(log.contains("\"miiskmu\""), "{log}");
    assert!(!log.contains(&account.password), "{log}");
}

#[test]
fn an_exit_code_above_255_arrives_whole_and_an_unknown_program_gets_cmd_exe_s_answer() {
    let (_tmp, lab) = start(&[]);
    let out = client(
        &lab,
        "run",
        json!({"commands": [
            {"cmd": "msiexec", "args": ["/x", "{00000000-0000-0000-0000-000000000000}", "/qn"]},
            {"cmd": "ipconfig", "args": ["/all"]},
        ]}),
    );
    let runs = out["runs"].as_array().unwrap();
    assert_eq!(runs[0]["exit"], json!(1605), "{out}");
    assert_eq!(runs[1]["exit"], json!(1));
    assert_eq!(
        String::from_utf8(bytes(&runs[1]["stderr"])).unwrap(),
        "'ipconfig' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
    );
}

#[test]
fn an_unknown_shell_id_gets_windows_shell_not_found_fault() {
    let (_tmp, lab) = start(&[]);
    let out = client(&lab, "no_shell", json!({}));
    let fault = out["fault"].as_str().unwrap();
    assert!(
        fault.contains("the shell was not found on the server"),
        "{fault}"
    );
    assert!(fault.contains("'wsmanfault_code': 2150858843"), "{fault}");
    assert!(
        fault.contains("'fault_subcode': 'w:InvalidSelectors'"),
        "{fault}"
    );
    assert!(fault.contains("'http_status_code': 500"), "{fault}");
}

#[test]
fn winrm_drop_cuts_the_connection_during_a_receive_while_the_command_still_runs() {
    let (_tmp, lab) = start(&["winrm-drop=1"]);
    let out = client(&lab, "drop", json!({}));
    assert_eq!(out["receive"], json!("ConnectionError"), "{out}");
    // The command was not stopped by the drop: it ran to its end on the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tools::read_argv_log(lab.dir()).unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = tools::read_argv_log(lab.dir()).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].tool.as_str(), log[0].exit), ("sc", 0));
}

#[test]
fn winrm_slow_delays_every_shell_response() {
    let (_tmp, lab) = start(&["winrm-slow=400"]);
    let started = Instant::now();
    client(
        &lab,
        "run",
        json!({"commands": [{"cmd": "sc", "args": ["query", "miiserver"]}]}),
    );
    // run_cmd is five shell operations (Create, Command, Receive, Signal, Delete): 2 s at least.
    assert!(
        started.elapsed() >= Duration::from_millis(5 * 400),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_https_listener_takes_basic_and_ntlm_with_its_certificate_trusted_and_http_refuses_basic() {
    let (_tmp, lab) = start_with(StartOptions {
        winrm_https: true,
        ..StartOptions::default()
    });
    assert!(lab
        .winrm
        .https_url
        .as_deref()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    let out = client(&lab, "https", json!({}));
    let (_, stdout, _) = local(&lab, "sc", &["query", "miiserver"]);
    for transport in ["basic", "ntlm"] {
        assert_eq!(out[transport]["exit"], json!(0), "{out}");
        assert_eq!(bytes(&out[transport]["stdout"]), stdout, "{transport}");
    }
    assert_eq!(
        out["basic_over_http"],
        json!("InvalidCredentialsError"),
        "{out}"
    );
}

#[test]
fn a_receive_with_no_output_within_operation_timeout_gets_timed_out_and_the_client_receives_again()
{
    // The stand-in is silent for 2.5 s; the client waits 1 s per Receive and gives up on a
    // request after 2 s, so only the w:TimedOut fault (pywinrm then receives again) gets it
    // through.
    let (_tmp, lab) = start(&["slow-tools=2500"]);
    let out = client(
        &lab,
        "run",
        json!({
            "session": {"operation_timeout_sec": 1, "read_timeout_sec": 2},
            "commands": [{"cmd": "sc", "args": ["query", "miiserver"]}],
        }),
    );
    let (_, stdout, _) = local(&lab, "sc", &["query", "miiserver"]);
    assert_eq!(out["runs"][0]["exit"], json!(0), "{out}");
    assert_eq!(bytes(&out["runs"][0]["stdout"]), stdout);
}

#[test]
fn a_spnego_wrapped_ntlm_logon_as_pyspnego_negotiate_sends_it_is_taken_and_its_session_seals() {
    let (_tmp, lab) = start(&[]);
    let out = client(&lab, "spnego", json!({}));
    assert_eq!(out["first_token_is_spnego"], json!(true), "{out}");
    assert_eq!(out["logon_status"], json!(200), "{out}");
    // The client completes only with the server's final token and its mechListMIC verified.
    assert_eq!(out["complete"], json!(true), "{out}");
    let (_, stdout, _) = local(&lab, "sc", &["query", "miiserver"]);
    assert_eq!(out["run"]["exit"], json!(0), "{out}");
    assert_eq!(bytes(&out["run"]["stdout"]), stdout);
}

/// A PowerShell single-quoted string literal of `s`.
fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The Extensions folder of the IIFP lab, with a subfolder, a 200 kB file of varied bytes and a
/// file whose name is not ASCII added.
const EXTENSIONS: &str = r"C:\Program Files\Microsoft Identity Integration Server\Extensions";

fn extensions_with_more_files(lab: &RunningLab) -> PathBuf {
    let dir = lab.lab_path(EXTENSIONS);
    std::fs::create_dir_all(dir.join("Sub dir")).unwrap();
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("Sub dir").join("big.bin"), big).unwrap();
    std::fs::write(dir.join("Ünïcode O'Brien.dll"), b"named").unwrap();
    dir
}

/// Runs each script with pywinrm's `run_ps` (powershell -encodedcommand, UTF-16LE base64):
/// (exit, stdout, stderr) per script.
fn run_ps(lab: &RunningLab, scripts: &[String]) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let out = client(lab, "ps", json!({ "scripts": scripts }));
    out["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["exit"].as_i64().unwrap(),
                bytes(&r["stdout"]),
                bytes(&r["stderr"]),
            )
        })
        .collect()
}

#[test]
fn a_powershell_script_over_winrm_hashes_streams_and_lists_lab_files_as_sha256sum_and_find_see_them(
) {
    let (_tmp, lab) = start(&[]);
    let dir = extensions_with_more_files(&lab);
    let big = format!(r"{EXTENSIONS}\Sub dir\big.bin");
    let hash = format!(
        "$ErrorActionPreference = 'Stop'
$s = [System.IO.File]::OpenRead({})
try {{
    $h = [System.Security.Cryptography.SHA256]::Create()
    [System.BitConverter]::ToString($h.ComputeHash($s)).Replace('-', '').ToLowerInvariant()
}} finally {{
    $s.Close()
}}",
        ps_quote(&big)
    );
    let stream = format!(
        "$ErrorActionPreference = 'Stop'
$s = [System.IO.File]::OpenRead({})
try {{
    $buf = New-Object byte[] 49152
    while ($true) {{
        $n = $s.Read($buf, 0, $buf.Length)
        if ($n -eq 0) {{ break }}
        [System.Convert]::ToBase64String($buf, 0, $n)
    }}
}} finally {{
    $s.Close()
}}",
        ps_quote(&big)
    );
    let list = format!(
        "$ErrorActionPreference = 'Stop'
foreach ($f in Get-ChildItem -LiteralPath {} -Recurse -Force) {{
    $name = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($f.FullName))
    if ($f.PSIsContainer) {{ 'd ' + $name }} else {{ 'f ' + $name + ' ' + $f.Length }}
}}",
        ps_quote(EXTENSIONS)
    );
    let runs = run_ps(&lab, &[hash, stream, list]);
    for (exit, _, stderr) in &runs {
        assert_eq!(*exit, 0, "{}", String::from_utf8_lossy(stderr));
    }

    // The hash is sha256sum's.
    let file = dir.join("Sub dir").join("big.bin");
    let sum = Command::new("sha256sum").arg(&file).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    assert_eq!(
        String::from_utf8(runs[0].1.clone()).unwrap(),
        format!("{sum}\r\n")
    );

    // The chunks, each a line, decode to the file's bytes.
    use base64::Engine;
    let text = String::from_utf8(runs[1].1.clone()).unwrap();
    let chunks: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(chunks.len(), 5, "200,000 bytes in 49,152-byte chunks");
    let mut decoded = Vec::new();
    for c in chunks {
        decoded.extend(base64::engine::general_purpose::STANDARD.decode(c).unwrap());
    }
    assert_eq!(decoded, std::fs::read(&file).unwrap());

    // The listing names what find finds, as Windows paths, files with their sizes.
    let found = Command::new("find")
        .arg(&dir)
        .args(["-mindepth", "1"])
        .output()
        .unwrap();
    let mut expected: Vec<String> = String::from_utf8(found.stdout)
        .unwrap()
        .lines()
        .map(|p| {
            let path = Path::new(p);
            let rel = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('/', "\\");
            let win = format!(r"{EXTENSIONS}\{rel}");
            match std::fs::metadata(path).unwrap() {
                m if m.is_dir() => format!("d {win}"),
                m => format!("f {win} {}", m.len()),
            }
        })
        .collect();
    let mut listed: Vec<String> = String::from_utf8(runs[2].1.clone())
        .unwrap()
        .split_terminator("\r\n")
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = base64::engine::general_purpose::STANDARD
                .decode(parts.next().unwrap())
                .unwrap();
            let name = String::from_utf8(name).unwrap();
            match parts.next() {
                Some(len) => format!("{kind} {name} {len}"),
                None => format!("{kind} {name}"),
            }
        })
        .collect();
    expected.sort();
    listed.sort();
    assert!(
        listed.iter().any(|l| l.contains("Ünïcode O'Brien.dll")),
        "{listed:?}"
    );
    assert_eq!(listed, expected);

    // Each script ran as powershell, recorded like any stand-in.
    let log = tools::read_argv_log(lab.dir()).unwrap();
    assert_eq!(log.iter().filter(|r| r.tool == "powershell").count(), 3);
}

#[test]
fn over_winrm_a_missing_item_is_caught_as_item_not_found_and_an_uncaught_one_exits_1() {
    let (_tmp, lab) = start(&[]);
    let missing = ps_quote(r"C:\Program Files\Nothing Here");
    let caught = format!(
        "$ErrorActionPreference = 'Stop'
try {{
    $i = Get-Item -LiteralPath {missing} -Force
    'found'
}} catch [System.Management.Automation.ItemNotFoundException] {{
    'missing'
}}"
    );
    let uncaught =
        format!("$ErrorActionPreference = 'Stop'\nGet-Item -LiteralPath {missing} -Force\n'after'");
    let expandable = "$p = \"C:\\Windows\"".to_string();
    let runs = run_ps(&lab, &[caught, uncaught, expandable]);
    assert_eq!(
        (runs[0].0, runs[0].1.as_slice()),
        (0, b"missing\r\n".as_slice()),
        "{}",
        String::from_utf8_lossy(&runs[0].2)
    );
    assert_eq!((runs[1].0, runs[1].1.as_slice()), (1, b"".as_slice()));
    assert_eq!(
        String::from_utf8(runs[1].2.clone()).unwrap(),
        "Get-Item : Cannot find path 'C:\\Program Files\\Nothing Here' because it does not exist.\r\nAt line:2 char:1\r\n"
    );
    assert_eq!(runs[2].0, 1);
    assert!(
        String::from_utf8_lossy(&runs[2].2).contains("does not implement double-quoted strings")
    );
}

#[cfg(unix)]
#[test]
fn icacls_over_winrm_makes_a_key_file_owner_only_as_the_remote_host_runs_it() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, lab) = start(&[]);
    let key = lab.lab_path(r"D:\Upgrade\keys.bin");
    std::fs::write(&key, b"key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = client(
        &lab,
        "run",
        json!({"commands": [
            {"cmd": "icacls.exe", "args": [r#""D:\Upgrade\keys.bin""#, "/inheritance:r", "/grant:r", r#""LAB\svc-sync:F""#]},
            {"cmd": "icacls", "args": [r"D:\Upgrade\none.bin", "/inheritance:r", "/grant:r", "x:F"]},
        ]}),
    );
    let runs = out["runs"].as_array().unwrap();
    assert_eq!(runs[0]["exit"], json!(0), "{out}");
    assert_eq!(
        String::from_utf8(bytes(&runs[0]["stdout"])).unwrap(),
        "processed file: D:\\Upgrade\\keys.bin\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(runs[1]["exit"], json!(2), "{out}");
}
