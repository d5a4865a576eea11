//! Checks a structurally sound plan for what serde cannot express: ids and references, order and
//! cycles, the protection an uninstall needs, secrets in installer templates, and per-field rules
//! (the characters names may hold are `names`' job).
//! It reports every problem by field path; positions are added by the loader. It never resolves
//! a secret or touches the server.

use std::collections::HashMap;

use super::graph;
use super::kinds::Where;
use super::names;
use super::placeholders;
use super::types::*;
use super::values::LITERAL_SECRET;

/// One problem, by field path (e.g. `steps[3].uninstall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// The problems found so far; each kind's `KindSpec::validate` adds its own.
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Every semantic problem in `plan`.
pub fn check(plan: &Plan) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if plan.version != 1 {
        p.add(
            "version",
            format!(
                "unsupported plan language version {}; this program knows version 1",
                plan.version
            ),
        );
    }
    if plan.name.is_empty()
        || !plan
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        p.add(
            "name",
            "a plan name is letters, digits, `-`, `_` or `.` (it names the journal file)",
        );
    }
    check_connection(&plan.server.sql, &mut p);
    p.0.extend(names::check(plan));
    if plan.steps.is_empty() {
        p.add("steps", "a plan needs at least one step");
    }
    check_ids_and_references(plan, &mut p);
    if let Err(cycle) = graph::order(plan) {
        let ids = graph::index_by_id(plan);
        let first = cycle
            .first()
            .and_then(|id| ids.get(id))
            .copied()
            .unwrap_or(0);
        let names: Vec<&str> = cycle.iter().map(|id| id.as_str()).collect();
        p.add(
            format!("steps[{first}]"),
            format!(
                "steps depend on each other in a cycle: {}",
                names.join(" -> ")
            ),
        );
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let at = format!("steps[{i}].{}", step.kind.name());
        let here = Where {
            plan,
            index: i,
            at: &at,
        };
        step.kind.spec().validate(&here, &mut p);
    }
    p.0
}

fn check_connection(sql: &SqlConnection, p: &mut Problems) {
    if sql.host.trim().is_empty() {
        p.add(
            "server.sql.host",
            "a host name is needed; `(local)` means this machine",
        );
    }
    if sql.odbc_driver.is_some() && sql.driver == SqlDriver::Tds {
        p.add(
            "server.sql.odbc_driver",
            "`odbc_driver` applies only with `driver: odbc` or `driver: auto`",
        );
    }
}

