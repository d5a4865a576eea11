//! `install`: checks the installer media's sha256, turns the typed answers into the installer's
//! command line (an answer profile and `properties:` for an .msi run through msiexec, an argument
//! template for a setup .exe), runs it, and detects the product afterwards. A secret goes on a
//! command line only where the plan allowed it; otherwise through standard input. msiexec gets
//! `/norestart`, or `REBOOT=ReallySuppress` before Windows Installer 3.0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::process::{Arg, Effect, ProcessSpec};
use crate::adapters::secrets::SecretString;
use crate::plan::placeholders;
use crate::plan::windows_installer as exit_codes;
use crate::plan::{AnswerProfile, Install, KeyFile, StepId, StepKind, Timeout};
use crate::steps::context::secret_place;
use crate::steps::installer::{self, Found, Product, WindowsInstaller};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

pub struct InstallStep {
    id: StepId,
    spec: Install,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    product: Found,
    /// The product `upgrades` names, when the plan says the install replaces one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upgrading: Option<Found>,
    installer_present: bool,
    installer_sha256: Option<String>,
    /// Read for an .msi only: msiexec's command line depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    windows_installer: Option<WindowsInstaller>,
}

/// A rendered value: plain text, or text that carries a secret.
enum Rendered {
    Plain(String),
    Secret(SecretString),
}

impl InstallStep {
    fn is_msi(&self) -> bool {
        self.spec
            .installer
            .as_str()
            .to_ascii_lowercase()
            .ends_with(".msi")
    }

    fn log(&self, cx: &StepContext<'_>) -> PathBuf {
        self.spec
            .log
            .as_ref()
            .map(|l| l.to_path_buf())
            .unwrap_or_else(|| cx.log_path("install.log"))
    }

    fn accepted(&self) -> Vec<i32> {
        self.spec
            .accept_exit_codes
            .clone()
            .unwrap_or_else(|| exit_codes::INSTALL_ACCEPTS.to_vec())
    }

    /// The key file the answers point at.
    fn key_file(&self, cx: &StepContext<'_>) -> Option<String> {
        match &self.spec.answers.key_file {
            Some(KeyFile::Path(p)) => Some(p.to_string()),
            Some(KeyFile::From(id)) => cx.world.step(id).and_then(|s| match &s.kind {
                StepKind::ExportKeys(k) => Some(k.to.to_string()),
                _ => None,
            }),
            None => None,
        }
    }

    /// The value of one placeholder.
    fn value(&self, cx: &StepContext<'_>, name: &str) -> Result<Rendered, StepError> {
        let a = &self.spec.answers;
        let plain = |s: Option<&str>| Ok(Rendered::Plain(s.unwrap_or("").to_string()));
        match name {
            "answers.setup_type" => plain(a.setup_type.map(|t| match t {
                crate::plan::SetupType::Complete => "complete",
                crate::plan::SetupType::Custom => "custom",
            })),
            "answers.store.server" => plain(a.store.as_ref().map(|s| s.server.as_str())),
            "answers.store.instance" => plain(a.store.as_ref().and_then(|s| s.instance.as_deref())),
            "answers.store.database" => plain(a.store.as_ref().map(|s| s.database.as_str())),
            "answers.store.reuse_existing" => {
                plain(
                    a.store
                        .as_ref()
                        .map(|s| if s.reuse_existing { "yes" } else { "no" }),
                )
            }
            "answers.service_account.user" => {
                plain(a.service_account.as_ref().map(|s| s.user.as_str()))
            }
            "answers.service_account.domain" => {
                plain(a.service_account.as_ref().map(|s| s.domain.as_str()))
            }
            "answers.service_account.password" => match &a.service_account {
                Some(s) => {
                    let place = secret_place(&self.id, Install::SERVICE_PASSWORD);
                    Ok(Rendered::Secret(
                        cx.world.secret(&s.password, &place)?.clone(),
                    ))
                }
                None => plain(None),
            },
            "answers.groups.admins" => plain(a.groups.as_ref().map(|g| g.admins.as_str())),
            "answers.groups.operators" => plain(a.groups.as_ref().map(|g| g.operators.as_str())),
            "answers.groups.joiners" => plain(a.groups.as_ref().map(|g| g.joiners.as_str())),
            "answers.groups.browse" => plain(a.groups.as_ref().map(|g| g.browse.as_str())),
            "answers.groups.password_set" => {
                plain(a.groups.as_ref().map(|g| g.password_set.as_str()))
            }
            "answers.key_file" => Ok(Rendered::Plain(self.key_file(cx).unwrap_or_default())),
            "log" => Ok(Rendered::Plain(self.log(cx).to_string_lossy().into_owned())),
            other => Err(StepError::Internal(format!(
                "unknown placeholder {{{other}}} (validation should have caught it)"
            ))),
        }
    }

