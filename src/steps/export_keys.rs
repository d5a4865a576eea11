//! `export_keys`: runs `miiskmu /e TEMP /u:ACCOUNT * /q` with the password on standard input (on the
//! command line only where the plan says `secrets_on_command_line`), judges it by its exit code and
//! a non-empty key file, restricts and renames the key file, and records its sha256. The key file
//! is a secret: its content never reaches output or the journal.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::fs as afs;
use crate::adapters::process::{Arg, ProcessError, ProcessSpec};
use crate::adapters::secrets::SecretString;
use crate::plan::{ExportKeys, StepId, Timeout};
use crate::steps::context::secret_place;
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

/// How long miiskmu may take unless the plan says otherwise. An export takes seconds; a tool that
/// waits longer is waiting for somebody (a password prompt, a message box).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

pub struct ExportKeysStep {
    id: StepId,
    spec: ExportKeys,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    tool: String,
    tool_present: bool,
    key_file_sha256: Option<String>,
    #[serde(default)]
    key_file_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    path: String,
    sha256: String,
    bytes: u64,
}

impl CarriedOutBy for ExportKeys {
    type Step = ExportKeysStep;
}

/// What apply runs, as plan showed it: the key tool's command (its password resolved, shown as
/// `***` or kept on standard input).
pub struct Export {
    command: ProcessSpec,
}

impl ExportKeysStep {
    fn tool(&self, cx: &StepContext<'_>) -> std::path::PathBuf {
        self.spec
            .tool
            .as_ref()
            .map(|t| t.to_path_buf())
            .unwrap_or_else(|| cx.world.miiskmu())
    }

    fn recorded(&self, cx: &StepContext<'_>) -> Option<Recorded> {
        cx.recorded::<Recorded>()
            .filter(|r| r.path == self.spec.to.as_str())
    }

    fn timeout(&self) -> Duration {
        self.spec
            .wait_limit()
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS))
    }

    /// `miiskmu /e TEMP /u:ACCOUNT * /q`, the password on standard input; or, when the plan says
    /// `secrets_on_command_line`, `miiskmu /e TEMP /u:ACCOUNT PASSWORD /q` (shown as `***`).
    fn command(&self, cx: &StepContext<'_>) -> Result<ProcessSpec, StepError> {
        let temp = afs::temp_sibling(&self.spec.to.to_path_buf());
        let place = secret_place(&self.id, ExportKeys::PASSWORD);
        let password = cx.world.secret(&self.spec.account.password, &place)?;
        let (password_arg, stdin) = if self.spec.secrets_on_command_line {
            (Arg::Secret(password.clone()), None)
        } else {
            // `*`: miiskmu prompts for the password and reads it.
            (
                Arg::Plain("*".into()),
                Some(SecretString::new(format!("{}\r\n", password.expose()))),
            )
        };
        Ok(ProcessSpec {
            program: self.tool(cx),
            args: vec![
                Arg::Plain("/e".into()),
                Arg::Plain(temp.to_string_lossy().into_owned()),
                Arg::Plain(format!("/u:{}", self.spec.account.user)),
                password_arg,
                // Quiet: no message box at the end, which nobody could close on a server session.
                Arg::Plain("/q".into()),
            ],
            stdin,
            timeout: self.timeout(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
        })
    }

    fn how_the_password_goes(&self) -> &'static str {
        if self.spec.secrets_on_command_line {
            "password on the command line, as the plan allows"
        } else {
            "password on standard input"
        }
    }
}