fn check_ids_and_references(plan: &Plan, p: &mut Problems) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if let Some(first) = first_index.get(step.id.as_str()) {
            p.add(
                format!("steps[{i}].id"),
                format!(
                    "duplicate step id `{}` (already used by steps[{first}])",
                    step.id
                ),
            );
        } else {
            first_index.insert(step.id.as_str(), i);
        }
    }
    for (i, step) in plan.steps.iter().enumerate() {
        for (k, dep) in step.after.iter().enumerate() {
            let path = format!("steps[{i}].after[{k}]");
            if dep == &step.id {
                p.add(path, format!("step `{dep}` cannot come after itself"));
            } else if !first_index.contains_key(dep.as_str()) {
                p.add(path, format!("no step has the id `{dep}`"));
            }
        }
        for r in step.kind.spec().references() {
            let path = format!("steps[{i}].{}", r.field);
            match first_index.get(r.target.as_str()) {
                None => p.add(path, format!("no step has the id `{}`", r.target)),
                Some(&j) if plan.steps[j].kind.name() != r.required_kind => p.add(
                    path,
                    format!(
                        "`{}` is a {} step, but this must name a step of kind {}",
                        r.target,
                        plan.steps[j].kind.name(),
                        r.required_kind
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Whether a folder path's last component is `Extensions` (any case, either slash).
fn is_extensions_folder(path: &str) -> bool {
    path.trim_end_matches(['\\', '/'])
        .rsplit(['\\', '/'])
        .next()
        .is_some_and(|last| last.eq_ignore_ascii_case("Extensions"))
}

/// What an uninstall needs before it: (what, which kind, is this step one).
type Need = (&'static str, &'static str, fn(&StepKind) -> bool);

pub(crate) fn check_uninstall(
    plan: &Plan,
    index: usize,
    u: &Uninstall,
    at: &str,
    p: &mut Problems,
) {
    check_exit_codes(u.accept_exit_codes.as_deref(), at, p);
    check_retry(u.retry.as_ref(), at, p);
    check_timeout(u, at, TOOL_AT_ONCE, p);
    if u.unprotected {
        return;
    }
    let before = graph::prerequisites(plan, index);
    let kinds: Vec<&StepKind> = before.iter().map(|&j| &plan.steps[j].kind).collect();
    let mut missing = Vec::new();
    let sync = sync_database(plan);
    let backs_up_sync =
        |k: &StepKind| matches!(k, StepKind::BackupDatabase(b) if sync.is(&b.database));
    if !kinds.iter().any(|k| backs_up_sync(k)) {
        let hint = match plan.steps.iter().find(|s| backs_up_sync(&s.kind)) {
            Some(s) => format!(
                "; step `{}` is one, but the uninstall does not come after it",
                s.id
            ),
            None => match kinds.iter().find_map(|k| match k {
                StepKind::BackupDatabase(b) => Some(&b.database),
                _ => None,
            }) {
                Some(other) => format!("; a backup of `{other}` does not protect it"),
                None => String::new(),
            },
        };
        missing.push(format!(
            "a backup of the sync database {} (backup_database; {}{hint})",
            sync.names(),
            sync.why
        ));
    }
    let needs: [Need; 2] = [
        ("a key export", "export_keys", |k| {
            matches!(k, StepKind::ExportKeys(_))
        }),
        (
            "a copy of the Extensions folder",
            "backup_files from ...\\Extensions",
            |k| matches!(k, StepKind::BackupFiles(b) if is_extensions_folder(b.from.as_str())),
        ),
    ];
    for (what, kind, is) in needs {
        if kinds.iter().any(|k| is(k)) {
            continue;
        }
        // Say so when the plan has such a step that the uninstall merely does not wait for.
        match plan.steps.iter().find(|s| is(&s.kind)) {
            Some(s) => missing.push(format!(
                "{what} ({kind}; step `{}` is one, but the uninstall does not come after it)",
                s.id
            )),
            None => missing.push(format!("{what} ({kind})")),
        }
    }
    if !missing.is_empty() {
        p.add(
            at,
            format!(
                "an uninstall must come after a database backup, a key export and a copy of the \
                 Extensions folder (list them in `after:`), or say `unprotected: true`. Missing: {}",
                missing.join("; ")
            ),
        );
    }
}

/// The engine's database, as Microsoft names it when the plan does not say (MIIS 2003 / IIFP, then
/// FIM 2010 / MIM 2016 Synchronization Service).
pub const PRODUCT_DATABASES: [&str; 2] = [
    "MicrosoftIdentityIntegrationServer",
    "FIMSynchronizationService",
];

/// SQL Server's own databases: never the sync database.
const SYSTEM_DATABASES: [&str; 4] = ["master", "msdb", "model", "tempdb"];

/// Which database an uninstall must find backed up, and where the plan says so.
struct SyncDatabase {
    /// Any of these (more than one only for the product defaults).
    names: Vec<String>,
    why: String,
}

impl SyncDatabase {
    fn is(&self, database: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(database))
    }

    fn names(&self) -> String {
        let quoted: Vec<String> = self.names.iter().map(|n| format!("`{n}`")).collect();
        quoted.join(" or ")
    }
}

/// The sync database is the one the new product takes over (an install's store with
/// `reuse_existing`), else the one the connector-space snapshot reads, else `server.sql.database`
/// unless it is a system database, else the products' default names.
fn sync_database(plan: &Plan) -> SyncDatabase {
    let named = plan
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| match &s.kind {
            StepKind::Install(install) => install
                .answers
                .store
                .as_ref()
                .filter(|st| st.reuse_existing)
                .map(|st| {
                    (
                        st.database.clone(),
                        format!("the database steps[{i}].install reuses"),
                    )
                }),
            _ => None,
        });
    let named = named.or_else(|| {
        plan.steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| match &s.kind {
                StepKind::SnapshotConnectorSpace(c) => Some((
                    c.database.clone(),
                    format!("the database steps[{i}].snapshot_connector_space reads"),
                )),
                _ => None,
            })
    });
    let named = named.or_else(|| {
        plan.server
            .sql
            .database
            .clone()
            .filter(|d| !SYSTEM_DATABASES.iter().any(|s| s.eq_ignore_ascii_case(d)))
            .map(|d| (d, "server.sql.database".to_string()))
    });
    match named {
        Some((name, at)) => SyncDatabase {
            names: vec![name],
            why: format!("{at}; the uninstall leaves it to the next product"),
        },
        None => SyncDatabase {
            names: PRODUCT_DATABASES.iter().map(|n| n.to_string()).collect(),
            why: "the products' default name; name it in server.sql.database if yours differs"
                .into(),
        },
    }
}

/// An install that takes over the existing database (the in-place upgrade itself, or the new
/// product after an uninstall) must come after a backup of that database, unless waived.
pub(crate) fn check_takeover(
    plan: &Plan,
    index: usize,
    install: &Install,
    at: &str,
    p: &mut Problems,
) {
    let Some(store) = install.answers.store.as_ref().filter(|s| s.reuse_existing) else {
        return;
    };
    if install.unprotected {
        return;
    }
    let backs_up = |k: &StepKind| matches!(k, StepKind::BackupDatabase(b) if b.database.eq_ignore_ascii_case(&store.database));
    if graph::prerequisites(plan, index)
        .iter()
        .any(|&j| backs_up(&plan.steps[j].kind))
    {
        return;
    }
    let hint = match plan.steps.iter().find(|s| backs_up(&s.kind)) {
        Some(s) => format!(
            "; step `{}` backs it up, but the install does not come after it",
            s.id
        ),
        None => String::new(),
    };
    p.add(
        at,
        format!(
            "an install that reuses the existing database `{}` must come after a backup_database of it (list it in `after:`), or say `unprotected: true`{hint}",
            store.database
        ),
    );
}

fn check_exit_codes(codes: Option<&[i32]>, at: &str, p: &mut Problems) {
    if codes.is_some_and(|c| c.is_empty()) {
        p.add(
            format!("{at}.accept_exit_codes"),
            "list at least one exit code, or leave accept_exit_codes out for the default",
        );
    }
}

fn check_retry(retry: Option<&Retry>, at: &str, p: &mut Problems) {
    if retry.is_some_and(|r| r.attempts == 0) {
        p.add(
            format!("{at}.retry.attempts"),
            "attempts counts every try, so it must be at least 1",
        );
    }
}

/// Why a tool's timeout cannot be zero.
pub(crate) const TOOL_AT_ONCE: &str = "a timeout of 0 seconds would stop the tool at once";

/// A step's wait is `timeout` or its old spelling `timeout_secs`, not both, and never zero
/// (`why_not_zero` says what a zero wait would do in this kind of step).
pub(crate) fn check_timeout(spec: &impl Timeout, at: &str, why_not_zero: &str, p: &mut Problems) {
    let (timeout, secs) = spec.timeout_fields();
    if timeout.is_some() && secs.is_some() {
        p.add(
            format!("{at}.timeout_secs"),
            "`timeout` and `timeout_secs` both say how long to wait; keep `timeout` (e.g. \
             `timeout: 90s`) and remove `timeout_secs`, its old spelling in seconds",
        );
    }
    if timeout.is_some_and(|t| t.get().is_zero()) {
        p.add(format!("{at}.timeout"), why_not_zero);
    }
    if secs == Some(0) {
        p.add(format!("{at}.timeout_secs"), why_not_zero);
    }
}

/// A service name as the Service Control Manager takes it: CreateService (Win32 API) documents at
/// most 256 characters and no `/` or `\\`.
pub(crate) fn check_service(s: &ServiceControl, at: &str, p: &mut Problems) {
    let name = s.name.trim();
    if name.is_empty() {
        p.add(
            format!("{at}.name"),
            "name the service, e.g. miiserver or FIMSynchronizationService",
        );
    } else if name.len() != s.name.len() {
        p.add(
            format!("{at}.name"),
            "a service name has no leading or trailing spaces",
        );
    } else if s.name.contains(['/', '\\']) || s.name.chars().count() > 256 {
        p.add(
            format!("{at}.name"),
            "a service name is at most 256 characters without `/` or `\\` (the service's name, \
             not its display name or its program's path)",
        );
    }
    check_timeout(
        s,
        at,
        "a wait of 0 seconds could never see the service get there",
        p,
    );
}

#[derive(PartialEq)]
enum InstallerType {
    Msi,
    Exe,
}

pub(crate) fn check_install(install: &Install, at: &str, p: &mut Problems) {
    check_exit_codes(install.accept_exit_codes.as_deref(), at, p);
    check_retry(install.retry.as_ref(), at, p);
    check_timeout(install, at, TOOL_AT_ONCE, p);
    let lower = install.installer.as_str().to_ascii_lowercase();
    let kind = if lower.ends_with(".msi") {
        Some(InstallerType::Msi)
    } else if lower.ends_with(".exe") {
        Some(InstallerType::Exe)
    } else {
        p.add(
            format!("{at}.installer"),
            "the installer must be a .msi package or a setup .exe",
        );
        None
    };
    match kind {
        Some(InstallerType::Exe) => {
            let msi_only = [
                ("properties", !install.properties.is_empty()),
                ("transforms", !install.transforms.is_empty()),
                ("profile", install.profile.is_some()),
            ];
            for (field, used) in msi_only {
                if used {
                    p.add(
                        format!("{at}.{field}"),
                        format!("`{field}` applies only to a .msi installer; a setup .exe takes `arguments`"),
                    );
                }
            }
        }
        Some(InstallerType::Msi) if install.arguments.is_some() => p.add(
            format!("{at}.arguments"),
            "`arguments` is for a setup .exe; a .msi takes `properties`, `transforms` or a `profile`",
        ),
        _ => {}
    }
    if install.profile == Some(AnswerProfile::Mim2016Sync) {
        let a = &install.answers;
        let missing: Vec<&str> = [
            ("answers.store", a.store.is_none()),
            ("answers.service_account", a.service_account.is_none()),
            ("answers.groups", a.groups.is_none()),
        ]
        .into_iter()
        .filter(|(_, absent)| *absent)
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            p.add(
                format!("{at}.profile"),
                format!(
                    "profile `mim2016_sync` needs answers.store, answers.service_account and answers.groups; missing: {}",
                    missing.join(", ")
                ),
            );
        }
        if !install.secrets_on_command_line {
            p.add(
                format!("{at}.secrets_on_command_line"),
                "profile `mim2016_sync` passes SERVICEPASSWORD as an MSI property, and msiexec takes \
                 properties only on its command line; set `secrets_on_command_line: true` to accept that",
            );
        }
    }
    for (name, value) in &install.properties {
        let path = format!("{at}.properties.{name}");
        check_template(value, &path, true, install.secrets_on_command_line, p);
        if name.to_ascii_uppercase().contains("PASSWORD") && !is_placeholder_only(value) {
            p.add(path, LITERAL_SECRET);
        }
    }
    for (k, arg) in install.arguments.iter().flatten().enumerate() {
        let path = format!("{at}.arguments[{k}]");
        check_template(arg, &path, true, install.secrets_on_command_line, p);
        if literal_password_argument(arg) {
            p.add(path, LITERAL_SECRET);
        }
    }
    if let Some(stdin) = &install.stdin {
        check_template(stdin, &format!("{at}.stdin"), false, true, p);
    }
}

/// A value that is nothing but placeholders (or empty): `{answers.service_account.password}`.
fn is_placeholder_only(value: &str) -> bool {
    let mut rest = value.to_string();
    for occ in placeholders::find(value).iter().rev() {
        rest.replace_range(occ.start..occ.end, "");
    }
    rest.trim().is_empty()
}

/// `/servicepassword:Secret1` or `PASSWORD=Secret1`: a password switch with a literal value.
/// `*` (the tool prompts or reads stdin) and placeholders are fine.
fn literal_password_argument(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    let Some(pos) = lower.find("password") else {
        return false;
    };
    let after = &arg[pos + "password".len()..];
    let Some(value) = after.strip_prefix([':', '=']) else {
        return false;
    };
    let value = value.trim_matches('"');
    !(value.is_empty() || value == "*" || is_placeholder_only(value))
}

fn check_template(
    text: &str,
    path: &str,
    on_command_line: bool,
    secrets_allowed: bool,
    p: &mut Problems,
) {
    for occ in placeholders::find(text) {
        match occ.known() {
            None => p.add(
                path,
                format!(
                    "unknown placeholder `{{{}}}`; known placeholders: {}",
                    occ.name,
                    placeholders::KNOWN
                        .iter()
                        .map(|k| format!("{{{}}}", k.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(known) if known.secret && on_command_line && !secrets_allowed => p.add(
                path,
                format!(
                    "`{{{}}}` is a secret and would appear on the installer's command line, where other \
                     users of the server can read it; give it through `stdin` if the installer reads it \
                     there, or set `secrets_on_command_line: true` if the installer takes it only on its \
                     command line (msiexec takes properties only there)",
                    occ.name
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The snapshot a verify step compares with must be taken before every uninstall or install that
/// the verify comes after; otherwise, on a fresh state or a lost journal, it could be taken on the
/// upgraded server and verify would compare the new server with itself.
pub(crate) fn check_snapshot_before_upgrade(
    plan: &Plan,
    index: usize,
    v: &Verify,
    at: &str,
    p: &mut Problems,
) {
    let Some(cs) = &v.connector_space else {
        return;
    };
    let ids = graph::index_by_id(plan);
    let Some(&snapshot) = ids.get(&cs.same_as) else {
        return; // reported as an unknown reference
    };
    for j in graph::prerequisites(plan, index) {
        let upgrades = matches!(
            plan.steps[j].kind,
            StepKind::Uninstall(_) | StepKind::Install(_)
        );
        if upgrades && !graph::prerequisites(plan, j).contains(&snapshot) {
            p.add(
                format!("{at}.connector_space.same_as"),
                format!(
                    "snapshot `{}` must be taken before `{}` (list it in that step's `after:`): \
                     taken after it, it would describe the upgraded server and verify would \
                     compare the new server with itself",
                    cs.same_as, plan.steps[j].id
                ),
            );
        }
    }
}

pub(crate) fn check_verify(v: &Verify, at: &str, p: &mut Problems) {
    if v.connector_space.is_none()
        && v.search.is_empty()
        && v.services.is_empty()
        && v.commands.is_empty()
        && v.sql.is_empty()
    {
        p.add(
            at,
            "a verify step needs at least one check: connector_space, search, services, commands or sql",
        );
    }
    for (k, c) in v.commands.iter().enumerate() {
        if c.run.is_empty() {
            p.add(
                format!("{at}.commands[{k}].run"),
                "`run` needs at least the program to run",
            );
        }
        if let Some(pattern) = &c.output_matches {
            if let Err(e) = regex::Regex::new(pattern) {
                let first_line = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                p.add(
                    format!("{at}.commands[{k}].output_matches"),
                    format!("not a valid regular expression: {first_line}"),
                );
            }
        }
    }
    for (k, q) in v.sql.iter().enumerate() {
        let query = q.query.trim_start();
        let is_select = query.len() >= 6 && query[..6].eq_ignore_ascii_case("select");
        if !is_select || query.trim_end().trim_end_matches(';').contains(';') {
            p.add(
                format!("{at}.sql[{k}].query"),
                "a SQL check is one SELECT statement (checks must not change the server)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extensions_folder_is_recognised_in_any_case_and_slash() {
        assert!(is_extensions_folder(
            r"C:\Program Files\Microsoft Identity Integration Server\Extensions"
        ));
        assert!(is_extensions_folder(r"C:\MIIS\extensions\"));
        assert!(is_extensions_folder("/srv/miis/EXTENSIONS"));
        assert!(!is_extensions_folder(r"C:\MIIS\Extensions\Old"));
    }

    #[test]
    fn password_switches_with_literal_values_are_recognised() {
        assert!(literal_password_argument("/servicepassword:Secret1"));
        assert!(!literal_password_argument("/servicepassword:*"));
        assert!(!literal_password_argument(
            "/servicepassword:{answers.service_account.password}"
        ));
        assert!(!literal_password_argument("/passwordset:MIISPasswordSet"));
    }
}
