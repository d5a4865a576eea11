//! The plan language's types: what a plan file may say, and nothing about how it is carried out.
//! The JSON Schema (`upgrade schema`) is derived from these types; validation that serde cannot
//! express (references, order, paths, secrets) lives in `validate`, not here.

use std::collections::BTreeMap;

use schemars::schema::{ObjectValidation, Schema, SchemaObject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{
    AbsPath, DottedVersion, Duration, HexPrefix, ProductCode, Secret, Sha256Hex, StepId,
};

/// A whole plan file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Version of the plan language. Only `1` exists.
    pub version: u32,
    /// Short name of the plan; names the journal file.
    pub name: String,
    /// What this plan is for, in words a reviewer reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The server being upgraded.
    pub server: Server,
    /// Where the journal and lock are kept. Default: `.upgrade/` beside the plan file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateConfig>,
    /// Locations of the tools the steps run. Windows defaults apply when absent.
    #[serde(default)]
    pub tools: Tools,
    /// The steps, in the order a reader follows them. Execution order comes from `after:` and references.
    pub steps: Vec<StepSpec>,
}

/// The server the plan acts on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// How to reach the SQL Server that holds the sync database.
    pub sql: SqlConnection,
}

/// A SQL Server connection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConnection {
    /// Host name or address; `(local)` and `.` mean this machine.
    pub host: String,
    /// Named instance (e.g. `SQLEXPRESS`); absent for the default instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// TCP port; default 1433 (or resolved through SQL Browser for a named instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How to log in.
    pub auth: SqlAuth,
    /// Which client library talks to the server: `auto` (default) reads the server's version first
    /// and uses `tds` for SQL Server 2005 and later and `odbc` for SQL Server 2000; `tds` is the
    /// built-in client (a SQL Server 2000 is refused, before any statement); `odbc` goes through an
    /// ODBC driver.
    #[serde(default)]
    pub driver: SqlDriver,
    /// Database to log in to; default: the login's default database (usually master).
    /// Steps name their database in every statement; this matters only for `verify.sql` checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// ODBC driver name for `driver: odbc` (and for `auto` when it picks ODBC). Default:
    /// `SQL Server` on Windows, `FreeTDS` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odbc_driver: Option<String>,
    /// TLS for the TDS connection. Default `not_supported` (SQL Server 2000 has none).
    #[serde(default)]
    pub encryption: Encryption,
    /// Accept the server's certificate without validation (self-signed certificates).
    #[serde(default)]
    pub trust_server_certificate: bool,
}

/// Login method.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SqlAuth {
    /// Windows (integrated) authentication as the account running `upgrade`.
    Windows,
    /// A SQL Server login.
    Sql(SqlLogin),
}

/// A SQL Server login name and where its password comes from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlLogin {
    pub user: String,
    pub password: Secret,
}

/// The client library for SQL Server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SqlDriver {
    /// Read the server's version (a TDS PRELOGIN, no login), then `odbc` for SQL Server 2000
    /// (TDS 7.1) and `tds` for SQL Server 2005 and later.
    #[default]
    Auto,
    /// The built-in client (tiberius): SQL Server 2005 and later. It cannot read SQL Server 2000's
    /// TDS 7.1 result sets, so a SQL Server 2000 is refused with a message saying so.
    Tds,
    /// An ODBC driver (`odbc_driver`): the way to SQL Server 2000.
    Odbc,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// No TLS at all (SQL Server 2000; servers without a certificate).
    #[default]
    NotSupported,
    /// TLS for the login only.
    Off,
    /// TLS for the whole session.
    Required,
}

/// Where the journal (state) and lock live.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Folder for the journal and the lock.
    pub dir: AbsPath,
}

/// Tool locations on the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    /// The key management utility. Default:
    /// `C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miiskmu: Option<AbsPath>,
    /// Windows Installer. Default: `C:\Windows\System32\msiexec.exe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msiexec: Option<AbsPath>,
    /// Registry query tool used to find installed products. Default: `C:\Windows\System32\reg.exe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<AbsPath>,
    /// Service control tool. Default: `C:\Windows\System32\sc.exe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sc: Option<AbsPath>,
}

