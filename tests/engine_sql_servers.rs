//! The plan's SQL client against the lab's SQL Server 2000 (TDS 7.1) and 2016 (TDS 7.4), through
//! the real `upgrade` binary: `driver: auto` (the default) reads the server's version and picks the
//! client, `driver: tds` is refused by SQL Server 2000 before any statement with a way out, and
//! binary anchors are found by a hex prefix in any case through either client.

mod common;

use common::{edit_plan, stdout, text, Driver, Rig, FREETDS_DRIVER};
use upgrade_lab::sqlmodel::{Fixture, TdsVersion};

/// The lab logs each statement with how it arrived: tiberius sends queries as `sp_executesql`
/// RPCs, ODBC sends batches only.
fn rpc_count(rig: &Rig) -> usize {
    rig.statements().matches("\"kind\":\"rpc\"").count()
}

/// The seed plan against SQL Server 2000: plan, apply, and nothing left to do.
fn the_seed_plan_converges_against_sql_server_2000(driver: Driver) -> Rig {
    let rig = Rig::iifp_on(driver, TdsVersion::V71, &[]);
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    // SQL Server 2000 has no BACKUP ... WITH CHECKSUM.
    assert!(!stdout(&plan).contains("CHECKSUM"), "{}", text(&plan));
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let again = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    rig
}

#[test]
fn the_seed_plan_converges_against_sql_server_2000_over_odbc() {
    the_seed_plan_converges_against_sql_server_2000(Driver::Odbc);
}

#[test]
fn driver_auto_talks_to_sql_server_2000_through_odbc_and_the_seed_plan_converges() {
    let rig = the_seed_plan_converges_against_sql_server_2000(Driver::Auto);
    assert!(
        rig.statements().contains("mms_connectorspace"),
        "{}",
        rig.statements()
    );
    assert_eq!(
        rpc_count(&rig),
        0,
        "tiberius was used: {}",
        rig.statements()
    );
}

#[test]
fn driver_auto_talks_to_sql_server_2016_through_the_built_in_client() {
    let rig = Rig::iifp_on(Driver::Auto, TdsVersion::V74, &[]);
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    // SQL Server 2005 and later back up WITH CHECKSUM.
    assert!(stdout(&plan).contains("CHECKSUM"), "{}", text(&plan));
    assert!(rpc_count(&rig) > 0, "ODBC was used: {}", rig.statements());
}

#[test]
fn driver_tds_is_refused_by_sql_server_2000_before_any_statement_saying_what_to_write() {
    let rig = Rig::iifp_on(Driver::Tds, TdsVersion::V71, &[]);
    for args in [
        vec!["plan", rig.plan_str()],
        vec!["apply", rig.plan_str(), "--auto-approve"],
    ] {
        let out = rig.upgrade(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let all = text(&out);
        for needed in [
            "SQL Server 2000 (version 8.0.2039), which speaks only TDS 7.1",
            "`driver: odbc`",
            "`driver: auto`",
        ] {
            assert!(all.contains(needed), "`{needed}` missing:\n{all}");
        }
        assert!(!all.contains("invalid or unsupported column type"), "{all}");
    }
    assert_eq!(rig.statements(), "", "a statement reached the server");
    assert!(!rig.path(r"D:\Upgrade\miis.bak").exists());
}

fn anchor_search(rig: &Rig, name: &str, prefix: &str, min_count: u64) -> std::process::Output {
    let plan = rig.plan_with_steps(
        name,
        &format!(
            "  - id: find\n    verify:\n      search:\n        - {{ database: MicrosoftIdentityIntegrationServer, management_agent: Contoso AD, anchor_prefix: \"{prefix}\", min_count: {min_count} }}\n"
        ),
    );
    rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"])
}

fn a_hex_prefix_in_either_case_finds_the_binary_anchor(driver: Driver) {
    let rig = Rig::iifp(driver, &[]);
    // The Administrator's anchor in the lab's fixture: 16 bytes (an objectGUID).
    let data = Fixture::miis().generate();
    let anchor = &data.object("CN=Administrator").unwrap().anchor;
    let lower = hex::encode(anchor);
    let out = anchor_search(&rig, "anchor-lower", &lower, 1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let upper = format!("0x{}", hex::encode_upper(&anchor[..6]));
    let out = anchor_search(&rig, "anchor-upper", &upper, 1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The whole anchor is one object: asking for two fails, with the count found.
    let out = anchor_search(&rig, "anchor-two", &lower, 2);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(">= 2"), "{}", text(&out));
}

#[test]
fn a_hex_prefix_in_either_case_finds_the_binary_anchor_through_tiberius() {
    a_hex_prefix_in_either_case_finds_the_binary_anchor(Driver::Tds);
}

#[test]
fn a_hex_prefix_in_either_case_finds_the_binary_anchor_through_odbc() {
    a_hex_prefix_in_either_case_finds_the_binary_anchor(Driver::Odbc);
}

/// The registration Debian's tdsodbc package writes (`odbcinst -i -d -f
/// /usr/share/tdsodbc/odbcinst.ini` in its postinst; `.ci/run` runs the same): the driver by its
/// bare file name, which Debian's own unixODBC finds in its driver folder.
const DEBIAN_FREETDS_REGISTRATION: &str = "[FreeTDS]\n\
Description\t= TDS driver (Sybase/MS SQL)\n\
Driver\t\t= libtdsodbc.so\n\
Setup\t\t= libtdsS.so\n";

#[test]
fn a_plan_naming_no_odbc_driver_reaches_sql_server_2000_through_freetds_registered_as_debian_does()
{
    let rig = Rig::iifp(Driver::Odbc, &[]);
    // The plan leaves the driver to the platform's default: FreeTDS, by its registered name.
    edit_plan(&rig, &format!("\n    odbc_driver: {FREETDS_DRIVER}"), "");
    let registry = rig.tmp.path().join("odbc-registry");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(registry.join("odbcinst.ini"), DEBIAN_FREETDS_REGISTRATION).unwrap();
    let run = |args: &[&str]| {
        rig.command(args)
            .env("ODBCSYSINI", &registry)
            .output()
            .unwrap()
    };
    let apply = run(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let again = run(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        rpc_count(&rig),
        0,
        "tiberius was used: {}",
        rig.statements()
    );
}

#[test]
fn an_odbc_driver_that_is_not_registered_is_named_with_the_package_that_registers_it() {
    let rig = Rig::iifp(Driver::Odbc, &[]);
    edit_plan(&rig, &format!("\n    odbc_driver: {FREETDS_DRIVER}"), "");
    let nothing_registered = rig.tmp.path().join("odbc-registry");
    std::fs::create_dir_all(&nothing_registered).unwrap();
    let plan = rig
        .command(&["plan", rig.plan_str()])
        .env("ODBCSYSINI", &nothing_registered)
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let out = stdout(&plan);
    assert!(
        out.contains("the ODBC driver `FreeTDS` is not registered with unixODBC")
            && out.contains("`apt install tdsodbc`"),
        "{}",
        text(&plan)
    );
    assert!(!out.contains("cannot open shared object file"), "{out}");
}
