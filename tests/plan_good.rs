//! Good plans: every shipped plan and example validates, and loading keeps what the file says
//! (order, references, secrets as references, the file's hash).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use upgrade::plan::{
    self, graph, placeholders, KeyFile, ProductRef, SearchBy, Secret, StepKind, Timeout,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    files
}

#[test]
fn every_shipped_plan_and_example_validates() {
    let mut files = yaml_files(&repo().join("plans"));
    files.extend(yaml_files(&repo().join("examples")));
    files.extend(yaml_files(&repo().join("examples/lab")));
    assert!(
        files.len() >= 4,
        "expected the two shipped plans and two examples, found {files:?}"
    );
    for file in files {
        if let Err(diags) = plan::load(&file) {
            panic!("{} does not validate:\n{diags}", file.display());
        }
    }
}

#[test]
fn shipped_plans_point_editors_at_the_schema() {
    for file in yaml_files(&repo().join("plans"))
        .into_iter()
        .chain(yaml_files(&repo().join("examples")))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/plan.schema.json\n"),
            "{} lacks the yaml-language-server schema line",
            file.display()
        );
    }
}

#[test]
fn the_seed_plan_is_the_manual_procedure_in_order() {
    let loaded = plan::load(&repo().join("plans/iifp-to-miis2003.yaml")).unwrap();
    let kinds: Vec<&str> = loaded.plan.steps.iter().map(|s| s.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "backup_database",
            "export_keys",
            "backup_files",
            "service",
            "snapshot_connector_space",
            "uninstall",
            "install",
            "verify"
        ]
    );
    let order: Vec<&str> = graph::order(&loaded.plan)
        .unwrap()
        .into_iter()
        .map(|i| loaded.plan.steps[i].id.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "database",
            "keys",
            "extensions",
            "stop-sync",
            "before",
            "remove-iifp",
            "install-miis",
            "verify"
        ]
    );
    let StepKind::Uninstall(u) = &loaded.plan.steps[5].kind else {
        panic!("step 6 is the uninstall")
    };
    assert_eq!(
        u.product,
        ProductRef::Name("Identity Integration Feature Pack".into())
    );
    assert!(!u.unprotected);
}

#[test]
fn the_seed_plan_keeps_the_password_off_the_setup_command_line() {
    let loaded = plan::load(&repo().join("plans/iifp-to-miis2003.yaml")).unwrap();
    let StepKind::Install(install) = &loaded.plan.steps[6].kind else {
        panic!("step 7 is the install")
    };
    let secret_in_argv = install.arguments.iter().flatten().any(|a| {
        placeholders::find(a)
            .iter()
            .any(|o| o.known().is_some_and(|k| k.secret))
    });
    assert!(!secret_in_argv);
    assert!(!install.secrets_on_command_line);
    assert_eq!(
        install.stdin.as_deref(),
        Some("{answers.service_account.password}\n")
    );
    assert!(matches!(&install.answers.key_file, Some(KeyFile::From(id)) if id.as_str() == "keys"));
    let password = &install.answers.service_account.as_ref().unwrap().password;
    assert_eq!(password, &Secret::Env("MIIS_SERVICE_PASSWORD".into()));
}

#[test]
fn the_fim_plan_upgrades_in_place_without_an_uninstall() {
    let loaded = plan::load(&repo().join("plans/fim2010r2-to-mim2016.yaml")).unwrap();
    assert!(!loaded
        .plan
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::Uninstall(_))));
    let install = loaded
        .plan
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::Install(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(install.profile, Some(plan::AnswerProfile::Mim2016Sync));
    assert!(install.secrets_on_command_line);
    assert!(install
        .installer
        .as_str()
        .to_ascii_lowercase()
        .ends_with(".msi"));
}

