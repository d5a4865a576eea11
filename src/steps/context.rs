//! What a step may use: the world (adapters configured for this plan: tool paths, SQL connection,
//! resolved secrets, the redactor, the state folder) and the journal as it stood. Steps get nothing
//! else; they never read the environment or the file system around these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::adapters::host::{Host, Local};
use crate::adapters::process::{ProcessOutcome, ProcessSpec};
use crate::adapters::secrets::{Redactor, SecretString};
use crate::adapters::sql::{self, SqlClient, SqlError};
use crate::plan::{AbsPath, Plan, Secret, SqlAuth, StepId, StepKind, StepSpec, WinrmConnect};
use crate::steps::progress::Progress;
use crate::steps::record::{Journal, StepRecord};
use crate::steps::StepError;

/// Windows defaults for the tools, used when the plan names none: the key tool where the product
/// installs it, and msiexec, reg and sc in the server's `%SystemRoot%\System32`.
pub const DEFAULT_MIISKMU: &str =
    r"C:\Program Files\Microsoft Identity Integration Server\Bin\miiskmu.exe";
/// The `%SystemRoot%` the System32 tools' defaults assume when the server's is not known (this
/// machine is not Windows: the lab on Linux, whose plans name their tools).
pub const DEFAULT_SYSTEM_ROOT: &str = r"C:\Windows";

/// Where the plan asks for the SQL login's password.
pub const SQL_PASSWORD: &str = "server.sql.auth.sql.password";

/// Where a step's secret is asked for, `STEP.FIELD` (`keys.account.password`): the one name the
/// resolver, the prompt and the step itself use.
pub fn secret_place(step: &StepId, field: &str) -> String {
    format!("{step}.{field}")
}

/// Every secret a plan refers to, with the place it is asked for.
pub fn plan_secrets(plan: &Plan) -> Vec<(&Secret, String)> {
    let mut out = Vec::new();
    if let SqlAuth::Sql(login) = &plan.server.sql.auth {
        out.push((&login.password, SQL_PASSWORD.to_string()));
    }
    if let Some(password) = plan
        .server
        .connect
        .winrm()
        .and_then(|w| w.password.as_ref())
    {
        out.push((password, WinrmConnect::PASSWORD.to_string()));
    }
    for s in &plan.steps {
        for f in s.kind.spec().secrets() {
            out.push((f.secret, secret_place(&s.id, f.field)));
        }
    }
    out
}

/// The adapters, configured for one plan.
pub struct World {
    pub plan: Plan,
    /// The sync server's programs and files.
    host: Arc<dyn Host>,
    pub state_dir: PathBuf,
    pub redactor: Redactor,
    secrets: BTreeMap<String, SecretString>,
    /// The server's `%SystemRoot%`, read once when the host is set (`None`: not Windows).
    system_root: Option<String>,
    /// How the plan's SQL Server is reached, asked once per run (with `driver: auto`, a PRELOGIN
    /// exchange); every later connection (a verify's checks each open one) reuses it.
    sql_route: tokio::sync::OnceCell<sql::Route>,
}

impl World {
    /// `secrets` maps `secret_key(secret)` to the resolved value, for every secret the plan names.
    pub fn new(plan: Plan, state_dir: PathBuf, secrets: BTreeMap<String, SecretString>) -> World {
        let redactor = Redactor::new(secrets.values().cloned().collect());
        World {
            plan,
            host: Arc::new(Local),
            state_dir,
            redactor,
            secrets,
            system_root: None,
            sql_route: tokio::sync::OnceCell::new(),
        }
    }

    /// The same world, acting on the sync server through `host`.
    pub fn on(mut self, host: Arc<dyn Host>) -> World {
        self.set_host(host);
        self
    }

    /// Acts on the sync server through `host` from now on.
    pub fn set_host(&mut self, host: Arc<dyn Host>) {
        self.host = host;
    }

