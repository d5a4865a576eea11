//! `backup_files`: copies a folder (the rules extensions) file by file, hashing while copying, each
//! file to a temporary name then renamed, and writes a `sha256sum`-compatible `SHA256SUMS` manifest
//! last. A re-run copies only what changed; once the source is gone (uninstalled), a destination
//! that still matches its manifest counts as done.
//!
//! Durability is batched: every file is copied and renamed into place, then all are flushed to
//! disk with their folders at once (`adapters::flush`), then
//! the manifest is written (the commit point). Re-runs use a
//! quick check as rsync's: the record keeps, per file, its sha256 with the size, mtime, inode and
//! ctime of the source file and of the copy it was proven for; a file whose stat is unchanged is
//! not hashed again. The comparison right before a destructive step hashes everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::adapters::flush::Batch;
use crate::adapters::fs::{self as afs, FileStat, Manifest};
use crate::adapters::host::Host;
use crate::plan::{BackupFiles, StepId};
use crate::steps::progress::Update;
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

/// The manifest's file name inside the destination folder.
pub const MANIFEST: &str = "SHA256SUMS";

/// A source file changed less than this before it was listed may change again within the same
/// clock tick without its stat showing it: its hash is not kept for the quick check ("racy", as
/// git says). For a remote server, this also absorbs a small skew between the two clocks.
const SETTLE_NS: i64 = 2_000_000_000;

/// How many files are copied at once.
const COPIERS: usize = 2;

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
    /// Each copy that reads (of a source file or in the manifest): its sha256 and the stat it was
    /// taken at.
    #[serde(skip)]
    proven: BTreeMap<String, (String, FileStat)>,
    /// When the source was listed (this machine's clock, ns since 1970).
    #[serde(skip)]
    listed_at_ns: i64,
    /// Files hashed by this observation (the others passed the quick check).
    #[serde(skip)]
    hashed: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceFile {
    /// Known when the file had to be compared with a copy (or its stat is as recorded); a file
    /// with no copy yet is hashed only while it is copied.
    sha256: Option<String>,
    bytes: u64,
    /// The stat read before any hash. Not shown nor fingerprinted: with 50,000 files it would
    /// weigh more than the rest of the observation.
    #[serde(skip)]
    stat: Option<FileStat>,
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
    /// The quick-check stamps of the copies not copied again, as observed.
    kept: BTreeMap<String, Stamp>,
    /// When the source was listed (see [`SETTLE_NS`]).
    listed_at_ns: i64,
}

/// What the journal keeps of a copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copied {
    files: usize,
    copied: u64,
    bytes: u64,
    manifest: PathBuf,
    /// Per file of the manifest, what the quick check of the next run compares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    stamps: BTreeMap<String, Stamp>,
}