#[async_trait]
impl Kind for ExportKeysStep {
    type Spec = ExportKeys;
    type Observed = Observed;
    type Change = Export;
    type Record = Recorded;
    /// The export is of the old product's key set; after the upgrade it would be another one.
    const ROLE: Role = Role::RecordsOldServer;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: ExportKeys) -> Self {
        ExportKeysStep { id, spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        let tool = self.tool(cx);
        let path = self.spec.to.to_path_buf();
        let key_file_bytes = if cx.world.host().exists(&path).await? {
            cx.world.host().file_size(&path).await?
        } else {
            0
        };
        let key_file_sha256 = if cx.world.host().exists(&path).await? {
            Some(cx.world.host().sha256_file(&path).await?)
        } else {
            None
        };
        Ok(Observed {
            tool: tool.to_string_lossy().into_owned(),
            tool_present: cx.world.host().exists(&tool).await?,
            key_file_sha256,
            key_file_bytes,
        })
    }

    fn diff(&self, o: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        let recorded = self.recorded(cx);
        if let (Some(now), Some(r)) = (&o.key_file_sha256, &recorded) {
            if *now == r.sha256 {
                return Planned::Done {
                    evidence: format!("key file {} sha256 {}", self.spec.to, short(now)),
                    record: Some(r.clone()),
                };
            }
        }
        // A file this plan did not export (no record of it, or another content than the recorded
        // export) proves nothing: it may not be a key file at all. It is never adopted.
        let unproven = o.key_file_sha256.as_ref().map(|sha| {
            let history = match &recorded {
                Some(_) => "it differs from the export this plan recorded",
                None => "this plan has no record of exporting it",
            };
            (sha, history)
        });
        if !o.tool_present {
            let why = match unproven {
                Some((_, history)) => format!(
                    "the key file {} cannot be trusted ({history}) and the key tool {} is not there \
                     (removed with the old product?), so the key set cannot be exported again; \
                     restore the journal that recorded the export, or the recorded key file from its copy",
                    self.spec.to, o.tool
                ),
                None => format!(
                    "the key file is missing and the key tool {} is not there (removed with the old \
                     product?); restore the key file from its copy",
                    o.tool
                ),
            };
            return Planned::blocked(why);
        }
        let mut ops = Vec::new();
        let reason = match unproven {
            Some((sha, history)) => {
                let aside = aside_path(&self.spec.to.to_path_buf(), sha);
                ops.push(Op::Write {
                    path: format!(
                        "{} (the file found at {}, kept)",
                        aside.display(),
                        self.spec.to
                    ),
                });
                format!(
                    "a key file at {} cannot be trusted ({history}); it is kept aside and the keys \
                     are exported again",
                    self.spec.to
                )
            }
            None => format!("no key file at {}", self.spec.to),
        };
        match self.command(cx) {
            Ok(cmd) => {
                ops.push(Op::Run {
                    command: format!("{} ({})", cmd.display(), self.how_the_password_goes()),
                });
                ops.push(Op::Write {
                    path: self.spec.to.to_string(),
                });
                Planned::Change {
                    reason,
                    ops,
                    change: Export { command: cmd },
                }
            }
            Err(e) => Planned::blocked(e.to_string()),
        }
    }

    async fn apply(
        &self,
        change: &Export,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Recorded>, StepError> {
        let path = self.spec.to.to_path_buf();
        let temp = afs::temp_sibling(&path);
        cx.world.host().remove_if_exists(&temp).await?;
        cx.world.host().create_parent_dirs(&path).await?;
        // A file already there that this plan cannot vouch for is moved aside, never deleted.
        if cx.world.host().exists(&path).await? {
            let sha = cx.world.host().sha256_file(&path).await?;
            if self.recorded(cx).is_none_or(|r| r.sha256 != sha) {
                let aside = aside_path(&path, &sha);
                cx.world.host().rename(&path, &aside).await?;
                tracing::warn!(step = %self.id, kept = %aside.display(), "a key file this plan did not export was moved aside");
            }
        }
        let out = match cx.world.run(&change.command).await {
            Ok(out) => out,
            Err(StepError::Process(e @ ProcessError::Timeout { .. })) => {
                let _ = cx.world.host().remove_if_exists(&temp).await;
                return Err(StepError::Failed(format!(
                    "{e}\nmiiskmu is waiting for somebody: {}",
                    if self.spec.secrets_on_command_line {
                        "check the account and that /q is honoured by this miiskmu (run the same \
                         command by hand on the server)"
                    } else {
                        "`*` may not read the password from standard input on this server (it may \
                         read the console only). Run `miiskmu /e FILE /u:ACCOUNT * /q` by hand to \
                         see, or set `secrets_on_command_line: true` on this step to pass the \
                         password as miiskmu's argument"
                    }
                )));
            }
            Err(e) => return Err(e),
        };
        // Success is the exit code and a key file, never an English message (a localised or quiet
        // miiskmu prints another or none).
        if out.exit_code != 0 {
            let _ = cx.world.host().remove_if_exists(&temp).await;
            let message = last_lines(&format!("{}\n{}", out.stdout, out.stderr), 5);
            return Err(StepError::Tool {
                tool: "miiskmu".into(),
                exit_code: out.exit_code,
                message,
                log_tail: None,
            });
        }
        let bytes = cx.world.host().file_size(&temp).await.map_err(|e| {
            StepError::Failed(format!(
                "miiskmu exited with 0 but wrote no key file at {} ({e})",
                temp.display()
            ))
        })?;
        if bytes == 0 {
            return Err(StepError::Failed(format!(
                "miiskmu wrote an empty key file at {}",
                temp.display()
            )));
        }
        cx.world.host().restrict_permissions(&temp).await?;
        let sha256 = cx.world.host().sha256_file(&temp).await?;
        cx.world.host().rename(&temp, &path).await?;
        let summary = format!(
            "key file {} sha256 {} ({bytes} bytes)",
            self.spec.to,
            short(&sha256)
        );
        let record = Recorded {
            path: self.spec.to.to_string(),
            sha256,
            bytes,
        };
        Ok(Finished::new(summary, record))
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        let path = self.spec.to.to_path_buf();
        if !cx.world.host().exists(&path).await? {
            return Err(StepError::Refused(format!(
                "the key file {} is gone",
                self.spec.to
            )));
        }
        let now = cx.world.host().sha256_file(&path).await?;
        match self.recorded(cx) {
            Some(r) if r.sha256 == now => Ok(format!(
                "key file {} matches its recorded sha256",
                self.spec.to
            )),
            Some(_) => Err(StepError::Refused(format!(
                "the key file {} changed since it was exported",
                self.spec.to
            ))),
            None => Err(StepError::Refused(format!(
                "the key file {} has no recorded export",
                self.spec.to
            ))),
        }
    }
}

/// Where a key file this plan cannot vouch for is kept: beside it, named by its own content, so the
/// name is known at plan time and a second run over the same file finds it already kept.
fn aside_path(path: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".unproven-{}", short(sha256)));
    path.with_file_name(name)
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
