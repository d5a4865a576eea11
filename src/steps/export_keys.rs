//! `export_keys`: runs `miiskmu /e TEMP /u:ACCOUNT * /q` with the password on standard input (on the
//! command line only where the plan says `secrets_on_command_line`), judges it by its exit code and
//! a non-empty key file, restricts and renames the key file, and records its sha256. With
//! `copy_to`, the key file also comes back to this machine (`Host::fetch`), owner-only and durable,
//! its sha256 computed here equal to the server's; a copy found missing or changed later is fetched
//! again from the server's key file while that file is still the recorded export (never a new
//! export for it). The key file is a secret: its content never reaches output or the journal.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::fs as afs;
use crate::adapters::process::{Arg, Effect, ProcessError, ProcessSpec};
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
    /// The copy on this machine (`copy_to`), when the plan asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copy: Option<CopyObserved>,
}

/// The key file's copy as found on this machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyObserved {
    path: String,
    /// `None`: nothing there.
    sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    path: String,
    /// sha256 of the key file, computed where it is (the sync server).
    sha256: String,
    bytes: u64,
    /// The copy on this machine, its sha256 computed here (equal to `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copy: Option<KeyCopy>,
}

/// A copy of the key file on the machine `upgrade` runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCopy {
    path: String,
    sha256: String,
}

impl CarriedOutBy for ExportKeys {
    type Step = ExportKeysStep;
}

