//! The process, product and service adapters against the lab's stand-in tools (reg, sc, miiskmu):
//! the same code path that runs reg.exe, sc.exe and miiskmu.exe on the server. The IIFP lab's reg
//! behaves like reg.exe 3.0 of Windows Server 2003, the FIM lab's like a later one.

use std::time::Duration;

use upgrade::adapters::host::Local;
use upgrade::adapters::process::{ProcessError, ProcessSpec};
use upgrade::adapters::products::{self, Lookup};
use upgrade::adapters::secrets::{Redactor, SecretString};
use upgrade::adapters::services::{self, ServiceState};
use upgrade::adapters::windows_installer;
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
    let installed = products::installed_products(&Local, &tools.reg, &Redactor::default(), &[])
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

/// The reg arguments the executor passed, in order, as the lab's stand-ins recorded them.
fn reg_calls(lab: &Lab) -> Vec<String> {
    upgrade_lab::tools::read_argv_log(lab.dir())
        .unwrap()
        .into_iter()
        .filter(|r| r.tool == "reg")
        .map(|r| format!("{} -> {}", r.argv.join(" "), r.exit))
        .collect()
}

#[tokio::test]
async fn on_windows_server_2003_reg_3_0_refuses_reg_64_once_and_is_queried_without_it() {
    let (_dir, lab) = iifp_lab();
    let tools = lab.tools().unwrap();
    for _ in 0..2 {
        let installed = products::installed_products(&Local, &tools.reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert!(matches!(
            products::find(
                &installed,
                &ProductRef::Name("Identity Integration Feature Pack".into())
            ),
            Lookup::Found(_)
        ));
    }
    // The lab's Windows Server 2003 is x86: no WOW6432Node, which reg reports in its own words
    // (exit 1), read as "nothing installed there", with no further query.
    let once = [
        format!("query {} /s /reg:64 -> 1", products::UNINSTALL_KEY),
        format!("query {} /s -> 0", products::UNINSTALL_KEY),
        format!("query {} /s -> 1", products::UNINSTALL_KEY_WOW64),
    ];
    assert_eq!(reg_calls(&lab), [once.clone(), once].concat());
}

#[tokio::test]
async fn a_later_reg_is_asked_for_the_64_bit_view_on_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::init(&dir.path().join("lab"), Flavour::Fim2010r2).unwrap();
    let installed =
        products::installed_products(&Local, &lab.tools().unwrap().reg, &Redactor::default(), &[])
            .await
            .unwrap();
    let fim = Flavour::Fim2010r2.installed_product();
    assert!(matches!(
        products::find(&installed, &ProductRef::Name(fim.name)),
        Lookup::Found(_)
    ));
    assert_eq!(
        reg_calls(&lab),
        [
            format!("query {} /s /reg:64 -> 0", products::UNINSTALL_KEY),
            format!("query {} /s /reg:64 -> 0", products::UNINSTALL_KEY_WOW64),
        ]
    );
}

#[tokio::test]
async fn the_sync_service_runs_and_an_unknown_service_is_none() {
    let (_dir, lab) = iifp_lab();
    let sc = lab.tools().unwrap().sc;
    assert_eq!(
        services::service_state(&Local, &sc, "miiserver", &[])
            .await
            .unwrap(),
        Some(ServiceState::Running)
    );
    assert_eq!(
        services::service_state(&Local, &sc, "FIMSynchronizationService", &[])
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

#[tokio::test]
async fn the_windows_installer_version_is_read_from_msi_dll_beside_msiexec() {
    for (flavour, version) in [
        (Flavour::Iifp, "2.0.3790.0"),
        (Flavour::Fim2010r2, "5.0.7600.16385"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::init(&dir.path().join("lab"), flavour).unwrap();
        let dll = windows_installer::msi_dll_beside(&lab.tools().unwrap().msiexec);
        let read = windows_installer::read(&Local, &dll).await.unwrap();
        assert_eq!(read.to_string(), version, "{flavour:?}");
    }
}
