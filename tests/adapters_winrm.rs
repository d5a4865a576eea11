//! The executor's WinRM client against the lab's WinRM listener (TEST DOUBLE: NTLMv2 with message
//! encryption over HTTP, as Windows' default listener, serving the cmd shell over the lab's
//! stand-ins). What a remote host relies on: the same output as the tools run locally, stdin that
//! reaches the program, full exit codes, errors a user can act on, and "may still be running"
//! whenever the outcome of a command is unknown.

mod common;

use std::time::Duration;

use common::{Captured, Driver, Rig};
use upgrade::adapters::secrets::SecretString;
use upgrade::adapters::winrm::{
    Auth, ConnectOptions, Interruption, RemoteCommand, RemoteOutput, Stdin, WinrmClient, WinrmError,
};

fn options(rig: &Rig) -> ConnectOptions {
    let w = &rig.lab.winrm;
    ConnectOptions {
        endpoint: w.url.clone(),
        auth: Auth::Ntlm,
        user: w.user.clone(),
        password: Some(SecretString::new(w.password.clone())),
        https: false,
        ca: None,
        operation_timeout: Duration::from_secs(20),
    }
}

/// Options for an endpoint that is not the lab's (plain HTTP).
fn options_at(endpoint: String, auth: Auth) -> ConnectOptions {
    ConnectOptions {
        endpoint,
        auth,
        user: "Administrator".into(),
        password: Some(SecretString::new("pw")),
        https: false,
        ca: None,
        operation_timeout: Duration::from_secs(5),
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

async fn run(rig: &Rig, cmd: &RemoteCommand) -> Result<RemoteOutput, WinrmError> {
    WinrmClient::connect(options(rig)).await?.run(cmd).await
}

/// The stand-in run here, as the local host runs it.
fn local(rig: &Rig, tool: &str, args: &[&str]) -> std::process::Output {
    let tools = rig.lab.ready().unwrap().tools;
    let path = match tool {
        "reg" => tools.reg,
        "sc" => tools.sc,
        other => panic!("no local stand-in {other}"),
    };
    std::process::Command::new(path)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn reg_query_and_sc_query_over_winrm_print_what_the_tools_print_locally() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    for (tool, args) in [
        (
            "reg",
            &[
                "query",
                r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
                "/s",
            ][..],
        ),
        ("sc", &["query", "miiserver"][..]),
    ] {
        let remote = client.run(&command(tool, args)).await.unwrap();
        let here = local(&rig, tool, args);
        assert_eq!(
            String::from_utf8_lossy(&remote.stdout),
            String::from_utf8_lossy(&here.stdout),
            "{tool} {args:?}"
        );
        assert!(!remote.stdout.is_empty());
        assert_eq!(remote.exit_code, 0);
        assert_eq!(Some(0), here.status.code());
    }
    // A key that does not exist: the same message and a failing exit code on both sides.
    let args = ["query", r"HKLM\SOFTWARE\No Such Key"];
    let remote = client.run(&command("reg", &args)).await.unwrap();
    let here = local(&rig, "reg", &args);
    assert_eq!(remote.stderr, here.stderr);
    assert_eq!(Some(remote.exit_code as i32), here.status.code());
    assert_ne!(remote.exit_code, 0);
}

#[tokio::test]
async fn stdin_reaches_the_program_and_never_its_command_line() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let st = rig.lab.lab().state().unwrap();
    let account = format!("{}\\{}", st.account.domain, st.account.user);
    let miiskmu = r"C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe";
    let user_arg = format!("/u:{account}");
    let mut cmd = command(
        miiskmu,
        &["/e", r"D:\Upgrade\keys.bin", &user_arg, "*", "/q"],
    );
    cmd.stdin = Some(Stdin::new(
        format!("{}\r\n", st.account.password).into_bytes(),
    ));
    let out = run(&rig, &cmd).await.unwrap();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(rig.path(r"D:\Upgrade\keys.bin").exists());
    let argv = rig.argv_log();
    assert!(
        argv.contains("miiskmu"),
        "no record of the key tool:\n{argv}"
    );
    assert!(!argv.contains(&st.account.password), "{argv}");

    // Without stdin the tool is told nothing: the password read finds end of input.
    cmd.stdin = Some(Stdin::new(Vec::new()));
    let out = run(&rig, &cmd).await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("No password was entered"));
}

#[tokio::test]
async fn an_installer_exit_code_of_1605_arrives_as_1605() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let out = run(
        &rig,
        &command(
            "msiexec",
            &["/x", "{00000000-0000-0000-0000-000000000000}", "/qn"],
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, 1605);
}

