//! The process, product and service adapters against the lab's stand-in tools (reg, sc, miiskmu):
//! the same code path that runs reg.exe, sc.exe and miiskmu.exe on the server.

use std::time::Duration;

use upgrade::adapters::process::{ProcessError, ProcessSpec};
use upgrade::adapters::products::{self, Lookup};
use upgrade::adapters::secrets::{Redactor, SecretString};
use upgrade::adapters::services::{self, ServiceState};
use upgrade::plan::{ProductCode, ProductRef};
use upgrade_lab::{Flavour, Lab};

fn iifp_lab() -> (tempfile::TempDir, Lab) {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::init(&dir.path().join("lab"), Flavour::Iifp).unwrap();
    (dir, lab)
}

#[tokio::test]
async fn the_installed_feature_pack_is_found_by_its_display_name() {
    let (_dir, lab) = iifp_lab();
    let tools = lab.tools().unwrap();
    let installed = products::installed_products(&tools.reg, &Redactor::default(), &[])
        .await
        .unwrap();
    let expected = Flavour::Iifp.installed_product();
    match products::find(
        &installed,
        &ProductRef::Name("identity integration feature pack".into()),
    ) {
        Lookup::Found(p) => {
            assert_eq!(
                p.product_code,
                Some(ProductCode::parse(&expected.code).unwrap())
            );
            assert_eq!(
                p.display_version.as_deref(),
                Some(expected.version.as_str())
            );
            assert_eq!(
                p.install_location.as_deref(),
                Some(expected.install_location.as_str())
            );
        }
        other => panic!("{other:?} in {installed:#?}"),
    }
    let absent = ProductRef::Name("Microsoft Identity Integration Server 2003".into());
    assert_eq!(products::find(&installed, &absent), Lookup::NotFound);
}

#[tokio::test]
async fn the_sync_service_runs_and_an_unknown_service_is_none() {
    let (_dir, lab) = iifp_lab();
    let sc = lab.tools().unwrap().sc;
    assert_eq!(
        services::service_state(&sc, "miiserver", &[])
            .await
            .unwrap(),
        Some(ServiceState::Running)
    );
    assert_eq!(
        services::service_state(&sc, "FIMSynchronizationService", &[])
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_key_tool_gets_the_password_on_stdin_and_never_in_its_argv() {
    let (_dir, lab) = iifp_lab();
    let state = lab.state().unwrap();
    let password = SecretString::new(state.account.password.clone());
    let key_file = r"D:\Upgrade\keys.bin";
    let account = format!(r"/u:{}\{}", state.account.domain, state.account.user);
    let mut spec = ProcessSpec::new(
        lab.tools().unwrap().miiskmu,
        &["/e", key_file, &account, "*", "/q"],
        Duration::from_secs(60),
    );
    spec.stdin = Some(SecretString::new(format!("{}\r\n", password.expose())));
    let redactor = Redactor::new(vec![password.clone()]);
    let out = spec.run(&redactor).await.unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(lab.lab_path(key_file).is_file());
    let argv = std::fs::read_to_string(lab.dir().join("argv.log")).unwrap();
    assert!(argv.contains("miiskmu"), "{argv}");
    assert!(
        !argv.contains(password.expose()),
        "the password reached a child's argv: {argv}"
    );
    assert!(!spec.display().contains(password.expose()));
}

#[tokio::test]
async fn a_slow_tool_is_killed_at_its_timeout() {
    let (_dir, lab) = iifp_lab();
    lab.set_faults(&["slow-tools=5000"]).unwrap();
    let spec = ProcessSpec::new(
        lab.tools().unwrap().sc,
        &["query", "miiserver"],
        Duration::from_millis(300),
    );
    let started = std::time::Instant::now();
    let err = spec.run(&Redactor::default()).await.unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