/// One step: an id, what it must come after, and exactly one kind.
///
/// In YAML the kind is the one key besides `id`, `after` and `description`, e.g.
/// `backup_database: {...}`. The loader enforces "exactly one".
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StepSpec {
    /// Unique id, referenced by `after:` and by other steps.
    pub id: StepId,
    /// Steps that must be done before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<StepId>,
    /// What this step is for (shown in plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The kind of step and its settings.
    #[serde(flatten)]
    pub kind: StepKind,
}

pub use super::kinds::StepKind;

/// A step that waits for a tool or a service, for as long as `timeout: 90s` says or, in the old
/// spelling, `timeout_secs: 90`. Validation refuses both spellings at once and a zero wait.
pub trait Timeout {
    /// (`timeout`, `timeout_secs`) as the plan wrote them.
    fn timeout_fields(&self) -> (Option<Duration>, Option<u64>);

    /// The wait the plan asks for, in either spelling; `None` leaves the step's default.
    fn wait_limit(&self) -> Option<std::time::Duration> {
        match self.timeout_fields() {
            (Some(timeout), _) => Some(timeout.get()),
            (None, secs) => secs.map(std::time::Duration::from_secs),
        }
    }
}

macro_rules! timeout_fields {
    ($($ty:ty),*) => {$(
        impl Timeout for $ty {
            // The one reader of the old spelling.
            #[allow(deprecated)]
            fn timeout_fields(&self) -> (Option<Duration>, Option<u64>) {
                (self.timeout, self.timeout_secs)
            }
        }
    )*};
}
timeout_fields!(ExportKeys, Uninstall, Install, ServiceControl);

/// Back up a database with SQL Server's own BACKUP DATABASE, then verify the file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupDatabase {
    /// Database name, e.g. `MicrosoftIdentityIntegrationServer` or `FIMSynchronizationService`.
    pub database: String,
    /// Backup file, as a path on the SQL Server machine.
    pub to: AbsPath,
    /// Run RESTORE VERIFYONLY after the backup (default true).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// A backup older than this does not count (e.g. `24h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// Export the encryption key set with `miiskmu /e FILE /u:ACCOUNT *`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportKeys {
    /// The key tool; default `tools.miiskmu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<AbsPath>,
    /// Key file to write. It is a secret: keep it off shared folders.
    pub to: AbsPath,
    /// The sync service account whose password protects the export.
    pub account: ServiceLogin,
    /// How long to wait for the tool (default `60s`: an export takes seconds, and a tool that
    /// waits at a prompt or a dialog box should fail fast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
    /// Pass the password as miiskmu's PASSWORD argument (the syntax Microsoft's own scripts use)
    /// instead of `*` and standard input. Whether `*` reads a redirected standard input on a real
    /// server is unconfirmed; this is the documented alternative, visible to anyone who can list
    /// the server's processes while the export runs.
    #[serde(default)]
    pub secrets_on_command_line: bool,
}

/// An account as the key tool names it: `[DOMAIN\]USER` and its password.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogin {
    /// `DOMAIN\user` or `user`.
    pub user: String,
    pub password: Secret,
}

/// Copy a folder with a sha256 manifest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupFiles {
    /// Folder to copy, e.g. the rules extensions folder.
    pub from: AbsPath,
    /// Destination folder; a `SHA256SUMS` manifest is written into it.
    pub to: AbsPath,
}

/// Record connector-space object counts per management agent, and the metaverse total.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConnectorSpace {
    pub database: String,
}

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
    /// Verbose Windows Installer log (`/l*v`). Default: in the state folder.
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

/// Backoff for exit 1618.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// How many times to try in all (default 5).
    pub attempts: u32,
    /// Delay before the first retry, doubled each time (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
}

/// An installed product, by Windows Installer product code or by display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProductRef {
    /// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`
    ProductCode(ProductCode),
    /// Display name as Add/Remove Programs shows it; resolved to a code on the server.
    Name(String),
}

