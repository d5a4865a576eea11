//! `backup_files`: copies a folder (the rules extensions) file by file, hashing while copying, each
//! file to a temporary name then renamed, and writes a `sha256sum`-compatible `SHA256SUMS` manifest
//! last. A re-run copies only what changed; once the source is gone (uninstalled), a destination
//! that still matches its manifest counts as done.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::fs::{self as afs, Manifest, Mismatch};
use crate::adapters::host::Host;
use crate::plan::{BackupFiles, StepId};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

/// The manifest's file name inside the destination folder.
pub const MANIFEST: &str = "SHA256SUMS";

pub struct BackupFilesStep {
    id: StepId,
    spec: BackupFiles,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    source_present: bool,
    /// Source files and their sha256 (relative path with `/`).
    source: BTreeMap<String, SourceFile>,
    /// The destination manifest, if one reads.
    manifest: Option<BTreeMap<String, String>>,
    /// Files of the manifest missing or different at the destination.
    mismatched: Vec<String>,
    /// Why a manifest that exists could not be read.
    #[serde(default)]
    manifest_error: Option<String>,
    /// sha256 of the destination copy of each source file that has one.
    copies: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceFile {
    sha256: String,
    bytes: u64,
}

impl CarriedOutBy for BackupFiles {
    type Step = BackupFilesStep;
}

/// What apply does, as plan showed it: these files copied (each must still hash as observed),
/// then this manifest written.
#[derive(Debug, Clone)]
pub struct Copy {
    files: Vec<(String, SourceFile)>,
    /// The manifest only grows: a file gone from the source stays in the backup and listed.
    manifest: BTreeMap<String, String>,
}

/// What the journal keeps of a copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copied {
    files: usize,
    copied: u64,
    bytes: u64,
    manifest: PathBuf,
}

impl BackupFilesStep {
    fn at(id: StepId, spec: BackupFiles) -> Self {
        BackupFilesStep { id, spec }
    }

    fn manifest_path(&self) -> PathBuf {
        self.spec.to.to_path_buf().join(MANIFEST)
    }

    /// Source files whose copy is missing or different (a copy made by hand that matches counts).
    fn to_copy<'a>(&self, o: &'a Observed) -> Vec<(&'a String, &'a SourceFile)> {
        o.source
            .iter()
            .filter(|(rel, f)| o.copies.get(*rel) != Some(&f.sha256))
            .collect()
    }

    /// The source folder on the server: each file's sha256 (computed there) and size.
    async fn observe_source(
        &self,
        host: &dyn Host,
    ) -> Result<(bool, BTreeMap<String, SourceFile>), StepError> {
        let from = self.spec.from.to_path_buf();
        let present = host.is_dir(&from).await?;
        let mut source = BTreeMap::new();
        if present {
            for rel in host.walk_files(&from).await? {
                let path = from.join(&rel);
                let file = SourceFile {
                    sha256: host.sha256_file(&path).await?,
                    bytes: host.file_size(&path).await?,
                };
                source.insert(rel, file);
            }
        }
        Ok((present, source))
    }

    /// The copy on this machine, against its manifest and against the source just observed.
    fn observe_copy(
        &self,
        source_present: bool,
        source: BTreeMap<String, SourceFile>,
    ) -> Result<Observed, StepError> {
        let to = self.spec.to.to_path_buf();
        let mut manifest_error = None;
        let (manifest, mismatched) = match Manifest::read(&self.manifest_path()) {
            Ok(m) => {
                let mismatched = m
                    .verify_dir(&to)
                    .into_iter()
                    .map(|mm| mismatch_path(&mm))
                    .collect();
                (Some(m.entries.into_iter().collect()), mismatched)
            }
            Err(e) => {
                if afs::exists(&self.manifest_path()) {
                    manifest_error = Some(e.to_string());
                }
                (None, Vec::new())
            }
        };
        let mut copies = BTreeMap::new();
        for rel in source.keys() {
            let copy = to.join(rel);
            if afs::exists(&copy) {
                copies.insert(rel.clone(), afs::sha256_file(&copy)?);
            }
        }
        Ok(Observed {
            source_present,
            source,
            manifest,
            mismatched,
            manifest_error,
            copies,
        })
    }
}