#[tokio::test]
async fn a_wrong_password_is_the_401_error_that_says_so() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let mut opts = options(&rig);
    opts.password = Some(SecretString::new("not-the-password"));
    let err = WinrmClient::connect(opts).await.unwrap_err();
    assert!(matches!(err, WinrmError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("wrong user name or password"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
}

#[tokio::test]
async fn nothing_listening_is_explained_with_winrm_quickconfig() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let opts = options_at(format!("127.0.0.1:{port}"), Auth::Ntlm);
    let err = WinrmClient::connect(opts).await.unwrap_err();
    assert!(matches!(err, WinrmError::NotListening { .. }), "{err:?}");
    assert!(err.to_string().contains("winrm quickconfig"), "{err}");
}

#[tokio::test]
async fn basic_over_plain_http_is_refused_before_any_connection_is_made() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = options_at(format!("http://127.0.0.1:{port}/wsman"), Auth::Basic);
    let err = WinrmClient::connect(opts).await.unwrap_err();
    assert!(matches!(err, WinrmError::BasicOverHttp), "{err:?}");
    assert!(err.to_string().contains("AllowUnencrypted"), "{err}");
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "the client connected: {accepted:?}");
}

fn service_running(rig: &Rig) -> bool {
    let st = rig.lab.lab().state().unwrap();
    st.services.iter().any(|s| s.running)
}

/// A connection dropped while receiving: the client logs on again and goes on receiving from
/// the same command, which gives its real exit code. A Receive was sent whose answer never
/// arrived, so the output is not whole as far as the client can tell: the outcome says so
/// (`OutputLost`) instead of passing off what arrived as all of it. The command ran once, and the
/// next run works.
#[tokio::test]
async fn a_connection_dropped_while_receiving_is_resumed_and_the_real_exit_code_arrives_with_the_output_marked_lost(
) {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    rig.faults(&["winrm-drop=1"]);
    let err = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WinrmError::OutputLost {
                exit_code: 0,
                lost_answers: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let out = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("RUNNING"));
    assert_eq!(rig.argv_log().lines().count(), 2, "a command ran twice");
}

/// The server took the command's whole output into an answer and the connection dropped before
/// it arrived: resumed, the command reports Done with nothing more. Before this was caught, that
/// ended as success with an empty stdout.
#[tokio::test]
async fn an_answer_lost_in_transit_is_never_an_empty_output() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    rig.faults(&["winrm-drop-answered=1"]);
    let err = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .expect_err("the output was lost, not empty");
    assert!(
        matches!(err, WinrmError::OutputLost { exit_code: 0, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("its output is incomplete"),
        "{err}"
    );
    assert_eq!(rig.argv_log().lines().count(), 1, "sc ran twice");
}

/// An uninstall still running when the connection drops must not be ended by the client: on a
/// real server deleting its shell would kill it half-way ([MS-WSMV] 3.1.4.4.1; the lab ends a
/// sleeping stand-in on Delete likewise). The client resumes, and the uninstall finishes once,
/// with its exit code.
#[tokio::test]
async fn an_installer_running_when_the_connection_drops_finishes_and_its_exit_code_arrives() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let code = rig.lab.lab().state().unwrap().products[0].code.clone();
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    rig.faults(&["winrm-drop=1", "slow-tools=1500"]);
    let err = client
        .run(&command("msiexec", &["/x", &code, "/qn"]))
        .await
        .unwrap_err();
    // Its exit code arrives; what a lost Receive held does not.
    assert!(
        matches!(err, WinrmError::OutputLost { exit_code: 0, .. }),
        "{err:?}"
    );
    assert!(rig.installed().is_empty(), "{:?}", rig.installed());
    assert_eq!(rig.argv_log().matches("\"msiexec\"").count(), 1);
}