    /// Where the server's Windows is (`%SystemRoot%`, as its host read it once after logon): the
    /// System32 tools the plan does not name are looked for there.
    pub fn set_system_root(&mut self, root: Option<String>) {
        self.system_root = root;
    }

    /// The sync server as messages name it: its WinRM endpoint or `server.host`, or this machine.
    pub fn server_name(&self) -> String {
        let server = &self.plan.server;
        server
            .connect
            .winrm()
            .and_then(|w| w.endpoint.clone())
            .or_else(|| server.host.clone())
            .unwrap_or_else(|| "this machine".to_string())
    }

    /// The sync server: its programs and its files.
    pub fn host(&self) -> &dyn Host {
        self.host.as_ref()
    }

    /// A stable key for a secret reference (its source, never its value). `place` names where the
    /// plan asks for it (`server.sql.auth.password`, `STEP.account.password`, ...): each prompt is
    /// its own secret, while one environment variable named twice is one secret.
    pub fn secret_key(secret: &Secret, place: &str) -> String {
        match secret {
            Secret::Env(name) => format!("env:{name}"),
            Secret::File(path) => format!("file:{path}"),
            Secret::Prompt(_) => format!("prompt:{place}"),
        }
    }

    pub fn secret(&self, secret: &Secret, place: &str) -> Result<&SecretString, StepError> {
        let key = Self::secret_key(secret, place);
        self.secrets
            .get(&key)
            .ok_or_else(|| StepError::Internal(format!("secret {key} was not resolved")))
    }

    /// A new connection to the plan's SQL Server.
    pub async fn sql(&self) -> Result<Box<dyn SqlClient>, SqlError> {
        self.connect(&self.plan.server.sql).await
    }

    /// A new connection that logs in to `database` (for checks written without database names).
    pub async fn sql_in(&self, database: &str) -> Result<Box<dyn SqlClient>, SqlError> {
        let mut conn = self.plan.server.sql.clone();
        conn.database = Some(database.to_string());
        self.connect(&conn).await
    }

    async fn connect(
        &self,
        conn: &crate::plan::SqlConnection,
    ) -> Result<Box<dyn SqlClient>, SqlError> {
        let password = match &conn.auth {
            SqlAuth::Sql(login) => self
                .secrets
                .get(&Self::secret_key(&login.password, SQL_PASSWORD)),
            SqlAuth::Windows => None,
        };
        sql::password_at_hand(conn, password)?;
        // The server is the plan's for every database: its route holds for all. A failed probe
        // is not kept (the next connection asks again).
        let way = self.sql_route.get_or_try_init(|| sql::route(conn)).await?;
        sql::connect_by(way, conn, password).await
    }

    pub fn miiskmu(&self) -> PathBuf {
        tool(&self.plan.tools.miiskmu, DEFAULT_MIISKMU)
    }
    pub fn msiexec(&self) -> PathBuf {
        tool(&self.plan.tools.msiexec, &self.system32("msiexec.exe"))
    }
    pub fn reg(&self) -> PathBuf {
        tool(&self.plan.tools.reg, &self.system32("reg.exe"))
    }
    pub fn sc(&self) -> PathBuf {
        tool(&self.plan.tools.sc, &self.system32("sc.exe"))
    }

    /// `%SystemRoot%\System32\NAME` on the server (`C:\WINNT\System32\...` on a Windows Server
    /// 2003 upgraded from Windows 2000; `C:\Windows` when the server's is not known).
    fn system32(&self, name: &str) -> String {
        let root = self.system_root.as_deref().unwrap_or(DEFAULT_SYSTEM_ROOT);
        format!(r"{}\System32\{name}", root.trim_end_matches('\\'))
    }

    /// Runs a process with this plan's redaction; the child does not inherit the environment
    /// variables the plan reads secrets from.
    pub async fn run(&self, spec: &ProcessSpec) -> Result<ProcessOutcome, StepError> {
        let mut spec = spec.clone();
        spec.env_remove.extend(self.secret_env_names());
        Ok(self.host.run(&spec, &self.redactor).await?)
    }