    /// Renders a template; the result is secret if any placeholder in it was.
    fn render(&self, cx: &StepContext<'_>, template: &str) -> Result<Rendered, StepError> {
        let mut secret = false;
        let text = placeholders::render(template, |name| {
            Ok::<String, StepError>(match self.value(cx, name)? {
                Rendered::Plain(s) => s,
                Rendered::Secret(s) => {
                    secret = true;
                    s.expose().to_string()
                }
            })
        })?;
        Ok(if secret {
            Rendered::Secret(SecretString::new(text))
        } else {
            Rendered::Plain(text)
        })
    }

    fn arg(&self, cx: &StepContext<'_>, template: &str) -> Result<Arg, StepError> {
        Ok(match self.render(cx, template)? {
            Rendered::Plain(s) => Arg::Plain(s),
            Rendered::Secret(s) if self.spec.secrets_on_command_line => Arg::Secret(s),
            Rendered::Secret(_) => {
                return Err(StepError::Refused(format!(
                    "`{template}` puts a secret on the installer's command line; the plan must say secrets_on_command_line: true"
                )))
            }
        })
    }

    /// MSI properties: the profile's, then the plan's explicit ones (which win).
    fn properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        if self.spec.profile == Some(AnswerProfile::Mim2016Sync) {
            let a = &self.spec.answers;
            let mut set = |k: &str, v: &str| {
                props.insert(k.to_string(), v.to_string());
            };
            if let Some(s) = &a.store {
                set("STORESERVER", "{answers.store.server}");
                // Microsoft documents SQLServerStore=RemoteMachine for a store on another server.
                if !names_this_machine(&s.server) {
                    set("SQLServerStore", "RemoteMachine");
                }
                if s.instance.is_some() {
                    set("SQLINSTANCE", "{answers.store.instance}");
                }
                set("SQLDB", "{answers.store.database}");
            }
            if a.service_account.is_some() {
                set("SERVICEACCOUNT", "{answers.service_account.user}");
                set("SERVICEPASSWORD", "{answers.service_account.password}");
                set("SERVICEDOMAIN", "{answers.service_account.domain}");
            }
            if a.groups.is_some() {
                set("GROUPADMINS", "{answers.groups.admins}");
                set("GROUPOPERATORS", "{answers.groups.operators}");
                set("GROUPACCOUNTJOINERS", "{answers.groups.joiners}");
                set("GROUPBROWSE", "{answers.groups.browse}");
                set("GROUPPASSWORDSET", "{answers.groups.password_set}");
            }
            set("ACCEPT_EULA", "1");
            set("FIREWALL_CONF", "1");
            set("REBOOT", "ReallySuppress");
        }
        props.extend(
            self.spec
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        props
    }

    /// The installer's command line; `wi` (an .msi only) decides how msiexec is kept from
    /// restarting Windows.
    fn command(
        &self,
        cx: &StepContext<'_>,
        wi: Option<&WindowsInstaller>,
    ) -> Result<ProcessSpec, StepError> {
        let timeout = self.spec.wait_limit().unwrap_or(Duration::from_secs(3600));
        let stdin = match &self.spec.stdin {
            // Standard input is always handled as secret by the process adapter.
            Some(t) => Some(match self.render(cx, t)? {
                Rendered::Plain(s) => SecretString::new(s),
                Rendered::Secret(s) => s,
            }),
            None => None,
        };
        let (program, args) = if self.is_msi() {
            let mut args = vec![
                Arg::Plain("/i".into()),
                Arg::Plain(self.spec.installer.to_string()),
            ];
            let properties = self.properties();
            let no_restart = wi
                .cloned()
                .unwrap_or_default()
                .no_restart(installer::sets_reboot(properties.keys()));
            for (k, v) in properties {
                args.push(self.arg(cx, &format!("{k}={v}"))?);
            }
            if !self.spec.transforms.is_empty() {
                let list: Vec<&str> = self.spec.transforms.iter().map(|t| t.as_str()).collect();
                args.push(Arg::Plain(format!("TRANSFORMS={}", list.join(";"))));
            }
            args.extend(
                ["/qn"]
                    .into_iter()
                    .chain(no_restart)
                    .chain(["/l*v"])
                    .map(Arg::from),
            );
            args.push(Arg::Plain(self.log(cx).to_string_lossy().into_owned()));
            (cx.world.msiexec(), args)
        } else {
            let templates = self.spec.arguments.clone().unwrap_or_default();
            let args = templates
                .iter()
                .map(|t| self.arg(cx, t))
                .collect::<Result<Vec<_>, _>>()?;
            (self.spec.installer.to_path_buf(), args)
        };
        Ok(ProcessSpec {
            program,
            args,
            stdin,
            timeout,
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            effect: Effect::Changes,
        })
    }

