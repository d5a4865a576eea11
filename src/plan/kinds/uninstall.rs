//! `uninstall`: the plan's removal of the old product, and what must protect the server before it.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, PathOn, Problems, SecretField, Where};
use crate::graph;
use crate::graph::Reference;
use crate::types::*;
use crate::validate::{
    check_exit_codes, check_remote_log, check_retry, check_timeout, TOOL_AT_ONCE,
};
use crate::values::*;

/// Remove an installed product with Windows Installer. The database is never touched.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Uninstall {
    /// Which product.
    pub product: ProductRef,
    /// Extra msiexec arguments, e.g. public properties the product's uninstall understands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Exit codes that count as success (default 0, 1605, 1641, 3010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_exit_codes: Option<Vec<i32>>,
    /// Verbose Windows Installer log (`/l*v`), a path on the sync server. Default: in the state
    /// folder (with `server.connect: winrm` there is no default: the state folder is the admin
    /// host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<AbsPath>,
    /// Run without a database backup, key export and extensions backup before it.
    /// Only for servers whose data is protected some other way.
    #[serde(default)]
    pub unprotected: bool,
    /// Retries while another installation is in progress (exit 1618).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// How long to wait for msiexec (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
}

impl KindSpec for Uninstall {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        self.log
            .iter()
            .map(|log| PathField::new("log", log, PathOn::Server))
            .collect()
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_uninstall(w.plan, w.index, self, w.at, p);
        check_remote_log(self.log.as_ref(), w, p);
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
}
