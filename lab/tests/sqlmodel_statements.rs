//! Every statement the executor builds (src/adapters/sql/statements.rs, included verbatim) is
//! recognised by the SQL model and answered from its state; others fail as SQL Server would.

#[allow(dead_code)]
#[path = "../../src/adapters/sql/statements.rs"]
mod statements;

use upgrade_lab::sqlmodel::{
    Execution, Fixture, Model, Outcome, Reply, RequestKind, ResultSet, SqlType, TdsVersion, Value,
};

const DB: &str = "MicrosoftIdentityIntegrationServer";

fn run(model: &mut Model, sql: &str) -> Outcome {
    match model.execute(RequestKind::Rpc, sql) {
        Execution::Finished(o) => o,
        Execution::Backup(_) => panic!("{sql} is not a backup"),
    }
}

fn rows(model: &mut Model, sql: &str) -> ResultSet {
    let o = run(model, sql);
    match o.replies.as_slice() {
        [Reply::Rows(rs)] => rs.clone(),
        other => panic!("{sql}: expected one result set, got {other:?}"),
    }
}

fn error_number(model: &mut Model, sql: &str) -> u32 {
    run(model, sql)
        .first_error()
        .unwrap_or_else(|| panic!("{sql} should fail"))
        .number
}

fn seeded(fixture: &Fixture) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::seed(dir.path(), fixture).unwrap();
    (dir, model)
}