/// What apply does, as plan showed it.
pub enum Export {
    /// Run the key tool (its password resolved, shown as `***` or kept on standard input), then
    /// fetch the copy when the plan asks for one.
    Run { command: ProcessSpec },
    /// The server's key file is the recorded export; only its copy on this machine is missing or
    /// changed, and is fetched again from it.
    CopyAgain { recorded: Recorded },
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
            effect: Effect::Changes,
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
        // The copy is this machine's file, read here.
        let copy = match &self.spec.copy_to {
            Some(copy_to) => Some(CopyObserved {
                path: copy_to.to_string(),
                sha256: afs::sha256_if_exists(&copy_to.to_path_buf())?,
            }),
            None => None,
        };
        Ok(Observed {
            tool: tool.to_string_lossy().into_owned(),
            tool_present: cx.world.host().exists(&tool).await?,
            key_file_sha256,
            key_file_bytes,
            copy,
        })
    }

    fn diff(&self, o: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        let recorded = self.recorded(cx);
        if let (Some(now), Some(r)) = (&o.key_file_sha256, &recorded) {
            if *now == r.sha256 {
                return self.diff_copy(o, r);
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
                if let Some(copy) = &o.copy {
                    ops.extend(copy_ops(&self.spec.to.to_string(), copy, None));
                }
                Planned::Change {
                    reason,
                    ops,
                    change: Export::Run { command: cmd },
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
        match change {
            Export::Run { command } => self.export(command, cx).await,
            Export::CopyAgain { recorded } => self.copy_again(recorded, cx).await,
        }
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        let line = self.recheck_key_file(cx).await?;
        let Some(copy_to) = &self.spec.copy_to else {
            return Ok(line);
        };
        // Only reached with a record: `recheck_key_file` refuses a key file without one.
        let recorded = self.recorded(cx).map(|r| r.sha256).unwrap_or_default();
        match afs::sha256_if_exists(&copy_to.to_path_buf())? {
            Some(sha) if sha == recorded => Ok(format!("{line}, and so does its copy {copy_to}")),
            Some(_) => Err(StepError::Refused(format!(
                "the key file's copy {copy_to} differs from the exported key file"
            ))),
            None => Err(StepError::Refused(format!(
                "the key file's copy {copy_to} is gone"
            ))),
        }
    }
}

impl ExportKeysStep {
    /// The server's key file is the recorded export: done when the copy (if any) matches it,
    /// else the copy is fetched again, never a new export.
    fn diff_copy(&self, o: &Observed, r: &Recorded) -> Planned<Self> {
        let key_file = format!("key file {} sha256 {}", self.spec.to, short(&r.sha256));
        let Some(copy) = &o.copy else {
            return Planned::Done {
                evidence: key_file,
                record: Some(Recorded {
                    copy: None,
                    ..r.clone()
                }),
            };
        };
        if copy.sha256.as_deref() == Some(r.sha256.as_str()) {
            return Planned::Done {
                evidence: format!("{key_file}; its copy {} matches", copy.path),
                record: Some(Recorded {
                    copy: Some(KeyCopy {
                        path: copy.path.clone(),
                        sha256: r.sha256.clone(),
                    }),
                    ..r.clone()
                }),
            };
        }
        let what = match &copy.sha256 {
            None => "is missing",
            Some(_) => "differs from it",
        };
        Planned::Change {
            reason: format!(
                "the {key_file} is the recorded export; its copy {} {what}, so it is fetched \
                 again from the server (the keys are not exported again)",
                copy.path
            ),
            ops: copy_ops(&self.spec.to.to_string(), copy, Some(r)),
            change: Export::CopyAgain {
                recorded: r.clone(),
            },
        }
    }

    /// Fetches the copy again from a server key file that is still the recorded export.
    async fn copy_again(
        &self,
        recorded: &Recorded,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Recorded>, StepError> {
        let path = self.spec.to.to_path_buf();
        let now = cx.world.host().sha256_file(&path).await?;
        if now != recorded.sha256 {
            return Err(StepError::Refused(format!(
                "the key file {} changed on the server since it was exported, so it is not \
                 copied; run apply again to look at it afresh",
                self.spec.to
            )));
        }
        let copy = self.fetch_copy(&path, &recorded.sha256, cx).await?;
        let summary = format!(
            "key file {} copied again to {} sha256 {}",
            self.spec.to,
            copy.path,
            short(&copy.sha256)
        );
        Ok(Finished::new(
            summary,
            Recorded {
                copy: Some(copy),
                ..recorded.clone()
            },
        ))
    }

    /// Brings the server's key file at `from` (whose sha256, computed on the server, is `sha256`)
    /// to `copy_to` on this machine: a file already there that is not this key file is moved aside
    /// (never deleted); the copy is fetched under its temporary name, made owner-only and durable,
    /// checked against the server's sha256 with the sha256 computed here, and renamed into place.
    async fn fetch_copy(
        &self,
        from: &std::path::Path,
        sha256: &str,
        cx: &StepContext<'_>,
    ) -> Result<KeyCopy, StepError> {
        let Some(copy_to) = &self.spec.copy_to else {
            return Err(StepError::Internal(
                "no copy_to to copy the key file to".into(),
            ));
        };
        let local = copy_to.to_path_buf();
        afs::create_parent_dirs(&local)?;
        if let Some(found) = afs::sha256_if_exists(&local)? {
            if found != sha256 {
                let aside = aside_path(&local, &found);
                afs::rename(&local, &aside)?;
                tracing::warn!(step = %self.id, kept = %aside.display(), "a file at copy_to that is not this key file was moved aside");
            }
        }
        let staging = afs::temp_sibling(&local);
        afs::remove_if_exists(&staging)?;
        // Before `temp_sibling` kept a partial name as its own, the fetch to `staging` wrote
        // through `..NAME.upgrade-partial.upgrade-partial`: a run killed then left that, key
        // material no run looked for. Now the fetch writes `staging` itself; the old name goes.
        let older = afs::renamed(&staging, |name| format!(".{name}{}", afs::PARTIAL_SUFFIX));
        afs::remove_if_exists(&older)?;
        let fetched = cx.world.host().fetch(from, &staging).await?;
        afs::restrict_permissions(&staging)?;
        afs::sync_files(std::slice::from_ref(&staging))?;
        let here = afs::sha256_file(&staging)?;
        if fetched != sha256 || here != sha256 {
            let _ = afs::remove_if_exists(&staging);
            return Err(StepError::Failed(format!(
                "the copy of {} fetched to {copy_to} has sha256 {}, the key file on the server {}: \
                 the copy is not kept; run apply again",
                from.display(),
                short(&here),
                short(sha256)
            )));
        }
        afs::commit_temp(&staging, &local)?;
        Ok(KeyCopy {
            path: copy_to.to_string(),
            sha256: here,
        })
    }

    async fn export(
        &self,
        command: &ProcessSpec,
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
        // Success is the exit code and a key file, never an English message (a localised or quiet
        // miiskmu prints another or none): a run whose output was partly lost with a dropped
        // connection (over WinRM) still tells by its exit code, and is not run again.
        let (exit_code, said) = match cx.world.run(command).await {
            Ok(out) => (out.exit_code, format!("{}\n{}", out.stdout, out.stderr)),
            Err(StepError::Process(ProcessError::OutputLost { exit_code, .. })) => (
                exit_code,
                "(its output was lost with a dropped connection)".to_string(),
            ),
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
            Err(e) => {
                // Whatever became of miiskmu, a key file it may have written is not left behind
                // unprotected under the partial name.
                let _ = cx.world.host().remove_if_exists(&temp).await;
                return Err(e);
            }
        };
        if exit_code != 0 {
            let _ = cx.world.host().remove_if_exists(&temp).await;
            let message = last_lines(&said, 5);
            return Err(StepError::Tool {
                tool: "miiskmu".into(),
                exit_code,
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
        // The copy is taken from the temporary name, before the key file gets its own: a run cut
        // off before the rename leaves only a temporary file, which the next run removes and
        // exports again.
        let copy = match &self.spec.copy_to {
            Some(_) => Some(self.fetch_copy(&temp, &sha256, cx).await?),
            None => None,
        };
        cx.world.host().rename(&temp, &path).await?;
        let mut summary = format!(
            "key file {} sha256 {} ({bytes} bytes)",
            self.spec.to,
            short(&sha256)
        );
        if let Some(copy) = &copy {
            summary.push_str(&format!(", copied to {}", copy.path));
        }
        let record = Recorded {
            path: self.spec.to.to_string(),
            sha256,
            bytes,
            copy,
        };
        Ok(Finished::new(summary, record))
    }

    /// The server's key file is the recorded export.
    async fn recheck_key_file(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
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

/// What fetching the copy does: a file found at `copy_to` that is not the key file is kept aside,
/// then the copy is fetched (from the recorded export, or from the export about to be made).
fn copy_ops(from: &str, copy: &CopyObserved, recorded: Option<&Recorded>) -> Vec<Op> {
    let mut ops = Vec::new();
    if let Some(found) = &copy.sha256 {
        if recorded.is_none_or(|r| &r.sha256 != found) {
            let aside = aside_path(std::path::Path::new(&copy.path), found);
            let unless = if recorded.is_none() {
                ", unless it is the new key file"
            } else {
                ""
            };
            ops.push(Op::Write {
                path: format!(
                    "{} (the file found at {}, kept{unless})",
                    aside.display(),
                    copy.path
                ),
            });
        }
    }
    ops.push(match recorded {
        Some(r) => Op::Copy {
            from: from.to_string(),
            to: copy.path.clone(),
            files: 1,
            bytes: r.bytes,
        },
        None => Op::Write {
            path: format!("{} (the key file, fetched from {from})", copy.path),
        },
    });
    ops
}

/// Where a key file this plan cannot vouch for is kept: beside it, named by its own content, so the
/// name is known at plan time and a second run over the same file finds it already kept.
fn aside_path(path: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    afs::renamed(path, |name| format!("{name}.unproven-{}", short(sha256)))
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