    /// The environment variables the plan reads secrets from; no child inherits them.
    pub fn secret_env_names(&self) -> Vec<String> {
        plan_secrets(&self.plan)
            .into_iter()
            .filter_map(|(s, _)| match s {
                Secret::Env(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The plan's step with this id.
    pub fn step(&self, id: &StepId) -> Option<&StepSpec> {
        self.plan.steps.iter().find(|s| &s.id == id)
    }

    /// The database the connector-space steps look at when a search names none.
    pub fn default_database(&self) -> Option<String> {
        let snapshot = self.plan.steps.iter().find_map(|s| match &s.kind {
            StepKind::SnapshotConnectorSpace(c) => Some(c.database.clone()),
            _ => None,
        });
        snapshot.or_else(|| {
            self.plan.steps.iter().find_map(|s| match &s.kind {
                StepKind::BackupDatabase(b) => Some(b.database.clone()),
                _ => None,
            })
        })
    }
}

fn tool(configured: &Option<AbsPath>, default: &str) -> PathBuf {
    configured
        .as_ref()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from(default))
}

/// What one step sees while it observes, diffs, applies or rechecks.
pub struct StepContext<'a> {
    pub world: &'a World,
    pub id: &'a StepId,
    pub journal: &'a Journal,
    /// sha256 of the plan file.
    pub plan_sha256: &'a str,
    /// Whether `observe` may skip work that this step's own record vouches for (backup_files does
    /// not hash again a file whose size, times and inode are as recorded). False when the engine
    /// looks again at a prerequisite that just failed its full re-check before a destructive step:
    /// then nothing is taken on trust.
    pub quick: bool,
    /// Where the step says how far it has got while it applies (files copied so far).
    pub progress: &'a dyn Progress,
}

impl<'a> StepContext<'a> {
    /// This step's own record from earlier runs.
    pub fn record(&self) -> Option<&'a StepRecord> {
        self.journal.record(self.id.as_str())
    }

    /// This step's own typed record (the details of its evidence, whatever its status), when
    /// there is one of this shape.
    pub fn recorded<R: DeserializeOwned>(&self) -> Option<R> {
        self.record()
            .and_then(|r| r.evidence.as_ref())
            .and_then(|e| serde_json::from_value(e.details.clone()).ok())
    }

    /// The recorded output of a step this one refers to in the plan (verify's `same_as`), and of
    /// no other: a step reads the outputs it names, nothing else of the journal. `R` is the
    /// referred kind's record type.
    pub fn referenced_output<R: DeserializeOwned>(&self, target: &StepId) -> Option<R> {
        let me = self.world.step(self.id)?;
        let named = me
            .kind
            .spec()
            .references()
            .iter()
            .any(|r| r.target == target);
        if !named {
            tracing::error!(step = %self.id, %target, "a step asked for the output of a step it does not name");
            return None;
        }
        self.journal
            .done(target.as_str())
            .and_then(|e| serde_json::from_value(e.details.clone()).ok())
    }

    /// Every step that comes after this one in the plan, directly or through others, when this
    /// step is recorded done and every one of them is too: the state this step brought served
    /// its purpose (a service stopped for the steps after it). `None` otherwise.
    pub fn dependents_done(&self) -> Option<Vec<StepId>> {
        self.journal.done(self.id.as_str())?;
        let plan = &self.world.plan;
        let me = crate::plan::graph::index_by_id(plan)
            .get(self.id)
            .copied()?;
        let after: Vec<StepId> = (0..plan.steps.len())
            .filter(|&j| crate::plan::graph::prerequisites(plan, j).contains(&me))
            .map(|j| plan.steps[j].id.clone())
            .collect();
        let all_done = after
            .iter()
            .all(|id| self.journal.done(id.as_str()).is_some());
        (!after.is_empty() && all_done).then_some(after)
    }

    /// A default log path in the state folder for this step.
    pub fn log_path(&self, suffix: &str) -> PathBuf {
        self.world.state_dir.join(format!("{}-{suffix}", self.id))
    }
}