/// Install the new product and answer its installer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The installer: a `.msi` (run through msiexec) or a setup `.exe`.
    pub installer: AbsPath,
    /// sha256 of the installer media; checked before running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    /// The product that must be installed afterwards.
    pub detect: Detect,
    /// The installed product this install replaces, and the oldest version of it the new
    /// product's upgrade supports: while that product is installed at an older version, the step
    /// is refused (`!`) and nothing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<Upgrades>,
    /// What the installer asks, as typed answers.
    #[serde(default)]
    pub answers: Answers,
    /// How answers become installer properties for a known installer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<AnswerProfile>,
    /// Extra or overriding MSI properties; values may use `{answers.FIELD}` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// MSI transforms (`TRANSFORMS=a.mst;b.mst`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<AbsPath>,
    /// For a setup `.exe`: the argument list, each item may use `{answers.FIELD}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Text written to the installer's standard input (placeholders allowed); the way to hand a
    /// secret to an installer that reads it there instead of from its command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Allow a secret on the installer's command line (msiexec takes properties only there).
    /// Without this, a secret placeholder in `properties`/`arguments` is an error.
    #[serde(default)]
    pub secrets_on_command_line: bool,
    /// Install over the existing database (`reuse_existing: true`) without a backup of it before.
    #[serde(default)]
    pub unprotected: bool,
    /// Exit codes that count as success (default 0, 1641, 3010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_exit_codes: Option<Vec<i32>>,
    /// Verbose installer log. Default: in the state folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<AbsPath>,
    /// Retries while another installation is in progress (exit 1618).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// How long to wait for the installer (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
}

/// The product an install must leave behind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    pub product: ProductRef,
    /// Required `DisplayVersion` prefix, e.g. `3.` or `4.4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The product an install replaces and the oldest version of it that can be upgraded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upgrades {
    /// The old product, by product code or display name.
    pub product: ProductRef,
    /// Its oldest supported `DisplayVersion`, compared number by number (e.g. `4.1.3419.0`, FIM
    /// 2010 R2 SP1, for MIM 2016).
    pub min_version: DottedVersion,
}

/// Known installers whose answers map to properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerProfile {
    /// MIM 2016 Synchronization Service MSI: STORESERVER, SQLINSTANCE, SQLDB, SERVICEACCOUNT,
    /// SERVICEPASSWORD, SERVICEDOMAIN, GROUP*, ACCEPT_EULA=1, FIREWALL_CONF=1, and
    /// SQLServerStore=RemoteMachine when the store's server is not this machine (anything but
    /// `(local)`, `.`, `localhost`, `127.0.0.1` or `::1`).
    Mim2016Sync,
}

/// The installer's questions, typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_type: Option<SetupType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Store>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Groups>,
    /// Key set to import when the server has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<KeyFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupType {
    Complete,
    Custom,
}

/// Where the existing sync database is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub database: String,
    /// Answer "yes" to "use the existing database".
    pub reuse_existing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    pub user: String,
    pub domain: String,
    pub password: Secret,
}

/// The five security groups.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    pub admins: String,
    pub operators: String,
    pub joiners: String,
    pub browse: String,
    pub password_set: String,
}

/// A key file: the output of an `export_keys` step, or a path.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyFile {
    /// The id of an `export_keys` step.
    From(StepId),
    Path(AbsPath),
}

/// Bring a Windows service to a state with `sc stop` / `sc start`, e.g. the sync service stopped
/// before the connector-space snapshot and the installer, as Microsoft's upgrade runbooks do.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceControl {
    /// Service name (not its display name), e.g. `miiserver` (MIIS 2003) or
    /// `FIMSynchronizationService` (FIM 2010 / MIM 2016).
    pub name: String,
    /// The state the steps after this one need.
    pub state: WantedServiceState,
    /// How long to wait for the service to reach the state after `sc` asked it to (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
}

/// A state a `service` step can bring a service to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WantedServiceState {
    /// `sc stop NAME`; done when `sc query` says STOPPED.
    Stopped,
    /// `sc start NAME`; done when `sc query` says RUNNING.
    Running,
}

/// Checks after the upgrade.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Connector-space counts must equal a snapshot step's, per management agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_space: Option<ConnectorSpaceCheck>,
    /// Searches like the GUI's "Search Connector Space".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<Search>,
    /// Windows services that must be running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceCheck>,
    /// Commands with expected exit code and output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandCheck>,
    /// SQL queries with an expected scalar.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<SqlCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpaceCheck {
    /// The id of a `snapshot_connector_space` step.
    pub same_as: StepId,
}

/// A connector-space search: one management agent, and a DN prefix, an anchor prefix or a sub-tree.
/// In YAML the three ways are sibling keys of which exactly one is given (`SearchFields`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SearchFields", into = "SearchFields")]
pub struct Search {
    /// Database to search; default: the snapshot step's database, else the first backup's.
    pub database: Option<String>,
    pub management_agent: String,
    /// Which objects count.
    pub by: SearchBy,
    /// At least this many objects must match (default 1).
    pub min_count: u64,
}