#[async_trait]
impl Kind for BackupFilesStep {
    type Spec = BackupFiles;
    type Observed = Observed;
    type Change = Copy;
    type Record = Copied;
    const ROLE: Role = Role::Normal;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: BackupFiles) -> Self {
        BackupFilesStep::at(id, spec)
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        let (present, source) = self.observe_source(cx.world.host()).await?;
        // Hashing the copy reads every file: keep it off the async workers.
        let this = BackupFilesStep::at(self.id.clone(), self.spec.clone());
        let o = tokio::task::spawn_blocking(move || this.observe_copy(present, source))
            .await
            .map_err(|e| {
                StepError::Internal(format!("observing {} stopped: {e}", self.spec.from))
            })??;
        Ok(o)
    }

    fn diff(&self, o: &Observed, _cx: &StepContext<'_>) -> Planned<Self> {
        let copy_intact = o.manifest.is_some() && o.mismatched.is_empty();
        if !o.source_present {
            return if copy_intact {
                let n = o.manifest.as_ref().map_or(0, |m| m.len());
                Planned::done(format!(
                    "{n} file(s) at {} match {MANIFEST} (source folder gone)",
                    self.spec.to
                ))
            } else {
                Planned::Blocked {
                    why: format!(
                        "the source folder {} is gone and {} holds no complete copy ({})",
                        self.spec.from,
                        self.spec.to,
                        match (&o.manifest_error, &o.manifest) {
                            (Some(e), _) => format!("its manifest does not read: {e}"),
                            (None, None) => format!("no {MANIFEST}"),
                            (None, Some(_)) => format!(
                                "{} file(s) differ: {}",
                                o.mismatched.len(),
                                o.mismatched.join(", ")
                            ),
                        }
                    ),
                }
            };
        }
        let copy = self.to_copy(o);
        let in_manifest = o
            .manifest
            .as_ref()
            .is_some_and(|m| o.source.keys().all(|rel| m.contains_key(rel)));
        if copy.is_empty() && copy_intact && in_manifest {
            let n = o.manifest.as_ref().map_or(0, |m| m.len());
            return Planned::done(format!(
                "{n} file(s) at {} match {MANIFEST}; the source's {} file(s) match their copies",
                self.spec.to,
                o.source.len()
            ));
        }
        let bytes = copy.iter().map(|(_, f)| f.bytes).sum();
        let mut manifest: BTreeMap<String, String> = o.manifest.clone().unwrap_or_default();
        manifest.extend(o.source.iter().map(|(r, f)| (r.clone(), f.sha256.clone())));
        let change = Copy {
            files: copy
                .iter()
                .map(|(rel, f)| ((*rel).clone(), (*f).clone()))
                .collect(),
            manifest,
        };
        Planned::Change {
            reason: match &o.manifest {
                None => match &o.manifest_error {
                    Some(e) => format!(
                        "the manifest at {} does not read ({e}); it is written again",
                        self.spec.to
                    ),
                    None => format!("no copy at {}", self.spec.to),
                },
                Some(_) => format!(
                    "{} file(s) changed or missing at {}",
                    copy.len(),
                    self.spec.to
                ),
            },
            ops: vec![
                Op::Copy {
                    from: self.spec.from.to_string(),
                    to: self.spec.to.to_string(),
                    files: copy.len() as u64,
                    bytes,
                },
                Op::Write {
                    path: self.manifest_path().to_string_lossy().into_owned(),
                },
            ],
            change,
        }
    }

    async fn apply(
        &self,
        change: &Copy,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Copied>, StepError> {
        let host = cx.world.host();
        let from = self.spec.from.to_path_buf();
        let to = self.spec.to.to_path_buf();
        let mut copied = 0u64;
        let mut bytes = 0u64;
        for (rel, f) in &change.files {
            let sha = host.fetch(&from.join(rel), &to.join(rel)).await?;
            if sha != f.sha256 {
                return Err(StepError::Failed(format!(
                    "{rel} changed while it was being copied; run again"
                )));
            }
            copied += 1;
            bytes += f.bytes;
        }
        let manifest = Manifest {
            entries: change.manifest.clone().into_iter().collect(),
        };
        let path = self.manifest_path();
        let (manifest, bad) = tokio::task::spawn_blocking(move || {
            manifest.write(&path)?;
            let bad = manifest.verify_dir(&to);
            Ok::<_, StepError>((manifest, bad))
        })
        .await
        .map_err(|e| StepError::Internal(format!("writing the manifest stopped: {e}")))??;
        if !bad.is_empty() {
            return Err(StepError::Failed(format!(
                "{} file(s) at {} do not match after copying",
                bad.len(),
                self.spec.to
            )));
        }
        Ok(Finished::new(
            format!(
                "{} file(s) at {} match {MANIFEST} ({copied} copied, {bytes} bytes)",
                manifest.entries.len(),
                self.spec.to
            ),
            Copied {
                files: manifest.entries.len(),
                copied,
                bytes,
                manifest: self.manifest_path(),
            },
        ))
    }

    async fn recheck(&self, _cx: &StepContext<'_>) -> Result<String, StepError> {
        let manifest = Manifest::read(&self.manifest_path()).map_err(|e| {
            StepError::Refused(format!("no manifest for the copy at {}: {e}", self.spec.to))
        })?;
        let bad = manifest.verify_dir(&self.spec.to.to_path_buf());
        if bad.is_empty() {
            Ok(format!(
                "{} file(s) at {} match {MANIFEST}",
                manifest.entries.len(),
                self.spec.to
            ))
        } else {
            let names: Vec<String> = bad.into_iter().map(|m| m.to_string()).collect();
            Err(StepError::Refused(format!(
                "the copy at {} no longer matches its manifest: {}",
                self.spec.to,
                names.join(", ")
            )))
        }
    }

    async fn recheck_before_destruction(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        let copy = self.recheck(cx).await?;
        let n = self.source_matches_copy(cx.world.host()).await?;
        Ok(format!(
            "{copy}; the source's {n} file(s) match their copies"
        ))
    }
}

