//! `uninstall`: removes the old product with `msiexec /x {CODE} /qn /norestart /l*v LOG`, resolving a
//! display name to its product code first (`REBOOT=ReallySuppress` instead of `/norestart` before
//! Windows Installer 3.0). The one destructive step: the engine runs it only after every
//! prerequisite rechecks. It never touches the database (msiexec removes only the product).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::process::{Arg, Effect, ProcessSpec};
use crate::plan::windows_installer as exit_codes;
use crate::plan::{ProductRef, StepId, Timeout, Uninstall};
use crate::steps::installer::{self, Found, Product, WindowsInstaller};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

pub struct UninstallStep {
    spec: Uninstall,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    product: Found,
    windows_installer: WindowsInstaller,
}

impl CarriedOutBy for Uninstall {
    type Step = UninstallStep;
}

/// What apply runs, as plan showed it: msiexec removing the product plan found, by its code.
pub struct Removal {
    product: Product,
    command: ProcessSpec,
}

/// What the journal keeps of an uninstall.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    product: Product,
    /// `None`: found already removed when its turn came; msiexec did not run.
    exit_code: Option<i32>,
    attempts: u32,
    log: PathBuf,
}

impl UninstallStep {
    fn accepted(&self) -> Vec<i32> {
        self.spec
            .accept_exit_codes
            .clone()
            .unwrap_or_else(|| exit_codes::UNINSTALL_ACCEPTS.to_vec())
    }

    fn log(&self, cx: &StepContext<'_>) -> PathBuf {
        self.spec
            .log
            .as_ref()
            .map(|l| l.to_path_buf())
            .unwrap_or_else(|| cx.log_path("msiexec-uninstall.log"))
    }

    fn command(&self, cx: &StepContext<'_>, code: &str, wi: &WindowsInstaller) -> ProcessSpec {
        let no_restart = wi.no_restart(installer::sets_reboot(&self.spec.extra_args));
        let mut args: Vec<Arg> = ["/x", code, "/qn"]
            .into_iter()
            .chain(no_restart)
            .chain(["/l*v"])
            .map(Arg::from)
            .collect();
        args.push(Arg::Plain(self.log(cx).to_string_lossy().into_owned()));
        args.extend(self.spec.extra_args.iter().map(|a| Arg::Plain(a.clone())));
        ProcessSpec {
            program: cx.world.msiexec(),
            args,
            stdin: None,
            timeout: self.spec.wait_limit().unwrap_or(Duration::from_secs(3600)),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            effect: Effect::Changes,
        }
    }

    fn describe(&self) -> String {
        match &self.spec.product {
            ProductRef::ProductCode(c) => c.to_string(),
            ProductRef::Name(n) => format!("\"{n}\""),
        }
    }
}

#[async_trait]
impl Kind for UninstallStep {
    type Spec = Uninstall;
    type Observed = Observed;
    type Change = Removal;
    type Record = Removed;
    const ROLE: Role = Role::Destructive;

    /// The id is not needed: this kind's messages name the product or checks, not the step.
    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(_id: StepId, spec: Uninstall) -> Self {
        UninstallStep { spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        Ok(Observed {
            product: installer::find_product(cx, &self.spec.product).await?,
            windows_installer: WindowsInstaller::observe(cx).await,
        })
    }

    fn diff(&self, observed: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        let Observed {
            product,
            windows_installer: wi,
        } = observed;
        match product {
            Found::None => Planned::done(format!("{} is not installed", self.describe())),
            Found::Several { products } => Planned::Blocked {
                why: format!(
                    "{} matches {} products ({}); name the one to remove by product_code",
                    self.describe(),
                    products.len(),
                    products
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            },
            Found::One { product } => match &product.code {
                None => Planned::blocked(format!(
                    "{product} is installed but its Uninstall key is not a product code; it is not \
                     a Windows Installer product"
                )),
                Some(code) => {
                    let command = self.command(cx, code, wi);
                    Planned::Change {
                        reason: match wi.note() {
                            Some(note) => format!("{product} is installed; {note}"),
                            None => format!("{product} is installed"),
                        },
                        ops: vec![Op::Run {
                            command: command.display(),
                        }],
                        change: Removal {
                            product: product.clone(),
                            command,
                        },
                    }
                }
            },
        }
    }

    async fn apply(
        &self,
        change: &Removal,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Removed>, StepError> {
        let Removal {
            product,
            command: spec,
        } = change;
        // The server may have moved on since the plan (another administrator, another run): look
        // once more, so that msiexec runs only for the very product the plan showed.
        // Absent now is decided only once the server is idle (`run_with_retry` asks the
        // `_MSIExecute` mutex first): an installation half-way, or rolling back, shows an
        // Uninstall entry gone that may come back.
        match installer::find_product(cx, &self.spec.product).await? {
            Found::None => {}
            Found::One { product: now } if now.code == product.code => {}
            Found::One { product: now } => {
                return Err(StepError::Refused(format!(
                    "the plan showed {product}, but the server now has {now}; plan again"
                )))
            }
            Found::Several { products } => {
                return Err(StepError::Refused(format!(
                    "{} matches {} products now; plan again",
                    self.describe(),
                    products.len()
                )))
            }
        }
        let gone = move || async move {
            Ok(matches!(
                installer::find_product(cx, &self.spec.product).await?,
                Found::None
            ))
        };
        let (exit_code, attempts) =
            match installer::run_with_retry(cx, spec, self.spec.retry.as_ref(), gone).await? {
                // Nothing was run: the product was found removed with the server idle.
                installer::Ran::DoneMeanwhile { .. } => {
                    let record = Removed {
                        product: product.clone(),
                        exit_code: None,
                        attempts: 0,
                        log: self.log(cx),
                    };
                    return Ok(Finished::new(
                        format!("{} was already not installed", self.describe()),
                        record,
                    ));
                }
                installer::Ran::Exited(out, attempts) => {
                    if !self.accepted().contains(&out.exit_code) {
                        return Err(StepError::Tool {
                            tool: "msiexec".into(),
                            exit_code: out.exit_code,
                            message: format!(
                                "{} ({})",
                                exit_codes::meaning(out.exit_code),
                                spec.display()
                            ),
                            log_tail: installer::log_tail(cx, &self.log(cx), 20).await,
                        });
                    }
                    (out.exit_code, attempts)
                }
            };
        if let Found::One { product } = installer::find_product(cx, &self.spec.product).await? {
            return Err(StepError::Failed(format!(
                "msiexec exited {} but {product} is still installed; see {}",
                exit_code,
                self.log(cx).display()
            )));
        }
        let reboot = exit_codes::needs_reboot(exit_code);
        let summary = format!(
            "removed {product}: msiexec exit {} ({}){}",
            exit_code,
            exit_codes::meaning(exit_code),
            if attempts > 1 {
                format!(" after {attempts} attempts")
            } else {
                String::new()
            }
        );
        let record = Removed {
            product: product.clone(),
            exit_code: Some(exit_code),
            attempts,
            log: self.log(cx),
        };
        Ok(Finished {
            reboot_required: reboot,
            restart_started: exit_code == exit_codes::REBOOT_INITIATED,
            ..Finished::new(summary, record)
        })
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        match installer::find_product(cx, &self.spec.product).await? {
            Found::None => Ok(format!("{} is not installed", self.describe())),
            _ => Err(StepError::Refused(format!(
                "{} is installed again",
                self.describe()
            ))),
        }
    }
}
