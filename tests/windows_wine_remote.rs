//! The Windows build of `upgrade`, run under Wine, as the ADMIN HOST of the remote seed plan: it
//! reaches the sync server (the lab's WinRM listener and stand-ins, a Linux process: TEST DOUBLE
//! server) over WinRM with NTLM and SQL Server (the lab's TDS double) over TDS, and keeps the
//! copies and its state on its own disk, named as Windows names them (`Z:\...`). Needs what
//! `common::wine` needs; without it the test fails and names the packages.

mod common;

use std::process::Output;

use common::wine::{windows_exe, z, Wine};
use common::{files_holding, stdout, text, tree, Rig};

const MIIS: &str = "Microsoft Identity Integration Server 2003";

#[test]
fn the_windows_build_as_admin_host_runs_the_remote_seed_plan_over_winrm_and_converges() {
    let exe = windows_exe();
    let rig = Rig::iifp_remote_naming(&[], z);
    let wine = Wine {
        prefix: rig.tmp.path().join("prefix"),
    };
    let secrets = rig.secrets_env();
    let mut env: Vec<(&str, &str)> = secrets.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("RUST_LOG", "upgrade=debug"));
    let plan = z(&rig.plan);
    let mut outputs: Vec<Output> = Vec::new();
    let mut upgrade = |args: &[&str]| -> Output {
        let mut argv = vec![exe.to_str().unwrap(), args[0], &plan];
        argv.extend_from_slice(&args[1..]);
        let out = wine.run_with(&argv, &env);
        outputs.push(out.clone());
        out
    };

    let validate = upgrade(&["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));

    // The same plan logging on with Kerberos is refused by the Windows build: its SSPI path has
    // not run against a Kerberos listener (Wine's Kerberos package does not encrypt messages as
    // Windows does; README, "Kerberos"), so it is not offered.
    let ntlm_plan = std::fs::read_to_string(&rig.plan).unwrap();
    let kerberos_plan = rig.tmp.path().join("kerberos.yaml");
    std::fs::write(
        &kerberos_plan,
        ntlm_plan
            .replacen("auth: ntlm", "auth: kerberos", 1)
            .replacen("http://127.0.0.1:", "http://localhost:", 1)
            .replacen(
                &format!("user: '{}'", rig.lab.winrm.user),
                "user: 'admin@LAB.TEST'",
                1,
            ),
    )
    .unwrap();
    let refused = wine.run_with(
        &[exe.to_str().unwrap(), "validate", &z(&kerberos_plan)],
        &env,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("server.connect.winrm.auth")
            && text(&refused).contains("not been tested against a Kerberos WinRM listener"),
        "{}",
        text(&refused)
    );
    let first = upgrade(&["plan", "--detailed-exitcode"]);
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));

    let apply = upgrade(&["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        stdout(&apply).contains("Apply complete: 8 step(s) done"),
        "{}",
        text(&apply)
    );
    assert_eq!(rig.installed(), [MIIS]);

    // The copies are on the admin host's disk, with what the server had.
    let copy = tree(&rig.admin_dir().join("Extensions"));
    assert!(
        copy.iter().any(|(f, _)| f == "SHA256SUMS"),
        "no manifest in the admin host's copy: {copy:?}"
    );
    assert!(copy.len() > 1, "{copy:?}");
    assert_eq!(
        std::fs::read(rig.admin_dir().join("miis-keys.bin")).unwrap(),
        std::fs::read(rig.path(r"D:\Upgrade\miis-keys.bin")).unwrap(),
        "the key file's copy differs from the server's"
    );

    let again = upgrade(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // A second apply changes nothing and runs no tool that changes anything.
    let before = rig.argv_log();
    let second = upgrade(&["apply", "--auto-approve"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let new_runs = rig.argv_log()[before.len()..].to_string();
    for tool in ["miiskmu", "msiexec", "setup"] {
        assert!(
            !new_runs.contains(&format!("\"{tool}\"")),
            "the second apply ran {tool}: {new_runs}"
        );
    }

    // No secret in any output, on the server's side, or in the admin host's files (the key
    // file's copy aside: its bytes are derived from the service password, as the server's are).
    for (name, secret) in &secrets {
        for out in &outputs {
            assert!(
                !text(out).contains(secret.as_str()),
                "{name} is in the output"
            );
        }
        let hits = rig.server_files_holding(secret);
        assert!(hits.is_empty(), "{name} is in the lab's files: {hits:?}");
        let hits: Vec<String> = files_holding(&rig.admin_dir(), secret)
            .into_iter()
            .filter(|f| f != "miis-keys.bin")
            .collect();
        assert!(
            hits.is_empty(),
            "{name} is in the admin host's files: {hits:?}"
        );
    }
}
