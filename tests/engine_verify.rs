//! A verify step's checks: they run at the same time, at most thirty-two at once, and report in the
//! order the plan lists them; connector-space searches count the objects of a whole agent through
//! both SQL clients while holding only its containers.

mod common;

use std::path::Path;

use common::{text, Driver, Rig};
use upgrade_lab::sqlmodel::{Fixture, TdsVersion};

/// Nanosecond stamps `start.N` / `end.N` written by the checks into `dir`.
fn stamps(dir: &Path, kind: &str) -> Vec<(String, u128)> {
    let mut v: Vec<(String, u128)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(&format!("{kind}."))?.to_string();
            let t = std::fs::read_to_string(e.path()).unwrap();
            Some((n, t.trim().parse().unwrap()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sixty_four_checks_run_thirty_two_at_a_time_never_more() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let dir = rig.tmp.path().join("stamps");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.display();
    // Each check stamps its start, waits until thirty-two checks have started (so fewer than thirty-two
    // at once never passes: the first would wait in vain and fail), then stamps its end.
    const AT_ONCE: usize = 32;
    let mut steps = String::from("  - id: checks\n    verify:\n      commands:\n");
    for i in 0..2 * AT_ONCE {
        steps.push_str(&format!(
            "        - {{ run: [sh, -c, \"date +%s%N > {d}/start.{i}; n=0; until [ $(ls {d} | grep -c start) -ge {AT_ONCE} ]; do n=$((n+1)); [ $n -gt 300 ] && exit 1; sleep 0.1; done; date +%s%N > {d}/end.{i}\"] }}\n"
        ));
    }
    let plan = rig.plan_with_steps("wide", &steps);
    let out = rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (starts, ends) = (stamps(&dir, "start"), stamps(&dir, "end"));
    assert_eq!((starts.len(), ends.len()), (2 * AT_ONCE, 2 * AT_ONCE));
    // A check's process starts only after another's has ended, so at any check's start at most
    // thirty-two (itself included) have started and not yet ended.
    let most = starts
        .iter()
        .map(|(_, s)| {
            starts
                .iter()
                .zip(&ends)
                .filter(|((_, s2), (_, e2))| s2 <= s && e2 > s)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= AT_ONCE, "{most} checks ran at once");
}

#[test]
fn results_come_in_plan_order_though_later_checks_finish_first() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let plan = rig.plan_with_steps(
        "order",
        "  - id: checks\n    verify:\n      commands:\n        - { run: [sh, -c, \"sleep 1; exit 3\"] }\n        - { run: [sh, -c, \"exit 0\"] }\n        - { run: [sh, -c, \"exit 4\"] }\n      services:\n        - { name: miiserver }\n",
    );
    let out = rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("2 of 4 check(s) failed"), "{all}");
    let at = |needle: &str| {
        all.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing:\n{all}"))
    };
    // The plan's order of kinds: services before commands.
    let lines = [
        at("  service miiserver"),
        at("✗ command `sh -c sleep 1; exit 3`"),
        at("  command `sh -c exit 0`"),
        at("✗ command `sh -c exit 4`"),
    ];
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{all}");
}

/// Objects of Contoso AD in the lab's fixture under `dn` (itself included).
fn in_subtree(dn: &str) -> u64 {
    let data = Fixture::miis().generate();
    let by_id: std::collections::HashMap<&str, _> = data
        .connector_space
        .iter()
        .map(|c| (c.object_id.as_str(), c))
        .collect();
    data.connector_space
        .iter()
        .filter(|c| {
            let mut parts = vec![c.rdn.as_str()];
            let mut cur = c.pobject_id.as_deref();
            while let Some(p) = cur.and_then(|id| by_id.get(id)) {
                parts.push(&p.rdn);
                cur = p.pobject_id.as_deref();
            }
            let full = parts.join(",");
            full == dn || full.ends_with(&format!(",{dn}"))
        })
        .count() as u64
}

fn searches_count_every_object_of_the_agent(driver: Driver) {
    let rig = Rig::iifp(driver, &[]);
    let users = in_subtree("CN=Users,DC=contoso,DC=com");
    assert!(users > 400, "the fixture changed: {users}");
    let search = |name: &str, min: u64| {
        let plan = rig.plan_with_steps(
            name,
            &format!(
                "  - id: find\n    verify:\n      search:\n        - {{ database: MicrosoftIdentityIntegrationServer, management_agent: Contoso AD, subtree: \"cn=users,DC=contoso,DC=com\", min_count: {min} }}\n        - {{ database: MicrosoftIdentityIntegrationServer, management_agent: Contoso AD, dn_prefix: \"CN=Administrator,CN=Users\", min_count: 1 }}\n"
            ),
        );
        rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"])
    };
    let out = search("all-users", users);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = search("one-more", users + 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.lines().any(|l| l.starts_with("✗ search")
            && l.contains(&format!(">= {}", users + 1))
            && l.trim_end().ends_with(&format!(" {users}"))),
        "{all}"
    );
    // Only the containers were asked for as a whole; the objects came as one stream per search.
    let log = rig.statements();
    assert!(log.contains("IN (SELECT child.pobject_id"), "{log}");
}

#[test]
fn searches_count_every_object_of_the_agent_through_tiberius() {
    searches_count_every_object_of_the_agent(Driver::Tds);
}

#[test]
fn searches_count_every_object_of_the_agent_through_odbc() {
    searches_count_every_object_of_the_agent(Driver::Odbc);
}

/// Applies one verify step of `n` SQL checks that each pass, and gives the lab's log of the
/// handshakes it saw (one `prelogin` / `login7` line each).
fn apply_sql_checks(rig: &Rig, name: &str, n: usize) -> String {
    let count = rig.lab.lab().status().unwrap().databases.len();
    let mut steps = String::from("  - id: checks\n    verify:\n      sql:\n");
    for _ in 0..n {
        steps.push_str(&format!(
            "        - {{ database: MicrosoftIdentityIntegrationServer, query: \"SELECT COUNT(*) FROM master.dbo.sysdatabases\", expect: \"{count}\" }}\n"
        ));
    }
    let plan = rig.plan_with_steps(name, &steps);
    let log_path = rig.lab.dir().join("sql/connections.log");
    let _ = std::fs::remove_file(&log_path);
    let out = rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::read_to_string(&log_path).unwrap()
}

#[test]
fn a_verify_of_many_sql_checks_asks_the_servers_version_once() {
    let rig = Rig::iifp_on(Driver::Auto, TdsVersion::V74, &[]);
    let log = apply_sql_checks(&rig, "many-sql", 6);
    // Each check logs in on a connection of its own; with `driver: auto` one connection before
    // them only asked the server's version (PRELOGIN, no login): once for the whole run.
    let n = |what: &str| log.lines().filter(|l| *l == what).count();
    assert!(n("login7") >= 6, "{log}");
    assert_eq!(n("prelogin") - n("login7"), 1, "{log}");
}

/// A verify step of as many SQL checks as run at once: each logs in on a connection of its own,
/// and the lab's server and both clients (tiberius; unixODBC + FreeTDS for SQL Server 2000) take
/// them side by side.
fn thirty_two_sql_checks_each_log_in_and_all_answer(driver: Driver) {
    let rig = Rig::iifp(driver, &[]);
    let log = apply_sql_checks(&rig, "wide-sql", 32);
    let logins = log.lines().filter(|l| *l == "login7").count();
    assert!(logins >= 32, "{log}");
}

#[test]
fn thirty_two_sql_checks_each_log_in_and_all_answer_through_tiberius() {
    thirty_two_sql_checks_each_log_in_and_all_answer(Driver::Tds);
}

#[test]
fn thirty_two_sql_checks_each_log_in_and_all_answer_through_odbc() {
    thirty_two_sql_checks_each_log_in_and_all_answer(Driver::Odbc);
}
