//! What a fresh lab must look like for a plan to make sense on it (flavour, SQL Server version,
//! service account, product names and codes), read from the typed plan. Reads only the plan.

use upgrade_plan::{Plan, ProductRef, SqlDriver, StepKind};

use crate::layout::{Flavour, InitOptions};

/// What the lab must look like for a plan to make sense on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFacts {
    pub flavour: Flavour,
    /// The lab's SQL Server answers as SQL Server 2000 (TDS 7.1): the plan says `driver: odbc`,
    /// or leaves the client to `auto` (the default) on an IIFP server, whose upgrade to MIIS 2003
    /// runs on SQL Server 2000. Otherwise it answers as SQL Server 2016 (TDS 7.4).
    pub sql2000: bool,
    /// (domain, user) of the sync service account.
    pub account: Option<(String, String)>,
    pub uninstall_code: Option<String>,
    pub uninstall_name: Option<String>,
    pub detect_code: Option<String>,
    pub detect_name: Option<String>,
    pub detect_version: Option<String>,
}

/// A product reference as (product code, display name), the one it names set.
fn code_and_name(product: &ProductRef) -> (Option<String>, Option<String>) {
    match product {
        ProductRef::ProductCode(code) => (Some(code.to_string()), None),
        ProductRef::Name(name) => (None, Some(name.clone())),
    }
}

/// Reads the facts the lab must match from a plan.
pub fn plan_facts(plan: &Plan) -> PlanFacts {
    let mut facts = PlanFacts {
        flavour: Flavour::Iifp,
        sql2000: false,
        account: None,
        uninstall_code: None,
        uninstall_name: None,
        detect_code: None,
        detect_name: None,
        detect_version: None,
    };
    let fim = |database: &str| database.eq_ignore_ascii_case(Flavour::Fim2010r2.database());
    for step in &plan.steps {
        match &step.kind {
            StepKind::BackupDatabase(b) if fim(&b.database) => facts.flavour = Flavour::Fim2010r2,
            StepKind::SnapshotConnectorSpace(s) if fim(&s.database) => {
                facts.flavour = Flavour::Fim2010r2
            }
            StepKind::BackupDatabase(_) | StepKind::SnapshotConnectorSpace(_) => {}
            StepKind::ExportKeys(e) => {
                let user = &e.account.user;
                facts.account = facts.account.or_else(|| {
                    Some(match user.split_once('\\') {
                        Some((d, u)) => (d.to_string(), u.to_string()),
                        None => ("LAB".to_string(), user.clone()),
                    })
                });
            }
            StepKind::Uninstall(u) => {
                let (code, name) = code_and_name(&u.product);
                facts.uninstall_code = facts.uninstall_code.or(code);
                facts.uninstall_name = facts.uninstall_name.or(name);
            }
            StepKind::Install(i) => {
                // The installer's service account is the one the new product runs as: it wins.
                if let Some(a) = &i.answers.service_account {
                    facts.account = Some((a.domain.clone(), a.user.clone()));
                }
                let (code, name) = code_and_name(&i.detect.product);
                facts.detect_code = facts.detect_code.or(code);
                facts.detect_name = facts.detect_name.or(name);
                facts.detect_version = facts.detect_version.or(i.detect.version.clone());
            }
            StepKind::BackupFiles(_) | StepKind::Verify(_) | StepKind::Service(_) => {}
        }
    }
    // Without an uninstall (an in-place upgrade), the product the install upgrades is the old one.
    for step in &plan.steps {
        if let StepKind::Install(i) = &step.kind {
            if let Some(upgrades) = &i.upgrades {
                let (code, name) = code_and_name(&upgrades.product);
                facts.uninstall_code = facts.uninstall_code.or(code);
                facts.uninstall_name = facts.uninstall_name.or(name);
            }
        }
    }
    facts.sql2000 = match plan.server.sql.driver {
        SqlDriver::Odbc => true,
        SqlDriver::Auto => facts.flavour == Flavour::Iifp,
        SqlDriver::Tds => false,
    };
    facts
}

/// A version that starts with the plan's required prefix (`3.` -> `3.0.0.0`), or the lab's own.
pub fn version_for(prefix: &str, lab_default: &str) -> String {
    if lab_default.starts_with(prefix) {
        return lab_default.to_string();
    }
    let mut parts: Vec<&str> = prefix
        .trim_end_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    while parts.len() < 4 {
        parts.push("0");
    }
    parts.join(".")
}

/// Lab init options that make a fresh lab match the plan's names.
pub fn init_options(facts: &PlanFacts) -> InitOptions {
    let mut o = InitOptions::new(facts.flavour);
    o.account = facts.account.clone();
    o.installed_code = facts.uninstall_code.clone();
    o.installed_name = facts.uninstall_name.clone();
    o.new_code = facts.detect_code.clone();
    o.new_name = facts.detect_name.clone();
    o.new_version = facts
        .detect_version
        .as_deref()
        .map(|p| version_for(p, &facts.flavour.new_product().version));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearse::test_plans::{plan_of, real_plan, real_plan_with};

    #[test]
    fn the_plans_facts_shape_the_lab() {
        let facts = plan_facts(&real_plan());
        assert_eq!(facts.flavour, Flavour::Iifp);
        assert!(facts.sql2000);
        assert_eq!(facts.account, Some(("CONTOSO".into(), "svc-miis".into())));
        assert_eq!(
            facts.uninstall_code.as_deref(),
            Some("{11111111-2222-3333-4444-555555555555}")
        );
        assert_eq!(
            facts.detect_name.as_deref(),
            Some("Microsoft Identity Integration Server 2003")
        );
        let o = init_options(&facts);
        assert_eq!(o.new_version.as_deref(), Some("3.3.0.0"));
        let fim = plan_facts(&plan_of(&[
            r"{id: a, backup_database: {database: FIMSynchronizationService, to: 'D:\x'}}",
        ]));
        assert_eq!(fim.flavour, Flavour::Fim2010r2);
        assert_eq!(version_for("4.4.1", "3.3.0.0"), "4.4.1.0");
        let in_place = plan_facts(&plan_of(&[
            r"{id: a, install: {installer: 'E:\mim.msi', detect: {product: {name: MIM}},
               upgrades: {product: {name: FIM R2}, min_version: '4.1.3419.0'}}}",
        ]));
        assert_eq!(
            in_place.uninstall_name.as_deref(),
            Some("FIM R2"),
            "the upgraded product is the lab's old one"
        );
    }

    #[test]
    fn a_plan_that_leaves_the_client_to_auto_rehearses_on_its_procedure_s_sql_server() {
        let iifp = real_plan_with(", driver: odbc", "");
        assert!(plan_facts(&iifp).sql2000);
        let tds = real_plan_with("driver: odbc", "driver: tds");
        assert!(!plan_facts(&tds).sql2000);
        let mut fim = plan_of(&[
            r"{id: a, backup_database: {database: FIMSynchronizationService, to: 'D:\x'}}",
        ]);
        fim.server.sql.driver = SqlDriver::Auto;
        assert!(!plan_facts(&fim).sql2000);
    }
}