fn text(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn every_read_only_statement_of_the_executor_is_answered_from_the_model() {
    let (_dir, mut m) = seeded(&Fixture::miis());
    assert!(text(&rows(&mut m, statements::VERSION).rows[0][0]).contains("13.0.5026.0"));
    assert_eq!(
        rows(&mut m, statements::SERVER_PROPERTIES).rows[0][0],
        Value::from("13.0.5026.0")
    );
    assert_eq!(
        rows(&mut m, &statements::database_exists(DB)).rows,
        vec![vec![Value::from(DB)]]
    );
    assert!(rows(&mut m, &statements::database_exists("Nope"))
        .rows
        .is_empty());
    assert!(rows(&mut m, &statements::latest_backup_to(DB, "C:\\b.bak"))
        .rows
        .is_empty());
    assert_eq!(
        rows(&mut m, &statements::connector_space_counts(DB))
            .rows
            .len(),
        3
    );
    assert_eq!(
        rows(&mut m, &statements::management_agents(DB)).rows.len(),
        4
    );
    assert_eq!(
        rows(&mut m, &statements::metaverse_count(DB)).rows,
        vec![vec![Value::Int(1500)]]
    );
    let hr = rows(
        &mut m,
        &statements::connector_space_objects(DB, "HR Database"),
    );
    assert_eq!(hr.rows.len(), 1200);
    // Anchors are binary (varbinary); an employee id's is its UTF-16LE bytes in the lab.
    assert!(matches!(hr.columns[3].ty, SqlType::VarBinary(_)));
    let e00001: Vec<u8> = "E00001".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(hr.rows[0][3], Value::Bin(e00001));
    // The parents of a directory agent: its two root components and four containers; a flat
    // agent has none.
    let parents = rows(
        &mut m,
        &statements::connector_space_parents(DB, "Contoso AD"),
    );
    let mut rdns: Vec<&str> = parents.rows.iter().map(|r| text(&r[2])).collect();
    rdns.sort();
    assert_eq!(
        rdns,
        [
            "CN=Users",
            "DC=com",
            "DC=contoso",
            "OU=Groups",
            "OU=Service Accounts",
            "OU=Staff"
        ]
    );
    assert!(rows(
        &mut m,
        &statements::connector_space_parents(DB, "HR Database")
    )
    .rows
    .is_empty());
}

/// The lab stands in for SQL Server, not for the executor: the same question from another client
/// (FreeTDS `tsql`, pytds), written in its own case, brackets, spacing and `;`, gets the same answer.
#[test]
fn the_executors_questions_written_as_another_client_would_get_the_same_answers() {
    let (_dir, mut m) = seeded(&Fixture::miis());
    let as_tsql = format!(
        "select ma.ma_name,count(*) as objects\n  from [{DB}].[dbo].[mms_connectorspace] cs\n  \
         join [{DB}].[dbo].[mms_management_agent] ma on cs.ma_id=ma.ma_id\n group by ma.ma_name;"
    );
    assert_eq!(
        rows(&mut m, &as_tsql),
        rows(&mut m, &statements::connector_space_counts(DB))
    );
    let parents_as_tsql = format!(
        "select cs.object_id,cs.pobject_id,cs.rdn from [{DB}].dbo.mms_connectorspace cs join \
         [{DB}].dbo.mms_management_agent ma on cs.ma_id=ma.ma_id where ma.ma_name='Contoso AD' \
         and cs.object_id in (select child.pobject_id from {DB}.[dbo].mms_connectorspace child);"
    );
    assert_eq!(
        rows(&mut m, &parents_as_tsql),
        rows(
            &mut m,
            &statements::connector_space_parents(DB, "Contoso AD")
        )
    );
    let as_pytds = format!("SELECT name FROM [master].[dbo].[sysdatabases] WHERE name = '{DB}'");
    assert_eq!(
        rows(&mut m, &as_pytds),
        rows(&mut m, &statements::database_exists(DB))
    );
}

#[test]
fn a_dn_is_rebuilt_from_the_parent_chain_of_the_connector_space() {
    let (_dir, mut m) = seeded(&Fixture::miis());
    let rs = rows(
        &mut m,
        &statements::connector_space_objects(DB, "Contoso AD"),
    );
    let by_id: std::collections::HashMap<&str, &Vec<Value>> =
        rs.rows.iter().map(|r| (text(&r[0]), r)).collect();
    let admin = rs
        .rows
        .iter()
        .find(|r| r[2] == Value::from("CN=Administrator"))
        .unwrap();
    let mut dn = vec![text(&admin[2]).to_string()];
    let mut parent = admin[1].clone();
    while let Value::Str(p) = parent {
        let row = by_id[p.as_str()];
        dn.push(text(&row[2]).to_string());
        parent = row[1].clone();
    }
    assert_eq!(dn.join(","), "CN=Administrator,CN=Users,DC=contoso,DC=com");
}

#[test]
fn a_fim_lab_has_the_fim_database_and_count_works_on_every_modelled_table() {
    let (_dir, mut m) = seeded(&Fixture::fim());
    let db = "FIMSynchronizationService";
    assert_eq!(m.sync_database(), db);
    for (table, n) in [
        ("mms_management_agent", 4),
        ("mms_connectorspace", 4000),
        ("mms_metaverse", 1500),
    ] {
        let rs = rows(
            &mut m,
            &format!("select count(*) from [{db}].[dbo].[{table}]"),
        );
        assert_eq!(rs.rows, vec![vec![Value::Int(n)]], "{table}");
    }
    assert!(
        matches!(rows(&mut m, &format!("SELECT COUNT(*) FROM [{db}].dbo.mms_csmv_link")).rows[0][0], Value::Int(n) if n > 0)
    );
    assert_eq!(
        rows(&mut m, "SELECT COUNT(*) FROM msdb.dbo.backupset").rows,
        vec![vec![Value::Int(0)]]
    );
    assert_eq!(
        error_number(
            &mut m,
            "SELECT COUNT(*) FROM [MicrosoftIdentityIntegrationServer].dbo.mms_metaverse"
        ),
        911
    );
}

#[test]
fn statements_outside_the_executors_repertoire_get_208_or_102() {
    let (_dir, mut m) = seeded(&Fixture::miis());
    assert_eq!(error_number(&mut m, "SELECT * FROM dbo.mms_secret"), 208);
    assert_eq!(
        error_number(
            &mut m,
            &format!("SELECT COUNT(*) FROM [{DB}].dbo.mms_run_history")
        ),
        208
    );
    assert_eq!(
        error_number(&mut m, "SELECT COUNT(*) FROM master.dbo.mms_metaverse"),
        208
    );
    assert_eq!(
        error_number(&mut m, "DROP DATABASE [MicrosoftIdentityIntegrationServer]"),
        102
    );
    assert_eq!(
        error_number(
            &mut m,
            "SELECT name FROM master.dbo.sysdatabases WHERE name LIKE N'M%'"
        ),
        102
    );
    assert_eq!(error_number(&mut m, "SELECT N'unterminated"), 105);
    let o = run(
        &mut m,
        "SELECT name FROM master.dbo.sysdatabases WHERE name <> N'x'",
    );
    assert_eq!(o.first_error().unwrap().text, "Incorrect syntax near '<'.");
}

#[test]
fn sql_server_2000_mode_answers_as_2000_and_has_no_sys_views() {
    let (_dir, mut m) = seeded(&Fixture::miis());
    assert_eq!(
        error_number(&mut m, "SELECT name FROM sys.databases"),
        102,
        "2016 has sys.databases; the double does not model it"
    );
    m.set_version(TdsVersion::V71);
    assert!(text(&rows(&mut m, statements::VERSION).rows[0][0])
        .starts_with("Microsoft SQL Server  2000 - 8.00.2039"));
    assert_eq!(
        rows(&mut m, statements::SERVER_PROPERTIES).rows[0][0],
        Value::from("8.00.2039")
    );
    assert_eq!(error_number(&mut m, "SELECT name FROM sys.databases"), 208);
    let o = run(
        &mut m,
        &statements::backup_database(DB, "/tmp/x.bak", "n", true),
    );
    assert_eq!(o.first_error().unwrap().number, 155);
    assert_eq!(
        o.first_error().unwrap().text,
        "'CHECKSUM' is not a recognized BACKUP option."
    );
    assert_eq!(
        error_number(&mut m, &statements::restore_verifyonly("/tmp/x.bak", true)),
        155
    );
}

#[test]
fn the_statement_log_records_kind_and_text_of_every_statement() {
    let (dir, mut m) = seeded(&Fixture::miis());
    run(&mut m, statements::VERSION);
    let _ = m.execute(RequestKind::Batch, "SELECT 1");
    let log = std::fs::read_to_string(dir.path().join("sql/statements.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"kind": "rpc", "sql": "SELECT @@VERSION"})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"kind": "batch", "sql": "SELECT 1"})
    );
}

#[test]
fn fims_connector_space_tells_placeholders_and_obsoleted_rows_apart_and_miis_has_no_such_columns() {
    let columns = |m: &mut Model, db: &str| -> Vec<String> {
        rows(m, &statements::connector_space_columns(db))
            .rows
            .iter()
            .map(|r| text(&r[0]).to_string())
            .collect()
    };
    let (_dir, mut miis) = seeded(&Fixture::miis());
    let c = columns(&mut miis, DB);
    assert!(c.contains(&"rdn".to_string()), "{c:?}");
    assert!(!c.contains(&"object_type".to_string()), "{c:?}");
    assert_eq!(
        error_number(&mut miis, &statements::connector_space_breakdown(DB)),
        207
    );

    let fim_db = "FIMSynchronizationService";
    let (_dir, mut fim) = seeded(&Fixture::fim());
    let c = columns(&mut fim, fim_db);
    assert!(c.contains(&"object_type".to_string()) && c.contains(&"is_obsoletion".to_string()));
    let rs = rows(&mut fim, &statements::connector_space_breakdown(fim_db));
    let contoso = rs
        .rows
        .iter()
        .find(|r| text(&r[0]) == "Contoso AD")
        .expect("Contoso AD has rows");
    // DC=com and DC=contoso hold the tree only; the last three leaves were deleted in AD.
    assert_eq!(contoso[1], Value::Int(2));
    assert_eq!(contoso[2], Value::Int(3));
    let hr = rs
        .rows
        .iter()
        .find(|r| text(&r[0]) == "HR Database")
        .unwrap();
    assert_eq!((&hr[1], &hr[2]), (&Value::Int(0), &Value::Int(0)));
}