    /// Why the installed old product cannot be upgraded (older than `upgrades.min_version`, or a
    /// version that cannot be read); `None` when it can, or is not installed (any more).
    fn not_upgradable(&self, found: Option<&Found>) -> Option<String> {
        let up = self.spec.upgrades.as_ref()?;
        let min = &up.min_version;
        match found? {
            Found::None => None,
            Found::Several { products } => Some(format!(
                "{} installed products match upgrades.product; name it by product_code",
                products.len()
            )),
            Found::One { product } => {
                let version = product.version.as_deref().unwrap_or("");
                match min.compare(version) {
                    Some(std::cmp::Ordering::Less) => Some(format!(
                        "{product} is installed, and this upgrade needs version {min} or later of it: \
                         bring it to {min} first (a service pack), then plan again"
                    )),
                    Some(_) => None,
                    None => Some(format!(
                        "{product} is installed, but its DisplayVersion `{version}` cannot be compared \
                         with the {min} this upgrade needs"
                    )),
                }
            }
        }
    }

    fn version_ok(&self, p: &Product) -> bool {
        match &self.spec.detect.version {
            None => true,
            Some(want) => p
                .version
                .as_deref()
                .is_some_and(|v| v.starts_with(want.as_str())),
        }
    }
}

impl CarriedOutBy for Install {
    type Step = InstallStep;
}

/// What apply runs, as plan showed it: the installer's command line built from the answers.
pub struct Setup {
    command: ProcessSpec,
}

/// What the journal keeps of an install.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    product: Product,
    /// `None`: the product was found installed, with the server idle, when an attempt's turn
    /// came (made meanwhile by another installation); this run did not finish an installer.
    exit_code: Option<i32>,
    attempts: u32,
    log: PathBuf,
}