/// Microsoft's runbooks stop the sync service before the upgrade: no scheduled run may change the
/// connector space between the snapshot and verify, and the FIM 2010 R2 -> MIM 2016 in-place
/// upgrade needs the service stopped when the MSI runs.
#[test]
fn the_shipped_plans_stop_the_sync_service_before_the_snapshot_and_the_msi() {
    for (file, service, needs_it) in [
        ("plans/iifp-to-miis2003.yaml", "miiserver", &["before"][..]),
        (
            "plans/fim2010r2-to-mim2016.yaml",
            "FIMSynchronizationService",
            &["before", "upgrade-sync"][..],
        ),
        (
            "plans/fim2010r2-to-mim2016sp2.yaml",
            "FIMSynchronizationService",
            &["before", "remove-fim", "install-mim"][..],
        ),
    ] {
        let loaded = plan::load(&repo().join(file)).unwrap();
        let (i, stop) = loaded
            .plan
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| match &s.kind {
                StepKind::Service(c) => Some((i, c)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{file} has no service step"));
        assert_eq!(stop.name, service, "{file}");
        assert_eq!(stop.state, plan::WantedServiceState::Stopped, "{file}");
        for id in needs_it {
            let j = loaded
                .plan
                .steps
                .iter()
                .position(|s| s.id.as_str() == *id)
                .unwrap();
            assert!(
                graph::prerequisites(&loaded.plan, j).contains(&i),
                "{file}: `{id}` does not come after the service is stopped"
            );
        }
    }
}

#[test]
fn a_loaded_plan_records_the_file_and_its_sha256() {
    let path = repo().join("examples/minimal.yaml");
    let bytes = std::fs::read(&path).unwrap();
    let loaded = plan::load(&path).unwrap();
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.source.as_bytes(), bytes.as_slice());
    assert_eq!(loaded.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(loaded.plan.name, "minimal");
}

#[test]
fn defaults_apply_where_the_plan_is_silent() {
    let loaded = plan::load(&repo().join("examples/minimal.yaml")).unwrap();
    let StepKind::BackupDatabase(b) = &loaded.plan.steps[0].kind else {
        panic!()
    };
    assert!(b.verify, "verify defaults to true");
    assert!(b.max_age.is_none());
    assert_eq!(
        loaded.plan.server.sql.driver,
        plan::SqlDriver::Auto,
        "the client is chosen by the server's version unless the plan says"
    );
    assert!(loaded.plan.tools.miiskmu.is_none());
}

#[test]
fn a_plan_that_says_nothing_of_the_connection_acts_on_this_machine() {
    let loaded = plan::load(&repo().join("examples/minimal.yaml")).unwrap();
    assert!(loaded.plan.server.connect.is_local());
    assert!(loaded.plan.server.host.is_none());
}

#[test]
fn a_winrm_plan_says_where_and_how_to_log_on_and_keeps_its_password_a_reference() {
    let loaded = plan::load(&repo().join("examples/winrm.yaml")).unwrap();
    let server = &loaded.plan.server;
    assert_eq!(server.host.as_deref(), Some("miis01.contoso.com"));
    let w = server.connect.winrm().expect("connect: winrm");
    assert_eq!(w.auth, plan::WinrmAuth::Ntlm);
    assert_eq!(w.user, r"CONTOSO\upgrade-admin");
    assert_eq!(w.password, Some(Secret::Env("WINRM_PASSWORD".into())));
    assert!(!w.https);
    assert_eq!(w.timeout.map(|t| t.get().as_secs()), Some(30));
}

/// The lab's plans run `upgrade` on Linux against POSIX paths: without `server.connect: winrm`
/// nothing changes for them. With it, the same paths on the sync server are refused.
#[test]
fn posix_paths_stay_valid_in_a_local_plan_and_are_refused_on_a_winrm_server() {
    let steps = "steps:\n  - id: keys\n    export_keys:\n      to: /srv/keys.bin\n      \
                 copy_to: /srv/copy/keys.bin\n      account: { user: svc, password: { env: P } }\n";
    let local =
        format!("version: 1\nname: x\nserver:\n  sql: {{ host: h, auth: windows }}\n{steps}");
    plan::load_str("local.yaml", &local).unwrap();
    let remote = format!(
        "version: 1\nname: x\nserver:\n  host: miis01\n  connect:\n    winrm: {{ auth: ntlm, \
         user: u, password: {{ env: W }} }}\n  sql: {{ host: h, auth: windows }}\n{steps}"
    );
    let diags = plan::load_str("remote.yaml", &remote)
        .unwrap_err()
        .to_string();
    assert!(
        diags.contains("steps[0].export_keys.to: with `server.connect: winrm` this is a path on the sync server"),
        "{diags}"
    );
    assert!(
        !diags.contains("copy_to"),
        "the copy is the admin host's, any absolute path: {diags}"
    );
}

/// The waits of every kind that has one, in file order, from a plan whose steps end in `wait`.
fn waits_of(wait: &str) -> Vec<Option<std::time::Duration>> {
    let text = [
        "version: 1",
        "name: x",
        "server: { sql: { host: h, auth: windows } }",
        "steps:",
        "  - id: keys",
        r"    export_keys: { to: 'D:\k.bin', account: { user: u, password: { env: P } }, WAIT }",
        "  - id: stop",
        "    service: { name: miiserver, state: stopped, WAIT }",
        "  - id: remove",
        "    uninstall: { product: { name: IIFP }, unprotected: true, WAIT }",
        "  - id: install",
        r"    install: { installer: 'E:\Setup.exe', detect: { product: { name: MIIS } }, WAIT }",
    ]
    .join("\n")
    .replace("WAIT", wait);
    let loaded = plan::load_str("p.yaml", &text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    loaded
        .plan
        .steps
        .iter()
        .map(|s| match &s.kind {
            StepKind::ExportKeys(k) => k.wait_limit(),
            StepKind::Service(k) => k.wait_limit(),
            StepKind::Uninstall(k) => k.wait_limit(),
            StepKind::Install(k) => k.wait_limit(),
            other => panic!("{} has no timeout", other.name()),
        })
        .collect()
}

#[test]
fn a_timeout_is_a_duration_and_the_old_timeout_secs_still_means_the_same_wait() {
    let ninety = Some(std::time::Duration::from_secs(90));
    assert_eq!(waits_of("timeout: 90s"), [ninety; 4]);
    assert_eq!(waits_of("timeout_secs: 90"), [ninety; 4]);
    assert_eq!(
        waits_of("timeout: 2h"),
        [Some(std::time::Duration::from_secs(7200)); 4]
    );
}

#[test]
fn a_plan_may_leave_the_sql_client_to_the_server_version_and_still_name_an_odbc_driver() {
    let text = "version: 1\nname: x\nserver: { sql: { host: h, auth: windows, driver: auto, odbc_driver: FreeTDS } }\nsteps:\n  - id: v\n    verify: { services: [ { name: miiserver } ] }\n";
    let loaded = plan::load_str("p.yaml", text).unwrap();
    assert_eq!(loaded.plan.server.sql.driver, plan::SqlDriver::Auto);
    assert_eq!(
        loaded.plan.server.sql.odbc_driver.as_deref(),
        Some("FreeTDS")
    );
}

#[test]
fn a_missing_file_is_one_diagnostic_naming_the_file() {
    let err = plan::load(Path::new("/nonexistent/plan.yaml")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.to_string(), "/nonexistent/plan.yaml: no such file\n");
}

#[test]
fn diagnostics_are_a_std_error_with_one_line_per_problem() {
    let text = "version: 1\nname: x\nserver: { sql: { host: h, auth: windows } }\nsteps:\n  - id: a\n    verify: {}\n  - id: a\n    verify: {}\n";
    let err = plan::load_str("p.yaml", text).unwrap_err();
    let as_error: &dyn std::error::Error = &err;
    assert_eq!(as_error.to_string().lines().count(), 3, "{err}");
    assert_eq!(err.0[0].file, "p.yaml");
    assert_eq!((err.0[0].line, err.0[0].column), (6, 5));
    assert_eq!(err.0[0].path, "steps[0].verify");
}

#[test]
fn references_count_as_dependencies() {
    let loaded = plan::load(&repo().join("examples/every-field.yaml")).unwrap();
    let verify = loaded
        .plan
        .steps
        .iter()
        .find(|s| s.id.as_str() == "verify")
        .unwrap();
    let deps: Vec<&str> = graph::dependencies(verify)
        .into_iter()
        .map(|d| d.as_str())
        .collect();
    assert_eq!(deps, ["install-msi", "before"]);
}

#[test]
fn a_search_is_one_of_three_ways_and_is_written_back_with_the_key_it_was_read_from() {
    let loaded = plan::load(&repo().join("examples/every-field.yaml")).unwrap();
    let Some(StepKind::Verify(verify)) = loaded.plan.steps.last().map(|s| &s.kind) else {
        panic!("every-field.yaml ends with a verify step")
    };
    let by: Vec<&SearchBy> = verify.search.iter().map(|s| &s.by).collect();
    assert!(matches!(by[0], SearchBy::DnPrefix(dn) if dn == "CN=Administrator"));
    assert!(matches!(by[1], SearchBy::AnchorPrefix(a) if a.digits() == "4500"));
    assert!(matches!(by[2], SearchBy::Subtree(t) if t == "OU=Staff"));
    // The serialized form (what the character checks walk) has the plan file's keys.
    let written = serde_json::to_value(&verify.search).unwrap();
    assert_eq!(
        written,
        serde_json::json!([
            { "management_agent": "Contoso AD", "dn_prefix": "CN=Administrator", "min_count": 1 },
            { "database": "MicrosoftIdentityIntegrationServer", "management_agent": "HR Database",
              "anchor_prefix": "0x4500", "min_count": 10 },
            { "management_agent": "Contoso AD", "subtree": "OU=Staff", "min_count": 100 },
        ])
    );
}

#[test]
fn a_control_character_in_a_search_is_reported_at_its_key() {
    let text = "version: 1\nname: x\nserver: { sql: { host: h, auth: windows } }\nsteps:\n  - id: v\n    verify: { search: [ { management_agent: AD, subtree: \"OU=\\e[2J\" } ] }\n";
    let diags = plan::load_str("p.yaml", text).unwrap_err();
    assert_eq!(diags.len(), 1, "{diags}");
    assert_eq!(
        diags.iter().next().unwrap().path,
        "steps[0].verify.search[0].subtree"
    );
}