/// A command past its own timeout is "may still be running", and it is left running: neither
/// terminated nor its shell deleted, so a slow change still completes on the server.
#[tokio::test]
async fn a_command_past_its_timeout_is_left_running_and_may_still_be_running() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    rig.faults(&["slow-tools=2500"]);
    let mut cmd = command("sc", &["stop", "miiserver"]);
    cmd.timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = run(&rig, &cmd).await.unwrap_err();
    assert!(
        matches!(
            err,
            WinrmError::MayStillBeRunning {
                why: Interruption::TimedOut(_),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("MAY STILL BE RUNNING") && text.contains("left running"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(service_running(&rig), "sc stop finished before its sleep");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        !service_running(&rig),
        "the command was ended: sc stop never stopped the service"
    );
}

/// Stdout reaches the caller's writer while the command still runs, not after it ends: the script
/// prints a line, then waits until a file exists on the server, which the writer creates when it
/// is given that line; only then does the script print its last line and end. A client that held
/// the output until the end would never create the file, and the command would never end.
#[tokio::test]
async fn stdout_reaches_the_writer_before_the_command_ends() {
    struct Signalling {
        go: std::path::PathBuf,
        pieces: Vec<Vec<u8>>,
    }
    impl std::io::Write for Signalling {
        fn write(&mut self, piece: &[u8]) -> std::io::Result<usize> {
            if self.pieces.is_empty() {
                std::fs::write(&self.go, b"go")?;
            }
            self.pieces.push(piece.to_vec());
            Ok(piece.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let rig = Rig::iifp(Driver::Tds, &[]);
    let go = r"C:\Upgrade\go.txt";
    std::fs::create_dir_all(rig.path(r"C:\Upgrade")).unwrap();
    let script =
        format!("'first'\nwhile (-not [System.IO.File]::Exists('{go}')) {{ }}\n'second'\n");
    let mut cmd = command("powershell.exe", &[]);
    cmd.args = upgrade::adapters::remote::script::invocation(&script);
    cmd.stdin = Some(Stdin::new(Vec::new()));
    cmd.timeout = Duration::from_secs(20);
    let mut writer = Signalling {
        go: rig.path(go),
        pieces: Vec::new(),
    };
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    let exit = client.run_streaming(&cmd, &mut writer).await.unwrap();
    assert_eq!(
        exit.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    assert_eq!(writer.pieces[0], b"first\r\n", "{:?}", writer.pieces);
    assert_eq!(writer.pieces.concat(), b"first\r\nsecond\r\n");
}

/// A writer that refuses the output does not end the command: the client receives the rest
/// until the command ends (its change is made), deletes its shell, and reports the writer's error
/// with the exit code; the connection serves the next command.
#[tokio::test]
async fn a_writer_that_fails_leaves_the_command_to_finish_and_its_error_is_the_outcome() {
    struct Refusing;
    impl std::io::Write for Refusing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("No space left on device"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let rig = Rig::iifp(Driver::Tds, &[]);
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    let err = client
        .run_streaming(&command("sc", &["stop", "miiserver"]), &mut Refusing)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WinrmError::StdoutRefused { exit_code: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(
        !service_running(&rig),
        "sc stop was ended before its change"
    );
    let out = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("STOPPED"));
}

#[tokio::test(flavor = "current_thread")]
async fn neither_the_winrm_password_nor_a_stdin_secret_appears_in_any_log_line_at_trace() {
    use base64::Engine;
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (captured, _guard) = Captured::start();

    let canary = "Canary-7f3e-stdin-secret";
    let mut cmd = command(
        r"C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe",
        &["/e", r"D:\Upgrade\c.bin", "/u:nobody", "*", "/q"],
    );
    cmd.stdin = Some(Stdin::new(format!("{canary}\r\n").into_bytes()));
    let client = WinrmClient::connect(options(&rig)).await.unwrap();
    let out = client.run(&cmd).await.unwrap();
    assert_eq!(out.exit_code, 1, "the account is wrong on purpose");
    let mut wrong = options(&rig);
    wrong.password = Some(SecretString::new("Canary-wrong-winrm-password"));
    let _ = WinrmClient::connect(wrong).await.unwrap_err();

    let logs = captured.text();
    assert!(
        logs.contains("TRACE"),
        "nothing was logged at TRACE:\n{logs}"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        canary.to_string(),
        rig.lab.winrm.password.clone(),
        "Canary-wrong-winrm-password".to_string(),
    ] {
        assert!(!logs.contains(&secret), "a secret is in the logs:\n{logs}");
        let encoded = b64.encode(format!("{secret}\r\n"));
        assert!(
            !logs.contains(&encoded[..16]),
            "a secret's base64 is in the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn over_https_the_listeners_certificate_is_trusted_only_when_given_as_the_ca() {
    let rig = Rig::iifp_with_winrm_https();
    let w = &rig.lab.winrm;
    let mut opts = options(&rig);
    opts.endpoint = w.https_url.clone().expect("the lab's HTTPS listener");
    opts.https = true;
    opts.ca = w.https_cert.clone();
    for auth in [Auth::Ntlm, Auth::Basic] {
        opts.auth = auth;
        let client = WinrmClient::connect(opts.clone()).await.unwrap();
        let out = client
            .run(&command("sc", &["query", "miiserver"]))
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("RUNNING"),
            "{auth:?}"
        );
    }

    // A wrong password under Basic: the error names Basic's server setting too.
    opts.password = Some(SecretString::new("not-the-password"));
    let client = WinrmClient::connect(opts.clone()).await.unwrap();
    let err = client
        .run(&command("sc", &["query", "miiserver"]))
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::BasicRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("Basic=\"true\""), "{err}");

    // Without the CA the self-signed certificate is not trusted: no logon is attempted.
    opts.ca = None;
    opts.auth = Auth::Ntlm;
    let err = WinrmClient::connect(opts).await.unwrap_err();
    assert!(
        matches!(err, WinrmError::Tls { .. } | WinrmError::CaFile { .. }),
        "{err:?}"
    );
}