#[async_trait]
impl Kind for InstallStep {
    type Spec = Install;
    type Observed = Observed;
    type Change = Setup;
    type Record = Installed;
    /// An install replaces the product and takes over the existing database (in place for MIM,
    /// over the kept database for MIIS): like the uninstall, it runs only after its prerequisites
    /// recheck, and once it ran, the backups before it are sealed, never retaken from the new product.
    const ROLE: Role = Role::Destructive;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: Install) -> Self {
        InstallStep { id, spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        let product = installer::find_product(cx, &self.spec.detect.product).await?;
        let upgrading = match &self.spec.upgrades {
            Some(up) => Some(installer::find_product(cx, &up.product).await?),
            None => None,
        };
        let media = self.spec.installer.to_path_buf();
        let installer_present = cx.world.host().exists(&media).await?;
        let installer_sha256 = match (&self.spec.sha256, installer_present) {
            (Some(_), true) => Some(cx.world.host().sha256_file(&media).await?),
            _ => None,
        };
        let windows_installer = if self.is_msi() {
            Some(WindowsInstaller::observe(cx).await)
        } else {
            None
        };
        Ok(Observed {
            product,
            upgrading,
            installer_present,
            installer_sha256,
            windows_installer,
        })
    }

    fn diff(&self, o: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        match &o.product {
            Found::One { product } if self.version_ok(product) => {
                return Planned::done(format!("{product} is installed"))
            }
            Found::Several { products } => {
                return Planned::blocked(format!(
                    "{} installed products match; detect by product_code",
                    products.len()
                ))
            }
            _ => {}
        }
        if let Some(why) = self.not_upgradable(o.upgrading.as_ref()) {
            return Planned::blocked(why);
        }
        if !o.installer_present {
            return Planned::blocked(format!(
                "the installer {} is not there",
                self.spec.installer
            ));
        }
        if let (Some(want), Some(have)) = (&self.spec.sha256, &o.installer_sha256) {
            if want.as_str() != have {
                return Planned::blocked(format!(
                    "the installer {} has sha256 {have}, not the {want} the plan expects",
                    self.spec.installer
                ));
            }
        }
        let mut reason = match &o.product {
            Found::One { product } => format!(
                "{product} is installed, but not version {}",
                self.spec.detect.version.as_deref().unwrap_or("")
            ),
            _ => "the product is not installed".to_string(),
        };
        if let Some(note) = o.windows_installer.as_ref().and_then(|w| w.note()) {
            reason = format!("{reason}; {note}");
        }
        match self.command(cx, o.windows_installer.as_ref()) {
            Ok(cmd) => {
                let via_stdin = if self.spec.stdin.is_some() {
                    " (answers on standard input)"
                } else {
                    ""
                };
                Planned::Change {
                    reason,
                    ops: vec![Op::Run {
                        command: format!("{}{via_stdin}", cmd.display()),
                    }],
                    change: Setup { command: cmd },
                }
            }
            Err(e) => Planned::blocked(e.to_string()),
        }
    }

    async fn apply(
        &self,
        change: &Setup,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Installed>, StepError> {
        let media = self.spec.installer.to_path_buf();
        if let Some(want) = &self.spec.sha256 {
            let have = cx.world.host().sha256_file(&media).await?;
            if want.as_str() != have {
                return Err(StepError::Refused(format!(
                    "the installer {} has sha256 {have}, expected {want}",
                    self.spec.installer
                )));
            }
        }
        if let Some(key) = self.key_file(cx) {
            if !cx.world.host().exists(&PathBuf::from(&key)).await? {
                return Err(StepError::Refused(format!(
                    "the key file {key} for the installer is missing"
                )));
            }
        }
        let spec = &change.command;
        cx.world.host().create_parent_dirs(&self.log(cx)).await?;
        let detected = move || async move {
            Ok(matches!(
                installer::find_product(cx, &self.spec.detect.product).await?,
                Found::One { product } if self.version_ok(&product)
            ))
        };
        let (exit_code, attempts) =
            match installer::run_with_retry(cx, spec, self.spec.retry.as_ref(), detected).await? {
                installer::Ran::Exited(out, attempts) => {
                    if !self.accepted().contains(&out.exit_code) {
                        return Err(StepError::Tool {
                            // The file name, also of a Windows server's path on a Linux admin host.
                            tool: spec
                                .program
                                .to_string_lossy()
                                .rsplit(['\\', '/'])
                                .next()
                                .unwrap_or_default()
                                .to_string(),
                            exit_code: out.exit_code,
                            message: exit_codes::meaning(out.exit_code).to_string(),
                            log_tail: installer::log_tail(cx, &self.log(cx), 20).await,
                        });
                    }
                    (Some(out.exit_code), attempts)
                }
                // The product check below decides; no exit code of this run's is the outcome.
                installer::Ran::DoneMeanwhile { attempts } => (None, attempts),
            };
        let product = match installer::find_product(cx, &self.spec.detect.product).await? {
            Found::One { product } if self.version_ok(&product) => product,
            _ => {
                let ended = match exit_code {
                    Some(code) => format!("the installer exited {code}"),
                    None => "the product was found installed before the installer ran".into(),
                };
                return Err(StepError::Failed(format!(
                    "{ended} but the product is not detected afterwards; see {}",
                    self.log(cx).display()
                )));
            }
        };
        let summary = match exit_code {
            Some(code) => format!(
                "installed {product}: exit {code} ({})",
                exit_codes::meaning(code)
            ),
            None => format!(
                "{product} is installed: another installation finished it while this run waited; the installer was not run again"
            ),
        };
        let record = Installed {
            product,
            exit_code,
            attempts,
            log: self.log(cx),
        };
        Ok(Finished {
            reboot_required: exit_code.is_some_and(exit_codes::needs_reboot),
            restart_started: exit_code == Some(exit_codes::REBOOT_INITIATED),
            ..Finished::new(summary, record)
        })
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        match installer::find_product(cx, &self.spec.detect.product).await? {
            Found::One { product } if self.version_ok(&product) => {
                Ok(format!("{product} is installed"))
            }
            _ => Err(StepError::Refused(
                "the installed product is no longer detected".into(),
            )),
        }
    }
}

/// Whether a store server name means the machine the installer runs on. Without a name for this
/// server in the plan, only the names that mean "this machine" anywhere count: `(local)`, `.`,
/// `localhost`, `127.0.0.1`, `::1`. The server's own computer name counts as another machine;
/// a plan can set `SQLServerStore` itself in `properties`.
pub fn names_this_machine(server: &str) -> bool {
    let s = server.trim();
    ["(local)", ".", "localhost", "127.0.0.1", "::1"]
        .iter()
        .any(|l| s.eq_ignore_ascii_case(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(extra: &str) -> InstallStep {
        let yaml = format!(
            r#"
installer: 'E:\Synchronization Service\Synchronization Service.msi'
detect: {{ product: {{ name: Microsoft Identity Manager Synchronization Service }} }}
profile: mim2016_sync
secrets_on_command_line: true
answers:
  service_account: {{ user: svc, domain: CONTOSO, password: {{ env: P }} }}
  groups: {{ admins: A, operators: O, joiners: J, browse: B, password_set: S }}
{extra}"#
        );
        // Through JSON: serde_yaml reads enums only from YAML tags; the plan loader reads maps.
        let value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        let spec: Install = serde_json::from_value(value).unwrap();
        InstallStep::new(StepId::parse("install").unwrap(), spec)
    }

    fn store(server: &str) -> String {
        format!("  store: {{ server: '{server}', database: FIMSynchronizationService, reuse_existing: true }}")
    }

    #[test]
    fn a_store_on_another_server_is_sqlserverstore_remotemachine() {
        for remote in ["sql01", "sql01.contoso.com", "10.0.0.5", "SYNC01"] {
            let props = step(&store(remote)).properties();
            assert_eq!(
                props.get("SQLServerStore").map(String::as_str),
                Some("RemoteMachine"),
                "{remote}"
            );
        }
        for local in ["(local)", ".", "localhost", "LocalHost", "127.0.0.1", "::1"] {
            let props = step(&store(local)).properties();
            assert!(!props.contains_key("SQLServerStore"), "{local}: {props:?}");
            assert_eq!(props["STORESERVER"], "{answers.store.server}");
        }
    }

    #[test]
    fn the_plan_s_own_sqlserverstore_wins() {
        let s = step(&format!(
            "{}\nproperties: {{ SQLServerStore: LocalMachine }}",
            store("sql01")
        ));
        assert_eq!(s.properties()["SQLServerStore"], "LocalMachine");
    }

    fn fim(version: Option<&str>) -> Option<Found> {
        Some(Found::One {
            product: Product {
                code: None,
                name: Some("Forefront Identity Manager 2010 R2 Synchronization Service".into()),
                version: version.map(str::to_string),
            },
        })
    }

    #[test]
    fn an_installed_product_older_than_upgrades_min_version_is_refused_with_its_version() {
        let s = step(
            "upgrades: { product: { name: Forefront Identity Manager 2010 R2 Synchronization Service }, min_version: 4.1.3419.0 }",
        );
        let why = s.not_upgradable(fim(Some("4.1.2273.0")).as_ref()).unwrap();
        assert!(
            why.contains("4.1.2273.0") && why.contains("needs version 4.1.3419.0 or later"),
            "{why}"
        );
        assert_eq!(s.not_upgradable(fim(Some("4.1.3419.0")).as_ref()), None);
        assert_eq!(s.not_upgradable(fim(Some("4.1.3766.0")).as_ref()), None);
        assert_eq!(
            s.not_upgradable(Some(&Found::None)),
            None,
            "already removed"
        );
        let unreadable = s.not_upgradable(fim(None).as_ref()).unwrap();
        assert!(unreadable.contains("cannot be compared"), "{unreadable}");
        assert_eq!(
            step("").not_upgradable(fim(Some("1.0")).as_ref()),
            None,
            "no upgrades: no rule"
        );
    }
}