/// The one way a search picks objects; its YAML key is the variant's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchBy {
    /// `dn_prefix`: objects whose DN starts with this text (any case).
    DnPrefix(String),
    /// `anchor_prefix`: objects whose binary anchor starts with these hex digits.
    AnchorPrefix(HexPrefix),
    /// `subtree`: the object with this DN and every object under it.
    Subtree(String),
}

/// The YAML keys of `SearchBy`, in its order.
const SEARCH_BY: [&str; 3] = ["dn_prefix", "anchor_prefix", "subtree"];

/// A connector-space search as the plan file writes it: one management agent, and exactly one of
/// `dn_prefix`, `anchor_prefix` or `subtree` (sibling keys).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchFields {
    /// Database to search; default: the snapshot step's database, else the first backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    management_agent: String,
    /// Objects whose DN starts with this text (any case), e.g. `CN=Administrator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dn_prefix: Option<String>,
    /// Hex digits the object's binary anchor starts with (any case, `0x` allowed), e.g. `0x0A1B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchor_prefix: Option<HexPrefix>,
    /// The DN of a sub-tree: the object itself and every object under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtree: Option<String>,
    /// At least this many objects must match (default 1).
    #[serde(default = "default_one")]
    min_count: u64,
}

impl TryFrom<SearchFields> for Search {
    type Error = String;

    fn try_from(f: SearchFields) -> Result<Search, String> {
        let by = match (f.dn_prefix, f.anchor_prefix, f.subtree) {
            (Some(dn), None, None) => SearchBy::DnPrefix(dn),
            (None, Some(anchor), None) => SearchBy::AnchorPrefix(anchor),
            (None, None, Some(tree)) => SearchBy::Subtree(tree),
            (dn, anchor, tree) => {
                let given: Vec<&str> = [dn.is_some(), anchor.is_some(), tree.is_some()]
                    .into_iter()
                    .zip(SEARCH_BY)
                    .filter_map(|(set, name)| set.then_some(name))
                    .collect();
                return Err(format!(
                    "a search needs exactly one of dn_prefix, anchor_prefix or subtree; found {}",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(" and ")
                    }
                ));
            }
        };
        Ok(Search {
            database: f.database,
            management_agent: f.management_agent,
            by,
            min_count: f.min_count,
        })
    }
}

impl From<Search> for SearchFields {
    fn from(s: Search) -> SearchFields {
        let (mut dn_prefix, mut anchor_prefix, mut subtree) = (None, None, None);
        match s.by {
            SearchBy::DnPrefix(dn) => dn_prefix = Some(dn),
            SearchBy::AnchorPrefix(anchor) => anchor_prefix = Some(anchor),
            SearchBy::Subtree(tree) => subtree = Some(tree),
        }
        SearchFields {
            database: s.database,
            management_agent: s.management_agent,
            dn_prefix,
            anchor_prefix,
            subtree,
            min_count: s.min_count,
        }
    }
}

/// `SearchFields`' object with `oneOf` the three keys, each alternative requiring its own: exactly
/// one is given. (The keys stay in the object's `properties`, so `additionalProperties: false`
/// still admits them.)
impl JsonSchema for Search {
    fn schema_name() -> String {
        "Search".to_string()
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> Schema {
        let mut schema = match SearchFields::json_schema(gen) {
            Schema::Object(object) => object,
            other => return other,
        };
        schema.subschemas().one_of = Some(SEARCH_BY.iter().map(|k| requiring(&[k])).collect());
        schema.into()
    }
}

/// A JSON Schema that says only "these keys are present", for `oneOf` and `not` rules over an
/// object's keys.
pub(crate) fn requiring(keys: &[&str]) -> Schema {
    SchemaObject {
        object: Some(Box::new(ObjectValidation {
            required: keys.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
    .into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheck {
    /// Service name, e.g. `miiserver` or `FIMSynchronizationService`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// Program and arguments.
    pub run: Vec<String>,
    /// Expected exit code (default 0).
    #[serde(default)]
    pub exit_code: i32,
    /// Regular expression the standard output must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_matches: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    pub database: String,
    /// A query returning one value.
    pub query: String,
    /// The value, as text.
    pub expect: String,
}

fn default_true() -> bool {
    true
}

fn default_one() -> u64 {
    1
}
