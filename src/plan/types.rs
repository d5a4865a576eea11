//! The plan language's types: what a plan file may say, and nothing about how it is carried out.
//! The JSON Schema (`upgrade schema`) is derived from these types; validation that serde cannot
//! express (references, order, paths, secrets) lives in `validate`, not here.

use schemars::schema::{ObjectValidation, Schema, SchemaObject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{AbsPath, Duration, ProductCode, Secret, StepId};

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
    /// The sync server's name (computer name, DNS name or IP address). Default: this machine,
    /// where `upgrade` runs. With `connect: winrm` and no `endpoint`, `upgrade` connects to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How `upgrade` reaches the sync server's programs and files: `local` (the default:
    /// `upgrade` runs on the sync server itself) or `winrm: {...}` (`upgrade` runs on an admin
    /// host and acts on the sync server over WinRM). The SQL connection (`sql`) is direct either
    /// way.
    #[serde(default, skip_serializing_if = "Connect::is_local")]
    pub connect: Connect,
    /// How to reach the SQL Server that holds the sync database.
    pub sql: SqlConnection,
}

/// How `upgrade` reaches the sync server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Connect {
    /// `upgrade` runs on the sync server itself: its programs and files are this machine's.
    #[default]
    Local,
    /// `upgrade` runs on an admin host (Windows 7 / Server 2008 R2 or later, or Linux) and acts
    /// on the sync server over WinRM (WS-Management). The server needs WinRM listening: on by
    /// default from Windows Server 2012; Windows Server 2003 SP2 and 2008 need Windows Management
    /// Framework 2.0 (KB968930) and `winrm quickconfig`. Every path a step uses on the sync server
    /// is then a Windows path on that server; backups are brought back to the admin host.
    Winrm(WinrmConnect),
}

impl Connect {
    pub fn is_local(&self) -> bool {
        matches!(self, Connect::Local)
    }

    /// The WinRM settings, when the plan acts on the server over WinRM.
    pub fn winrm(&self) -> Option<&WinrmConnect> {
        match self {
            Connect::Local => None,
            Connect::Winrm(w) => Some(w),
        }
    }
}

/// Where and how to log on to the sync server's WinRM service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WinrmConnect {
    /// The WinRM listener: `server`, `server:port` or `http[s]://server[:port]/wsman`.
    /// Default: `server.host` on WinRM's default port (5985 for HTTP, 5986 for HTTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How to log on: `ntlm` (works with Windows' default listener: over HTTP every message is
    /// encrypted), `kerberos` (a domain account; over HTTP every message is encrypted; needs the
    /// admin host's GSSAPI, MIT Kerberos' libgssapi-krb5-2, and is not available in the Windows
    /// build), `basic` (HTTPS only: it sends the password with every request).
    pub auth: WinrmAuth,
    /// The account to log on with, an administrator of the sync server: `user` or `COMPUTER\user`
    /// for a local account, `DOMAIN\user` for a domain account. Kerberos: `user@REALM`, the realm
    /// being the domain's DNS name in capitals (`admin@CORP.EXAMPLE.COM`), or `user` in the
    /// default realm of the admin host's krb5.conf.
    pub user: String,
    /// That account's password: `{env: NAME}`, `{file: PATH}` or `{prompt: true}`, never a
    /// literal. It never reaches the server's disk or a command line. Needed by `ntlm` and
    /// `basic`; `kerberos` without it uses the ticket cache of the person running `upgrade`
    /// (after `kinit user@REALM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Connect over HTTPS (the listener's certificate is checked) instead of HTTP. Default false.
    #[serde(default)]
    pub https: bool,
    /// A PEM file on the admin host with the CA certificate (or the listener's self-signed
    /// certificate) to trust instead of the system's roots. HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<AbsPath>,
    /// How long to wait for the connection, the logon and each WinRM operation (a command itself
    /// waits as long as its step says). Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl WinrmConnect {
    /// Where the plan asks for the WinRM password.
    pub const PASSWORD: &'static str = "server.connect.winrm.password";
}

/// How to log on to WinRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WinrmAuth {
    /// NTLM (Windows' Negotiate without Kerberos); over HTTP every message is encrypted.
    Ntlm,
    /// Kerberos, through the admin host's GSSAPI (Linux and other Unix admin hosts); over HTTP
    /// every message is encrypted. With the password, or from the user's ticket cache.
    Kerberos,
    /// Basic: user and password in every request, so HTTPS only.
    Basic,
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
    /// Windows Installer. Default: `%SystemRoot%\System32\msiexec.exe` (the server's `%SystemRoot%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msiexec: Option<AbsPath>,
    /// Registry query tool used to find installed products. Default: `%SystemRoot%\System32\reg.exe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<AbsPath>,
    /// Service control tool. Default: `%SystemRoot%\System32\sc.exe`.
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
/// The kinds' own settings, each beside what the plan language knows of its kind.
pub use super::kinds::{
    backup_database::*, backup_files::*, export_keys::*, install::*, service::*,
    snapshot_connector_space::*, uninstall::*, verify::*,
};

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