/// A file's sha256 and the stats at which it was proven: of its copy, and of its source file when
/// that was proven to have the same content and had settled (see [`SETTLE_NS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<FileStat>,
    copy: FileStat,
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
            .filter(|(rel, f)| f.sha256.is_none() || o.copies.get(*rel) != f.sha256.as_ref())
            .collect()
    }

    /// The source folder on the server: each file's size and stat, with its sha256 where its stat
    /// is the one `known` recorded with it.
    async fn list_source(
        &self,
        host: &dyn Host,
        known: &BTreeMap<String, Stamp>,
    ) -> Result<(bool, BTreeMap<String, SourceFile>), StepError> {
        let from = self.spec.from.to_path_buf();
        let present = host.is_dir(&from).await?;
        let mut source = BTreeMap::new();
        if present {
            for (rel, stat) in host.walk_stats(&from).await? {
                let sha256 = known
                    .get(&rel)
                    .filter(|k| k.source == Some(stat))
                    .map(|k| k.sha256.clone());
                let file = SourceFile {
                    sha256,
                    bytes: stat.bytes,
                    stat: Some(stat),
                };
                source.insert(rel, file);
            }
        }
        Ok((present, source))
    }

    /// Hashes, on the server, each source file not known yet that has a copy to compare with.
    /// Returns the number of files hashed.
    async fn hash_source(&self, host: &dyn Host, o: &mut Observed) -> Result<usize, StepError> {
        let from = self.spec.from.to_path_buf();
        let mut hashed = 0;
        for (rel, f) in o.source.iter_mut() {
            if f.sha256.is_none() && o.proven.contains_key(rel) {
                f.sha256 = Some(host.sha256_file(&from.join(rel)).await?);
                hashed += 1;
            }
        }
        Ok(hashed)
    }

    /// The copy on this machine, against its manifest and against the source just observed. A copy
    /// whose stat is the one `known` recorded is not hashed again.
    fn observe_copy(
        &self,
        source: &BTreeMap<String, SourceFile>,
        known: &BTreeMap<String, Stamp>,
    ) -> Observed {
        let to = self.spec.to.to_path_buf();
        let mut manifest_error = None;
        let manifest = match Manifest::read(&self.manifest_path()) {
            Ok(m) => Some(m.entries.into_iter().collect::<BTreeMap<_, _>>()),
            Err(e) => {
                if afs::exists(&self.manifest_path()) {
                    manifest_error = Some(e.to_string());
                }
                None
            }
        };
        let names: BTreeSet<&String> = source
            .keys()
            .chain(manifest.iter().flat_map(|m| m.keys()))
            .collect();
        let mut proven = BTreeMap::new();
        let mut hashed = 0;
        for rel in names {
            let path = to.join(rel);
            // A copy missing or unreadable is not proven: it is copied again.
            let Ok(stat) = afs::stat(&path) else { continue };
            let sha = match known.get(rel) {
                Some(k) if k.copy == stat => Some(k.sha256.clone()),
                _ => {
                    hashed += 1;
                    afs::sha256_file(&path).ok()
                }
            };
            if let Some(sha) = sha {
                proven.insert(rel.clone(), (sha, stat));
            }
        }
        let mismatched = manifest
            .iter()
            .flatten()
            .filter(|(rel, sha)| proven.get(*rel).map(|(s, _)| s) != Some(*sha))
            .map(|(rel, _)| rel.clone())
            .collect();
        Observed {
            source_present: false,
            source: BTreeMap::new(),
            manifest,
            mismatched,
            manifest_error,
            copies: BTreeMap::new(),
            proven,
            listed_at_ns: 0,
            hashed,
        }
    }

    /// The stamps for the next run's quick check: each manifest entry whose copy was proven with
    /// the listed sha256, with its source's stat when the source was proven the same and settled.
    fn stamps(o: &Observed, manifest: &BTreeMap<String, String>) -> BTreeMap<String, Stamp> {
        manifest
            .iter()
            .filter_map(|(rel, sha)| {
                let (copy_sha, copy) = o.proven.get(rel)?;
                if copy_sha != sha {
                    return None;
                }
                let source = o
                    .source
                    .get(rel)
                    .filter(|f| f.sha256.as_ref() == Some(sha))
                    .and_then(|f| f.stat)
                    .filter(|s| !s.changed_since(o.listed_at_ns - SETTLE_NS));
                Some((
                    rel.clone(),
                    Stamp {
                        sha256: sha.clone(),
                        source,
                        copy: *copy,
                    },
                ))
            })
            .collect()
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
        let known = match cx.quick {
            true => cx
                .recorded::<Copied>()
                .map(|c| c.stamps)
                .unwrap_or_default(),
            false => BTreeMap::new(),
        };
        let listed_at_ns = afs::now_ns();
        let (present, source) = self.list_source(cx.world.host(), &known).await?;
        // Hashing the copy reads files: keep it off the async workers.
        let this = BackupFilesStep::at(self.id.clone(), self.spec.clone());
        let mut o = tokio::task::spawn_blocking(move || {
            let mut o = this.observe_copy(&source, &known);
            o.source = source;
            o
        })
        .await
        .map_err(|e| StepError::Internal(format!("observing {} stopped: {e}", self.spec.from)))?;
        o.source_present = present;
        o.listed_at_ns = listed_at_ns;
        o.hashed += self.hash_source(cx.world.host(), &mut o).await?;
        o.copies = o
            .source
            .keys()
            .filter_map(|rel| o.proven.get(rel).map(|(sha, _)| (rel.clone(), sha.clone())))
            .collect();
        tracing::debug!(step = %self.id, hashed = o.hashed, "observed");
        Ok(o)
    }

    fn diff(&self, o: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        let copy_intact = o.manifest.is_some() && o.mismatched.is_empty();
        // Done as found: the record keeps this observation's stamps (the run before may have had
        // to hash files it can now skip), with what the record said of the last copy.
        let done = |evidence: String| {
            let manifest = o.manifest.clone().unwrap_or_default();
            let before = cx.recorded::<Copied>();
            Planned::Done {
                evidence,
                record: Some(Copied {
                    files: manifest.len(),
                    copied: before.as_ref().map_or(0, |c| c.copied),
                    bytes: before.as_ref().map_or(0, |c| c.bytes),
                    manifest: self.manifest_path(),
                    stamps: Self::stamps(o, &manifest),
                }),
            }
        };
        if !o.source_present {
            return if copy_intact {
                let n = o.manifest.as_ref().map_or(0, |m| m.len());
                done(format!(
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
            return done(format!(
                "{n} file(s) at {} match {MANIFEST}; the source's {} file(s) match their copies",
                self.spec.to,
                o.source.len()
            ));
        }
        let bytes = copy.iter().map(|(_, f)| f.bytes).sum();
        let mut manifest: BTreeMap<String, String> = o.manifest.clone().unwrap_or_default();
        // Files not hashed yet are listed with the hash taken while copying them.
        manifest.extend(
            o.source
                .iter()
                .filter_map(|(r, f)| Some((r.clone(), f.sha256.clone()?))),
        );
        let files: Vec<(String, SourceFile)> = copy
            .iter()
            .map(|(rel, f)| ((*rel).clone(), (*f).clone()))
            .collect();
        let mut kept = Self::stamps(o, &manifest);
        for (rel, _) in &files {
            kept.remove(rel);
        }
        let change = Copy {
            files,
            manifest,
            kept,
            listed_at_ns: o.listed_at_ns,
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
        // Each folder once, not once per file.
        let folders: BTreeMap<PathBuf, PathBuf> = change
            .files
            .iter()
            .map(|(rel, _)| to.join(rel))
            .filter_map(|p| p.parent().map(|d| (d.to_path_buf(), p.clone())))
            .collect();
        // The destination folder (and any missing above it), made before the first copy; the
        // batch flushes every copy, every folder it made and the folder that got the highest.
        let batch = Batch::begin(&to)?;
        for file in folders.values() {
            afs::create_parent_dirs(file)?;
        }
        // Files are copied COPIERS at a time: while one waits on the disk, another is hashed.
        let planned: Vec<(String, Option<String>, u64)> = change
            .files
            .iter()
            .map(|(rel, f)| (rel.clone(), f.sha256.clone(), f.bytes))
            .collect();
        let (of_files, of_bytes) = (
            planned.len() as u64,
            planned.iter().map(|(_, _, b)| b).sum::<u64>(),
        );
        let (mut files, mut bytes) = (0, 0);
        let written: Vec<(PathBuf, String)> = stream::iter(planned)
            .map(|(rel, expected, size)| {
                let (src, dst) = (from.join(&rel), to.join(&rel));
                async move {
                    let sha = host.fetch(&src, &dst).await?;
                    if expected.is_some_and(|e| e != sha) {
                        return Err(StepError::Failed(format!(
                            "{rel} changed while it was being copied; run again"
                        )));
                    }
                    Ok((dst, sha, size))
                }
            })
            .buffered(COPIERS)
            .map_ok(|(dst, sha, size)| {
                (files, bytes) = (files + 1, bytes + size);
                cx.progress.update(Update::Copied {
                    files,
                    of_files,
                    bytes,
                    of_bytes,
                });
                (dst, sha)
            })
            .try_collect()
            .await?;
        self.unchanged_while_copied(host, change).await?;
        self.nothing_new_since_the_plan(host, change).await?;
        let bytes: u64 = change.files.iter().map(|(_, f)| f.bytes).sum();
        let copied = written.len() as u64;
        let mut entries = change.manifest.clone();
        entries.extend(
            change
                .files
                .iter()
                .zip(&written)
                .map(|((rel, _), (_, sha))| (rel.clone(), sha.clone())),
        );
        let manifest = Manifest {
            entries: entries.into_iter().collect(),
        };
        let path = self.manifest_path();
        let (files, kept) = (change.files.clone(), change.kept.clone());
        let stamped = tokio::task::spawn_blocking(move || {
            // Durable before the commit point: every copy and folder, flushed at once.
            let paths: Vec<PathBuf> = written.iter().map(|(p, _)| p.clone()).collect();
            batch.finish(&paths)?;
            tracing::debug!(files = paths.len(), "copies durable");
            let mut stamps = kept;
            for ((rel, f), (dst, sha256)) in files.into_iter().zip(written) {
                let stamp = Stamp {
                    sha256,
                    source: f.stat,
                    copy: afs::stat(&dst)?,
                };
                stamps.insert(rel, stamp);
            }
            // Every listed file must be there as proven (copied now, or found matching).
            let bad: Vec<String> = manifest
                .entries
                .iter()
                .filter(|(rel, sha)| match stamps.get(rel) {
                    Some(s) => &s.sha256 != sha || afs::stat(&to.join(rel)).ok() != Some(s.copy),
                    None => true,
                })
                .map(|(rel, _)| rel.clone())
                .collect();
            if bad.is_empty() {
                manifest.write(&path)?;
            }
            Ok::<_, StepError>((manifest, stamps, bad))
        })
        .await
        .map_err(|e| StepError::Internal(format!("writing the manifest stopped: {e}")))?;
        let (manifest, mut stamps, bad) = stamped?;
        if !bad.is_empty() {
            return Err(StepError::Failed(format!(
                "{} file(s) at {} changed or went missing while copying ({}); run again",
                bad.len(),
                self.spec.to,
                bad.join(", ")
            )));
        }
        // A source that changed shortly before it was listed may change again unseen: hash it
        // next time.
        for s in stamps.values_mut() {
            if s.source
                .is_some_and(|st| st.changed_since(change.listed_at_ns - SETTLE_NS))
            {
                s.source = None;
            }
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
                stamps,
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
    /// The files copied without a sha256 observed before (their first copy) must still have the
    /// stat they were listed with: one that moved may have changed while it was read.
    /// Files that appeared in the source after the plan listed it are in neither this copy nor
    /// its manifest: the step is not done without them. It fails, naming them, and the next run
    /// plans them (a source folder gone since the plan fails here too).
    async fn nothing_new_since_the_plan(
        &self,
        host: &dyn Host,
        change: &Copy,
    ) -> Result<(), StepError> {
        let listed_now = host.walk_files(&self.spec.from.to_path_buf()).await?;
        let new: Vec<String> = listed_now
            .into_iter()
            .filter(|rel| {
                !change.manifest.contains_key(rel) && !change.files.iter().any(|(r, _)| r == rel)
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        Err(StepError::Failed(format!(
            "{} file(s) appeared in {} after the plan listed it ({}); nothing is recorded: run \
             again to copy them",
            new.len(),
            self.spec.from,
            new.join(", ")
        )))
    }

    async fn unchanged_while_copied(
        &self,
        host: &dyn Host,
        change: &Copy,
    ) -> Result<(), StepError> {
        let unhashed: BTreeMap<&String, Option<FileStat>> = change
            .files
            .iter()
            .filter(|(_, f)| f.sha256.is_none())
            .map(|(rel, f)| (rel, f.stat))
            .collect();
        if unhashed.is_empty() {
            return Ok(());
        }
        let now: BTreeMap<String, FileStat> = host
            .walk_stats(&self.spec.from.to_path_buf())
            .await?
            .into_iter()
            .collect();
        let moved: Vec<&str> = unhashed
            .iter()
            .filter(|(rel, before)| now.get(**rel).copied() != **before)
            .map(|(rel, _)| rel.as_str())
            .collect();
        if moved.is_empty() {
            Ok(())
        } else {
            Err(StepError::Failed(format!(
                "{} file(s) of {} changed while they were being copied ({}); run again",
                moved.len(),
                self.spec.from,
                moved.join(", ")
            )))
        }
    }

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

#[cfg(test)]
mod tests {
    //! The quick check against the full comparison, on a server that reports only size and mtime
    //! (as Windows does: no inode, no ctime), where an edit with its mtime put back leaves the stat
    //! as it was.

    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::adapters::fs::FsError;
    use crate::adapters::host::Local;
    use crate::adapters::process::{ProcessError, ProcessOutcome, ProcessSpec};
    use crate::adapters::secrets::Redactor;
    use crate::steps::record::{Journal, StepRecord, StepStatus};
    use crate::steps::{Evidence, World};

    /// This machine, listing files with their size and mtime only; it can stand in for an
    /// administrator who edits a file right after it was read for its copy.
    #[derive(Default)]
    struct SizeAndMtime {
        edited_after_read: std::sync::Mutex<Option<PathBuf>>,
    }

    #[async_trait]
    impl Host for SizeAndMtime {
        async fn run(&self, s: &ProcessSpec, r: &Redactor) -> Result<ProcessOutcome, ProcessError> {
            Local.run(s, r).await
        }
        async fn exists(&self, p: &Path) -> Result<bool, FsError> {
            Local.exists(p).await
        }
        async fn is_dir(&self, p: &Path) -> Result<bool, FsError> {
            Local.is_dir(p).await
        }
        async fn file_size(&self, p: &Path) -> Result<u64, FsError> {
            Local.file_size(p).await
        }
        async fn sha256_file(&self, p: &Path) -> Result<String, FsError> {
            Local.sha256_file(p).await
        }
        async fn read_file(&self, p: &Path) -> Result<Vec<u8>, FsError> {
            Local.read_file(p).await
        }
        async fn walk_files(&self, d: &Path) -> Result<Vec<String>, FsError> {
            Local.walk_files(d).await
        }
        async fn walk_stats(&self, d: &Path) -> Result<Vec<(String, FileStat)>, FsError> {
            let mut all = Local.walk_stats(d).await?;
            for (_, s) in &mut all {
                (s.inode, s.ctime_ns) = (None, None);
            }
            Ok(all)
        }
        async fn rename(&self, a: &Path, b: &Path) -> Result<(), FsError> {
            Local.rename(a, b).await
        }
        async fn remove_if_exists(&self, p: &Path) -> Result<(), FsError> {
            Local.remove_if_exists(p).await
        }
        async fn create_parent_dirs(&self, p: &Path) -> Result<(), FsError> {
            Local.create_parent_dirs(p).await
        }
        async fn restrict_permissions(&self, p: &Path) -> Result<(), FsError> {
            Local.restrict_permissions(p).await
        }
        async fn installation_in_progress(&self, msiexec: &Path) -> Result<bool, FsError> {
            Local.installation_in_progress(msiexec).await
        }
        async fn system_root(&self) -> Result<Option<String>, FsError> {
            Local.system_root().await
        }
        async fn fetch(&self, a: &Path, b: &Path) -> Result<String, FsError> {
            let sha = Local.fetch(a, b).await;
            if self.edited_after_read.lock().unwrap().as_deref() == Some(a) {
                std::fs::write(a, "edited after it was read").unwrap();
            }
            sha
        }
    }

    struct Bench {
        _dir: tempfile::TempDir,
        from: PathBuf,
        to: PathBuf,
        world: World,
        step: BackupFilesStep,
        id: StepId,
    }

    /// A source folder of three files last written an hour ago, and a one-step plan copying it.
    fn bench() -> Bench {
        bench_on(Arc::new(SizeAndMtime::default()))
    }

    fn bench_on(host: Arc<SizeAndMtime>) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("Extensions"), dir.path().join("copy"));
        std::fs::create_dir_all(from.join("sub")).unwrap();
        for name in ["a.dll", "b.dll", "sub/c.dll"] {
            std::fs::write(from.join(name), format!("rules of {name}")).unwrap();
            set_mtime(
                &from.join(name),
                SystemTime::now() - Duration::from_secs(3600),
            );
        }
        let text = format!(
            "version: 1\nname: t\nserver:\n  sql: {{ host: \"(local)\", auth: windows }}\nsteps:\n  - id: ext\n    backup_files: {{ from: '{}', to: '{}' }}\n",
            from.display(),
            to.display()
        );
        let plan = crate::plan::load_str("t.yaml", &text).unwrap().plan;
        let spec = match &plan.steps[0].kind {
            crate::plan::StepKind::BackupFiles(s) => s.clone(),
            _ => unreachable!("the plan has one backup_files step"),
        };
        let id = StepId::parse("ext").unwrap();
        let world = World::new(plan, dir.path().to_path_buf(), BTreeMap::new()).on(host);
        let step = BackupFilesStep::new(id.clone(), spec);
        Bench {
            _dir: dir,
            from,
            to,
            world,
            step,
            id,
        }
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn cx<'a>(b: &'a Bench, journal: &'a Journal, quick: bool) -> StepContext<'a> {
        StepContext {
            world: &b.world,
            id: &b.id,
            journal,
            plan_sha256: "00",
            quick,
            progress: &crate::steps::progress::Silent,
        }
    }

    /// Observes, applies what diff plans, and returns the journal recording it.
    async fn first_copy(b: &Bench) -> Journal {
        let mut journal = Journal::new("t");
        let o = b.step.observe(&cx(b, &journal, true)).await.unwrap();
        let Planned::Change { change, .. } = b.step.diff(&o, &cx(b, &journal, true)) else {
            panic!("a fresh copy is a change");
        };
        let done = b.step.apply(&change, &cx(b, &journal, true)).await.unwrap();
        journal.steps.insert(
            "ext".into(),
            StepRecord {
                kind: "backup_files".into(),
                status: StepStatus::Done,
                at: chrono::Utc::now(),
                evidence: Some(Evidence {
                    summary: done.summary,
                    details: serde_json::to_value(&done.record).unwrap(),
                    reboot_required: false,
                    restart_started: false,
                }),
                error: None,
                plan_sha256: "00".into(),
                began: false,
            },
        );
        journal
    }

    /// Every update a step sends, in order.
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<Update>>);

    impl crate::steps::progress::Progress for Recorded {
        fn update(&self, update: Update) {
            self.0.lock().unwrap().push(update);
        }
    }

    #[tokio::test]
    async fn a_copy_says_after_each_file_how_many_files_and_bytes_are_done_of_all() {
        let b = bench();
        let journal = Journal::new("t");
        let o = b.step.observe(&cx(&b, &journal, true)).await.unwrap();
        let Planned::Change { change, .. } = b.step.diff(&o, &cx(&b, &journal, true)) else {
            panic!("a fresh copy is a change");
        };
        let recorded = Recorded::default();
        let watched = StepContext {
            progress: &recorded,
            ..cx(&b, &journal, true)
        };
        b.step.apply(&change, &watched).await.unwrap();
        let total: u64 = ["a.dll", "b.dll", "sub/c.dll"]
            .iter()
            .map(|n| format!("rules of {n}").len() as u64)
            .sum();
        let updates = recorded.0.into_inner().unwrap();
        assert_eq!(updates.len(), 3, "{updates:?}");
        let mut before = (0, 0);
        for (n, u) in updates.iter().enumerate() {
            let Update::Copied {
                files,
                of_files,
                bytes,
                of_bytes,
            } = *u;
            assert_eq!((files, of_files, of_bytes), (n as u64 + 1, 3, total));
            assert!(bytes > before.1 && files > before.0, "{updates:?}");
            before = (files, bytes);
        }
        assert_eq!(before.1, total, "all bytes done at the end: {updates:?}");
    }

    fn planned_files(p: &Planned<BackupFilesStep>) -> Vec<String> {
        match p {
            Planned::Change { change, .. } => change.files.iter().map(|(r, _)| r.clone()).collect(),
            Planned::Done { .. } => Vec::new(),
            _ => panic!("neither done nor a change"),
        }
    }

    #[tokio::test]
    async fn a_re_run_hashes_only_the_files_whose_stat_changed_and_copies_those_that_differ() {
        let b = bench();
        let journal = first_copy(&b).await;

        let o = b.step.observe(&cx(&b, &journal, true)).await.unwrap();
        assert_eq!(o.hashed, 0, "nothing changed, yet files were hashed again");
        assert!(matches!(
            b.step.diff(&o, &cx(&b, &journal, true)),
            Planned::Done { .. }
        ));

        std::fs::write(b.from.join("b.dll"), "rules of b.dll, edited").unwrap();
        set_mtime(
            &b.from.join("b.dll"),
            SystemTime::now() - Duration::from_secs(60),
        );
        let o = b.step.observe(&cx(&b, &journal, true)).await.unwrap();
        assert_eq!(o.hashed, 1, "only the edited file is hashed again");
        assert_eq!(
            planned_files(&b.step.diff(&o, &cx(&b, &journal, true))),
            ["b.dll"]
        );
    }

    #[tokio::test]
    async fn an_edit_with_its_mtime_put_back_passes_the_quick_check_but_not_the_check_before_destruction(
    ) {
        let b = bench();
        let journal = first_copy(&b).await;
        let path = b.from.join("a.dll");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let same_size = "RULES OF a.dll";
        assert_eq!(same_size.len(), "rules of a.dll".len());
        std::fs::write(&path, same_size).unwrap();
        set_mtime(&path, mtime);

        // What the quick check cannot see on such a server: size and mtime are as recorded.
        let o = b.step.observe(&cx(&b, &journal, true)).await.unwrap();
        assert!(matches!(
            b.step.diff(&o, &cx(&b, &journal, true)),
            Planned::Done { .. }
        ));

        // Right before the uninstall, every file is hashed: the edit is caught and named.
        let err = b
            .step
            .recheck_before_destruction(&cx(&b, &journal, true))
            .await
            .unwrap_err();
        assert!(matches!(err, StepError::Refused(_)), "{err}");
        assert!(err.to_string().contains("a.dll"), "{err}");

        // And the engine's second look, trusting nothing, plans the copy again.
        let o = b.step.observe(&cx(&b, &journal, false)).await.unwrap();
        assert_eq!(
            planned_files(&b.step.diff(&o, &cx(&b, &journal, false))),
            ["a.dll"]
        );
        assert!(b.to.join("a.dll").is_file());
    }

    #[tokio::test]
    async fn a_file_edited_while_its_first_copy_is_made_fails_the_step_and_no_manifest_is_written()
    {
        let host = Arc::new(SizeAndMtime::default());
        let b = bench_on(host.clone());
        let edited = b.from.join("b.dll");
        let journal = Journal::new("t");
        let o = b.step.observe(&cx(&b, &journal, true)).await.unwrap();
        assert_eq!(o.hashed, 0, "a first copy hashes only while copying");
        let Planned::Change { change, .. } = b.step.diff(&o, &cx(&b, &journal, true)) else {
            panic!("a fresh copy is a change");
        };
        *host.edited_after_read.lock().unwrap() = Some(edited);
        let Err(err) = b.step.apply(&change, &cx(&b, &journal, true)).await else {
            panic!("a copy of a file edited while it was read was accepted");
        };
        assert!(err.to_string().contains("b.dll"), "{err}");
        assert!(err.to_string().contains("changed while"), "{err}");
        assert!(!b.to.join(MANIFEST).exists());
    }
}