impl BackupFilesStep {
    /// The live source against the copy, right before the source is destroyed: every file of the
    /// source must have a copy with its content listed in the manifest. Names what differs.
    async fn source_matches_copy(&self, host: &dyn Host) -> Result<usize, StepError> {
        let from = self.spec.from.to_path_buf();
        if !host.is_dir(&from).await? {
            return Ok(0);
        }
        let manifest = Manifest::read(&self.manifest_path()).map_err(|e| {
            StepError::Refused(format!("no manifest for the copy at {}: {e}", self.spec.to))
        })?;
        let listed: BTreeMap<&str, &str> = manifest
            .entries
            .iter()
            .map(|(rel, sha)| (rel.as_str(), sha.as_str()))
            .collect();
        let mut changed = Vec::new();
        let files = host.walk_files(&from).await?;
        for rel in &files {
            let path = from.join(rel);
            let same = match listed.get(rel.as_str()) {
                Some(sha) => host.sha256_file(&path).await? == *sha,
                None => false,
            };
            if !same {
                changed.push(rel.clone());
            }
        }
        if changed.is_empty() {
            Ok(files.len())
        } else {
            Err(StepError::Refused(format!(
                "{} file(s) of {} changed or appeared since the copy: {}",
                changed.len(),
                self.spec.from,
                changed.join(", ")
            )))
        }
    }
}

/// The relative path a manifest mismatch is about.
fn mismatch_path(m: &Mismatch) -> String {
    match m {
        Mismatch::Missing { path }
        | Mismatch::Different { path, .. }
        | Mismatch::Unreadable { path, .. } => path.clone(),
    }
}
